//! `tripgate-bench soak [OUT_DIR]` (`scripts/bench soak`): a long run at a
//! steady mixed load while the provider turns codes over, minute by minute.
//!
//! One `tripgate serve` (Redis cache, SQLite trail fsynced per batch, or
//! the PostgreSQL trail with `BENCH_SOAK_AUDIT=postgres`), the simulator
//! pushing every code change it makes (`--transitions`, a simulated day a
//! second so yellow and red codes recover within the run) to tripgate's
//! `/v1/status-events`. Each minute four oha processes run side by side at
//! fixed rates (open loop, corrected for coordinated omission): trip checks
//! 60%, passenger orders 20%, driver shifts 15% and candidate filters of 50
//! drivers 5% of `BENCH_SOAK_RATE` (default 2,000 checks/s), for
//! `BENCH_SOAK_MINUTES` (default 30). After each minute: every hook's
//! p50/p99/p99.9, answers that were not 2xx, tripgate's CPU, and its
//! resident memory and SQLite's count of its own (the medians of readings
//! every 5 s; the resident memory's range). At the end tripgate stops
//! cleanly and `tripgate audit verify` checks the whole trail. Verdicts:
//! zero non-2xx, memory at the last minute within 5% of minute 5, no
//! minute's p99 over twice the first minute's (per hook), the trail
//! verifies. Writes `OUT_DIR/soak.json` and `OUT_DIR/soak.svg`.

use super::*;

/// (hook path, share of the rate, connections, bodies file name)
const MIX: [(&str, f64, &str, &str); 4] = [
    ("trip", 0.60, "32", "trips.ndjson"),
    ("passenger-order", 0.20, "16", "orders.ndjson"),
    ("driver-shift", 0.15, "16", "shifts.ndjson"),
    ("candidates", 0.05, "16", "candidates.ndjson"),
];

const EVENTS_SECRET: &str = "the soak's provider push secret";

