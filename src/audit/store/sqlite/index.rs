//! The derived lookup index of an SQLite audit file: which decisions name a
//! subject ref or a trip, kept in a second file as sorted runs (see
//! `Indexer`). Derived data: rebuilt from the records whenever it is
//! missing, behind, damaged or of another layout.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::super::{lookup_key, StoreError};
use super::locked;
use super::writeback::{self, Pace};

/// Where the derived lookup index of an audit file lives.
pub(super) fn index_path(path: &Path) -> PathBuf {
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
pub(super) struct Indexer {
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
/// time, a query waits for one chunk at most. A chunk's pages (its entries
/// written, the merged runs' deleted) fit the connection's page cache
/// (`INDEX_CACHE_KIB`): past it SQLite spills pages to the WAL mid-way and
/// writes some of them twice.
const MERGE_CHUNK_ENTRIES: i64 = 250_000;

/// The index connection's page cache, KiB (see `Indexer::open`). SQLite
/// also sizes a statement's in-memory sort by it: a merge chunk's sort
/// beyond it goes on in a temporary file.
pub(super) const INDEX_CACHE_KIB: i64 = 16 * 1024;

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
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        let index = index_path(path);
        let open_index = || -> Result<Connection, StoreError> {
            let connection = Connection::open(&index)?;
            connection.busy_timeout(Duration::from_secs(5))?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "OFF")?;
            // Checkpointed by the indexer, paced (see `writeback`).
            connection.pragma_update(None, "wal_autocheckpoint", 0)?;
            // Catch-ups append sorted runs and merges read and write runs
            // in key order, so a few pages per table are hot. A larger cache only
            // fills with pages nobody reads again, and the process grows
            // for as long as it fills.
            connection.pragma_update(None, "cache_size", -INDEX_CACHE_KIB)?;
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
                tracing::warn!(error = %crate::telemetry::error_chain(&error), file = %index.display(), "rebuilding the audit lookup index");
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
    pub(super) fn prune(&self, first_live_row: i64) -> Result<(), StoreError> {
        self.prune_in_chunks(first_live_row, MERGE_CHUNK_ENTRIES)
    }

    pub(super) fn prune_in_chunks(
        &self,
        first_live_row: i64,
        chunk_entries: i64,
    ) -> Result<(), StoreError> {
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
                let rest = writeback::checkpoint_unsynced(&connections.1)?;
                drop(connections);
                // Retention's purge runs beside the decisions.
                rest.run(Pace::Gentle, false)?;
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
    /// indexer thread moves the rest (`merge_rest`). What it wrote goes out
    /// to the disk at `pace` (never synced: the index is derived), the
    /// last of it after the index is free for queries again.
    pub(super) fn catch_up(&self, pace: Pace) -> Result<usize, StoreError> {
        let mut connections = locked(&self.connections);
        let (main, index) = &mut *connections;
        let mut indexed = 0;
        loop {
            let step = index_step(main, index)?;
            indexed += step;
            if step < INDEX_STEP_RECORDS {
                break;
            }
            // A long catch-up (a rebuild) keeps its WAL a step long.
            writeback::checkpoint_unsynced(index)?.run(pace, false)?;
        }
        let merged = merge_chunk(main, index, MERGE_CHUNK_ENTRIES)?;
        if indexed > 0 || merged != Merge::Idle {
            let rest = writeback::checkpoint_unsynced(index)?;
            drop(connections);
            rest.run(pace, false)?;
        }
        Ok(indexed)
    }

    /// Moves the chunks of due merges one at a time, letting queries in
    /// between (each chunk's pages go out at `pace` while they run).
    pub(super) fn merge_rest(&self, pace: Pace) -> Result<(), StoreError> {
        loop {
            let mut connections = locked(&self.connections);
            let (main, index) = &mut *connections;
            let merged = merge_chunk(main, index, MERGE_CHUNK_ENTRIES)?;
            if merged == Merge::Idle {
                return Ok(());
            }
            let rest = writeback::checkpoint_unsynced(index)?;
            drop(connections);
            rest.run(pace, false)?;
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
    let mut statement = main.prepare_cached(
        "SELECT rowid, trip_id, detail FROM audit_decisions \
             WHERE rowid > ?1 ORDER BY rowid LIMIT 5000",
    )?;
    while indexed < INDEX_STEP_RECORDS {
        // Each row's text is read where SQLite holds it, not copied out.
        let mut rows = statement.query([high_water])?;
        let mut read = 0;
        while let Some(r) = rows.next()? {
            let row: i64 = r.get(0)?;
            let trip_id = r.get_ref(1)?.as_str().map_err(text_error(1))?;
            if !trip_id.is_empty() {
                trips.push((lookup_key(trip_id), row));
            }
            // A record whose detail does not parse is reported by
            // `audit verify`; it simply is not found by subject.
            let detail = r.get_ref(2)?.as_str().map_err(text_error(2))?;
            if let Ok(detail) = serde_json::from_str::<DetailRefs>(detail) {
                for party in &detail.parties {
                    subjects.push((lookup_key(&party.subject_ref), row));
                }
            }
            high_water = row;
            read += 1;
        }
        if read == 0 {
            break;
        }
        indexed += read;
    }
    drop(statement);
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

/// A column that should hold text and does not, as rusqlite reports it.
fn text_error(column: usize) -> impl FnOnce(rusqlite::types::FromSqlError) -> rusqlite::Error {
    move |e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    }
}

/// The row id of the oldest record kept (purges delete a prefix of the
/// file): index entries of rows before it match nothing.
pub(super) fn first_live_row(main: &Connection) -> rusqlite::Result<i64> {
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
