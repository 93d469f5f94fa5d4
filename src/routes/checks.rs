//! The hooks: `POST /v1/checks/trip`, `/driver-shift`, `/passenger-order`
//! and `/candidates`.
//!
//! Every decision, allow or reject, is HTTP 200; 4xx means the request itself
//! was wrong and no decision was made. All hooks answer in one shape; the
//! candidate filter adds the eligible and excluded drivers. Reason messages
//! are in the language `Accept-Language` prefers (zh-CN by default).

use std::time::Duration;

use actix_web::http::header::CONTENT_LANGUAGE;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::ApiError;
use crate::domain::{
    CandidatesBody, Check, DriverShiftBody, Hook, Outcome, Party, PassengerOrderBody, Reason,
    SubjectId, TripCheckBody,
};
use crate::domain::{Decided, PartyReport};
use crate::gate::Gate;
use crate::idempotency::{self, Claim, Idempotency, IdempotencyKey, StoredAnswer};
use crate::messages::{Lang, Messages};
use crate::policy::CityPolicy;

/// Callers may bound a decision's time below the configured deadline.
pub const DEADLINE_HEADER: &str = "X-Tripgate-Deadline-Ms";

/// The most a caller may ask for (the configured deadline caps it anyway).
const MAX_DEADLINE_MS: u64 = 60_000;

#[derive(Serialize)]
struct ReasonBody<'a> {
    party: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    code: &'static str,
    rule: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
}

#[derive(Serialize)]
struct Details<'a> {
    area: &'a str,
}

/// The messages of one answer: the city's own, else the catalogue's.
#[derive(Clone, Copy)]
pub(crate) struct Texts<'a> {
    pub catalogue: &'a Messages,
    pub city: Option<&'a CityPolicy>,
    pub lang: Lang,
}

impl<'a> Texts<'a> {
    pub(crate) fn of(&self, code: crate::domain::ReasonCode) -> &'a str {
        self.city
            .and_then(|city| city.message(code, self.lang))
            .unwrap_or_else(|| self.catalogue.text(code, self.lang))
    }
}

impl<'a> ReasonBody<'a> {
    fn new(reason: &'a Reason, texts: Texts<'a>) -> Self {
        Self {
            party: reason.party.map_or("all", Party::role),
            index: reason.party.and_then(Party::index),
            code: reason.code.as_str(),
            rule: &reason.rule,
            message: texts.of(reason.code),
            details: reason.detail.as_deref().map(|area| Details { area }),
        }
    }
}

#[derive(Serialize)]
struct EligibleAfterBody<'a> {
    at: String,
    rule: &'a str,
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
    /// When the colour last changed (provider contract v2).
    #[serde(skip_serializing_if = "Option::is_none")]
    color_since: Option<String>,
    /// For a refused party: when it may pass again, and the rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    eligible_after: Option<EligibleAfterBody<'a>>,
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
            color_since: report.colour_since.map(rfc3339),
            eligible_after: report.eligible_after.as_ref().map(|e| EligibleAfterBody {
                at: rfc3339(e.at),
                rule: &e.rule,
            }),
        }
    }
}

#[derive(Serialize)]
struct CandidateBody<'a> {
    index: usize,
    id: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<ReasonBody<'a>>,
}

#[derive(Serialize)]
struct DecisionBody<'a> {
    decision: Outcome,
    decision_id: String,
    hook: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trip_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<&'a str>,
    city: &'a str,
    policy_version: &'a str,
    degraded: bool,
    reasons: Vec<ReasonBody<'a>>,
    parties: Vec<PartyBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eligible_drivers: Option<Vec<CandidateBody<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    excluded_drivers: Option<Vec<CandidateBody<'a>>>,
    decided_at: String,
}

