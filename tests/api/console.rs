//! The regulator's console: its pages in a real headless Chromium over a
//! seeded run with authentication on (sign-in, overview counts, a
//! rejection to its decision, an appeal filed through the API resolved on
//! the page, subject search, the trail; a dispatch token refused; no raw id
//! in any page; nothing in the browser's log), and its HTTP contract
//! (security headers, cookie flags, CSRF, auth off).
//!
//! With TRIPGATE_SCREENSHOTS set to a directory, the browser test saves a
//! screenshot of each page there (`scripts/screenshots` does, for
//! docs/console/).

use std::path::PathBuf;

use fantoccini::Locator;
use serde_json::{json, Value};
use tripgate::config::Role;

use crate::browser::Browser;
use crate::helpers::{auth_client, trip_in, Options, TestApp};

const DISPATCH: &str = "token-dispatch-console";
const REGULATOR: &str = "token-regulator-console";

/// Subject ids shaped like phone numbers; none may appear in a page.
const DRIVERS: [&str; 2] = ["13900000001", "13900000002"];
const PASSENGERS: [&str; 3] = ["13800000011", "13800000012", "13800000013"];

async fn secured() -> TestApp {
    TestApp::spawn_with(Options {
        customise: Box::new(|s| {
            s.audit.head_interval_secs = 1;
            s.auth.enabled = true;
            s.auth.clients = vec![
                auth_client("dispatch-console", Role::Dispatch, DISPATCH),
                auth_client("regulator-console", Role::Regulator, REGULATOR),
            ];
        }),
        ..Default::default()
    })
    .await
}

