//! The embedded audit store: one SQLite file, WAL, fed from a journal.
//!
//! A batch is durable once it is in the journal (see `journal`); a loader
//! thread moves journaled rows into the SQLite file in large transactions,
//! and every query and chain read first loads what is still pending, so it
//! sees every decision that was answered. One write connection (the loader
//! and retention share it) and a small pool of read connections; WAL lets
//! readers run beside the writer. rusqlite is blocking, so every call runs
//! on tokio's blocking pool, except appends, which the audit writer's own
//! thread makes (`append_blocking`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};

mod frame;
mod index;
mod journal;
mod loader;
mod writeback;

use self::index::{first_live_row, index_path, Indexer};
pub use self::journal::JournalAccess;
use self::journal::{Journal, JournalRow};
use self::loader::{
    insert_rows, load_pending, remove_loaded_segments, spawn_loader, Journaled, MAX_PENDING_BYTES,
};
use super::appeals::{ColumnKind, SqlCell, APPEALS_SCHEMA, PURGE_SQL as PURGE_APPEALS};
use super::{
    page_sql, reason_rows, summary_sql, Dialect, LinkPosition, Lookups, Row, StoreError,
    ADDED_COLUMNS, HEAD_COLUMNS, SCHEMA, SELECT_COLUMNS, UPSERT_CHECKPOINT, UPSERT_HEAD,
};
use crate::audit::chain::ChainHead;
use crate::audit::query::{Cursor, DecisionFilter, GroupBy, SqlValue, SummaryRow};
use crate::audit::record::SealedRecord;
use crate::audit::signing::{HeadKind, HeadSigner, SignedHead};

const READ_POOL: usize = 4;

/// The write connection's page cache, KiB (see `SqliteStore::open`); a load
/// bigger than it spills pages to the WAL before its commit, harmlessly.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    busy_timeout: Duration,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    indexer: Option<Arc<Indexer>>,
    /// None for an in-memory store (benchmarks), which commits directly, and
    /// for a reader (it cannot append: `read_only`).
    journal: Option<Arc<Mutex<Journaled>>>,
    /// Opened with `JournalAccess::Read`: appends are refused.
    read_only: bool,
}

/// Bytes SQLite holds now, over every connection of the process (page
/// caches, sorts, statements), by SQLite's own count, the reserved page
/// pool's slots in use included: the part of resident memory the trail's
/// working set explains.
pub fn memory_used() -> i64 {
    let (mut slots, mut highest) = (0i64, 0i64);
    // SAFETY: reads SQLite's allocation counters (under its own mutex) into
    // two locals; callable before or after any connection exists.
    let (heap, pool) = unsafe {
        let heap = rusqlite::ffi::sqlite3_memory_used();
        rusqlite::ffi::sqlite3_status64(
            rusqlite::ffi::SQLITE_STATUS_PAGECACHE_USED,
            &mut slots,
            &mut highest,
            0,
        );
        (heap, slots)
    };
    heap + pool * PAGE_POOL.get().map_or(0, |p| p.slot_bytes as i64)
}

/// The page-cache pool reserved by `reserve_page_pool`, if one was.
static PAGE_POOL: std::sync::OnceLock<PagePool> = std::sync::OnceLock::new();

struct PagePool {
    slot_bytes: usize,
    slots: usize,
}

/// Bytes reserved for SQLite's page caches by `reserve_page_pool` (0 if
/// none was).
pub fn page_pool_bytes() -> usize {
    PAGE_POOL.get().map_or(0, |p| p.slot_bytes * p.slots)
}

/// Page-cache slots for every cache the store's connections keep: the
/// write connection's, the lookup index's, and SQLite's default 2 MiB for
/// each read connection (the pool's and the indexer's).
const PAGE_POOL_KIB: usize =
    WRITER_CACHE_KIB as usize + index::INDEX_CACHE_KIB as usize + (READ_POOL + 1) * 2 * 1024;

/// The page size of every file SQLite opens here (SQLite's default).
const PAGE_BYTES: usize = 4096;