impl<'a> DecisionBody<'a> {
    fn new(decided: &'a Decided, subjects: &'a [SubjectId], texts: Texts<'a>) -> Self {
        let reference = decided.reference.as_ref().map(|r| r.as_str());
        let (trip_id, order_id) = match decided.hook {
            Hook::PassengerOrder => (None, reference),
            _ => (reference, None),
        };
        let candidates = |eligible: bool| -> Vec<CandidateBody<'a>> {
            decided
                .parties
                .iter()
                .zip(subjects)
                .filter_map(|(p, subject)| match p.party {
                    Party::Candidate(index) if p.eligible == eligible => Some(CandidateBody {
                        index,
                        id: subject.expose(),
                        reasons: p
                            .failures
                            .iter()
                            .map(|r| ReasonBody::new(r, texts))
                            .collect(),
                    }),
                    _ => None,
                })
                .collect()
        };
        let is_filter = decided.hook == Hook::Candidates;
        Self {
            decision: decided.decision.outcome,
            decision_id: decided.decision_id.to_string(),
            hook: decided.hook.as_str(),
            trip_id,
            order_id,
            city: decided.city.as_str(),
            policy_version: &decided.policy_version,
            degraded: decided.decision.degraded,
            reasons: decided
                .decision
                .reasons
                .iter()
                .map(|r| ReasonBody::new(r, texts))
                .collect(),
            parties: decided
                .parties
                .iter()
                .map(|p| PartyBody::new(p, decided.decided_at))
                .collect(),
            eligible_drivers: is_filter.then(|| candidates(true)),
            excluded_drivers: is_filter.then(|| candidates(false)),
            decided_at: rfc3339(decided.decided_at),
        }
    }
}

fn requested_budget(request: &HttpRequest) -> Result<Option<Duration>, ApiError> {
    let Some(value) = request.headers().get(DEADLINE_HEADER) else {
        return Ok(None);
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(ms) if (1..=MAX_DEADLINE_MS).contains(&ms) => Ok(Some(Duration::from_millis(ms))),
        _ => Err(ApiError::InvalidHeader {
            header: DEADLINE_HEADER,
            problem: "must be a whole number of milliseconds from 1 to 60000",
        }),
    }
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    request
        .headers()
        .get(idempotency::HEADER)
        .map(|value| {
            IdempotencyKey::parse(value.as_bytes()).ok_or(ApiError::InvalidHeader {
                header: idempotency::HEADER,
                problem: IdempotencyKey::PROBLEM,
            })
        })
        .transpose()
}

/// Parse, decide, answer: the same for every hook. With an
/// `Idempotency-Key`, a retry of a decided check gets the first answer.
async fn decide<B>(
    gate: &Gate,
    messages: &Messages,
    idempotency: &Idempotency,
    request: &HttpRequest,
    body: B,
) -> Result<HttpResponse, ApiError>
where
    Check: TryFrom<B, Error = crate::domain::InvalidRequest>,
{
    let budget = requested_budget(request)?;
    let key = idempotency_key(request)?;
    let lang = Lang::negotiate(
        request
            .headers()
            .get(actix_web::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let check = Check::try_from(body)?;
    let client = request
        .extensions()
        .get::<crate::auth::Caller>()
        .map(|caller| caller.name.clone());
    let ticket = match &key {
        None => None,
        Some(key) => match idempotency.claim(client.as_deref(), key, &check).await {
            Claim::First(ticket) => Some(ticket),
            Claim::Unavailable => None,
            Claim::Replay(answer) => {
                return Ok(HttpResponse::Ok()
                    .insert_header((CONTENT_LANGUAGE, answer.language))
                    .insert_header((idempotency::REPLAYED_HEADER, "true"))
                    .json(idempotency::with_ids(answer.body, &check)))
            }
            Claim::Mismatch => return Err(ApiError::IdempotencyKeyReused),
            Claim::InProgress => return Err(ApiError::IdempotencyKeyInProgress),
        },
    };
    let subjects = check.subjects();
    let decided = match gate.check(check, budget, client).await {
        Ok(decided) => decided,
        Err(error) => {
            if let Some(ticket) = ticket {
                idempotency.release(ticket).await;
            }
            return Err(error.into());
        }
    };
    tracing::Span::current().record("decision_id", tracing::field::display(decided.decision_id));
    tracing::debug!(
        hook = decided.hook.as_str(),
        decision = decided.decision.outcome.as_str(),
        reasons = ?decided.decision.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
        degraded = decided.decision.degraded,
        "check decided"
    );
    let policy = gate.policy();
    let texts = Texts {
        catalogue: messages,
        city: policy.city(&decided.city),
        lang,
    };
    let answer = DecisionBody::new(&decided, &subjects, texts);
    if let Some(ticket) = ticket {
        let kept = serde_json::to_value(&answer).unwrap_or_default();
        idempotency
            .complete(
                ticket,
                StoredAnswer {
                    language: lang.tag().to_owned(),
                    body: idempotency::without_ids(kept),
                },
            )
            .await;
    }
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_LANGUAGE, lang.tag()))
        .json(answer))
}

