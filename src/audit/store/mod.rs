//! Where audit records live: an SQLite file (embedded default) or
//! PostgreSQL (shared by replicas). Both hold the same schema and answer the
//! same queries with the same semantics; this enum is all the rest of the
//! service sees.
//!
//! Schema: `audit_decisions` holds one row per decision (indexed columns for
//! the filters, reasons and parties in a JSON `detail` column, the chain
//! link); subject refs are filed under 64-bit keys (`lookup_key`) for the
//! `subject` filter (in PostgreSQL the `audit_subject_keys` table beside it,
//! in SQLite a derived index file), and the record itself is then checked
//! for the ref;
//! `audit_checkpoints` keeps, per chain, the last purged link.

pub mod appeals;
mod postgres;
pub use postgres::requires_tls as postgres_requires_tls;
mod sqlite;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub use postgres::PostgresStore;
pub use sqlite::{
    memory_used as sqlite_memory_used, page_pool_bytes as sqlite_page_pool_bytes,
    reserve_page_pool as reserve_sqlite_page_pool, JournalAccess, SqliteStore,
};

use super::chain::{ChainHead, StoredLink};
use super::query::{Cursor, DecisionFilter, GroupBy, Page, SummaryRow};
use super::record::{AuditRecord, Hook, RecordDetail, SealedRecord, FORMAT};
use super::signing::{HeadSigner, SignedHead};

/// What went wrong in a store; the underlying error is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("postgres pool configuration")]
    CreatePool(#[from] deadpool_postgres::CreatePoolError),
    #[error("audit store task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("audit journal: cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit store: {0}")]
    Invalid(String),
    #[error("audit store: {what} took longer than {after:?}")]
    TimedOut { what: &'static str, after: Duration },
}

/// Columns of one `audit_decisions` row, in `SELECT_COLUMNS` order.
#[derive(Debug, Clone)]
pub struct Row {
    pub decision_id: String,
    pub instance_id: String,
    pub seq: i64,
    pub decided_at_us: i64,
    pub hook: String,
    pub trip_id: String,
    pub city: String,
    pub decision: String,
    pub degraded: bool,
    pub policy_version: String,
    pub key_id: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
    /// The record format the row was written in.
    pub format: i64,
}

pub const SELECT_COLUMNS: &str = "decision_id, instance_id, seq, decided_at, hook, trip_id, city, \
     decision, degraded, policy_version, key_id, detail, prev_hash, hash, format";

impl Row {
    /// The row of a sealed record, and its reason bits (consumes it: the
    /// hot path copies no string of it).
    pub fn from_sealed(sealed: SealedRecord) -> (Self, i64) {
        let reason_mask = sealed.record.reason_mask();
        let r = sealed.record;
        let row = Self {
            decision_id: r.decision_id,
            instance_id: r.instance_id,
            seq: sealed.seq,
            decided_at_us: r.decided_at_us,
            hook: r.hook.as_str().to_owned(),
            trip_id: r.trip_id,
            city: r.city,
            decision: r.decision,
            degraded: r.degraded,
            policy_version: r.policy_version,
            key_id: r.key_id,
            detail: sealed.detail,
            prev_hash: sealed.prev_hash,
            hash: sealed.hash,
            format: i64::from(r.format),
        };
        (row, reason_mask)
    }

    fn record(&self) -> Result<AuditRecord, String> {
        let detail: RecordDetail =
            serde_json::from_str(&self.detail).map_err(|e| format!("detail column: {e}"))?;
        let hook =
            Hook::parse(&self.hook).ok_or_else(|| format!("unknown hook {:?}", self.hook))?;
        Ok(AuditRecord {
            format: u32::try_from(self.format).unwrap_or(FORMAT),
            decision_id: self.decision_id.clone(),
            decided_at_us: self.decided_at_us,
            hook,
            trip_id: self.trip_id.clone(),
            city: self.city.clone(),
            decision: self.decision.clone(),
            degraded: self.degraded,
            policy_version: self.policy_version.clone(),
            instance_id: self.instance_id.clone(),
            key_id: self.key_id.clone(),
            reasons: detail.reasons,
            parties: detail.parties,
            appeal: detail.appeal,
            client: detail.client,
        })
    }

    pub fn into_link(self) -> StoredLink {
        let record = self.record();
        StoredLink {
            format: self.format,
            instance_id: self.instance_id,
            seq: self.seq,
            decision_id: self.decision_id,
            prev_hash: self.prev_hash,
            hash: self.hash,
            record,
        }
    }

    pub fn into_sealed(self) -> Result<SealedRecord, StoreError> {
        let record = self
            .record()
            .map_err(|e| StoreError::Invalid(format!("record {}: {e}", self.decision_id)))?;
        Ok(SealedRecord {
            record,
            seq: self.seq,
            prev_hash: self.prev_hash,
            hash: self.hash,
            detail: self.detail,
        })
    }
}

pub fn page_from_rows(rows: Vec<Row>, limit: u32) -> Result<Page, StoreError> {
    let mut records = rows
        .into_iter()
        .map(Row::into_sealed)
        .collect::<Result<Vec<_>, _>>()?;
    // One row more than asked tells whether a next page exists.
    let next_cursor = if records.len() > limit as usize {
        records.truncate(limit as usize);
        records.last().map(Cursor::after)
    } else {
        None
    };
    Ok(Page {
        records,
        next_cursor,
    })
}

/// The grouping expression of a summary query (reasons are counted apart).
fn group_expression(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::City => "city",
        GroupBy::Hook => "hook",
        GroupBy::Hour => "(decided_at / 3600000000) * 3600000000",
        GroupBy::Reason => "",
    }
}

