//! Fail closed: no status path, push, caller header or upstream quirk turns
//! a refusal into an allow, and Redis never learns who a subject is. Each
//! test reproduces one way it used to happen, against a real redis-server
//! and the provider simulator (two simulators where the national platform
//! is involved).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use redis::Commands;
use serde_json::{json, Value};

use crate::helpers::{
    codes, lenient_policy, start_simulator, trip, trip_in, Options, TestApp, EVENTS_SECRET,
};

fn with(customise: impl FnOnce(&mut tripgate::config::Settings) + 'static) -> Options {
    Options {
        customise: Box::new(customise),
        ..Default::default()
    }
}

fn record(subject: &str, color: &str, updated_at: DateTime<Utc>) -> Value {
    json!({"subject_id": subject, "color": color, "issuer": "hangzhou", "updated_at": updated_at})
}

/// Everything Redis is told, as MONITOR shows it, until dropped.
struct Monitor {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    fn start(port: u16) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect for MONITOR");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        stream.write_all(b"MONITOR\r\n").unwrap();
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let thread = {
            let (stop, seen): (Arc<AtomicBool>, Arc<Mutex<Vec<u8>>>) =
                (Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                let mut buffer = [0u8; 8192];
                while !stop.load(Ordering::Relaxed) {
                    match stream.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => seen.lock().unwrap().extend_from_slice(&buffer[..n]),
                        Err(_) => {}
                    }
                }
            })
        };
        // MONITOR answers +OK once it is listening.
        for _ in 0..50 {
            if seen.lock().unwrap().starts_with(b"+OK") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        let seen = self.seen.lock().unwrap();
        String::from_utf8_lossy(&seen).into_owned()
    }
}

#[tokio::test]
async fn redis_never_holds_or_carries_a_raw_subject_id() {
    // Regional provider, national platform and itinerary source, all cached.
    let (national_url, national) = start_simulator(0, 0, 5);
    let policy = std::fs::read_to_string(crate::helpers::config_dir().join("policy.toml")).unwrap()
        + "\n[cities.hangzhou.hooks]\npassenger_order = [\"health_code\", \"itinerary\"]\n";
    let app = TestApp::spawn_with(Options {
        policy: Some(policy),
        customise: Box::new(move |s| {
            s.national.base_url = national_url;
            s.itinerary.base_url = s.provider.base_url.clone();
        }),
        ..Default::default()
    })
    .await;
    let port = app.redis.as_ref().unwrap().port;
    let ids = ["13800138000", "13900139000", "13700137000", "13600136000"];
    app.set_code(ids[0], "green", "hangzhou").await;
    app.set_code(ids[1], "green", "xiamen").await; // asks the national platform
    national.set_code(tripgate::provider_api::HealthCodeRecord::v2(
        ids[1],
        "green",
        "national",
        Utc::now(),
        Utc::now(),
    ));
    let mut pubsub = redis::Client::open(app.redis.as_ref().unwrap().url())
        .unwrap()
        .get_connection()
        .unwrap();
    let monitor = Monitor::start(port);

    app.decide(&trip("D-none", &[ids[0], ids[1], ids[2]])).await;
    let (status, _) = app
        .post_json(
            "/v1/checks/passenger-order",
            &json!({"city": "hangzhou", "order_id": "O-1", "passengers": [{"id": ids[3]}]}),
        )
        .await;
    assert_eq!(status, 200);
    // A push, listened to as a replica would.
    let mut subscriber = pubsub.as_pubsub();
    subscriber.psubscribe("*").unwrap();
    subscriber
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let now = Utc::now();
    let response = app
        .push_event(&record(ids[0], "red", now), EVENTS_SECRET, now.timestamp())
        .await;
    assert_eq!(response.status(), 200);
    let message = subscriber.get_message().expect("the push is announced");
    let payload: String = message.get_payload().unwrap();
    assert_eq!(payload.len(), 64, "a pseudonym, not an id: {payload}");

    let traffic = monitor.finish();
    assert!(
        traffic.contains("EVAL") && traffic.contains("MGET") && traffic.contains("PUBLISH"),
        "the monitor saw the cache at work: {traffic}"
    );
    let mut redis = app.redis.as_ref().unwrap().connection();
    let keys: Vec<String> = redis.keys("*").unwrap();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("tripgate:national:v4:hc:"))
            && keys
                .iter()
                .any(|k| k.starts_with("tripgate:itinerary:v4:hc:")),
        "every source is cached: {keys:?}"
    );
    let mut stored = String::new();
    for key in &keys {
        stored.push_str(key);
        let value: Option<String> = redis.get(key).unwrap();
        stored.push_str(&value.unwrap_or_default());
    }
    for id in ids {
        assert!(!traffic.contains(id), "{id} crossed to Redis:\n{traffic}");
        assert!(!stored.contains(id), "{id} is stored in Redis:\n{stored}");
        assert!(!payload.contains(id));
    }
}

