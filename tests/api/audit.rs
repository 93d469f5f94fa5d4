//! The audit trail as a regulator uses it, on both engines: every decision
//! recorded before it is answered, queryable by every filter, pseudonymised.

use std::collections::HashSet;

use serde_json::{json, Value};
use tripgate::config::AuditBackend;

use crate::helpers::{
    audit_bytes, audit_command, audit_log_dir, trip, trip_in, Options, TestApp, TestPostgres,
};

const PHONE: &str = "13912345678";

/// Five decisions with distinct trips, reasons and cities; returns their
/// answers in the order they were made.
async fn five_decisions(app: &TestApp) -> Vec<Value> {
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("D-2", "red", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.set_code("P-2", "yellow", "hangzhou").await;
    app.set_code(PHONE, "green", "hangzhou").await;
    let mut answers = Vec::new();
    for (trip_id, city, driver, passenger) in [
        ("T-1", "hangzhou", "D-1", "P-1"),
        ("T-2", "hangzhou", "D-2", "P-1"),
        ("T-3", "hangzhou", "D-1", "P-2"),
        ("T-4", "hangzhou", "D-1", PHONE),
        ("T-5", "xiamen", "D-1", "P-1"),
    ] {
        let mut body = trip_in(city, driver, &[passenger]);
        body["trip_id"] = json!(trip_id);
        answers.push(app.decide(&body).await);
    }
    answers
}

fn ids(page: &Value) -> Vec<String> {
    page["decisions"]
        .as_array()
        .expect("decisions array")
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(answer: &Value) -> String {
    answer["decision_id"].as_str().unwrap().to_owned()
}

async fn spawn(backend: AuditBackend) -> (TestApp, Option<TestPostgres>) {
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
        }),
        ..Default::default()
    })
    .await;
    (app, postgres)
}