pub(crate) fn soak(out_dir: &Path) -> Value {
    let minutes: usize = env_number("BENCH_SOAK_MINUTES", 30);
    let rate: f64 = env_number("BENCH_SOAK_RATE", 2_000.0);
    let transitions: f64 = env_number("BENCH_SOAK_TRANSITIONS", 20.0);
    let postgres_trail = std::env::var("BENCH_SOAK_AUDIT").as_deref() == Ok("postgres");
    let work = work_dir("tripgate-bench-soak");
    let binary = std::env::current_exe().unwrap().with_file_name("tripgate");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    eprintln!("generating request bodies (Zipf-like popularity)...");
    write_bodies(&work.join("trips.ndjson"), TRIP_BODIES, 0, 1);
    write_bodies(&work.join("candidates.ndjson"), CANDIDATE_BODIES, 50, 2);
    write_shift_and_order_bodies(
        &work.join("trips.ndjson"),
        &work.join("shifts.ndjson"),
        &work.join("orders.ndjson"),
    );

    let (_redis, redis_port) = start_redis();
    let port = free_port();
    let (_simulator, provider) = start_simulator_with(
        &binary,
        DRIVERS,
        PASSENGERS,
        &[
            "--webhook-url".into(),
            format!("http://127.0.0.1:{port}/v1/status-events"),
            "--webhook-secret".into(),
            EVENTS_SECRET.into(),
            "--transitions".into(),
            transitions.to_string(),
            "--time-scale".into(),
            "86400".into(),
        ],
    );
    let database = postgres_trail.then(|| postgres::BenchDatabase::create(&runtime));
    let audit_file = work.join("audit.sqlite3");
    let mut env = vec![("TRIPGATE__EVENTS__SECRET", EVENTS_SECRET.to_owned())];
    match &database {
        Some(database) => {
            env.push(("TRIPGATE__AUDIT__BACKEND", "postgres".into()));
            env.push(("TRIPGATE__AUDIT__POSTGRES_URL", database.url.clone()));
        }
        None => env.push((
            "TRIPGATE__AUDIT__SQLITE_PATH",
            audit_file.display().to_string(),
        )),
    }
    let mut service = start_tripgate_on(&binary, port, redis_port, &provider, &env);
    let pid = service.process.0.id();

    eprintln!("warming the cache (three draws per request body)...");
    for (hook, _, connections, bodies) in MIX {
        let lines = if hook == "candidates" {
            CANDIDATE_BODIES
        } else {
            TRIP_BODIES
        };
        post_bodies(
            &format!("{}/v1/checks/{hook}", service.url),
            &work.join(bodies),
            &["-n", &(3 * lines).to_string(), "-c", connections],
        );
    }
    if database.is_none() {
        settle(&service);
    }

    eprintln!(
        "soak: {minutes} minutes at {rate} checks/s (trip 60%, order 20%, shift 15%, \
         candidates of 50 5%), {transitions} code changes a second pushed"
    );
    let pushes_before = Pushes::read(&service.admin);
    let mut rows = Vec::with_capacity(minutes);
    let stages =
        || ["status", "audit"].map(|stage| stage_buckets(&metrics_text(&service.admin), stage));
    for minute in 1..=minutes {
        let cpu_before = cpu_seconds(pid);
        let stages_before = stages();
        // Polled every 5 s while the minute's load runs: the most records
        // logged but not yet loaded (after the load the loader catches up
        // at once), resident memory, and the part of it SQLite holds by
        // its own count.
        let running = std::sync::atomic::AtomicBool::new(true);
        type Polled = (f64, Vec<f64>, Vec<f64>);
        let (runs, (most_unloaded, rss_samples, sqlite_samples)): (Vec<(&str, Value)>, Polled) =
            std::thread::scope(|scope| {
                let poller = scope.spawn(|| {
                    let mut most = 0.0f64;
                    let (mut rss, mut sqlite) = (Vec::new(), Vec::new());
                    while running.load(std::sync::atomic::Ordering::Relaxed) {
                        most = most.max(metric(&service.admin, "tripgate_audit_unloaded"));
                        rss.push(rss_mib(pid));
                        sqlite.push(
                            metric(&service.admin, "tripgate_sqlite_memory_bytes")
                                / (1 << 20) as f64,
                        );
                        std::thread::sleep(Duration::from_secs(5));
                    }
                    (most, rss, sqlite)
                });
                let handles: Vec<_> = MIX
                    .iter()
                    .map(|(hook, share, connections, bodies)| {
                        let url = format!("{}/v1/checks/{hook}", service.url);
                        let bodies = work.join(bodies);
                        let hook_rate = format!("{:.0}", rate * share);
                        scope.spawn(move || {
                            let report = post_bodies(
                                &url,
                                &bodies,
                                &at_fixed_rate("60s", connections, &hook_rate),
                            );
                            (*hook, report)
                        })
                    })
                    .collect();
                let runs = handles.into_iter().map(|h| h.join().unwrap()).collect();
                running.store(false, std::sync::atomic::Ordering::Relaxed);
                (runs, poller.join().unwrap())
            });
        // Where slow decisions waited: for the status lookups, or for the
        // trail's commit.
        let stages_after = stages();
        let [status_slow, audit_slow] =
            [0, 1].map(|i| 100.0 * share_over(&stages_before[i], &stages_after[i], 0.010));
        // What holds memory besides the heap's own use: records logged
        // but not yet in the SQLite file, and the L1 cache's entries.
        let l1_entries = readiness(&service.admin)["cache"]["l1_entries"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let rss_end = rss_mib(pid);
        let (rss_low, rss_high) = rss_samples
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
                (lo.min(*v), hi.max(*v))
            });
        let rss_median = median(rss_samples);
        let sqlite_median = median(sqlite_samples);
        let mut row = json!({
            "minute": minute,
            // The minute's median of its 5-s samples: what the memory
            // verdict and the plot read. One reading lands anywhere in
            // the minute's swing (its range beside it).
            "rss_mib": rss_median,
            "rss_mib_range": [rss_low, rss_high],
            "rss_mib_at_end": rss_end,
            // Of it, SQLite's own count (median of the same readings).
            "sqlite_mib": sqlite_median,
            "cpu_seconds": cpu_seconds(pid) - cpu_before,
            "percent_over_10ms": {"status": status_slow, "audit": audit_slow},
            "audit_unloaded_most": most_unloaded,
            "l1_entries": l1_entries,
        });
        let mut line = format!(
            "minute {minute:>2}: RSS {rss_median:.0} MiB ({rss_low:.0}-{rss_high:.0}; SQLite {sqlite_median:.0}; unloaded records at most {most_unloaded:.0}, L1 {l1_entries:.0}), \
             over 10 ms: status {status_slow:.2}%, audit {audit_slow:.2}%"
        );
        for (hook, report) in &runs {
            let non_2xx = requests(report) - two_xx(report);
            row[*hook] = json!({
                "requests": requests(report),
                "non_2xx": non_2xx,
                "p50_ms": percentile_ms(report, "p50"),
                "p99_ms": percentile_ms(report, "p99"),
                "p99_9_ms": percentile_ms(report, "p99.9"),
            });
            line += &format!(
                "; {hook} p99 {:.1} ms{}",
                percentile_ms(report, "p99"),
                if non_2xx > 0.0 {
                    format!(" ({non_2xx} non-2xx)")
                } else {
                    String::new()
                }
            );
        }
        eprintln!("{line}");
        rows.push(row);
    }
    let pushed = Pushes::read(&service.admin).since(&pushes_before);
    let (pushes, pushes_refused) = (pushed.all, pushed.refused_total());

    eprintln!("stopping tripgate cleanly and verifying the trail");
    service.process.stop_cleanly();
    let store = match &database {
        Some(database) => vec!["--postgres".to_owned(), database.url.clone()],
        None => vec!["--sqlite".to_owned(), audit_file.display().to_string()],
    };
    let verify = Command::new(&binary)
        .args(["audit", "verify"])
        .args(&store)
        .output()
        .expect("tripgate audit verify");
    let verify_out = String::from_utf8_lossy(&verify.stdout).into_owned()
        + &String::from_utf8_lossy(&verify.stderr);
    let verified = verify.status.success();
    if let Some(database) = database {
        database.drop_database(&runtime);
    }

    let mut results = verdicts(rows, pushes, verified, &verify_out, rate, transitions);
    results["code_changes_refused"] = json!(pushes_refused);
    results["code_changes_refused_by_status"] = json!(pushed.refused);
    results["redis_write_errors"] = json!(pushed.redis_write_errors);
    write_results(out_dir, "soak.json", &results);
    minutes_plot(&out_dir.join("soak.svg"), &results["minutes"]);
    println!(
        "\nsoak: {minutes} min at {rate}/s, {pushes} code changes pushed ({pushes_refused} refused: {}; \
         Redis write errors {})\n\
         non-2xx answers               {}   (target 0)\n\
         RSS minute 5 / last (MiB)     {:.1} / {:.1}  ({:+.1}%, target within 5%; each a minute's median)\n\
         worst minute p99 / first      {:.2}x ({})  (target <= 2)\n\
         trail verifies                {verified}\n\
         written: {}/soak.json, soak.svg",
        json!(pushed.refused),
        pushed.redis_write_errors,
        results["non_2xx"],
        results["rss_mib_minute_5"].as_f64().unwrap_or(f64::NAN),
        results["rss_mib_last"].as_f64().unwrap_or(f64::NAN),
        results["rss_growth_percent"].as_f64().unwrap_or(f64::NAN),
        results["worst_p99_over_first"].as_f64().unwrap_or(f64::NAN),
        results["worst_p99_hook"].as_str().unwrap_or("?"),
        out_dir.display()
    );
    let _ = std::fs::remove_dir_all(&work);
    results
}

