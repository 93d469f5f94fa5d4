//! Driving load with `oha` and reading its reports.

#[allow(unused_imports)]
use super::*;

/// An oha run's JSON report, with the CPU seconds oha itself used added
/// under `LOAD_GENERATOR_CPU`: the load generator shares the cores, so its
/// cost per request bounds what the server's ratios can reach.
pub(crate) fn oha(args: &[&str]) -> Value {
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

/// oha POSTing the lines of `bodies` (a JSON body each, drawn at random)
/// to `url`, with `extra` arguments.
pub(crate) fn post_bodies(url: &str, bodies: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "-m",
        "POST",
        "-H",
        "content-type: application/json",
        "-Z",
        bodies.to_str().expect("a UTF-8 temp path"),
    ];
    args.extend_from_slice(extra);
    args.push(url);
    oha(&args)
}

/// oha's arguments for a fixed-rate run: `rate` requests a second over
/// `connections` for `duration`, open loop, each timed from when it was due
/// (corrected for coordinated omission).
pub(crate) fn at_fixed_rate<'a>(
    duration: &'a str,
    connections: &'a str,
    rate: &'a str,
) -> [&'a str; 7] {
    [
        "-z",
        duration,
        "-c",
        connections,
        "-q",
        rate,
        "--latency-correction",
    ]
}

/// A number from the environment variable `name`, or `default` when it is
/// unset or not a number.
pub(crate) fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) const LOAD_GENERATOR_CPU: &str = "tripgate_bench_load_generator_cpu_seconds";

/// CPU seconds of every child process waited for so far (oha runs are
/// waited for; the servers are not until the end).
pub(crate) fn children_cpu_seconds() -> f64 {
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
pub(crate) fn requests(result: &Value) -> f64 {
    result["statusCodeDistribution"]
        .as_object()
        .map_or(0, |dist| {
            dist.values().filter_map(Value::as_u64).sum::<u64>()
        }) as f64
}

/// The load generator's CPU per request over `runs`, in µs.
pub(crate) fn load_generator_us<'a>(runs: impl IntoIterator<Item = &'a Value>) -> f64 {
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
pub(crate) const PEAK_CONNECTIONS: [&str; 2] = ["64", "256"];

pub(crate) const CONNECTIONS: &str = "tripgate_bench_connections";

pub(crate) fn with_connections(mut report: Value, connections: &str) -> Value {
    report[CONNECTIONS] = json!(connections);
    report
}

pub(crate) fn connections(result: &Value) -> &str {
    result[CONNECTIONS].as_str().unwrap_or("?")
}

/// The run with the highest throughput.
pub(crate) fn best_of(runs: Vec<Value>) -> Value {
    runs.into_iter()
        .max_by(|a, b| rps(a).total_cmp(&rps(b)))
        .unwrap_or(Value::Null)
}

/// Runs a measurement `repeats` times (this machine's disk and neighbours
/// make single runs noisy): the median run by `key`, and every run's key.
pub(crate) fn median_of(
    repeats: usize,
    key: fn(&Value) -> f64,
    mut measure: impl FnMut() -> Value,
) -> (Value, Vec<f64>) {
    median_of_runs((0..repeats.max(1)).map(|_| measure()).collect(), key)
}

/// `median_of` for runs already made.
pub(crate) fn median_of_runs(mut runs: Vec<Value>, key: fn(&Value) -> f64) -> (Value, Vec<f64>) {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let keys = runs.iter().map(key).collect();
    let middle = runs.len() / 2;
    (runs.swap_remove(middle), keys)
}

/// The middle value of `values` once sorted (the upper one of an even
/// count); NaN when there is none.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) fn spread(keys: &[f64], digits: usize) -> String {
    let all: Vec<String> = keys.iter().map(|k| format!("{k:.digits$}")).collect();
    format!("runs: {}", all.join(", "))
}

pub(crate) fn p99_ms(result: &Value) -> f64 {
    percentile_ms(result, "p99")
}

pub(crate) fn rps(result: &Value) -> f64 {
    result["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0)
}

pub(crate) fn ok_share(result: &Value) -> f64 {
    let ok = result["statusCodeDistribution"]["200"]
        .as_u64()
        .unwrap_or(0);
    ok as f64 / requests(result).max(1.0)
}

pub(crate) fn percentile_ms(result: &Value, p: &str) -> f64 {
    result["latencyPercentiles"][p].as_f64().unwrap_or(f64::NAN) * 1000.0
}
