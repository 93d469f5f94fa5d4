//! `tripgate demo`: the whole system on one machine, with no server to
//! install. It starts the provider simulator on loopback (and a second one
//! as the national platform), the service with the embedded defaults
//! (in-process cache) talking to them over real HTTP, drives trip checks
//! through real HTTP, turns some drivers red mid-run (the simulator pushes
//! the change to tripgate's signed events endpoint, so the cached green is
//! replaced at once), shows a visitor recognised through the national
//! platform and a driver taken off duty by a notification to a stand-in
//! dispatch backend (`lifecycle`), and prints what was decided and why.

mod lifecycle;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::{CacheBackend, Settings};
use crate::simulator::{Population, PopulationSpec, Simulator, SimulatorState, Webhook};
use crate::startup::{Application, StartupError};
use crate::telemetry;

pub struct DemoOptions {
    pub exit: bool,
    pub checks: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("cannot start the simulator: {0}")]
    Simulator(std::io::Error),
    #[error("demo request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the demo expected {0}")]
    Unexpected(String),
}

const DRIVERS: u64 = 300;
const PASSENGERS: u64 = 3_000;
const CONCURRENCY: usize = 16;
const TURNED_RED: usize = 5;

pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let spec = PopulationSpec {
        drivers: DRIVERS,
        passengers: PASSENGERS,
        seed: 2020,
    };
    let simulator = Simulator::build("127.0.0.1:0".parse().expect("literal address"), spec, 2)
        .map_err(DemoError::Simulator)?;
    let provider_url = simulator.base_url();
    let population = simulator.state();
    let simulator_handle = simulator.handle();
    tokio::spawn(simulator.run_until_stopped());
    let national = Simulator::build(
        "127.0.0.1:0".parse().expect("literal address"),
        PopulationSpec {
            drivers: 0,
            passengers: 0,
            seed: 86,
        },
        1,
    )
    .map_err(DemoError::Simulator)?;
    let national_url = national.base_url();
    let national_state = national.state();
    let national_handle = national.handle();
    tokio::spawn(national.run_until_stopped());
    let (dispatch, dispatch_url) = lifecycle::Dispatch::start()?;

    let mut settings = Settings::load()?;
    settings.cache.backend = CacheBackend::Memory;
    settings.provider.base_url = provider_url.clone();
    settings.national.base_url = national_url.clone();
    settings.notify.url = dispatch_url;
    settings.notify.secret = Some(lifecycle::NOTIFY_SECRET.to_owned().into());
    settings.server.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.log.level = "warn".into();
    telemetry::init(&settings.log);
    let audit_path = settings.audit.sqlite_path.clone();
    let events_secret = settings.events_secret()?;

    let app = match Application::build(settings.clone()).await {
        Ok(app) => app,
        Err(StartupError::Bind { addr, .. }) => {
            println!("{addr} is taken; using a free port instead");
            settings.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            Application::build(settings).await?
        }
        Err(other) => return Err(other.into()),
    };
    let address = app.address();
    let app_handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    population.set_webhook(Some(Webhook {
        url: format!("http://{address}/v1/status-events"),
        secret: events_secret.expose().to_owned(),
    }));

    println!("tripgate demo");
    println!("  provider simulator  {provider_url}  ({DRIVERS} drivers, {PASSENGERS} passengers)");
    println!("  national platform   {national_url}  (a second simulator)");
    println!(
        "  tripgate            http://{address}  (in-process cache; the simulator pushes code changes)"
    );
    println!();

    let http = reqwest::Client::new();
    let hook = format!("http://{address}/v1/checks/trip");
    let mut tally = Tally::default();
    let started = Instant::now();

    let first_half = options.checks / 2;
    let trips: Vec<Value> = (0..first_half).map(|i| random_trip(i, None)).collect();
    let answers = drive(&http, &hook, trips, options.checks, 0).await?;
    tally.add(&answers);

    // Turn drivers that were just allowed red at the provider: once their
    // cached status expires, their next trips must be refused.
    let allowed_drivers: Vec<String> = answers
        .iter()
        .filter(|(_, answer)| answer["decision"] == "allow")
        .filter_map(|(trip, _)| trip["driver"]["id"].as_str().map(str::to_owned))
        .take(TURNED_RED)
        .collect();
    let admin = format!("{provider_url}/admin/health-codes");
    for driver in &allowed_drivers {
        http.put(format!("{admin}/{driver}"))
            .json(&serde_json::json!({"color": "red", "issuer": "hangzhou"}))
            .send()
            .await?
            .error_for_status()?;
    }
    eprintln!();
    println!(
        "  {} drivers allowed a moment ago turned red at the provider, which pushed the change to tripgate",
        allowed_drivers.len()
    );
    let pushed = Instant::now();
    while population.stats().pushes_delivered < allowed_drivers.len() as u64 {
        if pushed.elapsed() > Duration::from_secs(5) {
            return Err(DemoError::Unexpected(
                "the simulator to deliver its pushes within 5 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut trips: Vec<Value> = allowed_drivers
        .iter()
        .enumerate()
        .map(|(i, driver)| random_trip(first_half + i, Some(driver)))
        .collect();
    let rest = options.checks.saturating_sub(first_half + trips.len());
    trips.extend((0..rest).map(|i| random_trip(first_half + allowed_drivers.len() + i, None)));
    let answers = drive(&http, &hook, trips, options.checks, first_half).await?;
    eprintln!();
    for (trip, answer) in answers.iter().take(allowed_drivers.len()) {
        let refused_red = answer["decision"] == "reject"
            && answer["reasons"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r["party"] == "driver" && r["code"] == "HEALTH_CODE_RED")
            });
        if !refused_red {
            return Err(DemoError::Unexpected(format!(
                "trip {} of a driver turned red to be refused with HEALTH_CODE_RED, got {answer}",
                trip["trip_id"]
            )));
        }
    }
    println!(
        "  all {} trips of the drivers turned red were refused with HEALTH_CODE_RED",
        allowed_drivers.len()
    );
    tally.add(&answers);

    let base = format!("http://{address}");
    let on_duty = |from_end: bool| {
        let mut drivers: Vec<u64> = (0..DRIVERS).collect();
        if from_end {
            drivers.reverse();
        }
        drivers
            .into_iter()
            .map(Population::driver_id)
            .find(|id| {
                !allowed_drivers.contains(id)
                    && population
                        .code_of(id)
                        .is_some_and(|c| c.color == "green" && c.issuer == "hangzhou")
            })
            .ok_or_else(|| DemoError::Unexpected("a green driver in the population".into()))
    };
    lifecycle::show_visitor(&http, &base, &national_state, &on_duty(false)?).await?;
    lifecycle::show_off_duty(&http, &base, &provider_url, &dispatch, &on_duty(true)?).await?;
    println!(
        "  dispatch received {} signed notifications in all (the drivers turned red above were on trips too)",
        dispatch.count()
    );

    tally.print(started.elapsed());
    let summary: Value = http
        .get(format!("http://{address}/v1/audit/summary?group_by=hook"))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "\n  audit trail: {} decisions recorded in {} (verify: cargo run --release -- audit verify)",
        summary["total"],
        audit_path.display()
    );
    print_examples(address, &population);

    if !options.exit {
        println!("\nServing until Ctrl-C.");
        crate::startup::terminated().await;
    }
    app_handle.stop(true).await;
    simulator_handle.stop(true).await;
    national_handle.stop(true).await;
    Ok(())
}

