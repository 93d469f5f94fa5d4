//! The shared audit store: PostgreSQL through a deadpool connection pool,
//! over TLS when the URL's `sslmode` says so (`audit.postgres_ca_file`,
//! else the system's roots), with the password from
//! `audit.postgres_password_file` when one is set.
//!
//! A batch is one transaction of two statements whatever its size: the
//! columns travel as arrays and `UNNEST` turns them into rows; BEGIN, the
//! statements and COMMIT go out together, one round trip per batch. Replicas
//! write side by side without conflicts: each appends only to its own chain
//! (`instance_id`), and decision ids are UUIDv7. Schema creation takes an
//! advisory lock so replicas starting together do not race.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::{ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::types::ToSql;

use super::appeals::{
    AppealChange, ColumnKind, SqlCell, APPEALS_SCHEMA, PURGE_SQL as PURGE_APPEALS,
};
use super::{
    lookup_key, page_sql, reason_rows, summary_sql, Dialect, LinkPosition, Lookups, Row,
    StoreError, ADDED_COLUMNS, HEAD_COLUMNS, POSTGRES_MOVE_SUBJECTS, POSTGRES_SCHEMA, SCHEMA,
    SELECT_COLUMNS, UPSERT_CHECKPOINT, UPSERT_HEAD,
};
use crate::audit::chain::ChainHead;
use crate::audit::query::{Cursor, DecisionFilter, GroupBy, SqlValue, SummaryRow};
use crate::audit::record::SealedRecord;
use crate::audit::signing::{HeadKind, HeadSigner, SignedHead};

/// Any constant works; it only has to be the same for every replica.
const SCHEMA_LOCK: i64 = 0x7472_6970_6761_7465; // "tripgate"
/// The lock appeals are filed and resolved under (see `with_appeal_lock`).
const APPEAL_LOCK: i64 = SCHEMA_LOCK + 1;

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The server-side bound of the writer's statements (see the module's
    /// documentation).
    write_timeout: Duration,
    /// Opens a transaction with that bound.
    begin_bounded: String,
}

/// Subjects and trips are indexed in the audit tables themselves.
const DIALECT: Dialect = Dialect {
    placeholder: |n| format!("${n}"),
    lookups: Lookups::Tables,
    detail_ends_with: |p| format!("right(detail, length({p})) = {p}"),
    detail_contains: |p| format!("strpos(detail, {p}) > 0"),
};

fn boxed(params: Vec<SqlValue>) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .into_iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                SqlValue::Int(i) => Box::new(i),
                SqlValue::Text(t) => Box::new(t),
                SqlValue::Bool(b) => Box::new(b),
                SqlValue::Null => Box::new(None::<String>),
            }
        })
        .collect()
}

/// The statement that stores a batch's records: the columns as arrays,
/// rows by `UNNEST`.
const INSERT_DECISIONS: &str = "INSERT INTO audit_decisions (decision_id, instance_id, seq, \
     decided_at, hook, trip_id, city, decision, degraded, policy_version, key_id, reason_mask, \
     detail, prev_hash, hash, format) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::bool[], $10::text[], $11::text[], $12::int8[], \
     $13::text[], $14::text[], $15::text[], $16::int8[])";

/// A batch's subject keys, one row per distinct key of a record.
const INSERT_SUBJECTS: &str = "INSERT INTO audit_subject_keys (subject_key, decision_id) \
     SELECT * FROM UNNEST($1::int8[], $2::text[])";

fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn row_of(r: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    Ok(Row {
        decision_id: r.try_get(0)?,
        instance_id: r.try_get(1)?,
        seq: r.try_get(2)?,
        decided_at_us: r.try_get(3)?,
        hook: r.try_get(4)?,
        trip_id: r.try_get(5)?,
        city: r.try_get(6)?,
        decision: r.try_get(7)?,
        degraded: r.try_get(8)?,
        policy_version: r.try_get(9)?,
        key_id: r.try_get(10)?,
        detail: r.try_get(11)?,
        prev_hash: r.try_get(12)?,
        hash: r.try_get(13)?,
        format: r.try_get(14)?,
    })
}

