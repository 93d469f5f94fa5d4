//! Where appeals stand: `audit_appeals`, one row per appeal, kept by both
//! engines in the transaction that stores the appeal's records.
//!
//! The records in the chain are the truth (an appeal is filed and resolved
//! by records, see `record::AppealEvent`); this table is their projection,
//! so that "open appeals, oldest first" and "the appeal of this decision"
//! are index lookups rather than scans of the trail. It is written only
//! from those records (`AppealChange::of`), idempotently: a row loaded
//! twice (SQLite's journal after a crash) changes nothing the second time,
//! and a resolution only ever moves an open appeal to resolved.

use super::Row;
use crate::audit::query::SqlValue;
use crate::audit::record::{RecordDetail, APPEAL_FILED, APPEAL_RESOLVED};

/// The table and its indexes, in types both engines understand.
pub const APPEALS_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_appeals (
        appeal_id TEXT PRIMARY KEY,
        decision_id TEXT NOT NULL,
        party TEXT NOT NULL,
        party_index BIGINT NOT NULL,
        subject_ref TEXT NOT NULL,
        city TEXT NOT NULL,
        hook TEXT NOT NULL,
        filed_at BIGINT NOT NULL,
        filed_by TEXT NOT NULL,
        grounds TEXT NOT NULL,
        flagged BOOLEAN NOT NULL,
        state TEXT NOT NULL,
        resolution_id TEXT,
        resolved_at BIGINT,
        resolved_by TEXT,
        outcome TEXT,
        cause TEXT,
        note TEXT
    )",
    "CREATE INDEX IF NOT EXISTS audit_appeals_state ON audit_appeals (state, filed_at, appeal_id)",
    "CREATE INDEX IF NOT EXISTS audit_appeals_time ON audit_appeals (filed_at, appeal_id)",
    "CREATE INDEX IF NOT EXISTS audit_appeals_decision ON audit_appeals (decision_id)",
];

/// `party_index` of a party without one (the driver).
const NO_INDEX: i64 = -1;

const INSERT_FILED: &str = "INSERT INTO audit_appeals (appeal_id, decision_id, party, \
     party_index, subject_ref, city, hook, filed_at, filed_by, grounds, flagged, state) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open') \
     ON CONFLICT (appeal_id) DO NOTHING";

/// Placeholders in order of appearance: SQLite numbers `$n` parameters by
/// where they first appear, not by `n`.
const RESOLVE: &str = "UPDATE audit_appeals SET state = 'resolved', resolution_id = $1, \
     resolved_at = $2, resolved_by = $3, outcome = $4, cause = $5, note = $6 \
     WHERE appeal_id = $7 AND state = 'open'";

/// The columns of an appeal as read, in `AppealRow` order.
pub const APPEAL_COLUMNS: &str = "appeal_id, decision_id, party, party_index, subject_ref, \
     city, hook, filed_at, filed_by, grounds, flagged, state, resolution_id, resolved_at, \
     resolved_by, outcome, cause, note";

/// One appeal as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppealRow {
    pub appeal_id: String,
    pub decision_id: String,
    pub party: String,
    /// `None` for the driver.
    pub party_index: Option<u32>,
    pub subject_ref: String,
    pub city: String,
    pub hook: String,
    pub filed_at_us: i64,
    /// The client that filed it ("" with authentication off).
    pub filed_by: String,
    pub grounds: String,
    /// The grounds hold a run of digits as long as a phone or ID number.
    pub flagged: bool,
    /// `open` or `resolved`.
    pub state: String,
    pub resolution_id: Option<String>,
    pub resolved_at_us: Option<i64>,
    pub resolved_by: Option<String>,
    pub outcome: Option<String>,
    pub cause: Option<String>,
    pub note: Option<String>,
}

impl AppealRow {
    /// The row of `APPEAL_COLUMNS`' cells, in order.
    pub fn from_cells(cells: Vec<SqlCell>) -> Result<Self, String> {
        let mut cells = cells.into_iter();
        let mut next = || cells.next().ok_or_else(|| "a column is missing".to_owned());
        Ok(Self {
            appeal_id: next()?.text()?,
            decision_id: next()?.text()?,
            party: next()?.text()?,
            party_index: u32::try_from(next()?.int()?).ok(),
            subject_ref: next()?.text()?,
            city: next()?.text()?,
            hook: next()?.text()?,
            filed_at_us: next()?.int()?,
            filed_by: next()?.text()?,
            grounds: next()?.text()?,
            flagged: next()?.flag()?,
            state: next()?.text()?,
            resolution_id: next()?.opt_text(),
            resolved_at_us: next()?.opt_int(),
            resolved_by: next()?.opt_text(),
            outcome: next()?.opt_text(),
            cause: next()?.opt_text(),
            note: next()?.opt_text(),
        })
    }
}

