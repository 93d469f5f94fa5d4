//! The benchmark harness (`scripts/bench`): one run that measures tripgate
//! against itself on this machine and prints, as a table and as JSON, the
//! figures the targets are stated in, with an SVG of the latency percentile
//! curves. Not part of the test suite: speed is checked here, not by timed
//! tests.
//!
//! It starts its own redis-server, the provider simulator (100,000 drivers,
//! 1,000,000 passengers) and `tripgate serve` (Redis cache, SQLite audit:
//! every batch fsynced to its log before its decisions are answered),
//! generates request bodies whose subjects follow a
//! Zipf-like popularity, and drives them with `oha` (open-loop, corrected for
//! coordinated omission at fixed rates). The load generator shares the
//! machine, so compare ratios within one run: that is why the durable and
//! in-memory peaks are interleaved on two instances running side by side,
//! and why fixed-rate runs start only once the trail has settled (every
//! answered decision loaded, the lookup index caught up), so they measure
//! the steady state, not the catch-up after a peak.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const DRIVERS: u64 = 100_000;
const PASSENGERS: u64 = 1_000_000;
const RATE: u32 = 5_000;
const TRIP_BODIES: usize = 100_000;
const CANDIDATE_BODIES: usize = 3_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &'static str, command: &mut Command) -> Process {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    // The children die with the harness, also when it is killed (then no
    // Drop runs): a killed run, or BENCH_HOLD ended by a signal, leaves no
    // servers behind.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Process(child)
}

/// This run's scratch directory, `<temp>/<name>-<pid>`. Directories of
/// earlier runs whose process is gone are removed first: a run ended by a
/// signal (`BENCH_HOLD`, Ctrl-C) cannot clean up after itself, and each
/// leaves hundreds of MB of audit trail behind.
fn work_dir(name: &str) -> PathBuf {
    let prefix = format!("{name}-");
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let pid = file_name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|pid| pid.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if Command::new("curl")
            .args(["-sf", "-o", "/dev/null", url])
            .status()
            .is_ok_and(|s| s.success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} did not answer within 30 s");
}

/// Zipf-like sampler over 0..n with exponent s (inverse CDF by bisection).
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

/// Subject ids are permuted so popular ones are spread over the id space.
fn scatter(rank: usize, n: u64) -> u64 {
    (rank as u64).wrapping_mul(2_654_435_761) % n
}

fn write_bodies(path: &Path, lines: usize, candidates: usize, seed: u64) {
    let drivers = Zipf::new(DRIVERS as usize, 1.0);
    let passengers = Zipf::new(PASSENGERS as usize, 1.0);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 0..lines {
        let mut seen = std::collections::HashSet::new();
        let mut pick_passenger = |rng: &mut fastrand::Rng| loop {
            let id = format!("P-{:07}", scatter(passengers.sample(rng), PASSENGERS));
            if seen.insert(id.clone()) {
                return json!({"id": id});
            }
        };
        let body = if candidates == 0 {
            let count = rng.usize(1..=3);
            let ps: Vec<Value> = (0..count).map(|_| pick_passenger(&mut rng)).collect();
            json!({"trip_id": format!("T-{n}"), "city": "hangzhou",
                   "driver": {"id": format!("D-{:06}", scatter(drivers.sample(&mut rng), DRIVERS))},
                   "passengers": ps})
        } else {
            let mut ds = std::collections::BTreeSet::new();
            while ds.len() < candidates {
                ds.insert(scatter(drivers.sample(&mut rng), DRIVERS));
            }
            json!({"trip_id": format!("T-{n}"), "city": "hangzhou",
                   "passengers": [pick_passenger(&mut rng)],
                   "drivers": ds.iter().map(|d| json!({"id": format!("D-{d:06}")})).collect::<Vec<_>>()})
        };
        writeln!(out, "{body}").unwrap();
    }
}

/// Bodies that together name `distinct` different passengers, once each.
fn write_distinct_bodies(path: &Path, distinct: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut next = 0;
    let mut n = 0;
    while next < distinct {
        let ps: Vec<Value> = (0..3)
            .map(|k| json!({"id": format!("P-{:07}", (next + k) % PASSENGERS)}))
            .collect();
        next += 3;
        n += 1;
        writeln!(out, "{}", json!({"trip_id": format!("U-{n}"), "city": "hangzhou", "driver": {"id": format!("D-{:06}", n % DRIVERS)}, "passengers": ps})).unwrap();
    }
}

