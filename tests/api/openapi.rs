//! The OpenAPI document says what the service does: with authentication
//! on, real answers to right and wrong requests on both listeners have a
//! status the document lists for that route, and a JSON body that validates
//! against the schema it gives.

use serde_json::{json, Value};
use tripgate::config::Role;

use crate::helpers::{auth_client, trip, Options, TestApp};

const DISPATCH: &str = "oa-dispatch-token";
const REGULATOR: &str = "oa-regulator-token";
const PROVIDER: &str = "oa-provider-token";
const OPS: &str = "oa-ops-token";

struct Case {
    admin: bool,
    method: &'static str,
    /// The path as the document names it.
    template: &'static str,
    path: String,
    token: Option<&'static str>,
    content_type: &'static str,
    body: Option<String>,
}

fn case(method: &'static str, template: &'static str) -> Case {
    Case {
        admin: false,
        method,
        template,
        path: template.to_owned(),
        token: None,
        content_type: "application/json",
        body: None,
    }
}

impl Case {
    fn token(mut self, token: &'static str) -> Self {
        self.token = Some(token);
        self
    }
    fn json(mut self, body: Value) -> Self {
        self.body = Some(body.to_string());
        self
    }
    fn raw(mut self, body: &str, content_type: &'static str) -> Self {
        self.body = Some(body.to_owned());
        self.content_type = content_type;
        self
    }
    fn at(mut self, path: String) -> Self {
        self.path = path;
        self
    }
    fn admin(mut self) -> Self {
        self.admin = true;
        self
    }
}

/// The schema of `reference` (a `$ref` or an inline schema) with the
/// document's components alongside, so its own `$ref`s resolve.
fn schema_with_components(schema: &Value, doc: &Value) -> Value {
    let mut schema = schema.clone();
    schema["components"] = doc["components"].clone();
    schema
}

