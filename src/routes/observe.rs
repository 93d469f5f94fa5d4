//! Every HTTP exchange, seen from outside: its request id, its trace
//! context and its metrics. The outermost middleware of both listeners.
//!
//! - `X-Request-Id`: a caller's id is kept when it is 1 to 128 of
//!   `A-Z a-z 0-9 . _ : -` (so it is safe in logs), otherwise one is minted
//!   (a UUIDv7); it is returned on every response and is the request span's
//!   `request_id`.
//! - W3C `traceparent`: a valid one is continued, otherwise a trace is
//!   started; the request span logs its `trace_id`, and every upstream call
//!   made for the request carries it on (`telemetry::TRACE`).
//! - `tripgate_http_requests_total{route,method,status}` and
//!   `tripgate_http_request_duration_seconds{route,method}`, by route
//!   pattern (never the path: paths can carry subject ids).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use crate::telemetry::{RequestIdentity, TraceContext, TRACE};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

fn valid_request_id(raw: &str) -> bool {
    (1..=128).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The methods that get their own label; any other is `other`.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let trace = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .unwrap_or_else(TraceContext::start);
    request
        .extensions_mut()
        .insert(RequestIdentity(request_id.clone()));
    request.extensions_mut().insert(trace.clone());
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method());
    let metrics = request
        .app_data::<web::Data<crate::metrics::Metrics>>()
        .cloned();

    let outcome = TRACE.scope(trace, next.call(request)).await;

    let status = match &outcome {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    if let Some(metrics) = metrics {
        metrics.record_http(
            &route,
            method,
            status.as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    outcome.map(|mut response| {
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
        }
        response
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_safe_to_log() {
        assert!(valid_request_id("req-0193c1d2:7f3e_a.b"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("has space"));
        assert!(!valid_request_id("13800138000\n"));
        assert!(!valid_request_id(&"a".repeat(129)));
    }
}