/// One column's value as either engine hands it over.
#[derive(Debug, Clone)]
pub enum SqlCell {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
}

impl SqlCell {
    fn flag(self) -> Result<bool, String> {
        match self {
            SqlCell::Bool(b) => b.ok_or_else(|| "a boolean column is null".into()),
            other => Ok(other.int()? != 0),
        }
    }

    fn text(self) -> Result<String, String> {
        self.opt_text()
            .ok_or_else(|| "a text column is null".into())
    }

    fn opt_text(self) -> Option<String> {
        match self {
            SqlCell::Text(t) => t,
            SqlCell::Int(i) => i.map(|i| i.to_string()),
            SqlCell::Bool(b) => b.map(|b| b.to_string()),
        }
    }

    fn int(self) -> Result<i64, String> {
        self.opt_int()
            .ok_or_else(|| "an integer column is null".into())
    }

    fn opt_int(self) -> Option<i64> {
        match self {
            SqlCell::Int(i) => i,
            SqlCell::Bool(b) => b.map(i64::from),
            SqlCell::Text(t) => t.and_then(|t| t.parse().ok()),
        }
    }
}

/// The type of column `i` of `APPEAL_COLUMNS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Int,
    Bool,
    Text,
}

pub fn column_kind(i: usize) -> ColumnKind {
    match i {
        3 | 7 | 13 => ColumnKind::Int,
        10 => ColumnKind::Bool,
        _ => ColumnKind::Text,
    }
}

/// Columns in `APPEAL_COLUMNS`.
pub const APPEAL_COLUMN_COUNT: usize = 18;

/// What one record does to the table.
#[derive(Debug, Clone)]
pub enum AppealChange {
    Filed(Vec<SqlValue>),
    Resolved(Vec<SqlValue>),
}

impl AppealChange {
    /// The change an appeal's row makes (`None` for a decision's row, and
    /// for an appeal's row whose detail does not parse: verification
    /// reports that record; the projection cannot hold it).
    pub fn of(row: &Row) -> Option<Self> {
        if row.decision != APPEAL_FILED && row.decision != APPEAL_RESOLVED {
            return None;
        }
        let detail: RecordDetail = serde_json::from_str(&row.detail).ok()?;
        let appeal = detail.appeal?;
        let client = detail.client.unwrap_or_default();
        if row.decision == APPEAL_FILED {
            let party = detail.parties.first()?;
            Some(AppealChange::Filed(vec![
                SqlValue::Text(appeal.appeal_id),
                SqlValue::Text(appeal.decision_id),
                SqlValue::Text(party.party.clone()),
                SqlValue::Int(party.index.map_or(NO_INDEX, i64::from)),
                SqlValue::Text(party.subject_ref.clone()),
                SqlValue::Text(row.city.clone()),
                SqlValue::Text(row.hook.clone()),
                SqlValue::Int(row.decided_at_us),
                SqlValue::Text(client),
                SqlValue::Text(appeal.grounds.unwrap_or_default()),
                SqlValue::Bool(appeal.possible_identifier),
            ]))
        } else {
            let text = |t: Option<String>| t.map_or(SqlValue::Null, SqlValue::Text);
            Some(AppealChange::Resolved(vec![
                SqlValue::Text(row.decision_id.clone()),
                SqlValue::Int(row.decided_at_us),
                SqlValue::Text(client),
                text(appeal.outcome),
                text(appeal.cause),
                text(appeal.note),
                SqlValue::Text(appeal.appeal_id),
            ]))
        }
    }

    pub fn sql(&self) -> &'static str {
        match self {
            AppealChange::Filed(_) => INSERT_FILED,
            AppealChange::Resolved(_) => RESOLVE,
        }
    }

    pub fn params(&self) -> &[SqlValue] {
        match self {
            AppealChange::Filed(p) | AppealChange::Resolved(p) => p,
        }
    }
}

/// Which appeals a list asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppealFilter {
    /// `open` or `resolved`; `None`: both.
    pub state: Option<&'static str>,
    /// Filed at or after (microseconds).
    pub from_us: Option<i64>,
    /// Filed before.
    pub to_us: Option<i64>,
    pub city: Option<String>,
    /// A reader's cities; empty: any.
    pub cities: Vec<String>,
    /// Filed by one of these clients; empty: any.
    pub filed_by: Vec<String>,
    pub decision_id: Option<String>,
}

