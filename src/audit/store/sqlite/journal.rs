//! The SQLite store's journal: where a decision's record is durable first.
//!
//! An SQLite commit of a few records rewrites whole pages of the table and
//! its indexes, checksums them into the WAL, fsyncs, and now and then stops
//! to checkpoint; at thousands of decisions a second that was most of the
//! hook's CPU and all of its tail latency. So the audit writer appends each
//! batch here instead, as checksummed frames in a segment file, and fsyncs
//! once: a sequential write of the records' own bytes. The store then loads
//! the records into the SQLite file in large transactions, off the decision
//! path, and deletes a segment only once everything in it is committed
//! there. Opening the store loads whatever a crash left in the journal.
//!
//! Segments are written to their full size before use, so an append
//! overwrites blocks the file already has and its fdatasync writes only
//! data, not also the inode; it writes whole pages, so it never reads one
//! from disk first (see `append`). A segment whose records are all in the
//! SQLite file is recycled as a later one (renamed, not deleted): zero-filling a
//! new segment doubled the bytes the log wrote, and deleting one freed 64 MB
//! at once (the filesystem is mounted with `discard`), both of which the
//! log's own syncs wait behind on a virtual disk. Only the first segments,
//! and those after a spare was lost, are zero-filled, on a helper thread
//! while the current one fills. A recycled segment still holds its old
//! frames: each frame's check covers its segment's number, so the reader
//! stops at the first frame of another segment, as at zeros or a torn one.
//!
//! Every append starts on a page boundary and ends with a padding frame to
//! the next one, so no append rewrites bytes an earlier one acknowledged;
//! and a segment starts with a header (magic, format version). Reading a
//! segment stops at the first frame that is not this segment's. Where it
//! stops tells what happened: on a page boundary with nothing of the
//! segment after it, the clean end; inside a page with nothing after, a
//! torn last append (never acknowledged: dropped, and logged); anywhere
//! with frames of the segment after it, damage to acknowledged records,
//! which stops start-up naming the segment and offset, unless the operator
//! salvages (`audit.salvage_journal`: what comes before the damage is kept,
//! what the segment held after it is counted and dropped).
//!
//! One process owns the journal (it holds the lock on `LOCK`): it appends
//! and deletes segments. A server that cannot take the lock within
//! `audit.journal_lock_wait_ms` (another server on the same file, an old pod
//! still draining) refuses to start: it would otherwise commit decisions
//! without the journal's fsync. Readers (the `audit` CLI beside a running
//! server) never lock: they only read the segments, so they see every
//! record without disturbing the owner.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use super::super::StoreError;
pub use super::frame::JournalRow;
use super::frame::{encode_frame, encode_header, encode_pad, frame_at, FrameAt, SEGMENT_VERSION};

/// How a store opens its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalAccess {
    /// Take the lock (waiting up to `wait` for another owner to let go),
    /// append, retire segments. `salvage`: keep what comes before damage.
    Own { wait: Duration, salvage: bool },
    /// Read the segments only: never lock, create or change anything.
    Read,
}

/// Where the journal of an audit file lives (not `-journal`: SQLite takes
/// that name for its own rollback journal).
pub fn dir_for(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-log");
    PathBuf::from(name)
}

/// What opening the journal found: the records still in it, and the journal
/// itself when this process owns it.
pub struct Opened {
    pub journal: Option<Journal>,
    pub rows: Vec<JournalRow>,
}

pub struct Journal {
    dir: PathBuf,
    /// Held for the life of the journal: the lock is the ownership.
    _lock: File,
    active: u64,
    file: File,
    /// Bytes of the active segment in use; always a whole number of pages.
    len: u64,
    segment_bytes: u64,
    /// The segment after `active`, being zeroed by a helper thread.
    next: Option<std::thread::JoinHandle<Result<File, StoreError>>>,
    /// Set when a failed append could not be undone: frames of a batch that
    /// was refused might remain, so nothing more is appended by this process.
    poisoned: Option<String>,
}

fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Segments whose frames' checks cover the segment's number (recyclable).
const SEGMENT_SUFFIX: &str = ".segment";
/// Segments written before recycling: checks of the body alone. Read as
/// such, and deleted once loaded, never recycled (a recycled one's old
/// frames would read as its own).
const LEGACY_SUFFIX: &str = ".seg";
/// A loaded segment kept to become a later one.
const SPARE_PREFIX: &str = "spare-";
/// Spares kept at most; more loaded segments than this are deleted.
const MAX_SPARES: usize = 2;

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}{SEGMENT_SUFFIX}"))
}

/// A segment of the journal: its number, file, and whether it is legacy.
struct Segment {
    n: u64,
    path: PathBuf,
    legacy: bool,
}

impl Segment {
    /// The seed its frames' checks were made with.
    fn seed(&self) -> Option<u64> {
        (!self.legacy).then_some(self.n)
    }
}

/// The journal's segments, oldest first.
fn segments(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
    let mut found: Vec<Segment> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (number, legacy) = match name.strip_suffix(SEGMENT_SUFFIX) {
                Some(number) => (number, false),
                None => (name.strip_suffix(LEGACY_SUFFIX)?, true),
            };
            Some(Segment {
                n: number.parse().ok()?,
                path: entry.path(),
                legacy,
            })
        })
        .collect();
    found.sort_by_key(|segment| segment.n);
    Ok(found)
}

/// A spare keeps the number it had as a segment.
fn spare_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{SPARE_PREFIX}{n:020}"))
}

/// The spare segments of `dir`: (the number each had, file).
fn spares(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let n = name.strip_prefix(SPARE_PREFIX)?.parse().ok()?;
            Some((n, entry.path()))
        })
        .collect())
}

/// Makes renames and new names in `dir` survive a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync", dir, e))
}

