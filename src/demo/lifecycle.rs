//! The demo's dispatch lifecycle: a visitor recognised through the national
//! platform, and a driver taken off duty by a notification. A small HTTP
//! server stands in for the dispatch backend and checks every
//! notification's signature.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use super::DemoError;
use crate::provider_api::{event_signature_matches, HealthCodeRecord};
use crate::simulator::SimulatorState;

/// The notifications' secret in the demo (a local value, like the rest of
/// config/local.toml).
pub const NOTIFY_SECRET: &str = "demo-notify-secret-not-for-production";

/// The dispatch backend's stand-in: the notifications it received.
#[derive(Clone, Default)]
pub struct Dispatch {
    received: Arc<Mutex<Vec<Value>>>,
}

async fn receive(
    dispatch: web::Data<Dispatch>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let signed = event_signature_matches(
        NOTIFY_SECRET.as_bytes(),
        header(crate::provider_api::EVENT_TIMESTAMP_HEADER),
        &body,
        header(crate::provider_api::EVENT_SIGNATURE_HEADER),
    );
    match serde_json::from_slice::<Value>(&body) {
        Ok(event) if signed => {
            dispatch
                .received
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(event);
            HttpResponse::NoContent().finish()
        }
        _ => HttpResponse::Unauthorized().finish(),
    }
}

impl Dispatch {
    /// Listens on a free loopback port; returns the URL to notify.
    pub fn start() -> Result<(Self, String), DemoError> {
        let dispatch = Dispatch::default();
        let data = web::Data::new(dispatch.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(DemoError::Simulator)?;
        let url = format!(
            "http://{}/dispatch/tripgate-events",
            listener.local_addr().map_err(DemoError::Simulator)?
        );
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/dispatch/tripgate-events", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .map_err(DemoError::Simulator)?
        .run();
        tokio::spawn(server);
        Ok((dispatch, url))
    }

    fn find(&self, decision_id: &str) -> Option<Value> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|event| {
                event["decision_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id == decision_id))
            })
            .cloned()
    }

    pub fn count(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, DemoError> {
    let response = http.post(url).json(body).send().await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    if !status.is_success() {
        return Err(DemoError::Unexpected(format!(
            "HTTP 200, got {status}: {answer}"
        )));
    }
    Ok(answer)
}

/// A visitor the regional provider has no code for rides on the code the
/// national platform holds.
pub async fn show_visitor(
    http: &reqwest::Client,
    base: &str,
    national: &SimulatorState,
    driver: &str,
) -> Result<(), DemoError> {
    let visitor = "13912345678";
    let now = chrono::Utc::now();
    national.set_code(HealthCodeRecord::v2(visitor, "green", "national", now, now));
    let answer = post(
        http,
        &format!("{base}/v1/checks/trip"),
        &json!({"trip_id": "T-VISIT-1", "city": "hangzhou", "driver": {"id": driver},
                "passengers": [{"id": visitor}]}),
    )
    .await?;
    let passenger = &answer["parties"][1];
    if answer["decision"] != "allow" || passenger["source"] != "national" {
        return Err(DemoError::Unexpected(format!(
            "a visitor with a national green code to be allowed through the national platform, got {answer}"
        )));
    }
    println!(
        "  a visitor from another province (no code at the regional provider) was allowed on the national platform's {} code (source {})",
        passenger["color"].as_str().unwrap_or("?"),
        passenger["source"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// A driver goes on duty, turns red at the provider, and dispatch is told
/// which of its decisions let the driver through.
pub async fn show_off_duty(
    http: &reqwest::Client,
    base: &str,
    provider_url: &str,
    dispatch: &Dispatch,
    driver: &str,
) -> Result<(), DemoError> {
    let shift = post(
        http,
        &format!("{base}/v1/checks/driver-shift"),
        &json!({"city": "hangzhou", "driver": {"id": driver}}),
    )
    .await?;
    if shift["decision"] != "allow" {
        return Err(DemoError::Unexpected(format!(
            "driver {driver} to go on duty, got {shift}"
        )));
    }
    let decision_id = shift["decision_id"].as_str().unwrap_or_default().to_owned();
    // The pass is remembered off the answer's path; give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    http.put(format!("{provider_url}/admin/health-codes/{driver}"))
        .json(&json!({"color": "red", "issuer": "hangzhou"}))
        .send()
        .await?
        .error_for_status()?;
    let started = Instant::now();
    let event = loop {
        if let Some(event) = dispatch.find(&decision_id) {
            break event;
        }
        if started.elapsed() > Duration::from_secs(5) {
            return Err(DemoError::Unexpected(format!(
                "dispatch to be told within 5 s that the driver of shift decision {decision_id} turned red"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "  driver {driver} went on duty (decision {decision_id}), then turned red at the provider;\n  \
         dispatch was notified in {} ms, signed and without the driver's id: level {}, party {}, decisions {}",
        started.elapsed().as_millis(),
        event["level"].as_str().unwrap_or("?"),
        event["party"].as_str().unwrap_or("?"),
        event["decision_ids"]
    );
    Ok(())
}
