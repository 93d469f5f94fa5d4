//! A driver who turns red on duty is taken off it: dispatch hears, signed,
//! of every pass a push turns, and never the subject's id. A local HTTP
//! receiver stands for dispatch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::helpers::{trip, Options, TestApp, EVENTS_SECRET};

const NOTIFY_SECRET: &str = "test-notify-secret-0123456789";

/// One request dispatch received: (timestamp, signature, body).
type Received = (String, String, Vec<u8>);

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    /// Answer 503 while set, as a dispatch backend that is down.
    down: Arc<AtomicBool>,
    attempts: Arc<std::sync::atomic::AtomicU64>,
}

async fn receive(
    state: web::Data<Receiver>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    state.attempts.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    state.received.lock().unwrap().push((
        header(tripgate::provider_api::EVENT_TIMESTAMP_HEADER),
        header(tripgate::provider_api::EVENT_SIGNATURE_HEADER),
        body.to_vec(),
    ));
    HttpResponse::NoContent().finish()
}

impl Receiver {
    fn start() -> (Self, String) {
        let state = Receiver::default();
        let data = web::Data::new(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/tripgate-events", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/tripgate-events", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        (state, url)
    }

    /// The events received, each checked for its signature.
    fn events(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(timestamp, signature, body)| {
                assert!(
                    tripgate::provider_api::event_signature_matches(
                        NOTIFY_SECRET.as_bytes(),
                        timestamp,
                        body,
                        signature
                    ),
                    "a notification with a wrong signature"
                );
                serde_json::from_slice(body).unwrap()
            })
            .collect()
    }

