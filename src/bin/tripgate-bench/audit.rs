//! The audit-store modes: `audit-query` (regulator queries on a large
//! trail) and `audit-index` (the lookup index late in a busy day).

#[allow(unused_imports)]
use super::*;

/// `tripgate-bench audit-query [RECORDS]`: fills an SQLite audit file with
/// RECORDS synthetic sealed records spread over 180 days (10% rejections,
/// two cities) and times the regulator's queries on it.
pub(crate) fn audit_query(records: u64) {
    use tripgate::audit::{DecisionFilter, GroupBy};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let (dir, store, _keys) = bench_store("tripgate-audit-bench").await;
        let day_us: i64 = 86_400_000_000;
        let end = chrono::Utc::now().timestamp_micros();
        let start = end - 180 * day_us;
        let step = (end - start) / records as i64;
        let filled = Instant::now();
        let mut head = (0i64, tripgate::audit::GENESIS_HASH.to_owned());
        let mut batch = Vec::with_capacity(10_000);
        for n in 0..records {
            let decided_at_us = start + n as i64 * step;
            let record = synthetic_record(n, decided_at_us, vec![]);
            let link = tripgate::audit::seal(&tripgate::audit::ChainHead { seq: head.0, hash: head.1.clone() }, record);
            head = (link.seq, link.hash.clone());
            batch.push(link);
            if batch.len() == 10_000 {
                store.append(std::mem::take(&mut batch)).await.unwrap();
                if n % 1_000_000 == 999_999 {
                    eprintln!("  {} records written", n + 1);
                }
            }
        }
        if !batch.is_empty() {
            store.append(batch).await.unwrap();
        }
        eprintln!("filled {records} records in {:.0} s", filled.elapsed().as_secs_f64());
        let day_start = end - 10 * day_us;
        let day = DecisionFilter {
            from_us: Some(day_start),
            to_us: Some(day_start + day_us),
            ..Default::default()
        };
        let rejections = DecisionFilter { decision: Some("reject"), ..day.clone() };
        let timed = |label: &str, started: Instant, count: usize| {
            println!("| {label} | {count} | {:.1} ms |", started.elapsed().as_secs_f64() * 1000.0);
        };
        // Loading the log's tail and building the lookup index happen once,
        // before the first query that needs them: not what is timed here.
        let t = Instant::now();
        let warm = DecisionFilter { trip_id: Some("T-0".into()), ..Default::default() };
        store.page(&warm, None, 1).await.unwrap();
        eprintln!("loaded and indexed in {:.1} s", t.elapsed().as_secs_f64());
        println!("\n{records} audit records over 180 days, SQLite\n\n| query | rows | time |\n| --- | --- | --- |");
        let t = Instant::now();
        let page = store.page(&rejections, None, 100).await.unwrap();
        timed("a day's rejections, first page of 100", t, page.records.len());
        let t = Instant::now();
        let mut cursor = page.next_cursor;
        let mut total = page.records.len();
        while let Some(c) = cursor {
            let page = store.page(&rejections, Some(&c), 1000).await.unwrap();
            total += page.records.len();
            cursor = page.next_cursor;
        }
        timed("the rest of that day's rejections, pages of 1000", t, total);
        let t = Instant::now();
        let rows = store.summary(&day, GroupBy::Reason).await.unwrap();
        timed("a day's summary by reason", t, rows.iter().map(|r| r.count as usize).sum());
        let t = Instant::now();
        let city = DecisionFilter { city: Some("xiamen".into()), ..rejections.clone() };
        let page = store.page(&city, None, 100).await.unwrap();
        timed("a day's rejections in one city, first page", t, page.records.len());
        let t = Instant::now();
        let one = store.get(&page.records[0].record.decision_id).await.unwrap();
        timed("one decision by id", t, usize::from(one.is_some()));
        let t = Instant::now();
        let trip = DecisionFilter { trip_id: Some(format!("T-{}", records / 2)), ..Default::default() };
        let page = store.page(&trip, None, 100).await.unwrap();
        timed("one trip's decisions, any day", t, page.records.len());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A fresh SQLite audit store in a temporary directory named after `name`
/// (the caller removes it), and the key its records are sealed with.
pub(crate) async fn bench_store(
    name: &str,
) -> (
    PathBuf,
    tripgate::audit::AuditStore,
    tripgate::audit::AuditKeys,
) {
    use tripgate::audit::{AuditKeys, AuditStore, StoreConfig};
    let dir = work_dir(name);
    let config = StoreConfig::Sqlite {
        path: dir.join("audit.sqlite3"),
        busy_timeout_ms: 5000,
        log_segment_bytes: 64 << 20,
        journal: tripgate::audit::JournalAccess::Own {
            wait: std::time::Duration::ZERO,
            salvage: false,
        },
    };
    let store = AuditStore::open(&config).await.unwrap();
    let keys = AuditKeys::new(&[("k".into(), "a benchmark key, long enough".into())], "k").unwrap();
    (dir, store, keys)
}

/// A sealed-record body for the audit benchmarks: trip `T-n`, one decision
/// in ten a rejection, two cities.
pub(crate) fn synthetic_record(
    n: u64,
    decided_at_us: i64,
    parties: Vec<tripgate::audit::AuditParty>,
) -> tripgate::audit::AuditRecord {
    use tripgate::audit::{AuditReason, AuditRecord, Hook, FORMAT};
    let reject = n.is_multiple_of(10);
    AuditRecord {
        appeal: None,
        client: Some("dispatch".into()),
        format: FORMAT,
        decision_id: uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (decided_at_us / 1_000_000) as u64,
            ((decided_at_us % 1_000_000) * 1000) as u32,
        ))
        .to_string(),
        decided_at_us,
        hook: Hook::Trip,
        trip_id: format!("T-{n}"),
        city: if n.is_multiple_of(3) {
            "xiamen"
        } else {
            "hangzhou"
        }
        .into(),
        decision: if reject { "reject" } else { "allow" }.into(),
        degraded: false,
        policy_version: "bench".into(),
        instance_id: "bench".into(),
        key_id: "k".into(),
        reasons: vec![AuditReason {
            party: if reject { "driver" } else { "all" }.into(),
            index: None,
            code: if reject {
                "HEALTH_CODE_RED"
            } else {
                "ALL_GREEN"
            }
            .into(),
            rule: "hangzhou.trip".into(),
            detail: None,
        }],
        parties,
    }
}

