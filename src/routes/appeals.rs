//! Appeals: `POST /v1/appeals` (dispatch on behalf of the refused person,
//! or ops), `GET /v1/appeals` and `/v1/appeals/{appeal_id}` (regulator and
//! ops; dispatch the appeals it filed, a fleet its clients'), and
//! `POST /v1/appeals/{appeal_id}/resolution` (regulator).
//!
//! The guard of the scope authenticates and rate-limits every role that
//! may call any of them; each handler then names the roles it takes.

use std::collections::HashMap;

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::appeals::{Appeals, Filing, Resolution};
use crate::audit::{
    check_known, parse_limit, rfc3339_micros, time_range, AppealCursor, AppealFilter, AppealRow,
    Cursor, FilterError, ReadScope,
};
use crate::auth::{AuthError, Caller};
use crate::config::Role;
use crate::domain::{AppealOutcome, AppealedParty, CityCode, FreeText, InvalidRequest};

/// The caller, if its role is one of `roles` (authentication off: anyone).
pub fn caller_in(request: &HttpRequest, roles: &[Role]) -> Result<Option<Caller>, ApiError> {
    match request.extensions().get::<Caller>() {
        None => Ok(None),
        Some(caller) if roles.contains(&caller.role) => Ok(Some(caller.clone())),
        Some(caller) => Err(ApiError::Auth(AuthError::forbidden(
            &caller.name,
            caller.role,
            roles,
        ))),
    }
}

/// Which appeals a caller may see: a regulator its cities; a dispatch
/// client what it filed; a fleet what its clients filed, in its cities.
pub fn appeal_scope(caller: Option<&Caller>) -> ReadScope {
    match caller {
        None => ReadScope::default(),
        Some(c) if c.role == Role::Dispatch => ReadScope {
            clients: Some(vec![c.name.clone()]),
            cities: None,
        },
        Some(c) => ReadScope {
            clients: c.clients.clone(),
            cities: c.cities.clone(),
        },
    }
}

/// The body of `POST /v1/appeals`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppealBody {
    /// The rejected decision.
    pub decision_id: String,
    /// driver or passenger: whose refusal is contested.
    #[schema(pattern = "^(driver|passenger)$")]
    pub party: String,
    /// For a passenger: the position in the check's `passengers` (needed
    /// when the decision has several).
    pub index: Option<u32>,
    /// What the person argues, 1 to 2,000 characters. Raw ids of the
    /// decision's parties are replaced by "[subject id]"; never put a raw
    /// id here.
    pub grounds: String,
}

/// The body of `POST /v1/appeals/{appeal_id}/resolution`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolutionBody {
    #[schema(pattern = "^(upheld|overturned)$")]
    pub outcome: String,
    /// Overturned only, and then required: provider_data_wrong,
    /// status_outdated, wrong_person, policy_misapplied or other.
    pub cause: Option<String>,
    /// The regulator's explanation, 1 to 2,000 characters.
    pub note: String,
}

/// A regulator's resolution of an appeal.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ResolutionView {
    /// upheld or overturned.
    pub outcome: String,
    pub cause: Option<String>,
    pub note: String,
    pub resolved_at: String,
    pub resolved_by: Option<String>,
}

/// An appeal as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppealView {
    pub appeal_id: String,
    /// open or resolved.
    pub state: String,
    pub decision_id: String,
    /// driver or passenger.
    pub party: String,
    pub index: Option<u32>,
    pub city: String,
    pub hook: String,
    pub filed_at: String,
    /// The client that filed it (absent with authentication off).
    pub filed_by: Option<String>,
    pub grounds: String,
    /// The grounds hold a run of digits as long as a phone or ID number:
    /// perhaps a personal identifier, kept as written.
    pub possible_identifier: bool,
    pub resolution: Option<ResolutionView>,
}

impl From<&AppealRow> for AppealView {
    fn from(a: &AppealRow) -> Self {
        let resolution = a.outcome.as_ref().map(|outcome| ResolutionView {
            outcome: outcome.clone(),
            cause: a.cause.clone(),
            note: a.note.clone().unwrap_or_default(),
            resolved_at: a.resolved_at_us.map(rfc3339_micros).unwrap_or_default(),
            resolved_by: a.resolved_by.clone().filter(|b| !b.is_empty()),
        });
        Self {
            appeal_id: a.appeal_id.clone(),
            state: a.state.clone(),
            decision_id: a.decision_id.clone(),
            party: a.party.clone(),
            index: a.party_index,
            city: a.city.clone(),
            hook: a.hook.clone(),
            filed_at: rfc3339_micros(a.filed_at_us),
            filed_by: Some(a.filed_by.clone()).filter(|b| !b.is_empty()),
            grounds: a.grounds.clone(),
            possible_identifier: a.flagged,
            resolution,
        }
    }
}

/// The answer to filing or resolving: the appeal, and what its text went
/// through.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WrittenView {
    #[serde(flatten)]
    pub appeal: AppealView,
    /// Tokens of the text replaced because they were a party's raw id.
    pub redacted: u32,
    /// Things the caller should know (a possible identifier kept in the text).
    pub warnings: Vec<String>,
}

