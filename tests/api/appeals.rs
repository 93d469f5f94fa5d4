//! Appeals against refusals, over HTTP with authentication on, on SQLite
//! and PostgreSQL: who may file, read and resolve; only a reject, only a
//! refused party, one open appeal per party, final resolutions; the
//! appeal's records in the chain (verify passes, exports verify on their
//! own); raw ids kept out of the trail; summary counts and metrics.

use serde_json::{json, Value};
use tripgate::config::{AuditBackend, Role};

use crate::helpers::{audit_bytes, audit_verify, auth_client, Options, TestApp, TestPostgres};

const DISPATCH_A: &str = "token-dispatch-a";
const DISPATCH_B: &str = "token-dispatch-b";
const OPS: &str = "token-ops";
const FLEET_A: &str = "token-fleet-a";
const REGULATOR: &str = "token-regulator";
const REGULATOR_XM: &str = "token-regulator-xm";

/// A passenger id shaped like a phone number: it must appear nowhere in
/// the trail, even when someone types it into the grounds.
const PASSENGER: &str = "13800138000";

fn clients() -> Vec<tripgate::config::ClientSettings> {
    let mut fleet = auth_client("fleet-a", Role::Fleet, FLEET_A);
    fleet.clients = Some(vec!["dispatch-a".into()]);
    let mut xiamen = auth_client("regulator-xm", Role::Regulator, REGULATOR_XM);
    xiamen.cities = Some(vec!["xiamen".into()]);
    vec![
        auth_client("dispatch-a", Role::Dispatch, DISPATCH_A),
        auth_client("dispatch-b", Role::Dispatch, DISPATCH_B),
        auth_client("ops", Role::Ops, OPS),
        auth_client("regulator", Role::Regulator, REGULATOR),
        fleet,
        xiamen,
    ]
}

pub async fn secured_on(
    backend: AuditBackend,
    postgres: Option<&TestPostgres>,
    instance: &str,
) -> TestApp {
    let url = postgres.map(|p| p.url.clone());
    let instance = instance.to_owned();
    TestApp::spawn_with(Options {
        customise: Box::new(move |s| {
            s.audit.backend = backend;
            if let Some(url) = url {
                s.audit.postgres_url = url;
            }
            s.audit.instance_id = instance;
            s.auth.enabled = true;
            s.auth.clients = clients();
        }),
        ..Default::default()
    })
    .await
}

async fn decide(app: &TestApp, token: &str, body: &Value) -> (String, String) {
    let (status, answer) = app.post_json_as(token, "/v1/checks/trip", body).await;
    assert_eq!(status, 200, "{answer}");
    (
        answer["decision_id"].as_str().unwrap().to_owned(),
        answer["decision"].as_str().unwrap().to_owned(),
    )
}

fn trip_in(city: &str, driver: &str, passenger: &str) -> Value {
    crate::helpers::trip_in(city, driver, &[passenger])
}

fn error_code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