/// Where a walk over every link (chain by chain, in order) stands.
#[derive(Debug, Clone)]
pub struct LinkPosition {
    pub instance_id: String,
    pub seq: i64,
}

#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite {
        path: PathBuf,
        busy_timeout_ms: u64,
        log_segment_bytes: u64,
        journal: JournalAccess,
    },
    Postgres {
        url: String,
        pool_size: usize,
        /// TLS and password: `sslmode` in the URL says whether TLS is used
        /// (`require`: always; `prefer`: when the server offers it).
        access: PostgresAccess,
    },
}

/// How to reach PostgreSQL beyond its URL.
#[derive(Debug, Clone)]
pub struct PostgresAccess {
    /// PEM CA to verify the server with (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// A file holding the password (else the URL's, if any).
    pub password_file: Option<PathBuf>,
    /// How long the writer's statements (a batch of decisions, a signed
    /// head, the lookups that find where its chain continues) may wait for
    /// a lock or the server before they give up; twice that if the server
    /// does not answer at all (`audit.postgres_write_timeout_ms`).
    pub write_timeout: Duration,
}

/// `config/base.toml`'s: what `tripgate audit` commands reach PostgreSQL
/// with when their flags say nothing else.
impl Default for PostgresAccess {
    fn default() -> Self {
        Self {
            ca_file: None,
            password_file: None,
            write_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub enum AuditStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AuditStore {
    /// Opens the store and creates the schema if needed.
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        match config {
            StoreConfig::Sqlite {
                path,
                busy_timeout_ms,
                log_segment_bytes,
                journal,
            } => Ok(AuditStore::Sqlite(
                SqliteStore::open(path.clone(), *busy_timeout_ms, *log_segment_bytes, *journal)
                    .await?,
            )),
            StoreConfig::Postgres {
                url,
                pool_size,
                access,
            } => Ok(AuditStore::Postgres(
                PostgresStore::open(url, *pool_size, access).await?,
            )),
        }
    }

    /// Commits the batch in one transaction: all of it or none of it.
    pub async fn append(&self, batch: Vec<SealedRecord>) -> Result<(), StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.append(batch).await,
            AuditStore::Postgres(s) => s.append(batch).await,
        }
    }

