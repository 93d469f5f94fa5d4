//! `tripgate-bench replicas [OUT_DIR]` (`scripts/bench replicas`): two
//! replicas on one PostgreSQL trail and one Redis, one SIGKILLed under
//! load, and how long the survivor's latency takes to recover.
//!
//! A load balancer is modelled by the harness itself: an open-loop
//! generator sends trip checks at fixed intervals (`REPLICAS_RATE` a second,
//! half to each replica) and measures each from the moment it was due, so
//! a stall counts in full (no coordinated omission). At `KILL_AT` the
//! doomed replica gets SIGKILL and from then on every request goes to the
//! survivor, as a balancer's failover would send them (the requests the
//! doomed one was holding fail: they are counted, not retried). Figures:
//! the survivor's p99 in every second; its usual p99 before the kill (the
//! median of those seconds': a stall of the machine's disk in one second
//! should not set the bar); the time from the kill until the first of
//! five seconds in a row whose p99 is within twice that (the target: 5 s);
//! the worst second after the kill; and, from the trail, that every decision either
//! replica answered is stored and `tripgate audit verify` passes over both
//! chains.

use std::sync::{Arc, Mutex};

use super::*;

const REPLICAS_RATE: u64 = 2_000;
const KILL_AT: Duration = Duration::from_secs(30);
const RUN_FOR: Duration = Duration::from_secs(60);
/// Seconds in a row within twice the usual p99 that count as recovered.
const STEADY_SECONDS: usize = 5;

/// One request's outcome: when it was due (since the start), which
/// replica it went to, its latency from when it was due, and the decision
/// id of a 200 answer.
struct Outcome {
    due: Duration,
    replica: usize,
    latency: Duration,
    decision_id: Option<String>,
}

