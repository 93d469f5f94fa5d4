//! What operators and security reviewers check: authentication and roles,
//! rate limits, metrics, probes, graceful shutdown, logs, start-up refusals.

use std::time::Duration;

use serde_json::Value;
use tripgate::config::{sha256, Role};

use crate::helpers::{auth_client as client, trip, Options, TestApp};

const DISPATCH: &str = "test-dispatch-token-1";
const REGULATOR: &str = "test-regulator-token-1";
const PROVIDER: &str = "test-provider-token-1";
const OPS: &str = "test-ops-token-1";

async fn secured(dispatch_rate: Option<(f64, f64)>) -> TestApp {
    TestApp::spawn_with(Options {
        customise: Box::new(move |s| {
            s.auth.enabled = true;
            let mut dispatch = client("dispatch-1", Role::Dispatch, DISPATCH);
            if let Some((rate, burst)) = dispatch_rate {
                dispatch.rate_per_sec = Some(rate);
                dispatch.burst = Some(burst);
            }
            s.auth.clients = vec![
                dispatch,
                client("regulator-1", Role::Regulator, REGULATOR),
                client("provider-1", Role::Provider, PROVIDER),
                client("prometheus", Role::Ops, OPS),
            ];
        }),
        ..Default::default()
    })
    .await
}

