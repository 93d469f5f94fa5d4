//! Status caching: what reaches the provider and what Redis holds.

use std::time::Duration;

use redis::Commands;
use tripgate::config::CacheBackend;

use crate::helpers::{cache_key, codes, trip, Options, TestApp};

/// L1 off (entries live 1 ms), to watch Redis itself.
fn without_l1() -> Options {
    Options {
        customise: Box::new(|s| s.cache.l1_ttl_ms = 1),
        ..Default::default()
    }
}

fn redis_calls(redis: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(redis).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_second_identical_check_is_served_from_redis() {
    let app = TestApp::spawn_with(without_l1()).await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;

    let first = app.decide(&trip("D-1", &["P-1"])).await;
    assert_eq!(first["parties"][0]["source"], "upstream");
    let requests = app.provider_requests().await;

    // Past the 1 ms L1 lifetime, so Redis is what answers.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
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
async fn a_hot_subject_is_served_from_l1_without_a_redis_round_trip() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;
    app.set_code("P-1", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-1"])).await;
    let mut redis = app.redis.as_ref().unwrap().connection();
    let (mgets, evals) = (
        redis_calls(&mut redis, "mget"),
        redis_calls(&mut redis, "eval"),
    );

    let body = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(body["parties"][0]["source"], "l1");
    assert_eq!(body["parties"][1]["source"], "l1");
    assert_eq!(
        redis_calls(&mut redis, "mget"),
        mgets,
        "an L1 hit must not read Redis"
    );
    assert_eq!(redis_calls(&mut redis, "eval"), evals);

    // Only what L1 lacks is read, in one round trip.
    app.set_code("P-2", "green", "hangzhou").await;
    app.decide(&trip("D-1", &["P-2"])).await;
    assert_eq!(redis_calls(&mut redis, "mget"), mgets + 1);
}

#[tokio::test]
async fn statuses_are_written_back_under_versioned_keys_with_their_ttls() {
    let app = TestApp::spawn().await;
    app.set_code("D-1", "green", "hangzhou").await;

    app.decide(&trip("D-1", &["P-none"])).await;

    // Kept for the fresh TTL plus the 600 s a stale copy may serve.
    let mut redis = app.redis.as_ref().unwrap().connection();
    let registered_ttl: i64 = redis.ttl(cache_key("D-1")).unwrap();
    assert!(
        (890..=900).contains(&registered_ttl),
        "ttl {registered_ttl}"
    );
    let not_registered_ttl: i64 = redis.ttl(cache_key("P-none")).unwrap();
    assert!(
        (620..=630).contains(&not_registered_ttl),
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
    let _: () = redis.set(cache_key("D-1"), "not json").unwrap();

    let body = app.decide(&trip("D-1", &["P-1"])).await;

    assert_eq!(body["decision"], "allow");
    assert_eq!(body["parties"][0]["source"], "upstream");
    let stored: String = redis.get(cache_key("D-1")).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checks_are_answered_while_redis_is_down_and_redis_is_used_again_after() {
    let mut app = TestApp::spawn_with(without_l1()).await;
    for i in 0..20 {
        app.set_code(&format!("D-{i}"), "green", "hangzhou").await;
        app.set_code(&format!("P-{i}"), "green", "hangzhou").await;
    }
    app.decide(&trip("D-0", &["P-0"])).await;

    // Load throughout the outage: every check must be answered, none 5xx.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (url, stop) = (app.url("/v1/checks/trip"), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap();
            let mut answered = 0;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = trip(&format!("D-{}", n % 20), &[&format!("P-{}", n % 20)]);
                let response = http
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("no hang, no reset");
                assert_eq!(
                    response.status(),
                    200,
                    "{}",
                    response.text().await.unwrap_or_default()
                );
                answered += 1;
            }
            answered
        })
    };

    app.redis.as_mut().unwrap().stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = app.decide(&trip("D-0", &["P-0"])).await;
    assert_eq!(body["decision"], "allow");
    // From the provider, or from an L1 entry the concurrent load wrote back
    // within the last millisecond; never from the stopped Redis.
    let source = body["parties"][0]["source"].as_str().unwrap();
    assert!(["upstream", "l1"].contains(&source), "served from {source}");

    app.redis.as_mut().unwrap().restart();
    // Redis is skipped for a moment after failures, then used again.
    let mut source = String::new();
    for _ in 0..60 {
        app.decide(&trip("D-0", &["P-0"])).await;
        let body = app.decide(&trip("D-0", &["P-0"])).await;
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
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = load.await.unwrap();
    assert!(answered > 20, "the load barely ran: {answered}");
}
