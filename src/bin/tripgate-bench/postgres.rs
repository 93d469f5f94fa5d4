//! `tripgate-bench postgres [OUT_DIR]` (`scripts/bench --audit postgres`):
//! the PostgreSQL trail against the SQLite trail, side by side in one run.
//!
//! Two `tripgate serve` share Redis and the simulator: one with the SQLite
//! trail (every batch fsynced to its log), one with a PostgreSQL trail in a
//! database made for the run on `BENCH_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, the server's own `fsync`
//! and `synchronous_commit`, reported). Their trip-check peaks are
//! interleaved (SQLite, PostgreSQL, SQLite, ...; 64 and 256 connections,
//! `BENCH_REPEATS` times) so a swing of the machine hits both; then the
//! PostgreSQL one's latency at a fixed 2,000 checks/s (open loop, corrected
//! for coordinated omission). Figures: both peaks and their ratio, CPU per
//! decision of each and of the PostgreSQL server's processes (from /proc),
//! p50/p99/p99.9 at 2,000/s. The database
//! is dropped at the end.

use super::*;

const PG_RATE: u32 = 2_000;

fn admin_url() -> String {
    std::env::var("BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs `sql` on the admin database; returns the first column of each row.
fn psql(runtime: &tokio::runtime::Runtime, sql: &str) -> Vec<String> {
    try_psql(runtime, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `psql` for statements the run can do without (a role may lack the
/// right): the error instead of a panic.
fn try_psql(
    runtime: &tokio::runtime::Runtime,
    sql: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} (BENCH_POSTGRES): {e}", admin_url()));
        tokio::spawn(connection);
        Ok(client
            .simple_query(sql)
            .await?
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .collect())
    })
}

/// CPU seconds of every PostgreSQL server process on this machine (the
/// server shares the cores: its work for the trail is part of the cost).
fn postgres_server_cpu_seconds() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

/// A database of the run's own on `BENCH_POSTGRES`, dropped by
/// `drop_database` (a killed run leaves it; its name says which run).
pub(crate) struct BenchDatabase {
    pub(crate) name: String,
    /// Its URL, `sslmode=disable` unless the admin URL says otherwise.
    pub(crate) url: String,
}

impl BenchDatabase {
    pub(crate) fn create(runtime: &tokio::runtime::Runtime) -> Self {
        let name = format!("tripgate_bench_{}", std::process::id());
        psql(runtime, &format!("CREATE DATABASE {name}"));
        let mut url = url_with_database(&admin_url(), &name);
        if !url.contains('?') {
            url.push_str("?sslmode=disable");
        }
        Self { name, url }
    }

    /// The audit store on it, as `tripgate serve` opens it.
    pub(crate) async fn store(&self) -> tripgate::audit::AuditStore {
        let config = tripgate::audit::StoreConfig::Postgres {
            url: self.url.clone(),
            pool_size: 4,
            access: Default::default(),
        };
        tripgate::audit::AuditStore::open(&config).await.unwrap()
    }

    pub(crate) async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("the bench database");
        tokio::spawn(connection);
        client.batch_execute(sql).await.expect(sql);
    }

    /// How many of these decision ids the trail holds.
    pub(crate) async fn count_stored(&self, decision_ids: &[String]) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("the bench database");
        tokio::spawn(connection);
        client
            .query_one(
                "SELECT COUNT(*) FROM audit_decisions WHERE decision_id = ANY($1)",
                &[&decision_ids],
            )
            .await
            .expect("counting stored decisions")
            .get(0)
    }

    /// Runs `tripgate audit export` of the records decided in [from, to)
    /// to a pipe it drains, and prints the records, bytes, time and the
    /// exporter's peak resident memory.
    pub(crate) fn export_memory(&self, from_us: i64, to_us: i64) {
        use std::io::Read;
        let time = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        let binary = std::env::current_exe().unwrap().with_file_name("tripgate");
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(["audit", "export", "--postgres", &self.url])
            .args(["--from", &time(from_us), "--to", &time(to_us)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tripgate audit export");
        let mut stdout = child.stdout.take().unwrap();
        // The exporter's own high-water mark (VmHWM belongs to the program
        // after exec; a fork's usage would count this process's memory),
        // read while it runs.
        let high_water = || {
            std::fs::read_to_string(format!("/proc/{}/status", child.id()))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                })
        };
        let (mut lines, mut bytes, mut buffer) = (0u64, 0u64, vec![0u8; 1 << 16]);
        let mut peak_kib = 0.0f64;
        let mut sampled = Instant::now();
        loop {
            let n = stdout.read(&mut buffer).expect("the export's output");
            if n == 0 {
                break;
            }
            bytes += n as u64;
            lines += buffer[..n].iter().filter(|b| **b == b'\n').count() as u64;
            if sampled.elapsed() > Duration::from_millis(10) {
                peak_kib = peak_kib.max(high_water().unwrap_or(0.0));
                sampled = Instant::now();
            }
        }
        peak_kib = peak_kib.max(high_water().unwrap_or(0.0));
        let status = child.wait().expect("tripgate audit export");
        assert!(status.success(), "tripgate audit export failed");
        println!(
            "| export of {lines} records ({:.0} MiB of NDJSON) | {:.1} s | peak resident memory {:.1} MiB |",
            bytes as f64 / (1 << 20) as f64,
            started.elapsed().as_secs_f64(),
            peak_kib / 1024.0
        );
    }

    /// Writes out what earlier load left dirty (a checkpoint), so a
    /// fixed-rate run after a warm-up or peaks measures the steady state;
    /// a role without the right only gets a warning.
    pub(crate) fn checkpoint(runtime: &tokio::runtime::Runtime) {
        if let Err(e) = try_psql(runtime, "CHECKPOINT") {
            eprintln!("CHECKPOINT refused ({e}): the next run shares the disk with the write-out");
        }
    }

    pub(crate) fn drop_database(self, runtime: &tokio::runtime::Runtime) {
        psql(
            runtime,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

pub(crate) fn postgres(out_dir: &Path) -> Value {
    let work = work_dir("tripgate-bench-postgres");
    let binary = std::env::current_exe().unwrap().with_file_name("tripgate");
    let seconds: u64 = env_number("BENCH_SECONDS", 10);
    let repeats: usize = env_number("BENCH_REPEATS", 3);
    let duration = format!("{seconds}s");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fsync = psql(&runtime, "SHOW fsync").join("");
    let synchronous_commit = psql(&runtime, "SHOW synchronous_commit").join("");
    let database = BenchDatabase::create(&runtime);

    let (_redis, redis_port) = start_redis();
    let (_simulator, provider) = start_simulator(&binary, DRIVERS, PASSENGERS);
    let trips = work.join("trips.ndjson");
    write_bodies(&trips, TRIP_BODIES, 0, 1);

    let sqlite = start_tripgate(&binary, &work, redis_port, &provider, true);
    let pg = start_tripgate_with(
        &binary,
        redis_port,
        &provider,
        &[
            ("TRIPGATE__AUDIT__BACKEND", "postgres".into()),
            ("TRIPGATE__AUDIT__POSTGRES_URL", database.url.clone()),
        ],
    );
    let post = |service: &Service, extra: &[&str]| -> Value {
        post_bodies(&format!("{}/v1/checks/trip", service.url), &trips, extra)
    };
    eprintln!("warming the cache and both trails");
    post(&sqlite, &["-n", &(3 * TRIP_BODIES).to_string(), "-c", "64"]);
    post(&pg, &["-z", "5s", "-c", "64"]);
    settle(&sqlite);

    eprintln!("trip check peaks, SQLite and PostgreSQL trails interleaved");
    let usage = |service: &Service| {
        (
            cpu_seconds(service.process.0.id()),
            trip_decisions(&service.admin),
        )
    };
    let (sqlite_before, pg_before) = (usage(&sqlite), usage(&pg));
    let wal_before = psql(&runtime, "SELECT pg_current_wal_lsn()::text").join("");
    let mut server_cpu = 0.0;
    let (mut sqlite_tries, mut pg_tries) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        let (mut s, mut p) = (Vec::new(), Vec::new());
        for c in PEAK_CONNECTIONS {
            s.push(with_connections(
                post(&sqlite, &["-z", &duration, "-c", c]),
                c,
            ));
            let server_before = postgres_server_cpu_seconds();
            p.push(with_connections(post(&pg, &["-z", &duration, "-c", c]), c));
            server_cpu += postgres_server_cpu_seconds() - server_before;
        }
        sqlite_tries.push(best_of(s));
        pg_tries.push(best_of(p));
    }
    let cpu_us = |before: (f64, f64), after: (f64, f64)| {
        1e6 * (after.0 - before.0) / (after.1 - before.1).max(1.0)
    };
    let sqlite_cpu_us = cpu_us(sqlite_before, usage(&sqlite));
    let pg_after = usage(&pg);
    let pg_cpu_us = cpu_us(pg_before, pg_after);
    let server_cpu_us = 1e6 * server_cpu / (pg_after.1 - pg_before.1).max(1.0);
    let wal_bytes: f64 = psql(
        &runtime,
        &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{wal_before}')::text"),
    )
    .join("")
    .parse()
    .unwrap_or(f64::NAN);
    let wal_per_decision = wal_bytes / (pg_after.1 - pg_before.1).max(1.0);
    let (sqlite_peak, sqlite_runs) = median_of_runs(sqlite_tries, rps);
    let (pg_peak, pg_runs) = median_of_runs(pg_tries, rps);
    drop(sqlite);

    // The peaks leave a checkpoint's worth of dirty pages behind, written
    // out over the next minutes beside the trail's own fsyncs: a forced
    // checkpoint first, as the SQLite side settles, so the fixed rate
    // measures the steady state. Checkpoints during it are counted.
    BenchDatabase::checkpoint(&runtime);
    let checkpoints = || -> f64 {
        psql(
            &runtime,
            "SELECT (checkpoints_timed + checkpoints_req)::text FROM pg_stat_bgwriter",
        )
        .join("")
        .parse()
        .unwrap_or(f64::NAN)
    };
    let checkpoints_before = checkpoints();
    eprintln!("PostgreSQL trail latency at {PG_RATE}/s");
    let rate = PG_RATE.to_string();
    let (pg_latency, pg_p99_runs) = median_of(repeats, p99_ms, || {
        post(&pg, &at_fixed_rate(&duration, "64", &rate))
    });
    let checkpoints_during = checkpoints() - checkpoints_before;
    drop(pg);
    database.drop_database(&runtime);

    let ratio = rps(&pg_peak) / rps(&sqlite_peak).max(1.0);
    let results = json!({
        "postgres": {"fsync": fsync, "synchronous_commit": synchronous_commit},
        "seconds_per_measurement": seconds,
        "repeats": repeats,
        "sqlite_peak_rps": rps(&sqlite_peak),
        "sqlite_peak_runs": sqlite_runs,
        "sqlite_peak_connections": connections(&sqlite_peak),
        "postgres_peak_rps": rps(&pg_peak),
        "postgres_peak_runs": pg_runs,
        "postgres_peak_connections": connections(&pg_peak),
        "postgres_over_sqlite": ratio,
        "cpu_us_per_decision_at_peak": {"sqlite": sqlite_cpu_us, "postgres": pg_cpu_us, "postgres_server": server_cpu_us},
        "postgres_wal_bytes_per_decision_at_peak": wal_per_decision,
        "postgres_at_2000": {
            "p50_ms": percentile_ms(&pg_latency, "p50"),
            "p99_ms": percentile_ms(&pg_latency, "p99"),
            "p99_9_ms": percentile_ms(&pg_latency, "p99.9"),
            "ok_share": ok_share(&pg_latency),
            "p99_runs": pg_p99_runs,
            "checkpoints_during": checkpoints_during,
        },
    });
    write_results(out_dir, "postgres.json", &results);
    println!(
        "\nPostgreSQL trail (fsync {fsync}, synchronous_commit {synchronous_commit})\n\
         trip peak, SQLite trail        {:>9.0} req/s  ({})\n\
         trip peak, PostgreSQL trail    {:>9.0} req/s  ({})\n\
         PostgreSQL / SQLite            {:>9.2}   (target >= 0.6)\n\
         CPU per decision at peak (µs)  tripgate: SQLite trail {sqlite_cpu_us:.0}, PostgreSQL trail {pg_cpu_us:.0}; PostgreSQL server {server_cpu_us:.0}\n\
         WAL per decision at peak       {wal_per_decision:>9.0} bytes\n\
         PostgreSQL at {PG_RATE}/s: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms (targets 5, 10); {}; {checkpoints_during} checkpoints during\n\
         written: {}/postgres.json",
        rps(&sqlite_peak),
        spread(&sqlite_runs, 0),
        rps(&pg_peak),
        spread(&pg_runs, 0),
        ratio,
        percentile_ms(&pg_latency, "p50"),
        percentile_ms(&pg_latency, "p99"),
        percentile_ms(&pg_latency, "p99.9"),
        spread(&pg_p99_runs, 2),
        out_dir.display()
    );
    let _ = std::fs::remove_dir_all(&work);
    results
}

/// `url` with its database path replaced by `database`.
fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}
