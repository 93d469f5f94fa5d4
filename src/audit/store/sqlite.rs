//! The embedded audit store: one SQLite file, WAL, `synchronous=FULL`.
//!
//! One write connection (only the audit writer appends, so it never
//! contends) and a small pool of read connections; WAL lets readers run
//! beside the writer. rusqlite is blocking, so every call runs on tokio's
//! blocking pool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, OpenFlags};

use super::{reason_rows, summary_sql, Row, StoreError, SCHEMA, SELECT_COLUMNS};
use crate::audit::chain::ChainHead;
use crate::audit::query::{Cursor, DecisionFilter, GroupBy, SqlValue, SqlWhere, SummaryRow};
use crate::audit::record::SealedRecord;

const READ_POOL: usize = 4;

#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    busy_timeout: Duration,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn placeholder(n: usize) -> String {
    format!("?{n}")
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            SqlValue::Int(i) => i.to_sql(),
            SqlValue::Text(t) => t.to_sql(),
        }
    }
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        decision_id: r.get(0)?,
        instance_id: r.get(1)?,
        seq: r.get(2)?,
        decided_at_us: r.get(3)?,
        hook: r.get(4)?,
        trip_id: r.get(5)?,
        city: r.get(6)?,
        decision: r.get(7)?,
        degraded: r.get(8)?,
        policy_version: r.get(9)?,
        key_id: r.get(10)?,
        detail: r.get(11)?,
        prev_hash: r.get(12)?,
        hash: r.get(13)?,
    })
}

