//! Moving journaled rows into the SQLite file, and the two background
//! threads that keep the file close behind the journal and the lookup
//! index close behind the file.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection};

use super::super::appeals::AppealChange;
use super::super::StoreError;
use super::index::Indexer;
use super::journal::{self, Journal, JournalRow};
use super::locked;
use super::writeback::{self, Pace};

/// The journal and the rows in it that are not in the SQLite file yet.
pub(super) struct Journaled {
    pub(super) journal: Journal,
    pub(super) pending: Vec<JournalRow>,
    /// About the memory `pending` holds: the bounds below are in bytes,
    /// because a candidate check's record (fifty parties) is ten times a
    /// trip's, and a bound in rows let a candidate peak hold 500 MB.
    pub(super) pending_bytes: usize,
    /// Rows taken from `pending` by a load still under way.
    pub(super) loading: usize,
}

const INSERT_ROW: &str = "INSERT OR IGNORE INTO audit_decisions (decision_id, instance_id, seq, \
     decided_at, hook, trip_id, city, decision, degraded, policy_version, key_id, reason_mask, \
     detail, prev_hash, hash, format) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

/// Inserts rows in one transaction. A row already there (same chain and
/// seq: loaded before a crash, or by another process) is left as it is.
pub(super) fn insert_rows(
    connection: &mut Connection,
    rows: &[JournalRow],
) -> Result<(), StoreError> {
    let tx = connection.transaction()?;
    {
        let mut insert = tx.prepare_cached(INSERT_ROW)?;
        for JournalRow { row, reason_mask } in rows {
            if let Some(change) = AppealChange::of(row) {
                tx.execute(
                    change.sql(),
                    rusqlite::params_from_iter(change.params().iter()),
                )?;
            }
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
pub(super) fn load_pending(
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
    let pace = if state.pending_bytes < URGENT_PENDING_BYTES {
        Pace::Steady
    } else {
        Pace::Full
    };
    drop(state);
    // Rows appended after the take went to segment `active` or later.
    remove_loaded_segments(connection, &dir, active, pace)?;
    Ok(rows.len())
}

/// Checkpoints, and once that is complete deletes the segments before
/// `active`: their rows are then on disk in the file itself. Segments roll
/// over every `sqlite_log_segment_bytes`, so deleting is rare; if readers
/// hold the checkpoint back, the segments stay until the next load.
pub(super) fn remove_loaded_segments(
    connection: &Connection,
    dir: &Path,
    active: u64,
    pace: Pace,
) -> Result<(), StoreError> {
    if writeback::checkpoint(connection, pace)? && journal::has_segments_before(dir, active)? {
        journal::remove_segments_before(dir, active, pace)?;
    }
    Ok(())
}

/// How often the loader moves journaled rows into the SQLite file.
const LOAD_EVERY: Duration = Duration::from_millis(250);
/// Bytes of records logged but not loaded, at most (about 50,000 trip
/// records): past it an append first loads them itself, and is refused if
/// it cannot (SQLite locked or failing), so memory and the log stay bounded
/// and the lag shows as 503s, not as growth.
pub(super) const MAX_PENDING_BYTES: usize = 64 << 20;
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
pub(super) fn spawn_loader(
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
        tracing::warn!(error = %crate::telemetry::error_chain(&error), "cannot start the audit loader; queries will load on demand");
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
                tracing::warn!(error = %crate::telemetry::error_chain(&error), "journaled audit rows could not be loaded yet; will retry");
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
        if let Err(error) = indexer
            .catch_up(Pace::Gentle)
            .and_then(|_| indexer.merge_rest(Pace::Gentle))
        {
            tracing::warn!(error = %crate::telemetry::error_chain(&error), "audit lookup index could not catch up; will retry");
        }
    }
}
