//! Paced checkpoints: how the SQLite files behind the log reach the disk.
//!
//! A decision waits for one `fdatasync` of the log, and on this kind of
//! (virtual) disk a sync costs about a millisecond per MB written by *any*
//! file since the last sync: measured here, a 1.5 KB log sync took 0.1 ms
//! alone, 0.8 ms after 1 MB of other writes, 4 ms after 4 MB, 11 ms after
//! 16 MB. Left to SQLite and the kernel, the audit file, its WAL and the
//! lookup index reach the disk in bursts (a checkpoint writes and fsyncs
//! MBs at once, the flusher writes 30-second-old pages in 5-second sweeps),
//! and the log syncs behind each burst stalled every decision queued after
//! them: at 5,000 decisions/s, a pair of ~10 ms stalls every 0.9 s, which
//! was the whole p99.
//!
//! So the background threads checkpoint by hand, after each load or index
//! step, and write the pages out themselves at a bounded rate: a slice,
//! then a pause, so each log sync carries at most a slice of other writes.
//! Which pages are dirty is read off the WAL (each frame names its page),
//! so a file of any size costs only its changed pages. Log segments that
//! must be zero-filled or deleted (most are recycled, see `journal`) go at
//! the same bounded rate. The lookup index, derived and free to fall
//! behind, goes slower still (`Pace::Gentle`), and writes out after it has
//! let go of its connection, so queries do not wait for its disk. Pacing
//! only ever slows background threads (the loader, the indexer, the
//! segment preparer); when records pile up, the loader writes at full
//! speed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use super::super::StoreError;

/// Bytes written out between pauses: with a log sync every few hundred µs
/// under load, each one carries at most this much of ours (~0.1 ms).
const SLICE_BYTES: u64 = 128 * 1024;
/// What one write request counts for besides its bytes (see `write_out`).
const RANGE_COST: u64 = 16 * 1024;

const WAL_HEADER: u64 = 32;
const FRAME_HEADER: u64 = 24;

/// How fast a background thread's writes go out to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the disk takes them: records are piling up, or nothing
    /// waits (start-up).
    Full,
    /// A slice, then a millisecond's pause (about 100 MB/s at most): the
    /// audit file and the log's segments, which must keep up with the
    /// trail at its peak.
    Steady,
    /// A slice, then eight milliseconds' pause (about 16 MB/s at most): the
    /// lookup index, derived and free to fall behind. A merge of its runs
    /// writes tens of MB at once; at the steady pace the disk took them as
    /// fast as it could and the log's syncs queued behind them.
    Gentle,
}

impl Pace {
    fn pause(self) -> Option<Duration> {
        match self {
            Pace::Full => None,
            Pace::Steady => Some(Duration::from_millis(1)),
            Pace::Gentle => Some(Duration::from_millis(8)),
        }
    }
}

/// Byte ranges of files that a checkpoint left dirty in the page cache, to
/// be written out at a pace (`run`).
#[must_use = "dirty pages left to the kernel go out in one burst"]
pub struct WriteOut {
    files: Vec<(PathBuf, Vec<(u64, u64)>)>,
}

impl WriteOut {
    /// Writes every range out at `pace`; syncs each file if `sync`.
    pub fn run(self, pace: Pace, sync: bool) -> Result<(), StoreError> {
        for (path, ranges) in self.files {
            let file = File::open(&path).map_err(failed(&path))?;
            write_out(&file, &ranges, sync, pace).map_err(failed(&path))?;
        }
        Ok(())
    }
}

fn failed(what: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let what = what.display().to_string();
    move |e| StoreError::Invalid(format!("cannot write out {what}: {e}"))
}

/// Copies the WAL of `connection`'s file into the file, which must be
/// crash-safe (`synchronous=NORMAL`), writing both out at `pace`; returns
/// whether every frame was copied (readers can hold a checkpoint back).
/// The connection must have `wal_autocheckpoint=0`.
///
/// The WAL is synced before any page is copied, the copy itself runs
/// without SQLite's own syncs (its bursts are what this avoids), and the
/// file is synced before returning, so before the WAL can be overwritten
/// (only the next write on this connection, which the caller holds, does
/// that).
pub fn checkpoint(connection: &Connection, pace: Pace) -> Result<bool, StoreError> {
    let (complete, rest) = copy_wal(connection, Some(pace))?;
    rest.run(pace, true)?;
    Ok(complete)
}

