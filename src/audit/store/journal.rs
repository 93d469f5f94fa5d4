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
//! One process owns the journal (it holds the lock on `LOCK`): it appends
//! and deletes segments. Anyone else who opens the store (the `audit` CLI
//! beside a running server) only reads the segments, so it sees every
//! record without disturbing the owner.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::{Row, StoreError};

/// A row of `audit_decisions` as the journal keeps it.
#[derive(Debug, Clone)]
pub struct JournalRow {
    pub row: Row,
    pub reason_mask: i64,
}

impl JournalRow {
    /// About the memory the row holds: its text, plus the fixed part and
    /// allocator overhead of its fourteen fields.
    pub fn approx_bytes(&self) -> usize {
        let r = &self.row;
        [
            &r.decision_id,
            &r.instance_id,
            &r.hook,
            &r.trip_id,
            &r.city,
            &r.decision,
            &r.policy_version,
            &r.key_id,
            &r.detail,
            &r.prev_hash,
            &r.hash,
        ]
        .iter()
        .map(|s| s.len())
        .sum::<usize>()
            + 512
    }
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
    len: u64,
    /// The bytes of the page `len` is in, up to `len` (see `append`).
    tail: Vec<u8>,
    segment_bytes: u64,
    /// The segment after `active`, being zeroed by a helper thread.
    next: Option<std::thread::JoinHandle<Result<File, StoreError>>>,
    /// Set when a failed append could not be undone: frames of a batch that
    /// was refused might remain, so nothing more is appended by this process.
    poisoned: Option<String>,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Invalid(format!(
        "audit journal: cannot {what} {}: {e}",
        path.display()
    ))
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
    /// Opens (creating) the journal of `dir` and reads what is in it.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Opened, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("open", &lock_path, e))?;
        let owner = match lock.try_lock() {
            Ok(()) => true,
            Err(std::fs::TryLockError::WouldBlock) => false,
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error("lock", &lock_path, e)),
        };
        let existing = segments(dir)?;
        let mut rows = Vec::new();
        for segment in &existing {
            let bytes = match std::fs::read(&segment.path) {
                Ok(bytes) => bytes,
                // Retired by the owner since the listing (a reader beside a
                // running server): its records are in the SQLite file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("read", &segment.path, e)),
            };
            // A torn frame ends a segment: it was never acknowledged.
            rows.extend(decode_frames(&bytes, segment.seed()));
        }
        if !owner {
            return Ok(Opened {
                journal: None,
                rows,
            });
        }
        // Above every number a spare had too: a spare made segment n again
        // would have its old frames read as its own.
        let active = existing
            .iter()
            .map(|segment| segment.n)
            .chain(spares(dir)?.into_iter().map(|(n, _)| n))
            .max()
            .map_or(0, |n| n + 1);
        let segment_bytes = segment_bytes.max(1);
        let file = prepare_segment(dir, active, segment_bytes)?;
        Ok(Opened {
            journal: Some(Journal {
                dir: dir.to_owned(),
                _lock: lock,
                active,
                file,
                len: 0,
                tail: Vec::new(),
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
        // Whole pages from the start of the one `len` is in: a write that
        // covers part of a page the page cache no longer holds (a recycled
        // segment's, or any once memory is trimmed) makes the kernel read
        // the page from disk first, on the decision path and behind every
        // write queued there; measured here, 110 MB read by the writer
        // thread in five minutes at 5,000 decisions/s, and single log
        // appends of up to 0.4 s. The zeros after the frames end the
        // segment for the reader until the next append overwrites them.
        // Rewriting the page's earlier frames puts none of them at risk:
        // they get the same bytes, and a torn write leaves each sector old
        // or new (an append into the middle of a sector always rewrote the
        // sector's start too).
        let page_start = self.len - self.tail.len() as u64;
        let mut pages = std::mem::take(&mut self.tail);
        let kept = pages.len();
        for row in rows {
            encode_frame(row, Some(self.active), &mut pages);
        }
        let end = page_start + pages.len() as u64;
        pages.resize(pages.len().next_multiple_of(PAGE_BYTES), 0);
        let path = segment_path(&self.dir, self.active);
        let written = self
            .file
            .write_all_at(&pages, page_start)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len = end;
                let tail_start = (end - end % PAGE_BYTES as u64 - page_start) as usize;
                pages.truncate((end - page_start) as usize);
                pages.drain(..tail_start);
                self.tail = pages;
                Ok(())
            }
            Err(e) => {
                pages.truncate(kept);
                self.tail = pages;
                let undone = self
                    .file
                    .set_len(self.len)
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
                tracing::warn!(%error, "the next audit log segment was not prepared; making it now");
                prepare_segment(&self.dir, next, self.segment_bytes)?
            }
        };
        self.active = next;
        self.len = 0;
        self.tail.clear();
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

/// Retires the segments of `dir` before `segment` (their records must be
/// durable in the SQLite file): kept as spares for later segments, up to
/// `MAX_SPARES`, the rest deleted. The owner never writes to those again,
/// so this needs no lock on the journal.
pub fn remove_segments_before(dir: &Path, segment: u64, paced: bool) -> Result<(), StoreError> {
    let mut spare_count = spares(dir)?.len();
    for retired in segments(dir)?.into_iter().filter(|s| s.n < segment) {
        if !retired.legacy && spare_count < MAX_SPARES {
            std::fs::rename(&retired.path, spare_path(dir, retired.n))
                .map_err(|e| io_error("recycle", &retired.path, e))?;
            // A segment back after a crash would be read again.
            sync_dir(dir)?;
            spare_count += 1;
        } else {
            super::writeback::remove_file(&retired.path, paced)
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
    super::writeback::write_out(&file, &[(0, bytes)], false, true)
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

// Frame: u32 body length, body, check: the first 8 bytes of the SHA-256 of
// the segment's number (u64, little-endian) and the body (legacy segments:
// of the body alone).
const CHECK_BYTES: usize = 8;

fn frame_check(seed: Option<u64>, body: &[u8]) -> [u8; CHECK_BYTES] {
    let mut hash = sha2::Sha256::new();
    if let Some(segment) = seed {
        hash.update(segment.to_le_bytes());
    }
    hash.update(body);
    let mut check = [0u8; CHECK_BYTES];
    check.copy_from_slice(&hash.finalize()[..CHECK_BYTES]);
    check
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_int(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(&i.to_le_bytes());
}

fn encode_frame(stored: &JournalRow, seed: Option<u64>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let r = &stored.row;
    for s in [&r.decision_id, &r.instance_id] {
        put_str(out, s);
    }
    put_int(out, r.seq);
    put_int(out, r.decided_at_us);
    for s in [&r.hook, &r.trip_id, &r.city, &r.decision] {
        put_str(out, s);
    }
    put_int(out, i64::from(r.degraded));
    for s in [&r.policy_version, &r.key_id] {
        put_str(out, s);
    }
    put_int(out, stored.reason_mask);
    for s in [&r.detail, &r.prev_hash, &r.hash] {
        put_str(out, s);
    }
    put_int(out, r.format);
    let body_len = out.len() - start - 4;
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    let check = frame_check(seed, &out[start + 4..]);
    out.extend_from_slice(&check);
}

/// Reads fields off a frame body; `None` once it runs short or is not UTF-8.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn int(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn text(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn decode_body(body: &[u8]) -> Option<JournalRow> {
    let mut f = Fields(body);
    let (decision_id, instance_id) = (f.text()?, f.text()?);
    let (seq, decided_at_us) = (f.int()?, f.int()?);
    let (hook, trip_id, city, decision) = (f.text()?, f.text()?, f.text()?, f.text()?);
    let degraded = f.int()? != 0;
    let (policy_version, key_id) = (f.text()?, f.text()?);
    let reason_mask = f.int()?;
    let (detail, prev_hash, hash) = (f.text()?, f.text()?, f.text()?);
    // Frames written before formats were stored per row end here.
    let format = if f.0.is_empty() { 1 } else { f.int()? };
    f.0.is_empty().then_some(JournalRow {
        row: Row {
            decision_id,
            instance_id,
            seq,
            decided_at_us,
            hook,
            trip_id,
            city,
            decision,
            degraded,
            policy_version,
            key_id,
            detail,
            prev_hash,
            hash,
            format,
        },
        reason_mask,
    })
}

/// The frames of a segment up to the first one that is torn, damaged or
/// of another segment (a recycled segment's old frames).
fn decode_frames(mut bytes: &[u8], seed: Option<u64>) -> Vec<JournalRow> {
    let mut rows = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let Some(frame) = bytes.get(4..4 + len + CHECK_BYTES) else {
            break;
        };
        let (body, check) = frame.split_at(len);
        if frame_check(seed, body) != *check {
            break;
        }
        let Some(row) = decode_body(body) else {
            break;
        };
        rows.push(row);
        bytes = &bytes[4 + len + CHECK_BYTES..];
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64) -> JournalRow {
        JournalRow {
            row: Row {
                decision_id: format!("id-{seq}"),
                instance_id: "i".into(),
                seq,
                decided_at_us: 1_700_000_000_000_000 + seq,
                hook: "trip".into(),
                trip_id: "T-1".into(),
                city: "hangzhou".into(),
                decision: "allow".into(),
                degraded: seq % 2 == 0,
                policy_version: "v".into(),
                key_id: "k".into(),
                detail: "{\"parties\":[]}".into(),
                prev_hash: "p".into(),
                format: 2,
                hash: "h".into(),
            },
            reason_mask: seq * 3,
        }
    }

    #[test]
    fn frames_round_trip_and_a_torn_or_damaged_tail_ends_the_segment() {
        let mut bytes = Vec::new();
        for seq in 1..=3 {
            encode_frame(&row(seq), Some(7), &mut bytes);
        }
        let read = decode_frames(&bytes, Some(7));
        assert_eq!(read.len(), 3);
        assert_eq!(read[2].row.seq, 3);
        assert!(read[1].row.degraded ^ read[2].row.degraded);
        assert_eq!(read[2].reason_mask, 9);
        assert_eq!(read[0].row.detail, "{\"parties\":[]}");

        assert!(
            decode_frames(&bytes, Some(8)).is_empty(),
            "frames of segment 7 are not segment 8's (a recycled segment's old frames)"
        );
        assert!(decode_frames(&bytes, None).is_empty());

        let whole = bytes.len();
        assert_eq!(
            decode_frames(&bytes[..whole - 1], Some(7)).len(),
            2,
            "torn tail"
        );
        bytes[whole - 20] ^= 1;
        assert_eq!(decode_frames(&bytes, Some(7)).len(), 2, "damaged frame");
    }

    fn spare_count(dir: &Path) -> usize {
        spares(dir).unwrap().len()
    }

    /// Appends one record at a time (numbered on from `seq`) until the
    /// journal's active segment is `segment`.
    fn append_until_segment(journal: &mut Journal, segment: u64, seq: &mut i64) {
        while journal.active() < segment {
            *seq += 1;
            journal.append(&[row(*seq)]).unwrap();
        }
    }

    #[test]
    fn a_loaded_segment_is_recycled_and_its_old_records_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = 4 * 1024;
        let mut owner = Journal::open(dir.path(), bytes).unwrap().journal.unwrap();
        // Fill segments 0 and 1 (a frame is ~100 bytes) and start 2.
        let mut seq = 0;
        append_until_segment(&mut owner, 2, &mut seq);
        let written = seq;
        assert_eq!(
            Journal::open(dir.path(), bytes).unwrap().rows.len() as i64,
            written
        );

        // Segments 0 and 1 loaded: both kept as spares (the helper that
        // prepares segment 3 may already take one), nothing deleted.
        use std::os::unix::fs::MetadataExt;
        let inode = |path: &Path| std::fs::metadata(path).unwrap().ino();
        let retired = [0, 1].map(|n| inode(&segment_path(dir.path(), n)));
        remove_segments_before(owner.dir(), owner.active(), false).unwrap();
        let left = Journal::open(dir.path(), bytes).unwrap().rows;
        assert!(left.iter().all(|r| r.row.seq > 0) && (left.len() as i64) < written);

        // Two of segments 3-5 are the spares, full of old frames; none of
        // those may come back as records. By 5 both spares are taken.
        let before_roll = left.len();
        append_until_segment(&mut owner, 5, &mut seq);
        assert_eq!(spare_count(dir.path()), 0, "both spares were used");
        let live: Vec<u64> = segments(dir.path())
            .unwrap()
            .iter()
            .map(|s| inode(&s.path))
            .collect();
        assert!(
            retired.iter().all(|i| live.contains(i)),
            "segments 0 and 1 live on as later segments"
        );
        seq += 1;
        owner.append(&[row(seq)]).unwrap();
        let read = Journal::open(dir.path(), bytes).unwrap().rows;
        let seqs: Vec<i64> = read.iter().map(|r| r.row.seq).collect();
        let expected: Vec<i64> = (written - before_roll as i64 + 1..=seq).collect();
        assert_eq!(seqs, expected, "every record once, in order, no old frames");
    }

    #[test]
    fn batches_of_any_size_read_back_whole_across_page_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = 8 * 1024;
        let mut owner = Journal::open(dir.path(), bytes).unwrap().journal.unwrap();
        let mut seq = 0;
        for batch in 1..=25 {
            let rows: Vec<JournalRow> = (1..=batch).map(|k| row(seq + k)).collect();
            seq += batch;
            owner.append(&rows).unwrap();
            assert_eq!(
                owner.len - owner.tail.len() as u64,
                owner.len / PAGE_BYTES as u64 * PAGE_BYTES as u64,
                "the carried bytes are the start of the last page"
            );
        }
        assert!(owner.active() >= 2, "the batches spanned segments");
        let seqs: Vec<i64> = Journal::open(dir.path(), bytes)
            .unwrap()
            .rows
            .iter()
            .map(|r| r.row.seq)
            .collect();
        assert_eq!(seqs, (1..=seq).collect::<Vec<_>>());
    }

    #[test]
    fn numbering_goes_on_above_the_spares_even_with_no_segment_left() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = 4 * 1024;
        {
            let mut owner = Journal::open(dir.path(), bytes).unwrap().journal.unwrap();
            append_until_segment(&mut owner, 2, &mut 0);
            remove_segments_before(owner.dir(), 2, false).unwrap();
        }
        // Say an operator deleted the segments, leaving the spares.
        for segment in segments(dir.path()).unwrap() {
            std::fs::remove_file(segment.path).unwrap();
        }
        let Opened { journal, rows } = Journal::open(dir.path(), bytes).unwrap();
        assert!(rows.is_empty());
        assert!(journal.unwrap().active() >= 2, "not segment 0 or 1 again");
        assert!(Journal::open(dir.path(), bytes).unwrap().rows.is_empty());
    }

    #[test]
    fn a_legacy_segment_is_read_and_then_deleted_not_recycled() {
        let dir = tempfile::tempdir().unwrap();
        let mut frames = Vec::new();
        encode_frame(&row(1), None, &mut frames);
        encode_frame(&row(2), None, &mut frames);
        let legacy = dir.path().join(format!("{:020}{LEGACY_SUFFIX}", 3));
        std::fs::write(&legacy, &frames).unwrap();

        let Opened { journal, rows } = Journal::open(dir.path(), 4 * 1024).unwrap();
        assert_eq!(rows.iter().map(|r| r.row.seq).collect::<Vec<_>>(), [1, 2]);
        let owner = journal.unwrap();
        assert_eq!(
            owner.active(),
            4,
            "new segments number on from the legacy ones"
        );
        remove_segments_before(owner.dir(), owner.active(), false).unwrap();
        assert!(!legacy.exists());
        assert_eq!(
            spare_count(dir.path()),
            0,
            "a legacy segment is never a spare"
        );
    }

    #[test]
    fn appends_overwrite_a_zeroed_segment_without_growing_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path(), 64 * 1024)
            .unwrap()
            .journal
            .unwrap();
        let active = segment_path(dir.path(), journal.active());
        assert_eq!(std::fs::metadata(&active).unwrap().len(), 64 * 1024);
        assert!(
            Journal::open(dir.path(), 1).unwrap().rows.is_empty(),
            "zeros hold no rows"
        );

        journal.append(&[row(1), row(2)]).unwrap();
        journal.append(&[row(3)]).unwrap();
        assert_eq!(
            std::fs::metadata(&active).unwrap().len(),
            64 * 1024,
            "an append within the segment must not change its size (no inode write per fsync)"
        );
        let read = Journal::open(dir.path(), 1).unwrap().rows;
        assert_eq!(
            read.iter().map(|r| r.row.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn only_one_process_owns_a_journal_and_others_still_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let Opened { journal, rows } = Journal::open(dir.path(), 1).unwrap();
        let mut owner = journal.expect("the first opener owns the journal");
        assert!(rows.is_empty());
        owner.append(&[row(1), row(2)]).unwrap();
        owner.append(&[row(3)]).unwrap();
        assert_eq!(owner.active(), 1, "a full segment starts another");

        let reader = Journal::open(dir.path(), 1).unwrap();
        assert!(reader.journal.is_none(), "a second opener must not own it");
        assert_eq!(reader.rows.len(), 3);

        remove_segments_before(owner.dir(), owner.active(), false).unwrap();
        assert_eq!(Journal::open(dir.path(), 1).unwrap().rows.len(), 1);
    }
}