impl Journal {
    /// Opens the journal of `dir` and reads what is in it (see
    /// `JournalAccess`).
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        access: JournalAccess,
    ) -> Result<Opened, StoreError> {
        let JournalAccess::Own { wait, salvage } = access else {
            if !dir.exists() {
                return Ok(Opened {
                    journal: None,
                    rows: Vec::new(),
                });
            }
            return Ok(Opened {
                journal: None,
                rows: read_all(dir, true)?,
            });
        };
        std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("open", &lock_path, e))?;
        let started = Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Invalid(format!(
                        "audit journal {} is locked by another process (another tripgate serving \
                         this file?) and was not released within {} ms; refusing to serve \
                         decisions that could not be made durable",
                        dir.display(),
                        wait.as_millis()
                    )))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(io_error("lock", &lock_path, e))
                }
            }
        }
        let rows = read_all(dir, salvage)?;
        let existing = segments(dir)?;
        // Above every number a spare had too: a spare made segment n again
        // would have its old frames read as its own.
        let active = existing
            .iter()
            .map(|segment| segment.n)
            .chain(spares(dir)?.into_iter().map(|(n, _)| n))
            .max()
            .map_or(0, |n| n + 1);
        let segment_bytes = segment_bytes.max(PAGE_BYTES as u64);
        let file = prepare_segment(dir, active, segment_bytes)?;
        Ok(Opened {
            journal: Some(Journal {
                dir: dir.to_owned(),
                _lock: lock,
                active,
                file,
                len: 0,
                segment_bytes,
                next: prepare_in_background(dir, active + 1, segment_bytes),
                poisoned: None,
            }),
            rows,
        })
    }

    /// The segment appends go to now.
    pub fn active(&self) -> u64 {
        self.active
    }

    /// Appends the rows and makes them durable; on failure none of them is.
    pub fn append(&mut self, rows: &[JournalRow]) -> Result<(), StoreError> {
        if let Some(why) = &self.poisoned {
            return Err(StoreError::Invalid(format!(
                "audit journal unusable until restart: {why}"
            )));
        }
        if self.len >= self.segment_bytes {
            self.roll()?;
        }
        // From a page boundary to a page boundary: the append never
        // rewrites a byte an earlier one acknowledged, and never writes part
        // of a page (which would make the kernel read the page first when
        // the page cache no longer holds it: a recycled segment's pages, or
        // any once memory is trimmed; measured before whole-page appends,
        // 110 MB read by the writer thread in five minutes at 5,000
        // decisions/s, and single appends of up to 0.4 s).
        let mut pages = Vec::new();
        if self.len == 0 {
            encode_header(self.active, &mut pages);
        }
        for row in rows {
            encode_frame(row, Some(self.active), &mut pages);
        }
        encode_pad(self.active, &mut pages);
        pages.resize(pages.len().next_multiple_of(PAGE_BYTES), 0);
        let path = segment_path(&self.dir, self.active);
        let written = self
            .file
            .write_all_at(&pages, self.len)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += pages.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Frames of a refused batch must not be read as records:
                // zero what may have been written.
                let zeros = vec![0u8; pages.len()];
                let undone = self
                    .file
                    .write_all_at(&zeros, self.len)
                    .and_then(|()| self.file.sync_data());
                if let Err(undo) = undone {
                    self.poisoned = Some(format!("{e}; then {undo}"));
                }
                Err(io_error("append to", &path, e))
            }
        }
    }

    /// Moves appends to the next segment: the one prepared in the
    /// background if that worked, else one prepared here.
    fn roll(&mut self) -> Result<(), StoreError> {
        let next = self.active + 1;
        let path = segment_path(&self.dir, next);
        let prepared = match self.next.take().map(std::thread::JoinHandle::join) {
            // Still the file at that name: a handle to a segment unlinked
            // since (the directory removed, say) would take appends that
            // no restart can read.
            Some(Ok(Ok(file))) if same_file(&file, &path) => Ok(file),
            Some(Ok(Err(error))) => Err(error),
            _ => Err(StoreError::Invalid(format!(
                "audit journal: {} was not prepared",
                path.display()
            ))),
        };
        self.file = match prepared {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&error), "the next audit log segment was not prepared; making it now");
                prepare_segment(&self.dir, next, self.segment_bytes)?
            }
        };
        self.active = next;
        self.len = 0;
        self.next = prepare_in_background(&self.dir, next + 1, self.segment_bytes);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether an append could succeed now (for readiness).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        if let Some(why) = &self.poisoned {
            return Err(StoreError::Invalid(format!(
                "audit journal unusable: {why}"
            )));
        }
        let path = segment_path(&self.dir, self.active);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .map(drop)
            .map_err(|e| io_error("write", &path, e))
    }
}

/// Where reading a segment stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// After a whole append, on a page boundary, nothing of the segment
    /// after it.
    Clean,
    /// Inside the last append, nothing of the segment after it: the append
    /// was torn (never acknowledged); `dropped` of its records were
    /// readable and are not kept.
    Torn { offset: usize, dropped: usize },
    /// Frames of the segment follow: acknowledged records were damaged.
    Damaged { offset: usize, resumes_at: usize },
}

