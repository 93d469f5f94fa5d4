//! The regulator's console: server-rendered HTML pages over the trail and
//! the appeals, at `/console/` on the API listener.
//!
//! Invariants:
//! - No script at all, and a Content-Security-Policy that allows none:
//!   pages are HTML and forms, charts are inline SVG drawn here, the one
//!   style sheet is compiled in and served from `/console/static/`. So the
//!   console works offline and nothing injected into a page can run.
//! - No page shows a raw subject id: records hold refs only, the subject
//!   search takes the id by POST (never in a URL), hashes it like the API
//!   and never writes it back, and appeal text is shown as stored (party
//!   ids replaced when it was filed).
//! - Who is looking is settled once per request (`Viewer::of`): with
//!   authentication off, anyone (as the API); with it on, a signed-in
//!   regulator (`sign_in_cookie`), re-checked against the configured clients on
//!   every request, and rate-limited like the API.
//! - Every state-changing form carries a CSRF token (`Viewer::check_form`).

mod appeals;
mod charts;
mod pages;
mod sign_in_cookie;
mod signin;
mod text;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup, DOCTYPE};

use crate::audit::{AuditReader, ReadScope};
use crate::auth::{AuthError, Authenticator, Caller};
use crate::config::Role;
use crate::messages::Lang;
use sign_in_cookie::{SignIn, CSRF_COOKIE, LANG_COOKIE, SIGN_IN_COOKIE};
pub use text::t;

/// Sent with every console response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE_SHEET: &str = include_str!("console.css");
const FAVICON: &str = include_str!("favicon.svg");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/console")
            // A note of 2,000 Chinese characters is 18 KB form-encoded.
            .app_data(web::FormConfig::default().limit(64 * 1024))
            .wrap(
                DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    // same-origin, not no-referrer: with no-referrer a browser sends
                    // "Origin: null" on form posts, which the CSRF check refuses.
                    .add((header::REFERRER_POLICY, "same-origin"))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add((header::CACHE_CONTROL, "no-store")),
            )
            .route("", web::get().to(to_overview))
            .route("/", web::get().to(pages::overview))
            .route("/rejections", web::get().to(pages::rejections))
            .route("/decisions/{decision_id}", web::get().to(pages::decision))
            .route("/subject", web::get().to(pages::subject_page))
            .route("/subject", web::post().to(pages::subject_search))
            .route("/appeals", web::get().to(appeals::page))
            .route(
                "/appeals/{appeal_id}/resolution",
                web::post().to(appeals::resolve),
            )
            .route("/trail", web::get().to(pages::trail))
            .route("/sign-in", web::get().to(signin::form))
            .route("/sign-in", web::post().to(signin::submit))
            .route("/sign-out", web::post().to(signin::sign_out))
            .route("/static/console.css", web::get().to(style_sheet))
            .route("/static/favicon.svg", web::get().to(favicon))
            .default_service(web::to(not_found)),
    );
}

async fn to_overview() -> HttpResponse {
    see_other("/console/")
}

async fn style_sheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=3600"))
        .body(STYLE_SHEET)
}

async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "max-age=86400"))
        .body(FAVICON)
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    let lang = Viewer::lang_of(&request).0;
    message_page(lang, StatusCode::NOT_FOUND, t(lang, "error.not_found"))
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Who is looking at a page, in which language, and the CSRF token of its
/// forms.
pub struct Viewer {
    pub lang: Lang,
    /// `None` with authentication off.
    pub caller: Option<Caller>,
    csrf: String,
    /// Cookies the response must set (language, CSRF value).
    cookies: Vec<Cookie<'static>>,
    path: String,
}

