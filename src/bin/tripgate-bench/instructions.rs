//! `tripgate-bench instructions [OUT_DIR]`: what a request costs tripgate
//! in instructions, counted by callgrind (`valgrind --tool=callgrind`),
//! which counts the same on a busy machine as on an idle one, so two builds
//! can be compared without the machine's noise.
//!
//! It runs `tripgate serve` under callgrind (Redis cache, SQLite trail, the
//! provider simulator), and for each kind of request, once warm: zeroes
//! the counters, sends `BENCH_INSTRUCTION_REQUESTS` (default 400) of them
//! one after another over one keep-alive connection, dumps the counters
//! and divides. Every thread counts (HTTP workers, the audit writer, the
//! loader and indexer), the kernel does not. Requests go one at a time, so
//! each decision's audit batch holds one record: the per-decision figure
//! is the unbatched worst case, steadier than a loaded one. Kinds:
//! `GET /healthz`; a trip check whose three subjects are in L1 (the same
//! body again); a candidate check of 50 drivers, also from L1.
//! `BENCH_TRIPGATE` runs another build's binary (with
//! `TRIPGATE_CONFIG_DIR` pointing at that build's config/), for a
//! side-by-side comparison. Each kind's dump is kept as
//! `OUT_DIR/callgrind.<kind>.out` for `callgrind_annotate`.

use super::*;

struct Kind {
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    body: Option<Value>,
}

fn trip_body() -> Value {
    json!({"trip_id": "T-1", "city": "hangzhou", "driver": {"id": "D-000001"},
           "passengers": [{"id": "P-0000001"}, {"id": "P-0000002"}]})
}

fn candidates_body() -> Value {
    let drivers: Vec<Value> = (1..=50)
        .map(|i| json!({"id": format!("D-{i:06}")}))
        .collect();
    json!({"trip_id": "T-2", "city": "hangzhou", "passengers": [{"id": "P-0000001"}],
           "drivers": drivers})
}

/// The newest callgrind dump: its path and total instructions.
fn newest_dump(dir: &Path, after: std::time::SystemTime) -> Option<(PathBuf, u64)> {
    let newest = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("callgrind.out"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(modified, _)| *modified >= after)
        .max_by_key(|(modified, _)| *modified)?
        .1;
    let text = std::fs::read_to_string(&newest).ok()?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
    Some((newest, total))
}

fn callgrind_control(args: &[&str]) {
    let status = Command::new("callgrind_control")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("callgrind_control (package valgrind) is needed");
    assert!(status.success(), "callgrind_control {args:?} failed");
}

pub(crate) fn instructions(out_dir: &Path) -> Value {
    let work = work_dir("tripgate-bench-instructions");
    let requests: u64 = std::env::var("BENCH_INSTRUCTION_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let binary = std::env::var_os("BENCH_TRIPGATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().unwrap().with_file_name("tripgate"));
    let this = std::env::current_exe().unwrap().with_file_name("tripgate");
    let (_redis, redis_port) = start_redis();
    let (_simulator, provider) = start_simulator(&this, 1_000, 10_000);
    let (port, admin_port) = (free_port(), free_port());
    eprintln!("starting tripgate under callgrind ({})", binary.display());
    let service = spawn(
        "valgrind tripgate serve",
        Command::new("valgrind")
            .args([
                "--tool=callgrind",
                &format!("--callgrind-out-file={}/callgrind.out", work.display()),
                "--dump-line=no",
                // Each kind's dump names its functions in full, so
                // `callgrind_annotate` reads it alone (compressed names
                // would refer to an earlier dump).
                "--compress-strings=no",
            ])
            .arg(&binary)
            .arg("serve")
            .env("TRIPGATE__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "TRIPGATE__SERVER__ADMIN_LISTEN",
                format!("127.0.0.1:{admin_port}"),
            )
            .env("TRIPGATE__SERVER__WORKERS", "2")
            .env("TRIPGATE__CACHE__BACKEND", "redis")
            .env(
                "TRIPGATE__CACHE__REDIS_URL",
                format!("redis://127.0.0.1:{redis_port}"),
            )
            // Under callgrind a request takes about 50 times as long: keep
            // L1 entries and the deadline long enough for that.
            .env("TRIPGATE__CACHE__L1_TTL_MS", "600000")
            .env("TRIPGATE__CHECKS__DEADLINE_MS", "10000")
            .env("TRIPGATE__PROVIDER__BASE_URL", &provider)
            .env("TRIPGATE__AUDIT__SQLITE_PATH", work.join("audit.sqlite3"))
            .env("TRIPGATE__LOG__LEVEL", "warn")
            .env("TRIPGATE__LOG__FORMAT", "json")
            .env("TRIPGATE__AUTH__RATE_PER_SEC", "1000000")
            .env_remove("RUST_LOG"),
    );
    let pid = service.0.id().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        loop {
            if client
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "tripgate did not start under callgrind"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    eprintln!("up after {:.0} s", started.elapsed().as_secs_f64());
    let kinds = [
        Kind {
            name: "healthz",
            method: reqwest::Method::GET,
            path: "/healthz",
            body: None,
        },
        Kind {
            name: "trip_from_l1",
            method: reqwest::Method::POST,
            path: "/v1/checks/trip",
            body: Some(trip_body()),
        },
        Kind {
            name: "candidates_50_from_l1",
            method: reqwest::Method::POST,
            path: "/v1/checks/candidates",
            body: Some(candidates_body()),
        },
    ];
    let mut figures = serde_json::Map::new();
    for kind in &kinds {
        let send = |n: u64| {
            runtime.block_on(async {
                for _ in 0..n {
                    let mut request =
                        client.request(kind.method.clone(), format!("{base}{}", kind.path));
                    if let Some(body) = &kind.body {
                        request = request.json(body);
                    }
                    let response = request.send().await.expect("a request to tripgate");
                    assert!(
                        response.status().is_success(),
                        "{}: {}",
                        kind.name,
                        response.status()
                    );
                    let _ = response.bytes().await;
                }
            })
        };
        // Warm: the subjects into L1, the connection open, lazy state made.
        send(20);
        std::thread::sleep(Duration::from_millis(500));
        callgrind_control(&["--zero", &pid]);
        let began = std::time::SystemTime::now();
        send(requests);
        callgrind_control(&["--dump", &pid]);
        let (dump, total) = newest_dump(&work, began).expect("a callgrind dump with totals");
        // Kept for `callgrind_annotate OUT_DIR/callgrind.<kind>.out`.
        let _ = std::fs::copy(&dump, out_dir.join(format!("callgrind.{}.out", kind.name)));
        let per_request = total / requests;
        eprintln!(
            "  {:<24} {per_request:>12} instructions per request",
            kind.name
        );
        figures.insert(kind.name.to_owned(), json!(per_request));
    }
    let healthz = figures["healthz"].as_u64().unwrap_or(1).max(1) as f64;
    let trip = figures["trip_from_l1"].as_u64().unwrap_or(0) as f64;
    let results = json!({
        "binary": binary.display().to_string(),
        "requests_per_kind": requests,
        "instructions_per_request": figures,
        "trip_over_healthz": trip / healthz,
    });
    write_results(out_dir, "instructions.json", &results);
    eprintln!(
        "trip check / healthz: {:.2}; written: {}/instructions.json",
        trip / healthz,
        out_dir.display()
    );
    drop(service);
    let _ = std::fs::remove_dir_all(&work);
    results
}
