//! Spawns everything a test needs: its own `redis-server` on a free loopback
//! port (never a Redis it did not start), the provider simulator on port 0,
//! and tripgate itself on port 0.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tripgate::config::{CacheBackend, Environment, Settings};
use tripgate::simulator::{PopulationSpec, Simulator};
use tripgate::startup::Application;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A `redis-server` owned by one test, killed when dropped.
pub struct TestRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl TestRedis {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut redis = Self {
            child: None,
            port: free_port(),
            dir,
        };
        redis.restart();
        redis
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}). The tests need a real Redis: \
                     install it with `apt-get install redis-server` \
                     (scripts/test installs it for you)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10 s on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pseudonym secret of config/local.toml, as the tests' services use it.
pub const CACHE_SECRET: &str = "local-development-cache-pseudonym-secret";

/// The Redis key of a subject's status under the local configuration:
/// `tripgate:v4:hc:<HMAC-SHA256(cache secret, id)>`.
pub fn cache_key(subject: &str) -> String {
    let keys = tripgate::status::CacheKeys::new(CACHE_SECRET.as_bytes(), None);
    let subject = tripgate::domain::SubjectId::parse(subject).unwrap();
    format!("tripgate:v4:hc:{}", keys.pseudonym(&subject).to_hex())
}

/// A client with a token (its SHA-256 configured) and the default limits.
pub fn auth_client(
    name: &str,
    role: tripgate::config::Role,
    token: &str,
) -> tripgate::config::ClientSettings {
    tripgate::config::ClientSettings {
        name: name.into(),
        role,
        token_sha256: Some(
            tripgate::hexcode::encode(&tripgate::config::sha256(token.as_bytes())).into(),
        ),
        token_sha256_file: None,
        rate_per_sec: None,
        burst: None,
        clients: None,
        cities: None,
    }
}

/// A policy with one city, `lenient`, whose `on_unavailable` is
/// `allow_degraded`.
pub fn lenient_policy() -> String {
    r#"
version = "lenient-1"
[issuers.hangzhou.palette]
green = "green"
yellow = "yellow"
red = "red"
[cities.lenient]
recognised_issuers = ["hangzhou"]
on_unavailable = "allow_degraded"
"#
    .into()
}

/// The example head-signing key of config/ (what the tests' services sign
/// with), and its public key as a verifier would trust it.
pub fn example_signer() -> tripgate::audit::HeadSigner {
    let text = std::fs::read_to_string(config_dir().join("audit-signing-key.example")).unwrap();
    tripgate::audit::HeadSigner::from_text(&text).unwrap()
}

pub fn example_public_keys() -> tripgate::audit::PublicKeys {
    tripgate::audit::PublicKeys::parse(&tripgate::audit::public_key_string(
        &example_signer().public_key(),
    ))
    .unwrap()
}

/// An SQLite audit store at `path` that owns its log (1 MB segments).
pub fn sqlite_store(path: PathBuf) -> tripgate::audit::StoreConfig {
    tripgate::audit::StoreConfig::Sqlite {
        path,
        busy_timeout_ms: 1000,
        log_segment_bytes: 1 << 20,
        journal: tripgate::audit::JournalAccess::Own {
            wait: Duration::ZERO,
            salvage: false,
        },
    }
}

