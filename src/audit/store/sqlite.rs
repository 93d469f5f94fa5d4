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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};

use super::journal::{self, Journal, JournalRow};
use super::writeback;
use super::{
    lookup_key, page_sql, reason_rows, summary_sql, Dialect, LinkPosition, Lookups, Row,
    StoreError, ADDED_COLUMNS, HEAD_COLUMNS, SCHEMA, SELECT_COLUMNS, UPSERT_CHECKPOINT,
    UPSERT_HEAD,
};
use crate::audit::chain::ChainHead;
use crate::audit::query::{Cursor, DecisionFilter, GroupBy, SqlValue, SummaryRow};
use crate::audit::record::SealedRecord;
use crate::audit::signing::{HeadKind, HeadSigner, SignedHead};

const READ_POOL: usize = 4;

#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    busy_timeout: Duration,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    indexer: Option<Arc<Indexer>>,
    /// None for an in-memory store (benchmarks), which commits directly, and
    /// for a process that does not own the journal (it cannot append).
    journal: Option<Arc<Mutex<Journaled>>>,
}

/// The journal and the rows in it that are not in the SQLite file yet.
struct Journaled {
    journal: Journal,
    pending: Vec<JournalRow>,
    /// About the memory `pending` holds: the bounds below are in bytes,
    /// because a candidate check's record (fifty parties) is ten times a
    /// trip's, and a bound in rows let a candidate peak hold 500 MB.
    pending_bytes: usize,
    /// Rows taken from `pending` by a load still under way.
    loading: usize,
}

const INSERT_ROW: &str = "INSERT OR IGNORE INTO audit_decisions (decision_id, instance_id, seq, \
     decided_at, hook, trip_id, city, decision, degraded, policy_version, key_id, reason_mask, \
     detail, prev_hash, hash, format) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

