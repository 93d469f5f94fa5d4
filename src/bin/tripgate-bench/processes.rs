//! Processes the bench starts and reads: ports, children, CPU and
//! memory from /proc, the tripgate service under test.

#[allow(unused_imports)]
use super::*;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// SIGTERM, then wait: the service stops as it would in production
    /// (the audit writer commits what is queued and signs a closed head).
    pub(crate) fn stop_cleanly(&mut self) {
        send_signal(self.0.id(), libc::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Sends `signal` to the process `pid` (a child of the harness).
pub(crate) fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill only asks the kernel to signal a process; no memory of
    // ours is touched.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

pub(crate) fn spawn(name: &'static str, command: &mut Command) -> Process {
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

/// A `redis-server` of the run's own on a free port, without persistence:
/// the process and its port.
pub(crate) fn start_redis() -> (Process, u16) {
    let port = free_port();
    let process = spawn(
        "redis-server",
        Command::new("redis-server").args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
    );
    (process, port)
}

/// The provider simulator (`binary simulate`) with this population, on a
/// free port, answering: the process and its base URL.
pub(crate) fn start_simulator(binary: &Path, drivers: u64, passengers: u64) -> (Process, String) {
    start_simulator_with(binary, drivers, passengers, &[])
}

/// `start_simulator` with `extra` arguments (pushes, transitions).
pub(crate) fn start_simulator_with(
    binary: &Path,
    drivers: u64,
    passengers: u64,
    extra: &[String],
) -> (Process, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let process = spawn(
        "simulator",
        Command::new(binary)
            .args([
                "simulate",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--drivers",
                &drivers.to_string(),
                "--passengers",
                &passengers.to_string(),
                "--workers",
                "1",
            ])
            .args(extra),
    );
    wait_http(&format!("{url}/healthz"));
    (process, url)
}

/// This run's scratch directory, `<temp>/<name>-<pid>`. Directories of
/// earlier runs whose process is gone are removed first: a run ended by a
/// signal (`BENCH_HOLD`, Ctrl-C) cannot clean up after itself, and each
/// leaves hundreds of MB of audit trail behind.
pub(crate) fn work_dir(name: &str) -> PathBuf {
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

pub(crate) fn wait_http(url: &str) {
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

/// CPU seconds (user + system) the process has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_cpu_seconds(&stat))
        .unwrap_or(f64::NAN)
}

/// User + system CPU seconds from a `/proc/.../stat` line (a process's or
/// a thread's). Linux reports them in clock ticks, 100 per second on every
/// platform Rust supports (USER_HZ).
pub(crate) fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// CPU seconds per thread name (threads of one name summed), so a run can
/// say where a decision's CPU goes.
pub(crate) fn thread_cpu_seconds(pid: u32) -> std::collections::BTreeMap<String, f64> {
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
pub(crate) fn settle(service: &Service) {
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
pub(crate) fn trip_decisions(admin: &str) -> f64 {
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

pub(crate) fn rss_mib(pid: u32) -> f64 {
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

pub(crate) struct Service {
    pub(crate) process: Process,
    pub(crate) url: String,
    pub(crate) admin: String,
}

pub(crate) fn start_tripgate(
    binary: &Path,
    dir: &Path,
    redis_port: u16,
    provider: &str,
    durable: bool,
) -> Service {
    let audit = if durable {
        dir.join("audit.sqlite3").display().to_string()
    } else {
        ":memory:".to_owned()
    };
    start_tripgate_with(
        binary,
        redis_port,
        provider,
        &[("TRIPGATE__AUDIT__SQLITE_PATH", audit)],
    )
}

/// `tripgate serve` with the bench's settings and `audit` on top (where
/// the trail goes).
pub(crate) fn start_tripgate_with(
    binary: &Path,
    redis_port: u16,
    provider: &str,
    audit: &[(&str, String)],
) -> Service {
    start_tripgate_on(binary, free_port(), redis_port, provider, audit)
}

/// `start_tripgate_with` on a port chosen beforehand (the simulator's
/// pushes are addressed to it before it starts).
pub(crate) fn start_tripgate_on(
    binary: &Path,
    port: u16,
    redis_port: u16,
    provider: &str,
    audit: &[(&str, String)],
) -> Service {
    let admin_port = free_port();
    let process = spawn(
        "tripgate serve",
        Command::new(binary)
            .arg("serve")
            .envs(audit.iter().map(|(k, v)| (k, v)))
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

/// This process's (rchar, wchar): bytes read and written through system
/// calls, whichever file they went to.
pub(crate) fn process_io() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("rchar:"), field("wchar:"))
}
