//! The journal's frames: a row of `audit_decisions` as the journal keeps
//! it, and its encoding.
//!
//! Frame: u32 body length, body, check: the first 8 bytes of the SHA-256 of
//! the segment's number (u64, little-endian) and the body (legacy `.seg`
//! segments: of the body alone). Three kinds of body:
//! - a row (starts with the u32 length of its decision id);
//! - the segment header, `HEADER_MAGIC` and a u32 format version, the first
//!   frame of every segment this build writes;
//! - empty: padding, the rest of the page is not frames (every append
//!   starts on a page boundary, so acknowledged bytes are never rewritten).

use sha2::Digest;

use super::super::Row;

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

/// The first bytes of a segment header's body.
pub const HEADER_MAGIC: &[u8] = b"tripgate audit log";
/// The segment format this build writes (1: no header, appends rewrote the
/// last page; 2: header, appends padded to a page).
pub const SEGMENT_VERSION: u32 = 2;

/// What starts at an offset of a segment.
#[derive(Debug)]
pub enum FrameAt {
    Row(Box<JournalRow>, usize),
    Header {
        version: u32,
        next: usize,
    },
    Pad {
        next: usize,
    },
    /// Nothing this segment wrote: zeros, another segment's old frames, a
    /// torn or damaged frame.
    Nothing,
}

// Frame: u32 body length, body, check: the first 8 bytes of the SHA-256 of
// the segment's number (u64, little-endian) and the body (legacy segments:
// of the body alone).
pub const CHECK_BYTES: usize = 8;

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

pub fn encode_frame(stored: &JournalRow, seed: Option<u64>, out: &mut Vec<u8>) {
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

fn frame_with_body(body: &[u8], seed: Option<u64>, out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&frame_check(seed, body));
}

/// The segment header frame.
pub fn encode_header(seed: u64, out: &mut Vec<u8>) {
    let mut body = HEADER_MAGIC.to_vec();
    body.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    frame_with_body(&body, Some(seed), out);
}

/// A padding frame: the reader goes on at the next page boundary.
pub fn encode_pad(seed: u64, out: &mut Vec<u8>) {
    frame_with_body(&[], Some(seed), out);
}

/// What starts at `pos` of a segment's bytes.
pub fn frame_at(bytes: &[u8], pos: usize, seed: Option<u64>) -> FrameAt {
    let Some(head) = bytes.get(pos..pos + 4) else {
        return FrameAt::Nothing;
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let Some(frame) = bytes.get(pos + 4..pos + 4 + len + CHECK_BYTES) else {
        return FrameAt::Nothing;
    };
    let (body, check) = frame.split_at(len);
    if frame_check(seed, body) != *check {
        return FrameAt::Nothing;
    }
    let next = pos + 4 + len + CHECK_BYTES;
    if body.is_empty() {
        return FrameAt::Pad { next };
    }
    if let Some(version) = body.strip_prefix(HEADER_MAGIC) {
        return match <[u8; 4]>::try_from(version) {
            Ok(version) => FrameAt::Header {
                version: u32::from_le_bytes(version),
                next,
            },
            Err(_) => FrameAt::Nothing,
        };
    }
    match decode_body(body) {
        Some(row) => FrameAt::Row(Box::new(row), next),
        None => FrameAt::Nothing,
    }
}
