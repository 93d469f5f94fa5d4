//! The audit-store modes: `audit-query` (regulator queries on a large
//! trail) and `audit-index` (the lookup index late in a busy day).

#[allow(unused_imports)]
use super::*;

/// `tripgate-bench audit-query [RECORDS] [sqlite|postgres]`: fills an audit
/// store (an SQLite file, or a PostgreSQL database made on `BENCH_POSTGRES`
/// and dropped at the end) with RECORDS synthetic sealed records spread over
/// 180 days (10% rejections, two cities, a driver of 100,000 and a
/// passenger of 1,000,000 each) and times the regulator's queries on it;
/// then, on PostgreSQL, exports 1,000,000 and 100,000 of them with
/// `tripgate audit export` and reports its peak resident memory.
pub(crate) fn audit_query(records: u64, engine: &str) {
    use tripgate::audit::{DecisionFilter, GroupBy};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let postgres = (engine == "postgres").then(|| postgres::BenchDatabase::create(&runtime));
    runtime.block_on(async {
        let (dir, store) = match &postgres {
            Some(database) => (None, database.store().await),
            None => {
                let (dir, store, _keys) = bench_store("tripgate-audit-bench").await;
                (Some(dir), store)
            }
        };
        let day_us: i64 = 86_400_000_000;
        let end = chrono::Utc::now().timestamp_micros();
        let start = end - 180 * day_us;
        let step = (end - start) / records as i64;
        let filled = Instant::now();
        // Sealing (a thread) and storing overlap, two batches in flight:
        // the order rows land in does not matter to the queries, and the
        // chain is whole once every batch is in.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<tripgate::audit::SealedRecord>>(4);
        let sealer = std::thread::spawn(move || {
            let mut head = tripgate::audit::ChainHead { seq: 0, hash: tripgate::audit::GENESIS_HASH.to_owned() };
            let mut batch = Vec::with_capacity(10_000);
            for n in 0..records {
                let decided_at_us = start + n as i64 * step;
                let record = synthetic_record(n, decided_at_us, synthetic_parties(n));
                let link = tripgate::audit::seal(&head, record);
                head = tripgate::audit::ChainHead { seq: link.seq, hash: link.hash.clone() };
                batch.push(link);
                if batch.len() == 10_000 && sender.send(std::mem::take(&mut batch)).is_err() {
                    return;
                }
            }
            if !batch.is_empty() {
                let _ = sender.send(batch);
            }
        });
        let batches = futures_util::stream::iter(std::iter::from_fn(|| receiver.recv().ok()));
        let mut stored = 0usize;
        let fill_store = store.clone();
        let mut appends = std::pin::pin!(futures_util::StreamExt::buffer_unordered(
            futures_util::StreamExt::map(batches, |batch| {
                let store = fill_store.clone();
                async move {
                    let count = batch.len();
                    store.append(batch).await.unwrap();
                    count
                }
            }),
            2
        ));
        while let Some(count) = futures_util::StreamExt::next(&mut appends).await {
            let before = stored;
            stored += count;
            if before / 1_000_000 != stored / 1_000_000 {
                eprintln!("  {stored} records written in {:.0} s", filled.elapsed().as_secs_f64());
            }
        }
        sealer.join().unwrap();
        eprintln!("filled {records} records in {:.0} s", filled.elapsed().as_secs_f64());
        if let Some(database) = &postgres {
            // What autovacuum does on a server that runs it (this one may
            // not): the planner's statistics of the filled tables.
            let t = Instant::now();
            database.execute("ANALYZE").await;
            eprintln!("analyzed in {:.1} s", t.elapsed().as_secs_f64());
        }
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
        println!("\n{records} audit records over 180 days, {engine}\n\n| query | rows | time |\n| --- | --- | --- |");
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
        let t = Instant::now();
        let driver = DecisionFilter {
            subject_refs: vec![synthetic_parties(records / 2)[0].subject_ref.clone()],
            ..Default::default()
        };
        let mut cursor = None;
        let mut total = 0;
        loop {
            let page = store.page(&driver, cursor.as_ref(), 100).await.unwrap();
            total += page.records.len();
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        timed("one driver's decisions, any day, every page of 100", t, total);
        drop(store);
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
    if let Some(database) = postgres {
        let day_us: i64 = 86_400_000_000;
        let end = chrono::Utc::now().timestamp_micros();
        for wanted in [1_000_000u64, 100_000] {
            let days = wanted as f64 / records as f64 * 180.0;
            let from = end - 20 * day_us - (days * day_us as f64) as i64;
            database.export_memory(from, end - 20 * day_us);
        }
        database.drop_database(&runtime);
    }
}

/// Driver `n mod 100,000` and passenger `n mod 1,000,000` of record `n`,
/// with refs of the length real ones have: a driver is in one record in
/// 100 (every driver in about 100 of 10 million), a passenger in one in
/// 1,000,000.
pub(crate) fn synthetic_parties(n: u64) -> Vec<tripgate::audit::AuditParty> {
    let party = |role: &str, subject_ref: String| {
        green_party(role, (role == "passenger").then_some(0), subject_ref)
    };
    vec![
        party("driver", format!("bench-driver-{:030}", n % 100_000)),
        party(
            "passenger",
            format!("bench-passenger-{:027}", n % 1_000_000),
        ),
    ]
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

/// A green party of a synthetic record, found in L1.
fn green_party(role: &str, index: Option<u32>, subject_ref: String) -> tripgate::audit::AuditParty {
    tripgate::audit::AuditParty {
        party: role.into(),
        index,
        subject_ref,
        status: "green".into(),
        color: Some("green".into()),
        issuer: Some("hangzhou".into()),
        source: Some("l1".into()),
        status_age_secs: Some(60),
        eligible: None,
        eligible_after_us: None,
    }
}

/// `tripgate-bench audit-index [TODAY] [PER_CATCH_UP] [ROUNDS]`: what the
/// lookup index costs late in a busy day. Fills an SQLite audit file with
/// TODAY records of one day (a driver and a passenger each, random subject
/// refs), builds the index, then ROUNDS times appends PER_CATCH_UP records
/// (default 7,500: the 15 s between two catch-ups at 500 decisions/s),
/// loads them, and measures the bytes the index catch-up reads and writes.
pub(crate) fn audit_index(today: u64, per_catch_up: u64, rounds: u64) {
    use tripgate::audit::DecisionFilter;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let (dir, store, _keys) = bench_store("tripgate-index-bench").await;
        let day_us: i64 = 86_400_000_000;
        let midnight = chrono::Utc::now().timestamp_micros() / day_us * day_us;
        let step_us = (day_us - 1) / (today + rounds * per_catch_up) as i64;
        let mut rng = fastrand::Rng::with_seed(7);
        let party = |rng: &mut fastrand::Rng, party: &str| {
            green_party(party, None, format!("{:016x}", rng.u64(..)))
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
        let (written, took) = (median(written), median(times));
        println!(
            "\nmedian catch-up: {written:.1} MiB written ({:.0} bytes per entry), {took:.0} ms",
            written * (1 << 20) as f64 / (per_catch_up * 3) as f64,
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