/// A trip with a driver and one to three passengers; deterministic per `n`.
fn random_trip(n: usize, driver: Option<&str>) -> Value {
    let mut rng = fastrand::Rng::with_seed(n as u64 * 7919 + 1);
    let driver = driver
        .map(str::to_owned)
        .unwrap_or_else(|| Population::driver_id(rng.u64(0..DRIVERS)));
    let count = rng.usize(1..=3);
    let mut passengers: Vec<String> = Vec::new();
    while passengers.len() < count {
        let id = Population::passenger_id(rng.u64(0..PASSENGERS));
        if !passengers.contains(&id) {
            passengers.push(id);
        }
    }
    serde_json::json!({
        "trip_id": format!("T-{:05}", n + 1),
        "city": "hangzhou",
        "driver": {"id": driver},
        "passengers": passengers.iter().map(|id| serde_json::json!({"id": id})).collect::<Vec<_>>(),
    })
}

/// Sends the trips with bounded concurrency, drawing a progress bar;
/// answers come back in the order of `trips`.
async fn drive(
    http: &reqwest::Client,
    hook: &str,
    trips: Vec<Value>,
    total: usize,
    done_before: usize,
) -> Result<Vec<(Value, Value)>, DemoError> {
    let trips = Arc::new(trips);
    let mut answers = Vec::with_capacity(trips.len());
    for chunk_start in (0..trips.len()).step_by(CONCURRENCY) {
        let chunk_end = (chunk_start + CONCURRENCY).min(trips.len());
        let mut tasks = Vec::new();
        for i in chunk_start..chunk_end {
            let http = http.clone();
            let hook = hook.to_owned();
            let trips = Arc::clone(&trips);
            tasks.push(tokio::spawn(async move {
                let response = http.post(&hook).json(&trips[i]).send().await?;
                let status = response.status();
                let body: Value = response.json().await?;
                Ok::<_, reqwest::Error>((status, body))
            }));
        }
        for (offset, task) in tasks.into_iter().enumerate() {
            let (status, body) = task
                .await
                .map_err(|e| DemoError::Unexpected(format!("a request task to finish: {e}")))??;
            if !status.is_success() {
                return Err(DemoError::Unexpected(format!(
                    "HTTP 200, got {status}: {body}"
                )));
            }
            answers.push((trips[chunk_start + offset].clone(), body));
        }
        progress(done_before + answers.len(), total);
    }
    Ok(answers)
}

