//! Status caching: what reaches the provider and what Redis holds.

use std::time::Duration;

use redis::Commands;
use tripgate::config::CacheBackend;

use crate::helpers::{codes, trip, Options, TestApp};

#[tokio::test]
async fn the_second_identical_check_is_served_from_redis() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;

    let first = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(first["parties"][0]["source"], "upstream");
    let requests = app.provider_requests().await;

    let second = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(
        app.provider_requests().await,
        requests,
        "the provider was asked again"
    );
    assert_eq!(second["decision"], "allow");
    assert_eq!(second["parties"][0]["source"], "redis");
    assert_eq!(second["parties"][1]["source"], "redis");
    assert_eq!(second["parties"][0]["as_of"], first["parties"][0]["as_of"]);
}

#[tokio::test]
async fn statuses_are_written_back_under_versioned_keys_with_their_ttls() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;

    app.decide(&trip("D-1", &["P-none"])).await;

    let mut redis = app.redis.as_ref().unwrap().connection();
    let registered_ttl: i64 = redis.ttl("tripgate:v1:hc:D-1").unwrap();
    assert!(
        (290..=300).contains(&registered_ttl),
        "ttl {registered_ttl}"
    );
    let not_registered_ttl: i64 = redis.ttl("tripgate:v1:hc:P-none").unwrap();
    assert!(
        (20..=30).contains(&not_registered_ttl),
        "ttl {not_registered_ttl}"
    );
}

#[tokio::test]
async fn all_misses_of_one_request_cost_one_provider_call() {
    let app = TestApp::spawn().await;
    for id in ["D-1", "P-1", "P-2", "P-3"] {
        app.set_code(id, "green", "hangzhou").await;
    }
    let before = app.provider_requests().await;

    let body = app
        .decide(&trip("D-1", &["P-1", "P-2", "P-3", "P-4"]))
        .await;

    assert_eq!(app.provider_requests().await, before + 1);
    assert_eq!(codes(&body), vec!["NO_HEALTH_CODE"]);
}

#[tokio::test]
async fn a_value_redis_cannot_decode_is_a_miss_and_gets_replaced() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    let mut redis = app.redis.as_ref().unwrap().connection();
    let _: () = redis.set("tripgate:v1:hc:D-1", "not json").unwrap();

    let body = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(body["decision"], "allow");
    assert_eq!(body["parties"][0]["source"], "upstream");
    let stored: String = redis.get("tripgate:v1:hc:D-1").unwrap();
    assert!(stored.contains("hangzhou"), "{stored}");
}

#[tokio::test]
async fn the_memory_backend_caches_in_process() {
    let app = TestApp::spawn_with(Options {
        backend: CacheBackend::Memory,
        ..Default::default()
    })
    .await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "yellow", "hangzhou").await;

    app.decide(&trip("D-1", &["P-1"])).await;
    let requests = app.provider_requests().await;
    let body = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(app.provider_requests().await, requests);
    assert_eq!(body["parties"][0]["source"], "l1");
    assert_eq!(codes(&body), vec!["HEALTH_CODE_YELLOW"]);
}

#[tokio::test]
async fn checks_are_answered_while_redis_is_down_and_redis_is_used_again_after() {
    let mut app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-1"])).await;

    app.redis.as_mut().unwrap().stop();
    for _ in 0..3 {
        let body = app.decide(&trip("D-1", &["P-1"])).await;
        assert_eq!(body["decision"], "allow");
        assert_eq!(body["parties"][0]["source"], "upstream");
    }

    app.redis.as_mut().unwrap().restart();
    // The connection manager reconnects on its own; give it a few attempts.
    let mut source = String::new();
    for _ in 0..50 {
        app.decide(&trip("D-1", &["P-1"])).await;
        let body = app.decide(&trip("D-1", &["P-1"])).await;
        source = body["parties"][0]["source"].as_str().unwrap().to_owned();
        if source == "redis" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        source, "redis",
        "statuses are cached in redis again after it restarts"
    );
}
