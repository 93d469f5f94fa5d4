//! `/console/appeals`: open appeals first, oldest first, each with the
//! form a regulator resolves it with; then the resolved ones (each list
//! paged on its own). The form posts to
//! `/console/appeals/{id}/resolution`, which resolves exactly as
//! `POST /v1/appeals/{id}/resolution` does.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};

use super::pages::viewer;
use super::{see_other, t, when, Viewer};
use crate::appeals::{AppealError, Appeals};
use crate::audit::{AppealCursor, AppealFilter, AppealRow, Cursor};
use crate::config::Role;
use crate::domain::OverturnCause;
use crate::messages::Lang;

/// One appeal as a card: who filed it when, the grounds, the resolution.
pub fn appeal_card(lang: Lang, a: &AppealRow) -> Markup {
    let state_key = if a.state == "open" {
        "state.open"
    } else {
        "state.resolved"
    };
    html! {
        article class={"appeal " (a.state)} id={"appeal-" (a.appeal_id)} {
            p class="meta" {
                strong class="state" { (t(lang, state_key)) } " · "
                (t(lang, "col.filed")) " " (when(a.filed_at_us))
                @if !a.filed_by.is_empty() { " · " (t(lang, "col.filed_by")) " " (a.filed_by) }
                " · " (t(lang, "col.party")) " " (a.party)
                @if let Some(i) = a.party_index { " #" (i) }
                " · " a href=(format!("/console/decisions/{}", a.decision_id)) { (t(lang, "col.decision")) }
            }
            @if a.flagged { p class="warning" { (t(lang, "appeals.id_warning")) } }
            blockquote class="grounds" { (a.grounds) }
            @if let Some(outcome) = &a.outcome {
                p class={"outcome " (outcome)} {
                    (t(lang, "col.outcome")) ": "
                    strong class="outcome-word" { (t(lang, if outcome == "overturned" { "outcome.overturned" } else { "outcome.upheld" })) }
                    @if let Some(cause) = &a.cause { " (" (t(lang, &format!("cause.{cause}"))) ")" }
                    @if let Some(at) = a.resolved_at_us { " · " (when(at)) }
                    @if let Some(by) = a.resolved_by.as_deref().filter(|b| !b.is_empty()) { " · " (by) }
                }
                @if let Some(note) = &a.note { blockquote class="note" { (note) } }
            }
        }
    }
}

fn resolve_form(viewer: &Viewer, a: &AppealRow) -> Markup {
    let lang = viewer.lang;
    html! {
        form method="post" action=(format!("/console/appeals/{}/resolution", a.appeal_id)) class="resolve" {
            input type="hidden" name="csrf" value=(viewer.csrf());
            fieldset {
                legend { (t(lang, "appeals.outcome")) }
                label { input type="radio" name="outcome" value="upheld" required; (t(lang, "outcome.upheld")) }
                label { input type="radio" name="outcome" value="overturned"; (t(lang, "outcome.overturned")) }
            }
            label { (t(lang, "appeals.cause")) select name="cause" {
                option value="" { "–" }
                @for cause in OverturnCause::ALL {
                    option value=(cause.as_str()) { (t(lang, &format!("cause.{}", cause.as_str()))) }
                }
            } }
            label { (t(lang, "appeals.note")) textarea name="note" required maxlength="2000" rows="3" {} }
            p class="hint" { (t(lang, "appeals.note_hint")) }
            button type="submit" { (t(lang, "appeals.submit")) }
        }
    }
}

/// Only a regulator (or anyone, with authentication off) resolves.
fn may_resolve(viewer: &Viewer) -> bool {
    viewer
        .caller
        .as_ref()
        .is_none_or(|c| c.role == Role::Regulator)
}

/// Appeals per list and page.
const PAGE: u32 = 50;

/// Where each list's page starts (`?open=` and `?resolved=`: the cursor
/// of the page before).
#[derive(Default)]
struct Pages {
    open: Option<AppealCursor>,
    resolved: Option<AppealCursor>,
}

impl Pages {
    fn parse(query: &HashMap<String, String>) -> Self {
        let cursor = |key: &str| {
            query
                .get(key)
                .and_then(|c| Cursor::decode(c).ok())
                .map(|c| AppealCursor {
                    filed_at_us: c.decided_at_us,
                    appeal_id: c.decision_id,
                })
        };
        Self {
            open: cursor("open"),
            resolved: cursor("resolved"),
        }
    }
}

