//! `POST /v1/status-events`: the provider pushes a subject's new code.
//! The body is read raw because the signature covers its exact bytes.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{ApiError, MAX_BODY_BYTES};
use crate::events::StatusEvents;
use crate::provider_api::{EVENT_SIGNATURE_HEADER, EVENT_TIMESTAMP_HEADER};

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
        ("X-Tripgate-Timestamp" = i64, Header, description = "Unix seconds; refused when more than events.max_skew_secs away"),
        ("X-Tripgate-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256(secret, timestamp + \".\" + body)>"),
    ),
    responses(
        (status = 200, description = "{applied: bool}; false when a newer status was already known"),
        (status = 400, description = "INVALID_EVENT", body = super::openapi::ErrorDoc),
        (status = 401, description = "INVALID_SIGNATURE or STALE_TIMESTAMP, or no bearer token", body = super::openapi::ErrorDoc),
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
    let applied = events
        .apply(
            header(EVENT_TIMESTAMP_HEADER),
            header(EVENT_SIGNATURE_HEADER),
            &body,
        )
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "applied": applied })))
}