/// A mutex's data, even if a thread panicked while holding it: every
/// structure here stays consistent between statements.
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs blocking SQLite or file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// Inserts rows in one transaction. A row already there (same chain and
/// seq: loaded before a crash, or by another process) is left as it is.
fn insert_rows(connection: &mut Connection, rows: &[JournalRow]) -> Result<(), StoreError> {
    let tx = connection.transaction()?;
    {
        let mut insert = tx.prepare_cached(INSERT_ROW)?;
        for JournalRow { row, reason_mask } in rows {
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
                reason_mask,
                row.detail,
                row.prev_hash,
                row.hash,
                row.format,
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Moves the pending journal rows into the SQLite file, then deletes the
/// segments that are wholly committed there. The caller holds the write
/// connection, so loads never interleave (rows keep their chain order).
fn load_pending(
    connection: &mut Connection,
    journaled: &Mutex<Journaled>,
) -> Result<usize, StoreError> {
    let (rows, active, dir) = {
        let mut state = locked(journaled);
        let dir = state.journal.dir().to_owned();
        state.loading = state.pending.len();
        state.pending_bytes = 0;
        let rows = std::mem::take(&mut state.pending);
        (rows, state.journal.active(), dir)
    };
    if rows.is_empty() {
        return Ok(0);
    }
    let inserted = insert_rows(connection, &rows);
    let mut state = locked(journaled);
    state.loading = 0;
    if let Err(error) = inserted {
        let later = std::mem::replace(&mut state.pending, rows);
        state.pending.extend(later);
        state.pending_bytes = state.pending.iter().map(JournalRow::approx_bytes).sum();
        return Err(error);
    }
    // Pacing keeps the p99 low while there is headroom; once records pile
    // up, catching up comes first (the log and memory must stay bounded).
    let paced = state.pending_bytes < URGENT_PENDING_BYTES;
    drop(state);
    // Rows appended after the take went to segment `active` or later.
    remove_loaded_segments(connection, &dir, active, paced)?;
    Ok(rows.len())
}

/// Checkpoints, and once that is complete deletes the segments before
/// `active`: their rows are then on disk in the file itself. Segments roll
/// over every `sqlite_log_segment_bytes`, so deleting is rare; if readers
/// hold the checkpoint back, the segments stay until the next load.
fn remove_loaded_segments(
    connection: &Connection,
    dir: &Path,
    active: u64,
    paced: bool,
) -> Result<(), StoreError> {
    if writeback::checkpoint(connection, true, paced)? && journal::has_segments_before(dir, active)?
    {
        journal::remove_segments_before(dir, active, paced)?;
    }
    Ok(())
}

/// Subject and trip lookups go through the attached lookup index.
const DIALECT: Dialect = Dialect {
    placeholder: |n| format!("?{n}"),
    lookups: Lookups::DerivedIndex,
};

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

/// Where the derived lookup index of an audit file lives.
fn index_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-index");
    PathBuf::from(name)
}

/// The derived lookup index: which decisions name a subject ref or a trip.
///
/// Those lookups need indexes keyed by random values, and a random-key
/// insert dirties a page of its own in every commit; kept in the audit file
/// they multiplied the bytes each durable commit writes. They live in a
/// second file instead, filled from the committed records by this indexer,
/// off the decision path and without fsync: the records are the truth, and
/// the index is rebuilt from them whenever it is missing, behind, damaged or
/// of another layout. Queries catch the index up before they use it, so they
/// see every committed record.
///
/// Entries are 64-bit keys (`lookup_key`) and row ids, stored as sorted
/// runs, as in a log-structured merge tree: each catch-up writes its
/// entries, sorted, under a new run id that leads the primary key, so they
/// are appended at the tree's end and a catch-up writes about as many
/// pages as its entries fill. Keyed by day instead (layout 2), a catch-up
/// landed its entries on random pages of the day's part of the tree: once
/// that part outgrew a catch-up, each 24-byte entry rewrote a 4 KB page
/// (measured with `tripgate-bench audit-index`, see the README). A search
/// probes each run, a seek apiece, so runs are merged: `MERGE_FANOUT` runs
/// of one level become one run of the next, up to `TOP_LEVEL`, and each
/// entry is rewritten once per level.
struct Indexer {
    /// (read connection to the audit file, connection to the index file)
    connections: Mutex<(Connection, Connection)>,
}

/// The index file's layout; another value in `user_version` means rebuild.
const INDEX_LAYOUT: i64 = 3;

const INDEX_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS subject_rows (
        run INTEGER NOT NULL,
        subject_key INTEGER NOT NULL,
        row INTEGER NOT NULL,
        PRIMARY KEY (run, subject_key, row)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS trip_rows (
        run INTEGER NOT NULL,
        trip_key INTEGER NOT NULL,
        row INTEGER NOT NULL,
        PRIMARY KEY (run, trip_key, row)
    ) WITHOUT ROWID",
    // Every run with entries in the two tables: the newest row it indexes
    // (so a purge can drop the runs it emptied), its entries (to size a
    // merge's chunks) and, while a merge moves its entries, the run they
    // move into.
    "CREATE TABLE IF NOT EXISTS index_runs (
        run INTEGER PRIMARY KEY,
        level INTEGER NOT NULL,
        last_row INTEGER NOT NULL,
        entries INTEGER NOT NULL,
        merge_into INTEGER
    )",
    // `merge_from_key`: the merge under way has moved every key below it;
    // `merge_chunks`: the key range's share each chunk takes. NULL when no
    // merge is under way.
    "CREATE TABLE IF NOT EXISTS index_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        high_water INTEGER NOT NULL,
        merge_from_key INTEGER,
        merge_chunks INTEGER
    )",
    "INSERT OR IGNORE INTO index_state (id, high_water) VALUES (1, 0)",
];

/// The tables of entries, as (table, key column).
const INDEX_TABLES: [(&str, &str); 2] =
    [("subject_rows", "subject_key"), ("trip_rows", "trip_key")];

/// Runs of one level merged into one run of the next. With a catch-up
/// every 15 s, a level-1 run holds 4 minutes, level 2 an hour, level 3
/// (the top) 17 hours; a search probes at most 15 runs per lower level
/// plus the top runs (about 40 for 30 days kept).
const MERGE_FANOUT: i64 = 16;
/// Runs of this level are not merged further: a merge of 16 of them would
/// rewrite 11 days of entries, to save a few seeks per search.
const TOP_LEVEL: i64 = 3;
/// Entries a merge moves per transaction, about: a merge of level-2 runs
/// holds 17 hours of entries (tens of millions on a busy day), and in one
/// transaction it held the index for minutes (queries wait for it) and
/// grew the WAL by gigabytes in one go. By key range instead, a chunk at a
/// time, a query waits for one chunk at most (measured: about 40 MB
/// written with its checkpoint, one second).
const MERGE_CHUNK_ENTRIES: i64 = 500_000;

