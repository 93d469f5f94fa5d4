//! Liveness and readiness.
//!
//! Readiness stays 200 while Redis is down or the provider's circuit is
//! open: dispatch is better served by a degraded tripgate (L1, the provider
//! directly, stale copies) than by none. The body says what is degraded.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::gate::Gate;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(gate: web::Data<Gate>) -> HttpResponse {
    let status = gate.resolver().health();
    let degraded = !status.cache_up || status.provider_circuit != "closed";
    HttpResponse::Ok().json(json!({
        "status": if degraded { "degraded" } else { "ready" },
        "policy_version": gate.policy().version(),
        "cache": {"backend": status.cache, "up": status.cache_up, "l1_entries": status.l1_entries},
        "provider_circuit": status.provider_circuit,
    }))
}
