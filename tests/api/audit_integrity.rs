//! Tamper evidence, crash safety, concurrent writers, retention and key
//! rotation: the promises a regulator relies on.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tripgate::audit::{
    AuditKeys, AuditRecord, AuditStore, AuditWriter, Hook, StoreConfig, WriterLimits, FORMAT,
};
use tripgate::config::AuditBackend;

use crate::helpers::{
    audit_files, audit_log_dir, audit_verify, example_public_keys, example_signer, spawn_simulator,
    trip, Options, ServiceProcess, TestApp, TestPostgres,
};

async fn six_decisions(app: &TestApp) -> Vec<String> {
    app.set_code("D-1", "green", "hangzhou").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let passenger = format!("P-{i}");
        app.set_code(
            &passenger,
            if i % 2 == 0 { "green" } else { "red" },
            "hangzhou",
        )
        .await;
        let body = app.decide(&trip("D-1", &[&passenger])).await;
        ids.push(body["decision_id"].as_str().unwrap().to_owned());
    }
    ids
}

/// A consistent copy of the live audit file, to tamper with.
async fn copy_of(app: &TestApp, name: &str) -> std::path::PathBuf {
    // A query loads every logged record into the file first.
    assert_eq!(app.get_json("/v1/audit/decisions?limit=1").await.0, 200);
    let copy = app.data_dir.path().join(name);
    let source = rusqlite::Connection::open(app.audit_file()).unwrap();
    source
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    copy
}

#[tokio::test]
async fn audit_verify_reports_each_kind_of_tampering() {
    let app = TestApp::spawn().await;
    let ids = six_decisions(&app).await;

    let intact = copy_of(&app, "intact.sqlite3").await;
    let (code, out) = audit_verify(&["--sqlite", intact.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 6 records in 1 chains"), "{out}");

    let cases: [(&str, &str, usize, &str); 4] = [
        (
            "modified",
            "UPDATE audit_decisions SET decision = 'allow' WHERE seq = 4",
            3,
            "was modified",
        ),
        (
            "deleted",
            "DELETE FROM audit_decisions WHERE seq = 3",
            3,
            "seq 3 is missing",
        ),
        (
            "inserted",
            "UPDATE audit_decisions SET seq = seq + 1000 WHERE seq >= 3;
             UPDATE audit_decisions SET seq = seq - 999 WHERE seq >= 1000;
             INSERT INTO audit_decisions SELECT '00000000-0000-7000-8000-000000000000', instance_id, 3,
                 decided_at, hook, trip_id, city, 'allow', degraded, policy_version, key_id, reason_mask,
                 detail, prev_hash, hash, format FROM audit_decisions WHERE seq = 2",
            usize::MAX,
            "does not link to the record before it",
        ),
        (
            "reordered",
            "UPDATE audit_decisions SET seq = -1 WHERE seq = 3;
             UPDATE audit_decisions SET seq = 3 WHERE seq = 4;
             UPDATE audit_decisions SET seq = 4 WHERE seq = -1",
            3,
            "does not link to the record before it",
        ),
    ];
    for (name, tamper, blamed, says) in cases {
        let copy = copy_of(&app, &format!("{name}.sqlite3")).await;
        rusqlite::Connection::open(&copy)
            .unwrap()
            .execute_batch(tamper)
            .unwrap();
        let (code, out) = audit_verify(&["--sqlite", copy.to_str().unwrap()], &[]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains("TAMPERED"), "{name}: {out}");
        assert!(out.contains(says), "{name}: {out}");
        let blamed_id = if blamed == usize::MAX {
            "00000000-0000-7000-8000-000000000000"
        } else {
            ids[blamed].as_str()
        };
        assert!(
            out.contains(blamed_id),
            "{name}: the report does not name {blamed_id}: {out}"
        );
    }
}

#[tokio::test]
async fn audit_verify_detects_tampering_in_postgres() {
    let postgres = TestPostgres::create().await;
    let url = postgres.url.clone();
    let app = TestApp::spawn_with(Options {
        customise: Box::new(move |s| {
            s.audit.backend = AuditBackend::Postgres;
            s.audit.postgres_url = url;
        }),
        ..Default::default()
    })
    .await;
    let ids = six_decisions(&app).await;
    let (code, out) = audit_verify(&["--postgres", &postgres.url], &[]);
    assert_eq!(code, 0, "{out}");

    let admin = postgres.client().await;
    admin
        .execute(
            "UPDATE audit_decisions SET city = 'xiamen' WHERE decision_id = $1",
            &[&ids[2]],
        )
        .await
        .unwrap();
    let (code, out) = audit_verify(&["--postgres", &postgres.url], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&ids[2]) && out.contains("was modified"),
        "{out}"
    );
}

fn audit_env(path: &std::path::Path, provider: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TRIPGATE__PROVIDER__BASE_URL", provider.to_owned()),
        ("TRIPGATE__AUDIT__SQLITE_PATH", path.display().to_string()),
        ("TRIPGATE__AUDIT__INSTANCE_ID", "crash-test".to_owned()),
        ("TRIPGATE__LOG__LEVEL", "debug".to_owned()),
        ("TRIPGATE__LOG__FORMAT", "json".to_owned()),
    ]
}

