//! The admin listener's operator endpoints (role `ops` when authentication
//! is on): Prometheus metrics and the policy reload. The probes are in
//! `health.rs`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::gate::Gate;
use crate::metrics::Metrics;

#[utoipa::path(get, path = "/metrics", tag = "operations",
    description = "Admin listener only (server.admin_listen).",
    responses(
        (status = 200, description = "Prometheus text format (role ops when authentication is on)", content_type = "text/plain"),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not ops", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
    ))]
pub async fn metrics(
    gate: web::Data<Gate>,
    appeals: web::Data<crate::appeals::Appeals>,
    metrics: web::Data<Metrics>,
) -> HttpResponse {
    // An open breaker turns half-open only when a call asks: read now.
    for (upstream, state) in gate.upstream_states() {
        metrics.set_circuit(upstream, state);
    }
    metrics.audit_backlog.set(gate.audit_backlog() as i64);
    metrics.audit_unloaded.set(gate.audit_unloaded() as i64);
    metrics.sqlite_memory.set(gate.sqlite_memory_bytes());
    // Open appeals are every replica's: read from the store, and kept as
    // last read if it cannot answer now.
    if let Err(error) = appeals.refresh_metrics().await {
        tracing::warn!(error = %crate::telemetry::error_chain(&error), "open appeals not read for /metrics");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.encode())
}

#[utoipa::path(post, path = "/admin/policy/reload", tag = "operations",
    description = "Admin listener only (server.admin_listen).",
    responses(
        (status = 200, description = "{version}: the document was valid and is in force"),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not ops", body = super::openapi::ErrorDoc),
        (status = 422, description = "POLICY_INVALID: refused; the old policy keeps serving", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
    ))]
pub async fn reload_policy(gate: web::Data<Gate>) -> Result<HttpResponse, super::ApiError> {
    let version = gate.reload_policy()?;
    Ok(HttpResponse::Ok().json(json!({"version": version})))
}