fn head_of(r: &tokio_postgres::Row, kind: HeadKind) -> SignedHead {
    SignedHead {
        instance_id: r.get(0),
        seq: r.get(1),
        hash: r.get(2),
        signed_at_us: r.get(3),
        key_id: r.get(4),
        signature: r.get(5),
        kind,
    }
}

fn rows_of(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Row>, StoreError> {
    Ok(rows.iter().map(row_of).collect::<Result<Vec<_>, _>>()?)
}

/// Whether the URL asks for TLS: an `sslmode` other than `disable`.
pub fn uses_tls(url: &str) -> bool {
    url.parse::<tokio_postgres::Config>()
        .is_ok_and(|c| c.get_ssl_mode() != tokio_postgres::config::SslMode::Disable)
        && url.contains("sslmode=")
}

/// Whether the URL requires TLS (`sslmode=require`).
pub fn requires_tls(url: &str) -> bool {
    url.parse::<tokio_postgres::Config>()
        .is_ok_and(|c| c.get_ssl_mode() == tokio_postgres::config::SslMode::Require)
}

impl PostgresStore {
    pub async fn open(
        url: &str,
        pool_size: usize,
        access: &super::PostgresAccess,
    ) -> Result<Self, StoreError> {
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.to_owned());
        if let Some(path) = crate::tls::given(&access.password_file) {
            let password = crate::tls::read_secret_file(path)
                .map_err(|e| StoreError::Invalid(format!("audit.postgres_password_file: {e}")))?;
            config.password = Some(password);
        }
        let ca = crate::tls::given(&access.ca_file)
            .map(crate::tls::read)
            .transpose()
            .map_err(|e| StoreError::Invalid(format!("audit.postgres_ca_file: {e}")))?;
        config.connect_timeout = Some(Duration::from_secs(3));
        config.manager = Some(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        });
        let mut pool_config = PoolConfig::new(pool_size.max(1));
        pool_config.timeouts = Timeouts {
            wait: Some(Duration::from_secs(3)),
            create: Some(Duration::from_secs(3)),
            recycle: Some(Duration::from_secs(3)),
        };
        config.pool = Some(pool_config);
        // TLS when the URL's sslmode asks for it (require) or allows it
        // (prefer), the server's certificate always verified; a URL that
        // does not name an sslmode (or says disable) connects in clear.
        let pool = if uses_tls(url) {
            let roots = crate::tls::roots(ca.as_deref())
                .map_err(|e| StoreError::Invalid(format!("audit.postgres_ca_file: {e}")))?;
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new(crate::tls::client_config(roots));
            config.create_pool(Some(Runtime::Tokio1), tls)?
        } else {
            config.create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)?
        };
        let ms = access.write_timeout.as_millis().max(1);
        let store = Self {
            pool,
            write_timeout: access.write_timeout,
            begin_bounded: format!(
                "BEGIN; SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms}"
            ),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// The bound on this side of a piece of the writer's work.
    fn write_bound(&self) -> Duration {
        2 * self.write_timeout
    }

    /// What the writer's work on `client` came to within `write_bound`; a
    /// connection given up on is closed rather than pooled.
    fn settle<T>(
        &self,
        client: deadpool_postgres::Object,
        outcome: Result<Result<T, StoreError>, tokio::time::error::Elapsed>,
        what: &'static str,
    ) -> Result<T, StoreError> {
        outcome.unwrap_or_else(|_| {
            drop(deadpool_postgres::Object::take(client));
            Err(StoreError::TimedOut {
                what,
                after: self.write_bound(),
            })
        })
    }

    /// One row of `sql`, read in a transaction bounded like the writer's.
    async fn query_bounded(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &'static str,
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let read = async {
            let row = async {
                client.batch_execute(&self.begin_bounded).await?;
                client.query_opt(sql, params).await
            }
            .await;
            // Read only: the transaction ends either way.
            client.batch_execute("ROLLBACK").await?;
            Ok(row?)
        };
        let outcome = tokio::time::timeout(self.write_bound(), read).await;
        self.settle(client, outcome, what)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        for statement in SCHEMA.iter().chain(POSTGRES_SCHEMA).chain(APPEALS_SCHEMA) {
            tx.batch_execute(statement).await?;
        }
        tx.batch_execute(POSTGRES_MOVE_SUBJECTS).await?;
        for (table, column, definition) in ADDED_COLUMNS {
            tx.batch_execute(&format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}"
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn append(&self, batch: Vec<SealedRecord>) -> Result<(), StoreError> {
        let mut subject_keys = Vec::new();
        let mut subject_decisions = Vec::new();
        for sealed in &batch {
            let mut keys: Vec<i64> = sealed.record.subject_refs().map(lookup_key).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                subject_keys.push(key);
                subject_decisions.push(sealed.record.decision_id.clone());
            }
        }
        let (rows, masks): (Vec<Row>, Vec<i64>) = batch.into_iter().map(Row::from_sealed).unzip();
        let appeal_changes: Vec<AppealChange> = rows.iter().filter_map(AppealChange::of).collect();
        let column = |f: fn(&Row) -> String| rows.iter().map(f).collect::<Vec<String>>();
        let decision_ids = column(|r| r.decision_id.clone());
        let instance_ids = column(|r| r.instance_id.clone());
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let decided_ats: Vec<i64> = rows.iter().map(|r| r.decided_at_us).collect();
        let hooks = column(|r| r.hook.clone());
        let trip_ids = column(|r| r.trip_id.clone());
        let cities = column(|r| r.city.clone());
        let decisions = column(|r| r.decision.clone());
        let degradeds: Vec<bool> = rows.iter().map(|r| r.degraded).collect();
        let policy_versions = column(|r| r.policy_version.clone());
        let key_ids = column(|r| r.key_id.clone());
        let details = column(|r| r.detail.clone());
        let prev_hashes = column(|r| r.prev_hash.clone());
        let hashes = column(|r| r.hash.clone());
        let formats: Vec<i64> = rows.iter().map(|r| r.format).collect();

        let params: [&(dyn ToSql + Sync); 16] = [
            &decision_ids,
            &instance_ids,
            &seqs,
            &decided_ats,
            &hooks,
            &trip_ids,
            &cities,
            &decisions,
            &degradeds,
            &policy_versions,
            &key_ids,
            &masks,
            &details,
            &prev_hashes,
            &hashes,
            &formats,
        ];
        let appeal_params: Vec<Vec<Box<dyn ToSql + Sync + Send>>> = appeal_changes
            .iter()
            .map(|change| boxed(change.params().to_vec()))
            .collect();
        let appeal_refs: Vec<Vec<&(dyn ToSql + Sync)>> =
            appeal_params.iter().map(|p| refs(p)).collect();

        let client = self.client().await?;
        let write = async {
            let insert = client.prepare_cached(INSERT_DECISIONS).await?;
            let subjects = client.prepare_cached(INSERT_SUBJECTS).await?;
            // Prepared first: a statement given as text would be prepared
            // inside its future, and its execution sent after COMMIT.
            let mut appeal_statements = Vec::with_capacity(appeal_changes.len());
            for change in &appeal_changes {
                appeal_statements.push(client.prepare_cached(change.sql()).await?);
            }
            // One round trip: the statements are queued on the connection
            // in this order before any answer is awaited (tokio-postgres
            // sends a request when its future is first polled, and
            // `try_join` polls them in order). A failed statement aborts
            // the transaction and its COMMIT rolls back; the first error is
            // the batch's.
            let appeals = futures_util::future::try_join_all(
                appeal_statements
                    .iter()
                    .zip(&appeal_refs)
                    .map(|(statement, params)| client.execute(statement, params)),
            );
            let written = futures_util::future::try_join4(
                client.batch_execute(&self.begin_bounded),
                client.execute(&insert, &params),
                client.execute(&subjects, &[&subject_keys, &subject_decisions]),
                futures_util::future::try_join(appeals, client.batch_execute("COMMIT")),
            )
            .await;
            if let Err(error) = written {
                // Whatever was not sent or not answered: never hand a
                // connection back inside a transaction.
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(error.into());
            }
            Ok(())
        };
        let outcome = tokio::time::timeout(self.write_bound(), write).await;
        self.settle(client, outcome, "committing a batch of decisions")
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    pub async fn chain_head(&self, instance_id: &str) -> Result<Option<ChainHead>, StoreError> {
        const WHAT: &str = "reading a chain's head";
        let row = match self
            .query_bounded(
                "SELECT seq, hash FROM audit_decisions WHERE instance_id = $1 ORDER BY seq DESC LIMIT 1",
                &[&instance_id],
                WHAT,
            )
            .await?
        {
            Some(row) => Some(row),
            None => {
                self.query_bounded(
                    "SELECT seq, hash FROM audit_checkpoints WHERE instance_id = $1",
                    &[&instance_id],
                    WHAT,
                )
                .await?
            }
        };
        Ok(row.map(|r| ChainHead {
            seq: r.get(0),
            hash: r.get(1),
        }))
    }

    pub async fn page(
        &self,
        filter: &DecisionFilter,
        cursor: Option<&Cursor>,
        fetch: u32,
    ) -> Result<Vec<Row>, StoreError> {
        let (sql, params) = page_sql(filter, cursor, fetch, &DIALECT);
        let params = boxed(params);
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await?;
        rows_of(client.query(&statement, &refs(&params)).await?)
    }

    pub async fn get(&self, decision_id: &str) -> Result<Option<Row>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {SELECT_COLUMNS} FROM audit_decisions WHERE decision_id = $1");
        let row = client.query_opt(&sql, &[&decision_id]).await?;
        Ok(row.as_ref().map(row_of).transpose()?)
    }

    pub async fn summary(
        &self,
        filter: &DecisionFilter,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        let (sql, params) = summary_sql(filter, group_by, &DIALECT);
        let params = boxed(params);
        let client = self.client().await?;
        let rows = client.query(&sql, &refs(&params)).await?;
        if group_by == GroupBy::Reason {
            let counts: Vec<i64> = match rows.first() {
                Some(row) => (0..row.len())
                    .map(|i| row.try_get::<_, i64>(i))
                    .collect::<Result<_, _>>()?,
                None => Vec::new(),
            };
            return Ok(reason_rows(&counts));
        }
        rows.iter()
            .map(|r| {
                Ok(SummaryRow {
                    key: r.try_get(0)?,
                    count: r.try_get::<_, i64>(1)? as u64,
                })
            })
            .collect()
    }

    pub async fn links_after(
        &self,
        after: Option<LinkPosition>,
        limit: u32,
    ) -> Result<(Vec<Row>, Option<LinkPosition>), StoreError> {
        let (instance, seq) = after.map_or((String::new(), 0), |p| (p.instance_id, p.seq));
        let client = self.client().await?;
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM audit_decisions \
             WHERE instance_id > $1 OR (instance_id = $1 AND seq > $2) \
             ORDER BY instance_id, seq LIMIT {limit}"
        );
        let statement = client.prepare_cached(&sql).await?;
        let rows = rows_of(client.query(&statement, &[&instance, &seq]).await?)?;
        let next = rows.last().map(|r| LinkPosition {
            instance_id: r.instance_id.clone(),
            seq: r.seq,
        });
        Ok((rows, next))
    }

    pub async fn checkpoints(&self) -> Result<HashMap<String, SignedHead>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {HEAD_COLUMNS} FROM audit_checkpoints"),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), head_of(r, HeadKind::Checkpoint)))
            .collect())
    }

    pub async fn heads(&self) -> Result<Vec<SignedHead>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {HEAD_COLUMNS}, kind FROM audit_heads ORDER BY instance_id"),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let kind: String = r.get(6);
                head_of(r, HeadKind::parse(&kind).unwrap_or(HeadKind::Head))
            })
            .collect())
    }

    /// Stores a signed head, bounded like a batch (see the module's
    /// documentation): a lock held on `audit_heads` must not hold a
    /// connection, or a clean stop, for as long as it lasts. The caller
    /// tries again or, at a stop, reports the head as not stored.
    pub async fn put_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        let client = self.client().await?;
        let store = async {
            let written = async {
                client.batch_execute(&self.begin_bounded).await?;
                client
                    .execute(
                        UPSERT_HEAD,
                        &[
                            &head.instance_id,
                            &head.seq,
                            &head.hash,
                            &head.signed_at_us,
                            &head.key_id,
                            &head.signature,
                            &head.kind.as_str(),
                        ],
                    )
                    .await?;
                client.batch_execute("COMMIT").await
            }
            .await;
            if written.is_err() {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            Ok(written?)
        };
        let outcome = tokio::time::timeout(self.write_bound(), store).await;
        self.settle(client, outcome, "storing a signed head")
    }

    /// The hash of link `seq` of a chain, if it is stored.
    pub async fn link_at(&self, instance_id: &str, seq: i64) -> Result<Option<String>, StoreError> {
        let row = self
            .query_bounded(
                "SELECT hash FROM audit_decisions WHERE instance_id = $1 AND seq = $2",
                &[&instance_id, &seq],
                "reading a link of a chain",
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT COUNT(*) FROM audit_decisions", &[])
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Rows of `sql` (a query of the appeals table), each column read as
    /// `kinds` says.
    pub async fn query_cells(
        &self,
        sql: String,
        params: Vec<SqlValue>,
        kinds: Vec<ColumnKind>,
    ) -> Result<Vec<Vec<SqlCell>>, StoreError> {
        let params = boxed(params);
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await?;
        let rows = client.query(&statement, &refs(&params)).await?;
        let mut cells = Vec::with_capacity(rows.len());
        for row in rows {
            let mut out = Vec::with_capacity(kinds.len());
            for (i, kind) in kinds.iter().enumerate() {
                out.push(match kind {
                    ColumnKind::Int => SqlCell::Int(row.try_get(i)?),
                    ColumnKind::Bool => SqlCell::Bool(row.try_get(i)?),
                    ColumnKind::Text => SqlCell::Text(row.try_get(i)?),
                });
            }
            cells.push(out);
        }
        Ok(cells)
    }

    /// Holds an advisory lock shared by every replica while `work` runs:
    /// appeals are checked and written under it, so two replicas cannot
    /// both file the one open appeal a party may have, or both resolve one.
    pub async fn with_appeal_lock<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = T>,
    {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL lock_timeout = '5s'").await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEAL_LOCK])
            .await?;
        let out = work.await;
        tx.commit().await?;
        Ok(out)
    }

    /// Per chain, deletes the longest prefix of records all decided before
    /// `cutoff_us` (by seq: one record with a wrong clock cannot take the
    /// records before it along), leaving a signed checkpoint.
    pub async fn purge_before(
        &self,
        cutoff_us: i64,
        signer: &HeadSigner,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let cut = tx
            .query(
                "SELECT d.instance_id, d.seq, d.hash FROM audit_decisions d \
                 JOIN (SELECT c.instance_id, COALESCE( \
                         (SELECT MIN(seq) - 1 FROM audit_decisions k \
                          WHERE k.instance_id = c.instance_id AND k.decided_at >= $1), \
                         MAX(c.seq)) AS seq \
                       FROM audit_decisions c GROUP BY c.instance_id) m \
                 ON d.instance_id = m.instance_id AND d.seq = m.seq",
                &[&cutoff_us],
            )
            .await?;
        let mut purged = 0;
        for row in cut {
            let (instance_id, seq, hash): (String, i64, String) =
                (row.get(0), row.get(1), row.get(2));
            let checkpoint =
                signer.sign(&instance_id, &ChainHead { seq, hash }, HeadKind::Checkpoint);
            tx.execute(
                UPSERT_CHECKPOINT,
                &[
                    &checkpoint.instance_id,
                    &checkpoint.seq,
                    &checkpoint.hash,
                    &checkpoint.signed_at_us,
                    &checkpoint.key_id,
                    &checkpoint.signature,
                ],
            )
            .await?;
            tx.execute(
                "DELETE FROM audit_subject_keys WHERE decision_id IN \
                 (SELECT decision_id FROM audit_decisions WHERE instance_id = $1 AND seq <= $2)",
                &[&instance_id, &seq],
            )
            .await?;
            purged += tx
                .execute(
                    "DELETE FROM audit_decisions WHERE instance_id = $1 AND seq <= $2",
                    &[&instance_id, &seq],
                )
                .await?;
        }
        tx.execute(PURGE_APPEALS, &[&cutoff_us]).await?;
        tx.commit().await?;
        Ok(purged)
    }
}
