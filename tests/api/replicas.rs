//! Two replicas sharing one PostgreSQL trail and one Redis, as production
//! runs them: one is SIGKILLed under load. Every decision either replica
//! answered is in the trail, the survivor keeps answering, and both chains
//! verify (the killed one ends without a closing head, which is not a cut).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::audit_integrity::drive;
use crate::helpers::{audit_verify, spawn_simulator, ServiceProcess, TestPostgres, TestRedis};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_loses_no_answered_decision() {
    let postgres = TestPostgres::create().await;
    let redis = TestRedis::start();
    let provider = spawn_simulator();
    let dir = tempfile::tempdir().unwrap();
    let env = |instance: &str| {
        vec![
            ("TRIPGATE__PROVIDER__BASE_URL", provider.clone()),
            ("TRIPGATE__AUDIT__BACKEND", "postgres".to_owned()),
            ("TRIPGATE__AUDIT__POSTGRES_URL", postgres.url.clone()),
            ("TRIPGATE__AUDIT__INSTANCE_ID", instance.to_owned()),
            ("TRIPGATE__AUDIT__HEAD_INTERVAL_SECS", "1".to_owned()),
            ("TRIPGATE__CACHE__BACKEND", "redis".to_owned()),
            ("TRIPGATE__CACHE__REDIS_URL", redis.url()),
        ]
    };
    let mut doomed = ServiceProcess::start(&env("replica-a"), dir.path().join("a.log")).await;
    let survivor = ServiceProcess::start(&env("replica-b"), dir.path().join("b.log")).await;

    let stop = Arc::new(AtomicBool::new(false));
    let on_doomed = tokio::spawn(drive(doomed.url("/v1/checks/trip"), Arc::clone(&stop), 8));
    let on_survivor = tokio::spawn(drive(survivor.url("/v1/checks/trip"), Arc::clone(&stop), 8));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    doomed.kill();
    // The survivor keeps deciding after its peer died mid-batch.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let answered_by_doomed = on_doomed.await.unwrap();
    let answered_by_survivor = on_survivor.await.unwrap();
    assert!(
        answered_by_doomed.len() > 20 && answered_by_survivor.len() > 20,
        "too little load reached the replicas: {} and {}",
        answered_by_doomed.len(),
        answered_by_survivor.len()
    );

    let client = postgres.client().await;
    for (replica, answered) in [
        ("replica-a", &answered_by_doomed),
        ("replica-b", &answered_by_survivor),
    ] {
        let stored: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM audit_decisions WHERE decision_id = ANY($1) AND instance_id = $2",
                &[answered, &replica],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            stored as usize,
            answered.len(),
            "{replica}: an answered decision is missing from the trail"
        );
    }
    // The survivor still answers, and its chain continues.
    let http = reqwest::Client::new();
    let body = serde_json::json!({"trip_id": "T-after", "city": "hangzhou",
        "driver": {"id": "D-000001"}, "passengers": [{"id": "P-0000001"}]});
    let response = http
        .post(survivor.url("/v1/checks/trip"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(survivor);

    let (code, out) = audit_verify(&["--postgres", &postgres.url], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("in 2 chains"), "{out}");
}
