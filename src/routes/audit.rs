//! The regulator's API over the audit trail:
//! `GET /v1/audit/decisions`, `/v1/audit/decisions/{decision_id}`,
//! `/v1/audit/summary`, `/v1/audit/export` and `/v1/audit/heads`.
//!
//! Query parameters are checked strictly: an unknown parameter is an error,
//! not ignored, because a misspelt filter would silently widen a regulator's
//! answer.

use std::collections::HashMap;

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;

use super::appeals::AppealView;
use super::ApiError;
use crate::appeals::Appeals;
use crate::audit::{
    parse_limit, AppealCounts, AppealFilter, AuditReader, Cursor, DecisionFilter, ExportFormat,
    FilterError, GroupBy, HeadView, RawFilter, ReadScope, RecordView, SummaryRow,
};

const FILTERS: &[&str] = &[
    "from", "to", "decision", "reason", "city", "hook", "trip_id", "subject", "client",
];

/// What the caller may read: everything with authentication off or for an
/// unlimited regulator; a fleet its clients' decisions; a client limited
/// to cities those cities'.
fn scope_of(request: &HttpRequest) -> ReadScope {
    request
        .extensions()
        .get::<crate::auth::Caller>()
        .map(|caller| ReadScope {
            clients: caller.clients.clone(),
            cities: caller.cities.clone(),
        })
        .unwrap_or_default()
}

/// The filter of the query, narrowed to the caller's scope.
fn scoped(
    request: &HttpRequest,
    filter: Result<DecisionFilter, FilterError>,
) -> Result<DecisionFilter, ApiError> {
    let mut filter = filter?;
    scope_of(request).restrict(&mut filter)?;
    Ok(filter)
}

type Params = web::Query<HashMap<String, String>>;

fn check_known(params: &HashMap<String, String>, extra: &[&str]) -> Result<(), FilterError> {
    let known: Vec<&str> = FILTERS.iter().chain(extra).copied().collect();
    crate::audit::check_known(params.keys(), &known)
}

fn raw_filter(params: &HashMap<String, String>) -> RawFilter {
    let get = |k: &str| params.get(k).cloned();
    RawFilter {
        from: get("from"),
        to: get("to"),
        decision: get("decision"),
        reason: get("reason"),
        city: get("city"),
        hook: get("hook"),
        trip_id: get("trip_id"),
        subject: get("subject"),
        client: get("client"),
    }
}