/// An oha run's JSON report, with the CPU seconds oha itself used added
/// under `LOAD_GENERATOR_CPU`: the load generator shares the cores, so its
/// cost per request bounds what the server's ratios can reach.
fn oha(args: &[&str]) -> Value {
    let cpu_before = children_cpu_seconds();
    let output = Command::new("oha")
        .args(["--no-tui", "--output-format", "json"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("oha is needed: cargo install oha --locked (scripts/bench installs it)");
    assert!(output.status.success(), "oha failed");
    let mut report: Value = serde_json::from_slice(&output.stdout).expect("oha JSON");
    report[LOAD_GENERATOR_CPU] = json!(children_cpu_seconds() - cpu_before);
    report
}

const LOAD_GENERATOR_CPU: &str = "tripgate_bench_load_generator_cpu_seconds";

/// CPU seconds of every child process waited for so far (oha runs are
/// waited for; the servers are not until the end).
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Requests answered in a run, whatever their status.
fn requests(result: &Value) -> f64 {
    result["statusCodeDistribution"]
        .as_object()
        .map_or(0, |dist| {
            dist.values().filter_map(Value::as_u64).sum::<u64>()
        }) as f64
}

/// The load generator's CPU per request over `runs`, in µs.
fn load_generator_us<'a>(runs: impl IntoIterator<Item = &'a Value>) -> f64 {
    let (cpu, answered) = runs.into_iter().fold((0.0, 0.0), |(cpu, answered), run| {
        let run_cpu = run[LOAD_GENERATOR_CPU].as_f64().unwrap_or(0.0);
        (cpu + run_cpu, answered + requests(run))
    });
    1e6 * cpu / f64::max(answered, 1.0)
}

/// Connections for peak throughput, each tried: a durable decision waits
/// for the log's sync, so it takes more requests in flight than an
/// in-memory one to keep the cores busy (at 64 the durable peak was 20-25%
/// below its best, the in-memory one at its best); a peak is the best.
const PEAK_CONNECTIONS: [&str; 2] = ["64", "256"];

const CONNECTIONS: &str = "tripgate_bench_connections";

fn with_connections(mut report: Value, connections: &str) -> Value {
    report[CONNECTIONS] = json!(connections);
    report
}

fn connections(result: &Value) -> &str {
    result[CONNECTIONS].as_str().unwrap_or("?")
}

/// The run with the highest throughput.
fn best_of(runs: Vec<Value>) -> Value {
    runs.into_iter()
        .max_by(|a, b| rps(a).total_cmp(&rps(b)))
        .unwrap_or(Value::Null)
}

/// Runs a measurement `repeats` times (this machine's disk and neighbours
/// make single runs noisy): the median run by `key`, and every run's key.
fn median_of(
    repeats: usize,
    key: fn(&Value) -> f64,
    mut measure: impl FnMut() -> Value,
) -> (Value, Vec<f64>) {
    median_of_runs((0..repeats.max(1)).map(|_| measure()).collect(), key)
}

/// `median_of` for runs already made.
fn median_of_runs(mut runs: Vec<Value>, key: fn(&Value) -> f64) -> (Value, Vec<f64>) {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let keys = runs.iter().map(key).collect();
    let middle = runs.len() / 2;
    (runs.swap_remove(middle), keys)
}

fn spread(keys: &[f64], digits: usize) -> String {
    let all: Vec<String> = keys.iter().map(|k| format!("{k:.digits$}")).collect();
    format!("runs: {}", all.join(", "))
}

fn p99_ms(result: &Value) -> f64 {
    percentile_ms(result, "p99")
}

fn rps(result: &Value) -> f64 {
    result["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0)
}

fn ok_share(result: &Value) -> f64 {
    let ok = result["statusCodeDistribution"]["200"]
        .as_u64()
        .unwrap_or(0);
    ok as f64 / requests(result).max(1.0)
}

fn percentile_ms(result: &Value, p: &str) -> f64 {
    result["latencyPercentiles"][p].as_f64().unwrap_or(f64::NAN) * 1000.0
}

/// Calls Redis has served, of every command or of the one named.
fn redis_calls(port: u16, command: Option<&str>) -> u64 {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "commandstats"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| command.is_none_or(|c| l.starts_with(&format!("cmdstat_{c}:"))))
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|r| r.split(',').next()?.parse::<u64>().ok())
        .sum()
}

fn simulator_requests(url: &str) -> u64 {
    let output = Command::new("curl")
        .args(["-s", &format!("{url}/admin/stats")])
        .output()
        .expect("curl");
    serde_json::from_slice::<Value>(&output.stdout)
        .ok()
        .and_then(|v| v["requests"].as_u64())
        .unwrap_or(0)
}

