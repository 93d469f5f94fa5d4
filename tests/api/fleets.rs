//! Who asked, and who may read it: every decision records the client that
//! asked; audit queries filter by client; a fleet reads only its own
//! dispatch clients' decisions; a regulator may be limited to cities. On
//! SQLite and PostgreSQL (the client filter is SQL of each).

use serde_json::{json, Value};
use tripgate::config::{AuditBackend, Role};

use crate::helpers::{auth_client, trip, trip_in, Options, TestApp, TestPostgres};

const DISPATCH_A: &str = "token-dispatch-a";
const DISPATCH_B: &str = "token-dispatch-b";
const FLEET_A: &str = "token-fleet-a";
const REGULATOR: &str = "token-regulator";
const REGULATOR_HZ: &str = "token-regulator-hz";

async fn secured(backend: AuditBackend) -> (TestApp, Option<TestPostgres>) {
    let postgres = match backend {
        AuditBackend::Postgres => Some(TestPostgres::create().await),
        AuditBackend::Sqlite => None,
    };
    let url = postgres.as_ref().map(|p| p.url.clone());
    let app = TestApp::spawn_with(Options {
        customise: Box::new(move |s| {
            s.audit.backend = backend;
            if let Some(url) = url {
                s.audit.postgres_url = url;
            }
            s.auth.enabled = true;
            let mut fleet = auth_client("fleet-a", Role::Fleet, FLEET_A);
            fleet.clients = Some(vec!["dispatch-a".into()]);
            let mut regional = auth_client("regulator-hz", Role::Regulator, REGULATOR_HZ);
            regional.cities = Some(vec!["hangzhou".into()]);
            s.auth.clients = vec![
                auth_client("dispatch-a", Role::Dispatch, DISPATCH_A),
                auth_client("dispatch-b", Role::Dispatch, DISPATCH_B),
                fleet,
                auth_client("regulator", Role::Regulator, REGULATOR),
                regional,
            ];
        }),
        ..Default::default()
    })
    .await;
    (app, postgres)
}

