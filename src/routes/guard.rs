//! The authentication middleware: each route group requires one role
//! (`require_dispatch`, ...); `auth::Authenticator` decides, this turns its
//! answer into the request's caller or an error response.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use super::ApiError;
use crate::auth::{AuthError, Authenticator};
use crate::config::Role;

async fn guard(
    needed: &[Role],
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let authenticator = request
        .app_data::<web::Data<Authenticator>>()
        .cloned()
        .ok_or_else(|| {
            actix_web::error::ErrorInternalServerError("authenticator not configured")
        })?;
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match authenticator.authorize(header, needed) {
        Ok(caller) => {
            if let Some(caller) = caller {
                tracing::Span::current().record("client", caller.name.as_str());
                request.extensions_mut().insert(caller);
            }
            next.call(request).await
        }
        Err(error) => {
            if let Some(metrics) = request.app_data::<web::Data<crate::metrics::Metrics>>() {
                let reason = match error {
                    AuthError::MissingToken | AuthError::UnknownToken => "unauthenticated",
                    AuthError::Forbidden { .. } => "forbidden",
                    AuthError::RateLimited { .. } => "rate_limited",
                };
                metrics.auth_rejections.with_label_values(&[reason]).inc();
            }
            Err(ApiError::from(error).into())
        }
    }
}

pub async fn require_dispatch(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    guard(&[Role::Dispatch], request, next).await
}

/// The trail's readers: regulators, and fleets (within their scope).
pub async fn require_trail_reader(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    guard(&[Role::Regulator, Role::Fleet], request, next).await
}

pub async fn require_provider(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    guard(&[Role::Provider], request, next).await
}

pub async fn require_ops(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    guard(&[Role::Ops], request, next).await
}

/// Everyone an appeal route may concern: the handlers narrow it per route
/// (`appeals::caller_in`).
pub async fn require_appeal_party(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    guard(
        &[Role::Dispatch, Role::Ops, Role::Regulator, Role::Fleet],
        request,
        next,
    )
    .await
}