/// Drives checks from several tasks until stopped; returns the decision
/// ids that were answered with 200.
pub(crate) async fn drive(
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: usize,
) -> Vec<String> {
    let answered = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (url, stop, answered) = (url.clone(), Arc::clone(&stop), Arc::clone(&answered));
        handles.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = json!({
                    "trip_id": format!("T-{t}-{n}"), "city": "hangzhou",
                    "driver": {"id": format!("D-{:06}", (n * 7 + t as u64) % 1000)},
                    "passengers": [{"id": "13912345678"}, {"id": format!("P-{:07}", n % 10000)}],
                });
                let Ok(response) = http.post(&url).json(&body).send().await else {
                    continue;
                };
                if response.status() != 200 {
                    continue;
                }
                if let Ok(answer) = response.json::<Value>().await {
                    if let Some(id) = answer["decision_id"].as_str() {
                        answered.lock().await.push(id.to_owned());
                    }
                }
            }
        }));
    }
    for handle in handles {
        let _ = handle.await;
    }
    let ids = answered.lock().await.clone();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answered_decision_survives_a_sigkill() {
    let provider = spawn_simulator();
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.sqlite3");
    let log = dir.path().join("service.log");
    let env = audit_env(&audit_path, &provider);

    let mut service = ServiceProcess::start(&env, log.clone()).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(drive(service.url("/v1/checks/trip"), Arc::clone(&stop), 16));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    service.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = load.await.unwrap();
    assert!(
        answered.len() > 50,
        "too little load reached the service: {}",
        answered.len()
    );

    let restarted = ServiceProcess::start(&env, log.clone()).await;
    let http = reqwest::Client::new();
    for id in &answered {
        let response = http
            .get(restarted.url(&format!("/v1/audit/decisions/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "answered decision {id} is missing from the trail"
        );
    }
    // The restarted instance continues the same chain.
    let body = json!({"trip_id": "T-after", "city": "hangzhou", "driver": {"id": "D-000001"}, "passengers": [{"id": "P-0000001"}]});
    assert_eq!(
        http.post(restarted.url("/v1/checks/trip"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(restarted);

    let (code, out) = audit_verify(&["--sqlite", audit_path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("in 1 chains"), "{out}");

    // The raw phone number was in every request: it must be in no log line
    // and nowhere in the audit files.
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("check decided"),
        "debug decision lines were expected in the log"
    );
    assert_eq!(
        log_text.matches("13912345678").count(),
        0,
        "a raw subject id reached the log"
    );
    for path in audit_files(&audit_path) {
        if let Ok(bytes) = std::fs::read(&path) {
            let hits = bytes.windows(11).filter(|w| *w == b"13912345678").count();
            assert_eq!(hits, 0, "a raw subject id is in {path:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_one_postgres_without_losing_a_record() {
    let postgres = TestPostgres::create().await;
    let mut apps = Vec::new();
    for instance in ["replica-a", "replica-b"] {
        let url = postgres.url.clone();
        apps.push(
            TestApp::spawn_with(Options {
                customise: Box::new(move |s| {
                    s.audit.backend = AuditBackend::Postgres;
                    s.audit.postgres_url = url;
                    s.audit.instance_id = instance.to_owned();
                }),
                ..Default::default()
            })
            .await,
        );
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads: Vec<_> = apps
        .iter()
        .map(|app| tokio::spawn(drive(app.url("/v1/checks/trip"), Arc::clone(&stop), 8)))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = Vec::new();
    for load in loads {
        answered.extend(load.await.unwrap());
    }
    assert!(answered.len() > 50, "too little load: {}", answered.len());

    let admin = postgres.client().await;
    let rows = admin
        .query(
            "SELECT instance_id, COUNT(*) FROM audit_decisions GROUP BY instance_id ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "each replica writes its own chain");
    let stored: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
    assert_eq!(
        stored as usize,
        answered.len(),
        "every answered decision, and only those, is stored"
    );

    let (code, out) = audit_verify(&["--postgres", &postgres.url], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("in 2 chains"), "{out}");
}

/// The audit key the store-level tests seal with.
fn test_keys() -> AuditKeys {
    AuditKeys::new(&[("k".into(), "a secret long enough".into())], "k").unwrap()
}

/// A party of a record naming `subject` (green, nothing else known).
fn party_naming(
    keys: &AuditKeys,
    subject: &tripgate::domain::SubjectId,
    party: &str,
    index: Option<u32>,
) -> tripgate::audit::AuditParty {
    tripgate::audit::AuditParty {
        party: party.into(),
        index,
        subject_ref: keys.subject_ref(subject),
        status: "green".into(),
        color: None,
        issuer: None,
        source: None,
        status_age_secs: None,
        eligible: None,
        eligible_after_us: None,
    }
}

fn record(keys: &AuditKeys, decided_at_us: i64, n: usize) -> AuditRecord {
    AuditRecord {
        appeal: None,
        client: None,
        format: FORMAT,
        decision_id: uuid::Uuid::now_v7().to_string(),
        decided_at_us,
        hook: Hook::Trip,
        trip_id: format!("T-{n}"),
        city: "hangzhou".into(),
        decision: "allow".into(),
        degraded: false,
        policy_version: "test".into(),
        instance_id: "retention".into(),
        key_id: keys.active_id().into(),
        reasons: vec![],
        parties: vec![],
    }
}

async fn retention_keeps_the_rest_verifiable(config: StoreConfig) {
    let keys = test_keys();
    let store = AuditStore::open(&config).await.unwrap();
    let (writer, task) = AuditWriter::start(
        store.clone(),
        keys.clone(),
        example_signer(),
        example_public_keys(),
        "retention".into(),
        WriterLimits {
            max_batch: 64,
            queue_records: 64,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let old = (Utc::now() - TimeDelta::days(200)).timestamp_micros();
    let recent = Utc::now().timestamp_micros();
    for n in 0..5 {
        writer
            .append(record(&keys, old + n as i64, n))
            .await
            .unwrap();
    }
    for n in 5..8 {
        writer
            .append(record(&keys, recent + n as i64, n))
            .await
            .unwrap();
    }

    let cutoff = (Utc::now() - TimeDelta::days(180)).timestamp_micros();
    assert_eq!(
        store.purge_before(cutoff, &example_signer()).await.unwrap(),
        5
    );
    assert_eq!(store.count().await.unwrap(), 3);
    let report = crate::helpers::verify_with_example_key(&store, Some(&keys)).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.records, 3);

    // The chain goes on after a purge, and a purge of nothing changes nothing.
    writer.append(record(&keys, recent + 100, 9)).await.unwrap();
    assert_eq!(
        store.purge_before(cutoff, &example_signer()).await.unwrap(),
        0
    );
    let report = crate::helpers::verify_with_example_key(&store, Some(&keys)).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.records, 4);
    drop(writer);
    task.await.unwrap();
}

#[tokio::test]
async fn sqlite_retention_purges_old_records_and_the_rest_verifies() {
    let dir = tempfile::tempdir().unwrap();
    retention_keeps_the_rest_verifiable(crate::helpers::sqlite_store(dir.path().join("a.sqlite3")))
        .await;
}

#[tokio::test]
async fn postgres_retention_purges_old_records_and_the_rest_verifies() {
    let postgres = TestPostgres::create().await;
    retention_keeps_the_rest_verifiable(StoreConfig::Postgres {
        url: postgres.url.clone(),
        pool_size: 2,
        access: Default::default(),
    })
    .await;
}

#[tokio::test]
async fn rotated_keys_keep_old_records_searchable_and_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sqlite3");
    let key = |id: &str, secret: &str| tripgate::config::AuditKeySettings {
        id: id.into(),
        secret: Some(secret.into()),
        secret_file: None,
    };
    let old_key = key("2026-q3", "the retired secret, 16+ bytes");
    let new_key = key("2026-q4", "the current secret, 16+ bytes");

    for (keys, active) in [
        (vec![old_key.clone()], "2026-q3"),
        (vec![old_key, new_key], "2026-q4"),
    ] {
        let path = path.clone();
        let mut app = TestApp::spawn_with(Options {
            customise: Box::new(move |s| {
                s.audit.sqlite_path = path;
                s.audit.keys = keys;
                s.audit.active_key = active.into();
                s.audit.instance_id = "rotation".into();
            }),
            ..Default::default()
        })
        .await;
        app.set_code("D-1", "green", "hangzhou").await;
        app.set_code("P-1", "green", "hangzhou").await;
        app.decide(&trip("D-1", &["P-1"])).await;

        if active == "2026-q4" {
            let (status, page) = app.get_json("/v1/audit/decisions?subject=P-1").await;
            assert_eq!(status, 200);
            let key_ids: Vec<&str> = page["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["key_id"].as_str().unwrap())
                .collect();
            assert_eq!(key_ids, vec!["2026-q4", "2026-q3"], "{page}");
        }
        // One server at a time owns the file's log.
        app.stop().await;
    }

    let env = [("TRIPGATE__AUDIT__ACTIVE_KEY", "2026-q4".to_owned())];
    // Verification needs every key that sealed a record.
    let dir_config = dir.path().join("config");
    std::fs::create_dir(&dir_config).unwrap();
    for file in [
        "base.toml",
        "policy.toml",
        "messages.toml",
        "audit-signing-key.example",
    ] {
        std::fs::copy(
            crate::helpers::config_dir().join(file),
            dir_config.join(file),
        )
        .unwrap();
    }
    let base = std::fs::read_to_string(crate::helpers::config_dir().join("local.toml")).unwrap();
    let base = base.replace(
        "[[audit.keys]]\nid = \"local\"\nsecret = \"local-development-key-not-for-production\"",
        "[[audit.keys]]\nid = \"2026-q3\"\nsecret = \"the retired secret, 16+ bytes\"\n\n\
         [[audit.keys]]\nid = \"2026-q4\"\nsecret = \"the current secret, 16+ bytes\"",
    );
    std::fs::write(dir_config.join("local.toml"), base).unwrap();
    let mut env: Vec<(&str, String)> = env.to_vec();
    env.push(("TRIPGATE_CONFIG_DIR", dir_config.display().to_string()));
    let (code, out) = audit_verify(&["--sqlite", path.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 records"), "{out}");
}

#[tokio::test]
async fn a_lost_or_damaged_sqlite_lookup_index_is_rebuilt_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sqlite3");
    let config = crate::helpers::sqlite_store(path.clone());
    let keys = test_keys();
    let subject = tripgate::domain::SubjectId::parse("13900001111").unwrap();
    {
        let store = AuditStore::open(&config).await.unwrap();
        let (writer, task) = AuditWriter::start(
            store,
            keys.clone(),
            example_signer(),
            example_public_keys(),
            "index".into(),
            WriterLimits {
                max_batch: 8,
                queue_records: 8,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
        for n in 0..3 {
            let mut r = record(&keys, Utc::now().timestamp_micros() + n as i64, n);
            r.parties
                .push(party_naming(&keys, &subject, "driver", None));
            writer.append(r).await.unwrap();
        }
        drop(writer);
        task.await.unwrap();
    }
    let filter = tripgate::audit::DecisionFilter {
        subject_refs: keys.all_subject_refs(&subject),
        ..Default::default()
    };
    let index = |suffix: &str| {
        let mut name = path.clone().into_os_string();
        name.push("-index");
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    for damage in ["delete", "garbage"] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(index(suffix));
        }
        if damage == "garbage" {
            std::fs::write(index(""), b"this is not an SQLite database, not at all").unwrap();
        }
        let store = AuditStore::open(&config).await.unwrap();
        let page = store.page(&filter, None, 10).await.unwrap();
        assert_eq!(
            page.records.len(),
            3,
            "after {damage}, the index was not rebuilt"
        );
        let by_trip = tripgate::audit::DecisionFilter {
            trip_id: Some("T-1".into()),
            ..Default::default()
        };
        assert_eq!(
            store.page(&by_trip, None, 10).await.unwrap().records.len(),
            1
        );
    }
}

/// The lookup index writes each catch-up as a sorted run and merges runs
/// 16 at a time (see the SQLite store): lookups must find every record
/// through merges, and a purge must drop what only purged records used.
#[tokio::test]
async fn sqlite_lookups_stay_complete_as_the_index_merges_runs_and_after_a_purge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sqlite3");
    let config = crate::helpers::sqlite_store(path.clone());
    let keys = test_keys();
    let subject = tripgate::domain::SubjectId::parse("13900002222").unwrap();
    let store = AuditStore::open(&config).await.unwrap();
    let (writer, task) = AuditWriter::start(
        store.clone(),
        keys.clone(),
        example_signer(),
        example_public_keys(),
        "runs".into(),
        WriterLimits {
            max_batch: 8,
            queue_records: 8,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let by_trip = |n: usize| tripgate::audit::DecisionFilter {
        trip_id: Some(format!("T-{n}")),
        ..Default::default()
    };
    let by_subject = tripgate::audit::DecisionFilter {
        subject_refs: keys.all_subject_refs(&subject),
        ..Default::default()
    };
    // The first 20 decisions are two days old, the last 20 are new.
    let now = Utc::now().timestamp_micros();
    let two_days_us = 2 * 86_400_000_000;
    for n in 0..40 {
        let at = if n < 20 { now - two_days_us } else { now } + n as i64;
        let mut r = record(&keys, at, n);
        r.parties
            .push(party_naming(&keys, &subject, "passenger", Some(0)));
        writer.append(r).await.unwrap();
        // Each lookup catches the index up: one run per decision.
        let found = store.page(&by_trip(n), None, 10).await.unwrap();
        assert_eq!(
            found.records.len(),
            1,
            "trip T-{n} right after its decision"
        );
    }
    let runs_by_level = || {
        let index = rusqlite::Connection::open(format!("{}-index", path.display())).unwrap();
        let mut statement = index
            .prepare("SELECT level, COUNT(*), MIN(last_row) FROM index_runs GROUP BY level ORDER BY level")
            .unwrap();
        let levels: Vec<(i64, i64, i64)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        levels
    };
    assert_eq!(
        runs_by_level()
            .iter()
            .map(|(level, runs, _)| (*level, *runs))
            .collect::<Vec<_>>(),
        vec![(0, 8), (1, 2)],
        "40 runs of one decision: 32 merged into two runs of level 1"
    );
    assert_eq!(
        store
            .page(&by_subject, None, 100)
            .await
            .unwrap()
            .records
            .len(),
        40
    );
    for n in 0..40 {
        let found = store.page(&by_trip(n), None, 10).await.unwrap();
        assert_eq!(found.records.len(), 1, "trip T-{n} after the merges");
    }

    let purged = store
        .purge_before(now - two_days_us / 2, &example_signer())
        .await
        .unwrap();
    assert_eq!(purged, 20);
    assert_eq!(
        store
            .page(&by_subject, None, 100)
            .await
            .unwrap()
            .records
            .len(),
        20
    );
    assert_eq!(
        store
            .page(&by_trip(3), None, 10)
            .await
            .unwrap()
            .records
            .len(),
        0
    );
    assert_eq!(
        store
            .page(&by_trip(30), None, 10)
            .await
            .unwrap()
            .records
            .len(),
        1
    );
    let levels = runs_by_level();
    assert_eq!(
        levels.iter().find(|l| l.0 == 1).map(|l| l.1),
        Some(1),
        "the level-1 run of rows 1-16 indexed only purged records: dropped ({levels:?})"
    );
    drop(writer);
    task.await.unwrap();
}

/// Small log segments under load: many rolls, and segments retired while
/// decisions go on are recycled as later ones, still holding their old
/// frames. Every answered decision must be in the trail once and the chain
/// must verify, read from beside the running server (the log's segments,
/// recycled ones among them, and the SQLite file): old frames never come
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recycled_log_segments_under_load_keep_every_decision_once() {
    let app = TestApp::spawn_with(Options {
        customise: Box::new(|s| s.audit.sqlite_log_segment_bytes = 64 * 1024),
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    let mut answered = 0;
    for round in 0..6 {
        let checks = (0..100).map(|n| {
            let (http, url) = (app.http.clone(), app.url("/v1/checks/trip"));
            let body = json!({"trip_id": format!("T-{round}-{n}"), "city": "hangzhou",
                "driver": {"id": "D-1"}, "passengers": [{"id": "P-1"}]});
            tokio::spawn(async move { http.post(url).json(&body).send().await.unwrap().status() })
        });
        for status in futures_util::future::join_all(checks).await {
            assert_eq!(status.unwrap(), 200);
            answered += 1;
        }
        // Let the loader retire the full segments between rounds.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    let log_dir = audit_log_dir(&app.audit_file());
    let names: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let highest = names
        .iter()
        .filter_map(|n| n.strip_suffix(".segment")?.parse::<u64>().ok())
        .max()
        .unwrap();
    assert!(
        highest >= 6,
        "600 records of ~1 KB in 64 KB segments roll often: {names:?}"
    );
    // LOCK, the active segment, the next one, two spares, and one the
    // loader may not have retired yet.
    assert!(
        names.len() <= 6,
        "retired segments are recycled or deleted, not kept: {names:?}"
    );

    let path = app.audit_file();
    let (code, out) = audit_verify(&["--sqlite", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{answered} records")), "{out}");
}