    async fn wait_for(&self, count: usize) -> Vec<Value> {
        for _ in 0..100 {
            let events = self.events();
            if events.len() >= count {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {count} notifications, got {:?}", self.events());
    }
}

fn notifying(url: String, outbox: std::path::PathBuf) -> Options {
    notifying_with(tripgate::config::CacheBackend::Redis, url, outbox)
}

fn notifying_with(
    backend: tripgate::config::CacheBackend,
    url: String,
    outbox: std::path::PathBuf,
) -> Options {
    Options {
        backend,
        customise: Box::new(move |s| {
            s.notify.url = url;
            s.notify.secret = Some(NOTIFY_SECRET.to_owned().into());
            s.notify.outbox_path = outbox;
        }),
        ..Default::default()
    }
}

fn red(subject: &str) -> Value {
    let now = chrono::Utc::now();
    json!({"subject_id": subject, "color": "red", "issuer": "hangzhou",
           "color_since": now, "renewed_at": now})
}

#[tokio::test]
async fn a_driver_who_turns_red_on_duty_is_announced_to_dispatch_passes_in_redis() {
    a_driver_who_turns_red_on_duty_is_announced(tripgate::config::CacheBackend::Redis).await;
}

#[tokio::test]
async fn a_driver_who_turns_red_on_duty_is_announced_to_dispatch_passes_in_process() {
    a_driver_who_turns_red_on_duty_is_announced(tripgate::config::CacheBackend::Memory).await;
}

async fn a_driver_who_turns_red_on_duty_is_announced(backend: tripgate::config::CacheBackend) {
    let (receiver, url) = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(notifying_with(
        backend,
        url,
        dir.path().join("outbox.sqlite3"),
    ))
    .await;
    let driver = "13800138000";
    app.set_code(driver, "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_code("P-red", "red", "hangzhou").await;
    let shift = app
        .post_json(
            "/v1/checks/driver-shift",
            &json!({"city": "hangzhou", "driver": {"id": driver}}),
        )
        .await
        .1;
    assert_eq!(shift["decision"], "allow");
    let ride = app.decide(&trip(driver, &["P-1"])).await;
    assert_eq!(ride["decision"], "allow");
    // A refused trip and a candidate filter are not passes to announce.
    let refused = app.decide(&trip(driver, &["P-red"])).await;
    assert_eq!(refused["decision"], "reject");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let now = chrono::Utc::now().timestamp();
    let pushed = app.push_event(&red(driver), EVENTS_SECRET, now).await;
    assert_eq!(pushed.status(), 200);
    let events = receiver.wait_for(1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["event"], "status_changed");
    assert_eq!(event["level"], "red");
    assert_eq!(event["party"], "driver");
    assert_eq!(
        event["decision_ids"],
        json!([shift["decision_id"], ride["decision_id"]]),
        "{event}"
    );
    assert_eq!(event["trip_ids"], json!(["T-1001"]));
    assert!(event["changed_at"].is_string());
    let raw = String::from_utf8(receiver.received.lock().unwrap()[0].2.clone()).unwrap();
    assert!(
        !raw.contains(driver),
        "the subject id left the process: {raw}"
    );

    // Announced once: a second change of the same subject has no passes left.
    let again = app.push_event(&red(driver), EVENTS_SECRET, now + 1).await;
    assert_eq!(again.status(), 200);
    // A green push announces nothing (and keeps the passes); the
    // passenger's deletion does.
    let mut green = red("P-1");
    green["color"] = json!("green");
    let pushed = app.push_event(&green, EVENTS_SECRET, now + 2).await;
    assert_eq!(pushed.status(), 200);
    app.push_event(
        &json!({"subject_id": "P-1", "deleted_at": chrono::Utc::now()}),
        EVENTS_SECRET,
        now + 3,
    )
    .await;
    let events = receiver.wait_for(2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["level"], "no_code");
    assert_eq!(events[1]["party"], "passenger");
    assert_eq!(events[1]["decision_ids"], json!([ride["decision_id"]]));

    let (_, metrics) = app.get_admin("/metrics").await;
    assert!(
        metrics.contains("tripgate_notify_events_total{outcome=\"delivered\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn undelivered_notifications_are_retried_and_survive_a_restart() {
    let (receiver, url) = Receiver::start();
    receiver.down.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox.sqlite3");
    let mut app = TestApp::spawn_with(notifying(url.clone(), outbox.clone())).await;
    app.set_code("D-1", "green", "hangzhou").await;
    let shift = app
        .post_json(
            "/v1/checks/driver-shift",
            &json!({"city": "hangzhou", "driver": {"id": "D-1"}}),
        )
        .await
        .1;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pushed = app
        .push_event(&red("D-1"), EVENTS_SECRET, chrono::Utc::now().timestamp())
        .await;
    assert_eq!(pushed.status(), 200);
    // Retried while dispatch is down.
    for _ in 0..100 {
        if receiver.attempts.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.attempts.load(Ordering::SeqCst) >= 2, "not retried");
    let (_, metrics) = app.get_admin("/metrics").await;
    assert!(metrics.contains("tripgate_notify_outbox 1"), "{metrics}");
    app.stop().await;

    // A new instance on the same outbox delivers it once dispatch is back.
    receiver.down.store(false, Ordering::SeqCst);
    let _app = TestApp::spawn_with(notifying(url, outbox)).await;
    let events = receiver.wait_for(1).await;
    assert_eq!(events[0]["decision_ids"], json!([shift["decision_id"]]));
    assert_eq!(events[0]["level"], "red");
}

#[tokio::test]
async fn notifications_need_a_secret() {
    let mut settings = tripgate::config::Settings::load_from(
        &crate::helpers::config_dir(),
        tripgate::config::Environment::Local,
    )
    .unwrap();
    settings.notify.url = "http://127.0.0.1:9/events".into();
    let error = settings.parse().err().expect("refused").to_string();
    assert!(error.contains("notify.secret"), "{error}");
    settings.notify.secret = Some("short".to_owned().into());
    let error = settings.parse().err().expect("refused").to_string();
    assert!(error.contains("at least 16 bytes"), "{error}");
}
