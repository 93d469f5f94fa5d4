//! Redis Cluster: a check's keys spread over shards, read with at most one
//! round trip per shard, and pushes still reach every replica's L1.

use chrono::Utc;
use serde_json::json;

use crate::helpers::{codes, trip, Options, TestApp, TestRedisCluster, EVENTS_SECRET};

fn calls(node: &crate::helpers::TestRedis, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut node.connection())
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_cached_across_a_three_master_cluster() {
    let cluster = TestRedisCluster::start();
    let nodes = cluster.urls();
    let app = TestApp::spawn_with(Options {
        customise: Box::new(move |s| {
            s.cache.redis_cluster_nodes = nodes;
            s.cache.l1_ttl_ms = 1;
            // The first write-back opens a connection to every shard; on a
            // loaded machine that can pass the default 50 ms, which drops
            // the write (the check still answers). This test counts keys.
            s.cache.command_timeout_ms = 500;
        }),
        ..Default::default()
    })
    .await;
    let passengers: Vec<String> = (0..8).map(|i| format!("P-{i}")).collect();
    let passenger_refs: Vec<&str> = passengers.iter().map(String::as_str).collect();
    app.set_code("D-1", "green", "hangzhou").await;
    for p in &passengers {
        app.set_code(p, "green", "hangzhou").await;
    }

    let first = app.decide(&trip("D-1", &passenger_refs)).await;
    assert_eq!(first["decision"], "allow", "{first}");
    let keys_per_node: Vec<i64> = cluster
        .nodes()
        .iter()
        .map(|n| redis::cmd("DBSIZE").query(&mut n.connection()).unwrap())
        .collect();
    assert_eq!(keys_per_node.iter().sum::<i64>(), 9, "{keys_per_node:?}");
    assert!(
        keys_per_node.iter().filter(|k| **k > 0).count() >= 2,
        "keys on one shard only: {keys_per_node:?}"
    );

    // Each shard is sent one pipeline of GETs for exactly its keys (an MGET
    // would be split per slot, one command per key here).
    let requests = app.provider_requests().await;
    let count =
        |command: &str| -> Vec<u64> { cluster.nodes().iter().map(|n| calls(n, command)).collect() };
    let (gets_before, mgets_before) = (count("get"), count("mget"));
    // Past the 1 ms L1 lifetime, so Redis is what answers.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = app.decide(&trip("D-1", &passenger_refs)).await;
    let (gets_after, mgets_after) = (count("get"), count("mget"));
    assert_eq!(app.provider_requests().await, requests);
    for party in second["parties"].as_array().unwrap() {
        assert_eq!(party["source"], "redis", "{second}");
    }
    assert_eq!(mgets_before, mgets_after);
    for node in 0..3 {
        assert_eq!(
            gets_after[node] - gets_before[node],
            keys_per_node[node] as u64,
            "shard {node} read other than its own keys once: {gets_before:?} -> {gets_after:?}"
        );
    }

    let now = Utc::now();
    let red = json!({"subject_id": "P-3", "color": "red", "issuer": "hangzhou", "updated_at": now});
    let response = app.push_event(&red, EVENTS_SECRET, now.timestamp()).await;
    assert_eq!(response.status(), 200);
    let body = app.decide(&trip("D-1", &passenger_refs)).await;
    assert_eq!(codes(&body), vec!["HEALTH_CODE_RED"]);
    assert_eq!(body["reasons"][0]["index"], 3);
}
