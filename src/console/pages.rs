//! The read-only pages: overview, rejections, one decision, subject search
//! and the trail's signed heads.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};

use super::{charts, t, when, Viewer};
use crate::appeals::Appeals;
use crate::audit::{
    AppealFilter, AuditReader, Cursor, DecisionFilter, GroupBy, RawFilter, SealedRecord,
};
use crate::domain::{Hook, ReasonCode};
use crate::messages::{Lang, Messages};

const PAGE: u32 = 50;
const HOUR_US: i64 = 3_600_000_000;

macro_rules! viewer {
    ($request:expr) => {
        match Viewer::of(&$request) {
            Ok(viewer) => viewer,
            Err(response) => return *response,
        }
    };
}
pub(super) use viewer;

/// The filter narrowed to the viewer's scope, or the page saying why not.
fn scoped(viewer: &Viewer, filter: DecisionFilter) -> Result<DecisionFilter, Box<HttpResponse>> {
    let mut filter = filter;
    viewer
        .scope()
        .restrict(&mut filter)
        .map_err(|e| Box::new(viewer.message(StatusCode::FORBIDDEN, &e.to_string())))?;
    Ok(filter)
}

pub async fn overview(
    request: HttpRequest,
    reader: web::Data<AuditReader>,
    appeals: web::Data<Appeals>,
) -> HttpResponse {
    let viewer = viewer!(request);
    let lang = viewer.lang;
    let now = chrono::Utc::now().timestamp_micros();
    let first_hour = (now / HOUR_US - 23) * HOUR_US;
    let window = DecisionFilter {
        from_us: Some(first_hour),
        ..Default::default()
    };
    let window = match scoped(&viewer, window) {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let rejected = DecisionFilter {
        decision: Some("reject"),
        ..window.clone()
    };
    let counts = async {
        let all = reader.summary(&window, GroupBy::Hour).await?;
        let rejections = reader.summary(&rejected, GroupBy::Hour).await?;
        let reasons = reader.summary(&rejected, GroupBy::Reason).await?;
        let cities = reader.summary(&rejected, GroupBy::City).await?;
        Ok::<_, crate::audit::StoreError>((all, rejections, reasons, cities))
    };
    let (all, rejections, reasons, cities) = match counts.await {
        Ok(counts) => counts,
        Err(e) => return viewer.unavailable(&e),
    };
    let open = match appeals
        .counts(&AppealFilter {
            state: Some("open"),
            cities: window.cities.clone(),
            ..Default::default()
        })
        .await
    {
        Ok(counts) => counts.open,
        Err(e) => return viewer.unavailable(&e),
    };
    let hours: Vec<i64> = (0..24).map(|i| first_hour + i * HOUR_US).collect();
    let count_at = |rows: &[crate::audit::SummaryRow], us: i64| {
        let key = chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        rows.iter().find(|r| r.key == key).map_or(0, |r| r.count)
    };
    let pairs: Vec<(u64, u64)> = hours
        .iter()
        .map(|h| (count_at(&all, *h), count_at(&rejections, *h)))
        .collect();
    let labels: Vec<String> = hours
        .iter()
        .map(|h| {
            chrono::DateTime::from_timestamp_micros(*h)
                .map(|t| t.format("%H:00").to_string())
                .unwrap_or_default()
        })
        .collect();
    let total: u64 = pairs.iter().map(|p| p.0).sum();
    let rejected_total: u64 = pairs.iter().map(|p| p.1).sum();
    let rate = if total == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", rejected_total as f64 * 100.0 / total as f64)
    };
    let reason_rows: Vec<(String, u64)> = reasons.into_iter().map(|r| (r.key, r.count)).collect();
    let city_rows: Vec<(String, u64)> = cities.into_iter().map(|r| (r.key, r.count)).collect();
    let body = html! {
        section class="tiles" {
            div class="tile" { span class="n" id="total-decisions" { (total) } span { (t(lang, "overview.decisions")) } }
            div class="tile" { span class="n" id="total-rejections" { (rejected_total) } span { (t(lang, "overview.rejections")) } }
            div class="tile" { span class="n" id="rejection-rate" { (rate) } span { (t(lang, "overview.rate")) } }
            a class="tile" href="/console/appeals" { span class="n" id="open-appeals" { (open) } span { (t(lang, "overview.open_appeals")) } }
        }
        section {
            h2 { (t(lang, "overview.per_hour")) }
            p class="legend" {
                span class="key-all" {} (t(lang, "legend.decisions")) " "
                span class="key-reject" {} (t(lang, "legend.rejections"))
            }
            (charts::hourly(&labels, &pairs, t(lang, "overview.per_hour")))
        }
        div class="columns" {
            section id="by-reason" {
                h2 { (t(lang, "overview.by_reason")) }
                @if reason_rows.is_empty() { p { (t(lang, "overview.none")) } }
                @else { (charts::bars(&reason_rows, t(lang, "overview.by_reason"))) }
            }
            section id="by-city" {
                h2 { (t(lang, "overview.by_city")) }
                @if city_rows.is_empty() { p { (t(lang, "overview.none")) } }
                @else { (charts::bars(&city_rows, t(lang, "overview.by_city"))) }
            }
        }
    };
    viewer.page(StatusCode::OK, t(lang, "overview.heading"), body)
}