impl Viewer {
    /// The viewer of `request`, or the response to give instead (the
    /// sign-in page's redirect, a rate-limit page).
    pub fn of(request: &HttpRequest) -> Result<Self, Box<HttpResponse>> {
        let (lang, lang_cookie) = Self::lang_of(request);
        let secure = over_tls(request);
        let mut cookies: Vec<Cookie<'static>> = lang_cookie
            .map(|value| cookie(LANG_COOKIE, value, secure))
            .into_iter()
            .collect();
        let (Some(authenticator), Some(reader)) = (
            request.app_data::<web::Data<Authenticator>>(),
            request.app_data::<web::Data<AuditReader>>(),
        ) else {
            return Err(Box::new(message_page(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                "console not configured",
            )));
        };
        let path = request.path().to_owned();
        if !authenticator.enabled() {
            let (csrf, new_cookie) = double_submit(request).map_err(|e| {
                tracing::error!(error = %e, "no randomness for a CSRF value");
                Box::new(message_page(
                    lang,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    t(lang, "error.heading"),
                ))
            })?;
            cookies.extend(new_cookie);
            return Ok(Self {
                lang,
                caller: None,
                csrf,
                cookies,
                path,
            });
        }
        let sign_in = || Box::new(see_other("/console/sign-in"));
        let value = request.cookie(SIGN_IN_COOKIE).ok_or_else(sign_in)?;
        let client = SignIn::claimed_client(value.value()).ok_or_else(sign_in)?;
        let digest = authenticator.token_digest(client).ok_or_else(sign_in)?;
        let key = sign_in_cookie::client_key(reader.keys().console_session_key(), &digest);
        let now = chrono::Utc::now().timestamp();
        let signed_in = SignIn::verify(value.value(), &key, now).ok_or_else(sign_in)?;
        let caller = match authenticator.caller_named(&signed_in.client, &[Role::Regulator]) {
            Ok(caller) => caller,
            Err(AuthError::RateLimited {
                retry_after_secs, ..
            }) => {
                let mut page = Box::new(message_page(
                    lang,
                    StatusCode::TOO_MANY_REQUESTS,
                    t(lang, "signin.rate_limited"),
                ));
                if let Ok(value) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                    page.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return Err(page);
            }
            Err(_) => return Err(sign_in()),
        };
        tracing::Span::current().record("client", caller.name.as_str());
        Ok(Self {
            lang,
            caller: Some(caller),
            csrf: signed_in.csrf(&key),
            cookies,
            path,
        })
    }

    /// The language: `?lang=` (remembered in a cookie), else the cookie,
    /// else Accept-Language. Also the cookie value to set, if it changed.
    fn lang_of(request: &HttpRequest) -> (Lang, Option<&'static str>) {
        let asked = web::Query::<std::collections::HashMap<String, String>>::from_query(
            request.query_string(),
        )
        .ok()
        .and_then(|q| q.get("lang").cloned());
        let parse = |v: &str| match v {
            "en" => Some(Lang::En),
            "zh-CN" | "zh" => Some(Lang::ZhCn),
            _ => None,
        };
        if let Some(lang) = asked.as_deref().and_then(parse) {
            return (lang, Some(lang.tag()));
        }
        if let Some(lang) = request.cookie(LANG_COOKIE).and_then(|c| parse(c.value())) {
            return (lang, None);
        }
        let header = request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        (Lang::negotiate(header), None)
    }