/// Only the subject refs of a record's detail (the rest is skipped unread).
#[derive(serde::Deserialize)]
struct DetailRefs<'a> {
    #[serde(borrow)]
    parties: Vec<PartyRef<'a>>,
}

#[derive(serde::Deserialize)]
struct PartyRef<'a> {
    #[serde(borrow)]
    subject_ref: std::borrow::Cow<'a, str>,
}

impl Indexer {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let index = index_path(path);
        let open_index = || -> Result<Connection, StoreError> {
            let connection = Connection::open(&index)?;
            connection.busy_timeout(Duration::from_secs(5))?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "OFF")?;
            // Checkpointed by the indexer, paced (see `writeback`).
            connection.pragma_update(None, "wal_autocheckpoint", 0)?;
            connection.pragma_update(None, "cache_size", -65_536)?;
            let healthy: String = connection.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
            if healthy != "ok" {
                return Err(StoreError::Invalid(format!("index damaged: {healthy}")));
            }
            let layout: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let empty: bool =
                connection.query_row("SELECT COUNT(*) = 0 FROM sqlite_master", [], |r| r.get(0))?;
            if layout != INDEX_LAYOUT && !empty {
                return Err(StoreError::Invalid(format!(
                    "index layout {layout}, expected {INDEX_LAYOUT}"
                )));
            }
            for statement in INDEX_SCHEMA {
                connection.execute(statement, [])?;
            }
            connection.pragma_update(None, "user_version", INDEX_LAYOUT)?;
            Ok(connection)
        };
        let index_connection = match open_index() {
            Ok(connection) => connection,
            Err(error) => {
                // Derived data: drop it and build it again from the records.
                tracing::warn!(%error, file = %index.display(), "rebuilding the audit lookup index");
                for suffix in ["", "-wal", "-shm"] {
                    let mut name = index.as_os_str().to_owned();
                    name.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(name));
                }
                open_index()?
            }
        };
        let main = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        main.busy_timeout(Duration::from_secs(5))?;
        Ok(Self {
            connections: Mutex::new((main, index_connection)),
        })
    }

    /// Drops the runs that index only rows before `first_live_row` (the
    /// oldest record kept). A top run holds 17 hours of entries, so each is
    /// deleted a key range per transaction, as merges move them, letting
    /// queries in between; it stays in `index_runs` until it is empty (its
    /// entries match no record, so searches lose nothing meanwhile, and a
    /// crash leaves it to the next purge). Entries of purged rows in runs
    /// that also index live ones stay until those runs are merged,
    /// harmlessly: row ids are never reused, so they match nothing.
    fn prune(&self, first_live_row: i64) -> Result<(), StoreError> {
        self.prune_in_chunks(first_live_row, MERGE_CHUNK_ENTRIES)
    }

    fn prune_in_chunks(&self, first_live_row: i64, chunk_entries: i64) -> Result<(), StoreError> {
        let dead: Vec<(i64, i64)> = {
            let connections = locked(&self.connections);
            let mut statement = connections
                .1
                // Runs in a merge under way wait for it to end (the merge
                // would move entries into a run being deleted).
                .prepare(
                    "SELECT run, entries FROM index_runs WHERE last_row < ?1 \
                     AND merge_into IS NULL AND run NOT IN \
                     (SELECT merge_into FROM index_runs WHERE merge_into IS NOT NULL)",
                )?;
            let dead = statement
                .query_map([first_live_row], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            dead
        };
        for (run, entries) in dead {
            let chunks = entries / chunk_entries + 1;
            let mut from_key = i64::MIN;
            loop {
                let (through_key, last) = key_chunk(from_key, chunks);
                let mut connections = locked(&self.connections);
                let tx = connections.1.transaction()?;
                for (table, key) in INDEX_TABLES {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE run = ?1 AND {key} BETWEEN ?2 AND ?3"),
                        [run, from_key, through_key],
                    )?;
                }
                if last {
                    tx.execute("DELETE FROM index_runs WHERE run = ?1", [run])?;
                }
                tx.commit()?;
                writeback::checkpoint(&connections.1, false, true)?;
                if last {
                    break;
                }
                from_key = through_key + 1;
            }
        }
        Ok(())
    }

    /// Indexes every committed record not indexed yet and moves one chunk
    /// of a merge, if one is due; returns how many records it indexed.
    /// Queries call this: they wait for one chunk of a merge at most, the
    /// indexer thread moves the rest (`merge_rest`).
    fn catch_up(&self) -> Result<usize, StoreError> {
        let mut connections = locked(&self.connections);
        let (main, index) = &mut *connections;
        let mut indexed = 0;
        loop {
            let step = index_step(main, index)?;
            indexed += step;
            if step < INDEX_STEP_RECORDS {
                break;
            }
            // Not synced (the index is derived), only paced.
            writeback::checkpoint(index, false, true)?;
        }
        let merged = merge_chunk(main, index, MERGE_CHUNK_ENTRIES)?;
        if indexed > 0 || merged != Merge::Idle {
            writeback::checkpoint(index, false, true)?;
        }
        Ok(indexed)
    }

    /// Moves the chunks of due merges one at a time, letting queries in
    /// between.
    fn merge_rest(&self) -> Result<(), StoreError> {
        loop {
            let mut connections = locked(&self.connections);
            let (main, index) = &mut *connections;
            let merged = merge_chunk(main, index, MERGE_CHUNK_ENTRIES)?;
            if merged == Merge::Idle {
                return Ok(());
            }
            writeback::checkpoint(index, false, true)?;
        }
    }
}

