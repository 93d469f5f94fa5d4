//! The status path under load and faults: coalescing, deadlines, the
//! circuit breaker, stale copies, pushed changes across replicas.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};

use crate::helpers::{codes, trip, Options, TestApp, EVENTS_SECRET};

fn with(customise: impl FnOnce(&mut tripgate::config::Settings) + 'static) -> Options {
    Options {
        customise: Box::new(customise),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_on_one_uncached_subject_make_one_provider_call() {
    let app = TestApp::spawn().await;
    app.set_code("D-hot", "green", "hangzhou").await;
    app.set_code("P-hot", "green", "hangzhou").await;
    app.set_faults(json!({"latency_ms": 200})).await;
    let before = app.provider_requests().await;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(600)
        .build()
        .unwrap();
    let checks = (0..500).map(|_| {
        let (http, url) = (http.clone(), app.url("/v1/checks/trip"));
        tokio::spawn(async move {
            let response = http
                .post(url)
                .json(&trip("D-hot", &["P-hot"]))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        })
    });
    let answers = futures_util::future::join_all(checks).await;

    for answer in answers {
        assert_eq!(answer.unwrap()["decision"], "allow");
    }
    assert_eq!(
        app.provider_requests().await,
        before + 1,
        "500 checks, one provider call"
    );
}

/// The provider answers after 10 s and its call timeout is longer than that,
/// so only the deadline (configured: 2 s) can end the wait. Each
/// answer must come once its own deadline has passed and long before the
/// next candidate bound: the margins are whole seconds, because the answer
/// also waits for the durable audit commit and a debug build on a busy
/// machine adds its own delays (a 100 ms margin flaked in CI).
#[tokio::test]
async fn a_slow_provider_never_holds_a_check_past_its_deadline() {
    let app = TestApp::spawn_with(with(|s| {
        s.checks.deadline_ms = 2_000;
        s.provider.timeout_ms = 20_000;
    }))
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_faults(json!({"latency_ms": 10_000})).await;

    // (header, the deadline that applies, an answer later than this is wrong)
    let cases = [
        (None, 2_000, 3_500),         // the configured deadline, not the provider's 10 s
        (Some("200"), 200, 1_500),    // a caller may ask for less
        (Some("5000"), 2_000, 3_500), // but never for more than the configured deadline
    ];
    for (header, deadline, too_late) in cases {
        let started = Instant::now();
        let mut request = app
            .http
            .post(app.url("/v1/checks/trip"))
            .json(&trip("D-1", &["P-1"]));
        if let Some(ms) = header {
            request = request.header("X-Tripgate-Deadline-Ms", ms);
        }
        let response = request.send().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            codes(&body),
            vec!["STATUS_UNAVAILABLE", "STATUS_UNAVAILABLE"]
        );
        assert!(
            elapsed >= Duration::from_millis(deadline),
            "header {header:?}: the deadline is {deadline} ms, answered early after {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_millis(too_late),
            "header {header:?}: the deadline is {deadline} ms, answered after {elapsed:?}"
        );
    }

    let response = app
        .http
        .post(app.url("/v1/checks/trip"))
        .header("X-Tripgate-Deadline-Ms", "soon")
        .json(&trip("D-1", &["P-1"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INVALID_HEADER");
}

#[tokio::test]
async fn the_circuit_breaker_stops_calls_to_a_failing_provider_and_closes_after() {
    let app = TestApp::spawn_with(with(|s| s.provider.breaker_open_ms = 400)).await;
    app.set_faults(json!({"outage": true})).await;

    let mut n = 0;
    let mut next_trip = || {
        n += 1;
        trip(&format!("D-{n}"), &[&format!("P-{n}")])
    };
    for _ in 0..10 {
        let body = app.decide(&next_trip()).await;
        assert_eq!(body["decision"], "reject");
    }
    let (_, ready) = app.get_admin_json("/readyz").await;
    assert_eq!(ready["provider_circuit"], "open", "{ready}");
    assert_eq!(ready["status"], "degraded");

    let calls = app.provider_requests().await;
    for _ in 0..10 {
        let body = app.decide(&next_trip()).await;
        assert_eq!(
            codes(&body),
            vec!["STATUS_UNAVAILABLE", "STATUS_UNAVAILABLE"]
        );
    }
    assert_eq!(
        app.provider_requests().await,
        calls,
        "an open circuit sends no calls"
    );

    app.set_faults(json!({})).await;
    app.set_code("D-back", "green", "hangzhou").await;
    app.set_code("P-back", "green", "hangzhou").await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let body = app.decide(&trip("D-back", &["P-back"])).await;
    assert_eq!(
        body["decision"], "allow",
        "the half-open probe succeeds: {body}"
    );
    let (status, ready) = app.get_admin_json("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["provider_circuit"], "closed");
    assert_eq!(ready["status"], "ready");
    // Every change was counted, per upstream.
    let (_, metrics) = app.get_admin("/metrics").await;
    for to in ["open", "half_open", "closed"] {
        let series =
            format!(r#"tripgate_breaker_transitions_total{{to="{to}",upstream="provider"}} 1"#);
        assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }
}

#[tokio::test]
async fn a_stale_copy_serves_only_while_the_provider_fails_and_only_up_to_max_stale() {
    let app = TestApp::spawn_with(with(|s| {
        s.cache.ttl_secs = 1;
        s.cache.max_stale_secs = 2;
        s.cache.l1_ttl_ms = 1;
    }))
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-1"])).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Past its TTL and the provider is fine: the provider is asked.
    app.set_code("P-1", "red", "hangzhou").await;
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["parties"][1]["source"], "upstream");
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"]);

    // Past its TTL and the provider is down: the stale copy serves.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.set_faults(json!({"outage": true})).await;
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["parties"][0]["source"], "stale", "{body}");
    assert_eq!(body["parties"][1]["source"], "stale");
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"]);
    assert!(body["parties"][0]["age_seconds"].as_i64().is_some());

    // Beyond max_stale nothing is left: unavailable.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(
        codes(&body),
        vec!["STATUS_UNAVAILABLE", "STATUS_UNAVAILABLE"]
    );
}

fn record(subject: &str, color: &str, updated_at: chrono::DateTime<Utc>) -> Value {
    json!({"subject_id": subject, "color": color, "issuer": "hangzhou", "updated_at": updated_at})
}

#[tokio::test]
async fn pushed_events_are_verified_and_applied_in_updated_at_order() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["decision"], "allow");
    let now = Utc::now();

    let red = record("P-1", "red", now);
    let response = app.push_event(&red, EVENTS_SECRET, now.timestamp()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["applied"], true);
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(
        codes(&body),
        vec!["HEALTH_CODE_RED"],
        "the push replaced the cached green"
    );

    // An older event arriving late never overwrites the newer status.
    let older = record("P-1", "green", now - TimeDelta::minutes(5));
    let response = app.push_event(&older, EVENTS_SECRET, now.timestamp()).await;
    assert_eq!(response.json::<Value>().await.unwrap()["applied"], false);
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"]);

    // Timestamps relative to the moment each event is sent, 10 s beyond the
    // allowed skew of 300 s: with `now` from the start of the test, a slow
    // run (CI, debug build) brought "now + 301" within the skew.
    for (name, secret, offset_secs, code) in [
        (
            "wrong secret",
            "not-the-shared-secret-at-all",
            0,
            "INVALID_SIGNATURE",
        ),
        ("replayed", EVENTS_SECRET, -310, "STALE_TIMESTAMP"),
        ("from the future", EVENTS_SECRET, 310, "STALE_TIMESTAMP"),
    ] {
        let response = app
            .push_event(
                &record("P-1", "green", now + TimeDelta::seconds(1)),
                secret,
                Utc::now().timestamp() + offset_secs,
            )
            .await;
        assert_eq!(response.status(), 401, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{name}");
    }
    let unsigned = app
        .http
        .post(app.url("/v1/status-events"))
        .json(&red)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    // A body that was signed but altered fails the signature.
    let body = serde_json::to_vec(&red).unwrap();
    let timestamp = now.timestamp().to_string();
    let signature = tripgate::provider_api::sign_event(EVENTS_SECRET.as_bytes(), &timestamp, &body);
    let tampered =
        serde_json::to_vec(&record("P-1", "green", now + TimeDelta::seconds(9))).unwrap();
    let response = app
        .http
        .post(app.url("/v1/status-events"))
        .header("X-Tripgate-Timestamp", timestamp)
        .header("X-Tripgate-Signature", signature)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // Signed garbage is a 400.
    let garbage = b"{\"subject_id\": \"P 1\"}".to_vec();
    let timestamp = now.timestamp().to_string();
    let signature =
        tripgate::provider_api::sign_event(EVENTS_SECRET.as_bytes(), &timestamp, &garbage);
    let response = app
        .http
        .post(app.url("/v1/status-events"))
        .header("X-Tripgate-Timestamp", timestamp)
        .header("X-Tripgate-Signature", signature)
        .body(garbage)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "INVALID_EVENT"
    );
}

#[tokio::test]
async fn a_pushed_deletion_leaves_the_subject_without_a_code_and_a_bad_one_is_named() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    assert_eq!(
        app.decide(&trip("D-1", &["P-1"])).await["decision"],
        "allow"
    );
    let now = Utc::now();
    let deleted = json!({"subject_id": "P-1", "deleted_at": now});
    let response = app
        .push_event(&deleted, EVENTS_SECRET, now.timestamp())
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["outcome"],
        "written"
    );
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(codes(&body), vec!["NO_HEALTH_CODE"], "{body}");
    // An older code pushed late does not undo the deletion.
    let late = json!({"subject_id": "P-1", "color": "green", "issuer": "hangzhou",
        "color_since": now - TimeDelta::days(3), "renewed_at": now - TimeDelta::seconds(5)});
    let response = app
        .push_event(&late, EVENTS_SECRET, now.timestamp() + 1)
        .await;
    assert_eq!(response.json::<Value>().await.unwrap()["outcome"], "kept");
    // A deletion missing its subject says so.
    let response = app
        .push_event(
            &json!({"deleted_at": now}),
            EVENTS_SECRET,
            now.timestamp() + 2,
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deletion: missing field `subject_id`"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_red_code_pushed_to_one_replica_is_honoured_by_another_within_a_second() {
    let first = TestApp::spawn().await;
    let redis_url = first.redis.as_ref().unwrap().url();
    let provider = first.simulator_url.clone();
    // A long L1 lifetime on the second replica: only the pushed
    // invalidation can make it see the change (with the default 2 s, a slow
    // run could pass by L1 expiry).
    let second = TestApp::spawn_with(with(move |s| {
        s.cache.redis_url = redis_url;
        s.provider.base_url = provider;
        s.cache.l1_ttl_ms = 60_000;
    }))
    .await;
    first.set_code("D-1", "green", "hangzhou").await;
    first.set_code("P-1", "green", "hangzhou").await;
    // Both replicas now hold the green status in their L1.
    first.decide(&trip("D-1", &["P-1"])).await;
    let body = second.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["parties"][1]["source"], "redis");
    let body = second.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["parties"][1]["source"], "l1");

    let now = Utc::now();
    let response = first
        .push_event(&record("P-1", "red", now), EVENTS_SECRET, now.timestamp())
        .await;
    assert_eq!(response.status(), 200);
    let pushed = Instant::now();

    loop {
        let body = second.decide(&trip("D-1", &["P-1"])).await;
        if codes(&body) == vec!["HEALTH_CODE_RED"] {
            break;
        }
        assert!(
            pushed.elapsed() < Duration::from_secs(1),
            "the other replica still allows: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_simulator_pushes_code_changes_to_tripgate() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .put(format!("{}/admin/webhook", app.simulator_url))
        .json(&json!({"url": app.url("/v1/status-events"), "secret": EVENTS_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    assert_eq!(
        app.decide(&trip("D-1", &["P-1"])).await["decision"],
        "allow"
    );

    app.set_code("D-1", "red", "hangzhou").await;
    let started = Instant::now();
    while app.simulator_stats().await["pushes_delivered"]
        .as_u64()
        .unwrap()
        < 3
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "pushes were not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"], "{body}");
}