/// Copies the WAL of a derived file (the lookup index: never synced, rebuilt
/// if damaged) into the file, in the page cache only, and returns what is
/// left to write out. The caller writes it out once it has let go of the
/// connection, so a query waiting for the connection waits for the copy,
/// not for the disk.
pub fn checkpoint_unsynced(connection: &Connection) -> Result<WriteOut, StoreError> {
    Ok(copy_wal(connection, None)?.1)
}

/// The checkpoint itself. With `synced_at` the WAL is first written out at
/// that pace and synced, and the copy runs at `synchronous=OFF` (restored
/// after); without, the WAL's frames are left to the returned `WriteOut`.
fn copy_wal(
    connection: &Connection,
    synced_at: Option<Pace>,
) -> Result<(bool, WriteOut), StoreError> {
    let mut rest = WriteOut { files: Vec::new() };
    let Some(path) = connection
        .path()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
    else {
        return Ok((false, rest));
    };
    let wal_path = wal_of(&path);
    let page_size: u64 = connection.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages = match File::open(&wal_path) {
        Ok(wal) => {
            let pages = frame_pages(&wal, page_size).map_err(failed(&wal_path))?;
            let frames_end = WAL_HEADER + pages.len() as u64 * (FRAME_HEADER + page_size);
            match synced_at {
                Some(pace) => {
                    write_out(&wal, &[(0, frames_end)], true, pace).map_err(failed(&wal_path))?
                }
                None => rest.files.push((wal_path, vec![(0, frames_end)])),
            }
            pages
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(failed(&wal_path)(e)),
    };
    let durable = synced_at.is_some();
    if durable {
        connection.pragma_update(None, "synchronous", "OFF")?;
    }
    let copied = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    if durable {
        connection.pragma_update(None, "synchronous", "NORMAL")?;
    }
    let (busy, wal_frames, checkpointed) = copied?;
    rest.files.push((path, page_ranges(pages, page_size)));
    Ok((busy == 0 && wal_frames == checkpointed, rest))
}

/// Deletes a file a slice at a time. On a filesystem mounted with
/// `discard` an unlink frees and discards all of a file's blocks at once:
/// measured here, deleting a 64 MB log segment stalled the log syncs
/// behind it for 23 ms; shrinking it first, a slice per pause, for 3.
/// A crash part-way leaves a shorter file, which is what the log reader
/// sees as a torn tail; its records are all in the SQLite file already.
pub fn remove_file(path: &Path, pace: Pace) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while let (Some(pause), true) = (pace.pause(), len > 0) {
        len = len.saturating_sub(SLICE_BYTES);
        file.set_len(len)?;
        std::thread::sleep(pause);
    }
    std::fs::remove_file(path)
}

/// The WAL beside an SQLite file.
fn wal_of(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// The page number of every frame of the WAL's current generation (frames
/// whose salt matches the header's; older ones beyond them are leftovers).
fn frame_pages(wal: &File, page_size: u64) -> std::io::Result<Vec<u32>> {
    let mut header = [0u8; WAL_HEADER as usize];
    if wal.read_exact_at(&mut header, 0).is_err() {
        return Ok(Vec::new());
    }
    let salt = &header[16..24];
    let mut pages = Vec::new();
    let mut frame = [0u8; FRAME_HEADER as usize];
    let mut offset = WAL_HEADER;
    while wal.read_exact_at(&mut frame, offset).is_ok() && frame[8..16] == *salt {
        pages.push(u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]));
        offset += FRAME_HEADER + page_size;
    }
    Ok(pages)
}

/// Byte ranges of the given pages (numbered from 1), merged where adjacent.
fn page_ranges(mut pages: Vec<u32>, page_size: u64) -> Vec<(u64, u64)> {
    pages.sort_unstable();
    pages.dedup();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for page in pages.into_iter().filter(|p| *p > 0) {
        let start = u64::from(page - 1) * page_size;
        match ranges.last_mut() {
            Some(last) if last.1 == start => last.1 += page_size,
            _ => ranges.push((start, start + page_size)),
        }
    }
    ranges
}