    /// `append` from a thread that may block (the audit writer's): SQLite
    /// writes and syncs its log right on it; PostgreSQL's client is async,
    /// so it is driven on `runtime`.
    pub fn append_blocking(
        &self,
        batch: Vec<SealedRecord>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(), StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.append_blocking(batch),
            AuditStore::Postgres(s) => runtime.block_on(s.append(batch)),
        }
    }

    /// Records durable but not yet in the queryable store (SQLite's log).
    pub fn unloaded(&self) -> usize {
        match self {
            AuditStore::Sqlite(s) => s.unloaded(),
            AuditStore::Postgres(_) => 0,
        }
    }

    /// Whether a write could start now (takes and releases the write lock).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.ping().await,
            AuditStore::Postgres(s) => s.ping().await,
        }
    }

    pub async fn chain_head(&self, instance_id: &str) -> Result<Option<ChainHead>, StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.chain_head(instance_id).await,
            AuditStore::Postgres(s) => s.chain_head(instance_id).await,
        }
    }

    /// Newest first; `limit + 1` rows are fetched to know about a next page.
    pub async fn page(
        &self,
        filter: &DecisionFilter,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let rows = match self {
            AuditStore::Sqlite(s) => s.page(filter, cursor, limit + 1).await?,
            AuditStore::Postgres(s) => s.page(filter, cursor, limit + 1).await?,
        };
        page_from_rows(rows, limit)
    }

    pub async fn get(&self, decision_id: &str) -> Result<Option<SealedRecord>, StoreError> {
        let row = match self {
            AuditStore::Sqlite(s) => s.get(decision_id).await?,
            AuditStore::Postgres(s) => s.get(decision_id).await?,
        };
        row.map(Row::into_sealed).transpose()
    }

    pub async fn summary(
        &self,
        filter: &DecisionFilter,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        let mut rows = match self {
            AuditStore::Sqlite(s) => s.summary(filter, group_by).await?,
            AuditStore::Postgres(s) => s.summary(filter, group_by).await?,
        };
        if group_by == GroupBy::Hour {
            for row in &mut rows {
                if let Ok(us) = row.key.parse::<i64>() {
                    if let Some(at) = chrono::DateTime::from_timestamp_micros(us) {
                        row.key = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    }
                }
            }
        }
        Ok(rows)
    }

    /// The newest signed head of every chain.
    pub async fn heads(&self) -> Result<Vec<SignedHead>, StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.heads().await,
            AuditStore::Postgres(s) => s.heads().await,
        }
    }

    /// Keeps `head` as its chain's newest signed head (never moves back).
    pub async fn put_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.put_head(head).await,
            AuditStore::Postgres(s) => s.put_head(head).await,
        }
    }

    /// The hash of link `seq` of a chain, if it is stored.
    pub async fn link_at(&self, instance_id: &str, seq: i64) -> Result<Option<String>, StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.link_at(instance_id, seq).await,
            AuditStore::Postgres(s) => s.link_at(instance_id, seq).await,
        }
    }

    /// Up to `limit` links after `after` in (instance_id, seq) order, and
    /// where the next call continues.
    pub async fn links_after(
        &self,
        after: Option<LinkPosition>,
        limit: u32,
    ) -> Result<(Vec<StoredLink>, Option<LinkPosition>), StoreError> {
        let (rows, next) = match self {
            AuditStore::Sqlite(s) => s.links_after(after, limit).await?,
            AuditStore::Postgres(s) => s.links_after(after, limit).await?,
        };
        Ok((rows.into_iter().map(Row::into_link).collect(), next))
    }

    /// Per chain, the signed checkpoint retention left (an empty signature:
    /// unsigned).
    pub async fn checkpoints(&self) -> Result<HashMap<String, SignedHead>, StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.checkpoints().await,
            AuditStore::Postgres(s) => s.checkpoints().await,
        }
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.count().await,
            AuditStore::Postgres(s) => s.count().await,
        }
    }

    /// Rows of a query of the appeals table, columns read as `kinds` says.
    async fn query_cells(
        &self,
        (sql, params): (String, Vec<super::query::SqlValue>),
        kinds: Vec<appeals::ColumnKind>,
    ) -> Result<Vec<Vec<appeals::SqlCell>>, StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.query_cells(sql, params, kinds).await,
            AuditStore::Postgres(s) => s.query_cells(sql, params, kinds).await,
        }
    }

    async fn appeal_rows(
        &self,
        query: (String, Vec<super::query::SqlValue>),
    ) -> Result<Vec<appeals::AppealRow>, StoreError> {
        let kinds = (0..appeals::APPEAL_COLUMN_COUNT)
            .map(appeals::column_kind)
            .collect();
        self.query_cells(query, kinds)
            .await?
            .into_iter()
            .map(|cells| {
                appeals::AppealRow::from_cells(cells)
                    .map_err(|e| StoreError::Invalid(format!("audit_appeals: {e}")))
            })
            .collect()
    }

    /// A page of appeals, oldest first, and where the next one starts.
    pub async fn appeals_page(
        &self,
        filter: &appeals::AppealFilter,
        cursor: Option<&appeals::AppealCursor>,
        limit: u32,
    ) -> Result<(Vec<appeals::AppealRow>, Option<appeals::AppealCursor>), StoreError> {
        let mut rows = self
            .appeal_rows(appeals::page_sql(filter, cursor, limit + 1))
            .await?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| appeals::AppealCursor {
                filed_at_us: r.filed_at_us,
                appeal_id: r.appeal_id.clone(),
            })
        } else {
            None
        };
        Ok((rows, next))
    }

    pub async fn appeal(&self, appeal_id: &str) -> Result<Option<appeals::AppealRow>, StoreError> {
        let query = (
            appeals::get_sql(),
            vec![super::query::SqlValue::Text(appeal_id.to_owned())],
        );
        Ok(self.appeal_rows(query).await?.into_iter().next())
    }

    pub async fn appeal_counts(
        &self,
        filter: &appeals::AppealFilter,
    ) -> Result<appeals::AppealCounts, StoreError> {
        use appeals::ColumnKind::{Int, Text};
        let rows = self
            .query_cells(appeals::counts_sql(filter), vec![Text, Text, Int])
            .await?;
        Ok(appeals::AppealCounts::from_rows(rows.into_iter().filter_map(
            |row| match row.as_slice() {
                [appeals::SqlCell::Text(Some(state)), appeals::SqlCell::Text(outcome), appeals::SqlCell::Int(Some(n))] => {
                    Some((state.clone(), outcome.clone().unwrap_or_default(), *n))
                }
                _ => None,
            },
        )))
    }

    /// How many appeals are open, and when the oldest was filed.
    pub async fn open_appeals(&self) -> Result<(u64, Option<i64>), StoreError> {
        use appeals::ColumnKind::Int;
        let rows = self
            .query_cells((appeals::OPEN_SQL.to_owned(), Vec::new()), vec![Int, Int])
            .await?;
        Ok(match rows.first().map(Vec::as_slice) {
            Some([appeals::SqlCell::Int(Some(n)), appeals::SqlCell::Int(oldest)]) if *n > 0 => {
                (*n as u64, *oldest)
            }
            _ => (0, None),
        })
    }

    /// Runs `work` where no other appeal is being filed or resolved: in
    /// PostgreSQL under an advisory lock every replica takes; an SQLite
    /// store has one process, whose appeals service holds its own lock.
    pub async fn with_appeal_lock<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = T>,
    {
        match self {
            AuditStore::Sqlite(_) => Ok(work.await),
            AuditStore::Postgres(s) => s.with_appeal_lock(work).await,
        }
    }

    /// Deletes, chain by chain, the records decided before `cutoff_us`,
    /// keeping the last deleted link as the chain's checkpoint.
    pub async fn purge_before(
        &self,
        cutoff_us: i64,
        signer: &HeadSigner,
    ) -> Result<u64, StoreError> {
        match self {
            AuditStore::Sqlite(s) => s.purge_before(cutoff_us, signer).await,
            AuditStore::Postgres(s) => s.purge_before(cutoff_us, signer).await,
        }
    }
}