#[tokio::test]
async fn a_push_with_the_same_updated_at_never_lets_green_replace_red() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    let at = Utc::now() - TimeDelta::minutes(1);
    let push = |color: &'static str, sent: i64| {
        let body = record("P-1", color, at);
        let app = &app;
        async move { app.push_event(&body, EVENTS_SECRET, sent).await }
    };

    let first = push("red", Utc::now().timestamp()).await;
    assert_eq!(first.status(), 200);
    // The same stamp, green: a tie keeps the stricter level.
    let tie = push("green", Utc::now().timestamp()).await;
    assert_eq!(tie.status(), 200);
    let tie: Value = tie.json().await.unwrap();
    assert_eq!(tie["applied"], false, "{tie}");
    assert_eq!(tie["outcome"], "kept");
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"], "{body}");

    // And the other way round: red at the same stamp replaces green.
    let green_at = Utc::now() - TimeDelta::seconds(30);
    for color in ["green", "red"] {
        let response = app
            .push_event(
                &record("P-2", color, green_at),
                EVENTS_SECRET,
                Utc::now().timestamp(),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    let body = app.decide(&trip("D-1", &["P-2"])).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"], "{body}");
}

#[tokio::test]
async fn pushes_from_the_future_replays_and_stale_pushes_are_not_applied() {
    let first = TestApp::spawn().await;
    let (redis_url, provider) = (
        first.redis.as_ref().unwrap().url(),
        first.simulator_url.clone(),
    );
    let second = TestApp::spawn_with(with(move |s| {
        s.cache.redis_url = redis_url;
        s.provider.base_url = provider;
    }))
    .await;
    first.set_code("D-1", "green", "hangzhou").await;
    first.set_code("P-1", "green", "hangzhou").await;

    // A code stamped beyond the skew in the future would outrank every
    // later change: refused, and never cached.
    let future = Utc::now() + TimeDelta::seconds(310);
    let response = first
        .push_event(
            &record("P-1", "green", future),
            EVENTS_SECRET,
            Utc::now().timestamp(),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "INVALID_EVENT");
    let body = first.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["parties"][1]["source"], "upstream", "{body}");

    // An exact replay inside the window is refused on any replica.
    let now = Utc::now();
    let red = record("P-1", "red", now);
    let sent = Utc::now().timestamp();
    assert_eq!(
        first.push_event(&red, EVENTS_SECRET, sent).await.status(),
        200
    );
    let replay = second.push_event(&red, EVENTS_SECRET, sent).await;
    assert_eq!(replay.status(), 409);
    let error: Value = replay.json().await.unwrap();
    assert_eq!(error["error"]["code"], "REPLAYED_EVENT");
    // The same event with its signature spelt otherwise is the same event.
    let body = serde_json::to_vec(&red).unwrap();
    let signature =
        tripgate::provider_api::sign_event(EVENTS_SECRET.as_bytes(), &sent.to_string(), &body);
    let respelt = signature.trim_start_matches("sha256=").to_ascii_uppercase();
    let replay = second
        .http
        .post(second.url("/v1/status-events"))
        .header("content-type", "application/json")
        .header(
            tripgate::provider_api::EVENT_TIMESTAMP_HEADER,
            sent.to_string(),
        )
        .header(tripgate::provider_api::EVENT_SIGNATURE_HEADER, respelt)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.status(),
        409,
        "a respelt signature is still a replay"
    );

    // Nothing cached and older than the skew window: not applied; the
    // provider is asked on the next check.
    first.set_code("P-old", "red", "hangzhou").await;
    let response = first
        .push_event(
            &record("P-old", "green", Utc::now() - TimeDelta::seconds(400)),
            EVENTS_SECRET,
            Utc::now().timestamp(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["outcome"], "too_old", "{outcome}");
    let body = first.decide(&trip("D-1", &["P-old"])).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"], "{body}");
    assert_eq!(body["parties"][1]["source"], "upstream");
}