async fn appeal_rules(backend: AuditBackend) {
    let postgres = match backend {
        AuditBackend::Postgres => Some(TestPostgres::create().await),
        AuditBackend::Sqlite => None,
    };
    let mut app = secured_on(backend, postgres.as_ref(), "appeals-1").await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_code(PASSENGER, "red", "hangzhou").await;
    let (refused, outcome) = decide(&app, DISPATCH_A, &trip_in("hangzhou", "D-1", PASSENGER)).await;
    assert_eq!(outcome, "reject");
    let (allowed, outcome) = decide(&app, DISPATCH_A, &trip_in("hangzhou", "D-1", "P-1")).await;
    assert_eq!(outcome, "allow");
    let (refused_xm, _) = decide(&app, DISPATCH_B, &trip_in("xiamen", "D-1", PASSENGER)).await;

    let filing = |decision: &str, party: &str, grounds: &str| json!({"decision_id": decision, "party": party, "grounds": grounds});
    // What cannot be appealed, and bad input.
    let cases = [
        (
            DISPATCH_A,
            filing(&allowed, "passenger", "x"),
            422,
            "NOT_APPEALABLE",
        ),
        (
            DISPATCH_A,
            filing(&refused, "driver", "x"),
            422,
            "NOT_APPEALABLE",
        ),
        (
            DISPATCH_A,
            filing(&uuid::Uuid::now_v7().to_string(), "passenger", "x"),
            404,
            "DECISION_NOT_FOUND",
        ),
        // Another dispatch client's decision is as if it did not exist.
        (
            DISPATCH_B,
            filing(&refused, "passenger", "x"),
            404,
            "DECISION_NOT_FOUND",
        ),
        (
            DISPATCH_A,
            filing("not-a-uuid", "passenger", "x"),
            400,
            "INVALID_FIELD",
        ),
        (
            DISPATCH_A,
            filing(&refused, "pilot", "x"),
            400,
            "INVALID_FIELD",
        ),
        (
            DISPATCH_A,
            filing(&refused, "passenger", "   "),
            400,
            "INVALID_FIELD",
        ),
        (
            DISPATCH_A,
            filing(&refused, "passenger", &"长".repeat(2_001)),
            400,
            "INVALID_FIELD",
        ),
        (
            DISPATCH_A,
            json!({"decision_id": refused, "party": "passenger", "grounds": "x", "extra": 1}),
            400,
            "INVALID_REQUEST",
        ),
        (
            REGULATOR,
            filing(&refused, "passenger", "x"),
            403,
            "FORBIDDEN",
        ),
        (
            FLEET_A,
            filing(&refused, "passenger", "x"),
            403,
            "FORBIDDEN",
        ),
    ];
    for (token, body, status, code) in cases {
        let (got, answer) = app.post_json_as(token, "/v1/appeals", &body).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{body}: {answer}"
        );
    }
    let (status, _) = app
        .post_json_as("nope", "/v1/appeals", &filing(&refused, "passenger", "x"))
        .await;
    assert_eq!(status, 401);

    // Filed on the passenger's behalf; their raw id typed into the grounds
    // is replaced, a phone-like number flagged.
    let grounds =
        format!("I am {PASSENGER}; my code turned green this morning, call 139 0000 1111");
    let (status, filed) = app
        .post_json_as(
            DISPATCH_A,
            "/v1/appeals",
            &filing(&refused, "passenger", &grounds),
        )
        .await;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(filed["state"], "open");
    assert_eq!(filed["decision_id"], refused.as_str());
    assert_eq!(filed["party"], "passenger");
    assert_eq!(filed["redacted"], 1, "{filed}");
    assert!(
        !filed["grounds"].as_str().unwrap().contains(PASSENGER),
        "{filed}"
    );
    assert!(filed["grounds"].as_str().unwrap().contains("[subject id]"));
    assert_eq!(filed["possible_identifier"], true);
    assert_eq!(filed["warnings"].as_array().unwrap().len(), 1, "{filed}");
    assert!(filed["filed_at"].as_str().unwrap().ends_with('Z'));
    let appeal_id = filed["appeal_id"].as_str().unwrap().to_owned();

    // One open appeal per decision and party.
    let (status, again) = app
        .post_json_as(OPS, "/v1/appeals", &filing(&refused, "passenger", "again"))
        .await;
    assert_eq!(
        (status, error_code(&again)),
        (409, "APPEAL_ALREADY_OPEN"),
        "{again}"
    );
    assert!(again["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&appeal_id));

    // Ops may file too (here: the Xiamen refusal).
    let (status, filed_xm) = app
        .post_json_as(
            OPS,
            "/v1/appeals",
            &filing(&refused_xm, "passenger", "wrong data"),
        )
        .await;
    assert_eq!(status, 201, "{filed_xm}");
    assert_eq!(filed_xm["possible_identifier"], false);
    assert!(filed_xm["warnings"].as_array().unwrap().is_empty());
    let appeal_xm = filed_xm["appeal_id"].as_str().unwrap().to_owned();

    // Who sees which.
    let listed = |answer: &Value| -> Vec<String> {
        answer["appeals"]
            .as_array()
            .unwrap_or_else(|| panic!("no appeals: {answer}"))
            .iter()
            .map(|a| a["appeal_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, page) = app.get_json_as(REGULATOR, "/v1/appeals?state=open").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        listed(&page),
        vec![appeal_id.clone(), appeal_xm.clone()],
        "oldest first"
    );
    let (_, page) = app.get_json_as(DISPATCH_A, "/v1/appeals").await;
    assert_eq!(
        listed(&page),
        vec![appeal_id.clone()],
        "dispatch sees what it filed"
    );
    let (_, page) = app.get_json_as(DISPATCH_B, "/v1/appeals").await;
    assert!(listed(&page).is_empty(), "{page}");
    let (_, page) = app.get_json_as(FLEET_A, "/v1/appeals").await;
    assert_eq!(listed(&page), vec![appeal_id.clone()]);
    let (_, page) = app.get_json_as(REGULATOR_XM, "/v1/appeals").await;
    assert_eq!(listed(&page), vec![appeal_xm.clone()]);
    let (status, answer) = app
        .get_json_as(REGULATOR_XM, "/v1/appeals?city=hangzhou")
        .await;
    assert_eq!((status, error_code(&answer)), (403, "OUT_OF_SCOPE"));
    let (status, _) = app
        .get_json_as(REGULATOR_XM, &format!("/v1/appeals/{appeal_id}"))
        .await;
    assert_eq!(status, 404);
    let (_, page) = app.get_json_as(REGULATOR, "/v1/appeals?limit=1").await;
    assert_eq!(listed(&page), vec![appeal_id.clone()]);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, page) = app
        .get_json_as(REGULATOR, &format!("/v1/appeals?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(listed(&page), vec![appeal_xm.clone()]);
    assert!(page["next_cursor"].is_null());
    for bad in [
        "state=closed",
        "from=yesterday",
        "colour=red",
        "to=",
        "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
        "state=",
        "decision_id=x",
        "limit=0",
    ] {
        let (status, answer) = app
            .get_json_as(REGULATOR, &format!("/v1/appeals?{bad}"))
            .await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "INVALID_PARAMETER"),
            "{bad}: {answer}"
        );
    }
    let (status, one) = app
        .get_json_as(REGULATOR, &format!("/v1/appeals/{appeal_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["filed_by"], "dispatch-a");
    assert!(one["resolution"].is_null());

    // Resolution: the regulator's alone, explained, and final.
    let resolution = |outcome: &str, cause: Option<&str>| {
        let mut body = json!({"outcome": outcome, "note": "provider confirmed the code was green"});
        if let Some(cause) = cause {
            body["cause"] = json!(cause);
        }
        body
    };
    let path = format!("/v1/appeals/{appeal_id}/resolution");
    for (token, body, status, code) in [
        (
            DISPATCH_A,
            resolution("overturned", Some("provider_data_wrong")),
            403,
            "FORBIDDEN",
        ),
        (
            OPS,
            resolution("overturned", Some("provider_data_wrong")),
            403,
            "FORBIDDEN",
        ),
        (
            REGULATOR,
            resolution("overturned", None),
            400,
            "INVALID_FIELD",
        ),
        (
            REGULATOR,
            resolution("overturned", Some("bad_luck")),
            400,
            "INVALID_FIELD",
        ),
        (
            REGULATOR,
            resolution("upheld", Some("other")),
            400,
            "INVALID_FIELD",
        ),
        (REGULATOR, resolution("maybe", None), 400, "INVALID_FIELD"),
        (
            REGULATOR,
            json!({"outcome": "upheld", "note": ""}),
            400,
            "INVALID_FIELD",
        ),
        (
            REGULATOR_XM,
            resolution("overturned", Some("provider_data_wrong")),
            404,
            "APPEAL_NOT_FOUND",
        ),
    ] {
        let (got, answer) = app.post_json_as(token, &path, &body).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{body}: {answer}"
        );
    }
    let (status, resolved) = app
        .post_json_as(
            REGULATOR,
            &path,
            &resolution("overturned", Some("provider_data_wrong")),
        )
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["resolution"]["outcome"], "overturned");
    assert_eq!(resolved["resolution"]["cause"], "provider_data_wrong");
    assert_eq!(resolved["resolution"]["resolved_by"], "regulator");
    let (status, answer) = app
        .post_json_as(REGULATOR, &path, &resolution("upheld", None))
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (409, "APPEAL_ALREADY_RESOLVED"),
        "{answer}"
    );
    let (status, answer) = app
        .post_json_as(
            REGULATOR,
            &format!("/v1/appeals/{}/resolution", uuid::Uuid::now_v7()),
            &resolution("upheld", None),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (404, "APPEAL_NOT_FOUND"));

    // The decision now carries its appeal and why it was overturned.
    let (_, decision) = app
        .get_json_as(REGULATOR, &format!("/v1/audit/decisions/{refused}"))
        .await;
    assert_eq!(
        decision["decision"], "reject",
        "the decision itself is unchanged"
    );
    assert_eq!(
        decision["appeals"][0]["appeal_id"],
        appeal_id.as_str(),
        "{decision}"
    );
    assert_eq!(
        decision["appeals"][0]["resolution"]["outcome"],
        "overturned"
    );
    assert_eq!(
        decision["appeals"][0]["resolution"]["cause"],
        "provider_data_wrong"
    );
    let (_, decision) = app
        .get_json_as(REGULATOR, &format!("/v1/audit/decisions/{allowed}"))
        .await;
    assert_eq!(decision["appeals"], json!([]));
    // An appeal's record is not a decision.
    let (status, _) = app
        .get_json_as(REGULATOR, &format!("/v1/audit/decisions/{appeal_id}"))
        .await;
    assert_eq!(status, 404);

    // Resolved, the party may appeal again.
    let (status, second) = app
        .post_json_as(
            DISPATCH_A,
            "/v1/appeals",
            &filing(&refused, "passenger", "new evidence"),
        )
        .await;
    assert_eq!(status, 201, "{second}");

    // Decisions listed are decisions only; the summary counts appeals.
    let (_, page) = app.get_json_as(REGULATOR, "/v1/audit/decisions").await;
    assert_eq!(page["decisions"].as_array().unwrap().len(), 3, "{page}");
    let (_, summary) = app
        .get_json_as(REGULATOR, "/v1/audit/summary?group_by=city")
        .await;
    assert_eq!(summary["total"], 3, "{summary}");
    assert_eq!(
        summary["appeals"],
        json!({"filed": 3, "open": 2, "upheld": 0, "overturned": 1}),
        "{summary}"
    );
    let (_, summary) = app.get_json_as(REGULATOR_XM, "/v1/audit/summary").await;
    assert_eq!(summary["appeals"]["filed"], 1, "{summary}");

    // The open appeals, for every replica, on /metrics.
    let metrics = app
        .http
        .get(format!("http://{}/metrics", app.admin_address))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("tripgate_appeals_open 2"), "{metrics}");
    assert!(
        metrics.contains("tripgate_appeals_oldest_open_seconds"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"tripgate_appeal_events_total{event="overturned"} 1"#));

    // The export carries the appeals' records and verifies on its own.
    let export = app
        .http
        .get(app.url("/v1/audit/export"))
        .bearer_auth(REGULATOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(export.lines().count(), 7, "{export}");
    assert_eq!(export.matches("\"appeal_filed\"").count(), 3);
    assert_eq!(export.matches("\"appeal_resolved\"").count(), 1);
    assert!(!export.contains(PASSENGER));
    let (_, heads) = app.get_json_as(REGULATOR, "/v1/audit/heads").await;
    let public_key = heads["public_key"].as_str().unwrap().to_owned();

    app.stop().await;
    // No raw id anywhere in the trail, and every chain verifies.
    match &postgres {
        None => {
            assert!(
                !contains(&audit_bytes(&app.audit_file()), PASSENGER.as_bytes()),
                "a raw id reached the SQLite trail"
            );
            let (code, out) = audit_verify(&["--sqlite", app.audit_file().to_str().unwrap()], &[]);
            assert_eq!(code, 0, "{out}");
            assert!(out.contains("7 records"), "{out}");
            export_verifies_on_its_own(&app, &public_key);
        }
        Some(postgres) => {
            let client = postgres.client().await;
            for table in ["audit_decisions", "audit_appeals", "audit_subject_keys"] {
                let row = client
                    .query_one(
                        &format!("SELECT COUNT(*) FROM {table} t WHERE t::text LIKE $1"),
                        &[&format!("%{PASSENGER}%")],
                    )
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i64>(0), 0, "a raw id reached {table}");
            }
            let (code, out) = audit_verify(&["--postgres", &postgres.url], &[]);
            assert_eq!(code, 0, "{out}");
            assert!(out.contains("7 records"), "{out}");
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `tripgate audit export` of a trail with appeals (and clients), checked
/// by `audit verify --export` with the public key alone.
fn export_verifies_on_its_own(app: &TestApp, public_key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("trail.ndjson");
    crate::helpers::export_trail(&app.audit_file(), &export);
    let key_file = dir.path().join("public.key");
    std::fs::write(&key_file, public_key).unwrap();
    let (code, text) = crate::helpers::verify_export(&export, &key_file);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("intact: 7 records"), "{text}");
}

#[tokio::test]
async fn appeal_rules_hold_on_sqlite() {
    appeal_rules(AuditBackend::Sqlite).await;
}

#[tokio::test]
async fn appeal_rules_hold_on_postgres() {
    appeal_rules(AuditBackend::Postgres).await;
}

/// Two replicas on one PostgreSQL, asked at once to file the same party's
/// appeal, then to resolve it: one of each succeeds, the other is refused.
#[tokio::test]
async fn replicas_file_and_resolve_an_appeal_once() {
    let postgres = TestPostgres::create().await;
    let mut one = secured_on(AuditBackend::Postgres, Some(&postgres), "replica-1").await;
    let mut two = secured_on(AuditBackend::Postgres, Some(&postgres), "replica-2").await;
    one.set_code("D-1", "red", "hangzhou").await;
    let (refused, _) = decide(&one, DISPATCH_A, &trip_in("hangzhou", "D-1", "P-1")).await;
    for round in 0..3 {
        let body =
            json!({"decision_id": refused, "party": "driver", "grounds": format!("round {round}")});
        let (a, b) = tokio::join!(
            one.post_json_as(DISPATCH_A, "/v1/appeals", &body),
            two.post_json_as(DISPATCH_A, "/v1/appeals", &body),
        );
        let mut statuses = vec![a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, vec![201, 409], "{a:?} {b:?}");
        let appeal_id = if a.0 == 201 { &a.1 } else { &b.1 }["appeal_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/v1/appeals/{appeal_id}/resolution");
        let body = json!({"outcome": "upheld", "note": "the code was red"});
        let (a, b) = tokio::join!(
            one.post_json_as(REGULATOR, &path, &body),
            two.post_json_as(REGULATOR, &path, &body),
        );
        let mut statuses = vec![a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, vec![200, 409], "{a:?} {b:?}");
    }
    let (_, page) = two
        .get_json_as(REGULATOR, "/v1/appeals?state=resolved")
        .await;
    assert_eq!(page["appeals"].as_array().unwrap().len(), 3, "{page}");
    // Each replica's chain may have begun with the last request; stopped,
    // both are closed by a signed head.
    one.stop().await;
    two.stop().await;
    let (code, out) = audit_verify(&["--postgres", &postgres.url], &[]);
    assert_eq!(code, 0, "{out}");
}