fn next_link(list: &str, next: Option<AppealCursor>) -> Option<String> {
    next.map(|c| {
        let cursor = Cursor {
            decided_at_us: c.filed_at_us,
            decision_id: c.appeal_id,
        };
        format!("/console/appeals?{list}={}", cursor.encode())
    })
}

async fn render(
    viewer: &Viewer,
    appeals: &Appeals,
    status: StatusCode,
    problem: Option<String>,
    pages: Pages,
) -> HttpResponse {
    let lang = viewer.lang;
    let scope = viewer.scope();
    let filter = |state| AppealFilter {
        state: Some(state),
        cities: scope.cities.clone().unwrap_or_default(),
        ..Default::default()
    };
    let open = appeals
        .list(&filter("open"), pages.open.as_ref(), PAGE)
        .await;
    let resolved = appeals
        .list(&filter("resolved"), pages.resolved.as_ref(), PAGE)
        .await;
    let ((open, next_open), (resolved, next_resolved)) = match (open, resolved) {
        (Ok(open), Ok(resolved)) => (open, resolved),
        (Err(e), _) | (_, Err(e)) => return viewer.unavailable(&e),
    };
    let next_open = next_link("open", next_open);
    let next_resolved = next_link("resolved", next_resolved);
    let body = html! {
        @if let Some(problem) = problem { p class="error" id="problem" { (problem) } }
        h2 { (t(lang, "appeals.open")) }
        @if open.is_empty() { p { (t(lang, "appeals.none_open")) } }
        @for a in &open {
            (appeal_card(lang, a))
            @if may_resolve(viewer) { (resolve_form(viewer, a)) }
        }
        @if let Some(next) = next_open { p class="pager" { a href=(next) { (t(lang, "next_page")) } } }
        h2 { (t(lang, "appeals.resolved")) }
        @if resolved.is_empty() { p { (t(lang, "appeals.none_resolved")) } }
        @for a in &resolved { (appeal_card(lang, a)) }
        @if let Some(next) = next_resolved { p class="pager" { a href=(next) { (t(lang, "next_page")) } } }
    };
    viewer.page(status, t(lang, "appeals.heading"), body)
}

pub async fn page(
    request: HttpRequest,
    appeals: web::Data<Appeals>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let viewer = viewer!(request);
    render(
        &viewer,
        &appeals,
        StatusCode::OK,
        None,
        Pages::parse(&query),
    )
    .await
}

#[derive(serde::Deserialize)]
pub struct ResolveForm {
    csrf: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    note: String,
}

pub async fn resolve(
    request: HttpRequest,
    appeals: web::Data<Appeals>,
    path: web::Path<String>,
    form: web::Form<ResolveForm>,
) -> HttpResponse {
    let viewer = viewer!(request);
    let lang = viewer.lang;
    if !viewer.check_form(&request, &form.csrf) {
        return viewer.message(StatusCode::FORBIDDEN, t(lang, "error.csrf"));
    }
    if !may_resolve(&viewer) {
        return viewer.message(StatusCode::FORBIDDEN, t(lang, "appeals.only_regulator"));
    }
    let Ok(appeal_id) = uuid::Uuid::parse_str(&path) else {
        return viewer.message(StatusCode::NOT_FOUND, t(lang, "error.not_found"));
    };
    let resolution = match crate::routes::appeals::parse_resolution(
        &form.outcome,
        Some(form.cause.as_str()),
        &form.note,
        &viewer.caller,
    ) {
        Ok(resolution) => resolution,
        Err(e) => {
            let problem = format!("{}{e}", t(lang, "error.bad_input"));
            return render(
                &viewer,
                &appeals,
                StatusCode::BAD_REQUEST,
                Some(problem),
                Pages::default(),
            )
            .await;
        }
    };
    match appeals
        .resolve(&appeal_id.to_string(), resolution, &viewer.scope())
        .await
    {
        Ok(done) => see_other(&format!(
            "/console/decisions/{}#appeal-{}",
            done.appeal.decision_id, done.appeal.appeal_id
        )),
        Err(AppealError::AppealNotFound) => {
            viewer.message(StatusCode::NOT_FOUND, t(lang, "error.not_found"))
        }
        Err(e @ (AppealError::Store(_) | AppealError::Write(_))) => viewer.unavailable(&e),
        Err(e) => {
            let status = match e {
                AppealError::AlreadyResolved { .. } => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            render(
                &viewer,
                &appeals,
                status,
                Some(e.to_string()),
                Pages::default(),
            )
            .await
        }
    }
}
