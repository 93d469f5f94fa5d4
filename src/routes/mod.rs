//! HTTP routes, one file per resource. Handlers parse requests into domain
//! types, call the gate, and shape the answer; they never touch Redis, SQL or
//! the provider. Errors become HTTP in `error.rs` and nowhere else.

mod audit;
mod checks;
mod error;
mod events;
mod health;

use actix_web::web;

pub use error::{json_config, not_found, query_config, ApiError};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(query_config())
        .service(
            web::resource("/v1/checks/trip")
                .route(web::post().to(checks::trip))
                .default_service(web::to(error::method_not_allowed)),
        )
        .service(get("/v1/audit/decisions", audit::decisions))
        .service(get("/v1/audit/decisions/{decision_id}", audit::decision))
        .service(get("/v1/audit/summary", audit::summary))
        .service(get("/v1/audit/export", audit::export))
        .service(
            web::resource("/v1/status-events")
                .route(web::post().to(events::status_event))
                .default_service(web::to(error::method_not_allowed)),
        )
        .service(get("/healthz", health::healthz))
        .service(get("/readyz", health::readyz));
}

/// A GET-only resource; other methods get a JSON 405.
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(error::method_not_allowed))
}