/// The reason codes of a record, in order, without repeats.
fn codes(record: &SealedRecord) -> Vec<&str> {
    let mut codes: Vec<&str> = Vec::new();
    for reason in &record.record.reasons {
        if !codes.contains(&reason.code.as_str()) {
            codes.push(&reason.code);
        }
    }
    codes
}

fn decision_rows(lang: Lang, records: &[SealedRecord]) -> Markup {
    html! {
        @if records.is_empty() {
            p class="notice" { (t(lang, "no_rows")) }
        } @else {
            table class="rows" {
                thead { tr {
                    th { (t(lang, "col.time")) } th { (t(lang, "col.decision")) } th { (t(lang, "col.city")) }
                    th { (t(lang, "col.hook")) } th { (t(lang, "col.reasons")) }
                } }
                tbody {
                    @for r in records {
                        tr {
                            td { a href=(format!("/console/decisions/{}", r.record.decision_id)) { (when(r.record.decided_at_us)) } }
                            td class=(r.record.decision) { (r.record.decision) }
                            td { (r.record.city) }
                            td { (r.record.hook.as_str()) }
                            td { @for code in codes(r) { code { (code) } " " } }
                        }
                    }
                }
            }
        }
    }
}

pub async fn rejections(
    request: HttpRequest,
    reader: web::Data<AuditReader>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let viewer = viewer!(request);
    let lang = viewer.lang;
    let get = |k: &str| query.get(k).filter(|v| !v.is_empty()).cloned();
    let raw = RawFilter {
        from: get("from"),
        to: get("to"),
        decision: Some("reject".into()),
        reason: get("reason"),
        city: get("city"),
        hook: get("hook"),
        ..Default::default()
    };
    let form = html! {
        form method="get" action="/console/rejections" class="filters" {
            label { (t(lang, "filter.from")) input name="from" value=[raw.from.as_deref()] placeholder="2026-11-30T00:00:00Z"; }
            label { (t(lang, "filter.to")) input name="to" value=[raw.to.as_deref()]; }
            label { (t(lang, "filter.city")) input name="city" value=[raw.city.as_deref()] pattern="[A-Za-z0-9_-]{1,64}"; }
            label { (t(lang, "filter.hook")) select name="hook" {
                option value="" { (t(lang, "filter.any")) }
                @for hook in [Hook::Trip, Hook::DriverShift, Hook::PassengerOrder, Hook::Candidates] {
                    option value=(hook.as_str()) selected[raw.hook.as_deref() == Some(hook.as_str())] { (hook.as_str()) }
                }
            } }
            label { (t(lang, "filter.reason")) select name="reason" {
                option value="" { (t(lang, "filter.any")) }
                @for code in ReasonCode::ALL {
                    option value=(code.as_str()) selected[raw.reason.as_deref() == Some(code.as_str())] { (code.as_str()) }
                }
            } }
            button type="submit" { (t(lang, "filter.apply")) }
        }
    };
    let filter = match reader.filter(&raw) {
        Ok(filter) => filter,
        Err(e) => {
            let body = html! { (form) p class="error" { (t(lang, "error.bad_input")) (e) } };
            return viewer.page(StatusCode::BAD_REQUEST, t(lang, "nav.rejections"), body);
        }
    };
    let filter = match scoped(&viewer, filter) {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let cursor = match get("cursor").map(|c| Cursor::decode(&c)).transpose() {
        Ok(cursor) => cursor,
        Err(e) => {
            let body = html! { (form) p class="error" { (t(lang, "error.bad_input")) (e) } };
            return viewer.page(StatusCode::BAD_REQUEST, t(lang, "nav.rejections"), body);
        }
    };
    let page = match reader.page(&filter, cursor.as_ref(), PAGE).await {
        Ok(page) => page,
        Err(e) => return viewer.unavailable(&e),
    };
    let next = page.next_cursor.map(|c| {
        let mut params: Vec<(String, String)> = query
            .iter()
            .filter(|(k, v)| k.as_str() != "cursor" && k.as_str() != "lang" && !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.sort();
        params.push(("cursor".into(), c.encode()));
        // Strings always encode.
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        format!("/console/rejections?{query}")
    });
    let body = html! {
        (form)
        (decision_rows(lang, &page.records))
        p class="pager" {
            @if cursor.is_some() { a href="/console/rejections" { (t(lang, "first_page")) } " " }
            @if let Some(next) = next { a rel="next" href=(next) { (t(lang, "next_page")) } }
        }
    };
    viewer.page(StatusCode::OK, t(lang, "nav.rejections"), body)
}

pub async fn decision(
    request: HttpRequest,
    reader: web::Data<AuditReader>,
    appeals: web::Data<Appeals>,
    messages: web::Data<Messages>,
    gate: web::Data<crate::gate::Gate>,
    path: web::Path<String>,
) -> HttpResponse {
    let viewer = viewer!(request);
    let lang = viewer.lang;
    let Ok(id) = uuid::Uuid::parse_str(&path) else {
        return viewer.message(StatusCode::NOT_FOUND, t(lang, "error.not_found"));
    };
    let record = match reader.get(&id.to_string()).await {
        Ok(Some(r)) if !r.record.is_appeal() && viewer.scope().admits(&r.record) => r,
        Ok(_) => return viewer.message(StatusCode::NOT_FOUND, t(lang, "error.not_found")),
        Err(e) => return viewer.unavailable(&e),
    };
    let appeals = match appeals.of_decision(&record.record.decision_id).await {
        Ok(a) => a,
        Err(e) => return viewer.unavailable(&e),
    };
    let r = &record.record;
    // The messages as the caller was given them: the city's own (in the
    // policy now in force), else the catalogue's.
    let policy = gate.policy();
    let texts = crate::routes::Texts {
        catalogue: &messages,
        city: crate::domain::CityCode::parse(&r.city)
            .ok()
            .and_then(|city| policy.city(&city)),
        lang,
    };
    let party_name = |party: &str, index: Option<u32>| match index {
        Some(i) => format!("{party} #{i}"),
        None => party.to_owned(),
    };
    let body = html! {
        p class="notice" { (t(lang, "decision.read_only")) }
        dl class="facts" {
            dt { (t(lang, "col.decision")) } dd class=(r.decision) id="decision-outcome" { (r.decision) }
            dt { (t(lang, "col.hook")) } dd { (r.hook.as_str()) }
            dt { (t(lang, "col.city")) } dd { (r.city) }
            dt { (t(lang, "col.time")) } dd { (when(r.decided_at_us)) }
            dt { (t(lang, "decision.policy")) } dd { (r.policy_version) }
            dt { (t(lang, "decision.degraded")) } dd { (if r.degraded { t(lang, "yes") } else { t(lang, "no") }) }
            @if let Some(client) = &r.client { dt { (t(lang, "decision.client")) } dd { (client) } }
            dt { (t(lang, "decision.chain")) } dd { code { (r.instance_id) " #" (record.seq) } }
        }
        h2 { (t(lang, "decision.reasons")) }
        table class="rows" id="reasons" {
            thead { tr { th { (t(lang, "col.party")) } th { (t(lang, "col.code")) } th { (t(lang, "col.rule")) } th { (t(lang, "col.message")) } } }
            tbody {
                @for reason in &r.reasons {
                    tr {
                        td { (party_name(&reason.party, reason.index)) }
                        td { code { (reason.code) } }
                        td { code { (reason.rule) } }
                        td {
                            @if let Some(code) = ReasonCode::parse(&reason.code) { (texts.of(code)) }
                            @if let Some(detail) = &reason.detail { " (" (detail) ")" }
                        }
                    }
                }
            }
        }
        h2 { (t(lang, "decision.parties")) }
        table class="rows" {
            thead { tr {
                th { (t(lang, "col.party")) } th { (t(lang, "col.status")) } th { (t(lang, "col.issuer")) }
                th { (t(lang, "col.source")) } th { (t(lang, "col.age")) } th { (t(lang, "col.eligible_after")) }
            } }
            tbody {
                @for p in &r.parties {
                    tr {
                        td { (party_name(&p.party, p.index)) }
                        td class=(p.status) { (p.status) @if let Some(c) = &p.color { @if c != &p.status { " (" (c) ")" } } }
                        td { (p.issuer.as_deref().unwrap_or("–")) }
                        td { (p.source.as_deref().unwrap_or("–")) }
                        td { @if let Some(age) = p.status_age_secs { (age) " s" } @else { "–" } }
                        td { @if let Some(us) = p.eligible_after_us { (when(us)) } @else { "–" } }
                    }
                }
            }
        }
        h2 id="appeals" { (t(lang, "decision.appeals")) }
        @if appeals.is_empty() { p { (t(lang, "decision.no_appeal")) } }
        @for a in &appeals { (super::appeals::appeal_card(lang, a)) }
    };
    viewer.page(StatusCode::OK, t(lang, "decision.heading"), body)
}

fn subject_form(viewer: &Viewer) -> Markup {
    let lang = viewer.lang;
    html! {
        p class="notice" { (t(lang, "subject.help")) }
        form method="post" action="/console/subject" class="filters" autocomplete="off" {
            input type="hidden" name="csrf" value=(viewer.csrf());
            label { (t(lang, "subject.label")) input name="subject" type="password" required maxlength="128" autocomplete="off"; }
            button type="submit" { (t(lang, "subject.search")) }
        }
    }
}

pub async fn subject_page(request: HttpRequest) -> HttpResponse {
    let viewer = viewer!(request);
    viewer.page(
        StatusCode::OK,
        t(viewer.lang, "subject.heading"),
        subject_form(&viewer),
    )
}

#[derive(serde::Deserialize)]
pub struct SubjectForm {
    subject: String,
    csrf: String,
}

pub async fn subject_search(
    request: HttpRequest,
    reader: web::Data<AuditReader>,
    form: web::Form<SubjectForm>,
) -> HttpResponse {
    let viewer = viewer!(request);
    let lang = viewer.lang;
    if !viewer.check_form(&request, &form.csrf) {
        return viewer.message(StatusCode::FORBIDDEN, t(lang, "error.csrf"));
    }
    let raw = RawFilter {
        subject: Some(form.subject.trim().to_owned()),
        ..Default::default()
    };
    // The error names the grammar, never the value typed.
    let Ok(filter) = reader.filter(&raw) else {
        let body =
            html! { (subject_form(&viewer)) p class="error" { (t(lang, "subject.invalid")) } };
        return viewer.page(StatusCode::BAD_REQUEST, t(lang, "subject.heading"), body);
    };
    let filter = match scoped(&viewer, filter) {
        Ok(f) => f,
        Err(page) => return *page,
    };
    let page = match reader.page(&filter, None, 100).await {
        Ok(page) => page,
        Err(e) => return viewer.unavailable(&e),
    };
    let body = html! {
        (subject_form(&viewer))
        h2 { (t(lang, "subject.results")) }
        (decision_rows(lang, &page.records))
    };
    viewer.page(StatusCode::OK, t(lang, "subject.heading"), body)
}

pub async fn trail(request: HttpRequest, reader: web::Data<AuditReader>) -> HttpResponse {
    let viewer = viewer!(request);
    let lang = viewer.lang;
    let checks = match reader.head_checks().await {
        Ok(checks) => checks,
        Err(e) => return viewer.unavailable(&e),
    };
    let all_good = checks.iter().all(|c| c.signed && c.link_present);
    let body = html! {
        p class="notice" { (t(lang, "trail.help")) }
        p { (t(lang, "trail.public_key")) ": " code { (reader.public_key()) } }
        @if checks.is_empty() {
            p { (t(lang, "trail.none")) }
        } @else {
            p id="trail-verdict" class=(if all_good { "allow" } else { "reject" }) {
                (if all_good { t(lang, "trail.verdict_ok") } else { t(lang, "trail.verdict_bad") })
            }
            table class="rows" {
                thead { tr {
                    th { (t(lang, "col.instance")) } th { (t(lang, "col.seq")) } th { (t(lang, "col.kind")) }
                    th { (t(lang, "col.signed_at")) } th { (t(lang, "col.hash")) }
                    th { (t(lang, "col.signature")) } th { (t(lang, "col.link")) }
                } }
                tbody {
                    @for c in &checks {
                        tr {
                            td { code { (c.head.instance_id) } }
                            td { (c.head.seq) }
                            td { (c.head.kind.as_str()) }
                            td { (when(c.head.signed_at_us)) }
                            td { code class="hash" { (c.head.hash.get(..16).unwrap_or(&c.head.hash)) "…" } }
                            td class=(if c.signed { "allow" } else { "reject" }) { (if c.signed { t(lang, "trail.sig_ok") } else { t(lang, "trail.sig_bad") }) }
                            td class=(if c.link_present { "allow" } else { "reject" }) { (if c.link_present { t(lang, "trail.ok") } else { t(lang, "trail.bad") }) }
                        }
                    }
                }
            }
        }
    };
    viewer.page(StatusCode::OK, t(lang, "trail.heading"), body)
}