/// A redrawn bar on a terminal; a line per quarter when output is a log.
fn progress(done: usize, total: usize) {
    use std::io::IsTerminal;
    const WIDTH: usize = 40;
    if !std::io::stderr().is_terminal() {
        let quarter = (total / 4).max(1);
        if done % quarter < CONCURRENCY || done == total {
            eprintln!("  checks {done}/{total}");
        }
        return;
    }
    let filled = WIDTH * done / total.max(1);
    eprint!(
        "\r  checks [{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    );
    let _ = std::io::stderr().flush();
}

#[derive(Default)]
struct Tally {
    decisions: BTreeMap<String, usize>,
    reasons: BTreeMap<String, usize>,
    sources: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, answers: &[(Value, Value)]) {
        for (_, answer) in answers {
            let decision = answer["decision"].as_str().unwrap_or("?").to_owned();
            *self.decisions.entry(decision).or_default() += 1;
            for reason in answer["reasons"].as_array().into_iter().flatten() {
                let code = reason["code"].as_str().unwrap_or("?").to_owned();
                *self.reasons.entry(code).or_default() += 1;
            }
            for party in answer["parties"].as_array().into_iter().flatten() {
                let source = party["source"].as_str().unwrap_or("none").to_owned();
                *self.sources.entry(source).or_default() += 1;
            }
        }
    }

    fn print(&self, elapsed: Duration) {
        let total: usize = self.decisions.values().sum();
        println!(
            "\n  {total} trip checks in {:.1} s\n",
            elapsed.as_secs_f64()
        );
        println!("  {:<26} {:>7}", "decision", "trips");
        for (decision, count) in &self.decisions {
            println!("  {decision:<26} {count:>7}");
        }
        println!("\n  {:<26} {:>7}", "reason code", "reasons");
        for (code, count) in &self.reasons {
            println!("  {code:<26} {count:>7}");
        }
        println!("\n  {:<26} {:>7}", "status source", "parties");
        for (source, count) in &self.sources {
            println!("  {source:<26} {count:>7}");
        }
    }
}

/// Ready-to-paste requests against the running demo.
fn print_examples(address: SocketAddr, population: &SimulatorState) {
    let find = |want: &str| {
        (0..PASSENGERS)
            .map(Population::passenger_id)
            .find(|id| population.code_of(id).is_some_and(|c| c.color == want))
    };
    let green_driver = (0..DRIVERS)
        .map(Population::driver_id)
        .find(|id| {
            population
                .code_of(id)
                .is_some_and(|c| c.color == "green" && c.issuer == "hangzhou")
        })
        .unwrap_or_else(|| Population::driver_id(0));
    let green = find("green").unwrap_or_else(|| Population::passenger_id(0));
    let red = find("red").unwrap_or_else(|| Population::passenger_id(1));
    println!("\nTry it (another terminal):\n");
    for (label, passenger) in [
        ("all green: allow", &green),
        ("a red passenger: reject", &red),
    ] {
        println!("  # {label}");
        println!(
            "  curl -s http://{address}/v1/checks/trip -H 'content-type: application/json' \\\n    -d '{{\"trip_id\":\"T-1001\",\"city\":\"hangzhou\",\"driver\":{{\"id\":\"{green_driver}\"}},\"passengers\":[{{\"id\":\"{passenger}\"}}]}}'\n"
        );
    }
    println!("  # the other moments: a driver going on duty; candidate drivers before matching (answers in English)");
    println!(
        "  curl -s http://{address}/v1/checks/driver-shift -H 'content-type: application/json' \\\n    -d '{{\"city\":\"hangzhou\",\"driver\":{{\"id\":\"{green_driver}\"}}}}'"
    );
    println!(
        "  curl -s http://{address}/v1/checks/candidates -H 'content-type: application/json' -H 'accept-language: en' \\\n    -d '{{\"city\":\"hangzhou\",\"trip_id\":\"T-1003\",\"passengers\":[{{\"id\":\"{green}\"}}],\"drivers\":[{{\"id\":\"D-000001\"}},{{\"id\":\"D-000002\"}},{{\"id\":\"D-000003\"}}]}}'\n"
    );
    println!("  # the regulator's view: the latest rejections, and counts by reason");
    println!("  curl -s 'http://{address}/v1/audit/decisions?decision=reject&limit=3'");
    println!("  curl -s 'http://{address}/v1/audit/summary?group_by=reason'");
    println!("  # ... or in a browser: the regulator's console");
    println!("  open http://{address}/console/\n");
    println!("  # bad input: 400 with a JSON error");
    println!(
        "  curl -s http://{address}/v1/checks/trip -H 'content-type: application/json' \\\n    -d '{{\"trip_id\":\"T-1002\",\"city\":\"hangzhou\",\"driver\":{{\"id\":\"{green_driver}\"}},\"passengers\":[]}}'\n"
    );
}
