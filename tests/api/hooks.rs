//! Every dispatch moment: driver shifts, passenger orders, the candidate
//! filter; messages in two languages; policy reload without a restart.

use serde_json::{json, Value};

use crate::helpers::{codes, config_dir, Options, TestApp};

#[tokio::test]
async fn a_driver_needs_a_green_code_to_go_on_duty() {
    let app = TestApp::spawn().await;
    app.set_code("D-green", "green", "hangzhou").await;
    app.set_code("D-red", "red", "hangzhou").await;

    let (status, body) = app
        .post_json(
            "/v1/checks/driver-shift",
            &json!({"city": "hangzhou", "driver": {"id": "D-green"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow");
    assert_eq!(body["hook"], "driver_shift");
    assert!(body.get("trip_id").is_none());
    assert_eq!(body["reasons"][0]["rule"], "hangzhou.driver_shift");

    let (_, body) = app
        .post_json(
            "/v1/checks/driver-shift",
            &json!({"city": "hangzhou", "driver": {"id": "D-red"}}),
        )
        .await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"]);
    assert_eq!(
        body["reasons"][0]["rule"],
        "hangzhou.driver_shift.health_code"
    );

    let (status, body) = app
        .post_json("/v1/checks/driver-shift", &json!({"city": "hangzhou"}))
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("missing field `driver`"));

    let (_, record) = app.get_json("/v1/audit/decisions?hook=driver_shift").await;
    assert_eq!(record["decisions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn passengers_need_green_codes_to_place_an_order() {
    let app = TestApp::spawn().await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_code("P-2", "yellow", "hangzhou").await;
    let order = json!({"city": "hangzhou", "order_id": "O-77", "passengers": [{"id": "P-1"}, {"id": "P-2"}]});

    let (status, body) = app.post_json("/v1/checks/passenger-order", &order).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order_id"], "O-77");
    assert_eq!(body["hook"], "passenger_order");
    assert_eq!(codes(&body), vec!["HEALTH_CODE_YELLOW"]);
    assert_eq!(body["reasons"][0]["index"], 1);

    let (status, body) = app.post_json("/v1/checks/passenger-order", &json!({"city": "hangzhou", "order_id": "O-1", "passengers": [{"id": "P-1"}, {"id": "P-1"}]})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "passengers[1].id");

    let (_, page) = app.get_json("/v1/audit/decisions?trip_id=O-77").await;
    assert_eq!(page["decisions"][0]["hook"], "passenger_order");
}

#[tokio::test]
async fn the_candidate_filter_returns_eligible_drivers_in_order_and_why_others_are_excluded() {
    let app = TestApp::spawn().await;
    app.set_code("P-1", "green", "hangzhou").await;
    let mut drivers = Vec::new();
    for i in 0..50 {
        let id = format!("C-{i:02}");
        let colour = match i % 10 {
            3 => "red",
            7 => "yellow",
            _ => "green",
        };
        app.set_code(&id, colour, "hangzhou").await;
        drivers.push(json!({"id": id}));
    }
    drivers.push(json!({"id": "C-nocode"}));
    let filter = json!({"city": "hangzhou", "trip_id": "T-9", "passengers": [{"id": "P-1"}], "drivers": drivers});

    let mut redis = app.redis.as_ref().unwrap().connection();
    let mgets = |redis: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(redis).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_mget:calls="))
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = mgets(&mut redis);
    let provider_before = app.provider_requests().await;
    let (status, body) = app.post_json("/v1/checks/candidates", &filter).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        mgets(&mut redis) - before,
        1,
        "51 subjects, one Redis round trip"
    );
    assert_eq!(
        app.provider_requests().await - provider_before,
        1,
        "and one provider call"
    );

    assert_eq!(body["decision"], "allow");
    assert_eq!(body["hook"], "candidates");
    let eligible: Vec<&str> = body["eligible_drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..50)
        .filter(|i| i % 10 != 3 && i % 10 != 7)
        .map(|i| format!("C-{i:02}"))
        .collect();
    assert_eq!(eligible, expected, "eligible drivers in request order");
    let excluded = body["excluded_drivers"].as_array().unwrap();
    assert_eq!(excluded.len(), 11);
    assert_eq!(excluded[0]["id"], "C-03");
    assert_eq!(excluded[0]["index"], 3);
    assert_eq!(excluded[0]["reasons"][0]["code"], "HEALTH_CODE_RED");
    assert_eq!(excluded[0]["reasons"][0]["party"], "candidate");
    assert_eq!(excluded[10]["id"], "C-nocode");
    assert_eq!(excluded[10]["reasons"][0]["code"], "NO_HEALTH_CODE");

    // One audit record for the call, with every candidate's outcome.
    let (_, page) = app.get_json("/v1/audit/decisions?hook=candidates").await;
    let records = page["decisions"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    let parties = records[0]["parties"].as_array().unwrap();
    assert_eq!(parties.len(), 52);
    assert_eq!(
        parties.iter().filter(|p| p["eligible"] == false).count(),
        11
    );
    assert_eq!(parties.iter().filter(|p| p["eligible"] == true).count(), 40);
    let reasons = records[0]["reasons"].as_array().unwrap();
    assert!(reasons
        .iter()
        .any(|r| r["code"] == "HEALTH_CODE_RED" && r["party"] == "candidate" && r["index"] == 3));

    // A failing passenger rejects the whole filter.
    app.set_code("P-2", "red", "hangzhou").await;
    let mut filter = filter;
    filter["passengers"] = json!([{"id": "P-2"}]);
    let (_, body) = app.post_json("/v1/checks/candidates", &filter).await;
    assert_eq!(body["decision"], "reject");
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"]);
    assert_eq!(body["reasons"][0]["party"], "passenger");
}

#[tokio::test]
async fn bad_candidate_filters_are_refused() {
    let app = TestApp::spawn().await;
    let many: Vec<Value> = (0..201).map(|i| json!({"id": format!("C-{i}")})).collect();
    for (drivers, passengers, field, says) in [
        (
            json!([{"id": "C-1"}, {"id": "C-2"}, {"id": "C-1"}]),
            json!([{"id": "P-1"}]),
            "drivers[2].id",
            "same subject as drivers[0].id",
        ),
        (
            json!(many),
            json!([{"id": "P-1"}]),
            "drivers",
            "201 drivers; at most 200",
        ),
        (
            json!([]),
            json!([{"id": "P-1"}]),
            "drivers",
            "at least one driver",
        ),
        (
            json!([{"id": "P-1"}]),
            json!([{"id": "P-1"}]),
            "drivers[0].id",
            "same subject as passengers[0].id",
        ),
    ] {
        let body = json!({"city": "hangzhou", "trip_id": "T-1", "passengers": passengers, "drivers": drivers});
        let (status, answer) = app.post_json("/v1/checks/candidates", &body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["field"], field);
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn reason_messages_follow_accept_language() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    let body = json!({"trip_id": "T-1", "city": "hangzhou", "driver": {"id": "D-1"}, "passengers": [{"id": "P-none"}]});
    // Hangzhou's own NO_HEALTH_CODE message names where to apply there.
    let zh = "未查询到健康码：请通过“浙里办”App或支付宝“杭州健康码”申领，外省来杭人员可通过国家政务服务平台申领，绿码方可出行";
    for (header, language, message) in [
        (None, "zh-CN", zh),
        (
            Some("en-US,en;q=0.9"),
            "en",
            "No health code was found: apply through the Zheliban app or Alipay's Hangzhou Health Code; visitors from other provinces through the national government service platform. Only a green code may travel",
        ),
        (Some("fr;q=1, zh;q=0.5"), "zh-CN", zh),
    ] {
        let mut request = app.http.post(app.url("/v1/checks/trip")).json(&body);
        if let Some(header) = header {
            request = request.header("Accept-Language", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["content-language"], language);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["reasons"][0]["message"], message, "{header:?}");
    }
}

#[tokio::test]
async fn a_city_without_its_own_message_gets_the_catalogue_and_the_scheme_periods() {
    let policy = r#"
        version = "messages"
        [issuers.hangzhou.palette]
        green = "green"
        yellow = "yellow"
        red = "red"
        [cities.hangzhou]
        recognised_issuers = ["hangzhou"]
        [cities.ningbo]
        recognised_issuers = ["hangzhou"]
        [cities.ningbo.messages.HEALTH_CODE_RED]
        zh-CN = "红码：宁波的说法"
        en = "Red: as Ningbo says it"
    "#;
    let app = TestApp::spawn_with(Options {
        policy: Some(policy.into()),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "yellow", "hangzhou").await;
    app.set_code("P-1", "red", "hangzhou").await;
    let message =
        |body: &Value, i: usize| body["reasons"][i]["message"].as_str().unwrap().to_owned();
    let trip = |city: &str| json!({"trip_id": "T-1", "city": city, "driver": {"id": "D-1"}, "passengers": [{"id": "P-1"}, {"id": "P-none"}]});
    let en = |city: &str| {
        app.http
            .post(app.url("/v1/checks/trip"))
            .header("Accept-Language", "en")
            .json(&trip(city))
            .send()
    };
    let body: Value = en("hangzhou").await.unwrap().json().await.unwrap();
    assert!(
        message(&body, 0).contains("7 days of centralised or home isolation"),
        "{body}"
    );
    assert!(
        message(&body, 1).contains("14 days of centralised or home isolation"),
        "{body}"
    );
    assert!(
        message(&body, 2).starts_with("No health code was found: apply for one through"),
        "{body}"
    );
    let body: Value = en("ningbo").await.unwrap().json().await.unwrap();
    assert_eq!(message(&body, 1), "Red: as Ningbo says it", "{body}");
    assert!(message(&body, 0).contains("7 days"), "{body}");
}

#[tokio::test]
async fn a_valid_policy_is_reloaded_at_once_and_an_invalid_one_is_refused() {
    let original = std::fs::read_to_string(config_dir().join("policy.toml")).unwrap();
    let app = TestApp::spawn_with(Options {
        policy: Some(original.clone()),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "orange", "xiamen").await;
    let trip = json!({"trip_id": "T-1", "city": "hangzhou", "driver": {"id": "D-1"}, "passengers": [{"id": "P-1"}]});
    let body = app.decide(&trip).await;
    assert_eq!(codes(&body), vec!["ISSUER_NOT_RECOGNISED"]);
    let policy_path = app.policy_path().unwrap();

    // Hangzhou now recognises Xiamen's codes.
    let next = original
        .replace("version = \"2026-11-26.1\"", "version = \"2026-11-27.1\"")
        .replace(
            "recognised_issuers = [\"hangzhou\", \"zhejiang\", \"national\"]",
            "recognised_issuers = [\"hangzhou\", \"zhejiang\", \"national\", \"xiamen\"]",
        );
    std::fs::write(&policy_path, &next).unwrap();
    let response = app
        .http
        .post(format!("http://{}/admin/policy/reload", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["version"],
        "2026-11-27.1"
    );
    let body = app.decide(&trip).await;
    assert_eq!(body["policy_version"], "2026-11-27.1");
    assert_eq!(codes(&body), vec!["HEALTH_CODE_YELLOW"]);

    // An invalid document is refused; the last good one keeps serving.
    std::fs::write(
        &policy_path,
        next.replace("orange = \"yellow\"", "orange = \"amber\""),
    )
    .unwrap();
    let response = app
        .http
        .post(format!("http://{}/admin/policy/reload", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "POLICY_INVALID");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("issuers.xiamen.palette.orange"),
        "{error}"
    );
    let body = app.decide(&trip).await;
    assert_eq!(body["policy_version"], "2026-11-27.1");

    let (_, metrics) = app.get_admin("/metrics").await;
    assert!(metrics.contains("tripgate_policy_reloads_total{outcome=\"applied\"} 1"));
    assert!(metrics.contains("tripgate_policy_reloads_total{outcome=\"refused\"} 1"));
    assert!(metrics.contains("tripgate_policy_info{version=\"2026-11-27.1\"} 1"));
}

#[tokio::test]
async fn hooks_run_the_checks_each_city_requires() {
    let policy = std::fs::read_to_string(config_dir().join("policy.toml")).unwrap()
        + "\n[cities.hangzhou.hooks]\ntrip = [\"health_code\"]\n";
    let app = TestApp::spawn_with(Options {
        policy: Some(policy),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    let body = app
        .decide(&json!({"trip_id": "T-1", "city": "hangzhou", "driver": {"id": "D-1"}, "passengers": [{"id": "P-1"}]}))
        .await;
    assert_eq!(body["reasons"][0]["rule"], "hangzhou.trip");
}

#[tokio::test]
async fn sighup_reloads_the_policy_of_a_running_service() {
    let provider = crate::helpers::spawn_simulator();
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.toml");
    let original = std::fs::read_to_string(config_dir().join("policy.toml")).unwrap();
    std::fs::write(&policy_path, &original).unwrap();
    let env = vec![
        ("TRIPGATE__PROVIDER__BASE_URL", provider),
        ("TRIPGATE__POLICY__PATH", policy_path.display().to_string()),
        (
            "TRIPGATE__AUDIT__SQLITE_PATH",
            dir.path().join("a.sqlite3").display().to_string(),
        ),
    ];
    let service = crate::helpers::ServiceProcess::start(&env, dir.path().join("log")).await;
    let http = reqwest::Client::new();
    let trip = json!({"trip_id": "T-1", "city": "hangzhou", "driver": {"id": "D-000001"}, "passengers": [{"id": "P-0000001"}]});
    let version = |body: Value| body["policy_version"].as_str().unwrap().to_owned();
    let answer: Value = http
        .post(service.url("/v1/checks/trip"))
        .json(&trip)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version(answer), "2026-11-26.1");

    std::fs::write(
        &policy_path,
        original.replace("2026-11-26.1", "2026-11-28.1"),
    )
    .unwrap();
    let pid = service.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    loop {
        let answer: Value = http
            .post(service.url("/v1/checks/trip"))
            .json(&trip)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if version(answer) == "2026-11-28.1" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "SIGHUP did not reload the policy"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