/// Writes out the given byte ranges of `file` at a bounded rate, and syncs
/// the file at the end if asked. Each range counts `RANGE_COST` bytes more
/// than its length: scattered pages (the lookup index's) are one write
/// request each, and a disk absorbs small random writes far more slowly
/// than the same bytes in sequence.
pub fn write_out(
    file: &File,
    ranges: &[(u64, u64)],
    sync: bool,
    pace: Pace,
) -> std::io::Result<()> {
    let mut since_pause = 0;
    for &(start, end) in ranges {
        let mut offset = start;
        since_pause += RANGE_COST;
        while offset < end {
            let len = (end - offset).min(SLICE_BYTES);
            // SAFETY: a system call on a descriptor `file` keeps open; it
            // touches no memory of ours.
            let done = unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    offset as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                )
            };
            if done != 0 {
                return Err(std::io::Error::last_os_error());
            }
            offset += len;
            since_pause += len;
            if let (Some(pause), true) = (pace.pause(), since_pause >= SLICE_BYTES) {
                std::thread::sleep(pause);
                since_pause = 0;
            }
        }
    }
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_become_merged_byte_ranges() {
        assert_eq!(
            page_ranges(vec![5, 1, 2, 2, 9, 6], 4096),
            vec![(0, 8192), (16384, 24576), (32768, 36864)]
        );
    }

    /// A WAL-mode file checkpointed by hand, holding `rows` rows of 1,000
    /// bytes, all still in its WAL.
    fn table_in_wal(path: &Path, synchronous: &str, rows: usize) -> Connection {
        let connection = Connection::open(path).unwrap();
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .unwrap();
        connection
            .pragma_update(None, "synchronous", synchronous)
            .unwrap();
        connection
            .pragma_update(None, "wal_autocheckpoint", 0)
            .unwrap();
        connection.execute("CREATE TABLE t (x BLOB)", []).unwrap();
        for _ in 0..rows {
            connection
                .execute("INSERT INTO t VALUES (randomblob(1000))", [])
                .unwrap();
        }
        connection
    }

    #[test]
    fn a_paced_checkpoint_copies_every_frame_and_keeps_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let connection = table_in_wal(&path, "NORMAL", 300);
        let wal = File::open(wal_of(&path)).unwrap();
        let pages = frame_pages(&wal, 4096).unwrap();
        assert!(pages.len() >= 75, "{} frames", pages.len());
        assert!(checkpoint(&connection, Pace::Steady).unwrap());
        let synchronous: i64 = connection
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 1, "NORMAL again after the checkpoint");
        drop(connection);
        let reopened = Connection::open(&path).unwrap();
        let rows: i64 = reopened
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 300);
    }

    #[test]
    fn an_unsynced_checkpoint_copies_every_frame_and_leaves_the_writing_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        let connection = table_in_wal(&path, "OFF", 100);
        let frames = frame_pages(&File::open(wal_of(&path)).unwrap(), 4096)
            .unwrap()
            .len() as u64;
        let rest = checkpoint_unsynced(&connection).unwrap();
        // Copied: nothing is left in the WAL for the next checkpoint.
        let (busy, wal_frames, copied): (i64, i64, i64) = connection
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(
            (busy, wal_frames, copied),
            (0, frames as i64, frames as i64)
        );
        // Left to the caller: the WAL's frames, then the file's pages.
        assert_eq!(rest.files.len(), 2);
        assert_eq!(rest.files[0].0, wal_of(&path));
        assert_eq!(
            rest.files[0].1,
            vec![(0, WAL_HEADER + frames * (FRAME_HEADER + 4096))]
        );
        assert_eq!(rest.files[1].0, path);
        let file_bytes: u64 = rest.files[1].1.iter().map(|(a, b)| b - a).sum();
        assert!(file_bytes >= 25 * 4096, "{file_bytes} bytes of pages");
        rest.run(Pace::Gentle, false).unwrap();
    }

    #[test]
    fn a_file_removed_in_slices_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        std::fs::write(&path, vec![0u8; 3 * SLICE_BYTES as usize + 5]).unwrap();
        remove_file(&path, Pace::Steady).unwrap();
        assert!(!path.exists());
        assert!(
            remove_file(&path, Pace::Steady).is_err(),
            "a missing file is an error"
        );
    }
}
