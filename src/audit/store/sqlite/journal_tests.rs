//! Tests of the journal: framing, recycling, damage, ownership.

use super::super::super::Row;
use super::super::writeback::Pace;
use super::*;

fn own() -> JournalAccess {
    JournalAccess::Own {
        wait: Duration::ZERO,
        salvage: false,
    }
}

fn salvage() -> JournalAccess {
    JournalAccess::Own {
        wait: Duration::ZERO,
        salvage: true,
    }
}

/// The journal of `dir`, owned.
fn owner(dir: &Path, bytes: u64) -> Journal {
    Journal::open(dir, bytes, own()).unwrap().journal.unwrap()
}

fn read(dir: &Path, bytes: u64) -> Vec<JournalRow> {
    Journal::open(dir, bytes, JournalAccess::Read).unwrap().rows
}

fn seqs(rows: &[JournalRow]) -> Vec<i64> {
    rows.iter().map(|r| r.row.seq).collect()
}

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
            format: 2,
        },
        reason_mask: seq * 3,
    }
}

/// A row whose frame fills about `bytes`.
fn big_row(seq: i64, bytes: usize) -> JournalRow {
    let mut row = row(seq);
    row.row.detail = "x".repeat(bytes);
    row
}

#[test]
fn frames_round_trip_and_belong_to_their_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut owner = owner(dir.path(), 1 << 20);
    owner.append(&[row(1), row(2)]).unwrap();
    owner.append(&[row(3)]).unwrap();
    let read = read(dir.path(), 1 << 20);
    assert_eq!(seqs(&read), [1, 2, 3]);
    assert!(read[1].row.degraded ^ read[2].row.degraded);
    assert_eq!(read[2].reason_mask, 9);
    assert_eq!(read[0].row.detail, "{\"parties\":[]}");
    assert_eq!(
        owner.len,
        2 * PAGE_BYTES as u64,
        "each append takes whole pages"
    );

    let bytes = std::fs::read(segment_path(dir.path(), owner.active())).unwrap();
    let (rows, stop) = read_segment(&bytes, Some(owner.active())).unwrap();
    assert_eq!((rows.len(), stop), (3, Stop::Clean));
    let (rows, _) = read_segment(&bytes, Some(owner.active() + 1)).unwrap();
    assert!(
        rows.is_empty(),
        "frames of one segment are not another's (a recycled segment's old frames)"
    );
}

#[test]
fn an_append_never_rewrites_bytes_an_earlier_one_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut owner = owner(dir.path(), 1 << 20);
    let path = segment_path(dir.path(), owner.active());
    owner.append(&[row(1)]).unwrap();
    let first = std::fs::read(&path).unwrap()[..PAGE_BYTES].to_vec();
    for seq in 2..40 {
        owner.append(&[row(seq)]).unwrap();
        assert_eq!(
            &std::fs::read(&path).unwrap()[..PAGE_BYTES],
            &first[..],
            "the first append's page changed"
        );
    }
}

#[test]
fn a_torn_last_append_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut owner = owner(dir.path(), 1 << 20);
        owner.append(&[row(1), row(2)]).unwrap();
        // Three records over about three pages; the crash tears its
        // last page.
        owner
            .append(&[big_row(3, 1500), big_row(4, 1500), big_row(5, 3000)])
            .unwrap();
        let path = segment_path(dir.path(), owner.active());
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let torn_from = owner.len - PAGE_BYTES as u64;
        file.write_all_at(&[0u8; PAGE_BYTES], torn_from).unwrap();
    }
    let opened = Journal::open(dir.path(), 1 << 20, own()).unwrap();
    assert_eq!(
        seqs(&opened.rows),
        [1, 2],
        "the torn append's readable records are dropped too: it was never acknowledged"
    );
}

#[test]
fn damage_before_acknowledged_records_stops_start_up_unless_salvaged() {
    for damage in ["bad frame", "zeroed page"] {
        let dir = tempfile::tempdir().unwrap();
        let active;
        {
            let mut owner = owner(dir.path(), 1 << 20);
            active = owner.active();
            for seq in 1..=6 {
                owner.append(&[row(seq)]).unwrap();
            }
        }
        // The third append (its own page) is damaged; three more follow.
        let path = segment_path(dir.path(), active);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let page = 2 * PAGE_BYTES as u64;
        match damage {
            "bad frame" => file.write_all_at(b"\xff", page + 40).unwrap(),
            _ => file.write_all_at(&[0u8; PAGE_BYTES], page).unwrap(),
        }
        drop(file);

        let error = Journal::open(dir.path(), 1 << 20, own())
            .err()
            .expect(damage);
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string())
                && message.contains(&format!("offset {page}"))
                && message.contains("3 readable after it")
                && message.contains("salvage_journal"),
            "{damage}: {message}"
        );
        let salvaged = Journal::open(dir.path(), 1 << 20, salvage()).unwrap();
        assert_eq!(seqs(&salvaged.rows), [1, 2], "{damage}");
    }
}

