//! `POST /v1/status-events`: the provider pushes a subject's new code.
//! The body is read raw because the signature covers its exact bytes.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{ApiError, MAX_BODY_BYTES};
use crate::events::StatusEvents;
use crate::provider_api::{EVENT_SIGNATURE_HEADER, EVENT_TIMESTAMP_HEADER};
use crate::status::Put;

async fn read_body(mut payload: web::Payload) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::UnreadableBody(e.to_string()))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::BodyTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[utoipa::path(
    post,
    path = "/v1/status-events",
    tag = "events",
    request_body = crate::provider_api::HealthCodeRecord,
    params(
        ("X-Tripgate-Timestamp" = i64, Header, description = "Unix seconds; refused when more than events.max_skew_secs away. The body is a HealthCodeRecord or a CodeDeleted {subject_id, deleted_at}"),
        ("X-Tripgate-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256(secret, timestamp + \".\" + body)>"),
    ),
    responses(
        (status = 200, description = "{applied: bool, outcome}: outcome `written`; `kept` when the cached status is newer, or as new and stricter; `too_old` when nothing was cached and the event is older than events.max_skew_secs"),
        (status = 400, description = "INVALID_EVENT: neither a health-code record nor a deletion, or stamped beyond the allowed skew in the future", body = super::openapi::ErrorDoc),
        (status = 409, description = "REPLAYED_EVENT: this exact signed event was already received", body = super::openapi::ErrorDoc),
        (status = 401, description = "INVALID_SIGNATURE or STALE_TIMESTAMP, or no bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not provider", body = super::openapi::ErrorDoc),
        (status = 413, description = "Body over 64 KiB", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "CACHE_UNAVAILABLE: retry", body = super::openapi::ErrorDoc),
    )
)]
pub async fn status_event(
    events: web::Data<StatusEvents>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload).await?;
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let put = events
        .apply(
            header(EVENT_TIMESTAMP_HEADER),
            header(EVENT_SIGNATURE_HEADER),
            &body,
        )
        .await?;
    let outcome = match put {
        Put::Written => "written",
        Put::Kept(_) => "kept",
        Put::Refused => "too_old",
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "applied": put == Put::Written,
        "outcome": outcome,
    })))
}
