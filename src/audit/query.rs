//! The regulator's queries: filters, keyset cursors, summaries, and the SQL
//! they become.
//!
//! Raw query parameters are parsed here into a `DecisionFilter` that can only
//! hold valid values; a bad parameter is a `FilterError` naming it. A raw
//! subject id is turned into its refs under every configured key at once and
//! goes no further. The SQL is the same for SQLite and PostgreSQL but for the
//! placeholder syntax.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AuditKeys, Hook, SealedRecord};
use crate::domain::{ReasonCode, SubjectId};

pub const MAX_PAGE_LIMIT: u32 = 1000;
pub const DEFAULT_PAGE_LIMIT: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {problem}")]
pub struct FilterError {
    pub param: &'static str,
    pub problem: String,
}

fn bad(param: &'static str, problem: impl Into<String>) -> FilterError {
    FilterError {
        param,
        problem: problem.into(),
    }
}

/// Query parameters as they arrive (also their OpenAPI description).
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawFilter {
    /// Inclusive RFC 3339 lower bound of decided_at.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Exclusive RFC 3339 upper bound.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// allow or reject.
    #[param(pattern = "^(allow|reject)$")]
    pub decision: Option<String>,
    /// A reason code.
    #[param(
        pattern = "^(ALL_GREEN|HEALTH_CODE_YELLOW|HEALTH_CODE_RED|HEALTH_CODE_UNRECOGNISED|NO_HEALTH_CODE|STATUS_STALE|STATUS_UNAVAILABLE|ISSUER_NOT_RECOGNISED|ITINERARY_RISK_AREA|ITINERARY_UNRECOGNISED)$"
    )]
    pub reason: Option<String>,
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub city: Option<String>,
    /// trip, driver_shift, passenger_order or candidates.
    #[param(pattern = "^(trip|driver_shift|passenger_order|candidates)$")]
    pub hook: Option<String>,
    /// The trip (or order) id.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub trip_id: Option<String>,
    /// A raw subject id, hashed server-side with every configured key.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub subject: Option<String>,
    /// The name of the client that asked for the decisions.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub client: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionFilter {
    /// Inclusive, microseconds since the epoch.
    pub from_us: Option<i64>,
    /// Exclusive.
    pub to_us: Option<i64>,
    pub decision: Option<&'static str>,
    pub reason: Option<ReasonCode>,
    pub city: Option<String>,
    pub hook: Option<Hook>,
    pub trip_id: Option<String>,
    /// Refs of one subject under every key; empty means no subject filter.
    pub subject_refs: Vec<String>,
    /// Decisions asked for by any of these clients; empty: any client.
    pub clients: Vec<String>,
    /// Decisions of any of these cities (a reader's scope); empty: any.
    pub cities: Vec<String>,
    /// Appeals' records too (an export: every link of the chains it
    /// covers); otherwise decisions only.
    pub with_appeals: bool,
}

/// What one reader of the trail may see: a regulator limited to some
/// cities, a fleet to its own dispatch clients' decisions (and perhaps
/// some cities). `None`: no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadScope {
    pub clients: Option<Vec<String>>,
    pub cities: Option<Vec<String>>,
}

/// A filter reaching beyond the reader's scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutOfScope(pub String);

impl ReadScope {
    /// Whether the record is within the scope.
    pub fn admits(&self, record: &super::AuditRecord) -> bool {
        self.admits_parts(&record.city, record.client.as_deref())
    }

    /// Whether something of `city`, asked for (or filed) by `client`, is
    /// within the scope (decisions and appeals alike).
    pub fn admits_parts(&self, city: &str, client: Option<&str>) -> bool {
        self.cities
            .as_ref()
            .is_none_or(|cities| cities.iter().any(|c| c == city))
            && self.clients.as_ref().is_none_or(|clients| {
                client.is_some_and(|client| clients.iter().any(|c| c == client))
            })
    }

    /// The cities a query may cover: `None` for any; a `city` asked for
    /// outside the scope is refused, not answered empty.
    pub fn cities_for(&self, city: Option<&String>) -> Result<Option<Vec<String>>, OutOfScope> {
        let Some(cities) = &self.cities else {
            return Ok(None);
        };
        if let Some(city) = city {
            if !cities.contains(city) {
                return Err(OutOfScope(format!(
                    "city {city:?} is outside this client's cities ({})",
                    cities.join(", ")
                )));
            }
        }
        Ok(Some(cities.clone()))
    }

