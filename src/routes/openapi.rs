//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! annotations, served at `/openapi.json` with Swagger UI at `/docs/` (assets
//! compiled into the binary). Shapes that the wire types serialise by hand
//! (reasons and parties flatten `party`/`index`) are described here.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{admin, appeals, audit, checks, events, health};

/// A reason: `party` is `driver`, `passenger` (with `index`) or `all`.
#[derive(Serialize, ToSchema)]
pub struct ReasonDoc {
    #[schema(example = "driver")]
    pub party: String,
    /// Position in `passengers`, for a passenger.
    pub index: Option<u32>,
    #[schema(example = "HEALTH_CODE_RED")]
    pub code: String,
    /// The policy rule that fired, e.g. hangzhou.trip.health_code.
    pub rule: String,
    /// In the language Accept-Language prefers (zh-CN by default).
    pub message: String,
    /// What the code needs, e.g. {"area": "420100"} for ITINERARY_RISK_AREA.
    pub details: Option<std::collections::BTreeMap<String, String>>,
}

/// One party's status as tripgate found it.
#[derive(Serialize, ToSchema)]
pub struct PartyStatusDoc {
    #[schema(example = "passenger")]
    pub party: String,
    pub index: Option<u32>,
    /// green, yellow, red, unknown, unrecognised_issuer, no_code or unavailable.
    #[schema(example = "green")]
    pub status: String,
    /// The issuer's own colour word.
    pub color: Option<String>,
    pub issuer: Option<String>,
    /// l1, redis, upstream, stale or national.
    pub source: Option<String>,
    /// The code's last renewal, its daily check-in (RFC 3339).
    pub as_of: Option<String>,
    pub age_seconds: Option<i64>,
    /// When the code's colour last changed (provider contract v2).
    pub color_since: Option<String>,
    /// For a refused party, when it may pass again, where derivable.
    pub eligible_after: Option<EligibleAfterDoc>,
}

/// When a refused party may pass again, and the policy rule that says so.
#[derive(Serialize, ToSchema)]
pub struct EligibleAfterDoc {
    /// RFC 3339.
    pub at: String,
    /// `<city>.isolation.yellow`, `<city>.isolation.red`, `<city>.renewal`
    /// or the itinerary rule.
    #[schema(example = "hangzhou.isolation.red")]
    pub rule: String,
}

/// A decision: HTTP 200 whether it allows or rejects.
#[derive(Serialize, ToSchema)]
pub struct TripDecisionDoc {
    /// allow or reject.
    #[schema(example = "reject")]
    pub decision: String,
    /// trip, driver_shift, passenger_order or candidates.
    pub hook: String,
    /// UUIDv7, time-ordered.
    pub decision_id: uuid::Uuid,
    /// The trip (trip and candidates hooks).
    pub trip_id: Option<String>,
    /// The order (passenger-order hook).
    pub order_id: Option<String>,
    pub city: String,
    pub policy_version: String,
    /// True when allowed although a status was unavailable (policy allow_degraded).
    pub degraded: bool,
    pub reasons: Vec<ReasonDoc>,
    pub parties: Vec<PartyStatusDoc>,
    pub decided_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct CandidateDoc {
    /// Position in the request's `drivers`.
    pub index: usize,
    pub id: String,
    /// Why the driver was excluded (excluded drivers only).
    pub reasons: Option<Vec<ReasonDoc>>,
}

/// The candidate filter's answer: a decision plus the drivers' outcomes.
#[derive(Serialize, ToSchema)]
pub struct CandidatesDoc {
    #[serde(flatten)]
    pub decision: TripDecisionDoc,
    pub eligible_drivers: Vec<CandidateDoc>,
    pub excluded_drivers: Vec<CandidateDoc>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetailDoc {
    pub code: super::ErrorCode,
    pub message: String,
    /// The JSON path or parameter at fault, when there is one.
    pub field: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDoc {
    pub error: ErrorDetailDoc,
}

/// The headers every hook reads.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct CheckHeaders {
    /// Decide within this many milliseconds (capped by checks.deadline_ms); a whole number from 1 to 60000.
    #[param(
        rename = "X-Tripgate-Deadline-Ms",
        nullable = false,
        minimum = 1,
        maximum = 60000
    )]
    deadline: Option<u64>,
    /// zh-CN (default) or en: the language of reason messages.
    #[param(rename = "Accept-Language", nullable = false)]
    language: Option<String>,
    /// 1 to 255 visible ASCII characters. The same key and body within checks.idempotency_ttl_secs (24 h) get the first answer again, with Idempotent-Replayed: true; the same key with another body is 422.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        pattern = "^[!-~]{1,255}$"
    )]
    idempotency_key: Option<String>,
    /// Any value: kept when it is 1 to 128 of A-Z a-z 0-9 . _ : - (safe to log), else replaced by a minted one; returned on every response.
    #[param(rename = "X-Request-Id", nullable = false)]
    request_id: Option<String>,
}