impl SqliteStore {
    pub async fn open(path: PathBuf, busy_timeout_ms: u64) -> Result<Self, StoreError> {
        let busy_timeout = Duration::from_millis(busy_timeout_ms);
        let open_path = path.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            if let Some(dir) = open_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Invalid(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let connection = Connection::open(&open_path)?;
            connection.busy_timeout(busy_timeout)?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            for statement in SCHEMA {
                connection.execute(statement, [])?;
            }
            Ok(connection)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(Self {
            path,
            busy_timeout,
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let mut connection = writer.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        let busy_timeout = self.busy_timeout;
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => {
                    let connection = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    connection.busy_timeout(busy_timeout)?;
                    connection
                }
            };
            let result = work(&connection);
            let mut pool = readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < READ_POOL {
                pool.push(connection);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub async fn append(&self, batch: Vec<SealedRecord>) -> Result<(), StoreError> {
        self.with_writer(move |connection| {
            let tx = connection.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO audit_decisions (decision_id, instance_id, seq, decided_at, hook, \
                     trip_id, city, decision, degraded, policy_version, key_id, reason_mask, detail, \
                     prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?;
                let mut subject = tx.prepare_cached(
                    "INSERT OR IGNORE INTO audit_subjects (subject_ref, decision_id) VALUES (?1, ?2)",
                )?;
                for sealed in &batch {
                    let row = Row::from_sealed(sealed);
                    insert.execute(params![
                        row.decision_id,
                        row.instance_id,
                        row.seq,
                        row.decided_at_us,
                        row.hook,
                        row.trip_id,
                        row.city,
                        row.decision,
                        row.degraded,
                        row.policy_version,
                        row.key_id,
                        sealed.record.reason_mask(),
                        row.detail,
                        row.prev_hash,
                        row.hash,
                    ])?;
                    for subject_ref in sealed.record.subject_refs() {
                        subject.execute(params![subject_ref, row.decision_id])?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.with_writer(|connection| {
            connection.execute_batch("BEGIN IMMEDIATE; ROLLBACK")?;
            Ok(())
        })
        .await
    }

    pub async fn chain_head(&self, instance_id: &str) -> Result<Option<ChainHead>, StoreError> {
        let instance_id = instance_id.to_owned();
        self.with_writer(move |connection| {
            let head = connection
                .query_row(
                    "SELECT seq, hash FROM audit_decisions WHERE instance_id = ?1 ORDER BY seq DESC LIMIT 1",
                    [&instance_id],
                    |r| Ok(ChainHead { seq: r.get(0)?, hash: r.get(1)? }),
                )
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => connection.query_row(
                        "SELECT seq, hash FROM audit_checkpoints WHERE instance_id = ?1",
                        [&instance_id],
                        |r| Ok(ChainHead { seq: r.get(0)?, hash: r.get(1)? }),
                    ),
                    other => Err(other),
                });
            match head {
                Ok(head) => Ok(Some(head)),
                Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    pub async fn page(
        &self,
        filter: &DecisionFilter,
        cursor: Option<&Cursor>,
        fetch: u32,
    ) -> Result<Vec<Row>, StoreError> {
        let filter_sql = SqlWhere::build(filter, cursor, placeholder);
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM audit_decisions WHERE {} \
             ORDER BY decided_at DESC, decision_id DESC LIMIT {fetch}",
            filter_sql.clause
        );
        self.with_reader(move |connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement
                .query_map(params_from_iter(filter_sql.params.iter()), row_of)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn get(&self, decision_id: &str) -> Result<Option<Row>, StoreError> {
        let decision_id = decision_id.to_owned();
        self.with_reader(move |connection| {
            let sql =
                format!("SELECT {SELECT_COLUMNS} FROM audit_decisions WHERE decision_id = ?1");
            match connection.query_row(&sql, [&decision_id], row_of) {
                Ok(row) => Ok(Some(row)),
                Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    pub async fn summary(
        &self,
        filter: &DecisionFilter,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        let (sql, params) = summary_sql(filter, group_by, placeholder);
        self.with_reader(move |connection| {
            let mut statement = connection.prepare(&sql)?;
            if group_by == GroupBy::Reason {
                let counts = statement.query_row(params_from_iter(params.iter()), |r| {
                    (0..crate::domain::ReasonCode::ALL.len())
                        .map(|i| r.get::<_, i64>(i))
                        .collect::<Result<Vec<_>, _>>()
                })?;
                return Ok(reason_rows(&counts));
            }
            let rows = statement
                .query_map(params_from_iter(params.iter()), |r| {
                    Ok(SummaryRow {
                        key: r.get(0)?,
                        count: r.get::<_, i64>(1)? as u64,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn links_after(
        &self,
        after: Option<(String, i64)>,
        limit: u32,
    ) -> Result<Vec<Row>, StoreError> {
        self.with_reader(move |connection| {
            let (instance, seq) = after.unwrap_or_default();
            let sql = format!(
                "SELECT {SELECT_COLUMNS} FROM audit_decisions \
                 WHERE instance_id > ?1 OR (instance_id = ?1 AND seq > ?2) \
                 ORDER BY instance_id, seq LIMIT {limit}"
            );
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement
                .query_map(params![instance, seq], row_of)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn checkpoints(&self) -> Result<HashMap<String, ChainHead>, StoreError> {
        self.with_reader(|connection| {
            let mut statement =
                connection.prepare("SELECT instance_id, seq, hash FROM audit_checkpoints")?;
            let rows = statement
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        ChainHead {
                            seq: r.get(1)?,
                            hash: r.get(2)?,
                        },
                    ))
                })?
                .collect::<Result<HashMap<_, _>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        self.with_reader(|connection| {
            let count: i64 =
                connection.query_row("SELECT COUNT(*) FROM audit_decisions", [], |r| r.get(0))?;
            Ok(count as u64)
        })
        .await
    }

    pub async fn purge_before(&self, cutoff_us: i64) -> Result<u64, StoreError> {
        self.with_writer(move |connection| {
            let tx = connection.transaction()?;
            let cut: Vec<(String, i64, String)> = {
                let mut statement = tx.prepare(
                    "SELECT d.instance_id, d.seq, d.hash FROM audit_decisions d \
                     JOIN (SELECT instance_id, MAX(seq) AS seq FROM audit_decisions \
                           WHERE decided_at < ?1 GROUP BY instance_id) m \
                     ON d.instance_id = m.instance_id AND d.seq = m.seq",
                )?;
                let rows = statement
                    .query_map([cutoff_us], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                rows
            };
            let mut purged = 0;
            for (instance_id, seq, hash) in cut {
                tx.execute(
                    "INSERT INTO audit_checkpoints (instance_id, seq, hash) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (instance_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    params![instance_id, seq, hash],
                )?;
                tx.execute(
                    "DELETE FROM audit_subjects WHERE decision_id IN \
                     (SELECT decision_id FROM audit_decisions WHERE instance_id = ?1 AND seq <= ?2)",
                    params![instance_id, seq],
                )?;
                purged += tx.execute(
                    "DELETE FROM audit_decisions WHERE instance_id = ?1 AND seq <= ?2",
                    params![instance_id, seq],
                )? as u64;
            }
            tx.commit()?;
            Ok(purged)
        })
        .await
    }
}
