//! The trip-match hook's decisions, as a dispatch backend sees them.

use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};
use tripgate::policy::Policy;

use crate::helpers::{codes, config_dir, trip, trip_in, Options, TestApp};

#[tokio::test]
async fn all_green_is_allowed_with_the_contract_fields() {
    let app = TestApp::spawn().await;
    app.set_code("D-42", "green", "hangzhou").await;
    app.set_code("P-7", "green", "national").await;

    let body = app.decide(&trip("D-42", &["P-7"])).await;

    assert_eq!(body["decision"], "allow");
    assert_eq!(body["trip_id"], "T-1001");
    assert_eq!(body["degraded"], false);
    assert_eq!(
        body["reasons"],
        json!([{"party": "all", "code": "ALL_GREEN", "rule": "hangzhou.trip", "message": body["reasons"][0]["message"]}])
    );
    assert_eq!(body["hook"], "trip");
    assert!(!body["reasons"][0]["message"].as_str().unwrap().is_empty());
    let expected_version = Policy::load(&config_dir().join("policy.toml"))
        .unwrap()
        .version()
        .to_owned();
    assert_eq!(body["policy_version"], expected_version.as_str());

    let id = uuid::Uuid::parse_str(body["decision_id"].as_str().unwrap())
        .expect("decision_id is a UUID");
    assert_eq!(
        id.get_version_num(),
        7,
        "decision ids are time-ordered UUIDv7"
    );
    chrono::DateTime::parse_from_rfc3339(body["decided_at"].as_str().unwrap())
        .expect("decided_at is RFC 3339");

    let parties = body["parties"].as_array().unwrap();
    assert_eq!(parties.len(), 2);
    assert_eq!(parties[0]["party"], "driver");
    assert!(parties[0].get("index").is_none());
    assert_eq!(parties[0]["status"], "green");
    assert_eq!(parties[0]["issuer"], "hangzhou");
    assert_eq!(parties[0]["source"], "upstream");
    chrono::DateTime::parse_from_rfc3339(parties[0]["as_of"].as_str().unwrap())
        .expect("as_of is RFC 3339");
    assert_eq!(parties[1]["party"], "passenger");
    assert_eq!(parties[1]["index"], 0);
    assert_eq!(parties[1]["issuer"], "national");
}

#[tokio::test]
async fn yellow_and_red_reject_for_the_driver_and_for_a_passenger() {
    let app = TestApp::spawn().await;
    for (colour, code) in [("yellow", "HEALTH_CODE_YELLOW"), ("red", "HEALTH_CODE_RED")] {
        let (driver, green_driver) = (format!("D-{colour}"), format!("D-ok-{colour}"));
        let (passenger, green_passenger) = (format!("P-{colour}"), format!("P-ok-{colour}"));
        app.set_code(&driver, colour, "hangzhou").await;
        app.set_code(&passenger, colour, "hangzhou").await;
        app.set_code(&green_driver, "green", "hangzhou").await;
        app.set_code(&green_passenger, "green", "hangzhou").await;

        let body = app.decide(&trip(&driver, &[&green_passenger])).await;
        assert_eq!(body["decision"], "reject", "{body}");
        assert_eq!(codes(&body), vec![code]);
        assert_eq!(body["reasons"][0]["party"], "driver");
        assert_eq!(body["parties"][0]["status"], colour);

        let body = app
            .decide(&trip(&green_driver, &[&green_passenger, &passenger]))
            .await;
        assert_eq!(body["decision"], "reject", "{body}");
        assert_eq!(codes(&body), vec![code]);
        assert_eq!(body["reasons"][0]["party"], "passenger");
        assert_eq!(body["reasons"][0]["index"], 1);
    }
}

#[tokio::test]
async fn orange_is_normalised_to_yellow_by_the_policy() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "xiamen").await;
    app.set_code("P-1", "orange", "xiamen").await;

    let body = app.decide(&trip_in("xiamen", "D-1", &["P-1"])).await;

    assert_eq!(body["decision"], "reject");
    assert_eq!(codes(&body), vec!["HEALTH_CODE_YELLOW"]);
    assert_eq!(body["parties"][1]["status"], "yellow");
    assert_eq!(body["parties"][1]["color"], "orange");
}

#[tokio::test]
async fn a_colour_the_policy_does_not_know_is_never_green() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    for colour in ["grey", "purple", "Green-ish"] {
        let passenger = format!("P-{}", colour.to_lowercase());
        app.set_code(&passenger, colour, "hangzhou").await;
        let body = app.decide(&trip("D-1", &[&passenger])).await;
        assert_eq!(body["decision"], "reject", "{colour}: {body}");
        assert_eq!(codes(&body), vec!["HEALTH_CODE_UNRECOGNISED"]);
        assert_eq!(body["parties"][1]["status"], "unknown");
        assert_eq!(body["parties"][1]["color"], colour.to_lowercase());
    }
}