/// PostgreSQL indexes every lookup in the audit tables. (SQLite keeps the
/// audit file append-only, with the page-order index alone, and indexes the
/// rest in a derived file: see `sqlite::Indexer`.)
pub const POSTGRES_SCHEMA: &[&str] = &[
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_decisions_id ON audit_decisions (decision_id)",
    "CREATE INDEX IF NOT EXISTS audit_decisions_decision_time ON audit_decisions (decision, decided_at, decision_id)",
    "CREATE INDEX IF NOT EXISTS audit_decisions_city_time ON audit_decisions (city, decided_at, decision_id)",
    "CREATE INDEX IF NOT EXISTS audit_decisions_trip ON audit_decisions (trip_id)",
    // A subject's decisions: its ref's 64-bit `lookup_key` (an index entry
    // of 8 bytes and a decision id; the ref's 64 hex characters made the
    // index five times wider and every insertion a text comparison). A key
    // shared by two refs only widens the candidates: queries check the
    // record's detail for the ref itself.
    "CREATE TABLE IF NOT EXISTS audit_subject_keys (
        subject_key BIGINT NOT NULL,
        decision_id TEXT NOT NULL,
        PRIMARY KEY (subject_key, decision_id)
    )",
];

/// Moves the rows of the `audit_subjects` table earlier builds kept (one
/// per subject ref and decision) to `audit_subject_keys`, under the same
/// key `lookup_key` computes (the first 8 bytes of the ref's SHA-256, big
/// endian), and drops it. Into an empty `audit_subject_keys` (the first
/// start of this build) the rows go before its primary key is built: one
/// sort instead of an index insertion per row. Into one that has rows (an
/// earlier build's replica recreated the old table after the move) they
/// are merged. Runs under the schema lock; nothing when the old table is
/// gone.
pub const POSTGRES_MOVE_SUBJECTS: &str = "DO $$ BEGIN
    IF to_regclass('audit_subjects') IS NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM audit_subject_keys) THEN
        INSERT INTO audit_subject_keys (subject_key, decision_id)
            SELECT DISTINCT ('x' || substr(encode(sha256(convert_to(subject_ref, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint,
                   decision_id
            FROM audit_subjects
            ON CONFLICT DO NOTHING;
    ELSE
        DROP TABLE audit_subject_keys;
        CREATE TABLE audit_subject_keys AS
            SELECT DISTINCT ('x' || substr(encode(sha256(convert_to(subject_ref, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint AS subject_key,
                   decision_id
            FROM audit_subjects;
        ALTER TABLE audit_subject_keys
            ALTER COLUMN subject_key SET NOT NULL,
            ALTER COLUMN decision_id SET NOT NULL,
            ADD PRIMARY KEY (subject_key, decision_id);
    END IF;
    DROP TABLE audit_subjects;
END $$";

/// How the two engines' SQL differs.
pub struct Dialect {
    /// The n-th (1-based) parameter: `?n` or `$n`.
    pub placeholder: fn(usize) -> String,
    /// How the subject and trip filters find their decisions.
    pub lookups: Lookups,
    /// The condition "the detail column ends with the text of parameter
    /// `p`" (the client filter: a record's client is the last field of its
    /// detail).
    pub detail_ends_with: fn(&str) -> String,
    /// The condition "the detail column contains the text of parameter
    /// `p`" (a subject ref found under its key is checked in the record).
    pub detail_contains: fn(&str) -> String,
}

/// Where subject refs and trip ids are indexed.
pub enum Lookups {
    /// Beside the records: the `audit_subject_keys` table (subjects by
    /// `lookup_key`) and an index on `trip_id` (PostgreSQL).
    Tables,
    /// In the derived index file attached as `idx` (SQLite): row ids by run
    /// and by `lookup_key` of the value; the record itself is then checked
    /// for the value, so a key collision can never return a wrong record.
    DerivedIndex,
}

/// The 64-bit key under which the derived index files a subject ref or a
/// trip id: a prefix of its SHA-256, stable across versions and machines.
pub fn lookup_key(value: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(value.as_bytes());
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(prefix)
}

/// The schema, shared by both engines (types both understand).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_decisions (
        decision_id TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        decided_at BIGINT NOT NULL,
        hook TEXT NOT NULL,
        trip_id TEXT NOT NULL,
        city TEXT NOT NULL,
        decision TEXT NOT NULL,
        degraded BOOLEAN NOT NULL,
        policy_version TEXT NOT NULL,
        key_id TEXT NOT NULL,
        reason_mask BIGINT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        format BIGINT NOT NULL DEFAULT 1
    )",
    "CREATE INDEX IF NOT EXISTS audit_decisions_time ON audit_decisions (decided_at, decision_id)",
    // Chains are verified and resumed in (instance, seq) order; appends go
    // to the end of each instance's range.
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_decisions_chain ON audit_decisions (instance_id, seq)",
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (
        instance_id TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        signed_at BIGINT NOT NULL DEFAULT 0,
        key_id TEXT NOT NULL DEFAULT '',
        signature TEXT NOT NULL DEFAULT ''
    )",
    // The newest signed head of each chain (a closed chain's last one).
    "CREATE TABLE IF NOT EXISTS audit_heads (
        instance_id TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        signed_at BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        kind TEXT NOT NULL
    )",
];

/// Columns added to tables of stores made by earlier builds: (table,
/// column, definition). Both engines take `ALTER TABLE .. ADD COLUMN`.
pub const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("audit_decisions", "format", "BIGINT NOT NULL DEFAULT 1"),
    (
        "audit_checkpoints",
        "signed_at",
        "BIGINT NOT NULL DEFAULT 0",
    ),
    ("audit_checkpoints", "key_id", "TEXT NOT NULL DEFAULT ''"),
    ("audit_checkpoints", "signature", "TEXT NOT NULL DEFAULT ''"),
];

/// The columns of a signed head or checkpoint row, in order.
pub const HEAD_COLUMNS: &str = "instance_id, seq, hash, signed_at, key_id, signature";

/// Upserts the newest head of a chain; never moves a chain's head back.
pub const UPSERT_HEAD: &str =
    "INSERT INTO audit_heads (instance_id, seq, hash, signed_at, key_id, signature, kind) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (instance_id) DO UPDATE SET \
     seq = excluded.seq, hash = excluded.hash, signed_at = excluded.signed_at, \
     key_id = excluded.key_id, signature = excluded.signature, kind = excluded.kind \
     WHERE excluded.seq >= audit_heads.seq";

/// Upserts a chain's checkpoint with its signature.
pub const UPSERT_CHECKPOINT: &str =
    "INSERT INTO audit_checkpoints (instance_id, seq, hash, signed_at, key_id, signature) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instance_id) DO UPDATE SET \
     seq = excluded.seq, hash = excluded.hash, signed_at = excluded.signed_at, \
     key_id = excluded.key_id, signature = excluded.signature";

/// A page of decisions matching `filter` after `cursor`, newest first.
pub fn page_sql(
    filter: &DecisionFilter,
    cursor: Option<&Cursor>,
    fetch: u32,
    dialect: &Dialect,
) -> (String, Vec<super::query::SqlValue>) {
    let filter_sql = super::query::SqlWhere::build(filter, cursor, dialect);
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM audit_decisions WHERE {} \
         ORDER BY decided_at DESC, decision_id DESC LIMIT {fetch}",
        filter_sql.clause
    );
    (sql, filter_sql.params)
}

/// The summary query for `group_by`; reasons are counted with one sum per
/// code (a decision with two reasons counts once under each).
pub fn summary_sql(
    filter: &DecisionFilter,
    group_by: GroupBy,
    dialect: &Dialect,
) -> (String, Vec<super::query::SqlValue>) {
    let filter_sql = super::query::SqlWhere::build(filter, None, dialect);
    let sql = if group_by == GroupBy::Reason {
        let sums: Vec<String> = crate::domain::ReasonCode::ALL
            .iter()
            .map(|code| {
                format!(
                    "COALESCE(SUM(CASE WHEN (reason_mask & {}) <> 0 THEN 1 ELSE 0 END), 0)",
                    super::record::reason_bit(*code)
                )
            })
            .collect();
        format!(
            "SELECT {} FROM audit_decisions WHERE {}",
            sums.join(", "),
            filter_sql.clause
        )
    } else {
        let expression = group_expression(group_by);
        format!(
            "SELECT CAST({expression} AS TEXT) AS key, COUNT(*) FROM audit_decisions WHERE {} \
             GROUP BY {expression} ORDER BY {expression}",
            filter_sql.clause
        )
    };
    (sql, filter_sql.params)
}

/// Turns the one-row answer of a reason summary into rows, skipping zeros.
pub fn reason_rows(counts: &[i64]) -> Vec<SummaryRow> {
    crate::domain::ReasonCode::ALL
        .iter()
        .zip(counts)
        .filter(|(_, count)| **count > 0)
        .map(|(code, count)| SummaryRow {
            key: code.as_str().to_owned(),
            count: *count as u64,
        })
        .collect()
}