    /// Narrows `filter` to the scope; a filter naming a city or client
    /// outside it is refused rather than answered empty, so a reader is
    /// never left to wonder.
    pub fn restrict(&self, filter: &mut DecisionFilter) -> Result<(), OutOfScope> {
        if let Some(cities) = self.cities_for(filter.city.as_ref())? {
            filter.cities = cities;
        }
        if let Some(clients) = &self.clients {
            match filter.clients.as_slice() {
                [] => filter.clients = clients.clone(),
                asked => {
                    if let Some(other) = asked.iter().find(|c| !clients.contains(c)) {
                        return Err(OutOfScope(format!(
                            "client {other:?} is not one of this fleet's clients ({})",
                            clients.join(", ")
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// An RFC 3339 query parameter as microseconds since the epoch.
pub fn timestamp(param: &'static str, raw: &str) -> Result<i64, FilterError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
        .map_err(|e| {
            bad(
                param,
                format!("not an RFC 3339 timestamp ({e}); e.g. 2026-11-26T08:00:00Z"),
            )
        })
}

/// The `from` and `to` parameters of a listing, in µs; `from` after `to`
/// is refused rather than answered with an empty page.
pub fn time_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), FilterError> {
    let from_us = from.map(|v| timestamp("from", v)).transpose()?;
    let to_us = to.map(|v| timestamp("to", v)).transpose()?;
    if let (Some(from), Some(to)) = (from_us, to_us) {
        if from > to {
            return Err(bad("from", "is after `to`"));
        }
    }
    Ok((from_us, to_us))
}

impl DecisionFilter {
    pub fn parse(raw: &RawFilter, keys: &AuditKeys) -> Result<Self, FilterError> {
        let (from_us, to_us) = time_range(raw.from.as_deref(), raw.to.as_deref())?;
        let decision = match raw.decision.as_deref() {
            None => None,
            Some("allow") => Some("allow"),
            Some("reject") => Some("reject"),
            Some(other) => {
                return Err(bad("decision", format!("{other:?} is not allow or reject")))
            }
        };
        let reason = raw
            .reason
            .as_deref()
            .map(|r| {
                ReasonCode::parse(r).ok_or_else(|| {
                    let known: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
                    bad(
                        "reason",
                        format!(
                            "{r:?} is not a reason code; known codes: {}",
                            known.join(", ")
                        ),
                    )
                })
            })
            .transpose()?;
        let hook = raw
            .hook
            .as_deref()
            .map(|h| {
                Hook::parse(h)
                    .ok_or_else(|| bad("hook", format!("{h:?} is not a hook; known hooks: trip")))
            })
            .transpose()?;
        let city = raw
            .city
            .as_deref()
            .map(|c| {
                crate::domain::CityCode::parse(c)
                    .map(|c| c.as_str().to_owned())
                    .map_err(|e| bad("city", e.to_string()))
            })
            .transpose()?;
        let trip_id = raw
            .trip_id
            .as_deref()
            .map(|t| {
                crate::domain::TripId::parse(t)
                    .map(|t| t.as_str().to_owned())
                    .map_err(|e| bad("trip_id", e.to_string()))
            })
            .transpose()?;
        let subject_refs = match raw.subject.as_deref() {
            None => Vec::new(),
            Some(s) => {
                let subject = SubjectId::parse(s).map_err(|e| bad("subject", e.to_string()))?;
                keys.all_subject_refs(&subject)
            }
        };
        let clients = match raw.client.as_deref() {
            None => Vec::new(),
            Some(c) if crate::auth::is_client_name(c) => vec![c.to_owned()],
            Some(c) => {
                return Err(bad(
                    "client",
                    format!("{c:?} is not a client name (1 to 64 of a-z, A-Z, 0-9, '.', '_', '-')"),
                ))
            }
        };
        Ok(Self {
            from_us,
            to_us,
            decision,
            reason,
            city,
            hook,
            trip_id,
            subject_refs,
            clients,
            cities: Vec::new(),
            with_appeals: false,
        })
    }
}

/// Refuses a query parameter not in `known`: a misspelt filter would
/// silently widen the answer.
pub fn check_known<'a>(
    params: impl IntoIterator<Item = &'a String>,
    known: &[&str],
) -> Result<(), FilterError> {
    let mut unknown: Vec<&String> = params
        .into_iter()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(first) => {
            let mut known = known.to_vec();
            known.sort_unstable();
            Err(bad(
                "query",
                format!(
                    "unknown parameter {first:?}; known parameters: {}",
                    known.join(", ")
                ),
            ))
        }
    }
}

pub fn parse_limit(raw: Option<&str>) -> Result<u32, FilterError> {
    match raw {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
            _ => Err(bad(
                "limit",
                format!("must be a whole number from 1 to {MAX_PAGE_LIMIT}, not {v:?}"),
            )),
        },
    }
}

/// Where the next page starts: after (decided_at, decision_id) in
/// newest-first order. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub decided_at_us: i64,
    pub decision_id: String,
}

impl Cursor {
    pub fn after(record: &SealedRecord) -> Self {
        Self {
            decided_at_us: record.record.decided_at_us,
            decision_id: record.record.decision_id.clone(),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.decided_at_us, self.decision_id))
    }

    pub fn decode(raw: &str) -> Result<Self, FilterError> {
        let malformed = || {
            bad(
                "cursor",
                "is malformed; pass back the next_cursor of a previous page unchanged",
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| malformed())?;
        let text = String::from_utf8(bytes).map_err(|_| malformed())?;
        let (at, id) = text.split_once(':').ok_or_else(malformed)?;
        let decided_at_us = at.parse().map_err(|_| malformed())?;
        let id = uuid::Uuid::parse_str(id).map_err(|_| malformed())?;
        Ok(Self {
            decided_at_us,
            decision_id: id.to_string(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<SealedRecord>,
    pub next_cursor: Option<Cursor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Reason,
    City,
    Hook,
    Hour,
}

impl GroupBy {
    pub fn parse(raw: Option<&str>) -> Result<Self, FilterError> {
        match raw {
            Some("reason") | None => Ok(GroupBy::Reason),
            Some("city") => Ok(GroupBy::City),
            Some("hook") => Ok(GroupBy::Hook),
            Some("hour") => Ok(GroupBy::Hour),
            Some(other) => Err(bad(
                "group_by",
                format!("{other:?} is not one of reason, city, hook, hour"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SummaryRow {
    pub key: String,
    pub count: u64,
}

/// A bound SQL parameter.
#[derive(Debug, Clone)]
pub enum SqlValue {
    Int(i64),
    Text(String),
    Bool(bool),
    /// A NULL of a text column.
    Null,
}

/// A WHERE clause with its parameters; `placeholder(n)` renders the n-th
/// (1-based) parameter in the dialect at hand (`?n` or `$n`).
pub struct SqlWhere {
    pub clause: String,
    pub params: Vec<SqlValue>,
}

impl SqlWhere {
    pub fn build(
        filter: &DecisionFilter,
        cursor: Option<&Cursor>,
        dialect: &super::store::Dialect,
    ) -> Self {
        let placeholder = dialect.placeholder;
        let mut conditions: Vec<String> = Vec::new();
        let mut params: Vec<SqlValue> = Vec::new();
        let bind = |value: SqlValue, params: &mut Vec<SqlValue>| {
            params.push(value);
            placeholder(params.len())
        };
        if let Some(from) = filter.from_us {
            conditions.push(format!(
                "decided_at >= {}",
                bind(SqlValue::Int(from), &mut params)
            ));
        }
        if let Some(to) = filter.to_us {
            conditions.push(format!(
                "decided_at < {}",
                bind(SqlValue::Int(to), &mut params)
            ));
        }
        if let Some(decision) = filter.decision {
            conditions.push(format!(
                "decision = {}",
                bind(SqlValue::Text(decision.into()), &mut params)
            ));
        } else if !filter.with_appeals {
            conditions.push("decision IN ('allow', 'reject')".to_owned());
        }
        if let Some(reason) = filter.reason {
            let bit = super::record::reason_bit(reason);
            conditions.push(format!(
                "(reason_mask & {}) <> 0",
                bind(SqlValue::Int(bit), &mut params)
            ));
        }
        if let Some(city) = &filter.city {
            conditions.push(format!(
                "city = {}",
                bind(SqlValue::Text(city.clone()), &mut params)
            ));
        }
        if !filter.cities.is_empty() {
            let mut bound = |c: &String| bind(SqlValue::Text(c.clone()), &mut params);
            let cities: Vec<String> = filter.cities.iter().map(&mut bound).collect();
            conditions.push(format!("city IN ({})", cities.join(", ")));
        }
        if !filter.clients.is_empty() {
            // The client is the detail's last field: `,"client":"<name>"}`
            // ends it exactly (names need no JSON escaping, and a quote
            // inside any string of the detail is escaped).
            let ends: Vec<String> = filter
                .clients
                .iter()
                .map(|c| {
                    let p = bind(SqlValue::Text(format!(r#","client":"{c}"}}"#)), &mut params);
                    (dialect.detail_ends_with)(&p)
                })
                .collect();
            conditions.push(format!("({})", ends.join(" OR ")));
        }
        if let Some(hook) = filter.hook {
            conditions.push(format!(
                "hook = {}",
                bind(SqlValue::Text(hook.as_str().into()), &mut params)
            ));
        }
        use super::store::{lookup_key, Lookups};
        if let Some(trip_id) = &filter.trip_id {
            let value = bind(SqlValue::Text(trip_id.clone()), &mut params);
            if let Lookups::DerivedIndex = dialect.lookups {
                let key = bind(SqlValue::Int(lookup_key(trip_id)), &mut params);
                conditions.push(format!(
                    "rowid IN (SELECT row FROM idx.trip_rows WHERE \
                     run IN (SELECT run FROM idx.index_runs) AND trip_key = {key})"
                ));
            }
            conditions.push(format!("trip_id = {value}"));
        }
        if !filter.subject_refs.is_empty() {
            // Rows filed under one of the refs' keys, and among them those
            // whose record names one of the refs: a key shared by two refs
            // never returns the other's decisions.
            let keys: Vec<String> = filter
                .subject_refs
                .iter()
                .map(|r| bind(SqlValue::Int(lookup_key(r)), &mut params))
                .collect();
            let named: Vec<String> = filter
                .subject_refs
                .iter()
                .map(|r| (dialect.detail_contains)(&bind(SqlValue::Text(r.clone()), &mut params)))
                .collect();
            let filed = match dialect.lookups {
                Lookups::Tables => format!(
                    "decision_id IN (SELECT decision_id FROM audit_subject_keys WHERE subject_key IN ({}))",
                    keys.join(", ")
                ),
                Lookups::DerivedIndex => format!(
                    "rowid IN (SELECT row FROM idx.subject_rows WHERE \
                     run IN (SELECT run FROM idx.index_runs) AND subject_key IN ({}))",
                    keys.join(", ")
                ),
            };
            conditions.push(format!("{filed} AND ({})", named.join(" OR ")));
        }
        if let Some(cursor) = cursor {
            // The plain bound first: an index on decided_at starts there
            // (behind an OR alone, PostgreSQL scanned from the top of the
            // range on every page, so a long export went quadratic).
            let bound = bind(SqlValue::Int(cursor.decided_at_us), &mut params);
            let at = bind(SqlValue::Int(cursor.decided_at_us), &mut params);
            let at_again = bind(SqlValue::Int(cursor.decided_at_us), &mut params);
            let id = bind(SqlValue::Text(cursor.decision_id.clone()), &mut params);
            conditions.push(format!(
                "decided_at <= {bound} AND (decided_at < {at} OR (decided_at = {at_again} AND decision_id < {id}))"
            ));
        }
        let clause = if conditions.is_empty() {
            "TRUE".to_owned()
        } else {
            conditions.join(" AND ")
        };
        Self { clause, params }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            decided_at_us: 1_764_000_000_000_000,
            decision_id: uuid::Uuid::now_v7().to_string(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert_eq!(Cursor::decode("!!!").unwrap_err().param, "cursor");
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode("12:nope"))
                .unwrap_err()
                .param,
            "cursor"
        );
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_PAGE_LIMIT);
        assert_eq!(parse_limit(Some("1000")).unwrap(), 1000);
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("1001")).is_err());
        assert!(parse_limit(Some("-1")).is_err());
    }
}
