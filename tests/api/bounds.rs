//! Bounds: nothing a caller or an upstream sends grows tripgate's work or
//! memory without limit, and reaching a bound never buys an allow.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tripgate::config::{Environment, Role, Settings};
use tripgate::startup::Application;

use crate::helpers::{
    auth_client as client, codes, config_dir, lenient_policy, trip_in, Options, TestApp,
};

fn lenient(customise: impl FnOnce(&mut Settings) + 'static) -> Options {
    Options {
        policy: Some(lenient_policy()),
        customise: Box::new(customise),
        ..Default::default()
    }
}

#[tokio::test]
async fn past_the_bound_on_upstream_calls_a_status_is_unavailable_and_never_waived() {
    let app = TestApp::spawn_with(lenient(|s| s.provider.max_concurrent_calls = 1)).await;
    for id in ["D-1", "P-1", "D-2", "P-2"] {
        app.set_code(id, "green", "hangzhou").await;
    }
    app.set_faults(json!({"latency_ms": 600})).await;

    // The one call allowed is out...
    let first = {
        let (http, url) = (app.http.clone(), app.url("/v1/checks/trip"));
        tokio::spawn(async move {
            let response = http
                .post(url)
                .json(&trip_in("lenient", "D-1", &["P-1"]))
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    // ...so another check's subjects cannot be asked: not waived.
    let second = app.decide(&trip_in("lenient", "D-2", &["P-2"])).await;
    assert_eq!(second["decision"], "reject", "{second}");
    assert_eq!(second["degraded"], false);
    assert_eq!(
        codes(&second),
        vec!["STATUS_UNAVAILABLE", "STATUS_UNAVAILABLE"]
    );
    assert_eq!(first.await.unwrap()["decision"], "allow");

    let (_, metrics) = app.get_admin("/metrics").await;
    let overloaded = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "tripgate_provider_requests_total{outcome=\"overloaded\",upstream=\"provider\"} ",
            )
        })
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(overloaded >= 1, "the overload is counted:\n{metrics}");
}

/// A provider that answers 200 and then streams JSON whitespace for ever
/// (until the client hangs up, or 64 MiB). Returns its URL and a counter of
/// the bytes it managed to send.
async fn endless_provider() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let sent = counter.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("1000\r\n{}\r\n", " ".repeat(4096));
                while sent.load(std::sync::atomic::Ordering::Relaxed) < 64 << 20 {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    sent.fetch_add(4096, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (url, sent)
}

#[tokio::test]
async fn an_endless_upstream_answer_is_cut_at_the_size_bound() {
    let (url, sent) = endless_provider().await;
    let app = TestApp::spawn_with(lenient(move |s| {
        s.provider.base_url = url;
        s.provider.max_answer_bytes = 64 * 1024;
        s.provider.timeout_ms = 30_000;
        s.checks.deadline_ms = 5_000;
    }))
    .await;

    let started = Instant::now();
    let body = app.decide(&trip_in("lenient", "D-1", &["P-1"])).await;
    assert_eq!(
        body["decision"], "reject",
        "an unusable answer is not waived: {body}"
    );
    assert_eq!(
        codes(&body),
        vec!["STATUS_UNAVAILABLE", "STATUS_UNAVAILABLE"]
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut at the bound, not at the deadline: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        read < 16 << 20,
        "tripgate kept reading {read} bytes of an answer bounded at 64 KiB"
    );
}

#[tokio::test]
async fn a_record_larger_than_the_audit_queue_bound_is_still_recorded() {
    let app = TestApp::spawn_with(Options {
        customise: Box::new(|s| s.audit.queue_max_bytes = 1024),
        ..Default::default()
    })
    .await;
    app.set_code("P-1", "green", "hangzhou").await;
    let mut drivers = Vec::new();
    for i in 0..100 {
        let id = format!("C-{i}");
        app.set_code(&id, "green", "hangzhou").await;
        drivers.push(json!({"id": id}));
    }
    let filter = json!({"city": "hangzhou", "trip_id": "T-big", "passengers": [{"id": "P-1"}], "drivers": drivers});
    for _ in 0..3 {
        let (status, body) = app.post_json("/v1/checks/candidates", &filter).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["decision"], "allow");
    }
    let (_, page) = app.get_json("/v1/audit/decisions?trip_id=T-big").await;
    assert_eq!(page["decisions"].as_array().unwrap().len(), 3, "{page}");
}

#[tokio::test]
async fn regulators_get_a_lower_rate_than_dispatch_by_default() {
    let app = TestApp::spawn_with(Options {
        customise: Box::new(|s| {
            s.auth.enabled = true;
            s.auth.clients = vec![
                client("dispatch-1", Role::Dispatch, "bounds-dispatch-token"),
                client("regulator-1", Role::Regulator, "bounds-regulator-token"),
            ];
        }),
        ..Default::default()
    })
    .await;
    // 120 at once: past the burst of 50, whatever the machine's speed.
    let queries = (0..120).map(|_| {
        app.http
            .get(app.url("/v1/audit/decisions"))
            .bearer_auth("bounds-regulator-token")
            .send()
    });
    let mut limited = 0;
    for response in futures_util::future::join_all(queries).await {
        let response = response.unwrap();
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            limited += 1;
        }
    }
    assert!(limited > 0, "120 regulator queries at once were all served");
    for _ in 0..80 {
        let response = app
            .http
            .post(app.url("/v1/checks/trip"))
            .bearer_auth("bounds-dispatch-token")
            .json(&trip_in("hangzhou", "D-1", &["P-1"]))
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), 429, "dispatch keeps its own budget");
    }
}

#[tokio::test]
async fn a_rate_that_is_not_positive_stops_start_up_naming_the_key() {
    let base = || Settings::load_from(&config_dir(), Environment::Local).unwrap();

    let mut settings = base();
    let mut broken = client("fleet-7", Role::Dispatch, "bounds-zero-token");
    broken.rate_per_sec = Some(0.0);
    settings.auth.clients = vec![broken];
    let error = Application::build(settings).await.err().expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("auth.clients") && message.contains("fleet-7"),
        "{message}"
    );

    let mut settings = base();
    settings.auth.role_limits.insert(
        Role::Regulator,
        tripgate::config::RateLimit {
            rate_per_sec: -1.0,
            burst: 5.0,
        },
    );
    let error = Application::build(settings).await.err().expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("auth.role_limits") && message.contains("regulator"),
        "{message}"
    );
}

/// The heap is kept in 4 KiB pages: with transparent huge pages the
/// kernel fills 2 MiB pages around a heap left sparse after frees, and
/// resident memory grows with nothing live in it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_service_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "TRIPGATE__AUDIT__SQLITE_PATH",
        dir.path().join("a.sqlite3").display().to_string(),
    )];
    let service = crate::helpers::ServiceProcess::start(&env, dir.path().join("log")).await;
    let status_path = format!("/proc/{}/status", service.child.id());
    let status = std::fs::read_to_string(&status_path).unwrap();
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    assert_eq!(
        thp,
        Some("0"),
        "tripgate serve runs with transparent huge pages enabled (THP_enabled in {status_path})"
    );
}