#[utoipa::path(
    post,
    path = "/v1/checks/trip",
    tag = "checks",
    params(super::openapi::CheckHeaders),
    request_body = crate::domain::TripCheckBody,
    responses(
        (status = 200, description = "A decision, allow or reject", body = super::openapi::TripDecisionDoc),
        super::openapi::CheckErrors,
    )
)]
pub async fn trip(
    gate: web::Data<Gate>,
    messages: web::Data<Messages>,
    idempotency: web::Data<Idempotency>,
    request: HttpRequest,
    body: web::Json<TripCheckBody>,
) -> Result<HttpResponse, ApiError> {
    decide(&gate, &messages, &idempotency, &request, body.into_inner()).await
}

#[utoipa::path(
    post,
    path = "/v1/checks/driver-shift",
    tag = "checks",
    params(super::openapi::CheckHeaders),
    request_body = crate::domain::DriverShiftBody,
    responses(
        (status = 200, description = "May the driver go on duty (same shape as the trip hook)", body = super::openapi::TripDecisionDoc),
        super::openapi::CheckErrors,
    )
)]
pub async fn driver_shift(
    gate: web::Data<Gate>,
    messages: web::Data<Messages>,
    idempotency: web::Data<Idempotency>,
    request: HttpRequest,
    body: web::Json<DriverShiftBody>,
) -> Result<HttpResponse, ApiError> {
    decide(&gate, &messages, &idempotency, &request, body.into_inner()).await
}

#[utoipa::path(
    post,
    path = "/v1/checks/passenger-order",
    tag = "checks",
    params(super::openapi::CheckHeaders),
    request_body = crate::domain::PassengerOrderBody,
    responses(
        (status = 200, description = "May the order be accepted (same shape, with order_id)", body = super::openapi::TripDecisionDoc),
        super::openapi::CheckErrors,
    )
)]
pub async fn passenger_order(
    gate: web::Data<Gate>,
    messages: web::Data<Messages>,
    idempotency: web::Data<Idempotency>,
    request: HttpRequest,
    body: web::Json<PassengerOrderBody>,
) -> Result<HttpResponse, ApiError> {
    decide(&gate, &messages, &idempotency, &request, body.into_inner()).await
}

#[utoipa::path(
    post,
    path = "/v1/checks/candidates",
    tag = "checks",
    params(super::openapi::CheckHeaders),
    request_body = crate::domain::CandidatesBody,
    responses(
        (status = 200, description = "Eligible drivers in request order, excluded drivers with their reasons; reject if a passenger fails or no driver is eligible", body = super::openapi::CandidatesDoc),
        super::openapi::CheckErrors,
    )
)]
pub async fn candidates(
    gate: web::Data<Gate>,
    messages: web::Data<Messages>,
    idempotency: web::Data<Idempotency>,
    request: HttpRequest,
    body: web::Json<CandidatesBody>,
) -> Result<HttpResponse, ApiError> {
    decide(&gate, &messages, &idempotency, &request, body.into_inner()).await
}
