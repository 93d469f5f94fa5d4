//! Retries make no new decisions: `Idempotency-Key` on every hook, held in
//! Redis across two instances sharing it, bounded in process without it.

use serde_json::{json, Value};

use tripgate::config::CacheBackend;

use crate::helpers::{trip, Options, TestApp, TestRedis};

async fn send(app: &TestApp, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app.http.post(app.url(path)).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

async fn records(app: &TestApp) -> usize {
    let (status, page) = app.get_json("/v1/audit/decisions?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["decisions"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_answer_and_makes_no_second_record() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    let body = trip("D-1", &["P-1"]);
    let first = send(&app, "/v1/checks/trip", Some("retry-1"), &body).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["decision"], "allow");

    // The retry gets the answer that was given (and recorded), not a new
    // decision.
    let again = send(&app, "/v1/checks/trip", Some("retry-1"), &body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(records(&app).await, 1);

    // A body written differently but asking the same is the same request.
    let spaced = serde_json::to_string_pretty(&body).unwrap();
    let response = app
        .http
        .post(app.url("/v1/checks/trip"))
        .header("Idempotency-Key", "retry-1")
        .header("content-type", "application/json")
        .body(spaced)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["idempotent-replayed"], "true");

    // The same key for another request is a client bug: 422.
    let other = send(
        &app,
        "/v1/checks/trip",
        Some("retry-1"),
        &trip("D-1", &["P-2"]),
    )
    .await;
    assert_eq!(other.status(), 422);
    let error: Value = other.json().await.unwrap();
    assert_eq!(error["error"]["code"], "IDEMPOTENCY_KEY_REUSED");

    // A key is per hook; without a key every call decides.
    let shift = json!({"city": "hangzhou", "driver": {"id": "D-1"}});
    let response = send(&app, "/v1/checks/driver-shift", Some("retry-1"), &shift).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("idempotent-replayed").is_none());
    let fresh: Value = send(&app, "/v1/checks/trip", None, &body)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(fresh["decision_id"], first["decision_id"]);
    assert_eq!(records(&app).await, 3);

    // A bad key is a 400 naming the header.
    let bad = send(&app, "/v1/checks/trip", Some(&"k".repeat(256)), &body).await;
    assert_eq!(bad.status(), 400);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["code"], "INVALID_HEADER");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));
}

#[tokio::test]
async fn candidates_are_replayed_with_their_ids_and_redis_never_holds_them() {
    let app = TestApp::spawn().await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_code("13800138000", "green", "hangzhou").await;
    app.set_code("13900139000", "red", "hangzhou").await;
    let body = json!({"trip_id": "T-1", "city": "hangzhou", "passengers": [{"id": "P-1"}],
        "drivers": [{"id": "13900139000"}, {"id": "13800138000"}]});
    let first: Value = send(&app, "/v1/checks/candidates", Some("c-1"), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["eligible_drivers"][0]["id"], "13800138000", "{first}");
    let again = send(&app, "/v1/checks/candidates", Some("c-1"), &body).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let mut redis = app.redis.as_ref().unwrap().connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut redis).unwrap();
    let idem: Vec<&String> = keys.iter().filter(|k| k.contains(":idem:")).collect();
    assert_eq!(idem.len(), 1, "{keys:?}");
    let stored: Vec<u8> = redis::cmd("GET").arg(idem[0]).query(&mut redis).unwrap();
    let stored = String::from_utf8_lossy(&stored);
    for raw in ["13800138000", "13900139000", "c-1"] {
        assert!(!stored.contains(raw), "Redis holds {raw}: {stored}");
        assert!(!idem[0].contains(raw));
    }
}

#[tokio::test]
async fn two_instances_sharing_redis_answer_a_retry_once() {
    let redis = TestRedis::start();
    let url = redis.url();
    let spawn = |url: String| {
        TestApp::spawn_with(Options {
            customise: Box::new(move |s| s.cache.redis_url = url),
            ..Default::default()
        })
    };
    let first_app = spawn(url.clone()).await;
    let second_app = spawn(url).await;
    first_app.set_code("D-1", "green", "hangzhou").await;
    second_app.set_code("D-1", "green", "hangzhou").await;
    let shift = json!({"city": "hangzhou", "driver": {"id": "D-1"}});
    let first: Value = send(&first_app, "/v1/checks/driver-shift", Some("s-1"), &shift)
        .await
        .json()
        .await
        .unwrap();
    let again = send(&second_app, "/v1/checks/driver-shift", Some("s-1"), &shift).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["decision_id"], first["decision_id"]);
    assert_eq!(
        records(&second_app).await,
        0,
        "the second instance decided nothing"
    );
}

#[tokio::test]
async fn without_redis_keys_are_kept_in_process() {
    let app = TestApp::spawn_with(Options {
        backend: CacheBackend::Memory,
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    let shift = json!({"city": "hangzhou", "driver": {"id": "D-1"}});
    let first: Value = send(&app, "/v1/checks/driver-shift", Some("m-1"), &shift)
        .await
        .json()
        .await
        .unwrap();
    let again = send(&app, "/v1/checks/driver-shift", Some("m-1"), &shift).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap()["decision_id"],
        first["decision_id"]
    );
    assert_eq!(records(&app).await, 1);
}