/// Gives SQLite's page caches a fixed pool of memory, reserved once, so
/// that the caches' memory stays resident instead of going back to the
/// allocator and the system each time a cache is emptied.
///
/// The caches are emptied often: a connection discards its whole cache
/// when it finds the file changed since its last transaction, and the
/// lookup index's and the indexer's read connection's are found empty at
/// the start of each catch-up (every 15 s). From the heap, each refill was
/// tens of MiB allocated and freed again, which resident memory followed
/// (see docs/PERFORMANCE.md). Pages beyond the pool come from the heap as
/// before.
///
/// SQLite takes this only before it is first used in the process
/// (`sqlite3_config`): call it first thing, from one thread. Anything else
/// is an error that leaves SQLite as it was.
pub fn reserve_page_pool() -> Result<(), String> {
    let mut header: std::ffi::c_int = 0;
    // SAFETY: `SQLITE_CONFIG_PCACHE_HDRSZ` writes one int through the
    // pointer, which is to a live local.
    let asked = unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_PCACHE_HDRSZ,
            &mut header as *mut std::ffi::c_int,
        )
    };
    if asked != rusqlite::ffi::SQLITE_OK {
        return Err(format!(
            "SQLite refused to report its page header size (code {asked}): it was already in use"
        ));
    }
    let slot_bytes = (PAGE_BYTES + header as usize).next_multiple_of(8);
    let slots = PAGE_POOL_KIB * 1024 / PAGE_BYTES;
    // 8-byte aligned, as SQLite requires; zeroed pages stay unbacked until
    // a cache first uses them. SQLite keeps the pointer for the life of
    // the process, so the memory is never freed.
    let pool: &'static mut [u64] = Box::leak(vec![0u64; slot_bytes * slots / 8].into_boxed_slice());
    // SAFETY: `pool` is valid for `slot_bytes * slots` bytes and lives
    // forever; the arguments are the (void*, int, int) that
    // `SQLITE_CONFIG_PAGECACHE` takes.
    let configured = unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
            pool.as_mut_ptr() as *mut std::ffi::c_void,
            slot_bytes as std::ffi::c_int,
            slots as std::ffi::c_int,
        )
    };
    if configured != rusqlite::ffi::SQLITE_OK {
        return Err(format!(
            "SQLite refused a page-cache pool (code {configured}): it was already in use"
        ));
    }
    let _ = PAGE_POOL.set(PagePool { slot_bytes, slots });
    Ok(())
}

/// A mutex's data, even if a thread panicked while holding it: every
/// structure here stays consistent between statements.
pub(super) fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs blocking SQLite or file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(StoreError::Task)?
}

/// Subject and trip lookups go through the attached lookup index.
const DIALECT: Dialect = Dialect {
    placeholder: |n| format!("?{n}"),
    lookups: Lookups::DerivedIndex,
    detail_ends_with: |p| format!("substr(detail, -length({p})) = {p}"),
    detail_contains: |p| format!("instr(detail, {p}) > 0"),
};

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            SqlValue::Int(i) => i.to_sql(),
            SqlValue::Text(t) => t.to_sql(),
            SqlValue::Bool(b) => b.to_sql(),
            SqlValue::Null => Ok(rusqlite::types::ToSqlOutput::Owned(
                rusqlite::types::Value::Null,
            )),
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
        format: r.get(14)?,
    })
}

fn head_of(r: &rusqlite::Row<'_>, kind: HeadKind) -> rusqlite::Result<SignedHead> {
    Ok(SignedHead {
        instance_id: r.get(0)?,
        seq: r.get(1)?,
        hash: r.get(2)?,
        signed_at_us: r.get(3)?,
        key_id: r.get(4)?,
        signature: r.get(5)?,
        kind,
    })
}

/// Adds the columns later builds need to a file an earlier build made.
fn add_missing_columns(connection: &Connection) -> Result<(), StoreError> {
    for (table, column, definition) in ADDED_COLUMNS {
        let present: bool = connection.query_row(
            &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |r| r.get(0),
        )?;
        if !present {
            connection.execute(
                &format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"),
                [],
            )?;
        }
    }
    Ok(())
}