/// Where the next page of a list starts: after (filed_at, appeal_id),
/// oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppealCursor {
    pub filed_at_us: i64,
    pub appeal_id: String,
}

/// The WHERE clause of `filter` (and `cursor`) with its parameters, in
/// the `$n` placeholders both engines take.
fn where_clause(filter: &AppealFilter, cursor: Option<&AppealCursor>) -> (String, Vec<SqlValue>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    let mut bind = |value: SqlValue| {
        params.push(value);
        format!("${}", params.len())
    };
    if let Some(state) = filter.state {
        conditions.push(format!("state = {}", bind(SqlValue::Text(state.into()))));
    }
    if let Some(from) = filter.from_us {
        conditions.push(format!("filed_at >= {}", bind(SqlValue::Int(from))));
    }
    if let Some(to) = filter.to_us {
        conditions.push(format!("filed_at < {}", bind(SqlValue::Int(to))));
    }
    if let Some(city) = &filter.city {
        conditions.push(format!("city = {}", bind(SqlValue::Text(city.clone()))));
    }
    if !filter.cities.is_empty() {
        let cities: Vec<String> = filter
            .cities
            .iter()
            .map(|c| bind(SqlValue::Text(c.clone())))
            .collect();
        conditions.push(format!("city IN ({})", cities.join(", ")));
    }
    if !filter.filed_by.is_empty() {
        let clients: Vec<String> = filter
            .filed_by
            .iter()
            .map(|c| bind(SqlValue::Text(c.clone())))
            .collect();
        conditions.push(format!("filed_by IN ({})", clients.join(", ")));
    }
    if let Some(decision_id) = &filter.decision_id {
        conditions.push(format!(
            "decision_id = {}",
            bind(SqlValue::Text(decision_id.clone()))
        ));
    }
    if let Some(cursor) = cursor {
        let at = bind(SqlValue::Int(cursor.filed_at_us));
        let id = bind(SqlValue::Text(cursor.appeal_id.clone()));
        conditions.push(format!(
            "(filed_at > {at} OR (filed_at = {at} AND appeal_id > {id}))"
        ));
    }
    let clause = if conditions.is_empty() {
        "1 = 1".to_owned()
    } else {
        conditions.join(" AND ")
    };
    (clause, params)
}

/// A page of appeals, oldest first; `fetch` rows at most.
pub fn page_sql(
    filter: &AppealFilter,
    cursor: Option<&AppealCursor>,
    fetch: u32,
) -> (String, Vec<SqlValue>) {
    let (clause, params) = where_clause(filter, cursor);
    (
        format!(
            "SELECT {APPEAL_COLUMNS} FROM audit_appeals WHERE {clause} \
             ORDER BY filed_at, appeal_id LIMIT {fetch}"
        ),
        params,
    )
}

/// One appeal by id.
pub fn get_sql() -> String {
    format!("SELECT {APPEAL_COLUMNS} FROM audit_appeals WHERE appeal_id = $1")
}

/// Counts of the filter's appeals as (state, outcome, count) rows.
pub fn counts_sql(filter: &AppealFilter) -> (String, Vec<SqlValue>) {
    let (clause, params) = where_clause(filter, None);
    (
        format!(
            "SELECT state, COALESCE(outcome, ''), COUNT(*) FROM audit_appeals WHERE {clause} \
             GROUP BY state, COALESCE(outcome, '')"
        ),
        params,
    )
}

/// The open appeals: how many, and when the oldest was filed.
pub const OPEN_SQL: &str =
    "SELECT COUNT(*), COALESCE(MIN(filed_at), 0) FROM audit_appeals WHERE state = 'open'";

/// Retention: appeals whose filing was purged go with it.
pub const PURGE_SQL: &str = "DELETE FROM audit_appeals WHERE filed_at < $1";

/// Appeals by state and outcome, as a summary tells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AppealCounts {
    pub filed: u64,
    pub open: u64,
    pub upheld: u64,
    pub overturned: u64,
}

impl AppealCounts {
    pub fn from_rows(rows: impl IntoIterator<Item = (String, String, i64)>) -> Self {
        let mut counts = Self::default();
        for (state, outcome, count) in rows {
            let count = count.max(0) as u64;
            counts.filed += count;
            match (state.as_str(), outcome.as_str()) {
                ("open", _) => counts.open += count,
                (_, "upheld") => counts.upheld += count,
                (_, "overturned") => counts.overturned += count,
                _ => {}
            }
        }
        counts
    }
}
