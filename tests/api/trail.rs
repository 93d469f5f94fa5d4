//! The trail a regulator checks with a public key alone: every way of
//! quietly cutting it (dropping its newest records, a whole chain, a prefix
//! behind a forged checkpoint, re-sealing records) is found by
//! `tripgate audit verify --public-key FILE --heads FILE`, on SQLite and on
//! PostgreSQL, with no audit secret and no configuration at hand. And what
//! keeps it whole while PostgreSQL misbehaves: a lock held on an audit
//! table, or a server that stops answering, refuses decisions within the
//! write timeout (never an unrecorded one given) or delays no decision at
//! all (signed heads), and the chain goes on without a gap.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::Value;
use tripgate::audit::{AuditRecord, AuditStore, AuditWriter, StoreConfig, WriterLimits};
use tripgate::config::AuditBackend;

use crate::helpers::{
    example_public_keys, example_signer, spawn_simulator, trip, Options, ServiceProcess, TestApp,
    TestPostgres,
};
use crate::proxy::FreezableProxy;

/// Runs `tripgate audit verify` the way a regulator would: no configuration
/// directory, no audit secret; (exit code, output).
fn regulator_verify(store: &[&str], public_key: &Path, heads: Option<&Path>) -> (i32, String) {
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tripgate"));
    command
        .args(["audit", "verify"])
        .args(store)
        .arg("--public-key")
        .arg(public_key)
        .env("TRIPGATE_CONFIG_DIR", empty.path())
        .env_remove("TRIPGATE_ENV")
        .stdin(Stdio::null());
    if let Some(heads) = heads {
        command.arg("--heads").arg(heads);
    }
    let output = command.output().expect("run tripgate audit verify");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// Six decisions, then waits until the service has signed the head of the
/// last one; returns the saved `GET /v1/audit/heads` body's path and the
/// public key file's path.
async fn decide_and_save_heads(app: &TestApp, dir: &Path) -> (PathBuf, PathBuf, Vec<String>) {
    app.set_code("D-1", "green", "hangzhou").await;
    for p in ["P-1", "P-2", "P-3"] {
        app.set_code(p, "green", "hangzhou").await;
    }
    app.set_code("P-4", "red", "hangzhou").await;
    let mut ids = Vec::new();
    for p in ["P-1", "P-2", "P-3", "P-4", "P-1", "P-2"] {
        let body = app.decide(&trip("D-1", &[p])).await;
        ids.push(body["decision_id"].as_str().unwrap().to_owned());
    }
    let heads = heads_once_signed_to(app, 6).await;
    assert_eq!(
        heads["heads"][0]["seq"], 6,
        "the head was not signed: {heads}"
    );
    assert_eq!(heads["heads"][0]["kind"], "head");
    let heads_file = dir.join("heads.json");
    std::fs::write(&heads_file, heads.to_string()).unwrap();
    let key_file = dir.join("public-key");
    std::fs::write(&key_file, heads["public_key"].as_str().unwrap()).unwrap();
    (heads_file, key_file, ids)
}

fn signing_every_second(s: &mut tripgate::config::Settings) {
    s.audit.head_interval_secs = 1;
    s.audit.instance_id = "trail".into();
}

/// `GET /v1/audit/heads` once the first chain's signed head reaches `seq`
/// (asked every 50 ms, 100 times); the last answer if it never does.
async fn heads_once_signed_to(app: &TestApp, seq: i64) -> Value {
    let mut heads = Value::Null;
    for _ in 0..100 {
        let (status, body) = app.get_json("/v1/audit/heads").await;
        assert_eq!(status, 200, "{body}");
        heads = body;
        if heads["heads"][0]["seq"] == seq {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    heads
}

/// A service on a PostgreSQL trail of its own, signing every second, with
/// `also` applied to its settings.
async fn spawn_on_postgres_signing_every_second(
    also: impl FnOnce(&mut tripgate::config::Settings) + 'static,
) -> (TestPostgres, TestApp) {
    let postgres = TestPostgres::create().await;
    let url = postgres.url.clone();
    let app = TestApp::spawn_with(Options {
        customise: Box::new(move |s| {
            signing_every_second(s);
            s.audit.backend = AuditBackend::Postgres;
            s.audit.postgres_url = url;
            also(s);
        }),
        ..Default::default()
    })
    .await;
    (postgres, app)
}

/// Re-seals the chain from link `from` on after changing that record's
/// decision to `allow`: every hash recomputed, as anyone can.
async fn reseal(store: &AuditStore, from: i64) -> Vec<(i64, String, String, AuditRecord)> {
    let (links, _) = store.links_after(None, 100).await.unwrap();
    let mut prev = String::new();
    let mut changed = Vec::new();
    for link in links {
        let mut record = link.record.unwrap();
        if link.seq < from {
            prev = link.hash;
            continue;
        }
        if link.seq == from {
            record.decision = "allow".into();
        }
        let hash = tripgate::audit::link_hash(&prev, link.seq, &record.canonical_bytes());
        changed.push((link.seq, prev.clone(), hash.clone(), record));
        prev = hash;
    }
    changed
}

const TAMPERINGS: [(&str, &str); 4] = [
    ("newest", "were deleted"),
    ("chain", "is missing"),
    ("prefix", "checkpoint that carries no valid signature"),
    ("resealed", "was re-sealed"),
];

fn sqlite_tampering(path: &Path, how: &str, resealed: &[(i64, String, String, AuditRecord)]) {
    let db = rusqlite::Connection::open(path).unwrap();
    match how {
        "newest" => db
            .execute_batch("DELETE FROM audit_decisions WHERE seq > 4")
            .unwrap(),
        "chain" => db
            .execute_batch("DELETE FROM audit_decisions; DELETE FROM audit_heads;")
            .unwrap(),
        "prefix" => db
            .execute_batch(
                "INSERT INTO audit_checkpoints (instance_id, seq, hash) \
                 SELECT instance_id, seq, hash FROM audit_decisions WHERE seq = 2; \
                 DELETE FROM audit_decisions WHERE seq <= 2",
            )
            .unwrap(),
        _ => {
            for (seq, prev, hash, record) in resealed {
                db.execute(
                    "UPDATE audit_decisions SET decision = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
                    rusqlite::params![record.decision, prev, hash, seq],
                )
                .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn sqlite_a_regulator_finds_every_quiet_cut_with_the_public_key_alone() {
    let app = TestApp::spawn_with(Options {
        customise: Box::new(signing_every_second),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (heads, key, _) = decide_and_save_heads(&app, dir.path()).await;
    let copy = |name: &str| {
        let copy = dir.path().join(name);
        rusqlite::Connection::open(app.audit_file())
            .unwrap()
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        copy
    };
    // A query loads every logged record into the file first.
    assert_eq!(app.get_json("/v1/audit/decisions?limit=1").await.0, 200);

    let intact = copy("intact.sqlite3");
    let (code, out) = regulator_verify(&["--sqlite", intact.to_str().unwrap()], &key, Some(&heads));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 6 records in 1 chains"), "{out}");

    let store = AuditStore::open(&crate::helpers::sqlite_store(intact.clone()))
        .await
        .unwrap();
    let resealed = reseal(&store, 4).await;
    drop(store);
    for (how, says) in TAMPERINGS {
        let file = copy(&format!("{how}.sqlite3"));
        sqlite_tampering(&file, how, &resealed);
        let (code, out) =
            regulator_verify(&["--sqlite", file.to_str().unwrap()], &key, Some(&heads));
        assert_eq!(code, 1, "{how}: {out}");
        assert!(out.contains("TAMPERED"), "{how}: {out}");
        assert!(out.contains(says), "{how}: expected {says:?}: {out}");
    }
    // Without the saved heads the store's own newest head still catches a
    // truncation; a deleted chain needs the saved heads.
    let file = copy("newest-again.sqlite3");
    sqlite_tampering(&file, "newest", &resealed);
    let (code, out) = regulator_verify(&["--sqlite", file.to_str().unwrap()], &key, None);
    assert_eq!(code, 1, "{out}");
}

/// Another session holding `table` locked (a maintenance job, a long
/// transaction) until `ROLLBACK` is sent on the client returned.
async fn lock_table(postgres: &TestPostgres, table: &str) -> tokio_postgres::Client {
    let locker = postgres.client().await;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .unwrap();
    locker
}

/// Storing a signed head never holds decisions up: with `audit_heads`
/// locked by another session (a maintenance job, a long transaction),
/// decisions are answered across several signing intervals, and the newest
/// head is stored once the table is free again.
#[tokio::test]
async fn postgres_decisions_do_not_wait_for_their_signed_head_to_be_stored() {
    let (postgres, app) = spawn_on_postgres_signing_every_second(|_| {}).await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    let locker = lock_table(&postgres, "audit_heads").await;
    let decisions = async {
        for _ in 0..12 {
            app.decide(&trip("D-1", &["P-1"])).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), decisions)
        .await
        .expect("decisions waited for a signed head to be stored while audit_heads was locked");
    locker.batch_execute("ROLLBACK").await.unwrap();

    let newest = heads_once_signed_to(&app, 12).await["heads"][0].clone();
    assert_eq!(
        newest["seq"], 12,
        "the newest head was not stored: {newest}"
    );
    assert_eq!(newest["kind"], "head");
}

/// A clean stop does not wait out a lock held on `audit_heads`: storing the
/// last signed heads gives up after its timeout (logged and counted), so
/// the stop ends long before the shutdown grace runs out, with every
/// decision stored. Before the timeout, the stop waited for the whole grace.
#[tokio::test]
async fn postgres_a_clean_stop_does_not_wait_out_a_lock_on_the_signed_heads() {
    let (postgres, mut app) =
        spawn_on_postgres_signing_every_second(|s| s.server.shutdown_grace_secs = 120).await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    for _ in 0..3 {
        app.decide(&trip("D-1", &["P-1"])).await;
    }
    let locker = lock_table(&postgres, "audit_heads").await;

    let started = std::time::Instant::now();
    app.stop().await;
    let took = started.elapsed();
    locker.batch_execute("ROLLBACK").await.unwrap();

    assert!(
        took < Duration::from_secs(60),
        "the clean stop waited {took:?} on the lock held on audit_heads (grace 120 s)"
    );
    let stored: i64 = locker
        .query_one("SELECT COUNT(*) FROM audit_decisions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 3, "every answered decision is stored");
}

/// The decision ids stored on PostgreSQL, in chain order.
async fn stored_decision_ids(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query("SELECT decision_id FROM audit_decisions ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Once the head of link `records` is signed, the regulator's verify finds
/// that many records intact in one chain, with the heads saved then.
async fn assert_intact_on_postgres(
    app: &TestApp,
    postgres: &TestPostgres,
    key: &Path,
    dir: &Path,
    records: usize,
) {
    let heads = heads_once_signed_to(app, records as i64).await;
    let heads_file = dir.join("heads-after.json");
    std::fs::write(&heads_file, heads.to_string()).unwrap();
    let (code, out) = regulator_verify(&["--postgres", &postgres.url], key, Some(&heads_file));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("intact: {records} records in 1 chains")),
        "{out}"
    );
}

/// A lock held on `audit_decisions` (an index built without
/// `CONCURRENTLY`, a forgotten `LOCK TABLE`) refuses checks within the write
/// timeout instead of holding every one of them for as long as it lasts:
/// the batch that waits for the lock, and then finding where the chain
/// continues. Once the lock is gone checks are answered again, the refused
/// decisions left no record, and the chain goes on without a gap.
#[tokio::test]
async fn postgres_a_lock_on_the_decisions_table_refuses_checks_within_the_write_timeout() {
    let (postgres, app) =
        spawn_on_postgres_signing_every_second(|s| s.audit.postgres_write_timeout_ms = 500).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, key, mut answered) = decide_and_save_heads(&app, dir.path()).await;
    let locker = lock_table(&postgres, "audit_decisions").await;

    for attempt in ["the batch's insert", "finding where the chain continues"] {
        let started = std::time::Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(20),
            app.check_trip(&trip("D-1", &["P-1"])),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("{attempt}: a check waited 20 s on the lock held on audit_decisions")
        });
        let took = started.elapsed();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 503, "{attempt}: {body}");
        assert_eq!(body["error"]["code"], "AUDIT_UNAVAILABLE", "{attempt}");
        assert!(
            !body.to_string().contains("lock") && !body.to_string().contains("audit_decisions"),
            "a 5xx body carries no internals: {body}"
        );
        // 500 ms on the server, 1 s at most on this side, and the check.
        assert!(
            took < Duration::from_secs(3),
            "{attempt}: refused only after {took:?} (write timeout 500 ms)"
        );
    }
    let (status, ready) = app.get_admin_json("/readyz").await;
    assert_eq!(
        status, 200,
        "the server answers; a lock every replica shares is no reason to stop routing: {ready}"
    );
    locker.batch_execute("ROLLBACK").await.unwrap();

    let body = app.decide(&trip("D-1", &["P-2"])).await;
    answered.push(body["decision_id"].as_str().unwrap().to_owned());
    let stored = stored_decision_ids(&locker).await;
    assert_eq!(
        stored, answered,
        "exactly the answered decisions are stored"
    );
    assert_intact_on_postgres(&app, &postgres, &key, dir.path(), 7).await;
}

/// A PostgreSQL server that stops answering (a partition, a hung host)
/// refuses checks within twice the write timeout, on this side's own bound.
/// The connection given up on is closed, not pooled, so checks are answered
/// again once the server is back, and the trail verifies with every
/// answered decision in it (the refused batch, which the healed connection
/// may still deliver, is the chain's next link or nothing; if it is, the
/// operator is told so).
#[tokio::test]
async fn postgres_a_server_that_stops_answering_refuses_checks_within_twice_the_write_timeout() {
    let postgres = TestPostgres::create().await;
    let proxy = FreezableProxy::start(postgres.address.clone()).await;
    let url = postgres.url.replace(&postgres.address, &proxy.address);
    let app = TestApp::spawn_with(Options {
        customise: Box::new(move |s| {
            signing_every_second(s);
            s.audit.backend = AuditBackend::Postgres;
            s.audit.postgres_url = url;
            s.audit.postgres_write_timeout_ms = 500;
        }),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_, key, mut answered) = decide_and_save_heads(&app, dir.path()).await;

    proxy.freeze();
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        app.check_trip(&trip("D-1", &["P-1"])),
    )
    .await
    .expect("a check waited 20 s on a PostgreSQL server that stopped answering");
    let took = started.elapsed();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "AUDIT_UNAVAILABLE");
    // 1 s on this side (twice the write timeout), and the check.
    assert!(
        took < Duration::from_secs(3),
        "refused only after {took:?} (write timeout 500 ms)"
    );
    proxy.thaw();

    let mut recovered = None;
    for _ in 0..50 {
        let response = app.check_trip(&trip("D-1", &["P-2"])).await;
        if response.status() == 200 {
            recovered = Some(response.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = recovered.expect("checks were not answered again once the server was back");
    answered.push(recovered["decision_id"].as_str().unwrap().to_owned());
    let stored = stored_decision_ids(&postgres.client().await).await;
    for id in &answered {
        assert!(stored.contains(id), "answered decision {id} is not stored");
    }
    assert!(
        stored.len() <= answered.len() + 1,
        "only the refused batch may be stored beside the answered ones: {stored:?}"
    );
    // If it was, the operator is told: its decision was refused, not given.
    let late = stored.len() - answered.len();
    let (_, metrics) = app.get_admin("/metrics").await;
    let counted = format!("tripgate_audit_refused_records_stored_total {late}");
    assert!(
        metrics.lines().any(|l| l == counted),
        "expected {counted:?}: {}",
        metrics
            .lines()
            .filter(|l| l.contains("refused_records"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_intact_on_postgres(&app, &postgres, &key, dir.path(), stored.len()).await;
}

#[tokio::test]
async fn postgres_a_regulator_finds_every_quiet_cut_with_the_public_key_alone() {
    for (how, says) in TAMPERINGS {
        let (postgres, app) = spawn_on_postgres_signing_every_second(|_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let (heads, key, _) = decide_and_save_heads(&app, dir.path()).await;
        let (code, out) = regulator_verify(&["--postgres", &postgres.url], &key, Some(&heads));
        assert_eq!(code, 0, "{how}: intact first: {out}");

        let admin = postgres.client().await;
        match how {
            "newest" => {
                admin
                    .batch_execute(
                        "DELETE FROM audit_subject_keys; DELETE FROM audit_decisions WHERE seq > 4",
                    )
                    .await
                    .unwrap();
            }
            "chain" => {
                admin
                    .batch_execute("DELETE FROM audit_decisions; DELETE FROM audit_heads")
                    .await
                    .unwrap();
            }
            "prefix" => {
                admin
                    .batch_execute(
                        "INSERT INTO audit_checkpoints (instance_id, seq, hash) \
                         SELECT instance_id, seq, hash FROM audit_decisions WHERE seq = 2; \
                         DELETE FROM audit_decisions WHERE seq <= 2",
                    )
                    .await
                    .unwrap();
            }
            _ => {
                let store = AuditStore::open(&StoreConfig::Postgres {
                    url: postgres.url.clone(),
                    pool_size: 1,
                    access: Default::default(),
                })
                .await
                .unwrap();
                for (seq, prev, hash, record) in reseal(&store, 4).await {
                    admin
                        .execute(
                            "UPDATE audit_decisions SET decision = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
                            &[&record.decision, &prev, &hash, &seq],
                        )
                        .await
                        .unwrap();
                }
            }
        }
        let (code, out) = regulator_verify(&["--postgres", &postgres.url], &key, Some(&heads));
        assert_eq!(code, 1, "{how}: {out}");
        assert!(out.contains(says), "{how}: expected {says:?}: {out}");
    }
}

/// The environment of a `tripgate serve` on the SQLite file `path` with
/// chain id `instance`, a simulator of its own, and one more setting.
fn service_env(
    path: &Path,
    instance: &str,
    (key, value): (&'static str, &str),
) -> Vec<(&'static str, String)> {
    vec![
        ("TRIPGATE__PROVIDER__BASE_URL", spawn_simulator()),
        ("TRIPGATE__AUDIT__SQLITE_PATH", path.display().to_string()),
        ("TRIPGATE__AUDIT__INSTANCE_ID", instance.to_owned()),
        (key, value.to_owned()),
    ]
}

#[tokio::test]
async fn a_restart_never_reuses_the_sequence_numbers_of_deleted_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sqlite3");
    let env = service_env(&path, "fixed", ("TRIPGATE__AUDIT__HEAD_INTERVAL_SECS", "1"));
    let http = reqwest::Client::new();
    let decide = |service: &ServiceProcess| {
        let (http, url) = (http.clone(), service.url("/v1/checks/trip"));
        async move {
            let response = http
                .post(url)
                .json(&trip("D-000001", &["P-0000001"]))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    };

    // Four decisions, a signed head, then a clean stop (a closed head).
    let mut service = ServiceProcess::start(&env, dir.path().join("first.log")).await;
    for _ in 0..4 {
        decide(&service).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    service.terminate();
    // Someone drops the newest two records while the service is down (and
    // the log beside the file, which would bring them back).
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DELETE FROM audit_decisions WHERE seq > 2")
        .unwrap();
    std::fs::remove_dir_all(crate::helpers::audit_log_dir(&path)).unwrap();

    let mut service = ServiceProcess::start(&env, dir.path().join("second.log")).await;
    for _ in 0..2 {
        decide(&service).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    service.terminate();

    let db = rusqlite::Connection::open(&path).unwrap();
    let chains: Vec<(String, i64, i64)> = db
        .prepare("SELECT instance_id, MIN(seq), MAX(seq) FROM audit_decisions GROUP BY instance_id ORDER BY instance_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        chains,
        vec![("fixed".into(), 1, 2), ("fixed~1".into(), 1, 2)],
        "the new records went to a new segment, seqs 3 and 4 of 'fixed' were not reused"
    );
    let key = dir.path().join("public-key");
    std::fs::write(
        &key,
        tripgate::audit::public_key_string(&example_signer().public_key()),
    )
    .unwrap();
    let (code, out) = regulator_verify(&["--sqlite", path.to_str().unwrap()], &key, None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("chain fixed:") && out.contains("records 3..=4 were deleted"),
        "{out}"
    );
    assert!(
        !out.contains("chain fixed~1:"),
        "the new segment is intact: {out}"
    );
}

fn record(keys: &tripgate::audit::AuditKeys, decided_at_us: i64, n: usize) -> AuditRecord {
    AuditRecord {
        appeal: None,
        client: Some("dispatch-a".into()),
        format: tripgate::audit::FORMAT,
        decision_id: uuid::Uuid::now_v7().to_string(),
        decided_at_us,
        hook: tripgate::audit::Hook::Trip,
        trip_id: format!("T-{n}"),
        city: "hangzhou".into(),
        decision: "allow".into(),
        degraded: false,
        policy_version: "t".into(),
        instance_id: "clock".into(),
        key_id: keys.active_id().into(),
        reasons: vec![],
        parties: vec![],
    }
}

async fn one_wrong_clock_cannot_purge_the_records_before_it(config: StoreConfig) {
    let keys =
        tripgate::audit::AuditKeys::new(&[("k".into(), "a test secret of 16+ bytes".into())], "k")
            .unwrap();
    let store = AuditStore::open(&config).await.unwrap();
    let (writer, task) = AuditWriter::start(
        store.clone(),
        keys.clone(),
        example_signer(),
        example_public_keys(),
        "clock".into(),
        WriterLimits::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let old = (Utc::now() - TimeDelta::days(200)).timestamp_micros();
    let now = Utc::now().timestamp_micros();
    // Two old records, two recent ones, one whose clock was years behind,
    // and a recent one.
    for (n, at) in [old, old + 1, now, now + 1, old - 1_000_000, now + 2]
        .into_iter()
        .enumerate()
    {
        writer.append(record(&keys, at, n)).await.unwrap();
    }
    let cutoff = (Utc::now() - TimeDelta::days(180)).timestamp_micros();
    assert_eq!(
        store.purge_before(cutoff, &example_signer()).await.unwrap(),
        2,
        "only the old prefix goes"
    );
    assert_eq!(store.count().await.unwrap(), 4);
    let checkpoints = store.checkpoints().await.unwrap();
    assert_eq!(checkpoints["clock"].seq, 2);
    drop(writer);
    task.await.unwrap();
    let report = crate::helpers::verify_with_example_key(&store, None).await;
    assert!(report.is_intact(), "{:?}", report.problems);
    let heads = store.heads().await.unwrap();
    assert_eq!(
        heads[0].kind,
        tripgate::audit::HeadKind::Closed,
        "{heads:?}"
    );
}

#[tokio::test]
async fn sqlite_retention_cuts_by_time_and_sequence_and_signs_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    one_wrong_clock_cannot_purge_the_records_before_it(crate::helpers::sqlite_store(
        dir.path().join("audit.sqlite3"),
    ))
    .await;
}

#[tokio::test]
async fn postgres_retention_cuts_by_time_and_sequence_and_signs_its_checkpoint() {
    let postgres = TestPostgres::create().await;
    one_wrong_clock_cannot_purge_the_records_before_it(StoreConfig::Postgres {
        url: postgres.url.clone(),
        pool_size: 2,
        access: Default::default(),
    })
    .await;
}

/// Runs `tripgate serve` with `env` on the repository's config and waits
/// up to `patience` for it to exit; (still running, its output).
fn serve_briefly(env: &[(&str, String)], patience: Duration) -> (bool, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let log = || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(out.path())
            .unwrap()
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_tripgate"));
    command
        .arg("serve")
        .env("TRIPGATE_CONFIG_DIR", crate::helpers::config_dir())
        .env("TRIPGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("TRIPGATE__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(log())
        .stderr(log());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let started = std::time::Instant::now();
    let running = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if started.elapsed() > patience {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        running,
        std::fs::read_to_string(out.path()).unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_second_server_on_the_same_file_refuses_to_start_and_a_damaged_log_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sqlite3");
    let env = service_env(
        &path,
        "owner",
        ("TRIPGATE__AUDIT__JOURNAL_LOCK_WAIT_MS", "500"),
    );
    let mut first = ServiceProcess::start(&env, dir.path().join("first.log")).await;
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let response = http
            .post(first.url("/v1/checks/trip"))
            .json(&trip("D-000001", &["P-0000001"]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    // A second server on the same file (two pods on one volume) must not
    // serve decisions without the log's fsync: it refuses to start.
    let mut second_env = env.clone();
    second_env[2].1 = "intruder".into();
    let (running, out) = serve_briefly(&second_env, Duration::from_secs(5));
    assert!(!running, "a second owner started: {out}");
    assert!(out.contains("locked by another process"), "{out}");

    // The owner dies with its records in the log only; the log is then
    // damaged in front of acknowledged records.
    first.kill();
    let log_dir = crate::helpers::audit_log_dir(&path);
    let segment = std::fs::read_dir(&log_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|f| {
            f.extension().is_some_and(|e| e == "segment")
                && std::fs::read(f).unwrap().iter().any(|b| *b != 0)
        })
        .expect("a segment with records");
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        // The first append's page: everything after it was acknowledged.
        file.write_all_at(&[0u8; 64], 64).unwrap();
    }
    let (running, out) = serve_briefly(&env, Duration::from_secs(5));
    assert!(!running, "started on a damaged log: {out}");
    assert!(
        out.contains(&segment.display().to_string()) && out.contains("damaged at offset"),
        "{out}"
    );
    // The operator salvages: it starts, and says what it dropped.
    let mut salvage = env.clone();
    salvage.push(("TRIPGATE__AUDIT__SALVAGE_JOURNAL", "true".to_owned()));
    salvage.push(("TRIPGATE__LOG__FORMAT", "json".to_owned()));
    let (running, out) = serve_briefly(&salvage, Duration::from_secs(3));
    assert!(running, "{out}");
    assert!(
        out.contains("salvaged the records before the damage"),
        "{out}"
    );
}

#[tokio::test]
async fn an_export_is_checkable_on_its_own_with_the_public_key() {
    let app = TestApp::spawn_with(Options {
        customise: Box::new(signing_every_second),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_, key, _) = decide_and_save_heads(&app, dir.path()).await;
    let export = dir.path().join("trail.ndjson");
    crate::helpers::export_trail(&app.audit_file(), &export);
    let heads: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("trail.ndjson.heads.json")).unwrap())
            .unwrap();
    assert_eq!(heads["heads"][0]["seq"], 6, "{heads}");

    let verify = |file: &Path| crate::helpers::verify_export(file, &key);
    let (code, out) = verify(&export);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 6 records in 1 chains"), "{out}");

    let lines: Vec<String> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let write_variant = |name: &str, lines: &[String]| {
        let file = dir.path().join(name);
        std::fs::write(&file, lines.join("\n")).unwrap();
        std::fs::copy(
            dir.path().join("trail.ndjson.heads.json"),
            dir.path().join(format!("{name}.heads.json")),
        )
        .unwrap();
        file
    };
    // The red passenger's refusal (newest first: line 2 is seq 4) made an allow.
    let mut modified = lines.clone();
    modified[2] = modified[2].replace("\"decision\":\"reject\"", "\"decision\":\"allow\"");
    assert_ne!(modified[2], lines[2]);
    let (code, out) = verify(&write_variant("modified.ndjson", &modified));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("was modified"), "{out}");
    // The newest record dropped from the export.
    let (code, out) = verify(&write_variant("cut.ndjson", &lines[1..]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("were deleted"), "{out}");
}
