//! HTTP routes, one file per resource. Handlers parse requests into domain
//! types, call the gate, and shape the answer; they never touch Redis, SQL or
//! the provider. Errors become HTTP in `error.rs` and nowhere else.

mod admin;
pub mod appeals;
mod audit;
mod checks;
pub(crate) use checks::Texts;
mod error;
mod events;
mod guard;
mod health;
pub mod observe;
pub mod openapi;

use actix_web::middleware::from_fn;
use actix_web::web;

use utoipa::OpenApi;

pub use error::{json_config, not_found, query_config, ApiError, ErrorCode};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route tripgate serves, as (method, path template); the OpenAPI
/// document must describe each one (tested).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/checks/trip"),
    ("post", "/v1/checks/driver-shift"),
    ("post", "/v1/checks/passenger-order"),
    ("post", "/v1/checks/candidates"),
    ("get", "/v1/audit/decisions"),
    ("get", "/v1/audit/decisions/{decision_id}"),
    ("get", "/v1/audit/summary"),
    ("get", "/v1/audit/export"),
    ("get", "/v1/audit/heads"),
    ("post", "/v1/appeals"),
    ("get", "/v1/appeals"),
    ("get", "/v1/appeals/{appeal_id}"),
    ("post", "/v1/appeals/{appeal_id}/resolution"),
    ("post", "/v1/status-events"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("post", "/admin/policy/reload"),
];

/// The API listener. Each group of routes names the role that may call it.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(query_config())
        .service(
            web::scope("/v1/checks")
                .wrap(from_fn(guard::require_dispatch))
                .service(post("/trip", checks::trip))
                .service(post("/driver-shift", checks::driver_shift))
                .service(post("/passenger-order", checks::passenger_order))
                .service(post("/candidates", checks::candidates)),
        )
        .service(
            web::scope("/v1/audit")
                .wrap(from_fn(guard::require_trail_reader))
                .service(get("/decisions", audit::decisions))
                .service(get("/decisions/{decision_id}", audit::decision))
                .service(get("/summary", audit::summary))
                .service(get("/export", audit::export))
                .service(get("/heads", audit::heads)),
        )
        .service(
            web::scope("/v1/appeals")
                .wrap(from_fn(guard::require_appeal_party))
                .service(
                    web::resource("")
                        .route(web::post().to(appeals::file))
                        .route(web::get().to(appeals::list))
                        .default_service(web::to(error::get_or_post)),
                )
                .service(get("/{appeal_id}", appeals::appeal))
                .service(post("/{appeal_id}/resolution", appeals::resolve)),
        )
        .service(
            web::scope("/v1/status-events")
                .wrap(from_fn(guard::require_provider))
                .service(post("", events::status_event)),
        )
        // The regulator's web pages (their own sign-in: see `console`).
        .configure(crate::console::configure)
        // Unauthenticated: liveness, and the API description at
        // /openapi.json with Swagger UI at /docs/.
        .service(get("/healthz", health::healthz))
        .service(
            utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                .url("/openapi.json", openapi::ApiDoc::openapi()),
        );
}

/// The admin listener: probes (unauthenticated, for the kubelet) and
/// metrics (role `ops` when authentication is on).
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    cfg.service(get("/healthz", health::healthz))
        .service(get("/readyz", health::readyz))
        .service(
            web::scope("/metrics")
                .wrap(from_fn(guard::require_ops))
                .service(get("", admin::metrics)),
        )
        .service(
            web::scope("/admin")
                .wrap(from_fn(guard::require_ops))
                .service(post("/policy/reload", admin::reload_policy)),
        );
}

/// A POST-only resource; other methods get a JSON 405.
fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(error::post_only))
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
        .default_service(web::to(error::get_only))
}