    /// What this viewer may read: a regulator's cities.
    pub fn scope(&self) -> ReadScope {
        ReadScope {
            clients: None,
            cities: self.caller.as_ref().and_then(|c| c.cities.clone()),
        }
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether a form POST is this viewer's own: its CSRF token matches
    /// and its Origin, when sent, is this host.
    pub fn check_form(&self, request: &HttpRequest, token: &str) -> bool {
        let origin_ok = match request.headers().get(header::ORIGIN) {
            None => true,
            Some(origin) => {
                let host = request.connection_info().host().to_owned();
                origin
                    .to_str()
                    .ok()
                    .and_then(|o| o.split_once("://").map(|(_, rest)| rest == host))
                    .unwrap_or(false)
            }
        };
        origin_ok && sign_in_cookie::constant_time_eq(token.as_bytes(), self.csrf.as_bytes())
    }

    /// A whole page: the layout around `body`, with the viewer's cookies.
    pub fn page(&self, status: StatusCode, title: &str, body: Markup) -> HttpResponse {
        let lang = self.lang;
        let other = match lang {
            Lang::ZhCn => "en",
            Lang::En => "zh-CN",
        };
        let nav = [
            ("/console/", "nav.overview"),
            ("/console/rejections", "nav.rejections"),
            ("/console/subject", "nav.subject"),
            ("/console/appeals", "nav.appeals"),
            ("/console/trail", "nav.trail"),
        ];
        let markup = html! {
            (DOCTYPE)
            html lang=(lang.tag()) {
                (head(lang, title))
                body {
                    header {
                        a class="brand" href="/console/" { "tripgate" }
                        nav {
                            @for (href, key) in nav {
                                a href=(href) class=[(self.path == href).then_some("current")] { (t(lang, key)) }
                            }
                        }
                        span class="who" {
                            @match &self.caller {
                                Some(caller) => { (t(lang, "signed_in_as")) (caller.name) }
                                None => { (t(lang, "auth_off")) }
                            }
                        }
                        a class="lang" href=(format!("{}?lang={other}", self.path)) hreflang=(other) { (t(lang, "switch_lang")) }
                        @if self.caller.is_some() {
                            form method="post" action="/console/sign-out" class="inline" {
                                input type="hidden" name="csrf" value=(self.csrf);
                                button type="submit" { (t(lang, "nav.sign_out")) }
                            }
                        }
                    }
                    main { h1 { (title) } (body) }
                }
            }
        };
        let mut response = HttpResponse::build(status);
        response.content_type("text/html; charset=utf-8");
        for cookie in &self.cookies {
            response.cookie(cookie.clone());
        }
        response.body(markup.into_string())
    }

    /// A page that only says something (an error, mostly).
    pub fn message(&self, status: StatusCode, text: &str) -> HttpResponse {
        let heading = if status.is_success() {
            t(self.lang, "title")
        } else {
            t(self.lang, "error.heading")
        };
        self.page(status, heading, html! { p class="notice" { (text) } })
    }

    /// The page for a failure of the store (the cause goes to the log).
    pub fn unavailable(&self, error: &dyn std::error::Error) -> HttpResponse {
        tracing::error!(error = %crate::telemetry::error_chain(error), "console page failed");
        self.message(
            StatusCode::SERVICE_UNAVAILABLE,
            t(self.lang, "error.unavailable"),
        )
    }
}

/// Every page's `<head>`: the compiled-in style sheet and icon only.
pub fn head(lang: Lang, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · " (t(lang, "title")) }
            link rel="stylesheet" href="/console/static/console.css";
            link rel="icon" href="/console/static/favicon.svg" type="image/svg+xml";
        }
    }
}

/// Whether the request came over TLS (directly, or as the ingress says
/// with X-Forwarded-Proto): the console's cookies are Secure then.
pub fn over_tls(request: &HttpRequest) -> bool {
    request.connection_info().scheme() == "https"
}

/// The double-submit CSRF value of a viewer without a sign-in: the
/// request's `tripgate_csrf` cookie, or a new one with the cookie to set.
pub fn double_submit(
    request: &HttpRequest,
) -> Result<(String, Option<Cookie<'static>>), getrandom::Error> {
    match request.cookie(CSRF_COOKIE) {
        Some(c) if sign_in_cookie::is_csrf_value(c.value()) => Ok((c.value().to_owned(), None)),
        _ => {
            let value = sign_in_cookie::random_hex()?;
            let new = cookie(CSRF_COOKIE, value.clone(), over_tls(request));
            Ok((value, Some(new)))
        }
    }
}

/// A cookie of the console: HttpOnly, SameSite=Strict, scoped to
/// /console, Secure when the request came over TLS.
pub fn cookie(name: &'static str, value: impl Into<String>, secure: bool) -> Cookie<'static> {
    Cookie::build(name, value.into())
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .finish()
}

/// A bare page for when there is no viewer to lay one out for.
fn message_page(lang: Lang, status: StatusCode, text: &str) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            (head(lang, t(lang, "error.heading")))
            body { main { h1 { (t(lang, "error.heading")) } p class="notice" { (text) } } }
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// RFC 3339 to the second, for tables.
pub fn when(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}