const POSSIBLE_ID_WARNING: &str = "the text holds a run of digits as long as a phone or ID number; it is kept as written and flagged. Never put a person's raw id in appeal text";

fn written(w: crate::appeals::Written) -> WrittenView {
    let flagged = w.appeal.flagged
        || w.appeal
            .note
            .as_deref()
            .is_some_and(crate::domain::possible_identifier);
    WrittenView {
        appeal: AppealView::from(&w.appeal),
        redacted: w.redacted,
        warnings: if flagged {
            vec![POSSIBLE_ID_WARNING.into()]
        } else {
            Vec::new()
        },
    }
}

#[utoipa::path(
    post,
    path = "/v1/appeals",
    tag = "appeals",
    request_body = AppealBody,
    responses(
        (status = 201, description = "Filed: the appeal is open, and its record durable in the trail", body = WrittenView),
        (status = 400, description = "Malformed JSON or a bad field (INVALID_FIELD, field names it)", body = super::openapi::ErrorDoc),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not dispatch or ops", body = super::openapi::ErrorDoc),
        (status = 404, description = "DECISION_NOT_FOUND (a dispatch client sees only the decisions it asked for)", body = super::openapi::ErrorDoc),
        (status = 409, description = "APPEAL_ALREADY_OPEN: the party has an open appeal against this decision", body = super::openapi::ErrorDoc),
        (status = 413, description = "Body over 64 KiB", body = super::openapi::ErrorDoc),
        (status = 415, description = "Not application/json", body = super::openapi::ErrorDoc),
        (status = 422, description = "NOT_APPEALABLE: the decision allowed, or did not refuse that party", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The appeal could not be recorded (AUDIT_UNAVAILABLE); retry", body = super::openapi::ErrorDoc),
    )
)]
pub async fn file(
    appeals: web::Data<Appeals>,
    request: HttpRequest,
    body: web::Json<AppealBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller_in(&request, &[Role::Dispatch, Role::Ops])?;
    let body = body.into_inner();
    let decision_id = uuid::Uuid::parse_str(&body.decision_id).map_err(|_| InvalidRequest {
        field: "decision_id".into(),
        problem: format!("{:?} is not a UUID", body.decision_id),
    })?;
    let filing = Filing {
        decision_id,
        party: AppealedParty::parse(&body.party, body.index)?,
        grounds: FreeText::parse("grounds", &body.grounds)?,
        // A dispatch client appeals only the decisions it asked for.
        scope: appeal_scope(caller.as_ref()),
        by: caller.map(|c| c.name),
    };
    let done = appeals.file(filing).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/v1/appeals/{}", done.appeal.appeal_id),
        ))
        .json(written(done)))
}

#[utoipa::path(
    post,
    path = "/v1/appeals/{appeal_id}/resolution",
    tag = "appeals",
    params(("appeal_id" = uuid::Uuid, Path)),
    request_body = ResolutionBody,
    responses(
        (status = 200, description = "Resolved: final, and its record durable in the trail", body = WrittenView),
        (status = 400, description = "Malformed JSON or a bad field (INVALID_FIELD: outcome, cause, note)", body = super::openapi::ErrorDoc),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not regulator", body = super::openapi::ErrorDoc),
        (status = 404, description = "APPEAL_NOT_FOUND (or outside the regulator's cities)", body = super::openapi::ErrorDoc),
        (status = 409, description = "APPEAL_ALREADY_RESOLVED: a resolution is final", body = super::openapi::ErrorDoc),
        (status = 413, description = "Body over 64 KiB", body = super::openapi::ErrorDoc),
        (status = 415, description = "Not application/json", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The resolution could not be recorded (AUDIT_UNAVAILABLE); retry", body = super::openapi::ErrorDoc),
    )
)]
pub async fn resolve(
    appeals: web::Data<Appeals>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<ResolutionBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller_in(&request, &[Role::Regulator])?;
    let appeal_id = appeal_id(&path)?;
    let body = body.into_inner();
    let resolution = parse_resolution(&body.outcome, body.cause.as_deref(), &body.note, &caller)?;
    let done = appeals
        .resolve(&appeal_id, resolution, &appeal_scope(caller.as_ref()))
        .await?;
    Ok(HttpResponse::Ok().json(written(done)))
}

/// A resolution from its three fields (the API's body and the console's
/// form say the same thing).
pub fn parse_resolution(
    outcome: &str,
    cause: Option<&str>,
    note: &str,
    caller: &Option<Caller>,
) -> Result<Resolution, ApiError> {
    let outcome = AppealOutcome::parse(outcome).ok_or_else(|| InvalidRequest {
        field: "outcome".into(),
        problem: format!("{outcome:?} is not upheld or overturned"),
    })?;
    let note = FreeText::parse("note", note)?;
    let cause = cause.map(str::trim).filter(|c| !c.is_empty());
    Ok(Resolution::new(
        outcome,
        cause,
        note,
        caller.as_ref().map(|c| c.name.clone()),
    )?)
}

