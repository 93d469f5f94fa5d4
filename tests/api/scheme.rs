//! The seed's rules held against the service: provider contract v2 (colour
//! beats age, staleness a second reason), when a refused party may pass
//! again, v1 providers still read, and visitors recognised through the
//! national platform (two simulators: regional and national).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use crate::helpers::{codes, start_simulator, trip, Options, TestApp};

fn at(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}")),
    )
    .unwrap()
    .with_timezone(&Utc)
}

/// Asserts `later` is `days` after `earlier`, to the second (answers carry
/// milliseconds).
fn assert_days_after(later: &Value, earlier: DateTime<Utc>, days: i64) {
    let off = (at(later) - earlier - TimeDelta::days(days)).num_milliseconds();
    assert!(
        off.abs() <= 1000,
        "{later} is not {days} days after {earlier}"
    );
}

#[tokio::test]
async fn a_red_code_not_renewed_in_time_is_still_red_with_staleness_as_a_second_reason() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let red_since = now - TimeDelta::days(3);
    app.set_code_v2(
        "D-1",
        "red",
        "hangzhou",
        red_since,
        now - TimeDelta::hours(50),
    )
    .await;
    app.set_code("P-1", "green", "hangzhou").await;
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["decision"], "reject", "{body}");
    assert_eq!(
        codes(&body),
        vec!["HEALTH_CODE_RED", "STATUS_STALE"],
        "{body}"
    );
    let driver = &body["parties"][0];
    assert_eq!(driver["status"], "red", "{body}");
    assert!(
        (at(&driver["color_since"]) - red_since)
            .num_milliseconds()
            .abs()
            <= 1,
        "{body}"
    );
    assert!(
        driver["age_seconds"].as_i64().unwrap() >= 50 * 3600,
        "{body}"
    );
    // Red: 14 days from the colour change, 11 to go.
    assert_eq!(driver["eligible_after"]["rule"], "hangzhou.isolation.red");
    assert_days_after(&driver["eligible_after"]["at"], red_since, 14);
    assert!(
        body["parties"][1].get("eligible_after").is_none(),
        "a party that passes has none: {body}"
    );

    // A regulator's summary by reason counts it as red.
    let (status, summary) = app.get_json("/v1/audit/summary?group_by=reason").await;
    assert_eq!(status, 200, "{summary}");
    let count = |key: &str| {
        summary["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .map_or(0, |r| r["count"].as_u64().unwrap())
    };
    assert_eq!(count("HEALTH_CODE_RED"), 1, "{summary}");
    assert_eq!(count("STATUS_STALE"), 1, "{summary}");
}

#[tokio::test]
async fn a_refused_party_is_told_when_it_may_pass_again() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let yellow_since = now - TimeDelta::days(2);
    app.set_code_v2("D-1", "yellow", "hangzhou", yellow_since, now)
        .await;
    app.set_code_v2(
        "P-stale",
        "green",
        "hangzhou",
        now - TimeDelta::days(40),
        now - TimeDelta::hours(30),
    )
    .await;
    let body = app.decide(&trip("D-1", &["P-stale", "P-none"])).await;
    assert_eq!(
        codes(&body),
        vec!["HEALTH_CODE_YELLOW", "STATUS_STALE", "NO_HEALTH_CODE"],
        "{body}"
    );
    let driver = &body["parties"][0];
    assert_eq!(
        driver["eligible_after"]["rule"],
        "hangzhou.isolation.yellow"
    );
    assert_days_after(&driver["eligible_after"]["at"], yellow_since, 7);
    // Not renewed in time: as soon as the person checks in.
    let stale = &body["parties"][1];
    assert_eq!(
        stale["eligible_after"]["rule"], "hangzhou.renewal",
        "{body}"
    );
    let decided_at = at(&body["decided_at"]);
    assert!(
        (at(&stale["eligible_after"]["at"]) - decided_at)
            .num_seconds()
            .abs()
            <= 1
    );
    // No code: nothing to derive.
    assert!(body["parties"][2].get("eligible_after").is_none(), "{body}");

    // The trail keeps it too.
    let id = body["decision_id"].as_str().unwrap();
    let (_, record) = app.get_json(&format!("/v1/audit/decisions/{id}")).await;
    let recorded = record["parties"][0]["eligible_after_us"].as_i64().unwrap();
    assert_eq!(
        recorded / 1000,
        at(&driver["eligible_after"]["at"]).timestamp_millis()
    );
}