pub(crate) fn replicas(out_dir: &Path) -> Value {
    let work = work_dir("tripgate-bench-replicas");
    let binary = std::env::current_exe().unwrap().with_file_name("tripgate");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let database = postgres::BenchDatabase::create(&runtime);
    let (_redis, redis_port) = start_redis();
    let (_simulator, provider) = start_simulator(&binary, DRIVERS, PASSENGERS);
    let trips = work.join("trips.ndjson");
    write_bodies(&trips, TRIP_BODIES, 0, 1);
    let start = |instance: &str| {
        start_tripgate_with(
            &binary,
            redis_port,
            &provider,
            &[
                ("TRIPGATE__AUDIT__BACKEND", "postgres".into()),
                ("TRIPGATE__AUDIT__POSTGRES_URL", database.url.clone()),
                ("TRIPGATE__AUDIT__INSTANCE_ID", instance.into()),
            ],
        )
    };
    let mut replicas = [start("replica-a"), start("replica-b")];
    eprintln!("warming the cache through both replicas");
    for replica in &replicas {
        post_bodies(
            &format!("{}/v1/checks/trip", replica.url),
            &trips,
            &["-n", &(TRIP_BODIES * 3 / 2).to_string(), "-c", "64"],
        );
    }
    postgres::BenchDatabase::checkpoint(&runtime);
    let bodies: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(&trips)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
    );
    let urls = [0, 1].map(|i| format!("{}/v1/checks/trip", replicas[i].url));
    let doomed_pid = replicas[1].process.0.id();

    eprintln!(
        "{REPLICAS_RATE} trip checks/s over two replicas; SIGKILL to one at {} s, {} s in all",
        KILL_AT.as_secs(),
        RUN_FOR.as_secs()
    );
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let begun = tokio::time::Instant::now();
        let interval = Duration::from_secs_f64(1.0 / REPLICAS_RATE as f64);
        let total = (RUN_FOR.as_secs_f64() * REPLICAS_RATE as f64) as u64;
        let mut killed = false;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..total {
            let due = interval * n as u32;
            tokio::time::sleep_until(begun + due).await;
            if !killed && due >= KILL_AT {
                send_signal(doomed_pid, libc::SIGKILL);
                killed = true;
            }
            let replica = if killed { 0 } else { (n % 2) as usize };
            let request = client
                .post(&urls[replica])
                .header("content-type", "application/json")
                .body(bodies[n as usize % bodies.len()].clone());
            let outcomes = Arc::clone(&outcomes);
            tasks.spawn(async move {
                let answer = request.send().await;
                let decision_id = match answer {
                    Ok(response) if response.status() == 200 => response
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["decision_id"].as_str().map(str::to_owned)),
                    _ => None,
                };
                let latency = begun.elapsed().saturating_sub(due);
                outcomes.lock().unwrap().push(Outcome {
                    due,
                    replica,
                    latency,
                    decision_id,
                });
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    });
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());

    // The survivor's latency, second by second.
    let seconds = RUN_FOR.as_secs() as usize;
    let mut by_second: Vec<Vec<f64>> = vec![Vec::new(); seconds];
    for o in outcomes.iter().filter(|o| o.replica == 0) {
        let second = (o.due.as_secs() as usize).min(seconds - 1);
        by_second[second].push(o.latency.as_secs_f64() * 1000.0);
    }
    let p99 = |latencies: &mut Vec<f64>| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies.sort_by(f64::total_cmp);
        latencies[((latencies.len() as f64 * 0.99).ceil() as usize).min(latencies.len()) - 1]
    };
    let per_second: Vec<f64> = by_second.iter_mut().map(p99).collect();
    let kill_second = KILL_AT.as_secs() as usize;
    // The usual second before the kill, leaving out the first five
    // (connections opening).
    let p99_before = median(per_second[5..kill_second].to_vec());
    let bound = 2.0 * p99_before;
    let recovered_after = (kill_second..=seconds - STEADY_SECONDS)
        .find(|&s| {
            per_second[s..s + STEADY_SECONDS]
                .iter()
                .all(|p| *p <= bound)
        })
        .map(|s| s - kill_second);
    let worst_after = per_second[kill_second..]
        .iter()
        .copied()
        .fold(0.0f64, f64::max);
    let failed_on_doomed = outcomes
        .iter()
        .filter(|o| o.replica == 1 && o.decision_id.is_none())
        .count();
    let failed_on_survivor = outcomes
        .iter()
        .filter(|o| o.replica == 0 && o.decision_id.is_none())
        .count();

    // Stop the survivor cleanly, then check the trail.
    replicas[0].process.stop_cleanly();
    let _ = replicas[1].process.0.wait();
    let answered: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.decision_id.clone())
        .collect();
    let stored = runtime.block_on(database.count_stored(&answered));
    let verify = Command::new(&binary)
        .args(["audit", "verify", "--postgres", &database.url])
        .output()
        .expect("tripgate audit verify");
    let verified = verify.status.success();
    database.drop_database(&runtime);

    let results = json!({
        "rate": REPLICAS_RATE,
        "kill_at_seconds": KILL_AT.as_secs(),
        "survivor_p99_ms_per_second": per_second,
        "survivor_p99_ms_before_kill": p99_before,
        "survivor_worst_p99_ms_after_kill": worst_after,
        "recovered_within_seconds": recovered_after,
        "failed_requests": {"doomed": failed_on_doomed, "survivor": failed_on_survivor},
        "answered": answered.len(),
        "answered_and_stored": stored,
        "trail_verifies": verified,
    });
    write_results(out_dir, "replicas.json", &results);
    let seconds_line: Vec<String> = per_second.iter().map(|p| format!("{p:.1}")).collect();
    println!(
        "\ntwo replicas, one PostgreSQL, one Redis; SIGKILL to one at {kill_second} s under {REPLICAS_RATE}/s\n\
         survivor p99 per second (ms)  {}\n\
         survivor p99 before the kill  {p99_before:.2} ms (the median second's)\n\
         recovered ({STEADY_SECONDS} s in a row within 2x) after {}  (target <= 5 s); worst second after the kill {worst_after:.1} ms\n\
         requests that failed          {failed_on_doomed} held by the killed replica, {failed_on_survivor} on the survivor\n\
         answered decisions stored     {stored} of {}\n\
         trail verifies                {verified}\n\
         written: {}/replicas.json",
        seconds_line.join(" "),
        recovered_after.map_or("never".to_owned(), |s| format!("{s} s")),
        answered.len(),
        out_dir.display()
    );
    let _ = std::fs::remove_dir_all(&work);
    results
}