#[tokio::test]
async fn real_answers_match_the_document() {
    let app = TestApp::spawn_with(Options {
        customise: Box::new(|s| {
            s.auth.enabled = true;
            s.auth.clients = vec![
                auth_client("dispatch", Role::Dispatch, DISPATCH),
                auth_client("regulator", Role::Regulator, REGULATOR),
                auth_client("provider", Role::Provider, PROVIDER),
                auth_client("ops", Role::Ops, OPS),
            ];
        }),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("D-2", "red", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    let (_, doc) = app.get_json("/openapi.json").await;

    let decision_id = uuid::Uuid::now_v7().to_string();
    // Two refusals (one appealed up front, one appealed by the cases) and
    // an allow, for the appeal routes.
    let mut refused = Vec::new();
    for _ in 0..2 {
        let (_, answer) = app
            .post_json_as(DISPATCH, "/v1/checks/trip", &trip("D-2", &["P-1"]))
            .await;
        refused.push(answer["decision_id"].as_str().unwrap().to_owned());
    }
    let (_, allowed) = app
        .post_json_as(DISPATCH, "/v1/checks/trip", &trip("D-1", &["P-1"]))
        .await;
    let allowed = allowed["decision_id"].as_str().unwrap().to_owned();
    let filing =
        |id: &str| json!({"decision_id": id, "party": "driver", "grounds": "the code was wrong"});
    let (status, filed) = app
        .post_json_as(DISPATCH, "/v1/appeals", &filing(&refused[0]))
        .await;
    assert_eq!(status, 201, "{filed}");
    let appeal_id = filed["appeal_id"].as_str().unwrap().to_owned();
    let resolution =
        json!({"outcome": "overturned", "cause": "provider_data_wrong", "note": "confirmed"});
    let cases = vec![
        case("post", "/v1/checks/trip").token(DISPATCH).json(trip("D-1", &["P-1"])),
        case("post", "/v1/checks/trip").token(DISPATCH).raw("{not json", "application/json"),
        case("post", "/v1/checks/trip").token(DISPATCH).json(json!({"trip_id": "T 1", "city": "hangzhou", "driver": {"id": "D-1"}, "passengers": [{"id": "P-1"}]})),
        case("post", "/v1/checks/trip").json(trip("D-1", &["P-1"])),
        case("post", "/v1/checks/trip").token(REGULATOR).json(trip("D-1", &["P-1"])),
        case("get", "/v1/checks/trip").token(DISPATCH),
        case("post", "/v1/checks/trip").token(DISPATCH).raw("x", "text/plain"),
        case("post", "/v1/checks/trip").token(DISPATCH).raw(&"x".repeat(70_000), "application/json"),
        case("post", "/v1/checks/trip").token(DISPATCH).json(json!({"trip_id": "T-1", "city": "atlantis", "driver": {"id": "D-1"}, "passengers": [{"id": "P-1"}]})),
        case("post", "/v1/checks/driver-shift").token(DISPATCH).json(json!({"city": "hangzhou", "driver": {"id": "D-1"}})),
        case("post", "/v1/checks/passenger-order").token(DISPATCH).json(json!({"city": "hangzhou", "order_id": "O-1", "passengers": [{"id": "P-1"}]})),
        case("post", "/v1/checks/candidates").token(DISPATCH).json(json!({"city": "hangzhou", "trip_id": "T-2", "passengers": [{"id": "P-1"}], "drivers": [{"id": "D-1"}, {"id": "D-2"}]})),
        case("post", "/v1/checks/candidates").token(DISPATCH).json(json!({"city": "hangzhou", "trip_id": "T-2", "passengers": [], "drivers": [{"id": "D-1"}]})),
        case("get", "/v1/audit/decisions").token(REGULATOR),
        case("get", "/v1/audit/decisions").token(REGULATOR).at("/v1/audit/decisions?limit=0".into()),
        case("get", "/v1/audit/decisions").token(DISPATCH),
        case("get", "/v1/audit/decisions/{decision_id}").token(REGULATOR).at(format!("/v1/audit/decisions/{decision_id}")),
        case("get", "/v1/audit/decisions/{decision_id}").token(REGULATOR).at("/v1/audit/decisions/not-a-uuid".into()),
        case("get", "/v1/audit/summary").token(REGULATOR).at("/v1/audit/summary?group_by=reason".into()),
        case("get", "/v1/audit/export").token(REGULATOR).at("/v1/audit/export?format=xml".into()),
        case("get", "/v1/audit/heads").token(REGULATOR),
        case("post", "/v1/appeals").token(DISPATCH).json(filing(&refused[1])),
        case("post", "/v1/appeals").token(DISPATCH).json(filing(&refused[1])),
        case("post", "/v1/appeals").token(DISPATCH).json(filing(&allowed)),
        case("post", "/v1/appeals").token(DISPATCH).json(filing(&decision_id)),
        case("post", "/v1/appeals").token(DISPATCH).json(json!({"decision_id": refused[1], "party": "driver"})),
        case("post", "/v1/appeals").token(REGULATOR).json(filing(&refused[1])),
        case("post", "/v1/appeals").token(DISPATCH).raw("x", "text/plain"),
        case("get", "/v1/appeals").token(REGULATOR),
        case("get", "/v1/appeals").token(REGULATOR).at("/v1/appeals?state=closed".into()),
        case("get", "/v1/appeals").token(PROVIDER),
        case("get", "/v1/appeals/{appeal_id}").token(REGULATOR).at(format!("/v1/appeals/{appeal_id}")),
        case("get", "/v1/appeals/{appeal_id}").token(REGULATOR).at(format!("/v1/appeals/{decision_id}")),
        case("get", "/v1/appeals/{appeal_id}").token(REGULATOR).at("/v1/appeals/not-a-uuid".into()),
        case("post", "/v1/appeals/{appeal_id}/resolution").token(DISPATCH).at(format!("/v1/appeals/{appeal_id}/resolution")).json(resolution.clone()),
        case("post", "/v1/appeals/{appeal_id}/resolution").token(REGULATOR).at(format!("/v1/appeals/{appeal_id}/resolution")).json(json!({"outcome": "overturned", "note": "x"})),
        case("post", "/v1/appeals/{appeal_id}/resolution").token(REGULATOR).at(format!("/v1/appeals/{appeal_id}/resolution")).json(resolution.clone()),
        case("post", "/v1/appeals/{appeal_id}/resolution").token(REGULATOR).at(format!("/v1/appeals/{appeal_id}/resolution")).json(resolution.clone()),
        case("post", "/v1/appeals/{appeal_id}/resolution").token(REGULATOR).at(format!("/v1/appeals/{decision_id}/resolution")).json(resolution.clone()),
        case("get", "/v1/audit/decisions/{decision_id}").token(REGULATOR).at(format!("/v1/audit/decisions/{}", refused[0])),
        case("post", "/v1/status-events").token(PROVIDER).json(json!({"subject_id": "D-1"})),
        case("post", "/v1/status-events").token(DISPATCH).json(json!({})),
        case("get", "/healthz"),
        case("get", "/readyz").admin(),
        case("get", "/metrics").admin(),
        case("get", "/metrics").admin().token(OPS),
        case("post", "/admin/policy/reload").admin().token(OPS),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for case in cases {
        let base = if case.admin {
            format!("http://{}", app.admin_address)
        } else {
            format!("http://{}", app.address)
        };
        let mut request = match case.method {
            "post" => app.http.post(format!("{base}{}", case.path)),
            _ => app.http.get(format!("{base}{}", case.path)),
        };
        if let Some(token) = case.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &case.body {
            request = request
                .header("content-type", case.content_type)
                .body(body.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(status < 500, "{} {}: {status}", case.method, case.path);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap();
        if status == 405 {
            // A method the document does not list; Allow names the one it does.
            let path = &doc["paths"][case.template];
            assert!(
                path[case.method].is_null(),
                "{} {} is documented",
                case.method,
                case.template
            );
            let allowed = allow.expect("a 405 names the allowed method");
            assert!(
                path[allowed.to_ascii_lowercase()].is_object(),
                "Allow: {allowed}"
            );
            seen.insert((case.template, status));
            continue;
        }
        let operation = &doc["paths"][case.template][case.method];
        assert!(
            operation.is_object(),
            "{} {} is not documented",
            case.method,
            case.template
        );
        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{} {} answered {status}, which the document does not list: {text}",
            case.method,
            case.path
        );
        seen.insert((case.template, status));
        let schema = &documented["content"]["application/json"]["schema"];
        if schema.is_object() {
            assert!(
                content_type.starts_with("application/json"),
                "{content_type}"
            );
            let body: Value = serde_json::from_str(&text).unwrap();
            let validator = jsonschema::validator_for(&schema_with_components(schema, &doc))
                .unwrap_or_else(|e| {
                    panic!("{}: a schema that does not compile: {e}", case.template)
                });
            let errors: Vec<String> = validator
                .iter_errors(&body)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{} {} ({status}) does not match its schema: {errors:?}\n{body}",
                case.method,
                case.path
            );
        }
    }
    // A record as the regulator reads it matches RecordView.
    let (_, page) = app
        .get_json_as(REGULATOR, "/v1/audit/decisions?limit=1")
        .await;
    let id = page["decisions"][0]["decision_id"].as_str().unwrap();
    let (_, record) = app
        .get_json_as(REGULATOR, &format!("/v1/audit/decisions/{id}"))
        .await;
    let schema = &doc["paths"]["/v1/audit/decisions/{decision_id}"]["get"]["responses"]["200"]
        ["content"]["application/json"]["schema"];
    let validator = jsonschema::validator_for(&schema_with_components(schema, &doc)).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&record)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "a record does not match RecordView: {errors:?}\n{record}"
    );

    // The cases did reach the answers they were written for.
    for expected in [
        ("/v1/checks/trip", 200),
        ("/v1/checks/trip", 400),
        ("/v1/checks/trip", 401),
        ("/v1/checks/trip", 403),
        ("/v1/checks/trip", 405),
        ("/v1/checks/trip", 413),
        ("/v1/checks/trip", 415),
        ("/v1/checks/trip", 422),
        ("/v1/checks/candidates", 200),
        ("/v1/audit/decisions/{decision_id}", 404),
        ("/v1/status-events", 401),
        ("/metrics", 401),
        ("/v1/appeals", 201),
        ("/v1/appeals", 400),
        ("/v1/appeals", 403),
        ("/v1/appeals", 404),
        ("/v1/appeals", 409),
        ("/v1/appeals", 415),
        ("/v1/appeals", 422),
        ("/v1/appeals", 200),
        ("/v1/appeals/{appeal_id}", 200),
        ("/v1/appeals/{appeal_id}", 400),
        ("/v1/appeals/{appeal_id}", 404),
        ("/v1/appeals/{appeal_id}/resolution", 200),
        ("/v1/appeals/{appeal_id}/resolution", 400),
        ("/v1/appeals/{appeal_id}/resolution", 403),
        ("/v1/appeals/{appeal_id}/resolution", 404),
        ("/v1/appeals/{appeal_id}/resolution", 409),
        ("/v1/audit/decisions/{decision_id}", 200),
    ] {
        assert!(
            seen.contains(&expected),
            "no case answered {expected:?}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn the_document_states_the_id_grammar_list_bounds_and_error_codes() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.get_json("/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["PartyBody"]["properties"]["id"]["pattern"],
        "^[A-Za-z0-9._:-]{1,128}$"
    );
    let passengers = &schemas["TripCheckBody"]["properties"]["passengers"];
    assert_eq!(
        (
            passengers["minItems"].as_u64(),
            passengers["maxItems"].as_u64()
        ),
        (Some(1), Some(8))
    );
    assert_eq!(
        schemas["CandidatesBody"]["properties"]["drivers"]["maxItems"],
        200
    );
    let codes: Vec<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for code in [
        "INVALID_FIELD",
        "UNKNOWN_CITY",
        "AUDIT_UNAVAILABLE",
        "OUT_OF_SCOPE",
        "IDEMPOTENCY_KEY_REUSED",
    ] {
        assert!(codes.contains(&code), "{code} not in {codes:?}");
    }
    let deadline = doc["paths"]["/v1/checks/trip"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "X-Tripgate-Deadline-Ms")
        .unwrap();
    assert_eq!(deadline["schema"]["minimum"], 1, "{deadline}");
}