/// The answers of every hook that are not a decision.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CheckErrors {
    /// Bad input: malformed JSON, a missing or invalid field (the id grammar, 1 to 8 passengers, no subject twice), a bad header.
    #[response(status = 400)]
    BadInput(ErrorDoc),
    /// No or unknown bearer token.
    #[response(status = 401)]
    Unauthenticated(ErrorDoc),
    /// The caller's role is not dispatch.
    #[response(status = 403)]
    Forbidden(ErrorDoc),
    /// A check with this Idempotency-Key is being decided now (IDEMPOTENCY_KEY_IN_PROGRESS); retry.
    #[response(status = 409)]
    InProgress(ErrorDoc),
    /// Body over 64 KiB.
    #[response(status = 413)]
    TooLarge(ErrorDoc),
    /// Not application/json.
    #[response(status = 415)]
    NotJson(ErrorDoc),
    /// City not in the policy (UNKNOWN_CITY), or the Idempotency-Key was used with another body (IDEMPOTENCY_KEY_REUSED).
    #[response(status = 422)]
    Unprocessable(ErrorDoc),
    /// Over the client's rate limit; see Retry-After.
    #[response(status = 429)]
    RateLimited(ErrorDoc),
    /// The decision could not be recorded (AUDIT_UNAVAILABLE); retry.
    #[response(status = 503)]
    AuditUnavailable(ErrorDoc),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tripgate",
        description = "Pre-trip health-code gate for ride-hailing dispatch. `/readyz` and `/metrics` are served on the admin listener (`server.admin_listen`).",
    ),
    paths(
        checks::trip,
        checks::driver_shift,
        checks::passenger_order,
        checks::candidates,
        audit::decisions,
        audit::decision,
        audit::summary,
        audit::export,
        audit::heads,
        appeals::file,
        appeals::list,
        appeals::appeal,
        appeals::resolve,
        events::status_event,
        health::healthz,
        health::readyz,
        admin::metrics,
        admin::reload_policy,
    ),
    components(schemas(
        crate::domain::TripCheckBody,
        crate::domain::DriverShiftBody,
        crate::domain::PassengerOrderBody,
        crate::domain::CandidatesBody,
        crate::domain::PartyBody,
        crate::provider_api::HealthCodeRecord,
        crate::provider_api::CodeDeleted,
        crate::audit::AuditReason,
        crate::audit::AuditParty,
        crate::audit::SummaryRow,
        audit::Heads,
        crate::audit::HeadView,
        crate::audit::AppealEvent,
        crate::audit::AppealCounts,
        appeals::AppealBody,
        appeals::ResolutionBody,
        appeals::AppealView,
        appeals::ResolutionView,
        appeals::WrittenView,
        appeals::AppealsPage,
        TripDecisionDoc,
        ErrorDoc,
        super::ErrorCode,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "checks", description = "Hooks called by dispatch (role dispatch)"),
        (name = "audit", description = "The decision trail (roles regulator and fleet, within their scope)"),
        (name = "appeals", description = "Contesting a refusal: dispatch (on behalf of the refused person) or ops file; regulators resolve; dispatch sees what it filed, a fleet what its clients filed"),
        (name = "events", description = "Pushes from the health-code provider (role provider, signed)"),
        (name = "operations", description = "Probes, metrics and the policy reload. /healthz is served on both listeners; /readyz, /metrics and /admin/policy/reload on the admin listener only (server.admin_listen, port 9100 in the manifests), not on the API listener"),
    )
)]
pub struct ApiDoc;