/// Records indexed per run, at most: a catch-up (15 s of records, 300,000
/// at 20,000/s) is one run; a rebuild of a long trail commits a run every
/// this many, so the index's WAL stays a fraction of the index and the
/// sorted entries (16 bytes each, about four per record) stay ~20 MB.
const INDEX_STEP_RECORDS: usize = 300_000;

/// Indexes up to `INDEX_STEP_RECORDS` past the high-water mark as a new
/// level-0 run, in one transaction. The entries are sorted before they are
/// inserted, so the run fills its pages in order. Records are read 5,000
/// at a time.
fn index_step(main: &Connection, index: &mut Connection) -> Result<usize, StoreError> {
    let tx = index.transaction()?;
    let mut high_water: i64 =
        tx.query_row("SELECT high_water FROM index_state WHERE id = 1", [], |r| {
            r.get(0)
        })?;
    let mut indexed = 0;
    // (key, row) of subjects and of trips.
    let mut subjects: Vec<(i64, i64)> = Vec::new();
    let mut trips: Vec<(i64, i64)> = Vec::new();
    while indexed < INDEX_STEP_RECORDS {
        let rows: Vec<(i64, String, String)> = {
            let mut statement = main.prepare_cached(
                "SELECT rowid, trip_id, detail FROM audit_decisions \
                     WHERE rowid > ?1 ORDER BY rowid LIMIT 5000",
            )?;
            let rows = statement
                .query_map([high_water], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            rows
        };
        let Some(last) = rows.last().map(|r| r.0) else {
            break;
        };
        for (row, trip_id, detail) in &rows {
            if !trip_id.is_empty() {
                trips.push((lookup_key(trip_id), *row));
            }
            // A record whose detail does not parse is reported by
            // `audit verify`; it simply is not found by subject.
            if let Ok(detail) = serde_json::from_str::<DetailRefs>(detail) {
                for party in &detail.parties {
                    subjects.push((lookup_key(&party.subject_ref), *row));
                }
            }
        }
        high_water = last;
        indexed += rows.len();
    }
    if indexed == 0 {
        return Ok(0);
    }
    // Above every run in the tables (each is in `index_runs`): appended.
    let run: i64 = tx.query_row(
        "SELECT COALESCE(MAX(run), 0) + 1 FROM index_runs",
        [],
        |r| r.get(0),
    )?;
    for ((table, key), entries) in INDEX_TABLES.into_iter().zip([&mut subjects, &mut trips]) {
        entries.sort_unstable();
        entries.dedup();
        let mut insert = tx.prepare_cached(&format!(
            "INSERT INTO {table} (run, {key}, row) VALUES (?1, ?2, ?3)"
        ))?;
        for (key, row) in entries.iter() {
            insert.execute([run, *key, *row])?;
        }
    }
    tx.execute(
        "INSERT INTO index_runs (run, level, last_row, entries) VALUES (?1, 0, ?2, ?3)",
        [run, high_water, (subjects.len() + trips.len()) as i64],
    )?;
    tx.execute(
        "UPDATE index_state SET high_water = ?1 WHERE id = 1",
        [high_water],
    )?;
    tx.commit()?;
    Ok(indexed)
}

/// The row id of the oldest record kept (purges delete a prefix of the
/// file): index entries of rows before it match nothing.
fn first_live_row(main: &Connection) -> rusqlite::Result<i64> {
    main.query_row(
        "SELECT COALESCE(MIN(rowid), 0) FROM audit_decisions",
        [],
        |r| r.get(0),
    )
}

/// The chunk of keys that starts at `from_key` when the i64 range is cut
/// into `chunks` (keys are hash prefixes, uniform over it): its last key,
/// and whether it is the last chunk (which takes every key left).
fn key_chunk(from_key: i64, chunks: i64) -> (i64, bool) {
    let chunks = chunks.max(1) as i128;
    let step = ((1i128 << 64) + chunks - 1) / chunks;
    let next_key = from_key as i128 + step;
    if next_key > i64::MAX as i128 {
        (i64::MAX, true)
    } else {
        ((next_key - 1) as i64, false)
    }
}

#[derive(Debug, PartialEq)]
enum Merge {
    /// No level has `MERGE_FANOUT` runs to merge.
    Idle,
    /// A chunk moved; the merge goes on.
    Moved,
    /// The last chunk moved: the merged runs are gone.
    Done,
}

/// Moves one chunk of the merge under way, starting one if a level below
/// `TOP_LEVEL` has `MERGE_FANOUT` runs: its oldest ones go into one run of
/// the next level, by ranges of keys, each range in one transaction. At
/// every commit each key's entries are in the merged runs or in the new
/// one, never both or neither, and both are in `index_runs`, so searches
/// stay complete throughout; a crash leaves a merge that the next chunk
/// resumes. Entries of rows before the oldest record kept (purged) are
/// left out.
fn merge_chunk(
    main: &Connection,
    index: &mut Connection,
    chunk_entries: i64,
) -> Result<Merge, StoreError> {
    let tx = index.transaction()?;
    let under_way: Option<(i64, i64, i64)> = tx
        .query_row(
            "SELECT (SELECT merge_into FROM index_runs WHERE merge_into IS NOT NULL LIMIT 1), \
                    merge_from_key, merge_chunks \
             FROM index_state WHERE id = 1 AND merge_from_key IS NOT NULL",
            [],
            |r| Ok((r.get::<_, Option<i64>>(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .and_then(|(into, from, step)| into.map(|into| (into, from, step)));
    let (into, from_key, chunks) = match under_way {
        Some(merge) => merge,
        None => {
            let Some(level) = tx
                .query_row(
                    "SELECT level FROM index_runs WHERE level < ?1 GROUP BY level \
                     HAVING COUNT(*) >= ?2 ORDER BY level LIMIT 1",
                    [TOP_LEVEL, MERGE_FANOUT],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
            else {
                return Ok(Merge::Idle);
            };
            let into: i64 =
                tx.query_row("SELECT MAX(run) + 1 FROM index_runs", [], |r| r.get(0))?;
            tx.execute(
                "UPDATE index_runs SET merge_into = ?1 WHERE run IN \
                 (SELECT run FROM index_runs WHERE level = ?2 ORDER BY run LIMIT ?3)",
                [into, level, MERGE_FANOUT],
            )?;
            let (last_row, entries): (i64, i64) = tx.query_row(
                "SELECT MAX(last_row), SUM(entries) FROM index_runs WHERE merge_into = ?1",
                [into],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            tx.execute(
                "INSERT INTO index_runs (run, level, last_row, entries) VALUES (?1, ?2, ?3, ?4)",
                [into, level + 1, last_row, entries],
            )?;
            let chunks = entries / chunk_entries + 1;
            tx.execute(
                "UPDATE index_state SET merge_from_key = ?1, merge_chunks = ?2 WHERE id = 1",
                [i64::MIN, chunks],
            )?;
            (into, i64::MIN, chunks)
        }
    };
    let first_live_row = first_live_row(main)?;
    let (through_key, last) = key_chunk(from_key, chunks);
    const MERGED: &str = "run IN (SELECT run FROM index_runs WHERE merge_into = ?1)";
    for (table, key) in INDEX_TABLES {
        tx.execute(
            &format!(
                "INSERT OR IGNORE INTO {table} (run, {key}, row) \
                 SELECT ?1, {key}, row FROM {table} \
                 WHERE {MERGED} AND {key} BETWEEN ?2 AND ?3 AND row >= ?4 \
                 ORDER BY {key}, row"
            ),
            [into, from_key, through_key, first_live_row],
        )?;
        tx.execute(
            &format!("DELETE FROM {table} WHERE {MERGED} AND {key} BETWEEN ?2 AND ?3"),
            [into, from_key, through_key],
        )?;
    }
    if last {
        tx.execute("DELETE FROM index_runs WHERE merge_into = ?1", [into])?;
        tx.execute(
            "UPDATE index_state SET merge_from_key = NULL, merge_chunks = NULL WHERE id = 1",
            [],
        )?;
    } else {
        tx.execute(
            "UPDATE index_state SET merge_from_key = ?1 WHERE id = 1",
            [through_key + 1],
        )?;
    }
    tx.commit()?;
    Ok(if last { Merge::Done } else { Merge::Moved })
}

/// How often the loader moves journaled rows into the SQLite file.
const LOAD_EVERY: Duration = Duration::from_millis(250);
/// Bytes of records logged but not loaded, at most (about 50,000 trip
/// records): past it an append first loads them itself, and is refused if
/// it cannot (SQLite locked or failing), so memory and the log stay bounded
/// and the lag shows as 503s, not as growth.
const MAX_PENDING_BYTES: usize = 64 << 20;
/// How often the indexer brings the lookup index up to date: each time
/// is a run, and the levels' reach in time is counted in runs (a top run
/// holds 16^3 of them), so more often means more runs for a search to
/// probe. Queries that need the index bring it up to date themselves,
/// which costs them at most these 15 s of records.
const INDEX_EVERY: Duration = Duration::from_secs(15);

/// Keeps the SQLite file close behind the journal and the lookup index
/// close behind the file, on two threads that end with the store.
///
/// Neither may take a core from the decisions: on two cores shared with
/// the load generator a load (a few ms of CPU every 250 ms at 5,000/s) or
/// an index catch-up (up to a second of CPU) that preempted actix's workers
/// or the audit writer cost milliseconds of p99. The indexer runs at nice
/// 19: nothing on the decision path waits for it. The loader cannot: it
/// holds the write connection, which an append needs once more than
/// `MAX_PENDING_BYTES` of records wait, and at nice 19 on a saturated host it starved while
/// holding it (measured at peak: the log reached its bound, appends loaded
/// inline behind the starved loader, throughput halved; a second loader at
/// normal priority only queued behind the first). So the loader keeps its
/// fair share of the CPU but runs as SCHED_BATCH: it never preempts a
/// thread when it wakes, and the decision threads (short slices) preempt
/// it. Past `URGENT_PENDING_BYTES` it loads back to back, unpaced.
fn spawn_loader(
    writer: std::sync::Weak<Mutex<Connection>>,
    journaled: Option<std::sync::Weak<Mutex<Journaled>>>,
    indexer: std::sync::Weak<Indexer>,
) {
    let mut spawned = std::thread::Builder::new()
        .name("audit-indexer".into())
        .spawn(move || indexer_loop(indexer))
        .map(drop);
    if let Some(journaled) = journaled {
        spawned = spawned.and_then(|()| {
            std::thread::Builder::new()
                .name("audit-loader".into())
                .spawn(move || loader_loop(writer, journaled))
                .map(drop)
        });
    }
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the audit loader; queries will load on demand");
    }
}

/// Bytes of records waiting in the log (about 10,000 trip records) past
/// which the loader loads without pausing between loads and writes pages
/// out unpaced.
const URGENT_PENDING_BYTES: usize = 16 << 20;

fn loader_loop(
    writer: std::sync::Weak<Mutex<Connection>>,
    journaled: std::sync::Weak<Mutex<Journaled>>,
) {
    crate::scheduling::never_preempt();
    let mut behind = false;
    loop {
        if !behind {
            std::thread::sleep(LOAD_EVERY);
        }
        let (Some(writer), Some(journaled)) = (writer.upgrade(), journaled.upgrade()) else {
            return;
        };
        let loaded = load_pending(&mut locked(&writer), &journaled);
        behind = match loaded {
            Ok(_) => locked(&journaled).pending_bytes >= URGENT_PENDING_BYTES,
            Err(error) => {
                tracing::warn!(%error, "journaled audit rows could not be loaded yet; will retry");
                false
            }
        };
    }
}

fn indexer_loop(indexer: std::sync::Weak<Indexer>) {
    crate::scheduling::yield_to_decisions();
    loop {
        std::thread::sleep(INDEX_EVERY);
        let Some(indexer) = indexer.upgrade() else {
            return;
        };
        if let Err(error) = indexer.catch_up().and_then(|_| indexer.merge_rest()) {
            tracing::warn!(%error, "audit lookup index could not catch up; will retry");
        }
    }
}

impl SqliteStore {
    pub async fn open(
        path: PathBuf,
        busy_timeout_ms: u64,
        segment_bytes: u64,
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
            connection.pragma_update(None, "cache_size", -65_536)?;
            for statement in SCHEMA {
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
            });
        }
        let journal_dir = journal::dir_for(&path);
        let (writer, journal) = blocking(move || {
            let opened = Journal::open(&journal_dir, segment_bytes)?;
            // What a crash (or a running owner) left unloaded.
            insert_rows(&mut writer, &opened.rows)?;
            let journal = match opened.journal {
                Some(journal) => {
                    // Only this process checkpoints, after each load.
                    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
                    // Nothing waits on a start-up: no pacing.
                    remove_loaded_segments(&writer, journal.dir(), journal.active(), false)?;
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
            Some(indexer) => indexer.catch_up().map(|_| ()),
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

    pub async fn heads(&self) -> Result<Vec<SignedHead>, StoreError> {
        self.with_reader(|connection| {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An index with `runs` level-0 runs of `per_run` entries each (random
    /// keys, rows 1..), beside an audit file whose oldest row is
    /// `first_live_row`.
    fn index_with_runs(runs: i64, per_run: i64, first_live_row: i64) -> (Connection, Connection) {
        let main = Connection::open_in_memory().unwrap();
        main.execute("CREATE TABLE audit_decisions (x)", [])
            .unwrap();
        main.execute(
            "INSERT INTO audit_decisions (rowid, x) VALUES (?1, 0)",
            [first_live_row],
        )
        .unwrap();
        let index = Connection::open_in_memory().unwrap();
        for statement in INDEX_SCHEMA {
            index.execute(statement, []).unwrap();
        }
        let mut rng = fastrand::Rng::with_seed(11);
        let mut row = 0;
        for run in 1..=runs {
            for _ in 0..per_run {
                row += 1;
                for (table, key) in INDEX_TABLES {
                    index
                        .execute(
                            &format!("INSERT INTO {table} (run, {key}, row) VALUES (?1, ?2, ?3)"),
                            [run, rng.i64(..), row],
                        )
                        .unwrap();
                }
            }
            index
                .execute(
                    "INSERT INTO index_runs (run, level, last_row, entries) VALUES (?1, 0, ?2, ?3)",
                    [run, row, 2 * per_run],
                )
                .unwrap();
        }
        (main, index)
    }

    /// Every (key, row) a search can find, per table: entries of the runs
    /// in `index_runs`, each once.
    fn searchable(index: &Connection) -> Vec<Vec<(i64, i64)>> {
        INDEX_TABLES
            .iter()
            .map(|(table, key)| {
                let mut statement = index
                    .prepare(&format!(
                        "SELECT {key}, row FROM {table} \
                         WHERE run IN (SELECT run FROM index_runs) ORDER BY {key}, row"
                    ))
                    .unwrap();
                let entries: Vec<(i64, i64)> = statement
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                entries
            })
            .collect()
    }

    fn levels(index: &Connection) -> Vec<(i64, i64)> {
        let mut statement = index
            .prepare("SELECT level, COUNT(*) FROM index_runs GROUP BY level ORDER BY level")
            .unwrap();
        let levels: Vec<(i64, i64)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        levels
    }

    #[test]
    fn a_merge_by_key_ranges_keeps_every_entry_searchable_after_each_chunk() {
        let (main, mut index) = index_with_runs(17, 50, 1);
        let before = searchable(&index);
        let mut chunks = 0;
        loop {
            let merged = merge_chunk(&main, &mut index, 200).unwrap();
            chunks += 1;
            assert_eq!(searchable(&index), before, "after chunk {chunks}");
            if merged == Merge::Done {
                break;
            }
            assert_eq!(merged, Merge::Moved);
        }
        // 16 runs of 100 entries in chunks of about 200: 8 + 1 ranges.
        assert_eq!(chunks, 9);
        assert_eq!(levels(&index), vec![(0, 1), (1, 1)]);
        assert_eq!(merge_chunk(&main, &mut index, 200).unwrap(), Merge::Idle);
        let left: i64 = index
            .query_row(
                "SELECT COUNT(*) FROM subject_rows WHERE run NOT IN (SELECT run FROM index_runs)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "the merged runs' entries are gone");
    }

    fn all_entries(index: &Connection) -> i64 {
        INDEX_TABLES
            .iter()
            .map(|(table, _)| {
                index
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .unwrap()
            })
            .sum()
    }

    #[test]
    fn a_purge_drops_the_runs_of_purged_rows_a_chunk_at_a_time_but_not_mid_merge() {
        // 17 runs of 50 rows (100 entries each); rows 1..=850.
        let (main, index) = index_with_runs(17, 50, 1);
        let indexer = Indexer {
            connections: Mutex::new((main, index)),
        };
        let searchable_rows = |indexer: &Indexer| {
            let connections = locked(&indexer.connections);
            searchable(&connections.1)
        };
        let everything = searchable_rows(&indexer);

        // A merge of the oldest 16 starts (one chunk of several).
        {
            let mut connections = locked(&indexer.connections);
            let (main, index) = &mut *connections;
            assert_eq!(merge_chunk(main, index, 300).unwrap(), Merge::Moved);
        }
        // Rows 1..=849 purged: every run is dead but the last, and the 16
        // in the merge (and the run they move into) wait for it to end.
        indexer.prune_in_chunks(850, 30).unwrap();
        assert_eq!(
            searchable_rows(&indexer),
            everything,
            "nothing dropped mid-merge"
        );

        {
            let mut connections = locked(&indexer.connections);
            let (main, index) = &mut *connections;
            while merge_chunk(main, index, 300).unwrap() != Merge::Done {}
        }
        indexer.prune_in_chunks(850, 30).unwrap();
        let live: Vec<Vec<(i64, i64)>> = everything
            .iter()
            .map(|t| t.iter().copied().filter(|(_, row)| *row >= 801).collect())
            .collect();
        assert_eq!(
            searchable_rows(&indexer),
            live,
            "only the 17th run (rows 801-850) is left"
        );
        let connections = locked(&indexer.connections);
        assert_eq!(levels(&connections.1), vec![(0, 1)]);
        assert_eq!(
            all_entries(&connections.1),
            100,
            "the dead runs' entries are gone"
        );
    }

    #[test]
    fn a_merge_leaves_out_the_entries_of_purged_rows() {
        let (main, mut index) = index_with_runs(16, 10, 41);
        let live: Vec<Vec<(i64, i64)>> = searchable(&index)
            .into_iter()
            .map(|t| t.into_iter().filter(|(_, row)| *row >= 41).collect())
            .collect();
        assert_eq!(merge_chunk(&main, &mut index, 1_000).unwrap(), Merge::Done);
        assert_eq!(searchable(&index), live);
        assert_eq!(levels(&index), vec![(1, 1)]);
    }
}