fn appeal_id(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| {
            ApiError::InvalidParameter(FilterError {
                param: "appeal_id",
                problem: "is not a UUID".into(),
            })
        })
}

#[utoipa::path(
    get,
    path = "/v1/appeals/{appeal_id}",
    tag = "appeals",
    params(("appeal_id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "The appeal", body = AppealView),
        (status = 400, description = "The id is not a UUID (INVALID_PARAMETER)", body = super::openapi::ErrorDoc),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role is not regulator, ops, dispatch or fleet", body = super::openapi::ErrorDoc),
        (status = 404, description = "APPEAL_NOT_FOUND (or outside the caller's scope)", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The audit store is unavailable", body = super::openapi::ErrorDoc),
    )
)]
pub async fn appeal(
    appeals: web::Data<Appeals>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller_in(&request, READERS)?;
    let appeal = appeals
        .get(&appeal_id(&path)?, &appeal_scope(caller.as_ref()))
        .await?;
    Ok(HttpResponse::Ok().json(AppealView::from(&appeal)))
}

/// Who may read appeals (each within its scope).
const READERS: &[Role] = &[Role::Regulator, Role::Ops, Role::Dispatch, Role::Fleet];

/// Query parameters of `GET /v1/appeals` (also their OpenAPI description).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AppealQuery {
    /// open or resolved; both when absent.
    #[param(pattern = "^(open|resolved)$")]
    state: Option<String>,
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    city: Option<String>,
    /// Inclusive RFC 3339 lower bound of filed_at.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Exclusive RFC 3339 upper bound of filed_at.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Appeals against this decision only.
    decision_id: Option<uuid::Uuid>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// next_cursor of the previous page.
    cursor: Option<String>,
}

const LIST_PARAMS: &[&str] = &[
    "state",
    "city",
    "from",
    "to",
    "decision_id",
    "limit",
    "cursor",
];

/// The filter of a list's query parameters, within `scope`.
pub fn appeal_filter(
    params: &HashMap<String, String>,
    scope: &ReadScope,
) -> Result<AppealFilter, ApiError> {
    check_known(params.keys(), LIST_PARAMS)?;
    let bad = |param: &'static str, problem: String| FilterError { param, problem };
    let state = match params.get("state").map(String::as_str) {
        None => None,
        Some("open") => Some("open"),
        Some("resolved") => Some("resolved"),
        Some(other) => {
            return Err(bad("state", format!("{other:?} is not open or resolved")).into())
        }
    };
    let (from_us, to_us) = time_range(
        params.get("from").map(String::as_str),
        params.get("to").map(String::as_str),
    )?;
    let city = params
        .get("city")
        .map(|c| {
            CityCode::parse(c)
                .map(|c| c.as_str().to_owned())
                .map_err(|e| bad("city", e.to_string()))
        })
        .transpose()?;
    let decision_id = params
        .get("decision_id")
        .map(|d| {
            uuid::Uuid::parse_str(d)
                .map(|d| d.to_string())
                .map_err(|_| bad("decision_id", "is not a UUID".into()))
        })
        .transpose()?;
    Ok(AppealFilter {
        state,
        from_us,
        to_us,
        cities: scope.cities_for(city.as_ref())?.unwrap_or_default(),
        city,
        filed_by: scope.clients.clone().unwrap_or_default(),
        decision_id,
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AppealsPage {
    pub appeals: Vec<AppealView>,
    /// Null on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/appeals",
    tag = "appeals",
    params(AppealQuery),
    responses(
        (status = 200, description = "Appeals oldest first (by filing time), and the cursor of the next page", body = AppealsPage),
        (status = 400, description = "A bad or unknown parameter (INVALID_PARAMETER, field names it)", body = super::openapi::ErrorDoc),
        (status = 401, description = "No or unknown bearer token", body = super::openapi::ErrorDoc),
        (status = 403, description = "The caller's role may not read appeals (FORBIDDEN), or city is outside its scope (OUT_OF_SCOPE)", body = super::openapi::ErrorDoc),
        (status = 429, description = "Over the client's rate limit; see Retry-After", body = super::openapi::ErrorDoc),
        (status = 503, description = "The audit store is unavailable", body = super::openapi::ErrorDoc),
    )
)]
pub async fn list(
    appeals: web::Data<Appeals>,
    request: HttpRequest,
    params: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller_in(&request, READERS)?;
    let filter = appeal_filter(&params, &appeal_scope(caller.as_ref()))?;
    let limit = parse_limit(params.get("limit").map(String::as_str))?;
    let cursor = params
        .get("cursor")
        .map(|c| Cursor::decode(c))
        .transpose()?
        .map(|c| AppealCursor {
            filed_at_us: c.decided_at_us,
            appeal_id: c.decision_id,
        });
    let (rows, next) = appeals.list(&filter, cursor.as_ref(), limit).await?;
    Ok(HttpResponse::Ok().json(AppealsPage {
        appeals: rows.iter().map(AppealView::from).collect(),
        next_cursor: next.map(|c| {
            Cursor {
                decided_at_us: c.filed_at_us,
                decision_id: c.appeal_id,
            }
            .encode()
        }),
    }))
}
