//! The optional sources: the itinerary card, and the national platform as
//! the mediator of mutual recognition.

use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};

use crate::helpers::{audit_bytes, codes, config_dir, trip, Options, TestApp};

fn order(passengers: &[&str]) -> Value {
    json!({"city": "hangzhou", "order_id": "O-1",
           "passengers": passengers.iter().map(|p| json!({"id": p})).collect::<Vec<_>>()})
}

fn itinerary_policy() -> String {
    std::fs::read_to_string(config_dir().join("policy.toml")).unwrap()
        + "\n[cities.hangzhou.hooks]\npassenger_order = [\"health_code\", \"itinerary\"]\n"
}

async fn set_visits(app: &TestApp, subject: &str, visits: Value) {
    let response = app
        .http
        .put(format!("{}/admin/itineraries/{subject}", app.simulator_url))
        .json(&json!({"visits": visits}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn a_recent_risk_area_visit_fails_the_itinerary_check_and_only_the_verdict_is_kept() {
    let app = TestApp::spawn_with(Options {
        policy: Some(itinerary_policy()),
        customise: Box::new(|s| s.itinerary.base_url = s.provider.base_url.clone()),
        ..Default::default()
    })
    .await;
    let day = |days: i64| {
        (Utc::now() - TimeDelta::days(days))
            .date_naive()
            .to_string()
    };
    for p in ["P-1", "P-2", "P-3"] {
        app.set_code(p, "green", "hangzhou").await;
    }
    set_visits(
        &app,
        "P-1",
        json!([
            {"region": "330100", "risk": "low", "date": day(1)},
            {"region": "420100", "risk": "high", "date": day(3)},
        ]),
    )
    .await;
    set_visits(
        &app,
        "P-2",
        json!([{"region": "310000", "risk": "medium", "date": day(20)}]),
    )
    .await;
    set_visits(&app, "P-3", json!([])).await;

    let (status, body) = app
        .post_json("/v1/checks/passenger-order", &order(&["P-1", "P-2", "P-3"]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(codes(&body), vec!["ITINERARY_RISK_AREA"]);
    assert_eq!(body["reasons"][0]["index"], 0);
    assert_eq!(body["reasons"][0]["details"]["area"], "420100");
    assert_eq!(
        body["reasons"][0]["rule"],
        "hangzhou.passenger_order.itinerary"
    );

    // Cached like health codes: the second check asks nobody.
    let stats = app.simulator_stats().await["itinerary_requests"]
        .as_u64()
        .unwrap();
    let (_, body) = app
        .post_json("/v1/checks/passenger-order", &order(&["P-2", "P-3"]))
        .await;
    assert_eq!(
        body["decision"], "allow",
        "a visit outside the 14-day window passes: {body}"
    );
    assert_eq!(
        app.simulator_stats().await["itinerary_requests"]
            .as_u64()
            .unwrap(),
        stats
    );

    // A card the source does not have is no clean card: it follows the
    // city's on_unavailable (reject here).
    app.set_code("P-4", "green", "hangzhou").await;
    let (_, body) = app
        .post_json("/v1/checks/passenger-order", &order(&["P-3", "P-4"]))
        .await;
    assert_eq!(body["decision"], "reject", "{body}");
    assert_eq!(codes(&body), vec!["STATUS_UNAVAILABLE"]);
    assert_eq!(body["reasons"][0]["index"], 1);

    // Trips do not check the itinerary in this policy.
    app.set_code("D-1", "green", "hangzhou").await;
    assert_eq!(
        app.decide(&trip("D-1", &["P-1"])).await["decision"],
        "allow"
    );

    // The trail keeps the verdict and area, never the travel history.
    let (_, page) = app
        .get_json("/v1/audit/decisions?reason=ITINERARY_RISK_AREA")
        .await;
    assert_eq!(page["decisions"][0]["reasons"][0]["detail"], "420100");
    let bytes = audit_bytes(&app.audit_file());
    assert!(
        bytes.windows(6).all(|w| w != b"330100"),
        "a low-risk region of the history reached the trail"
    );
}

#[tokio::test]
async fn a_required_itinerary_without_a_source_counts_as_unavailable() {
    let app = TestApp::spawn_with(Options {
        policy: Some(itinerary_policy()),
        ..Default::default()
    })
    .await;
    app.set_code("P-1", "green", "hangzhou").await;
    let (_, body) = app
        .post_json("/v1/checks/passenger-order", &order(&["P-1"]))
        .await;
    assert_eq!(codes(&body), vec!["STATUS_UNAVAILABLE"]);
    assert_eq!(
        body["reasons"][0]["rule"],
        "hangzhou.passenger_order.itinerary"
    );
}

#[tokio::test]
async fn the_national_platform_mediates_codes_of_issuers_the_city_does_not_recognise() {
    let (national_url, national_state) = crate::helpers::start_simulator(0, 0, 3);
    let url = national_url.clone();
    let app = TestApp::spawn_with(Options {
        customise: Box::new(move |s| s.national.base_url = url),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    for p in ["P-green", "P-red", "P-unknown"] {
        app.set_code(p, "green", "xiamen").await;
    }
    let national_code = |subject: &str, color: &str| {
        tripgate::provider_api::HealthCodeRecord::v2(
            subject,
            color,
            "national",
            Utc::now(),
            Utc::now(),
        )
    };
    national_state.set_code(national_code("P-green", "green"));
    national_state.set_code(national_code("P-red", "red"));

    let body = app.decide(&trip("D-1", &["P-green"])).await;
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(body["parties"][1]["issuer"], "national");

    let body = app.decide(&trip("D-1", &["P-red"])).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"]);

    let body = app.decide(&trip("D-1", &["P-unknown"])).await;
    assert_eq!(
        codes(&body),
        vec!["ISSUER_NOT_RECOGNISED"],
        "no national answer: the original code stands"
    );

    // Codes the city recognises never go to the national platform.
    app.set_code("P-hz", "green", "hangzhou").await;
    let asked = national_state.stats().requests;
    app.decide(&trip("D-1", &["P-hz"])).await;
    assert_eq!(national_state.stats().requests, asked);
}

#[tokio::test]
async fn a_living_simulator_turns_codes_over_and_pushes_every_change() {
    use tripgate::simulator::{PopulationSpec, Simulator, Transitions};
    let app = TestApp::spawn().await;
    let started = chrono::Utc::now();
    let spec = PopulationSpec {
        drivers: 50,
        passengers: 50,
        seed: 11,
    };
    let simulator = Simulator::build("127.0.0.1:0".parse().unwrap(), spec, 1).unwrap();
    let state = simulator.state();
    state.set_webhook(Some(tripgate::simulator::Webhook {
        url: app.url("/v1/status-events"),
        secret: crate::helpers::EVENTS_SECRET.into(),
    }));
    // A simulated week every tenth of a second: yellow codes recover.
    let transitions = simulator.start_transitions(
        spec,
        Transitions {
            rate: 200.0,
            time_scale: 7.0 * 86_400.0 * 10.0,
        },
    );
    tokio::spawn(simulator.run_until_stopped());
    let mut stats = state.stats();
    for _ in 0..60 {
        stats = state.stats();
        if stats.transitions >= 100 && stats.pushes_delivered >= 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stats.transitions >= 100, "{stats:?}");
    assert!(stats.pushes_delivered >= 100, "{stats:?}");
    assert_eq!(stats.pushes_failed, 0, "tripgate refused pushes: {stats:?}");
    // Codes changed: some members hold a green code issued or restored by
    // the transitions (colour since its last check-in) ...
    let recovered = (0..50)
        .filter_map(|i| state.code_of(&tripgate::simulator::Population::driver_id(i)))
        .filter(|code| code.color == "green" && code.color_since == code.renewed_at)
        .count();
    assert!(recovered > 0, "no code issued or restored");
    // ... and no code the transitions turned yellow is still yellow a
    // simulated week (a tenth of a second) later, allowing a second for a
    // busy machine.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let long_ago = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let overdue: Vec<_> = (0..50)
        .map(tripgate::simulator::Population::passenger_id)
        .chain((0..50).map(tripgate::simulator::Population::driver_id))
        .filter_map(|id| state.code_of(&id))
        .filter(|code| code.color == "yellow")
        .filter(|code| {
            code.color_since
                .is_some_and(|t| t > started && t < long_ago)
        })
        .collect();
    transitions.abort();
    assert!(overdue.is_empty(), "{overdue:?}");
}
