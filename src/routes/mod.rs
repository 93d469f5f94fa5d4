//! HTTP routes, one file per resource. Handlers parse requests into domain
//! types, call the gate, and shape the answer; they never touch Redis, SQL or
//! the provider. Errors become HTTP in `error.rs` and nowhere else.

mod checks;
mod error;
mod health;

use actix_web::web;

pub use error::{json_config, not_found, ApiError};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .service(
            web::resource("/v1/checks/trip")
                .route(web::post().to(checks::trip))
                .default_service(web::to(error::method_not_allowed)),
        )
        .service(
            web::resource("/healthz")
                .route(web::get().to(health::healthz))
                .default_service(web::to(error::method_not_allowed)),
        );
}
