//! Signing in with a regulator token (once: a sign-in cookie follows) and
//! signing out. With authentication off there is nothing to sign in to,
//! and these pages send the viewer to the overview.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;

use super::sign_in_cookie::{self, SignIn, CSRF_COOKIE, SIGN_IN_COOKIE};
use super::{cookie, double_submit, head, over_tls, see_other, t};
use crate::audit::AuditReader;
use crate::auth::{AuthError, Authenticator};
use crate::config::Role;
use crate::messages::Lang;

/// The sign-in page (and its answer when a token is refused). It has no
/// sign-in yet, so its form's CSRF token is a double-submit cookie value.
fn page(
    request: &HttpRequest,
    lang: Lang,
    status: StatusCode,
    problem: Option<&str>,
) -> HttpResponse {
    let (csrf, new_cookie) = match double_submit(request) {
        Ok(value) => value,
        Err(e) => {
            tracing::error!(error = %e, "no randomness for a CSRF value");
            return HttpResponse::InternalServerError().finish();
        }
    };
    let other = match lang {
        Lang::ZhCn => "en",
        Lang::En => "zh-CN",
    };
    let markup = html! {
        (maud::DOCTYPE)
        html lang=(lang.tag()) {
            (head(lang, t(lang, "signin.heading")))
            body {
                header {
                    a class="brand" href="/console/" { "tripgate" }
                    a class="lang" href=(format!("/console/sign-in?lang={other}")) { (t(lang, "switch_lang")) }
                }
                main class="narrow" {
                    h1 { (t(lang, "signin.heading")) }
                    p { (t(lang, "signin.help")) }
                    @if let Some(problem) = problem { p class="error" id="problem" { (problem) } }
                    form method="post" action="/console/sign-in" {
                        input type="hidden" name="csrf" value=(csrf);
                        label { (t(lang, "signin.token")) input type="password" name="token" required autocomplete="off"; }
                        button type="submit" { (t(lang, "signin.submit")) }
                    }
                }
            }
        }
    };
    let mut response = HttpResponse::build(status);
    response.content_type("text/html; charset=utf-8");
    if let Some(c) = new_cookie {
        response.cookie(c);
    }
    response.body(markup.into_string())
}

pub async fn form(request: HttpRequest, authenticator: web::Data<Authenticator>) -> HttpResponse {
    if !authenticator.enabled() {
        return see_other("/console/");
    }
    let lang = super::Viewer::lang_of(&request).0;
    page(&request, lang, StatusCode::OK, None)
}

#[derive(serde::Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

pub async fn submit(
    request: HttpRequest,
    authenticator: web::Data<Authenticator>,
    reader: web::Data<AuditReader>,
    form: web::Form<SignInForm>,
) -> HttpResponse {
    if !authenticator.enabled() {
        return see_other("/console/");
    }
    let lang = super::Viewer::lang_of(&request).0;
    let expected = request
        .cookie(CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if expected.is_empty()
        || !sign_in_cookie::constant_time_eq(expected.as_bytes(), form.csrf.as_bytes())
    {
        return page(
            &request,
            lang,
            StatusCode::FORBIDDEN,
            Some(t(lang, "error.csrf")),
        );
    }
    let header = format!("Bearer {}", form.token.trim());
    let caller = match authenticator.authorize(Some(&header), &[Role::Regulator]) {
        Ok(Some(caller)) => caller,
        Ok(None) => return see_other("/console/"),
        Err(e) => {
            let (status, key) = match e {
                AuthError::Forbidden { .. } => (StatusCode::FORBIDDEN, "signin.forbidden"),
                AuthError::RateLimited { .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, "signin.rate_limited")
                }
                AuthError::MissingToken | AuthError::UnknownToken => {
                    (StatusCode::UNAUTHORIZED, "signin.unknown")
                }
            };
            return page(&request, lang, status, Some(t(lang, key)));
        }
    };
    let Some(digest) = authenticator.token_digest(&caller.name) else {
        return page(
            &request,
            lang,
            StatusCode::UNAUTHORIZED,
            Some(t(lang, "signin.unknown")),
        );
    };
    let key = sign_in_cookie::client_key(reader.keys().console_session_key(), &digest);
    let signed_in = match SignIn::new(&caller.name, chrono::Utc::now().timestamp()) {
        Ok(signed_in) => signed_in,
        Err(e) => {
            tracing::error!(error = %e, "no randomness for a sign-in");
            return HttpResponse::InternalServerError().finish();
        }
    };
    tracing::info!(client = %caller.name, "console sign-in");
    let secure = over_tls(&request);
    let mut sign_in = cookie(SIGN_IN_COOKIE, signed_in.cookie_value(&key), secure);
    sign_in.set_max_age(actix_web::cookie::time::Duration::seconds(
        sign_in_cookie::SIGN_IN_SECS,
    ));
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, "/console/"))
        .cookie(sign_in)
        .finish()
}

#[derive(serde::Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(request: HttpRequest, form: web::Form<SignOutForm>) -> HttpResponse {
    let viewer = match super::Viewer::of(&request) {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    if !viewer.check_form(&request, &form.csrf) {
        return viewer.message(StatusCode::FORBIDDEN, t(viewer.lang, "error.csrf"));
    }
    let secure = over_tls(&request);
    let mut gone = cookie(SIGN_IN_COOKIE, "", secure);
    gone.make_removal();
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, "/console/sign-in"))
        .cookie(gone)
        .finish()
}