/// The admin listener's Prometheus text.
fn metrics_text(admin: &str) -> String {
    let output = Command::new("curl")
        .args(["-s", &format!("{admin}/metrics")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn metric(admin: &str, series: &str) -> f64 {
    metrics_text(admin)
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The cumulative bucket counts of one stage of
/// `tripgate_decision_stage_seconds` in `metrics` (Prometheus text), as
/// (upper bound in seconds, count).
fn stage_buckets(metrics: &str, stage: &str) -> Vec<(f64, f64)> {
    let prefix = format!("tripgate_decision_stage_seconds_bucket{{stage=\"{stage}\",le=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The share of decisions between two bucket snapshots whose `stage` took
/// longer than `seconds` (a bucket bound).
fn stage_share_over(before: &[(f64, f64)], after: &[(f64, f64)], seconds: f64) -> f64 {
    let delta = |le: f64| {
        let at = |v: &[(f64, f64)]| v.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
        at(after) - at(before)
    };
    let all = delta(f64::INFINITY);
    if all <= 0.0 {
        return 0.0;
    }
    (all - delta(seconds)) / all
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_cpu_seconds(&stat))
        .unwrap_or(f64::NAN)
}

/// User + system CPU seconds from a `/proc/.../stat` line (a process's or
/// a thread's). Linux reports them in clock ticks, 100 per second on every
/// platform Rust supports (USER_HZ).
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// CPU seconds per thread name (threads of one name summed), so a run can
/// say where a decision's CPU goes.
fn thread_cpu_seconds(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        let Some(seconds) = stat_cpu_seconds(&stat) else {
            continue;
        };
        *by_name.entry(name.trim().to_owned()).or_insert(0.0) += seconds;
    }
    by_name
}

/// Waits (at most a minute) until every answered decision is in the SQLite
/// file, then asks the regulator API for a subject's decisions, which
/// brings the lookup index up to date before it answers, and gives the
/// index's paced write-out a few seconds: a fixed-rate run then measures
/// the steady state rather than the catch-up after a peak.
fn settle(service: &Service) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&service.admin, "tripgate_audit_unloaded") > 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let caught_up = Command::new("curl")
        .args([
            "-sf",
            "-o",
            "/dev/null",
            "--max-time",
            "120",
            &format!(
                "{}/v1/audit/decisions?subject=D-000001&limit=1",
                service.url
            ),
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        caught_up,
        "the audit query that catches the index up failed"
    );
    std::thread::sleep(Duration::from_secs(5));
}

/// Trip checks the service has decided so far (allowed or rejected).
fn trip_decisions(admin: &str) -> f64 {
    ["allow", "reject"]
        .iter()
        .map(|d| {
            metric(
                admin,
                &format!(r#"tripgate_checks_total{{decision="{d}",hook="trip"}}"#),
            )
        })
        .sum()
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Service {
    process: Process,
    url: String,
    admin: String,
}

fn start_tripgate(
    binary: &Path,
    dir: &Path,
    redis_port: u16,
    provider: &str,
    durable: bool,
) -> Service {
    let (port, admin_port) = (free_port(), free_port());
    let audit = if durable {
        dir.join("audit.sqlite3").display().to_string()
    } else {
        ":memory:".to_owned()
    };
    let process = spawn(
        "tripgate serve",
        Command::new(binary)
            .arg("serve")
            .env("TRIPGATE__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "TRIPGATE__SERVER__ADMIN_LISTEN",
                format!("127.0.0.1:{admin_port}"),
            )
            .env("TRIPGATE__CACHE__BACKEND", "redis")
            .env(
                "TRIPGATE__CACHE__REDIS_URL",
                format!("redis://127.0.0.1:{redis_port}"),
            )
            .env("TRIPGATE__CACHE__L1_MAX_ENTRIES", "100000")
            .env("TRIPGATE__PROVIDER__BASE_URL", provider)
            .env("TRIPGATE__AUDIT__SQLITE_PATH", audit)
            .env("TRIPGATE__LOG__LEVEL", "warn")
            .env("TRIPGATE__LOG__FORMAT", "json")
            .env("TRIPGATE__AUTH__RATE_PER_SEC", "1000000")
            .env_remove("RUST_LOG"),
    );
    let service = Service {
        process,
        url: format!("http://127.0.0.1:{port}"),
        admin: format!("http://127.0.0.1:{admin_port}"),
    };
    wait_http(&format!("{}/healthz", service.url));
    service
}

fn svg_plot(path: &Path, curves: &[(&str, &Value, &str)]) {
    let points = [
        "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99.9", "p99.99",
    ];
    // x: -log10(1 - p) so the tail spreads out.
    let x_of = |p: &str| {
        let v: f64 = p.trim_start_matches('p').parse::<f64>().unwrap() / 100.0;
        -(1.0 - v).log10()
    };
    let max_ms = curves
        .iter()
        .flat_map(|(_, r, _)| points.iter().map(move |p| percentile_ms(r, p)))
        .filter(|v| v.is_finite())
        .fold(0.1_f64, f64::max);
    let (w, h, left, bottom) = (720.0, 420.0, 70.0, 50.0);
    let sx = |x: f64| left + x / 4.0 * (w - left - 20.0);
    let sy = |ms: f64| h - bottom - ms / max_ms * (h - bottom - 30.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="18" font-size="14">tripgate latency percentiles (oha at a fixed rate, corrected for coordinated omission)</text>"#
    );
    for p in points {
        let x = sx(x_of(p));
        svg += &format!(
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="30" stroke="#eee"/><text x="{x}" y="{}" text-anchor="middle">{p}</text>"##,
            h - bottom,
            h - bottom + 16.0
        );
    }
    for i in 0..=4 {
        let ms = max_ms * i as f64 / 4.0;
        let y = sy(ms);
        svg += &format!(
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{ms:.2} ms</text>"##,
            w - 20.0,
            left - 6.0,
            y + 4.0
        );
    }
    for (k, (name, result, colour)) in curves.iter().enumerate() {
        let path_points: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx(x_of(p)), sy(percentile_ms(result, p))))
            .collect();
        svg += &format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path_points.join(" ")
        );
        svg += &format!(
            r#"<text x="{}" y="{}" fill="{colour}">{name}</text>"#,
            left + 10.0,
            40.0 + 16.0 * k as f64
        );
    }
    svg += "</svg>\n";
    std::fs::write(path, svg).unwrap();
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("audit-index") {
        let arg = |n: usize, default: u64| {
            std::env::args()
                .nth(n)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        audit_index(arg(2, 10_000_000), arg(3, 7_500), arg(4, 8));
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("audit-query") {
        let records = std::env::args()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000_000);
        audit_query(records);
        return;
    }
    let out_dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "bench-results".into()),
    );
    std::fs::create_dir_all(&out_dir).unwrap();
    let work = work_dir("tripgate-bench");
    let binary = std::env::current_exe().unwrap().with_file_name("tripgate");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let duration = format!("{seconds}s");
    let repeats = std::env::var("BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3usize);
    eprintln!(
        "tripgate benchmark on {cores} cores; {seconds} s per measurement, \
         median of {repeats} runs for the trip check figures"
    );

    let redis_port = free_port();
    let _redis = spawn(
        "redis-server",
        Command::new("redis-server").args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
    );
    let sim_port = free_port();
    let provider = format!("http://127.0.0.1:{sim_port}");
    let _simulator = spawn(
        "simulator",
        Command::new(&binary).args([
            "simulate",
            "--listen",
            &format!("127.0.0.1:{sim_port}"),
            "--drivers",
            &DRIVERS.to_string(),
            "--passengers",
            &PASSENGERS.to_string(),
            "--workers",
            "1",
        ]),
    );
    wait_http(&format!("{provider}/healthz"));

    eprintln!("generating request bodies (Zipf-like popularity)...");
    let trips = work.join("trips.ndjson");
    let candidates = work.join("candidates.ndjson");
    let distinct = work.join("distinct.ndjson");
    write_bodies(&trips, TRIP_BODIES, 0, 1);
    write_bodies(&candidates, CANDIDATE_BODIES, 50, 2);
    write_distinct_bodies(&distinct, PASSENGERS);

    let service = start_tripgate(&binary, &work, redis_port, &provider, true);
    let hook = format!("{}/v1/checks/trip", service.url);
    let filter = format!("{}/v1/checks/candidates", service.url);
    let post = |url: &str, bodies: &Path, extra: &[&str]| -> Value {
        let mut args = vec![
            "-m",
            "POST",
            "-H",
            "content-type: application/json",
            "-Z",
            bodies.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(url);
        oha(&args)
    };

    // oha draws body lines at random: three draws per line reach about 95%
    // of them, so nearly every subject the measurements name is cached
    // (steady state), and the audit file has some history.
    eprintln!("warming the cache (three draws per request body)...");
    post(
        &hook,
        &trips,
        &["-n", &(3 * TRIP_BODIES).to_string(), "-c", "64"],
    );
    post(
        &filter,
        &candidates,
        &["-n", &(3 * CANDIDATE_BODIES).to_string(), "-c", "16"],
    );

    if std::env::var_os("BENCH_HOLD").is_some() {
        // For profiling by hand: the same services, warmed, left running.
        eprintln!(
            "BENCH_HOLD: holding until killed\n  trip checks: {hook}\n  bodies: {}\n  \
             admin: {}\n  redis port: {redis_port}\n  tripgate pid: {}",
            trips.display(),
            service.admin,
            service.process.0.id()
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    // After the warm-up's records are in: the background threads' catch-up
    // would be charged to /healthz otherwise.
    settle(&service);
    eprintln!("(a) /healthz peak, and its latency at {RATE}/s (the harness's floor)");
    let healthz_url = format!("{}/healthz", service.url);
    let healthz_cpu_before = cpu_seconds(service.process.0.id());
    let healthz_runs: Vec<Value> = PEAK_CONNECTIONS
        .iter()
        .map(|c| with_connections(oha(&["-z", &duration, "-c", c, &healthz_url]), c))
        .collect();
    let healthz_requests: f64 = healthz_runs.iter().map(requests).sum();
    let healthz_server_us = 1e6 * (cpu_seconds(service.process.0.id()) - healthz_cpu_before)
        / healthz_requests.max(1.0);
    let healthz_load_generator_us = load_generator_us(&healthz_runs);
    let healthz = best_of(healthz_runs);
    let healthz_latency = oha(&[
        "-z",
        &duration,
        "-c",
        "64",
        "-q",
        &RATE.to_string(),
        "--latency-correction",
        &healthz_url,
    ]);
    // The in-memory sink prices durability: its peaks are interleaved with
    // the durable ones (durable, in-memory, durable, ...), so a swing in
    // the machine's speed hits both alike. Both share Redis and the
    // simulator; the idle one costs nothing.
    eprintln!("starting a second tripgate with a non-durable in-memory audit sink");
    let memory = start_tripgate(&binary, &work, redis_port, &provider, false);
    let memory_hook = format!("{}/v1/checks/trip", memory.url);
    post(&memory_hook, &trips, &["-z", "5s", "-c", "32"]);
    settle(&service);

    eprintln!("(b) trip check peak, (e) the same with the in-memory audit sink, interleaved");
    let (redis_before, mget_before, sim_before) = (
        redis_calls(redis_port, None),
        redis_calls(redis_port, Some("mget")),
        simulator_requests(&provider),
    );
    let decisions_before = trip_decisions(&service.admin);
    let lookups = |source: &str| {
        metric(
            &service.admin,
            &format!("tripgate_status_lookups_total{{source=\"{source}\"}}"),
        )
    };
    // (lookups served by L1, all lookups) so far, and L1's share between two.
    let lookup_counts = || {
        let all: f64 = ["l1", "redis", "upstream", "stale", "unavailable"]
            .iter()
            .map(|s| lookups(s))
            .sum();
        (lookups("l1"), all)
    };
    let l1_share_between = |before: (f64, f64), after: (f64, f64)| {
        (after.0 - before.0) / (after.1 - before.1).max(1.0)
    };
    let peak_lookups_before = lookup_counts();
    let peak_cpu_before = cpu_seconds(service.process.0.id());
    let threads_before = thread_cpu_seconds(service.process.0.id());
    let (memory_cpu_before, memory_before) = (
        cpu_seconds(memory.process.0.id()),
        trip_decisions(&memory.admin),
    );
    // Per repeat, one run per connection count for each sink.
    let (mut durable_tries, mut memory_tries) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        let (mut durable, mut memory) = (Vec::new(), Vec::new());
        for c in PEAK_CONNECTIONS {
            let peak =
                |url: &str| with_connections(post(url, &trips, &["-z", &duration, "-c", c]), c);
            durable.push(peak(&hook));
            memory.push(peak(&memory_hook));
        }
        durable_tries.push(durable);
        memory_tries.push(memory);
    }
    let trip_load_generator_us = load_generator_us(durable_tries.iter().flatten());
    let best = |tries: Vec<Vec<Value>>| tries.into_iter().map(best_of).collect::<Vec<_>>();
    let (trip_peak, trip_peak_runs) = median_of_runs(best(durable_tries), rps);
    let (memory_peak, memory_peak_runs) = median_of_runs(best(memory_tries), rps);
    let peak_cpu = cpu_seconds(service.process.0.id()) - peak_cpu_before;
    let decisions = trip_decisions(&service.admin) - decisions_before;
    let durable_cpu_us = 1e6 * peak_cpu / decisions.max(1.0);
    let threads_after = thread_cpu_seconds(service.process.0.id());
    let mut cpu_by_thread: Vec<(String, f64)> = threads_after
        .iter()
        .map(|(name, after)| {
            let used = after - threads_before.get(name).copied().unwrap_or(0.0);
            (name.clone(), 1e6 * used / decisions.max(1.0))
        })
        .filter(|(_, us)| *us >= 0.05)
        .collect();
    cpu_by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    let memory_decisions = trip_decisions(&memory.admin) - memory_before;
    let memory_cpu_us =
        1e6 * (cpu_seconds(memory.process.0.id()) - memory_cpu_before) / memory_decisions.max(1.0);
    drop(memory);
    // Both instances share Redis and the simulator.
    let both = (decisions + memory_decisions).max(1.0);
    let redis_per_decision = (redis_calls(redis_port, None) - redis_before) as f64 / both;
    let mget_per_decision = (redis_calls(redis_port, Some("mget")) - mget_before) as f64 / both;
    let provider_per_decision = (simulator_requests(&provider) - sim_before) as f64 / both;
    let l1_share = l1_share_between(peak_lookups_before, lookup_counts());

    settle(&service);
    eprintln!("(c) trip check latency at {RATE}/s");
    let rate = RATE.to_string();
    let (cpu_before, checks_before) = (
        cpu_seconds(service.process.0.id()),
        trip_decisions(&service.admin),
    );
    let stages = || {
        let metrics = metrics_text(&service.admin);
        ["status", "audit", "resume"].map(|stage| stage_buckets(&metrics, stage))
    };
    let stages_before = stages();
    let rate_lookups_before = lookup_counts();
    let (trip_latency, trip_p99_runs) = median_of(repeats, p99_ms, || {
        post(
            &hook,
            &trips,
            &[
                "-z",
                &duration,
                "-c",
                "64",
                "-q",
                &rate,
                "--latency-correction",
            ],
        )
    });
    // CPU per decision is steadier than throughput on a shared machine.
    let cpu_us_per_decision = 1e6 * (cpu_seconds(service.process.0.id()) - cpu_before)
        / (trip_decisions(&service.admin) - checks_before).max(1.0);
    // Where the tail is: the share of decisions whose status lookups, whose
    // wait for a durable audit record, or whose wait for a CPU once it was
    // durable (part of the audit wait) took over 2 ms.
    let stages_after = stages();
    // Lower than at peak: at a fixed rate fewer subjects come back within
    // the L1 lifetime.
    let l1_share_at_rate = l1_share_between(rate_lookups_before, lookup_counts());
    let [status_over_2ms, audit_over_2ms, resume_over_2ms] =
        [0, 1, 2].map(|i| 100.0 * stage_share_over(&stages_before[i], &stages_after[i], 0.002));
    eprintln!("(d) candidate filter (50 drivers) latency");
    let candidate_latency = post(
        &filter,
        &candidates,
        &[
            "-z",
            &duration,
            "-c",
            "32",
            "-q",
            "500",
            "--latency-correction",
        ],
    );
    let candidate_peak = post(&filter, &candidates, &["-z", &duration, "-c", "32"]);

    eprintln!("(f) resident memory across 1,000,000 distinct passengers");
    let rss_before = rss_mib(service.process.0.id());
    post(
        &hook,
        &distinct,
        &["-n", &(PASSENGERS / 3).to_string(), "-c", "64"],
    );
    let rss_after = rss_mib(service.process.0.id());
    drop(service);

    let trip_p99 = percentile_ms(&trip_latency, "p99");
    let candidate_p99 = percentile_ms(&candidate_latency, "p99");
    // Both peaks saturate the same cores, so a request's cost to the
    // machine is the server's CPU plus the load generator's: trip checks
    // reach half the /healthz rate only if the server spends at most this
    // per decision.
    let ceiling_server_us =
        2.0 * (healthz_load_generator_us + healthz_server_us) - trip_load_generator_us;
    let results = json!({
        "machine": {"cores": cores, "load_generator": "oha, same machine"},
        "repeats": {"count": repeats, "trip_peak_rps": trip_peak_runs, "trip_p99_ms": trip_p99_runs, "memory_sink_peak_rps": memory_peak_runs},
        "healthz_rps": rps(&healthz),
        "peak_connections": {"tried": PEAK_CONNECTIONS, "healthz": connections(&healthz), "trip": connections(&trip_peak), "memory_sink": connections(&memory_peak)},
        "trip_peak_rps": rps(&trip_peak),
        "trip_peak_ok_share": ok_share(&trip_peak),
        "trip_vs_healthz": rps(&trip_peak) / rps(&healthz),
        "cpu_us_per_request_at_peak": {
            "healthz": {"server": healthz_server_us, "load_generator": healthz_load_generator_us},
            "trip": {"server": durable_cpu_us, "load_generator": trip_load_generator_us},
            "server_per_decision_for_half_of_healthz": ceiling_server_us,
        },
        "healthz_latency_ms": {"rate": RATE, "p50": percentile_ms(&healthz_latency, "p50"), "p99": percentile_ms(&healthz_latency, "p99"), "p99.9": percentile_ms(&healthz_latency, "p99.9")},
        "trip_latency_ms": {"rate": RATE, "achieved_rps": rps(&trip_latency), "p50": percentile_ms(&trip_latency, "p50"), "p99": trip_p99, "p99.9": percentile_ms(&trip_latency, "p99.9")},
        "candidates_latency_ms": {"rate": 500, "p50": percentile_ms(&candidate_latency, "p50"), "p99": candidate_p99, "p99.9": percentile_ms(&candidate_latency, "p99.9")},
        "candidates_peak_rps": rps(&candidate_peak),
        "tripgate_cpu_us_per_decision_at_rate": cpu_us_per_decision,
        "percent_over_2ms_at_rate": {"status": status_over_2ms, "audit": audit_over_2ms, "resume": resume_over_2ms},
        "tripgate_cpu_us_per_decision_at_peak": {"durable": durable_cpu_us, "memory_sink": memory_cpu_us},
        "durable_cpu_us_per_decision_by_thread": cpu_by_thread.iter().map(|(name, us)| json!({"thread": name, "us": us})).collect::<Vec<_>>(),
        "memory_sink_peak_rps": rps(&memory_peak),
        "durability_cost": 1.0 - rps(&trip_peak) / rps(&memory_peak),
        "redis_commands_per_decision": redis_per_decision,
        "redis_round_trips_per_decision": mget_per_decision,
        "provider_calls_per_decision": provider_per_decision,
        "l1_hit_share": {"peak": l1_share, "at_rate": l1_share_at_rate},
        "rss_mib": {"before": rss_before, "after_1m_distinct_passengers": rss_after},
    });
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
    svg_plot(
        &out_dir.join("latency.svg"),
        &[
            (&format!("trip check at {RATE}/s"), &trip_latency, "#1f77b4"),
            (
                "candidate filter (50 drivers) at 500/s",
                &candidate_latency,
                "#d62728",
            ),
            (
                &format!("GET /healthz at {RATE}/s (the harness's floor)"),
                &healthz_latency,
                "#7f7f7f",
            ),
        ],
    );

    let check = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let rows = [
        (
            "GET /healthz peak (req/s)",
            format!(
                "{:.0} ({} connections)",
                rps(&healthz),
                connections(&healthz)
            ),
            String::new(),
        ),
        (
            "trip check peak (req/s)",
            format!(
                "{:.0} ({}; {} connections)",
                rps(&trip_peak),
                spread(&trip_peak_runs, 0),
                connections(&trip_peak)
            ),
            format!("{} >= 20000", check(rps(&trip_peak) >= 20_000.0)),
        ),
        (
            "trip / healthz",
            format!("{:.0}%", 100.0 * rps(&trip_peak) / rps(&healthz)),
            format!("{} >= 50%", check(rps(&trip_peak) >= 0.5 * rps(&healthz))),
        ),
        (
            "CPU per request at peak, tripgate + oha (µs): /healthz, trip",
            format!(
                "{healthz_server_us:.1} + {healthz_load_generator_us:.1}, \
                 {durable_cpu_us:.1} + {trip_load_generator_us:.1}"
            ),
            String::new(),
        ),
        (
            "tripgate CPU per decision that 50% of /healthz allows (µs)",
            format!("{ceiling_server_us:.1} (measured {durable_cpu_us:.1})"),
            String::new(),
        ),
        (
            "GET /healthz p99 / p99.9 @5000/s (ms): the harness's floor",
            format!(
                "{:.3} / {:.3}",
                percentile_ms(&healthz_latency, "p99"),
                percentile_ms(&healthz_latency, "p99.9")
            ),
            String::new(),
        ),
        (
            "trip p50 @5000/s (ms)",
            format!("{:.3}", percentile_ms(&trip_latency, "p50")),
            String::new(),
        ),
        (
            "trip p99 @5000/s (ms)",
            format!("{trip_p99:.3} ({})", spread(&trip_p99_runs, 1)),
            format!("{} <= 2", check(trip_p99 <= 2.0)),
        ),
        (
            "trip p99.9 @5000/s (ms)",
            format!("{:.3}", percentile_ms(&trip_latency, "p99.9")),
            format!(
                "{} <= 5",
                check(percentile_ms(&trip_latency, "p99.9") <= 5.0)
            ),
        ),
        (
            "tripgate CPU per decision @5000/s (µs)",
            format!("{cpu_us_per_decision:.0}"),
            String::new(),
        ),
        (
            "decisions over 2 ms @5000/s: status lookups / audit wait (after durable)",
            format!("{status_over_2ms:.2}% / {audit_over_2ms:.2}% ({resume_over_2ms:.2}%)"),
            String::new(),
        ),
        (
            "candidates(50) p99 @500/s (ms)",
            format!("{candidate_p99:.3}"),
            format!("{} <= 3x trip p99", check(candidate_p99 <= 3.0 * trip_p99)),
        ),
        (
            "candidates(50) peak (req/s)",
            format!("{:.0}", rps(&candidate_peak)),
            String::new(),
        ),
        (
            "in-memory audit peak (req/s)",
            format!(
                "{:.0} ({}; {} connections)",
                rps(&memory_peak),
                spread(&memory_peak_runs, 0),
                connections(&memory_peak)
            ),
            String::new(),
        ),
        (
            "tripgate CPU per decision at peak, durable / in-memory (µs)",
            format!("{durable_cpu_us:.0} / {memory_cpu_us:.0}"),
            String::new(),
        ),
        (
            "durable CPU per decision by thread (µs)",
            cpu_by_thread
                .iter()
                .map(|(name, us)| format!("{name} {us:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            String::new(),
        ),
        (
            "durability cost",
            format!(
                "{:.0}%",
                100.0 * (1.0 - rps(&trip_peak) / rps(&memory_peak))
            ),
            format!(
                "{} <= 20%",
                check(rps(&trip_peak) >= 0.8 * rps(&memory_peak))
            ),
        ),
        (
            "Redis round trips / decision",
            format!("{mget_per_decision:.3}"),
            format!("{} <= 1", check(mget_per_decision <= 1.0)),
        ),
        (
            "Redis commands / decision",
            format!("{redis_per_decision:.3}"),
            String::new(),
        ),
        (
            "provider calls / decision",
            format!("{provider_per_decision:.4}"),
            String::new(),
        ),
        (
            "L1 hit share of lookups, at peak / @5000/s",
            format!(
                "{:.0}% / {:.0}%",
                100.0 * l1_share,
                100.0 * l1_share_at_rate
            ),
            String::new(),
        ),
        (
            "RSS after 1M distinct (MiB)",
            format!("{rss_after:.0} (before {rss_before:.0})"),
            String::new(),
        ),
    ];
    println!("\ntripgate benchmark, {cores} cores, load generator on the same machine\n");
    println!("| measure | value | target |\n| --- | --- | --- |");
    for (name, value, target) in rows {
        println!("| {name} | {value} | {target} |");
    }
    println!(
        "\nwritten: {}/results.json, {}/latency.svg",
        out_dir.display(),
        out_dir.display()
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// `tripgate-bench audit-query [RECORDS]`: fills an SQLite audit file with
/// RECORDS synthetic sealed records spread over 180 days (10% rejections,
/// two cities) and times the regulator's queries on it.
pub fn audit_query(records: u64) {
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
async fn bench_store(
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
fn synthetic_record(
    n: u64,
    decided_at_us: i64,
    parties: Vec<tripgate::audit::AuditParty>,
) -> tripgate::audit::AuditRecord {
    use tripgate::audit::{AuditReason, AuditRecord, Hook, FORMAT};
    let reject = n.is_multiple_of(10);
    AuditRecord {
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

/// This process's (rchar, wchar): bytes read and written through system
/// calls, whichever file they went to.
fn process_io() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("rchar:"), field("wchar:"))
}

/// `tripgate-bench audit-index [TODAY] [PER_CATCH_UP] [ROUNDS]`: what the
/// lookup index costs late in a busy day. Fills an SQLite audit file with
/// TODAY records of one day (a driver and a passenger each, random subject
/// refs), builds the index, then ROUNDS times appends PER_CATCH_UP records
/// (default 7,500: the 15 s between two catch-ups at 500 decisions/s),
/// loads them, and measures the bytes the index catch-up reads and writes.
pub fn audit_index(today: u64, per_catch_up: u64, rounds: u64) {
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