/// The records of one segment and where reading stopped. A record counts
/// once the padding frame that ends its append has been read (segments of
/// the first format, unpadded, count every readable record).
fn read_segment(bytes: &[u8], seed: Option<u64>) -> Result<(Vec<JournalRow>, Stop), String> {
    let mut rows = Vec::new();
    let mut pending = Vec::new();
    let mut pos = 0usize;
    let mut padded = false;
    loop {
        match frame_at(bytes, pos, seed) {
            FrameAt::Row(row, next) => {
                pending.push(*row);
                pos = next;
            }
            FrameAt::Header { version, next } if pos == 0 => {
                if version > SEGMENT_VERSION {
                    return Err(format!(
                        "segment format {version} is newer than this build reads ({SEGMENT_VERSION})"
                    ));
                }
                padded = true;
                pos = next;
            }
            FrameAt::Pad { next } => {
                rows.append(&mut pending);
                pos = next.next_multiple_of(PAGE_BYTES);
            }
            FrameAt::Header { .. } | FrameAt::Nothing => break,
        }
    }
    let first_page_after = (pos + 1).next_multiple_of(PAGE_BYTES);
    let resumes_at = (first_page_after..bytes.len())
        .step_by(PAGE_BYTES)
        .find(|at| !matches!(frame_at(bytes, *at, seed), FrameAt::Nothing));
    let stop = match resumes_at {
        Some(resumes_at) => Stop::Damaged {
            offset: pos,
            resumes_at,
        },
        // Segments of the first format were not padded: they end anywhere.
        None if !padded => {
            rows.append(&mut pending);
            Stop::Clean
        }
        None if pending.is_empty() && pos.is_multiple_of(PAGE_BYTES) => Stop::Clean,
        None => Stop::Torn {
            offset: pos,
            dropped: pending.len(),
        },
    };
    Ok((rows, stop))
}

/// The records a segment holds from `at` on (damage being salvaged).
fn count_from(bytes: &[u8], mut at: usize, seed: Option<u64>) -> usize {
    let mut count = 0;
    while at < bytes.len() {
        match frame_at(bytes, at, seed) {
            FrameAt::Row(_, next) => {
                count += 1;
                at = next;
            }
            FrameAt::Pad { next } | FrameAt::Header { next, .. } => {
                at = next.next_multiple_of(PAGE_BYTES)
            }
            FrameAt::Nothing => at = (at + 1).next_multiple_of(PAGE_BYTES),
        }
    }
    count
}

/// Every record in the journal's segments, oldest first. A torn last
/// append is dropped and logged; damage anywhere else is an error, unless
/// `salvage` (then what the damaged segment held after it is dropped,
/// counted and logged).
fn read_all(dir: &Path, salvage: bool) -> Result<Vec<JournalRow>, StoreError> {
    let mut read: Vec<(Segment, Vec<JournalRow>, Stop, Vec<u8>)> = Vec::new();
    for segment in segments(dir)? {
        let bytes = match std::fs::read(&segment.path) {
            Ok(bytes) => bytes,
            // Retired by the owner since the listing (a reader beside a
            // running server): its records are in the SQLite file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("read", &segment.path, e)),
        };
        let (rows, stop) = read_segment(&bytes, segment.seed()).map_err(|problem| {
            StoreError::Invalid(format!(
                "audit journal {}: {problem}",
                segment.path.display()
            ))
        })?;
        read.push((segment, rows, stop, bytes));
    }
    let last_with_rows = read.iter().rposition(|(_, rows, _, _)| !rows.is_empty());
    let mut all = Vec::new();
    for (i, (segment, rows, stop, bytes)) in read.into_iter().enumerate() {
        let damage = match stop {
            Stop::Clean => None,
            Stop::Torn { offset, dropped } if last_with_rows.is_none_or(|last| i >= last) => {
                tracing::warn!(
                    segment = %segment.path.display(),
                    offset,
                    dropped,
                    "audit journal: the last append was torn by a crash (never acknowledged); its records were dropped"
                );
                None
            }
            Stop::Torn { offset, .. } => Some((offset, offset.next_multiple_of(PAGE_BYTES))),
            Stop::Damaged { offset, resumes_at } => Some((offset, resumes_at)),
        };
        if let Some((offset, resumes_at)) = damage {
            let dropped = count_from(&bytes, resumes_at, segment.seed());
            if !salvage {
                return Err(StoreError::Invalid(format!(
                    "audit journal {}: damaged at offset {offset}, before records that were \
                     acknowledged ({dropped} readable after it, from offset {resumes_at}; and any \
                     in the damaged part). Copy the journal for investigation; to start anyway, \
                     keeping what comes before the damage, set audit.salvage_journal = true",
                    segment.path.display()
                )));
            }
            tracing::error!(
                segment = %segment.path.display(),
                offset,
                dropped,
                "audit journal damaged: salvaged the records before the damage, dropped the ones after it"
            );
        }
        all.extend(rows);
    }
    Ok(all)
}