#[test]
fn a_second_owner_waits_for_the_lock_then_refuses_and_readers_never_lock() {
    let dir = tempfile::tempdir().unwrap();
    let Opened { journal, rows } = Journal::open(dir.path(), 1, own()).unwrap();
    let mut owner = journal.expect("the first opener owns the journal");
    assert!(rows.is_empty());
    owner.append(&[row(1), row(2)]).unwrap();
    owner.append(&[row(3)]).unwrap();
    assert_eq!(owner.active(), 1, "a full segment starts another");

    let started = std::time::Instant::now();
    let refused = Journal::open(
        dir.path(),
        1,
        JournalAccess::Own {
            wait: Duration::from_millis(300),
            salvage: false,
        },
    )
    .err()
    .expect("a second owner is refused");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        refused.to_string().contains("locked by another process"),
        "{refused}"
    );
    assert_eq!(read(dir.path(), 1).len(), 3, "a reader sees every record");

    remove_segments_before(owner.dir(), owner.active(), Pace::Full).unwrap();
    assert_eq!(read(dir.path(), 1).len(), 1);
    drop(owner);
    assert!(Journal::open(dir.path(), 1, own())
        .unwrap()
        .journal
        .is_some());
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
    let bytes = 4 * PAGE_BYTES as u64;
    let mut owner = owner(dir.path(), bytes);
    let mut seq = 0;
    append_until_segment(&mut owner, 2, &mut seq);
    let written = seq;
    assert_eq!(read(dir.path(), bytes).len() as i64, written);

    use std::os::unix::fs::MetadataExt;
    let inode = |path: &Path| std::fs::metadata(path).unwrap().ino();
    let retired = [0, 1].map(|n| inode(&segment_path(dir.path(), n)));
    remove_segments_before(owner.dir(), owner.active(), Pace::Full).unwrap();
    let left = read(dir.path(), bytes);
    assert!(left.iter().all(|r| r.row.seq > 0) && (left.len() as i64) < written);

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
    let expected: Vec<i64> = (written - before_roll as i64 + 1..=seq).collect();
    assert_eq!(
        seqs(&read(dir.path(), bytes)),
        expected,
        "every record once, in order, no old frames"
    );
}

#[test]
fn batches_of_any_size_read_back_whole_across_page_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = 8 * PAGE_BYTES as u64;
    let mut owner = owner(dir.path(), bytes);
    let mut seq = 0;
    for batch in 1..=25 {
        let rows: Vec<JournalRow> = (1..=batch).map(|k| row(seq + k)).collect();
        seq += batch;
        owner.append(&rows).unwrap();
        assert_eq!(owner.len % PAGE_BYTES as u64, 0, "appends end on a page");
    }
    assert!(owner.active() >= 2, "the batches spanned segments");
    assert_eq!(
        seqs(&read(dir.path(), bytes)),
        (1..=seq).collect::<Vec<_>>()
    );
}

#[test]
fn numbering_goes_on_above_the_spares_even_with_no_segment_left() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = 4 * PAGE_BYTES as u64;
    {
        let mut owner = owner(dir.path(), bytes);
        append_until_segment(&mut owner, 2, &mut 0);
        remove_segments_before(owner.dir(), 2, Pace::Full).unwrap();
    }
    // Say an operator deleted the segments, leaving the spares.
    for segment in segments(dir.path()).unwrap() {
        std::fs::remove_file(segment.path).unwrap();
    }
    let Opened { journal, rows } = Journal::open(dir.path(), bytes, own()).unwrap();
    assert!(rows.is_empty());
    assert!(journal.unwrap().active() >= 2, "not segment 0 or 1 again");
    assert!(read(dir.path(), bytes).is_empty());
}

#[test]
fn segments_of_earlier_formats_are_read_and_a_legacy_one_deleted_not_recycled() {
    let dir = tempfile::tempdir().unwrap();
    // Format 1: frames back to back, no header, no padding.
    let mut frames = Vec::new();
    encode_frame(&row(1), None, &mut frames);
    encode_frame(&row(2), None, &mut frames);
    let legacy = dir.path().join(format!("{:020}{LEGACY_SUFFIX}", 3));
    std::fs::write(&legacy, &frames).unwrap();
    let mut unpadded = Vec::new();
    encode_frame(&row(3), Some(4), &mut unpadded);
    unpadded.resize(2 * PAGE_BYTES, 0);
    std::fs::write(segment_path(dir.path(), 4), &unpadded).unwrap();

    let Opened { journal, rows } = Journal::open(dir.path(), 4 * 1024, own()).unwrap();
    assert_eq!(seqs(&rows), [1, 2, 3]);
    let owner = journal.unwrap();
    assert_eq!(
        owner.active(),
        5,
        "new segments number on from the old ones"
    );
    remove_segments_before(owner.dir(), owner.active(), Pace::Full).unwrap();
    assert!(!legacy.exists());
    assert!(
        !spare_path(dir.path(), 3).exists(),
        "a legacy segment is never a spare"
    );
}

#[test]
fn appends_overwrite_a_zeroed_segment_without_growing_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = owner(dir.path(), 64 * 1024);
    let active = segment_path(dir.path(), journal.active());
    assert_eq!(std::fs::metadata(&active).unwrap().len(), 64 * 1024);
    assert!(read(dir.path(), 1).is_empty(), "zeros hold no rows");

    journal.append(&[row(1), row(2)]).unwrap();
    journal.append(&[row(3)]).unwrap();
    assert_eq!(
        std::fs::metadata(&active).unwrap().len(),
        64 * 1024,
        "an append within the segment must not change its size (no inode write per fsync)"
    );
    assert_eq!(seqs(&read(dir.path(), 1)), [1, 2, 3]);
}