async fn decide(app: &TestApp, token: &str, body: &Value) -> String {
    let response = app
        .http
        .post(app.url("/v1/checks/trip"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["decision_id"].as_str().unwrap().to_owned()
}

fn ids(page: &Value) -> Vec<String> {
    let mut ids: Vec<String> = page["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no decisions: {page}"))
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn fleets_and_regulators_read_within_their_scope(backend: AuditBackend) {
    let (app, _postgres) = secured(backend).await;
    for subject in ["D-1", "P-1"] {
        app.set_code(subject, "green", "hangzhou").await;
    }
    app.set_code("P-2", "red", "hangzhou").await;
    let a_hz = decide(&app, DISPATCH_A, &trip("D-1", &["P-2"])).await;
    let b_hz = decide(&app, DISPATCH_B, &trip("D-1", &["P-1"])).await;
    let b_xm = decide(&app, DISPATCH_B, &trip_in("xiamen", "D-1", &["P-1"])).await;

    // A regulator sees everything, with the client that asked.
    let (status, page) = app.get_json_as(REGULATOR, "/v1/audit/decisions").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        ids(&page),
        sorted(vec![a_hz.clone(), b_hz.clone(), b_xm.clone()])
    );
    let (_, record) = app
        .get_json_as(REGULATOR, &format!("/v1/audit/decisions/{a_hz}"))
        .await;
    assert_eq!(record["client"], "dispatch-a", "{record}");
    let (_, page) = app
        .get_json_as(REGULATOR, "/v1/audit/decisions?client=dispatch-b")
        .await;
    assert_eq!(ids(&page), sorted(vec![b_hz.clone(), b_xm.clone()]));
    let (status, error) = app
        .get_json_as(REGULATOR, "/v1/audit/decisions?client=no%20such")
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["field"], "client");

    // A fleet sees its own dispatch client's decisions only.
    let (status, page) = app.get_json_as(FLEET_A, "/v1/audit/decisions").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), vec![a_hz.clone()]);
    let (status, error) = app
        .get_json_as(FLEET_A, "/v1/audit/decisions?client=dispatch-b")
        .await;
    assert_eq!(status, 403, "{error}");
    assert_eq!(error["error"]["code"], "OUT_OF_SCOPE");
    let (status, _) = app
        .get_json_as(FLEET_A, &format!("/v1/audit/decisions/{b_hz}"))
        .await;
    assert_eq!(
        status, 404,
        "another client's decision is as if it did not exist"
    );
    let (status, _) = app
        .get_json_as(FLEET_A, &format!("/v1/audit/decisions/{a_hz}"))
        .await;
    assert_eq!(status, 200);
    let (_, summary) = app
        .get_json_as(FLEET_A, "/v1/audit/summary?group_by=reason")
        .await;
    assert_eq!(summary["total"], 1, "{summary}");
    assert_eq!(summary["rows"][0]["key"], "HEALTH_CODE_RED", "{summary}");
    // ... and cannot decide.
    let response = app
        .http
        .post(app.url("/v1/checks/trip"))
        .bearer_auth(FLEET_A)
        .json(&trip("D-1", &["P-1"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // A regulator limited to Hangzhou.
    let (_, page) = app.get_json_as(REGULATOR_HZ, "/v1/audit/decisions").await;
    assert_eq!(ids(&page), sorted(vec![a_hz.clone(), b_hz.clone()]));
    let (status, error) = app
        .get_json_as(REGULATOR_HZ, "/v1/audit/decisions?city=xiamen")
        .await;
    assert_eq!(status, 403, "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("xiamen"));
    let (status, _) = app
        .get_json_as(REGULATOR_HZ, &format!("/v1/audit/decisions/{b_xm}"))
        .await;
    assert_eq!(status, 404);
    let (_, summary) = app
        .get_json_as(REGULATOR_HZ, "/v1/audit/summary?group_by=city")
        .await;
    assert_eq!(
        summary["rows"],
        json!([{"key": "hangzhou", "count": 2}]),
        "{summary}"
    );
    // Export is scoped too.
    let response = app
        .http
        .get(app.url("/v1/audit/export"))
        .bearer_auth(FLEET_A)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(&a_hz));
}

#[tokio::test]
async fn fleets_and_regulators_read_within_their_scope_on_sqlite() {
    fleets_and_regulators_read_within_their_scope(AuditBackend::Sqlite).await;
}

#[tokio::test]
async fn fleets_and_regulators_read_within_their_scope_on_postgres() {
    fleets_and_regulators_read_within_their_scope(AuditBackend::Postgres).await;
}

#[tokio::test]
async fn a_fleet_must_name_configured_dispatch_clients() {
    let mut settings = tripgate::config::Settings::load_from(
        &crate::helpers::config_dir(),
        tripgate::config::Environment::Local,
    )
    .unwrap();
    settings.auth.enabled = true;
    let mut fleet = auth_client("fleet-a", Role::Fleet, FLEET_A);
    settings.auth.clients = vec![
        auth_client("dispatch-a", Role::Dispatch, DISPATCH_A),
        fleet.clone(),
    ];
    let error = settings.auth_clients().unwrap_err().to_string();
    assert!(
        error.contains("a fleet must list the dispatch clients"),
        "{error}"
    );
    fleet.clients = Some(vec!["dispatch-z".into()]);
    settings.auth.clients[1] = fleet.clone();
    let error = settings.auth_clients().unwrap_err().to_string();
    assert!(
        error.contains("\"dispatch-z\", which is not a configured dispatch client"),
        "{error}"
    );
    let mut dispatch = auth_client("dispatch-b", Role::Dispatch, DISPATCH_B);
    dispatch.cities = Some(vec!["hangzhou".into()]);
    settings.auth.clients = vec![dispatch];
    let error = settings.auth_clients().unwrap_err().to_string();
    assert!(
        error.contains("cities applies to roles regulator and fleet only"),
        "{error}"
    );
}