/// Retires the segments of `dir` before `segment` (their records must be
/// durable in the SQLite file): kept as spares for later segments, up to
/// `MAX_SPARES`, the rest deleted. The owner never writes to those again,
/// so this needs no lock on the journal.
pub fn remove_segments_before(
    dir: &Path,
    segment: u64,
    pace: super::writeback::Pace,
) -> Result<(), StoreError> {
    let mut spare_count = spares(dir)?.len();
    for retired in segments(dir)?.into_iter().filter(|s| s.n < segment) {
        if !retired.legacy && spare_count < MAX_SPARES {
            std::fs::rename(&retired.path, spare_path(dir, retired.n))
                .map_err(|e| io_error("recycle", &retired.path, e))?;
            // A segment back after a crash would be read again.
            sync_dir(dir)?;
            spare_count += 1;
        } else {
            super::writeback::remove_file(&retired.path, pace)
                .map_err(|e| io_error("remove", &retired.path, e))?;
        }
    }
    Ok(())
}

/// Whether `dir` holds segments before `segment` (to be retired).
pub fn has_segments_before(dir: &Path, segment: u64) -> Result<bool, StoreError> {
    Ok(segments(dir)?.first().is_some_and(|s| s.n < segment))
}

/// Makes segment `n`, at least `bytes` long: a spare renamed, or a new
/// file of zeros. Appends then overwrite allocated blocks, so their
/// fdatasync writes only the data; an append that extends a file must also
/// write its inode, a second synchronous I/O on every batch. Zeros end a
/// segment for the reader (no frame has length 0 and an empty check), and
/// so do a spare's old frames (their checks cover another number).
fn prepare_segment(dir: &Path, n: u64, bytes: u64) -> Result<File, StoreError> {
    let path = segment_path(dir, n);
    for (_, spare) in spares(dir)? {
        let long_enough = std::fs::metadata(&spare).is_ok_and(|m| m.len() >= bytes);
        if !long_enough {
            // From a smaller `sqlite_log_segment_bytes`: no use.
            let _ = std::fs::remove_file(&spare);
            continue;
        }
        if std::fs::rename(&spare, &path).is_ok() {
            sync_dir(dir)?;
            return OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io_error("open", &path, e));
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("create", &path, e))?;
    let zeros = vec![0u8; ZERO_CHUNK.min(bytes as usize)];
    let mut written = 0;
    while written < bytes {
        let chunk = &zeros[..zeros.len().min((bytes - written) as usize)];
        file.write_all_at(chunk, written)
            .map_err(|e| io_error("prepare", &path, e))?;
        written += chunk.len() as u64;
    }
    // 64 MB in one sync would stall the log syncs behind it for ~60 ms.
    super::writeback::write_out(&file, &[(0, bytes)], false, super::writeback::Pace::Steady)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("sync", &path, e))?;
    // The new name must survive a crash as well as what is written to it.
    sync_dir(dir)?;
    Ok(file)
}

const ZERO_CHUNK: usize = 1 << 20;

/// The page size appends are rounded to (x86-64 and most arm64 kernels); on
/// a kernel with larger pages an append still works, only partly reads.
const PAGE_BYTES: usize = 4096;

/// Prepares segment `n` on a helper thread while the active one fills
/// (none if no thread can be started: the roll then prepares it itself).
fn prepare_in_background(
    dir: &Path,
    n: u64,
    bytes: u64,
) -> Option<std::thread::JoinHandle<Result<File, StoreError>>> {
    let dir = dir.to_owned();
    std::thread::Builder::new()
        .name("audit-log-prep".into())
        .spawn(move || prepare_segment(&dir, n, bytes))
        .ok()
}

fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
