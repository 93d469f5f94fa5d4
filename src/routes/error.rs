//! The one place where errors become HTTP responses.
//!
//! Every error body has the same shape, `{"error": {"code", "message"}}`
//! (plus `field` when one field is at fault), so clients can branch on
//! `code` and people can read `message`. Client mistakes are 4xx; a 5xx means
//! tripgate itself failed, and its body carries the code and a generic
//! message only: the cause (file paths, SQL errors) goes to the log, inside
//! the request's span, never to the caller.

use actix_web::error::{JsonPayloadError, ResponseError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::MAX_BODY_BYTES;
use crate::appeals::AppealError;
use crate::audit::{FilterError, StoreError};
use crate::auth::AuthError;
use crate::domain::InvalidRequest;
use crate::events::EventError;
use crate::gate::GateError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("request body does not match the expected shape: {0}")]
    InvalidShape(String),
    #[error("{0}")]
    InvalidField(#[from] InvalidRequest),
    #[error("request body is larger than the {limit} bytes allowed")]
    BodyTooLarge { limit: usize },
    #[error("header {header} {problem}")]
    InvalidHeader {
        header: &'static str,
        problem: &'static str,
    },
    #[error("{0}")]
    Event(#[from] EventError),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("could not read the request body: {0}")]
    UnreadableBody(String),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error("{0}")]
    InvalidParameter(#[from] FilterError),
    #[error("no decision with this id is in the audit trail")]
    DecisionNotFound,
    #[error("{0}")]
    OutOfScope(#[from] crate::audit::OutOfScope),
    #[error("the audit store is unavailable: {0}")]
    AuditStore(#[from] StoreError),
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("the policy document was refused; the old policy keeps serving: {0}")]
    PolicyInvalid(#[from] crate::policy::PolicyError),
    #[error("this Idempotency-Key was used with a different request body; use a new key for a new request")]
    IdempotencyKeyReused,
    #[error("a check with this Idempotency-Key is being decided now; retry in a moment")]
    IdempotencyKeyInProgress,
    #[error(transparent)]
    Appeal(#[from] crate::appeals::AppealError),
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint; it takes {allow}")]
    MethodNotAllowed { allow: &'static str },
}

impl ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::MalformedJson(_) => ErrorCode::MALFORMED_JSON,
            ApiError::InvalidShape(_) => ErrorCode::INVALID_REQUEST,
            ApiError::InvalidField(_) => ErrorCode::INVALID_FIELD,
            ApiError::BodyTooLarge { .. } => ErrorCode::BODY_TOO_LARGE,
            ApiError::UnsupportedMediaType => ErrorCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidHeader { .. } => ErrorCode::INVALID_HEADER,
            ApiError::Event(EventError::MissingHeader(_) | EventError::BadSignature) => {
                ErrorCode::INVALID_SIGNATURE
            }
            ApiError::Event(EventError::StaleTimestamp(_)) => ErrorCode::STALE_TIMESTAMP,
            ApiError::Event(EventError::BadBody(_) | EventError::FutureCode(_)) => {
                ErrorCode::INVALID_EVENT
            }
            ApiError::Event(EventError::Replayed) => ErrorCode::REPLAYED_EVENT,
            ApiError::Event(EventError::Unavailable(_)) => ErrorCode::CACHE_UNAVAILABLE,
            ApiError::UnreadableBody(_) => ErrorCode::UNREADABLE_BODY,
            ApiError::Gate(GateError::UnknownCity { .. }) => ErrorCode::UNKNOWN_CITY,
            ApiError::Gate(GateError::AuditUnavailable(_)) => ErrorCode::AUDIT_UNAVAILABLE,
            ApiError::InvalidParameter(_) => ErrorCode::INVALID_PARAMETER,
            ApiError::DecisionNotFound => ErrorCode::DECISION_NOT_FOUND,
            ApiError::OutOfScope(_) => ErrorCode::OUT_OF_SCOPE,
            ApiError::AuditStore(_) => ErrorCode::AUDIT_UNAVAILABLE,
            ApiError::Auth(AuthError::MissingToken | AuthError::UnknownToken) => {
                ErrorCode::UNAUTHENTICATED
            }
            ApiError::Auth(AuthError::Forbidden { .. }) => ErrorCode::FORBIDDEN,
            ApiError::Auth(AuthError::RateLimited { .. }) => ErrorCode::RATE_LIMITED,
            ApiError::PolicyInvalid(_) => ErrorCode::POLICY_INVALID,
            ApiError::IdempotencyKeyReused => ErrorCode::IDEMPOTENCY_KEY_REUSED,
            ApiError::IdempotencyKeyInProgress => ErrorCode::IDEMPOTENCY_KEY_IN_PROGRESS,
            ApiError::NotFound => ErrorCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => ErrorCode::METHOD_NOT_ALLOWED,
            ApiError::Appeal(e) => match e {
                AppealError::DecisionNotFound => ErrorCode::DECISION_NOT_FOUND,
                AppealError::AppealNotFound => ErrorCode::APPEAL_NOT_FOUND,
                AppealError::NotAppealable(_) => ErrorCode::NOT_APPEALABLE,
                AppealError::AlreadyOpen { .. } => ErrorCode::APPEAL_ALREADY_OPEN,
                AppealError::AlreadyResolved { .. } => ErrorCode::APPEAL_ALREADY_RESOLVED,
                AppealError::InvalidResolution { .. } => ErrorCode::INVALID_FIELD,
                AppealError::Store(_) | AppealError::Write(_) => ErrorCode::AUDIT_UNAVAILABLE,
            },
        }
    }
}

impl ApiError {
    /// What a 5xx body says instead of the cause.
    fn public_message(&self) -> &'static str {
        match self {
            ApiError::Gate(GateError::AuditUnavailable(_)) => {
                "the decision could not be recorded in the audit trail, so it is not given; retry shortly"
            }
            ApiError::AuditStore(_) | ApiError::Appeal(AppealError::Store(_)) => {
                "the audit store is unavailable; retry shortly"
            }
            ApiError::Appeal(AppealError::Write(_)) => {
                "the appeal could not be recorded in the audit trail; retry shortly"
            }
            ApiError::Event(EventError::Unavailable(_)) => {
                "the status cache could not store the event; retry shortly"
            }
            _ => "tripgate failed to handle the request; retry shortly",
        }
    }
}

/// Every error code an answer can carry: the stable identifiers clients
/// branch on, and the OpenAPI document's enum.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum ErrorCode {
    MALFORMED_JSON,
    INVALID_REQUEST,
    INVALID_FIELD,
    BODY_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    INVALID_HEADER,
    INVALID_SIGNATURE,
    STALE_TIMESTAMP,
    INVALID_EVENT,
    REPLAYED_EVENT,
    CACHE_UNAVAILABLE,
    UNREADABLE_BODY,
    UNKNOWN_CITY,
    AUDIT_UNAVAILABLE,
    INVALID_PARAMETER,
    DECISION_NOT_FOUND,
    OUT_OF_SCOPE,
    UNAUTHENTICATED,
    FORBIDDEN,
    RATE_LIMITED,
    POLICY_INVALID,
    IDEMPOTENCY_KEY_REUSED,
    IDEMPOTENCY_KEY_IN_PROGRESS,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    APPEAL_NOT_FOUND,
    NOT_APPEALABLE,
    APPEAL_ALREADY_OPEN,
    APPEAL_ALREADY_RESOLVED,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: ErrorCode,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::InvalidShape(_)
            | ApiError::InvalidField(_)
            | ApiError::UnreadableBody(_)
            | ApiError::InvalidParameter(_)
            | ApiError::InvalidHeader { .. }
            | ApiError::Event(EventError::BadBody(_) | EventError::FutureCode(_)) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Event(EventError::Replayed) => StatusCode::CONFLICT,
            ApiError::Event(
                EventError::MissingHeader(_)
                | EventError::BadSignature
                | EventError::StaleTimestamp(_),
            ) => StatusCode::UNAUTHORIZED,
            ApiError::Event(EventError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::DecisionNotFound => StatusCode::NOT_FOUND,
            ApiError::AuditStore(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Gate(GateError::UnknownCity { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Gate(GateError::AuditUnavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Auth(AuthError::MissingToken | AuthError::UnknownToken) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Auth(AuthError::Forbidden { .. }) | ApiError::OutOfScope(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::Auth(AuthError::RateLimited { .. }) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PolicyInvalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyKeyInProgress => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Appeal(e) => match e {
                AppealError::DecisionNotFound | AppealError::AppealNotFound => {
                    StatusCode::NOT_FOUND
                }
                AppealError::NotAppealable(_) => StatusCode::UNPROCESSABLE_ENTITY,
                AppealError::AlreadyOpen { .. } | AppealError::AlreadyResolved { .. } => {
                    StatusCode::CONFLICT
                }
                AppealError::InvalidResolution { .. } => StatusCode::BAD_REQUEST,
                AppealError::Store(_) | AppealError::Write(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let field = match self {
            ApiError::InvalidField(invalid) => Some(invalid.field.as_str()),
            ApiError::InvalidParameter(invalid) => Some(invalid.param),
            ApiError::Appeal(AppealError::InvalidResolution { field, .. }) => Some(*field),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Auth(AuthError::RateLimited {
                retry_after_secs, ..
            }) => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            ApiError::Auth(AuthError::MissingToken | AuthError::UnknownToken) => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::IdempotencyKeyInProgress => {
                response.insert_header(("Retry-After", "1"));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header(("Allow", *allow));
            }
            _ => {}
        }
        let message = if self.status_code().is_server_error() {
            tracing::error!(code = ?self.code(), error = %crate::telemetry::error_chain(self), "request failed");
            self.public_message().to_owned()
        } else {
            self.to_string()
        };
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
                field,
            },
        })
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(error: JsonPayloadError) -> Self {
        match error {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => ApiError::BodyTooLarge { limit },
            JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
            JsonPayloadError::Deserialize(e) if e.is_data() => {
                ApiError::InvalidShape(e.to_string())
            }
            JsonPayloadError::Deserialize(e) => ApiError::MalformedJson(e.to_string()),
            other => ApiError::UnreadableBody(other.to_string()),
        }
    }
}

/// Query strings that do not parse get our error shape too.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _req: &HttpRequest| {
        ApiError::InvalidParameter(FilterError {
            param: "query",
            problem: error.to_string(),
        })
        .into()
    })
}

/// JSON extraction with the body limit and our error shape.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .content_type_required(true)
        .error_handler(|error, _req: &HttpRequest| ApiError::from(error).into())
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

pub async fn post_only() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "POST" })
}

pub async fn get_only() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "GET" })
}

pub async fn get_or_post() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "GET, POST" })
}