#[tokio::test]
async fn a_provider_still_on_contract_v1_is_read_with_updated_at_as_the_renewal() {
    let app = TestApp::spawn().await;
    app.set_faults(json!({"contract_v1": true})).await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "red", "hangzhou").await;
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"], "{body}");
    let passenger = &body["parties"][1];
    assert!(passenger["age_seconds"].as_i64().unwrap() < 60, "{body}");
    assert!(passenger.get("color_since").is_none(), "{body}");
    // A v1 code does not say when its colour changed.
    assert!(passenger.get("eligible_after").is_none(), "{body}");
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_code("P-2", "green", "hangzhou").await;
    let body = app.decide(&trip("D-1", &["P-2"])).await;
    assert_eq!(body["decision"], "allow", "{body}");
}

fn with_national(url: String) -> Options {
    Options {
        customise: Box::new(move |s| s.national.base_url = url),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_visitor_without_a_regional_code_is_recognised_through_the_national_platform() {
    let (national_url, national) = start_simulator(0, 0, 3);
    let app = TestApp::spawn_with(with_national(national_url)).await;
    app.set_code("D-1", "green", "hangzhou").await;
    let now = Utc::now();
    national.set_code(tripgate::provider_api::HealthCodeRecord::v2(
        "P-visitor",
        "green",
        "national",
        now,
        now,
    ));
    national.set_code(tripgate::provider_api::HealthCodeRecord::v2(
        "P-visitor-red",
        "red",
        "national",
        now - TimeDelta::days(1),
        now,
    ));

    let body = app.decide(&trip("D-1", &["P-visitor"])).await;
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(body["parties"][1]["source"], "national", "{body}");
    assert_eq!(body["parties"][1]["issuer"], "national", "{body}");

    let body = app.decide(&trip("D-1", &["P-visitor-red"])).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"], "{body}");
    assert_eq!(body["parties"][1]["source"], "national", "{body}");
    assert_eq!(
        body["parties"][1]["eligible_after"]["rule"],
        "hangzhou.isolation.red"
    );

    // Neither has a code: no code, and the answer says where to apply.
    let body = app.decide(&trip("D-1", &["P-nobody"])).await;
    assert_eq!(codes(&body), vec!["NO_HEALTH_CODE"], "{body}");

    // The trail records where the status came from.
    let (_, page) = app.get_json("/v1/audit/decisions?decision=allow").await;
    assert_eq!(
        page["decisions"][0]["parties"][1]["source"], "national",
        "{page}"
    );

    // The regional provider cannot answer: the national platform still
    // can, for a visitor; a resident it does not know stays unavailable.
    app.set_faults(json!({"outage": true})).await;
    let (status, body) = app
        .post_json(
            "/v1/checks/passenger-order",
            &json!({"order_id": "O-1", "city": "hangzhou", "passengers": [{"id": "P-visitor"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(body["parties"][0]["source"], "national", "{body}");
    let (_, body) = app
        .post_json(
            "/v1/checks/passenger-order",
            &json!({"order_id": "O-2", "city": "hangzhou", "passengers": [{"id": "P-resident"}]}),
        )
        .await;
    assert_eq!(codes(&body), vec!["STATUS_UNAVAILABLE"], "{body}");
}

#[tokio::test]
async fn a_city_that_does_not_recognise_the_national_platform_never_asks_it() {
    let (national_url, national) = start_simulator(0, 0, 3);
    let now = Utc::now();
    national.set_code(tripgate::provider_api::HealthCodeRecord::v2(
        "P-visitor",
        "green",
        "national",
        now,
        now,
    ));
    let policy = r#"
        version = "local-only"
        [issuers.hangzhou.palette]
        green = "green"
        [issuers.national.palette]
        green = "green"
        [cities.hangzhou]
        recognised_issuers = ["hangzhou"]
    "#;
    let app = TestApp::spawn_with(Options {
        policy: Some(policy.into()),
        ..with_national(national_url)
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    let body = app.decide(&trip("D-1", &["P-visitor"])).await;
    assert_eq!(codes(&body), vec!["NO_HEALTH_CODE"], "{body}");
    assert_eq!(
        national.stats().requests,
        0,
        "the national platform was asked"
    );
}
