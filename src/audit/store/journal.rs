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
//! Segments are zero-filled ahead of use (the next one on a helper thread
//! while the current one fills), so an append overwrites blocks the file
//! already has and its fdatasync writes only data, not also the inode.
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

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

/// The journal's segments, oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let n = name.strip_suffix(".seg")?.parse().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    found.sort();
    Ok(found)
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
        for (_, path) in &existing {
            let bytes = std::fs::read(path).map_err(|e| io_error("read", path, e))?;
            // A torn frame ends a segment: it was never acknowledged.
            rows.extend(decode_frames(&bytes));
        }
        if !owner {
            return Ok(Opened {
                journal: None,
                rows,
            });
        }
        let active = existing.last().map_or(0, |(n, _)| n + 1);
        let segment_bytes = segment_bytes.max(1);
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
        let mut frames = Vec::with_capacity(rows.len() * 1024);
        for row in rows {
            encode_frame(row, &mut frames);
        }
        let path = segment_path(&self.dir, self.active);
        let written = self
            .file
            .write_all_at(&frames, self.len)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += frames.len() as u64;
                Ok(())
            }
            Err(e) => {
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

    /// Moves appends to the next segment: the one zeroed in the background
    /// if that worked, else a new one made here.
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

/// Deletes the segments of `dir` before `segment`. The owner never writes
/// to those again, so this needs no lock on the journal.
pub fn remove_segments_before(dir: &Path, segment: u64, paced: bool) -> Result<(), StoreError> {
    for (n, path) in segments(dir)? {
        if n < segment {
            super::writeback::remove_file(&path, paced)
                .map_err(|e| io_error("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Whether `dir` holds segments before `segment` (to be removed).
pub fn has_segments_before(dir: &Path, segment: u64) -> Result<bool, StoreError> {
    Ok(segments(dir)?.first().is_some_and(|(n, _)| *n < segment))
}

/// Creates segment `n` filled with `bytes` of zeros. Appends then
/// overwrite allocated blocks, so their fdatasync writes only the data; an
/// append that extends a file must also write its inode, a second
/// synchronous I/O on every batch. Zeros end a segment for the reader (no
/// frame has length 0 and an empty check), like a torn frame does.
fn prepare_segment(dir: &Path, n: u64, bytes: u64) -> Result<File, StoreError> {
    let path = segment_path(dir, n);
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
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync", dir, e))?;
    Ok(file)
}

const ZERO_CHUNK: usize = 1 << 20;

/// Zeroes segment `n` on a helper thread while the active one fills (none
/// if no thread can be started: the roll then prepares it itself).
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

// Frame: u32 body length, body, first 8 bytes of the body's SHA-256.
const CHECK_BYTES: usize = 8;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_int(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(&i.to_le_bytes());
}

fn encode_frame(stored: &JournalRow, out: &mut Vec<u8>) {
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
    let body_len = out.len() - start - 4;
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    let check = sha2::Sha256::digest(&out[start + 4..]);
    out.extend_from_slice(&check[..CHECK_BYTES]);
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
        },
        reason_mask,
    })
}

/// The frames of a segment up to the first one that is torn or damaged.
fn decode_frames(mut bytes: &[u8]) -> Vec<JournalRow> {
    let mut rows = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let Some(frame) = bytes.get(4..4 + len + CHECK_BYTES) else {
            break;
        };
        let (body, check) = frame.split_at(len);
        if sha2::Sha256::digest(body)[..CHECK_BYTES] != *check {
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
                hash: "h".into(),
            },
            reason_mask: seq * 3,
        }
    }

    #[test]
    fn frames_round_trip_and_a_torn_or_damaged_tail_ends_the_segment() {
        let mut bytes = Vec::new();
        for seq in 1..=3 {
            encode_frame(&row(seq), &mut bytes);
        }
        let read = decode_frames(&bytes);
        assert_eq!(read.len(), 3);
        assert_eq!(read[2].row.seq, 3);
        assert!(read[1].row.degraded ^ read[2].row.degraded);
        assert_eq!(read[2].reason_mask, 9);
        assert_eq!(read[0].row.detail, "{\"parties\":[]}");

        let whole = bytes.len();
        assert_eq!(decode_frames(&bytes[..whole - 1]).len(), 2, "torn tail");
        bytes[whole - 20] ^= 1;
        assert_eq!(decode_frames(&bytes).len(), 2, "damaged frame");
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
