//! `POST /v1/checks/trip`: the trip-match hook.
//!
//! Every decision, allow or reject, is HTTP 200; 4xx means the request itself
//! was wrong and no decision was made.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::ApiError;
use crate::domain::{Outcome, Party, Reason, TripCheck, TripCheckBody};
use crate::gate::{Gate, PartyReport, TripDecision};

#[derive(Serialize)]
struct TripCheckResponse<'a> {
    decision: Outcome,
    decision_id: String,
    trip_id: &'a str,
    city: &'a str,
    policy_version: &'a str,
    degraded: bool,
    reasons: &'a [Reason],
    parties: Vec<PartyBody<'a>>,
    decided_at: String,
}

#[derive(Serialize)]
struct PartyBody<'a> {
    #[serde(flatten)]
    party: Party,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<String>,
    /// Seconds between `as_of` and the decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    age_seconds: Option<i64>,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl<'a> PartyBody<'a> {
    fn new(report: &'a PartyReport, decided_at: DateTime<Utc>) -> Self {
        Self {
            party: report.party,
            status: report.standing.as_str(),
            color: report.colour.as_ref().map(|c| c.as_str()),
            issuer: report.issuer.as_ref().map(|i| i.as_str()),
            source: report.source.map(|s| s.as_str()),
            as_of: report.as_of.map(rfc3339),
            age_seconds: report
                .as_of
                .map(|at| (decided_at - at).num_seconds().max(0)),
        }
    }
}

impl<'a> TripCheckResponse<'a> {
    fn new(decided: &'a TripDecision) -> Self {
        Self {
            decision: decided.decision.outcome,
            decision_id: decided.decision_id.to_string(),
            trip_id: decided.trip_id.as_str(),
            city: decided.city.as_str(),
            policy_version: &decided.policy_version,
            degraded: decided.decision.degraded,
            reasons: &decided.decision.reasons,
            parties: decided
                .parties
                .iter()
                .map(|p| PartyBody::new(p, decided.decided_at))
                .collect(),
            decided_at: rfc3339(decided.decided_at),
        }
    }
}

/// Callers may bound a decision's time below the configured deadline.
pub const DEADLINE_HEADER: &str = "X-Tripgate-Deadline-Ms";

fn requested_budget(request: &HttpRequest) -> Result<Option<Duration>, ApiError> {
    let Some(value) = request.headers().get(DEADLINE_HEADER) else {
        return Ok(None);
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(ApiError::InvalidHeader {
            header: DEADLINE_HEADER,
            problem: "must be a whole number of milliseconds greater than 0",
        }),
    }
}

#[utoipa::path(
    post,
    path = "/v1/checks/trip",
    tag = "checks",
    request_body = crate::domain::TripCheckBody,
    params(("X-Tripgate-Deadline-Ms" = Option<u64>, Header, description = "Decide within this many milliseconds (capped by checks.deadline_ms)")),
    responses(
        (status = 200, description = "A decision, allow or reject", body = super::openapi::TripDecisionDoc),
        (status = 400, description = "Malformed JSON, a missing or invalid field, a bad header", body = super::openapi::ErrorDoc),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not dispatch", body = super::openapi::ErrorDoc),
        (status = 413, description = "Body over 64 KiB", body = super::openapi::ErrorDoc),
        (status = 415, description = "Not application/json", body = super::openapi::ErrorDoc),
        (status = 422, description = "City not in the policy", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The decision could not be recorded (AUDIT_UNAVAILABLE)", body = super::openapi::ErrorDoc),
    )
)]
pub async fn trip(
    gate: web::Data<Gate>,
    request: HttpRequest,
    body: web::Json<TripCheckBody>,
) -> Result<HttpResponse, ApiError> {
    let budget = requested_budget(&request)?;
    let check = TripCheck::try_from(body.into_inner())?;
    let decided = gate.check_trip(check, budget).await?;
    tracing::Span::current().record("decision_id", tracing::field::display(decided.decision_id));
    tracing::debug!(
        decision = ?decided.decision.outcome,
        reasons = ?decided.decision.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
        degraded = decided.decision.degraded,
        "trip check decided"
    );
    Ok(HttpResponse::Ok().json(TripCheckResponse::new(&decided)))
}