/// Provider pushes tripgate has answered so far, and what says why one
/// was refused.
#[derive(Default)]
struct Pushes {
    all: f64,
    /// Pushes not answered 2xx, by HTTP status.
    refused: std::collections::BTreeMap<String, f64>,
    /// Failed Redis writes (`tripgate_redis_errors_total{operation="write"}`):
    /// a push is refused, fail-closed, when its write does not land.
    redis_write_errors: f64,
}

impl Pushes {
    fn read(admin: &str) -> Self {
        let metrics = metrics_text(admin);
        let mut pushes = Self::default();
        for line in metrics.lines().filter(|l| {
            l.starts_with("tripgate_http_requests_total{")
                && l.contains(r#"route="/v1/status-events""#)
        }) {
            let n: f64 = line
                .rsplit_once(' ')
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or(0.0);
            pushes.all += n;
            let status = line
                .split_once(r#"status=""#)
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or("?", |(status, _)| status);
            if !status.starts_with('2') {
                *pushes.refused.entry(status.to_owned()).or_default() += n;
            }
        }
        pushes.redis_write_errors = metric_in(
            &metrics,
            r#"tripgate_redis_errors_total{operation="write"}"#,
        );
        pushes
    }

    /// What happened between `before` and `self` (statuses with no new
    /// refusals left out).
    fn since(&self, before: &Self) -> Self {
        Self {
            all: self.all - before.all,
            refused: self
                .refused
                .iter()
                .map(|(status, n)| {
                    let n = n - before.refused.get(status).copied().unwrap_or(0.0);
                    (status.clone(), n)
                })
                .filter(|(_, n)| *n != 0.0)
                .collect(),
            redis_write_errors: self.redis_write_errors - before.redis_write_errors,
        }
    }

    /// Pushes refused, whatever their status.
    fn refused_total(&self) -> f64 {
        // Folded from 0.0: an empty float sum is -0.0.
        self.refused.values().fold(0.0, |a, n| a + n)
    }
}

/// Answers with a 2xx status.
fn two_xx(report: &Value) -> f64 {
    report["statusCodeDistribution"]
        .as_object()
        .map_or(0, |dist| {
            dist.iter()
                .filter(|(status, _)| status.starts_with('2'))
                .filter_map(|(_, n)| n.as_u64())
                .sum::<u64>()
        }) as f64
}

/// The run's figures and the issue's verdicts over the minutes.
fn verdicts(
    rows: Vec<Value>,
    pushes: f64,
    verified: bool,
    verify_out: &str,
    rate: f64,
    transitions: f64,
) -> Value {
    let non_2xx: f64 = rows
        .iter()
        .flat_map(|row| {
            MIX.iter()
                .map(move |(hook, ..)| row[*hook]["non_2xx"].as_f64().unwrap_or(0.0))
        })
        .sum();
    let rss = |minute: usize| {
        rows.get(minute.wrapping_sub(1))
            .and_then(|r| r["rss_mib"].as_f64())
    };
    let minute_5 = rss(5.min(rows.len()));
    let last = rss(rows.len());
    let growth = match (minute_5, last) {
        (Some(a), Some(b)) => 100.0 * (b - a) / a,
        _ => f64::NAN,
    };
    let mut worst = (0.0f64, "");
    for (hook, ..) in MIX {
        let first = rows
            .first()
            .and_then(|r| r[hook]["p99_ms"].as_f64())
            .unwrap_or(f64::NAN);
        for row in &rows {
            let ratio = row[hook]["p99_ms"].as_f64().unwrap_or(f64::NAN) / first;
            if ratio > worst.0 || ratio.is_nan() {
                worst = (ratio, hook);
            }
        }
    }
    json!({
        "rate": rate,
        "transitions_per_second": transitions,
        "code_changes_pushed": pushes,
        "non_2xx": non_2xx,
        "rss_mib_minute_5": minute_5,
        "rss_mib_last": last,
        "rss_growth_percent": growth,
        "worst_p99_over_first": worst.0,
        "worst_p99_hook": worst.1,
        "trail_verifies": verified,
        "verify_output": verify_out.trim(),
        "minutes": rows,
    })
}

/// The per-minute p99 of each hook and tripgate's resident memory.
fn minutes_plot(path: &Path, minutes: &Value) {
    let rows = minutes.as_array().cloned().unwrap_or_default();
    let (w, h, left, right, bottom, top) = (760.0, 420.0, 70.0, 70.0, 50.0, 40.0);
    let count = rows.len().max(2) as f64;
    let max_ms = rows
        .iter()
        .flat_map(|r| {
            MIX.iter()
                .map(move |(hook, ..)| r[*hook]["p99_ms"].as_f64().unwrap_or(0.0))
        })
        .fold(1.0f64, f64::max);
    let max_mib = rows
        .iter()
        .filter_map(|r| r["rss_mib"].as_f64())
        .fold(1.0f64, f64::max)
        * 1.1;
    let sx = |minute: f64| left + (minute - 1.0) / (count - 1.0) * (w - left - right);
    let sy = |v: f64, max: f64| h - bottom - v / max * (h - bottom - top);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="18" font-size="14">soak: p99 per minute by hook (left axis, ms) and resident memory (right axis, MiB)</text>"#
    );
    for i in 0..=4 {
        let y = sy(max_ms * i as f64 / 4.0, max_ms);
        svg += &format!(
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{:.1}</text><text x="{}" y="{}">{:.0}</text>"##,
            w - right,
            left - 6.0,
            y + 4.0,
            max_ms * i as f64 / 4.0,
            w - right + 6.0,
            y + 4.0,
            max_mib * i as f64 / 4.0
        );
    }
    for r in &rows {
        let minute = r["minute"].as_f64().unwrap_or(0.0);
        if (minute as u64).is_multiple_of(5) || minute == 1.0 {
            svg += &format!(
                r#"<text x="{}" y="{}" text-anchor="middle">{minute}</text>"#,
                sx(minute),
                h - bottom + 16.0
            );
        }
    }
    let colours = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"];
    let mut line = |name: &str, colour: &str, value: &dyn Fn(&Value) -> f64, max: f64, k: usize| {
        let points: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{:.1},{:.1}",
                    sx(r["minute"].as_f64().unwrap_or(0.0)),
                    sy(value(r), max)
                )
            })
            .collect();
        svg += &format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{colour}">{name}</text>"#,
            points.join(" "),
            left + 10.0,
            top + 16.0 * k as f64
        );
    };
    for (k, (hook, ..)) in MIX.iter().enumerate() {
        line(
            &format!("{hook} p99"),
            colours[k],
            &|r: &Value| r[*hook]["p99_ms"].as_f64().unwrap_or(0.0),
            max_ms,
            k,
        );
    }
    line(
        "resident memory",
        "#d62728",
        &|r: &Value| r["rss_mib"].as_f64().unwrap_or(0.0),
        max_mib,
        MIX.len(),
    );
    svg += "</svg>\n";
    std::fs::write(path, svg).unwrap();
}
