//! The simulator's HTTP endpoints: the provider contract under `/v1`, and
//! the admin API under `/admin` (never affected by injected faults).

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::SimulatorState;
use crate::domain::SubjectId;
use crate::provider_api::{
    BatchAnswer, BatchLookup, Faults, HealthCodeRecord, ItineraryBatchAnswer, ProviderError,
    SetHealthCode, SetItinerary, Webhook, MAX_BATCH,
};

type State = web::Data<SimulatorState>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(1024 * 1024).error_handler(
        |error, _req: &HttpRequest| {
            actix_web::error::InternalError::from_response(
                error.to_string(),
                bad_request(error.to_string()),
            )
            .into()
        },
    ))
    .route("/v1/health-codes/batch", web::post().to(batch))
    .route("/v1/health-codes/{subject_id}", web::get().to(single))
    .route("/v1/itineraries/batch", web::post().to(itinerary_batch))
    .route("/v1/itineraries/{subject_id}", web::get().to(itinerary))
    .route(
        "/admin/itineraries/{subject_id}",
        web::put().to(set_itinerary),
    )
    .route("/admin/health-codes/{subject_id}", web::put().to(set_code))
    .route(
        "/admin/health-codes/{subject_id}",
        web::delete().to(delete_code),
    )
    .route("/admin/stats", web::get().to(stats))
    .route("/admin/faults", web::put().to(set_faults))
    .route("/admin/faults", web::get().to(get_faults))
    .route("/admin/webhook", web::put().to(set_webhook))
    .route("/admin/webhook", web::delete().to(clear_webhook))
    .route(
        "/healthz",
        web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
    )
    .default_service(web::to(|| async {
        HttpResponse::NotFound().json(ProviderError {
            error: "no such endpoint".into(),
        })
    }));
}

fn bad_request(message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(ProviderError { error: message })
}

/// Latency first, then outage or a random error: what a struggling
/// provider looks like from the outside.
async fn injected_fault(state: &SimulatorState) -> Option<HttpResponse> {
    let faults = state.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let failing = faults.outage || (faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate);
    if failing {
        state.count_injected_error();
        return Some(HttpResponse::ServiceUnavailable().json(ProviderError {
            error: "injected fault".into(),
        }));
    }
    None
}

async fn single(state: State, path: web::Path<String>) -> HttpResponse {
    state.count_request(1);
    if let Some(fault) = injected_fault(&state).await {
        return fault;
    }
    match state.code_of(&path) {
        Some(record) => HttpResponse::Ok().json(record),
        None => HttpResponse::NotFound().json(ProviderError {
            error: "no health code for this subject".into(),
        }),
    }
}

async fn batch(
    state: State,
    request: actix_web::HttpRequest,
    body: web::Json<BatchLookup>,
) -> HttpResponse {
    if let Some(trace_id) = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
    {
        state.saw_trace(trace_id);
    }
    let ids = body.into_inner().subject_ids;
    if ids.len() > MAX_BATCH {
        return bad_request(format!(
            "at most {MAX_BATCH} subject_ids per batch, got {}",
            ids.len()
        ));
    }
    state.count_request(ids.len());
    if let Some(fault) = injected_fault(&state).await {
        return fault;
    }
    if state.faults().refuse_unknown && ids.iter().any(|id| state.code_of(id).is_none()) {
        return bad_request("a subject_id is not known to this provider".into());
    }
    let mut answer = BatchAnswer::default();
    let v1 = state.faults().contract_v1;
    for id in ids {
        match state.code_of(&id) {
            Some(record) if v1 => answer.codes.push(HealthCodeRecord {
                updated_at: record.renewed(),
                color_since: None,
                renewed_at: None,
                ..record
            }),
            Some(record) => answer.codes.push(record),
            None => answer.not_found.push(id),
        }
    }
    HttpResponse::Ok().json(answer)
}

async fn set_code(
    state: State,
    path: web::Path<String>,
    body: web::Json<SetHealthCode>,
) -> HttpResponse {
    if let Err(e) = SubjectId::parse(&path) {
        return bad_request(format!("subject_id {e}"));
    }
    let body = body.into_inner();
    if body.color.trim().is_empty() || body.issuer.trim().is_empty() {
        return bad_request("color and issuer must not be empty".into());
    }
    let subject_id = path.into_inner();
    let now = Utc::now();
    let renewed_at = body.renewed_at.unwrap_or(now);
    let color_since = body.color_since.unwrap_or_else(|| {
        state
            .code_of(&subject_id)
            .filter(|current| current.color.eq_ignore_ascii_case(body.color.trim()))
            .and_then(|current| current.color_since)
            .unwrap_or(renewed_at)
    });
    let record = HealthCodeRecord::v2(
        &subject_id,
        &body.color,
        &body.issuer,
        color_since,
        renewed_at,
    );
    state.set_code(record.clone());
    HttpResponse::Ok().json(record)
}

async fn delete_code(state: State, path: web::Path<String>) -> HttpResponse {
    if state.delete_code(&path) {
        HttpResponse::NoContent().finish()
    } else {
        HttpResponse::NotFound().json(ProviderError {
            error: "no health code for this subject".into(),
        })
    }
}

async fn stats(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.stats())
}

async fn get_faults(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.faults())
}

async fn set_faults(state: State, body: web::Json<Faults>) -> HttpResponse {
    let faults = body.into_inner();
    if !(0.0..=1.0).contains(&faults.error_rate) {
        return bad_request(format!(
            "error_rate must be within 0.0..=1.0, got {}",
            faults.error_rate
        ));
    }
    state.set_faults(faults);
    HttpResponse::Ok().json(faults)
}

async fn set_webhook(state: State, body: web::Json<Webhook>) -> HttpResponse {
    let webhook = body.into_inner();
    if reqwest::Url::parse(&webhook.url).is_err() || webhook.secret.is_empty() {
        return bad_request("url must be an absolute URL and secret non-empty".into());
    }
    state.set_webhook(Some(webhook));
    HttpResponse::NoContent().finish()
}

async fn clear_webhook(state: State) -> HttpResponse {
    state.set_webhook(None);
    HttpResponse::NoContent().finish()
}

async fn itinerary(state: State, path: web::Path<String>) -> HttpResponse {
    state.count_itinerary_request();
    if let Some(fault) = injected_fault(&state).await {
        return fault;
    }
    match state.itinerary_of(&path) {
        Some(record) => HttpResponse::Ok().json(record),
        None => HttpResponse::NotFound().json(ProviderError {
            error: "no itinerary for this subject".into(),
        }),
    }
}

async fn itinerary_batch(state: State, body: web::Json<BatchLookup>) -> HttpResponse {
    let ids = body.into_inner().subject_ids;
    if ids.len() > MAX_BATCH {
        return bad_request(format!(
            "at most {MAX_BATCH} subject_ids per batch, got {}",
            ids.len()
        ));
    }
    state.count_itinerary_request();
    if let Some(fault) = injected_fault(&state).await {
        return fault;
    }
    let mut answer = ItineraryBatchAnswer::default();
    for id in ids {
        match state.itinerary_of(&id) {
            Some(record) => answer.itineraries.push(record),
            None => answer.not_found.push(id),
        }
    }
    HttpResponse::Ok().json(answer)
}

async fn set_itinerary(
    state: State,
    path: web::Path<String>,
    body: web::Json<SetItinerary>,
) -> HttpResponse {
    if let Err(e) = SubjectId::parse(&path) {
        return bad_request(format!("subject_id {e}"));
    }
    state.set_itinerary(&path, body.into_inner().visits);
    HttpResponse::NoContent().finish()
}
