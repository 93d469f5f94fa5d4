//! Liveness and readiness.
//!
//! Readiness fails (503) only when decisions cannot be given at all: the
//! audit store cannot be written. It stays 200 while Redis is down or the
//! provider's circuit is open: dispatch is better served by a degraded
//! tripgate (L1, the provider directly, stale copies) than by none. The body
//! says what is degraded.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::gate::Gate;

#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses(
        (status = 200, description = "{status: ok} while the process serves HTTP (API and admin listeners)"),
    ))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    description = "Admin listener only (server.admin_listen).",
    responses(
        (status = 200, description = "Ready or degraded (Redis down, provider circuit open); the body says which"),
        (status = 503, description = "The audit store cannot be written: no decision can be given"),
    ))]
pub async fn readyz(gate: web::Data<Gate>) -> HttpResponse {
    let status = gate.resolver().health();
    let audit = gate.audit_writable().await;
    if let Err(error) = &audit {
        // The cause (paths, SQL) stays in the log; probes see the state.
        tracing::warn!(%error, "readiness: the audit store cannot be written");
    }
    let degraded = !status.cache_up || status.provider_circuit != "closed";
    let body = json!({
        "status": if audit.is_err() { "not_ready" } else if degraded { "degraded" } else { "ready" },
        "policy_version": gate.policy().version(),
        "audit": if audit.is_ok() { "writable" } else { "unwritable" },
        "audit_backlog": gate.audit_backlog(),
        "audit_unloaded": gate.audit_unloaded(),
        "cache": {"backend": status.cache, "up": status.cache_up, "l1_entries": status.l1_entries},
        "provider_circuit": status.provider_circuit,
    });
    if audit.is_err() {
        HttpResponse::ServiceUnavailable().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}