async fn every_decision_is_recorded_and_found_by_each_filter(backend: AuditBackend) {
    let (app, _postgres) = spawn(backend).await;
    let answers = five_decisions(&app).await;
    let [t1, t2, t3, t4, t5] = [0, 1, 2, 3, 4].map(|i| id_of(&answers[i]));

    let (status, record) = app.get_json(&format!("/v1/audit/decisions/{t2}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["decision"], "reject");
    assert_eq!(record["trip_id"], "T-2");
    assert_eq!(record["hook"], "trip");
    assert_eq!(record["city"], "hangzhou");
    assert_eq!(record["policy_version"], answers[1]["policy_version"]);
    assert_eq!(
        record["reasons"],
        json!([{"party": "driver", "code": "HEALTH_CODE_RED", "rule": "hangzhou.trip.health_code"}])
    );
    assert_eq!(record["parties"][0]["status"], "red");
    assert_eq!(record["parties"][0]["source"], "upstream");
    assert_eq!(
        record["parties"][0]["subject_ref"].as_str().unwrap().len(),
        43
    );
    assert_eq!(record["parties"][1]["index"], 0);
    assert!(record["chain"]["seq"].as_i64().unwrap() >= 1);
    assert_eq!(record["chain"]["hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        record["decided_at"].as_str().unwrap()[..19],
        answers[1]["decided_at"].as_str().unwrap()[..19]
    );

    let (_, all) = app.get_json("/v1/audit/decisions").await;
    assert_eq!(
        ids(&all),
        vec![t5.clone(), t4.clone(), t3.clone(), t2.clone(), t1.clone()],
        "newest first"
    );
    assert!(all["next_cursor"].is_null());

    for (query, expected) in [
        ("decision=reject", vec![&t5, &t3, &t2]),
        ("decision=allow", vec![&t4, &t1]),
        ("reason=HEALTH_CODE_RED", vec![&t2]),
        ("reason=ISSUER_NOT_RECOGNISED", vec![&t5]),
        ("reason=ALL_GREEN", vec![&t4, &t1]),
        ("city=xiamen", vec![&t5]),
        ("city=Hangzhou", vec![&t4, &t3, &t2, &t1]),
        ("trip_id=T-3", vec![&t3]),
        ("hook=trip", vec![&t5, &t4, &t3, &t2, &t1]),
        ("subject=13912345678", vec![&t4]),
        ("subject=D-1", vec![&t5, &t4, &t3, &t1]),
        ("subject=P-1&decision=reject", vec![&t5, &t2]),
        ("subject=nobody", vec![]),
    ] {
        let (status, page) = app.get_json(&format!("/v1/audit/decisions?{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids(&page), expected, "{query}");
    }

    // Time range: [t2's decision time, t4's) holds t2 and t3.
    let (_, r2) = app.get_json(&format!("/v1/audit/decisions/{t2}")).await;
    let (_, r4) = app.get_json(&format!("/v1/audit/decisions/{t4}")).await;
    let range = format!(
        "/v1/audit/decisions?from={}&to={}",
        r2["decided_at"].as_str().unwrap().replace('+', "%2B"),
        r4["decided_at"].as_str().unwrap().replace('+', "%2B")
    );
    let (status, page) = app.get_json(&range).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), vec![t3.clone(), t2.clone()]);

    // Cursor pagination visits every record once, newest first.
    let mut seen = Vec::new();
    let mut query = "/v1/audit/decisions?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.get_json(&query).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("/v1/audit/decisions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        vec![t5.clone(), t4.clone(), t3.clone(), t2.clone(), t1.clone()]
    );

    let (_, summary) = app.get_json("/v1/audit/summary?group_by=reason").await;
    assert_eq!(
        summary["rows"],
        json!([
            {"key": "ALL_GREEN", "count": 2},
            {"key": "HEALTH_CODE_YELLOW", "count": 1},
            {"key": "HEALTH_CODE_RED", "count": 1},
            {"key": "ISSUER_NOT_RECOGNISED", "count": 1},
        ])
    );
    let (_, summary) = app.get_json("/v1/audit/summary?group_by=city").await;
    assert_eq!(
        summary["rows"],
        json!([{"key": "hangzhou", "count": 4}, {"key": "xiamen", "count": 1}])
    );
    let (_, summary) = app
        .get_json("/v1/audit/summary?group_by=hook&decision=reject")
        .await;
    assert_eq!(summary["rows"], json!([{"key": "trip", "count": 3}]));
    let (_, summary) = app.get_json("/v1/audit/summary?group_by=hour").await;
    assert_eq!(summary["total"], 5);
    assert!(
        summary["rows"][0]["key"]
            .as_str()
            .unwrap()
            .ends_with(":00:00Z"),
        "{summary}"
    );

    let (status, ndjson) = app
        .get_text("/v1/audit/export?format=ndjson&decision=reject")
        .await;
    assert_eq!(status, 200);
    let exported: Vec<String> = ndjson
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["decision_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(exported, vec![t5.clone(), t3.clone(), t2.clone()]);
    let (status, csv) = app.get_text("/v1/audit/export?format=csv").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("decision_id,decided_at,hook,trip_id"));
    assert_eq!(lines.len(), 6);
    assert!(
        lines[1].starts_with(&t5) && lines[1].contains("passenger[0]:ISSUER_NOT_RECOGNISED"),
        "{}",
        lines[1]
    );

    let (status, body) = app
        .get_json(&format!("/v1/audit/decisions/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("DECISION_NOT_FOUND"))
    );
}

#[tokio::test]
async fn sqlite_every_decision_is_recorded_and_found_by_each_filter() {
    every_decision_is_recorded_and_found_by_each_filter(AuditBackend::Sqlite).await;
}

#[tokio::test]
async fn postgres_every_decision_is_recorded_and_found_by_each_filter() {
    every_decision_is_recorded_and_found_by_each_filter(AuditBackend::Postgres).await;
}

/// The subject answers of `five_decisions`, in the order of `SUBJECT_QUERIES`.
const SUBJECT_QUERIES: [(&str, [usize; 4], usize); 4] = [
    ("subject=13912345678", [3, 0, 0, 0], 1),
    ("subject=D-1", [4, 3, 2, 0], 4),
    ("subject=P-1&decision=reject", [4, 1, 0, 0], 2),
    ("subject=nobody", [0, 0, 0, 0], 0),
];

async fn subject_answers_hold(app: &TestApp, answers: &[Value], when: &str) {
    for (query, order, count) in SUBJECT_QUERIES {
        let (status, page) = app.get_json(&format!("/v1/audit/decisions?{query}")).await;
        assert_eq!(status, 200, "{when}: {query}: {page}");
        let expected: Vec<String> = order[..count].iter().map(|i| id_of(&answers[*i])).collect();
        assert_eq!(ids(&page), expected, "{when}: {query}");
    }
}

/// A PostgreSQL trail written by a build that kept subject refs in
/// `audit_subjects` is moved to 64-bit keys at start-up and answers the
/// same; and keys that collide (here: every key filed under every
/// decision) never return another subject's decisions, because the record
/// itself is checked for the ref.
#[tokio::test]
async fn postgres_subject_lookups_survive_the_move_to_keys_and_collisions() {
    let postgres = TestPostgres::create().await;
    let spawn_on = |url: String| {
        TestApp::spawn_with(Options {
            customise: Box::new(move |s| {
                s.audit.backend = AuditBackend::Postgres;
                s.audit.postgres_url = url;
            }),
            ..Default::default()
        })
    };
    let mut app = spawn_on(postgres.url.clone()).await;
    let answers = five_decisions(&app).await;
    subject_answers_hold(&app, &answers, "as written").await;
    app.stop().await;

    let admin = postgres.client().await;
    admin
        .batch_execute(
            "CREATE TABLE audit_subjects (subject_ref TEXT NOT NULL, decision_id TEXT NOT NULL, \
             PRIMARY KEY (subject_ref, decision_id)); \
             INSERT INTO audit_subjects SELECT p->>'subject_ref', decision_id \
             FROM audit_decisions, jsonb_array_elements(detail::jsonb->'parties') p; \
             DROP TABLE audit_subject_keys;",
        )
        .await
        .unwrap();
    let mut app = spawn_on(postgres.url.clone()).await;
    subject_answers_hold(&app, &answers, "after the move").await;
    let old_is_gone = || async {
        admin
            .query_one("SELECT to_regclass('audit_subjects') IS NULL", &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    };
    assert!(
        old_is_gone().await,
        "the old table is dropped after the move"
    );
    app.stop().await;

    // A replica of the earlier build recreated the old table and filed two
    // decisions' subjects there only: the next start merges them.
    let (t2, t4) = (id_of(&answers[1]), id_of(&answers[3]));
    admin
        .batch_execute(&format!(
            "CREATE TABLE audit_subjects (subject_ref TEXT NOT NULL, decision_id TEXT NOT NULL, \
             PRIMARY KEY (subject_ref, decision_id)); \
             INSERT INTO audit_subjects SELECT p->>'subject_ref', decision_id \
             FROM audit_decisions, jsonb_array_elements(detail::jsonb->'parties') p \
             WHERE decision_id IN ('{t2}', '{t4}'); \
             DELETE FROM audit_subject_keys WHERE decision_id IN ('{t2}', '{t4}');"
        ))
        .await
        .unwrap();
    // Run ahead of the service, as an operator does when the move could
    // outlast the start-up probe.
    let (code, out) = audit_command("migrate", &["--postgres", &postgres.url], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("schema up to date"), "{out}");
    assert!(
        old_is_gone().await,
        "the old table is dropped by audit migrate"
    );
    let app = spawn_on(postgres.url.clone()).await;
    subject_answers_hold(&app, &answers, "after merging").await;

    let filed = admin
        .execute(
            "INSERT INTO audit_subject_keys \
             SELECT k.subject_key, d.decision_id FROM (SELECT DISTINCT subject_key FROM audit_subject_keys) k \
             CROSS JOIN audit_decisions d ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .unwrap();
    assert!(filed > 10, "collisions were filed: {filed}");
    subject_answers_hold(&app, &answers, "with every key colliding").await;
}

#[tokio::test]
async fn bad_query_parameters_are_refused_naming_the_parameter() {
    let app = TestApp::spawn().await;
    for (query, param, says) in [
        ("reason=HEALTH_CODE_PURPLE", "reason", "not a reason code"),
        (
            "from=2026-11-26T10:00:00Z&to=2026-11-26T09:00:00Z",
            "from",
            "after `to`",
        ),
        ("from=yesterday", "from", "RFC 3339"),
        ("to=2026-13-01", "to", "RFC 3339"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor", "malformed"),
        ("cursor=%%%", "cursor", "malformed"),
        ("limit=0", "limit", "1 to 1000"),
        ("limit=1001", "limit", "1 to 1000"),
        ("limit=ten", "limit", "1 to 1000"),
        ("decision=maybe", "decision", "allow or reject"),
        ("hook=teleport", "hook", "not a hook"),
        ("subject=%2B86%20138", "subject", "[A-Za-z0-9._:-]"),
        (
            "resaon=HEALTH_CODE_RED",
            "query",
            "unknown parameter \"resaon\"",
        ),
    ] {
        let (status, body) = app.get_json(&format!("/v1/audit/decisions?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_PARAMETER", "{query}");
        assert_eq!(body["error"]["field"], param, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    for (path, param) in [
        ("/v1/audit/summary?group_by=weekday", "group_by"),
        ("/v1/audit/export?format=xml", "format"),
        ("/v1/audit/decisions/not-a-uuid", "decision_id"),
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["field"], param, "{path}");
    }
}

fn occurrences(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

#[tokio::test]
async fn the_audit_store_never_holds_a_raw_subject_id() {
    let app = TestApp::spawn().await;
    five_decisions(&app).await;
    let bytes = audit_bytes(&app.audit_file());
    assert!(bytes.len() > 4096, "the audit files were not found");
    // Once loaded into the SQLite file as well.
    assert_eq!(app.get_json("/v1/audit/decisions").await.0, 200);
    let bytes = [bytes, audit_bytes(&app.audit_file())].concat();
    for raw in [PHONE, "D-1", "P-2"] {
        assert_eq!(
            occurrences(&bytes, raw),
            0,
            "{raw} found in the audit files"
        );
    }
    assert!(
        occurrences(&bytes, "T-3") > 0,
        "trip ids are stored (they are not personal data)"
    );
}

#[tokio::test]
async fn a_decision_that_cannot_be_recorded_is_not_given_and_service_recovers() {
    // Every batch starts a log segment, so a lost log directory fails the
    // next append at once.
    let app = TestApp::spawn_with(Options {
        customise: Box::new(|s| s.audit.sqlite_log_segment_bytes = 1),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-1"])).await;

    // The log's volume is gone: nothing can be made durable.
    let log = audit_log_dir(&app.audit_file());
    let away = app.data_dir.path().join("log-away");
    std::fs::rename(&log, &away).unwrap();
    std::fs::write(&log, b"not a directory").unwrap();
    let response = app.check_trip(&trip("D-1", &["P-1"])).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AUDIT_UNAVAILABLE");
    assert!(
        body.get("decision").is_none(),
        "no decision may be given: {body}"
    );
    let data_dir = app.data_dir.path().display().to_string();
    assert!(
        !body.to_string().contains(&data_dir) && !body.to_string().contains("log"),
        "a 5xx body carries no internals: {body}"
    );
    let (status, ready) = app.get_admin_json("/readyz").await;
    assert_eq!(
        status, 503,
        "readiness must fail while nothing can be recorded: {ready}"
    );
    assert_eq!(ready["audit"], "unwritable", "{ready}");
    assert!(!ready.to_string().contains(&data_dir), "{ready}");

    std::fs::remove_file(&log).unwrap();
    std::fs::rename(&away, &log).unwrap();
    let body = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(body["decision"], "allow");
    assert_eq!(app.get_admin("/readyz").await.0, 200);
    let (_, page) = app.get_json("/v1/audit/decisions").await;
    assert_eq!(ids(&page).len(), 2, "only the decisions given are recorded");
}

#[tokio::test]
async fn a_locked_audit_file_delays_queries_but_no_decision() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(app.get_json("/v1/audit/decisions").await.0, 200);

    // Another process holds the SQLite file's write lock: decisions are
    // still made durable (in the log), the regulator's queries cannot load
    // them and say so, and once the lock is gone every one of them is there.
    let blocker = rusqlite::Connection::open(app.audit_file()).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut given = Vec::new();
    for _ in 0..3 {
        let body = app.decide(&trip("D-1", &["P-1"])).await;
        given.push(body["decision_id"].as_str().unwrap().to_owned());
    }
    let (status, body) = app.get_json("/v1/audit/decisions").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "AUDIT_UNAVAILABLE");
    let (status, ready) = app.get_admin_json("/readyz").await;
    assert_eq!(status, 200, "decisions can still be made: {ready}");
    assert_eq!(ready["audit_unloaded"], 3, "{ready}");
    let (_, text) = app.get_admin("/metrics").await;
    assert!(
        text.lines().any(|l| l == "tripgate_audit_unloaded 3"),
        "the waiting records are not exported"
    );

    blocker.execute_batch("ROLLBACK").unwrap();
    let (status, page) = app.get_json("/v1/audit/decisions").await;
    assert_eq!(status, 200, "{page}");
    let found = ids(&page);
    assert_eq!(found.len(), 4, "{page}");
    for id in &given {
        assert!(found.contains(id), "decision {id} is missing");
    }
}

#[tokio::test]
async fn postgres_outage_of_the_audit_table_answers_503_and_recovers() {
    let (app, postgres) = spawn(AuditBackend::Postgres).await;
    let postgres = postgres.unwrap();
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-1"])).await;

    let admin = postgres.client().await;
    admin
        .batch_execute("ALTER TABLE audit_decisions RENAME TO audit_decisions_away")
        .await
        .unwrap();
    let response = app.check_trip(&trip("D-1", &["P-1"])).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AUDIT_UNAVAILABLE");
    let text = body.to_string();
    assert!(
        !text.contains("audit_decisions") && !text.contains("relation"),
        "a 5xx body carries no SQL error: {body}"
    );

    admin
        .batch_execute("ALTER TABLE audit_decisions_away RENAME TO audit_decisions")
        .await
        .unwrap();
    let mut recovered = false;
    for _ in 0..20 {
        if app.check_trip(&trip("D-1", &["P-1"])).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the hook did not recover once the table was back"
    );
    let (_, page) = app.get_json("/v1/audit/decisions").await;
    assert_eq!(ids(&page).len(), 2);
    let unique: HashSet<String> = ids(&page).into_iter().collect();
    assert_eq!(unique.len(), 2);
}
