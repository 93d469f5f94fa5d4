//! Bad requests get a 4xx with a JSON error that says what is wrong, and
//! never a 5xx; the message never repeats a subject id.

use serde_json::{json, Value};

use crate::helpers::{trip, TestApp};

struct Case {
    name: &'static str,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    status: u16,
    code: &'static str,
    /// Fragments the message must contain.
    says: &'static [&'static str],
    field: Option<&'static str>,
}

fn json_case(
    name: &'static str,
    body: Value,
    code: &'static str,
    says: &'static [&'static str],
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        body: serde_json::to_vec(&body).unwrap(),
        content_type: Some("application/json"),
        status: 400,
        code,
        says,
        field,
    }
}

fn cases() -> Vec<Case> {
    let mut nine = trip("D-1", &["P-1"]);
    nine["passengers"] = (0..9).map(|i| json!({"id": format!("P-{i}")})).collect();
    let mut missing_driver = trip("D-1", &["P-1"]);
    missing_driver.as_object_mut().unwrap().remove("driver");
    let mut missing_trip_id = trip("D-1", &["P-1"]);
    missing_trip_id.as_object_mut().unwrap().remove("trip_id");
    let mut wrong_type = trip("D-1", &["P-1"]);
    wrong_type["passengers"] = json!("P-1");
    let mut bad_trip_id = trip("D-1", &["P-1"]);
    bad_trip_id["trip_id"] = json!("");
    let mut huge = trip("D-1", &["P-1"]);
    huge["padding"] = json!("x".repeat(70 * 1024));

    vec![
        json_case(
            "empty passenger list",
            trip("D-1", &[]),
            "INVALID_FIELD",
            &["at least one passenger"],
            Some("passengers"),
        ),
        json_case(
            "nine passengers",
            nine,
            "INVALID_FIELD",
            &["9 passengers", "at most 8"],
            Some("passengers"),
        ),
        json_case(
            "driver as passenger",
            trip("D-1", &["P-1", "D-1"]),
            "INVALID_FIELD",
            &["same subject as driver.id"],
            Some("passengers[1].id"),
        ),
        json_case(
            "passenger twice",
            trip("D-1", &["P-1", "P-2", "P-1"]),
            "INVALID_FIELD",
            &["same subject as passengers[0].id"],
            Some("passengers[2].id"),
        ),
        json_case(
            "empty driver id",
            trip("", &["P-1"]),
            "INVALID_FIELD",
            &["must not be empty"],
            Some("driver.id"),
        ),
        json_case(
            "empty passenger id",
            trip("D-1", &[""]),
            "INVALID_FIELD",
            &["must not be empty"],
            Some("passengers[0].id"),
        ),
        json_case(
            "id of 129 characters",
            trip(&"D".repeat(129), &["P-1"]),
            "INVALID_FIELD",
            &["129 characters", "at most 128"],
            Some("driver.id"),
        ),
        json_case(
            "id with a space",
            trip("D-1", &["13800 138000"]),
            "INVALID_FIELD",
            &["[A-Za-z0-9._:-]", "position 5"],
            Some("passengers[0].id"),
        ),
        json_case(
            "id with a plus sign",
            trip("+8613800138000", &["P-1"]),
            "INVALID_FIELD",
            &["[A-Za-z0-9._:-]"],
            Some("driver.id"),
        ),
        json_case(
            "id with non-ASCII",
            trip("D-1", &["乘客"]),
            "INVALID_FIELD",
            &["[A-Za-z0-9._:-]"],
            Some("passengers[0].id"),
        ),
        json_case(
            "empty trip id",
            bad_trip_id,
            "INVALID_FIELD",
            &["must not be empty"],
            Some("trip_id"),
        ),
        json_case(
            "missing driver",
            missing_driver,
            "INVALID_REQUEST",
            &["missing field `driver`"],
            None,
        ),
        json_case(
            "missing trip_id",
            missing_trip_id,
            "INVALID_REQUEST",
            &["missing field `trip_id`"],
            None,
        ),
        json_case(
            "passengers not a list",
            wrong_type,
            "INVALID_REQUEST",
            &["invalid type"],
            None,
        ),
        json_case(
            "a JSON array",
            json!([1, 2]),
            "INVALID_REQUEST",
            &["invalid type"],
            None,
        ),
        Case {
            name: "malformed JSON",
            body: br#"{"trip_id": "T-1", "city": "hangzhou", "driver": {"#.to_vec(),
            content_type: Some("application/json"),
            status: 400,
            code: "MALFORMED_JSON",
            says: &["not valid JSON", "line 1"],
            field: None,
        },
        Case {
            name: "empty body",
            body: Vec::new(),
            content_type: Some("application/json"),
            status: 400,
            code: "MALFORMED_JSON",
            says: &["not valid JSON"],
            field: None,
        },
        Case {
            name: "body over 64 KiB",
            body: serde_json::to_vec(&huge).unwrap(),
            content_type: Some("application/json"),
            status: 413,
            code: "BODY_TOO_LARGE",
            says: &["65536 bytes"],
            field: None,
        },
        Case {
            name: "text/plain content type",
            body: serde_json::to_vec(&trip("D-1", &["P-1"])).unwrap(),
            content_type: Some("text/plain"),
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            says: &["application/json"],
            field: None,
        },
        Case {
            name: "no content type",
            body: serde_json::to_vec(&trip("D-1", &["P-1"])).unwrap(),
            content_type: None,
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE",
            says: &["application/json"],
            field: None,
        },
    ]
}

#[tokio::test]
async fn bad_requests_get_a_4xx_json_error_saying_what_is_wrong() {
    let app = TestApp::spawn().await;
    let requests_before = app.provider_requests().await;
    for case in cases() {
        let mut request = app.http.post(app.url("/v1/checks/trip")).body(case.body);
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: error body is not JSON: {e}", case.name));
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        for fragment in case.says {
            assert!(
                message.contains(fragment),
                "{}: message {message:?} lacks {fragment:?}",
                case.name
            );
        }
        assert_eq!(
            body["error"]["field"].as_str(),
            case.field,
            "{}: {body}",
            case.name
        );
        for raw_id in ["13800", "8613800138000", "乘客"] {
            assert!(
                !message.contains(raw_id),
                "{}: message repeats a subject id: {message}",
                case.name
            );
        }
    }
    assert_eq!(
        app.provider_requests().await,
        requests_before,
        "bad input reached the provider"
    );
}

#[tokio::test]
async fn wrong_methods_and_paths_get_json_errors() {
    let app = TestApp::spawn().await;

    let response = app
        .http
        .get(app.url("/v1/checks/trip"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
    let response = app
        .http
        .delete(app.url("/v1/audit/heads"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");

    let response = app
        .http
        .post(app.url("/v1/checks/nope"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn healthz_answers() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}