async fn check(app: &TestApp, body: &Value) -> Value {
    let response = app
        .http
        .post(app.url("/v1/checks/trip"))
        .bearer_auth(DISPATCH)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Six decisions: three allowed and two refused in Hangzhou (the red
/// passenger), one refused in Xiamen (the yellow driver).
async fn seed(app: &TestApp) -> Vec<String> {
    app.set_code(DRIVERS[0], "green", "hangzhou").await;
    app.set_code(DRIVERS[1], "orange", "xiamen").await;
    app.set_code(PASSENGERS[0], "green", "hangzhou").await;
    app.set_code(PASSENGERS[1], "green", "hangzhou").await;
    app.set_code(PASSENGERS[2], "red", "hangzhou").await;
    let mut refused = Vec::new();
    for (city, driver, passenger) in [
        ("hangzhou", DRIVERS[0], PASSENGERS[0]),
        ("hangzhou", DRIVERS[0], PASSENGERS[1]),
        ("hangzhou", DRIVERS[0], PASSENGERS[0]),
        ("hangzhou", DRIVERS[0], PASSENGERS[2]),
        ("hangzhou", DRIVERS[0], PASSENGERS[2]),
        ("xiamen", DRIVERS[1], PASSENGERS[0]),
    ] {
        let answer = check(app, &trip_in(city, driver, &[passenger])).await;
        if answer["decision"] == "reject" {
            refused.push(answer["decision_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(refused.len(), 3);
    refused
}

struct Pages<'a> {
    browser: &'a Browser,
    app: &'a TestApp,
    shots: Option<PathBuf>,
}

impl Pages<'_> {
    async fn goto(&self, path: &str) {
        self.browser
            .client
            .goto(&self.app.url(path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    /// The page's HTML, checked for raw ids and for browser errors, and
    /// saved as a screenshot when asked.
    async fn source(&self, shot: &str) -> String {
        let html = self.browser.client.source().await.expect("page source");
        for id in DRIVERS.iter().chain(&PASSENGERS) {
            assert!(!html.contains(id), "{shot}: a raw id in the page:\n{html}");
        }
        let errors = self.browser.log_errors().await;
        assert!(errors.is_empty(), "{shot}: the browser logged {errors:?}");
        if let Some(dir) = &self.shots {
            let png = self.browser.client.screenshot().await.expect("screenshot");
            std::fs::write(dir.join(format!("{shot}.png")), png).expect("save screenshot");
        }
        html
    }

    async fn text_of(&self, css: &str) -> String {
        self.browser
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn fill(&self, css: &str, text: &str) {
        self.browser
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .send_keys(text)
            .await
            .unwrap();
    }

    async fn click(&self, css: &str) {
        self.browser
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks what submits a form or follows a link, and waits for the
    /// next page (the old document's root goes stale).
    async fn follow(&self, css: &str) {
        let old = self
            .browser
            .client
            .find(Locator::Css("html"))
            .await
            .expect("a document");
        self.click(css).await;
        for _ in 0..200 {
            if old.attr("lang").await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{css}: no new page after 5 s");
    }
}

#[tokio::test]
async fn a_regulator_works_through_the_console_in_chromium() {
    let app = secured().await;
    let refused = seed(&app).await;
    let browser = Browser::start().await;
    let shots = std::env::var_os("TRIPGATE_SCREENSHOTS").map(PathBuf::from);
    if let Some(dir) = &shots {
        std::fs::create_dir_all(dir).unwrap();
    }
    let pages = Pages {
        browser: &browser,
        app: &app,
        shots,
    };

    // Not signed in: the sign-in page; a dispatch token is refused.
    pages.goto("/console/?lang=en").await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/console/sign-in", "{url}");
    pages.source("console-sign-in").await;
    pages.fill("input[name=token]", DISPATCH).await;
    pages.follow("button[type=submit]").await;
    assert!(pages.text_of("#problem").await.contains("not regulator"));
    pages.fill("input[name=token]", "not a token").await;
    pages.follow("button[type=submit]").await;
    assert!(pages.text_of("#problem").await.contains("not recognised"));
    // The two refusals are the only things the browser logged (as failed
    // loads: 403 and 401 are the answer).
    let logged = browser.log_errors().await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(
        logged[0].contains("/console/sign-in") && logged[0].contains("403"),
        "{logged:?}"
    );
    assert!(logged[1].contains("401"), "{logged:?}");

    // A regulator signs in once; the overview counts the seeded run.
    pages.fill("input[name=token]", REGULATOR).await;
    pages.follow("button[type=submit]").await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/console/", "{url}");
    pages.source("console-overview").await;
    assert_eq!(pages.text_of("#total-decisions").await, "6");
    assert_eq!(pages.text_of("#total-rejections").await, "3");
    assert_eq!(pages.text_of("#open-appeals").await, "0");
    let reasons = pages.text_of("#by-reason").await;
    assert!(
        reasons.contains("HEALTH_CODE_RED") && reasons.contains("HEALTH_CODE_YELLOW"),
        "{reasons}"
    );
    let cities = pages.text_of("#by-city").await;
    assert!(
        cities.contains("hangzhou") && cities.contains("xiamen"),
        "{cities}"
    );

    // Rejections, filtered; a row leads to its decision, which names the
    // reason code and its message.
    pages.goto("/console/rejections?city=hangzhou").await;
    let html = pages.source("console-rejections").await;
    assert_eq!(html.matches("/console/decisions/").count(), 2, "{html}");
    pages.follow("table.rows tbody tr a").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(url.path().starts_with("/console/decisions/"), "{url}");
    let reasons = pages.text_of("#reasons").await;
    assert!(reasons.contains("HEALTH_CODE_RED"), "{reasons}");
    assert!(
        reasons.contains("14"),
        "the red message names 14 days: {reasons}"
    );
    assert_eq!(pages.text_of("#decision-outcome").await, "reject");
    pages.source("console-decision").await;

    // An appeal filed through the API appears on /console/appeals and is
    // resolved there; the decision then shows the outcome.
    let appealed = &refused[0];
    let filed: Value = app
        .http
        .post(app.url("/v1/appeals"))
        .bearer_auth(DISPATCH)
        .json(&json!({"decision_id": appealed, "party": "passenger",
                      "grounds": "My code was green at 08:00; the provider updated it late."}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let appeal_id = filed["appeal_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{filed}"));
    pages.goto("/console/").await;
    assert_eq!(pages.text_of("#open-appeals").await, "1");
    pages.goto("/console/appeals").await;
    pages.source("console-appeals").await;
    let card = pages.text_of(&format!("#appeal-{appeal_id}")).await;
    assert!(card.contains("provider updated it late"), "{card}");
    pages.click("input[name=outcome][value=overturned]").await;
    browser
        .client
        .find(Locator::Css("select[name=cause]"))
        .await
        .unwrap()
        .select_by_value("provider_data_wrong")
        .await
        .unwrap();
    pages
        .fill(
            "textarea[name=note]",
            "The provider confirmed the code was green.",
        )
        .await;
    pages.follow("form.resolve button[type=submit]").await;
    let url = browser.client.current_url().await.unwrap();
    if url.path() != format!("/console/decisions/{appealed}") {
        panic!("{url}: {}", browser.client.source().await.unwrap());
    }
    let card = pages.text_of(&format!("#appeal-{appeal_id}")).await;
    assert!(
        card.contains("overturned") && card.contains("provider data wrong"),
        "{card}"
    );
    pages.source("console-decision-appealed").await;
    let (_, via_api) = app
        .get_json_as(REGULATOR, &format!("/v1/appeals/{appeal_id}"))
        .await;
    assert_eq!(via_api["resolution"]["outcome"], "overturned", "{via_api}");
    assert_eq!(via_api["resolution"]["resolved_by"], "regulator-console");

    // Subject search: by POST, the id never echoed.
    pages.goto("/console/subject").await;
    pages.fill("input[name=subject]", PASSENGERS[2]).await;
    pages.follow("form.filters button[type=submit]").await;
    let html = pages.source("console-subject").await;
    assert_eq!(html.matches("/console/decisions/").count(), 2, "{html}");
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.query(), None, "{url}");

    // The trail's signed heads (signed every second here).
    for _ in 0..50 {
        let (_, heads) = app.get_json_as(REGULATOR, "/v1/audit/heads").await;
        if heads["heads"].as_array().is_some_and(|h| !h.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    pages.goto("/console/trail").await;
    pages.source("console-trail").await;
    let verdict = pages.text_of("#trail-verdict").await;
    assert!(verdict.contains("validly signed"), "{verdict}");

    // Chinese on request.
    pages.goto("/console/?lang=zh-CN").await;
    let html = pages.source("console-overview-zh").await;
    assert!(html.contains("拒绝原因"), "{html}");

    browser.stop().await;
}

#[tokio::test]
async fn console_pages_carry_strict_headers_and_guard_their_forms() {
    let app = secured().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Unsigned: every page sends to the sign-in page.
    for path in [
        "/console/",
        "/console/rejections",
        "/console/appeals",
        "/console/trail",
    ] {
        let response = http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], "/console/sign-in");
    }
    let page = http.get(app.url("/console/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["cache-control"], "no-store");
    let csrf_cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"),
        "{csrf_cookie}"
    );
    let csrf = csrf_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    // Without the CSRF value, no sign-in.
    let response = http
        .post(app.url("/console/sign-in"))
        .form(&[("token", REGULATOR), ("csrf", "0".repeat(32).as_str())])
        .header("cookie", format!("tripgate_csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // With it, a session cookie: HttpOnly, SameSite=Strict, with an expiry.
    let response = http
        .post(app.url("/console/sign-in"))
        .form(&[("token", REGULATOR), ("csrf", csrf.as_str())])
        .header("cookie", format!("tripgate_csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let session = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(session.starts_with("tripgate_session="), "{session}");
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
        "Path=/console",
    ] {
        assert!(session.contains(flag), "{flag}: {session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: not Secure");
    let session_pair = session.split(';').next().unwrap().to_owned();
    let page = http
        .get(app.url("/console/"))
        .header("cookie", &session_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // Behind TLS (as the ingress says), the session cookie is Secure.
    let response = http
        .post(app.url("/console/sign-in"))
        .form(&[("token", REGULATOR), ("csrf", csrf.as_str())])
        .header("cookie", format!("tripgate_csrf={csrf}"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Secure"));
    // A tampered session cookie signs no one in.
    let tampered = session_pair.replacen("regulator-console", "regulator-consolf", 1);
    let page = http
        .get(app.url("/console/"))
        .header("cookie", tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    // A resolution without the sign-in's CSRF token, or from another
    // origin, is refused.
    let target = app.url(&format!(
        "/console/appeals/{}/resolution",
        uuid::Uuid::now_v7()
    ));
    let form = [("csrf", "nope"), ("outcome", "upheld"), ("note", "x")];
    let response = http
        .post(&target)
        .header("cookie", &session_pair)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // The subject search's POST never echoes what was typed, even when
    // it is not an id.
    let page = http
        .get(app.url("/console/subject"))
        .header("cookie", &session_pair)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let response = http
        .post(app.url("/console/subject"))
        .header("cookie", &session_pair)
        .header("origin", "http://evil.example")
        .form(&[("csrf", token.as_str()), ("subject", "13800000013")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "another origin");
    let response = http
        .post(app.url("/console/subject"))
        .header("cookie", &session_pair)
        .form(&[
            ("csrf", token.as_str()),
            ("subject", "not an id <b>13800000013</b>"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("13800000013") && !text.contains("<b>"),
        "{text}"
    );
    // The style sheet is served; an unknown page is an HTML 404.
    let css = http
        .get(app.url("/console/static/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let missing = http
        .get(app.url("/console/nope"))
        .header("cookie", &session_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers()["content-security-policy"]
        .to_str()
        .is_ok());
}

#[tokio::test]
async fn with_authentication_off_the_console_opens_directly_and_pages_appeals() {
    let app = TestApp::spawn().await;
    let (status, html) = app.get_text("/console/").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("total-decisions"));
    let (status, _) = app.get_text("/console/sign-in").await;
    assert_eq!(status, 200, "redirected to the overview");

    // 52 open appeals: a page of 50, then the next.
    app.set_code("D-1", "red", "hangzhou").await;
    for n in 0..52 {
        let decision = app
            .decide(&trip_in("hangzhou", "D-1", &[&format!("P-{n}")]))
            .await;
        let (status, filed) = app
            .post_json(
                "/v1/appeals",
                &json!({"decision_id": decision["decision_id"], "party": "driver", "grounds": format!("appeal {n}")}),
            )
            .await;
        assert_eq!(status, 201, "{filed}");
    }
    let (status, html) = app.get_text("/console/appeals").await;
    assert_eq!(status, 200);
    assert_eq!(html.matches("<article class=\"appeal open\"").count(), 50);
    assert!(
        html.contains(">appeal 0<") && !html.contains(">appeal 51<"),
        "oldest first"
    );
    let next = html
        .split("<p class=\"pager\"><a href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next page link")
        .replace("&amp;", "&");
    let (status, html) = app.get_text(&next).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(html.matches("<article class=\"appeal open\"").count(), 2);
    assert!(html.contains(">appeal 51<"));

    // The 52 refusals: a page of 50 rejections, and the next page keeps
    // the filters.
    let (status, html) = app
        .get_text("/console/rejections?city=hangzhou&from=2000-01-01T00%3A00%3A00Z")
        .await;
    assert_eq!(status, 200);
    assert_eq!(html.matches("href=\"/console/decisions/").count(), 50);
    let next = html
        .split("<a rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next page link")
        .replace("&amp;", "&");
    assert!(
        next.contains("city=hangzhou") && next.contains("from=2000-01-01T00%3A00%3A00Z"),
        "{next}"
    );
    let (status, html) = app.get_text(&next).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(html.matches("href=\"/console/decisions/").count(), 2);
}