#[tokio::test]
async fn a_subject_without_a_code_is_rejected() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;

    let body = app.decide(&trip("D-1", &["P-nobody"])).await;

    assert_eq!(body["decision"], "reject");
    assert_eq!(codes(&body), vec!["NO_HEALTH_CODE"]);
    assert_eq!(body["parties"][1]["status"], "no_code");
    assert_eq!(body["parties"][1]["source"], "upstream");
}

#[tokio::test]
async fn a_code_not_renewed_within_the_maximum_age_is_stale() {
    let app = TestApp::spawn().await;
    app.set_code_at(
        "D-1",
        "green",
        "hangzhou",
        Some(Utc::now() - TimeDelta::hours(25)),
    )
    .await;
    app.set_code_at(
        "P-1",
        "green",
        "hangzhou",
        Some(Utc::now() - TimeDelta::hours(23)),
    )
    .await;

    let body = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(body["decision"], "reject");
    assert_eq!(codes(&body), vec!["STATUS_STALE"]);
    assert_eq!(body["reasons"][0]["party"], "driver");
    assert!(body["parties"][0]["age_seconds"].as_i64().unwrap() >= 25 * 3600);
}

#[tokio::test]
async fn a_code_from_an_issuer_the_city_does_not_recognise_is_rejected() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "xiamen").await;

    let body = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(codes(&body), vec!["ISSUER_NOT_RECOGNISED"]);
    assert_eq!(body["decision"], "reject");
}

#[tokio::test]
async fn every_failing_party_gets_its_own_reason() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "red", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_code("P-2", "yellow", "hangzhou").await;

    let body = app.decide(&trip("D-1", &["P-1", "P-2", "P-3"])).await;

    assert_eq!(
        codes(&body),
        vec!["HEALTH_CODE_RED", "HEALTH_CODE_YELLOW", "NO_HEALTH_CODE"]
    );
    let parties: Vec<(Value, Value)> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["party"].clone(),
                r.get("index").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        parties,
        vec![
            (json!("driver"), Value::Null),
            (json!("passenger"), json!(1)),
            (json!("passenger"), json!(2))
        ]
    );
}

#[tokio::test]
async fn provider_down_and_nothing_cached_fails_closed() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_faults(json!({"outage": true})).await;

    let body = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(body["decision"], "reject");
    assert_eq!(
        codes(&body),
        vec!["STATUS_UNAVAILABLE", "STATUS_UNAVAILABLE"]
    );
    assert_eq!(body["degraded"], false);
    assert_eq!(body["parties"][0]["status"], "unavailable");
    assert!(body["parties"][0].get("source").is_none());
}

#[tokio::test]
async fn provider_down_with_a_cached_copy_decides_from_the_cache() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "red", "hangzhou").await;
    let first = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(first["parties"][1]["source"], "upstream");

    app.set_faults(json!({"outage": true})).await;
    let body = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"]);
    for party in 0..2 {
        let source = body["parties"][party]["source"].as_str().unwrap();
        assert!(
            ["l1", "redis"].contains(&source),
            "served from a cache, not {source}"
        );
    }
}

#[tokio::test]
async fn a_policy_may_allow_degraded_when_status_is_unavailable() {
    let policy = std::fs::read_to_string(config_dir().join("policy.toml"))
        .unwrap()
        .replace(
            r#"on_unavailable = "reject""#,
            r#"on_unavailable = "allow_degraded""#,
        );
    let app = TestApp::spawn_with(Options {
        policy: Some(policy),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-0"])).await; // the driver is now cached
    app.set_faults(json!({"outage": true})).await;

    let body = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(body["decision"], "allow");
    assert_eq!(body["degraded"], true);
    assert_eq!(codes(&body), vec!["STATUS_UNAVAILABLE"]);
    assert_eq!(body["reasons"][0]["party"], "passenger");

    // Degraded mode never lets a known red through.
    app.set_faults(json!({})).await;
    app.set_code("P-2", "red", "hangzhou").await;
    app.decide(&trip("D-1", &["P-2"])).await;
    app.set_faults(json!({"outage": true})).await;
    let body = app.decide(&trip("D-1", &["P-2", "P-3"])).await;
    assert_eq!(body["decision"], "reject");
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED", "STATUS_UNAVAILABLE"]);
}

#[tokio::test]
async fn an_unconfigured_city_is_refused_with_422() {
    let app = TestApp::spawn().await;
    let response = app.check_trip(&trip_in("atlantis", "D-1", &["P-1"])).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNKNOWN_CITY");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("atlantis"));
}