/// D-1 green and warm in L1, P-1 green at the provider an hour ago, and
/// the provider answering after `latency_ms`: then a trip check of D-1 and
/// P-1 sent in the background (with `deadline_ms` when given).
async fn check_in_flight(
    app: &TestApp,
    latency_ms: u64,
    deadline_ms: Option<&'static str>,
) -> tokio::task::JoinHandle<Value> {
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-warm", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-warm"])).await;
    app.set_code_at(
        "P-1",
        "green",
        "hangzhou",
        Some(Utc::now() - TimeDelta::hours(1)),
    )
    .await;
    app.set_faults(json!({ "latency_ms": latency_ms })).await;
    let (http, url) = (app.http.clone(), app.url("/v1/checks/trip"));
    tokio::spawn(async move {
        let mut request = http.post(url).json(&trip("D-1", &["P-1"]));
        if let Some(ms) = deadline_ms {
            request = request.header("X-Tripgate-Deadline-Ms", ms);
        }
        request.send().await.unwrap().json::<Value>().await.unwrap()
    })
}

#[tokio::test]
async fn a_provider_answer_in_flight_cannot_undo_a_push() {
    // L1 lives a minute: only the guard keeps the old answer out of it. The
    // provider call may take longer than the check waits, so its answer
    // arrives and is written back after the push.
    let app = TestApp::spawn_with(with(|s| {
        s.cache.l1_ttl_ms = 60_000;
        s.provider.timeout_ms = 5_000;
    }))
    .await;
    // The provider call is held open...
    let check = check_in_flight(&app, 1500, Some("1000")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...a red push lands...
    let now = Utc::now();
    let response = app
        .push_event(&record("P-1", "red", now), EVENTS_SECRET, now.timestamp())
        .await;
    assert_eq!(response.status(), 200);
    // ...then the green answer arrives (after the check gave up).
    let first = check.await.unwrap();
    assert_eq!(first["decision"], "reject", "{first}");
    assert_eq!(codes(&first), vec!["STATUS_UNAVAILABLE"], "{first}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.set_faults(json!({})).await;

    for _ in 0..3 {
        let body = app.decide(&trip("D-1", &["P-1"])).await;
        assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"], "{body}");
    }
}

#[tokio::test]
async fn a_write_back_that_loses_to_a_push_answers_with_the_push() {
    let app = TestApp::spawn().await;
    // Within the provider call timeout and the check's deadline.
    let check = check_in_flight(&app, 500, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = Utc::now();
    app.push_event(&record("P-1", "red", now), EVENTS_SECRET, now.timestamp())
        .await;
    // The check waited for the provider's green; Redis kept the newer red,
    // and that is the answer.
    let body = check.await.unwrap();
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"], "{body}");
}

#[tokio::test]
async fn a_short_caller_deadline_never_buys_an_allow() {
    let app = TestApp::spawn_with(Options {
        policy: Some(lenient_policy()),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-red", "red", "hangzhou").await;
    app.set_faults(json!({"latency_ms": 300})).await;

    let response = app
        .http
        .post(app.url("/v1/checks/trip"))
        .header("X-Tripgate-Deadline-Ms", "2")
        .json(&trip_in("lenient", "D-1", &["P-red"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["decision"], "reject", "{body}");
    assert_eq!(body["degraded"], false);
    assert_eq!(
        codes(&body),
        vec!["STATUS_UNAVAILABLE", "STATUS_UNAVAILABLE"]
    );

    // A real outage within the configured deadline is still waived, as the
    // city says.
    app.set_faults(json!({"outage": true})).await;
    let body = app.decide(&trip_in("lenient", "D-2", &["P-2"])).await;
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(body["degraded"], true);

    // Not a whole number from 1 to 60000: 400.
    for bad in ["0", "-5", "1.5", "soon", "60001", "18446744073709551615"] {
        let response = app
            .http
            .post(app.url("/v1/checks/trip"))
            .header("X-Tripgate-Deadline-Ms", bad)
            .json(&trip_in("lenient", "D-1", &["P-red"]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn ids_a_caller_invents_neither_open_the_breaker_nor_buy_an_allow() {
    let app = TestApp::spawn_with(Options {
        policy: Some(lenient_policy()),
        customise: Box::new(|s| {
            s.provider.breaker_min_calls = 5;
            s.provider.breaker_window = 10;
        }),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-red", "red", "hangzhou").await;
    // This provider refuses a batch naming an id it does not know (400).
    app.set_faults(json!({"refuse_unknown": true})).await;

    for n in 0..20 {
        let body = app
            .decide(&trip_in("lenient", "D-1", &["P-red", &format!("X-{n}")]))
            .await;
        assert_eq!(body["decision"], "reject", "{body}");
        assert_eq!(body["degraded"], false);
    }
    let (_, ready) = app.get_admin_json("/readyz").await;
    assert_eq!(ready["provider_circuit"], "closed", "{ready}");
    let body = app.decide(&trip_in("lenient", "D-1", &["P-red"])).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"], "{body}");
    assert_eq!(body["parties"][1]["source"], "upstream");
}

#[tokio::test]
async fn the_national_platform_never_loosens_a_regional_red() {
    let (national_url, national) = start_simulator(0, 0, 3);
    let app = TestApp::spawn_with(with(move |s| s.national.base_url = national_url)).await;
    app.set_code("D-1", "green", "hangzhou").await;
    // Xiamen's codes are not recognised in Hangzhou; its red still counts.
    app.set_code("P-1", "red", "xiamen").await;
    app.set_code("P-2", "green", "xiamen").await;
    for subject in ["P-1", "P-2"] {
        national.set_code(tripgate::provider_api::HealthCodeRecord::v2(
            subject,
            "green",
            "national",
            Utc::now(),
            Utc::now(),
        ));
    }

    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["decision"], "reject", "{body}");
    assert_eq!(body["parties"][1]["issuer"], "xiamen");
    // A regional green of an unrecognised issuer is still mediated.
    let body = app.decide(&trip("D-1", &["P-2"])).await;
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(body["parties"][1]["issuer"], "national");
}

#[tokio::test]
async fn itinerary_risk_words_outside_the_vocabulary_are_not_passed() {
    let policy = r#"
version = "itinerary-words-1"
[issuers.hangzhou.palette]
green = "green"
[cities.hangzhou]
recognised_issuers = ["hangzhou"]
[cities.hangzhou.hooks]
passenger_order = ["health_code", "itinerary"]
[itinerary.risk_levels]
low = "low"
medium = "medium"
high = "high"
"高风险" = "high"
"#;
    let app = TestApp::spawn_with(Options {
        policy: Some(policy.into()),
        customise: Box::new(|s| s.itinerary.base_url = s.provider.base_url.clone()),
        ..Default::default()
    })
    .await;
    let yesterday = (Utc::now() - TimeDelta::days(1)).date_naive().to_string();
    let cases = [
        ("P-1", "High-Risk", "ITINERARY_UNRECOGNISED"),
        ("P-2", "critical", "ITINERARY_UNRECOGNISED"),
        ("P-3", "高风险", "ITINERARY_RISK_AREA"),
    ];
    for (subject, word, expected) in cases {
        app.set_code(subject, "green", "hangzhou").await;
        let response = app
            .http
            .put(format!("{}/admin/itineraries/{subject}", app.simulator_url))
            .json(&json!({"visits": [{"region": "420100", "risk": word, "date": yesterday}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        let (status, body) = app
            .post_json(
                "/v1/checks/passenger-order",
                &json!({"city": "hangzhou", "order_id": "O-1", "passengers": [{"id": subject}]}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["decision"], "reject", "{word}: {body}");
        assert_eq!(codes(&body), vec![expected], "{word}");
    }
}