#[derive(Serialize)]
struct DecisionsPage<'a> {
    decisions: Vec<RecordView<'a>>,
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/audit/decisions",
    tag = "audit",
    params(
        RawFilter,
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "Records newest first, and the cursor of the next page (null on the last)"),
        (status = 400, description = "A bad or unknown parameter (INVALID_PARAMETER, field names it)", body = super::openapi::ErrorDoc),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not regulator or fleet (FORBIDDEN), or a filter names a city or client outside its scope (OUT_OF_SCOPE)", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The audit store is unavailable", body = super::openapi::ErrorDoc),
    )
)]
pub async fn decisions(
    reader: web::Data<AuditReader>,
    request: HttpRequest,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    check_known(&params, &["limit", "cursor"])?;
    let filter = scoped(&request, reader.filter(&raw_filter(&params)))?;
    let limit = parse_limit(params.get("limit").map(String::as_str))?;
    let cursor = params
        .get("cursor")
        .map(|c| Cursor::decode(c))
        .transpose()?;
    let page = reader.page(&filter, cursor.as_ref(), limit).await?;
    Ok(HttpResponse::Ok().json(DecisionsPage {
        decisions: page.records.iter().map(RecordView::new).collect(),
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/audit/decisions/{decision_id}",
    tag = "audit",
    params(("decision_id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "One decision's record, with the appeals against it", body = DecisionWithAppeals),
        (status = 404, description = "DECISION_NOT_FOUND", body = super::openapi::ErrorDoc),
        (status = 400, description = "A bad or unknown parameter (INVALID_PARAMETER, field names it)", body = super::openapi::ErrorDoc),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not regulator or fleet (FORBIDDEN), or a filter names a city or client outside its scope (OUT_OF_SCOPE)", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The audit store is unavailable", body = super::openapi::ErrorDoc),
    )
)]
pub async fn decision(
    reader: web::Data<AuditReader>,
    appeals: web::Data<Appeals>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::parse_str(&path).map_err(|_| {
        ApiError::InvalidParameter(FilterError {
            param: "decision_id",
            problem: "is not a UUID".into(),
        })
    })?;
    // Outside the caller's scope it is as if it did not exist; an appeal's
    // record is read through /v1/appeals.
    match reader.get(&id.to_string()).await? {
        Some(record) if !record.record.is_appeal() && scope_of(&request).admits(&record.record) => {
            let appeals = appeals
                .of_decision(&record.record.decision_id)
                .await?
                .iter()
                .map(AppealView::from)
                .collect();
            Ok(HttpResponse::Ok().json(DecisionWithAppeals {
                record: RecordView::new(&record),
                appeals,
            }))
        }
        _ => Err(ApiError::DecisionNotFound),
    }
}

/// One decision and the appeals against it (an overturned refusal says
/// why in its resolution).
#[derive(Serialize, utoipa::ToSchema)]
pub struct DecisionWithAppeals<'a> {
    #[serde(flatten)]
    record: RecordView<'a>,
    /// Oldest first; empty when none was filed.
    appeals: Vec<AppealView>,
}

#[derive(Serialize)]
struct Summary {
    group_by: &'static str,
    total: u64,
    rows: Vec<SummaryRow>,
    /// Appeals filed in the window (and city) by where they stand.
    appeals: AppealCounts,
}

#[utoipa::path(
    get,
    path = "/v1/audit/summary",
    tag = "audit",
    params(
        RawFilter,
        ("group_by" = Option<String>, Query, pattern = "^(reason|city|hook|hour)$", description = "reason (default), city, hook or hour"),
    ),
    responses(
        (status = 200, description = "Decisions counted per group: {group_by, total, rows: [{key, count}], appeals: {filed, open, upheld, overturned}} (appeals filed in the window and city); without `from`, the audit.default_window_hours before `to` (or now)"),
        (status = 400, description = "A bad or unknown parameter (INVALID_PARAMETER, field names it)", body = super::openapi::ErrorDoc),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not regulator or fleet (FORBIDDEN), or a filter names a city or client outside its scope (OUT_OF_SCOPE)", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The audit store is unavailable", body = super::openapi::ErrorDoc),
    )
)]
pub async fn summary(
    reader: web::Data<AuditReader>,
    appeals: web::Data<Appeals>,
    request: HttpRequest,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    check_known(&params, &["group_by"])?;
    let filter = scoped(&request, reader.bounded_filter(&raw_filter(&params)))?;
    let group_by = GroupBy::parse(params.get("group_by").map(String::as_str))?;
    let rows = reader.summary(&filter, group_by).await?;
    let appeals = appeals
        .counts(&AppealFilter {
            from_us: filter.from_us,
            to_us: filter.to_us,
            city: filter.city.clone(),
            cities: filter.cities.clone(),
            filed_by: filter.clients.clone(),
            ..Default::default()
        })
        .await?;
    let name = match group_by {
        GroupBy::Reason => "reason",
        GroupBy::City => "city",
        GroupBy::Hook => "hook",
        GroupBy::Hour => "hour",
    };
    Ok(HttpResponse::Ok().json(Summary {
        group_by: name,
        total: rows.iter().map(|r| r.count).sum(),
        rows,
        appeals,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/audit/export",
    tag = "audit",
    params(
        RawFilter,
        ("format" = Option<String>, Query, pattern = "^(ndjson|csv)$", description = "ndjson (default) or csv"),
    ),
    responses(
        (status = 200, description = "Every matching record, newest first, streamed (appeals' records too, decision appeal_filed or appeal_resolved, unless a decision or reason filter excludes them); without `from`, the audit.default_window_hours before `to` (or now); NDJSON, or CSV with format=csv", content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 400, description = "A bad or unknown parameter (INVALID_PARAMETER, field names it)", body = super::openapi::ErrorDoc),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not regulator or fleet (FORBIDDEN), or a filter names a city or client outside its scope (OUT_OF_SCOPE)", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The audit store is unavailable", body = super::openapi::ErrorDoc),
    )
)]
pub async fn export(
    reader: web::Data<AuditReader>,
    request: HttpRequest,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    check_known(&params, &["format"])?;
    let mut filter = scoped(&request, reader.bounded_filter(&raw_filter(&params)))?;
    // Every link of the chains the window covers, so an export verifies
    // on its own: appeals' records too (decision appeal_filed or
    // appeal_resolved).
    filter.with_appeals = true;
    let format =
        ExportFormat::parse(params.get("format").map(String::as_str)).ok_or_else(|| {
            ApiError::InvalidParameter(FilterError {
                param: "format",
                problem: "must be ndjson or csv".into(),
            })
        })?;
    // Errors after the first byte cannot change the status any more; they
    // end the stream, which clients see as a truncated transfer.
    let body = reader.export(filter, format).map(|chunk| {
        chunk.map_err(|e| {
            tracing::error!(error = %crate::telemetry::error_chain(&e), "audit export failed mid-stream");
            actix_web::error::ErrorServiceUnavailable("audit store failed during export")
        })
    });
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .streaming(body))
}

/// The body of `GET /v1/audit/heads`: what a regulator saves to detect,
/// later, a chain cut short or deleted (`tripgate audit verify --heads`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Heads {
    /// `ed25519:<base64>`: the key the service signs with now.
    public_key: String,
    heads: Vec<HeadView>,
}

#[utoipa::path(
    get,
    path = "/v1/audit/heads",
    tag = "audit",
    responses(
        (status = 200, description = "The newest signed head of every chain, closed or not, and the public key", body = Heads),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not regulator or fleet (FORBIDDEN), or a filter names a city or client outside its scope (OUT_OF_SCOPE)", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The audit store is unavailable", body = super::openapi::ErrorDoc),
    )
)]
pub async fn heads(reader: web::Data<AuditReader>) -> Result<HttpResponse, ApiError> {
    let heads = reader.heads().await?.iter().map(HeadView::from).collect();
    Ok(HttpResponse::Ok().json(Heads {
        public_key: reader.public_key().to_owned(),
        heads,
    }))
}