/// Verifies a whole store against the example signing key (and `keys`
/// for format-1 records).
pub async fn verify_with_example_key(
    store: &tripgate::audit::AuditStore,
    keys: Option<&tripgate::audit::AuditKeys>,
) -> tripgate::audit::ChainReport {
    tripgate::audit::verify_store(store, keys, Some(example_public_keys()), vec![], |_| {})
        .await
        .expect("read the store")
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

pub struct TestApp {
    pub address: SocketAddr,
    pub admin_address: SocketAddr,
    pub simulator_url: String,
    pub http: reqwest::Client,
    pub redis: Option<TestRedis>,
    /// Holds the SQLite audit file (unless the test chose PostgreSQL).
    pub data_dir: tempfile::TempDir,
    _policy_dir: Option<tempfile::TempDir>,
    server: actix_web::dev::ServerHandle,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub struct Options {
    pub backend: CacheBackend,
    /// Replaces config/policy.toml.
    pub policy: Option<String>,
    pub customise: Box<dyn FnOnce(&mut Settings)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: CacheBackend::Redis,
            policy: None,
            customise: Box::new(|_| {}),
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let (simulator_url, _) = start_simulator(0, 0, 1);

        let mut settings =
            Settings::load_from(&config_dir(), Environment::Local).expect("load config/");
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        settings.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        settings.server.workers = 2;
        settings.provider.base_url = simulator_url.clone();
        settings.cache.backend = options.backend;
        let redis = match options.backend {
            CacheBackend::Redis => {
                let redis = TestRedis::start();
                settings.cache.redis_url = redis.url();
                Some(redis)
            }
            CacheBackend::Memory => None,
        };
        let policy_dir = options.policy.map(|text| {
            let dir = tempfile::tempdir().expect("temp dir for policy");
            let path = dir.path().join("policy.toml");
            std::fs::write(&path, text).expect("write policy");
            settings.policy.path = path;
            dir
        });
        let data_dir = tempfile::tempdir().expect("temp dir for the audit file");
        settings.audit.sqlite_path = data_dir.path().join("audit.sqlite3");
        settings.audit.sqlite_busy_timeout_ms = 300;
        (options.customise)(&mut settings);

        let app = Application::build(settings.clone())
            .await
            .expect("build the app");
        let address = app.address();
        let admin_address = app.admin_address();
        let server = app.handle();
        let running = Some(tokio::spawn(app.run_until_stopped()));
        Self {
            address,
            admin_address,
            simulator_url,
            http: reqwest::Client::new(),
            redis,
            data_dir,
            _policy_dir: policy_dir,
            server,
            running,
        }
    }

    /// Stops the service as SIGTERM would (drain, audit writer flushed,
    /// chain closed) and waits until it has.
    pub async fn stop(&mut self) {
        self.server.stop(true).await;
        if let Some(running) = self.running.take() {
            running
                .await
                .expect("the service task")
                .expect("a clean stop");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn check_trip(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/checks/trip"))
            .json(body)
            .send()
            .await
            .expect("send trip check")
    }

    /// A trip check that must be decided (HTTP 200); returns the body.
    pub async fn decide(&self, body: &Value) -> Value {
        let response = self.check_trip(body).await;
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(status, 200, "expected a decision, got {status}: {body}");
        body
    }

    pub async fn set_code(&self, subject: &str, color: &str, issuer: &str) {
        self.set_code_at(subject, color, issuer, None).await
    }

    /// A v2 code: this colour since `color_since`, renewed at `renewed_at`.
    pub async fn set_code_v2(
        &self,
        subject: &str,
        color: &str,
        issuer: &str,
        color_since: DateTime<Utc>,
        renewed_at: DateTime<Utc>,
    ) {
        let body = json!({"color": color, "issuer": issuer, "color_since": color_since, "renewed_at": renewed_at});
        self.put_code(subject, &body).await;
    }

    pub async fn set_code_at(
        &self,
        subject: &str,
        color: &str,
        issuer: &str,
        updated_at: Option<DateTime<Utc>>,
    ) {
        let mut body = json!({"color": color, "issuer": issuer});
        if let Some(at) = updated_at {
            body["updated_at"] = json!(at);
        }
        self.put_code(subject, &body).await;
    }

    /// Sets a code through the simulator's admin API.
    async fn put_code(&self, subject: &str, body: &Value) {
        let response = self
            .http
            .put(format!(
                "{}/admin/health-codes/{subject}",
                self.simulator_url
            ))
            .json(body)
            .send()
            .await
            .expect("simulator admin");
        assert!(
            response.status().is_success(),
            "set code: {}",
            response.status()
        );
    }

    pub async fn set_faults(&self, faults: Value) {
        let response = self
            .http
            .put(format!("{}/admin/faults", self.simulator_url))
            .json(&faults)
            .send()
            .await
            .expect("simulator admin");
        assert!(
            response.status().is_success(),
            "set faults: {}",
            response.status()
        );
    }

    /// Provider requests the simulator has served so far.
    pub async fn provider_requests(&self) -> u64 {
        self.simulator_stats().await["requests"]
            .as_u64()
            .expect("requests counter")
    }
}

pub fn trip(driver: &str, passengers: &[&str]) -> Value {
    trip_in("hangzhou", driver, passengers)
}

pub fn trip_in(city: &str, driver: &str, passengers: &[&str]) -> Value {
    json!({
        "trip_id": "T-1001",
        "city": city,
        "driver": {"id": driver},
        "passengers": passengers.iter().map(|p| json!({"id": p})).collect::<Vec<_>>(),
    })
}

/// The reason codes of a decision, in order.
pub fn codes(decision: &Value) -> Vec<String> {
    decision["reasons"]
        .as_array()
        .expect("reasons array")
        .iter()
        .map(|r| r["code"].as_str().expect("reason code").to_owned())
        .collect()
}

/// A PostgreSQL database created for one test and dropped after it. The
/// server is `TRIPGATE_TEST_POSTGRES` (an admin URL), by default the local
/// one on 127.0.0.1:5432; no other database is touched.
pub struct TestPostgres {
    admin_url: String,
    pub name: String,
    /// The server's `host:port`, as written in `url`.
    pub address: String,
    pub url: String,
}

pub fn postgres_admin_url() -> String {
    std::env::var("TRIPGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl TestPostgres {
    pub async fn create() -> Self {
        let admin_url = postgres_admin_url();
        let name = format!("tripgate_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_client(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let mut config: tokio_postgres::Config = admin_url.parse().expect("admin URL");
        config.dbname(&name);
        let address = format!(
            "{}:{}",
            match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
                _ => "127.0.0.1".to_owned(),
            },
            config.get_ports().first().copied().unwrap_or(5432)
        );
        let url = format!(
            "postgres://{}@{address}/{name}",
            config.get_user().unwrap_or("postgres")
        );
        Self {
            admin_url,
            name,
            address,
            url,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to PostgreSQL at {url} ({e}). The tests need a real PostgreSQL: \
                 run them with scripts/test, which installs and starts one when the machine \
                 has none, or point TRIPGATE_TEST_POSTGRES at a server with trust auth"
            )
        });
    tokio::spawn(connection);
    client
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a runtime of our own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

impl TestApp {
    /// GET on the service; returns the status and the JSON body.
    pub async fn get_json(&self, path_and_query: &str) -> (u16, Value) {
        Self::status_and_json(self.http.get(self.url(path_and_query))).await
    }

    /// GET with a bearer token.
    pub async fn get_json_as(&self, token: &str, path_and_query: &str) -> (u16, Value) {
        Self::status_and_json(self.http.get(self.url(path_and_query)).bearer_auth(token)).await
    }

    async fn status_and_json(request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("GET");
        let status = response.status().as_u16();
        let body = response.json().await.expect("JSON body");
        (status, body)
    }

    /// GET on the admin listener.
    pub async fn get_admin(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("http://{}{path}", self.admin_address))
            .send()
            .await
            .expect("GET admin");
        (
            response.status().as_u16(),
            response.text().await.expect("text body"),
        )
    }

    pub async fn get_admin_json(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.get_admin(path).await;
        (status, serde_json::from_str(&body).expect("JSON body"))
    }

    pub async fn get_text(&self, path_and_query: &str) -> (u16, String) {
        let response = self
            .http
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("GET");
        (
            response.status().as_u16(),
            response.text().await.expect("text body"),
        )
    }

    /// The policy file this app loads, when the test supplied one.
    pub fn policy_path(&self) -> Option<PathBuf> {
        self._policy_dir
            .as_ref()
            .map(|d| d.path().join("policy.toml"))
    }

    pub fn audit_file(&self) -> PathBuf {
        self.data_dir.path().join("audit.sqlite3")
    }

    /// POSTs `body` as JSON with a bearer token; the status and the JSON
    /// answer.
    pub async fn post_json_as(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        Self::status_and_json(self.http.post(self.url(path)).bearer_auth(token).json(body)).await
    }

    /// POSTs `body` as JSON to the API; the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("send request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }
}

/// The log directory beside the SQLite audit file at `path`.
pub fn audit_log_dir(path: &Path) -> PathBuf {
    let mut dir = path.as_os_str().to_owned();
    dir.push("-log");
    dir.into()
}

/// Every file the SQLite audit store at `path` keeps: the file, its WAL and
/// shared memory, the lookup index and its WAL, and the log's segments.
pub fn audit_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["", "-wal", "-shm", "-index", "-index-wal"]
        .iter()
        .map(|suffix| {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            file.into()
        })
        .collect();
    if let Ok(segments) = std::fs::read_dir(audit_log_dir(path)) {
        files.extend(segments.filter_map(Result::ok).map(|e| e.path()));
    }
    files
}

/// The bytes of every file of the SQLite audit store at `path`.
pub fn audit_bytes(path: &Path) -> Vec<u8> {
    audit_files(path)
        .iter()
        .flat_map(|file| std::fs::read(file).unwrap_or_default())
        .collect()
}

/// The real `tripgate` binary, for tests that kill or restart it.
pub struct ServiceProcess {
    pub child: Child,
    pub address: SocketAddr,
    pub log: PathBuf,
}

impl ServiceProcess {
    /// Starts `tripgate serve` on a free port with `env` on top of the
    /// repository's config; stdout and stderr go to `log` (appended).
    pub async fn start(env: &[(&str, String)], log: PathBuf) -> Self {
        let port = free_port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the service log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tripgate"));
        command
            .arg("serve")
            .env("TRIPGATE_CONFIG_DIR", config_dir())
            .env("TRIPGATE__SERVER__LISTEN", address.to_string())
            .env("TRIPGATE__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
            .env("TRIPGATE__SERVER__WORKERS", "2")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start tripgate serve");
        let service = Self {
            child,
            address,
            log,
        };
        service.wait_ready().await;
        service
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("http://{}/healthz", self.address);
            if let Ok(response) = http.get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "tripgate did not become ready; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// SIGTERM, and waits for the clean stop (at most 20 s, then SIGKILL).
    pub fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a simulator in this process on a free port; returns its base
/// URL and its state (to set codes without HTTP).
pub fn start_simulator(
    drivers: u64,
    passengers: u64,
    seed: u64,
) -> (String, std::sync::Arc<tripgate::simulator::SimulatorState>) {
    let simulator = Simulator::build(
        "127.0.0.1:0".parse().unwrap(),
        PopulationSpec {
            drivers,
            passengers,
            seed,
        },
        2,
    )
    .expect("start the simulator");
    let url = simulator.base_url();
    let state = simulator.state();
    tokio::spawn(simulator.run_until_stopped());
    (url, state)
}

/// A simulator with a seeded population (D-000000.., P-0000000..).
pub fn spawn_simulator() -> String {
    start_simulator(1000, 10000, 7).0
}

/// Runs `tripgate audit verify` with extra arguments; (exit code, stdout).
pub fn audit_verify(args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    audit_command("verify", args, env)
}

/// `tripgate audit <subcommand> args...` with the test configuration:
/// its exit code and its output.
pub fn audit_command(subcommand: &str, args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tripgate"));
    command
        .args(["audit", subcommand])
        .args(args)
        .env("TRIPGATE_CONFIG_DIR", config_dir())
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run tripgate audit");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// `tripgate audit export --output out` of the SQLite trail at
/// `audit_file` (which also writes `out.heads.json`).
pub fn export_trail(audit_file: &Path, out: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_tripgate"))
        .args(["audit", "export", "--output"])
        .arg(out)
        .env("TRIPGATE_CONFIG_DIR", config_dir())
        .env("TRIPGATE__AUDIT__SQLITE_PATH", audit_file)
        .stdin(Stdio::null())
        .output()
        .expect("run tripgate audit export");
    assert!(output.status.success(), "{output:?}");
}

/// `tripgate audit verify --export file --public-key key_file`, without
/// any configuration: its exit code and output.
pub fn verify_export(file: &Path, key_file: &Path) -> (i32, String) {
    let empty = tempfile::tempdir().expect("an empty config dir");
    let output = Command::new(env!("CARGO_BIN_EXE_tripgate"))
        .args(["audit", "verify", "--export"])
        .arg(file)
        .arg("--public-key")
        .arg(key_file)
        .env("TRIPGATE_CONFIG_DIR", empty.path())
        .stdin(Stdio::null())
        .output()
        .expect("run tripgate audit verify");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

pub const EVENTS_SECRET: &str = "local-development-events-secret";

impl TestApp {
    /// Pushes a signed status event, as the provider would.
    pub async fn push_event(
        &self,
        record: &Value,
        secret: &str,
        timestamp: i64,
    ) -> reqwest::Response {
        let body = serde_json::to_vec(record).unwrap();
        let timestamp = timestamp.to_string();
        let signature = tripgate::provider_api::sign_event(secret.as_bytes(), &timestamp, &body);
        self.http
            .post(self.url("/v1/status-events"))
            .header("content-type", "application/json")
            .header(tripgate::provider_api::EVENT_TIMESTAMP_HEADER, timestamp)
            .header(tripgate::provider_api::EVENT_SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .expect("push event")
    }

    pub async fn simulator_stats(&self) -> Value {
        self.http
            .get(format!("{}/admin/stats", self.simulator_url))
            .send()
            .await
            .expect("simulator stats")
            .json()
            .await
            .expect("stats JSON")
    }
}

/// A free port whose cluster-bus twin (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = 20000 + fastrand::u16(..20000);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
}

/// A three-master Redis Cluster on loopback, owned by one test.
pub struct TestRedisCluster {
    nodes: Vec<TestRedis>,
}

impl TestRedisCluster {
    pub fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir for redis");
            let port = free_cluster_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install it with `apt-get install redis-server`"));
            let node = TestRedis {
                child: Some(child),
                port,
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !node.answers_ping() {
                assert!(
                    Instant::now() < deadline,
                    "cluster node on {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (package redis-tools) is needed to create the test cluster");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.is_ok() {
            assert!(
                Instant::now() < deadline,
                "the test cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn is_ok(&self) -> bool {
        self.nodes.iter().all(|node| {
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query::<String>(&mut node.connection())
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(TestRedis::url).collect()
    }

    pub fn nodes(&self) -> &[TestRedis] {
        &self.nodes
    }
}