/// `tripgate-bench audit-index [TODAY] [PER_CATCH_UP] [ROUNDS]`: what the
/// lookup index costs late in a busy day. Fills an SQLite audit file with
/// TODAY records of one day (a driver and a passenger each, random subject
/// refs), builds the index, then ROUNDS times appends PER_CATCH_UP records
/// (default 7,500: the 15 s between two catch-ups at 500 decisions/s),
/// loads them, and measures the bytes the index catch-up reads and writes.
pub(crate) fn audit_index(today: u64, per_catch_up: u64, rounds: u64) {
    use tripgate::audit::{AuditParty, DecisionFilter};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let (dir, store, _keys) = bench_store("tripgate-index-bench").await;
        let day_us: i64 = 86_400_000_000;
        let midnight = chrono::Utc::now().timestamp_micros() / day_us * day_us;
        let step_us = (day_us - 1) / (today + rounds * per_catch_up) as i64;
        let mut rng = fastrand::Rng::with_seed(7);
        let party = |rng: &mut fastrand::Rng, party: &str| AuditParty {
            party: party.into(),
            index: None,
            subject_ref: format!("{:016x}", rng.u64(..)),
            status: "green".into(),
            color: Some("green".into()),
            issuer: Some("hangzhou".into()),
            source: Some("l1".into()),
            status_age_secs: Some(60),
            eligible: None,
            eligible_after_us: None,
        };
        let mut head = tripgate::audit::ChainHead { seq: 0, hash: tripgate::audit::GENESIS_HASH.to_owned() };
        let written_so_far = std::cell::Cell::new(0u64);
        let mut append = |count: u64| {
            let mut batch = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let parties = vec![party(&mut rng, "driver"), party(&mut rng, "passenger")];
                let n = written_so_far.get();
                let record = synthetic_record(n, midnight + n as i64 * step_us, parties);
                let link = tripgate::audit::seal(&head, record);
                head = tripgate::audit::ChainHead { seq: link.seq, hash: link.hash.clone() };
                batch.push(link);
                written_so_far.set(n + 1);
            }
            batch
        };
        let filled = Instant::now();
        let mut left = today;
        while left > 0 {
            let count = left.min(10_000);
            store.append(append(count)).await.unwrap();
            left -= count;
        }
        let one_trip = |n: u64| DecisionFilter { trip_id: Some(format!("T-{n}")), ..Default::default() };
        store.page(&one_trip(0), None, 1).await.unwrap();
        eprintln!("{today} records of one day filled and indexed in {:.0} s", filled.elapsed().as_secs_f64());
        println!(
            "\n{today} records of one day, then catch-ups of {per_catch_up} records\n\n\
             | round | index catch-up: written | read | time | load: written |\n| --- | --- | --- | --- | --- |"
        );
        let mut written = Vec::new();
        let mut times = Vec::new();
        let (_, before_rounds) = process_io();
        for round in 1..=rounds {
            let (_, before_load) = process_io();
            for _ in 0..per_catch_up.div_ceil(10_000) {
                let count = per_catch_up.min(10_000);
                store.append(append(count)).await.unwrap();
            }
            // Loads what the log holds; the catch-up below is then the
            // index's work alone.
            store.chain_head("bench").await.unwrap();
            let (read_before, write_before) = process_io();
            let started = Instant::now();
            let found = store.page(&one_trip(written_so_far.get() - 1), None, 1).await.unwrap();
            let took = started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(found.records.len(), 1, "the newest trip is found");
            let (read_after, write_after) = process_io();
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            println!(
                "| {round} | {:.1} MiB | {:.1} MiB | {took:.0} ms | {:.1} MiB |",
                mib(write_after - write_before),
                mib(read_after - read_before),
                mib(write_before - before_load)
            );
            written.push(mib(write_after - write_before));
            times.push(took);
        }
        let (_, after_rounds) = process_io();
        written.sort_by(f64::total_cmp);
        times.sort_by(f64::total_cmp);
        println!(
            "\nmedian catch-up: {:.1} MiB written ({:.0} bytes per entry), {:.0} ms",
            written[written.len() / 2],
            written[written.len() / 2] * (1 << 20) as f64 / (per_catch_up * 3) as f64,
            times[times.len() / 2]
        );
        println!(
            "all writes (log, loads, catch-ups, merges by queries or the indexer thread): \
             {:.1} MiB per round",
            (after_rounds - before_rounds) as f64 / (1 << 20) as f64 / rounds as f64
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