async fn call(
    app: &TestApp,
    method: &str,
    url: String,
    token: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = match method {
        "POST" => app.http.post(url).json(&trip("D-1", &["P-1"])),
        _ => app.http.get(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

#[tokio::test]
async fn every_api_call_needs_a_token_of_the_right_role() {
    let app = secured(None).await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    let checks = || app.url("/v1/checks/trip");
    let audit = || app.url("/v1/audit/decisions");
    let events = || app.url("/v1/status-events");

    let (status, body, headers) = call(&app, "POST", checks(), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) = call(&app, "POST", checks(), Some("not-a-known-token")).await;
    assert_eq!(status, 401);

    let (status, body, _) = call(&app, "POST", checks(), Some(DISPATCH)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow");

    for (method, url, token) in [
        ("POST", checks(), REGULATOR),
        ("POST", checks(), PROVIDER),
        ("GET", audit(), DISPATCH),
        ("GET", audit(), PROVIDER),
        ("POST", events(), DISPATCH),
        ("POST", checks(), OPS),
    ] {
        let (status, body, _) = call(&app, method, url.clone(), Some(token)).await;
        assert_eq!(status, 403, "{method} {url} with {token}: {body}");
        assert_eq!(body["error"]["code"], "FORBIDDEN");
    }

    let (status, body, _) = call(&app, "GET", audit(), Some(REGULATOR)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decisions"].as_array().unwrap().len(), 1);

    // The provider passes authentication and still needs a signature.
    let (status, body, _) = call(&app, "POST", events(), Some(PROVIDER)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("INVALID_SIGNATURE"))
    );

    // Probes are open to the kubelet; metrics need the ops role.
    assert_eq!(app.get_admin("/healthz").await.0, 200);
    assert_eq!(app.get_admin("/readyz").await.0, 200);
    assert_eq!(app.get_admin("/metrics").await.0, 401);
    let metrics = app
        .http
        .get(format!("http://{}/metrics", app.admin_address))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("tripgate_auth_rejections_total{reason=\"forbidden\"} 6"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let app = secured(Some((1.0, 3.0))).await;
    for _ in 0..3 {
        let (status, _, _) = call(&app, "POST", app.url("/v1/checks/trip"), Some(DISPATCH)).await;
        assert_eq!(status, 200);
    }
    let (status, body, headers) =
        call(&app, "POST", app.url("/v1/checks/trip"), Some(DISPATCH)).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    assert_eq!(headers["retry-after"], "1");
    // Other clients have their own buckets.
    let (status, _, _) = call(&app, "GET", app.url("/v1/audit/decisions"), Some(REGULATOR)).await;
    assert_eq!(status, 200);
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn metrics_describe_decisions_lookups_provider_and_audit() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_code("P-2", "red", "hangzhou").await;
    app.decide(&trip("D-1", &["P-1"])).await;
    app.decide(&trip("D-1", &["P-1"])).await;
    app.decide(&trip("D-1", &["P-2"])).await;

    let (status, text) = app.get_admin("/metrics").await;
    assert_eq!(status, 200);
    let allow = r#"tripgate_decisions_total{decision="allow",hook="trip",reason="ALL_GREEN"}"#;
    let red = r#"tripgate_decisions_total{decision="reject",hook="trip",reason="HEALTH_CODE_RED"}"#;
    assert_eq!(metric(&text, allow), 2.0);
    assert_eq!(metric(&text, red), 1.0);
    assert_eq!(
        metric(
            &text,
            r#"tripgate_decision_duration_seconds_count{hook="trip"}"#
        ),
        3.0
    );
    assert!(text.contains(r#"tripgate_decision_duration_seconds_bucket{hook="trip",le="0.0001"}"#));
    assert_eq!(
        metric(&text, r#"tripgate_status_lookups_total{source="upstream"}"#),
        3.0
    );
    assert_eq!(
        metric(&text, r#"tripgate_status_lookups_total{source="l1"}"#),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            r#"tripgate_provider_requests_total{outcome="ok",upstream="provider"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"tripgate_provider_circuit_state{state="closed",upstream="provider"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "tripgate_audit_commit_duration_seconds_count"),
        3.0
    );
    assert_eq!(metric(&text, "tripgate_audit_batch_size_sum"), 3.0);
    assert_eq!(metric(&text, "tripgate_audit_backlog"), 0.0);
    // The SQLite trail's connections hold page caches and statements, by
    // SQLite's own count.
    assert!(
        metric(&text, "tripgate_sqlite_memory_bytes") > 0.0,
        "no SQLite memory reported"
    );
    assert_eq!(
        metric(&text, r#"tripgate_policy_info{version="2026-11-26.1"}"#),
        1.0
    );

    // Redis errors are counted (reads while Redis is down).
    let mut app = app;
    app.redis.as_mut().unwrap().stop();
    app.set_code("P-3", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-3"])).await;
    let (_, text) = app.get_admin("/metrics").await;
    assert!(metric(&text, r#"tripgate_redis_errors_total{operation="read"}"#) >= 1.0);
    let (status, ready) = app.get_admin_json("/readyz").await;
    assert_eq!(status, 200, "Redis down must not fail readiness");
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["cache"]["up"], false);
}

/// When decisions are slow, the stage histogram says whether the status
/// lookups or the audit commit took the time.
#[tokio::test]
async fn the_stage_histogram_puts_a_slow_provider_in_the_status_stage() {
    let app = TestApp::spawn().await;
    app.set_code("D-slow", "green", "hangzhou").await;
    app.set_code("P-slow", "green", "hangzhou").await;
    app.set_faults(serde_json::json!({"latency_ms": 300})).await;
    let body = app.decide(&trip("D-slow", &["P-slow"])).await;
    assert_eq!(body["decision"], "allow", "{body}");

    let (_, text) = app.get_admin("/metrics").await;
    let stage = |stage: &str, part: &str| {
        metric(
            &text,
            &format!(r#"tripgate_decision_stage_seconds_{part}{{stage="{stage}"}}"#),
        )
    };
    assert_eq!(stage("status", "count"), 1.0);
    assert_eq!(stage("audit", "count"), 1.0);
    assert_eq!(stage("resume", "count"), 1.0);
    assert!(
        stage("resume", "sum") <= stage("audit", "sum"),
        "resuming is part of the audit wait"
    );
    assert!(
        stage("status", "sum") >= 0.3,
        "the provider's 300 ms are status time: {}",
        stage("status", "sum")
    );
    assert!(
        stage("audit", "sum") < 0.3,
        "and not audit time: {}",
        stage("audit", "sum")
    );
}

#[tokio::test]
async fn a_client_that_sends_its_request_head_too_slowly_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Options {
        customise: Box::new(|s| s.server.client_request_timeout_ms = 300),
        ..Default::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream
        .write_all(b"POST /v1/checks/trip HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    assert!(
        read.is_ok(),
        "the server kept a slow client's connection open"
    );
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
}

#[tokio::test]
async fn local_start_up_warns_loudly_that_authentication_is_off() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tripgate"))
        .args(["policy", "check", "config/policy.toml"])
        .output()
        .unwrap();
    assert!(output.status.success());
    // `serve` with a port already taken fails after the warning is printed.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tripgate"))
        .arg("serve")
        .env("TRIPGATE_CONFIG_DIR", crate::helpers::config_dir())
        .env(
            "TRIPGATE__SERVER__LISTEN",
            taken.local_addr().unwrap().to_string(),
        )
        .env("TRIPGATE__AUDIT__SQLITE_PATH", dir.path().join("a.sqlite3"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AUTHENTICATION IS DISABLED"), "{stderr}");
    assert!(
        stderr.contains("server.listen: cannot listen on"),
        "{stderr}"
    );
}

/// `tripgate serve` gives SQLite's page caches a pool of their own before
/// anything opens a file, and reports it; SQLite's count takes the pool's
/// pages in use. (A test's in-process app has no pool: `main` reserves it.)
#[tokio::test]
async fn serve_reserves_a_page_pool_for_sqlite_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", crate::helpers::free_port());
    // Killed when dropped, also when an assertion fails.
    let _service = crate::helpers::ServiceProcess::start(
        &[
            ("TRIPGATE__SERVER__ADMIN_LISTEN", admin.clone()),
            (
                "TRIPGATE__AUDIT__SQLITE_PATH",
                dir.path().join("a.sqlite3").display().to_string(),
            ),
        ],
        dir.path().join("serve.log"),
    )
    .await;
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Every cache the store keeps: 16 MiB (writer) + 16 MiB (lookup
    // index) + 5 x 2 MiB (read connections), in 4 KiB pages with SQLite's
    // header on each.
    let pool = metric(&text, "tripgate_sqlite_page_pool_bytes");
    assert!(
        pool >= (42u64 << 20) as f64 && pool < (48u64 << 20) as f64,
        "page pool of {pool} bytes"
    );
    assert!(metric(&text, "tripgate_sqlite_memory_bytes") > 0.0);

    let mut app = TestApp::spawn().await;
    let (_, text) = app.get_admin("/metrics").await;
    assert_eq!(metric(&text, "tripgate_sqlite_page_pool_bytes"), 0.0);
    app.stop().await;
}

/// A production configuration directory whose secrets live in files in
/// `dir`; `tweak` edits the secrets before they are written.
fn production_config(dir: &std::path::Path, tweak: impl Fn(&mut Vec<(&'static str, String)>)) {
    let mut secrets = vec![
        (
            "dispatch-token-sha256",
            tripgate::hexcode::encode(&sha256(b"vault-dispatch-9f3a")),
        ),
        (
            "regulator-token-sha256",
            tripgate::hexcode::encode(&sha256(b"vault-regulator-77b1")),
        ),
        (
            "provider-token-sha256",
            tripgate::hexcode::encode(&sha256(b"vault-provider-0c2d")),
        ),
        (
            "ops-token-sha256",
            tripgate::hexcode::encode(&sha256(b"vault-ops-5e8e")),
        ),
        (
            "audit-key-k1",
            "a-real-audit-key-from-the-vault-31c9".to_owned(),
        ),
        (
            "events-secret",
            "a-real-events-secret-from-the-vault-77aa".to_owned(),
        ),
        (
            "cache-pseudonym-secret",
            "a-real-cache-secret-from-the-vault-12fe".to_owned(),
        ),
        (
            "audit-signing-key",
            "Vq0n6tW3yP9iW2m0Qb5x8cJ1rT4uE7kL2sD6fG9hA3M=".to_owned(),
        ),
        ("redis-ca.pem", test_ca_pem()),
        ("redis-password", "a-real-redis-password-9d1e".to_owned()),
        ("postgres-ca.pem", test_ca_pem()),
        (
            "postgres-password",
            "a-real-postgres-password-4b7c".to_owned(),
        ),
    ];
    tweak(&mut secrets);
    let secret_dir = dir.join("secrets");
    std::fs::create_dir_all(&secret_dir).unwrap();
    for (name, value) in &secrets {
        std::fs::write(secret_dir.join(name), format!("{value}\n")).unwrap();
    }
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    for file in ["base.toml", "policy.toml", "messages.toml"] {
        std::fs::copy(crate::helpers::config_dir().join(file), config.join(file)).unwrap();
    }
    let production = std::fs::read_to_string(crate::helpers::config_dir().join("production.toml"))
        .unwrap()
        .replace("/etc/tripgate/secrets", &secret_dir.display().to_string());
    std::fs::write(config.join("production.toml"), production).unwrap();
}

/// A CA certificate, as PEM (the production configuration names CA files).
fn test_ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// Runs `serve` in production for up to 2 s: (still running, stderr).
fn serve_production(dir: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let stderr_path = dir.join("stderr");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tripgate"));
    command
        .arg("serve")
        .env("TRIPGATE_ENV", "production")
        .env("TRIPGATE_CONFIG_DIR", dir.join("config"))
        .env("TRIPGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("TRIPGATE__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
        .env("TRIPGATE__AUDIT__BACKEND", "sqlite")
        .env("TRIPGATE__AUDIT__SQLITE_PATH", dir.join("audit.sqlite3"))
        // One instance: production then takes the SQLite trail.
        .env("TRIPGATE__SERVER__SINGLE_INSTANCE", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let started = std::time::Instant::now();
    let running = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if started.elapsed() > Duration::from_secs(2) {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        running,
        std::fs::read_to_string(stderr_path).unwrap_or_default(),
    )
}

#[test]
fn production_starts_with_real_secrets_and_refuses_unsafe_settings() {
    let dir = tempfile::tempdir().unwrap();
    production_config(dir.path(), |_| {});
    let (running, stderr) = serve_production(dir.path(), &[]);
    assert!(
        running,
        "production with real secrets should start: {stderr}"
    );

    let (running, stderr) =
        serve_production(dir.path(), &[("TRIPGATE__AUDIT__SQLITE_PATH", ":memory:")]);
    assert!(!running);
    assert!(
        stderr.contains("audit.sqlite_path: production refuses an in-memory audit trail"),
        "{stderr}"
    );

    // Redis or PostgreSQL without TLS, unless a mesh encrypts the network.
    let (running, stderr) = serve_production(
        dir.path(),
        &[("TRIPGATE__CACHE__REDIS_URL", "redis://redis:6379")],
    );
    assert!(!running);
    assert!(
        stderr.contains(
            "cache.redis_url: TLS files are configured for Redis but its URL is not rediss://"
        ),
        "{stderr}"
    );
    let (running, stderr) = serve_production(
        dir.path(),
        &[
            ("TRIPGATE__CACHE__REDIS_URL", "redis://redis:6379"),
            ("TRIPGATE__CACHE__REDIS_CA_FILE", ""),
        ],
    );
    assert!(!running);
    assert!(
        stderr.contains("cache.redis_url: production refuses Redis without TLS"),
        "{stderr}"
    );
    let postgres = [
        ("TRIPGATE__AUDIT__BACKEND", "postgres"),
        (
            "TRIPGATE__AUDIT__POSTGRES_URL",
            "postgres://tripgate@postgres:5432/tripgate",
        ),
        ("TRIPGATE__SERVER__SINGLE_INSTANCE", "false"),
    ];
    let (running, stderr) = serve_production(dir.path(), &postgres);
    assert!(!running);
    assert!(
        stderr.contains("audit.postgres_url: production refuses PostgreSQL without TLS"),
        "{stderr}"
    );
    let mut meshed = postgres.to_vec();
    meshed.push(("TRIPGATE__SERVER__ALLOW_PLAINTEXT_BACKENDS", "true"));
    let (_, stderr) = serve_production(dir.path(), &meshed);
    assert!(
        !stderr.contains("production refuses PostgreSQL without TLS"),
        "allow_plaintext_backends lets it try: {stderr}"
    );

    // Single-machine parts with several instances.
    let several = ("TRIPGATE__SERVER__SINGLE_INSTANCE", "false");
    let (running, stderr) = serve_production(dir.path(), &[several]);
    assert!(!running);
    assert!(
        stderr
            .contains("audit.backend: production refuses the SQLite trail with several instances"),
        "{stderr}"
    );
    let (running, stderr) = serve_production(
        dir.path(),
        &[several, ("TRIPGATE__CACHE__BACKEND", "memory")],
    );
    assert!(!running);
    assert!(
        stderr.contains("cache.backend: production refuses the in-process cache"),
        "{stderr}"
    );

    let (running, stderr) = serve_production(dir.path(), &[("TRIPGATE__AUTH__ENABLED", "false")]);
    assert!(!running);
    assert!(
        stderr.contains("auth.enabled: production refuses to run without authentication"),
        "{stderr}"
    );

    let example_key =
        std::fs::read_to_string(crate::helpers::config_dir().join("audit-signing-key.example"))
            .unwrap();
    let example_key = example_key.trim();
    let cases: [(&str, &str, &str); 5] = [
        (
            "audit-signing-key",
            example_key,
            "audit.signing_key_file: production refuses the example signing key",
        ),
        (
            "cache-pseudonym-secret",
            "local-development-cache-pseudonym-secret",
            "cache.pseudonym_secret: production refuses an example secret",
        ),
        (
            "events-secret",
            "local-development-events-secret",
            "events.secret: production refuses an example secret",
        ),
        (
            "audit-key-k1",
            "REPLACE-WITH-A-RANDOM-KEY-0000",
            "audit.keys: key k1: production refuses an example secret",
        ),
        (
            "dispatch-token-sha256",
            "",
            "auth.clients: client dispatch: production refuses an example token",
        ),
    ];
    for (file, value, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        production_config(dir.path(), |secrets| {
            let value = if value.is_empty() {
                tripgate::hexcode::encode(&sha256(b"example-dispatch-token"))
            } else {
                value.to_owned()
            };
            for (name, secret) in secrets.iter_mut() {
                if *name == file {
                    *secret = value.clone();
                }
            }
        });
        let (running, stderr) = serve_production(dir.path(), &[]);
        assert!(!running, "{file}: started with an example secret");
        assert!(stderr.contains(says), "{file}: {stderr}");
    }

    // Missing secret files are named.
    let dir = tempfile::tempdir().unwrap();
    production_config(dir.path(), |_| {});
    std::fs::remove_file(dir.path().join("secrets/events-secret")).unwrap();
    let (running, stderr) = serve_production(dir.path(), &[]);
    assert!(!running);
    assert!(
        stderr.contains("events.secret: cannot read") && stderr.contains("events-secret"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_drains_and_every_answered_decision_is_in_the_trail() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let provider = crate::helpers::spawn_simulator();
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.sqlite3");
    let log = dir.path().join("service.log");
    let env = vec![
        ("TRIPGATE__PROVIDER__BASE_URL", provider),
        (
            "TRIPGATE__AUDIT__SQLITE_PATH",
            audit_path.display().to_string(),
        ),
        ("TRIPGATE__LOG__LEVEL", "debug".to_owned()),
        ("TRIPGATE__LOG__FORMAT", "json".to_owned()),
    ];
    let mut service = crate::helpers::ServiceProcess::start(&env, log.clone()).await;
    let url = service.url("/v1/checks/trip");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for t in 0..16 {
        let (url, stop, answered) = (url.clone(), stop.clone(), answered.clone());
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = trip(
                    &format!("D-{:06}", (t * 31 + n) % 1000),
                    &[&format!("P-{:07}", n % 10000)],
                );
                match http.post(&url).json(&body).send().await {
                    Ok(response) if response.status() == 200 => {
                        let answer: Value = response.json().await.unwrap();
                        answered
                            .lock()
                            .await
                            .push(answer["decision_id"].as_str().unwrap().to_owned());
                    }
                    // Refused connections after shutdown began are expected.
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pid = service.child.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not exit within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    if !status.success() {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = logged.lines().rev().take(30).collect();
        panic!(
            "graceful shutdown exits 0: {status:?}; the service's last log lines, newest first:\n{}",
            tail.join("\n")
        );
    }
    let answered = answered.lock().await.clone();
    assert!(answered.len() > 50, "too little load: {}", answered.len());

    let store = tripgate::audit::AuditStore::open(&crate::helpers::sqlite_store(audit_path))
        .await
        .unwrap();
    for id in &answered {
        assert!(
            store.get(id).await.unwrap().is_some(),
            "answered decision {id} is not in the trail"
        );
    }

    // JSON log lines: every decision line carries the request id and the
    // decision id, and the shutdown is logged.
    let text = std::fs::read_to_string(&log).unwrap();
    let decided: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "check decided")
        .collect();
    assert!(
        decided.len() >= answered.len(),
        "{} decision lines for {} answers",
        decided.len(),
        answered.len()
    );
    for line in &decided {
        assert!(
            line["span"]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{line}"
        );
        assert!(
            line["span"]["decision_id"]
                .as_str()
                .is_some_and(|id| id.len() == 36),
            "{line}"
        );
    }
    assert!(
        text.contains("termination signal: draining in-flight checks"),
        "{text}"
    );
    assert!(text.contains("tripgate stopped"));
    service.kill();
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_swagger_ui_is_served() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in tripgate::routes::ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        tripgate::routes::ROUTES
            .iter()
            .map(|(_, p)| p)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        "the document lists a route tripgate does not serve"
    );
    assert!(doc["components"]["schemas"]["TripCheckBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // Every documented route is really served (no 404).
    for (method, path) in tripgate::routes::ROUTES {
        let concrete = path.replace("{decision_id}", &uuid::Uuid::now_v7().to_string());
        let base = if ["/readyz", "/metrics", "/admin/policy/reload"].contains(path) {
            format!("http://{}", app.admin_address)
        } else {
            format!("http://{}", app.address)
        };
        let request = match *method {
            "post" => app
                .http
                .post(format!("{base}{concrete}"))
                .json(&serde_json::json!({})),
            _ => app.http.get(format!("{base}{concrete}")),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert!(
            !(status == 404 && body.contains("\"code\":\"NOT_FOUND\"")),
            "{method} {path} is documented but not served: {status} {body}"
        );
    }

    let ui = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(
        ui.text().await.unwrap().contains("swagger"),
        "Swagger UI is served from the binary"
    );
}

/// Runs the `tripgate` binary with `args` on the repository's config and
/// `env`; (exit code, stdout and stderr).
fn tripgate(args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tripgate"));
    command
        .args(args)
        .env("TRIPGATE_CONFIG_DIR", crate::helpers::config_dir())
        .env_remove("TRIPGATE_ENV")
        .stdin(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run tripgate");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn healthcheck_exits_0_while_the_service_is_ready_and_1_when_it_is_not() {
    let app = TestApp::spawn().await;
    let admin = app.admin_address.to_string();
    let up = tokio::task::spawn_blocking(move || {
        tripgate(
            &["healthcheck"],
            &[("TRIPGATE__SERVER__ADMIN_LISTEN", admin)],
        )
    })
    .await
    .unwrap();
    assert_eq!(up.0, 0, "{}", up.1);
    assert!(up.1.contains("ready"), "{}", up.1);

    let nobody = format!("127.0.0.1:{}", crate::helpers::free_port());
    let (code, out) = tripgate(
        &["healthcheck"],
        &[("TRIPGATE__SERVER__ADMIN_LISTEN", nobody)],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not ready"), "{out}");
}

#[test]
fn config_check_prints_the_configuration_without_its_secrets_and_names_a_wrong_key() {
    let (code, out) = tripgate(
        &["config", "check"],
        &[(
            "TRIPGATE__AUDIT__POSTGRES_URL",
            "postgres://tripgate:pg-pass-4711@db:5432/tripgate".to_owned(),
        )],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration (local) is valid"), "{out}");
    assert!(out.contains("Secret(<redacted>)"), "{out}");
    for secret in [
        "local-development-events-secret",
        "local-development-cache-pseudonym-secret",
        "local-development-key-not-for-production",
        "pg-pass-4711",
    ] {
        assert!(!out.contains(secret), "config check printed {secret}");
    }

    let (code, out) = tripgate(
        &["config", "check"],
        &[("TRIPGATE__PROVIDER__MAX_ANSWER_BYTES", "0".to_owned())],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("provider.max_answer_bytes"), "{out}");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_upstream_calls_carry_the_trace() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    let shift = serde_json::json!({"city": "hangzhou", "driver": {"id": "D-1"}});
    // A caller's id is kept; a bad one is replaced; none is minted.
    let response = app
        .http
        .post(app.url("/v1/checks/driver-shift"))
        .header("X-Request-Id", "dispatch-req-42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&shift)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "dispatch-req-42");
    let response = app
        .http
        .get(app.url("/healthz"))
        .header("X-Request-Id", "bad id\twith tab")
        .send()
        .await
        .unwrap();
    let minted = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&minted).is_ok(), "{minted}");
    let response = app
        .http
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));

    // The provider saw the trace of the check that asked.
    let seen = app.simulator_stats().await;
    assert_eq!(
        seen["last_traceparent_trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{seen}"
    );

    // HTTP metrics by route pattern, per-upstream metrics, build and process.
    let (_, metrics) = app.get_admin("/metrics").await;
    for series in [
        r#"tripgate_http_requests_total{method="POST",route="/v1/checks/driver-shift",status="200"} 1"#,
        r#"tripgate_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"tripgate_provider_requests_total{outcome="ok",upstream="provider"} 1"#,
        r#"tripgate_provider_circuit_state{state="closed",upstream="national"} 1"#,
        "tripgate_build_info{git_sha=",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }
    assert!(!metrics.contains("D-1"), "a subject id in the metrics");
}