impl SqliteStore {
    pub async fn open(
        path: PathBuf,
        busy_timeout_ms: u64,
        segment_bytes: u64,
        access: JournalAccess,
    ) -> Result<Self, StoreError> {
        let busy_timeout = Duration::from_millis(busy_timeout_ms);
        let open_path = path.clone();
        let mut writer = blocking(move || {
            if let Some(dir) = open_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Invalid(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let connection = Connection::open(&open_path)?;
            connection.busy_timeout(busy_timeout)?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            // Durability comes from the journal; NORMAL keeps the file
            // consistent through a crash (the WAL is synced before every
            // checkpoint) and leaves the loader's commits unsynced, so they
            // do not queue fsyncs in front of the journal's.
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            // Loads append at the right edge of the table and its indexes,
            // so few pages are hot; a bigger cache only fills, slowly, with
            // pages nobody reads again, and the process grows while it does.
            connection.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
            for statement in SCHEMA.iter().chain(APPEALS_SCHEMA) {
                connection.execute(statement, [])?;
            }
            add_missing_columns(&connection)?;
            Ok(connection)
        })
        .await?;
        // An in-memory store (benchmarks only) has no file to index from and
        // needs no journal.
        if path.as_os_str() == ":memory:" {
            return Ok(Self {
                path,
                busy_timeout,
                writer: Arc::new(Mutex::new(writer)),
                readers: Arc::new(Mutex::new(Vec::new())),
                indexer: None,
                journal: None,
                read_only: false,
            });
        }
        let journal_dir = journal::dir_for(&path);
        let (writer, journal) = blocking(move || {
            let opened = Journal::open(&journal_dir, segment_bytes, access)?;
            // What a crash (or a running owner) left unloaded.
            insert_rows(&mut writer, &opened.rows)?;
            let journal = match opened.journal {
                Some(journal) => {
                    // Only this process checkpoints, after each load.
                    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
                    // Nothing waits on a start-up: no pacing.
                    remove_loaded_segments(
                        &writer,
                        journal.dir(),
                        journal.active(),
                        writeback::Pace::Full,
                    )?;
                    Some(Arc::new(Mutex::new(Journaled {
                        journal,
                        pending: Vec::new(),
                        pending_bytes: 0,
                        loading: 0,
                    })))
                }
                None => None,
            };
            Ok((Arc::new(Mutex::new(writer)), journal))
        })
        .await?;
        let index_from = path.clone();
        let indexer = blocking(move || Indexer::open(&index_from)).await?;
        let indexer = Arc::new(indexer);
        spawn_loader(
            Arc::downgrade(&writer),
            journal.as_ref().map(Arc::downgrade),
            Arc::downgrade(&indexer),
        );
        Ok(Self {
            path,
            busy_timeout,
            writer,
            readers: Arc::new(Mutex::new(Vec::new())),
            indexer: Some(indexer),
            journal,
            read_only: access == JournalAccess::Read,
        })
    }

    /// Runs `work` with the write connection, after loading what the
    /// journal holds (so chain heads and purges see every record).
    async fn with_writer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let writer = Arc::clone(&self.writer);
        let journal = self.journal.clone();
        blocking(move || {
            let mut connection = locked(&writer);
            if let Some(journaled) = &journal {
                load_pending(&mut connection, journaled)?;
            }
            work(&mut connection)
        })
        .await
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        let busy_timeout = self.busy_timeout;
        let indexer = self.indexer.clone();
        let writer = Arc::clone(&self.writer);
        let journal = self.journal.clone();
        blocking(move || {
            if let Some(journaled) = &journal {
                load_pending(&mut locked(&writer), journaled)?;
            }
            let pooled = locked(&readers).pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => {
                    let connection = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    connection.busy_timeout(busy_timeout)?;
                    if indexer.is_some() {
                        let index = index_path(&path);
                        connection
                            .execute("ATTACH DATABASE ?1 AS idx", [index.to_string_lossy()])?;
                    }
                    connection
                }
            };
            let result = work(&connection);
            let mut pool = locked(&readers);
            if pool.len() < READ_POOL {
                pool.push(connection);
            }
            result
        })
        .await
    }

    /// Durable on return: in the journal, or (without one) committed.
    pub async fn append(&self, batch: Vec<SealedRecord>) -> Result<(), StoreError> {
        let store = self.clone();
        blocking(move || store.append_blocking(batch)).await
    }

    /// `append` for a caller that may block (the audit writer's thread):
    /// the log write and its fsync happen right here, with no hop to
    /// another thread and back on every batch.
    pub fn append_blocking(&self, batch: Vec<SealedRecord>) -> Result<(), StoreError> {
        let rows: Vec<JournalRow> = batch
            .into_iter()
            .map(|sealed| {
                let (row, reason_mask) = Row::from_sealed(sealed);
                JournalRow { row, reason_mask }
            })
            .collect();
        if self.read_only {
            return Err(StoreError::Invalid(
                "the audit store was opened to read; it takes no records".into(),
            ));
        }
        let Some(journaled) = &self.journal else {
            return insert_rows(&mut locked(&self.writer), &rows);
        };
        if locked(journaled).pending_bytes > MAX_PENDING_BYTES {
            load_pending(&mut locked(&self.writer), journaled)?;
        }
        let mut state = locked(journaled);
        state.journal.append(&rows)?;
        state.pending_bytes += rows.iter().map(JournalRow::approx_bytes).sum::<usize>();
        state.pending.extend(rows);
        Ok(())
    }

    /// Rows in the log not yet loaded into the file.
    pub fn unloaded(&self) -> usize {
        self.journal.as_ref().map_or(0, |journaled| {
            let state = locked(journaled);
            state.pending.len() + state.loading
        })
    }

    /// Whether an append could be made durable now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.journal.clone() {
            Some(journaled) => blocking(move || locked(&journaled).journal.check_writable()).await,
            None => {
                self.with_writer(|connection| {
                    connection.execute_batch("BEGIN IMMEDIATE; ROLLBACK")?;
                    Ok(())
                })
                .await
            }
        }
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

    /// Brings the lookup index up to date when `filter` needs it.
    fn index_for(
        &self,
        filter: &DecisionFilter,
    ) -> impl FnOnce() -> Result<(), StoreError> + Send + 'static {
        let indexer = self
            .indexer
            .clone()
            .filter(|_| !filter.subject_refs.is_empty() || filter.trip_id.is_some());
        move || match indexer {
            // A query waits for what the catch-up writes out: at the
            // steady pace, not the background's gentle one.
            Some(indexer) => indexer.catch_up(writeback::Pace::Steady).map(|_| ()),
            None => Ok(()),
        }
    }

    pub async fn page(
        &self,
        filter: &DecisionFilter,
        cursor: Option<&Cursor>,
        fetch: u32,
    ) -> Result<Vec<Row>, StoreError> {
        let (sql, params) = page_sql(filter, cursor, fetch, &DIALECT);
        let index = self.index_for(filter);
        self.with_reader(move |connection| {
            index()?;
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement
                .query_map(params_from_iter(params.iter()), row_of)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// A decision id is a UUIDv7 minted from the decision time, so the
    /// time index finds it within its millisecond.
    pub async fn get(&self, decision_id: &str) -> Result<Option<Row>, StoreError> {
        let Some(ms) = uuid::Uuid::parse_str(decision_id)
            .ok()
            .filter(|id| id.get_version_num() == 7)
            .and_then(|id| id.get_timestamp())
            .map(|at| at.to_unix())
            .map(|(secs, nanos)| secs as i64 * 1_000 + i64::from(nanos / 1_000_000))
        else {
            return Ok(None);
        };
        let decision_id = decision_id.to_owned();
        self.with_reader(move |connection| {
            let sql = format!(
                "SELECT {SELECT_COLUMNS} FROM audit_decisions \
                 WHERE decided_at >= ?1 AND decided_at < ?2 AND decision_id = ?3"
            );
            match connection.query_row(
                &sql,
                params![ms * 1_000, (ms + 1) * 1_000, decision_id],
                row_of,
            ) {
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
        let (sql, params) = summary_sql(filter, group_by, &DIALECT);
        let index = self.index_for(filter);
        self.with_reader(move |connection| {
            index()?;
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
        after: Option<LinkPosition>,
        limit: u32,
    ) -> Result<(Vec<Row>, Option<LinkPosition>), StoreError> {
        let (instance, seq) = after.map_or((String::new(), 0), |p| (p.instance_id, p.seq));
        self.with_reader(move |connection| {
            let sql = format!(
                "SELECT {SELECT_COLUMNS} FROM audit_decisions \
                 WHERE instance_id > ?1 OR (instance_id = ?1 AND seq > ?2) \
                 ORDER BY instance_id, seq LIMIT {limit}"
            );
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement
                .query_map(params![instance, seq], row_of)?
                .collect::<Result<Vec<_>, _>>()?;
            let next = rows.last().map(|r: &Row| LinkPosition {
                instance_id: r.instance_id.clone(),
                seq: r.seq,
            });
            Ok((rows, next))
        })
        .await
    }

    pub async fn checkpoints(&self) -> Result<HashMap<String, SignedHead>, StoreError> {
        self.with_reader(|connection| {
            let mut statement =
                connection.prepare(&format!("SELECT {HEAD_COLUMNS} FROM audit_checkpoints"))?;
            let rows = statement
                .query_map([], |r| Ok((r.get(0)?, head_of(r, HeadKind::Checkpoint)?)))?
                .collect::<Result<HashMap<_, _>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// On the write connection: read at start-up and by the heads
    /// endpoint only, and an in-memory store has no other.
    pub async fn heads(&self) -> Result<Vec<SignedHead>, StoreError> {
        self.with_writer(|connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {HEAD_COLUMNS}, kind FROM audit_heads ORDER BY instance_id"
            ))?;
            let rows = statement
                .query_map([], |r| {
                    let kind: String = r.get(6)?;
                    head_of(r, HeadKind::parse(&kind).unwrap_or(HeadKind::Head))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Stored with a synced commit: a signed head is what truncation is
    /// measured against.
    pub async fn put_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        let head = head.clone();
        self.with_writer(move |connection| {
            connection.execute(
                UPSERT_HEAD,
                params![
                    head.instance_id,
                    head.seq,
                    head.hash,
                    head.signed_at_us,
                    head.key_id,
                    head.signature,
                    head.kind.as_str()
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// The hash of link `seq` of a chain, if it is stored.
    pub async fn link_at(&self, instance_id: &str, seq: i64) -> Result<Option<String>, StoreError> {
        let instance_id = instance_id.to_owned();
        self.with_writer(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT hash FROM audit_decisions WHERE instance_id = ?1 AND seq = ?2",
                    params![instance_id, seq],
                    |r| r.get(0),
                )
                .optional()?)
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

    /// Rows of `sql` (a query of the appeals table), each column read as
    /// `kinds` says.
    pub async fn query_cells(
        &self,
        sql: String,
        params: Vec<SqlValue>,
        kinds: Vec<ColumnKind>,
    ) -> Result<Vec<Vec<SqlCell>>, StoreError> {
        self.with_reader(move |connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement
                .query_map(params_from_iter(params.iter()), |r| {
                    kinds
                        .iter()
                        .enumerate()
                        .map(|(i, kind)| {
                            Ok(match kind {
                                ColumnKind::Int => SqlCell::Int(r.get(i)?),
                                ColumnKind::Bool => SqlCell::Bool(r.get(i)?),
                                ColumnKind::Text => SqlCell::Text(r.get(i)?),
                            })
                        })
                        .collect::<rusqlite::Result<Vec<_>>>()
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Deletes the oldest records, a prefix of the file in storage order
    /// (which is each chain's seq order): the longest prefix whose records
    /// were all decided before `cutoff_us`, so one record with a wrong clock
    /// cannot take the records before it along (the newest record always
    /// stays, so row ids are never reused). Each chain keeps a signed
    /// checkpoint of its last deleted link.
    pub async fn purge_before(
        &self,
        cutoff_us: i64,
        signer: &HeadSigner,
    ) -> Result<u64, StoreError> {
        let signer = signer.clone();
        let purged = self
            .with_writer(move |connection| {
                let tx = connection.transaction()?;
                let last_row: i64 = tx.query_row(
                    "SELECT MIN(COALESCE((SELECT MIN(rowid) FROM audit_decisions WHERE decided_at >= ?1), \
                                         (SELECT MAX(rowid) FROM audit_decisions) + 1, 0) - 1, \
                            COALESCE((SELECT MAX(rowid) FROM audit_decisions), 0) - 1)",
                    [cutoff_us],
                    |r| r.get(0),
                )?;
                if last_row <= 0 {
                    return Ok(0);
                }
                let cut: Vec<(String, i64, String)> = {
                    let mut statement = tx.prepare(
                        "SELECT instance_id, seq, hash FROM audit_decisions WHERE rowid IN \
                         (SELECT MAX(rowid) FROM audit_decisions WHERE rowid <= ?1 GROUP BY instance_id)",
                    )?;
                    let rows = statement
                        .query_map([last_row], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<Result<Vec<_>, _>>()?;
                    rows
                };
                for (instance_id, seq, hash) in cut {
                    let checkpoint =
                        signer.sign(&instance_id, &ChainHead { seq, hash }, HeadKind::Checkpoint);
                    tx.execute(
                        UPSERT_CHECKPOINT,
                        params![
                            checkpoint.instance_id,
                            checkpoint.seq,
                            checkpoint.hash,
                            checkpoint.signed_at_us,
                            checkpoint.key_id,
                            checkpoint.signature
                        ],
                    )?;
                }
                let purged = tx.execute("DELETE FROM audit_decisions WHERE rowid <= ?1", [last_row])? as u64;
                tx.execute(PURGE_APPEALS, [cutoff_us])?;
                tx.commit()?;
                Ok(purged)
            })
            .await?;
        if let (Some(indexer), true) = (self.indexer.clone(), purged > 0) {
            let first_live_row = self.with_reader(|c| Ok(first_live_row(c)?)).await?;
            blocking(move || indexer.prune(first_live_row)).await?;
        }
        Ok(purged)
    }
}
