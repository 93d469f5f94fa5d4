//! Layered settings: `config/base.toml`, then `config/<env>.toml` (env from
//! `TRIPGATE_ENV`, default `local`), then `TRIPGATE__SECTION__KEY` variables.
//!
//! Settings are validated as a whole at start-up; a missing or wrong value
//! stops the process with a message naming the key, never later at 3 a.m.
//! when the first request touches it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

mod secrets;

pub use secrets::{Parsed, Secret};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error(
        "configuration: TRIPGATE_ENV={0:?} is not an environment; use `local` or `production`"
    )]
    UnknownEnvironment(String),
}

fn local() -> Environment {
    Environment::Local
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Local,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Local => "local",
            Environment::Production => "production",
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var("TRIPGATE_ENV").as_deref() {
            Err(_) | Ok("local") => Ok(Environment::Local),
            Ok("production") => Ok(Environment::Production),
            Ok(other) => Err(ConfigError::UnknownEnvironment(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Which environment file was layered in (not itself a setting).
    #[serde(skip, default = "local")]
    pub environment: Environment,
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub checks: CheckSettings,
    pub cache: CacheSettings,
    pub provider: ProviderSettings,
    pub policy: PolicySettings,
    pub audit: AuditSettings,
    pub events: EventSettings,
    pub notify: NotifySettings,
    pub national: NationalSettings,
    pub itinerary: ItinerarySettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Metrics, probes and operator endpoints.
    pub admin_listen: SocketAddr,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub shutdown_grace_secs: u64,
    pub client_request_timeout_ms: u64,
    pub keep_alive_secs: u64,
    /// The operator runs exactly one instance, so production may use the
    /// single-machine parts (the in-process cache, the SQLite trail).
    pub single_instance: bool,
    /// The network between tripgate and Redis and PostgreSQL is encrypted
    /// by other means (a service mesh), so production may connect to them
    /// without TLS.
    pub allow_plaintext_backends: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Dispatch,
    Regulator,
    Provider,
    Ops,
    /// A taxi fleet operator: reads the trail of the decisions its own
    /// dispatch clients asked for, nothing else.
    Fleet,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Dispatch => "dispatch",
            Role::Regulator => "regulator",
            Role::Provider => "provider",
            Role::Ops => "ops",
            Role::Fleet => "fleet",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the bearer token, or a file holding it.
    #[serde(default)]
    pub token_sha256: Option<Secret>,
    #[serde(default)]
    pub token_sha256_file: Option<PathBuf>,
    /// Overrides `auth.rate_per_sec` / `auth.burst` for this client.
    #[serde(default)]
    pub rate_per_sec: Option<f64>,
    #[serde(default)]
    pub burst: Option<f64>,
    /// Role `fleet`: the dispatch clients whose decisions it may read
    /// (required, at least one).
    #[serde(default)]
    pub clients: Option<Vec<String>>,
    /// Roles `regulator` and `fleet`: limits what it reads to these cities
    /// (absent: every city).
    #[serde(default)]
    pub cities: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub enabled: bool,
    pub rate_per_sec: f64,
    pub burst: f64,
    /// Per-role defaults between `rate_per_sec`/`burst` and a client's own
    /// (regulators' queries are heavier than a check, so they get less).
    #[serde(default)]
    pub role_limits: std::collections::HashMap<Role, RateLimit>,
    pub clients: Vec<ClientSettings>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rate_per_sec: f64,
    pub burst: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSettings {
    /// Every decision is made within this; callers may ask for less with
    /// the `X-Tripgate-Deadline-Ms` header.
    pub deadline_ms: u64,
    /// How long an `Idempotency-Key`'s answer is kept and replayed.
    pub idempotency_ttl_secs: u64,
    /// Without Redis, the most keys kept in process.
    pub idempotency_max_keys: u64,
}

/// The national platform: mediator of mutual recognition. Asked for the
/// code of a party whose issuer the city does not recognise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NationalSettings {
    /// Empty: not configured (such codes are ISSUER_NOT_RECOGNISED).
    pub base_url: String,
    /// PEM CA of its HTTPS certificate (else the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// The telecom itinerary card, a second optional source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItinerarySettings {
    /// Empty: not configured (policies that require it get STATUS_UNAVAILABLE).
    pub base_url: String,
    pub ttl_secs: u64,
    /// PEM CA of its HTTPS certificate (else the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Status-change notifications to dispatch: after a subject passes a
/// driver-shift, trip or passenger-order check, a push that turns it
/// yellow, red or no-code is announced to `url` (signed like the provider's
/// pushes), naming the decisions it passed, never the subject.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Empty: notifications are off.
    pub url: String,
    /// HMAC-SHA256 key of the notifications (`secret` or `secret_file`),
    /// at least 16 bytes; required when `url` is set.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// How long a pass is remembered for notifications.
    pub window_secs: u64,
    /// The outbox (SQLite) that keeps undelivered notifications across
    /// restarts.
    pub outbox_path: PathBuf,
    /// The most notifications the outbox holds; past it new ones are
    /// dropped (counted and logged).
    pub outbox_max_events: u64,
    /// A notification not delivered within this long is given up.
    pub retry_for_secs: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Shared with the provider: HMAC-SHA256 key of pushed events. Set
    /// exactly one of `secret` and `secret_file`.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Events whose timestamp is further off than this are refused (replay).
    pub max_skew_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    Redis,
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    pub backend: CacheBackend,
    pub redis_url: String,
    /// First part of every Redis key, so several deployments can share a Redis.
    pub namespace: String,
    pub ttl_secs: u64,
    pub negative_ttl_secs: u64,
    pub command_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Bound of the in-process cache (the `memory` backend).
    pub memory_max_entries: u64,
    /// Redis Cluster seed nodes (`redis://host:port`); non-empty switches
    /// from `redis_url` to the cluster.
    pub redis_cluster_nodes: Vec<String>,
    /// After a failed Redis call, Redis is skipped this long.
    pub skip_after_failure_ms: u64,
    /// L1 in front of Redis: lifetime and size bound.
    pub l1_ttl_ms: u64,
    pub l1_max_entries: u64,
    /// How long past its TTL a status may still serve, when the provider
    /// cannot answer (reported as `source: "stale"`).
    pub max_stale_secs: u64,
    /// Key of the subjects' pseudonyms in Redis (HMAC-SHA256); distinct
    /// from the audit keys and the events secret. Exactly one of the two.
    #[serde(default)]
    pub pseudonym_secret: Option<Secret>,
    #[serde(default)]
    pub pseudonym_secret_file: Option<PathBuf>,
    /// The secret being rotated out: pushes are also written and announced
    /// under it, so replicas still on it drop their copies.
    #[serde(default)]
    pub previous_pseudonym_secret: Option<Secret>,
    #[serde(default)]
    pub previous_pseudonym_secret_file: Option<PathBuf>,
    /// With a `rediss://` URL: the PEM CA of Redis's certificate (else the
    /// system's roots).
    #[serde(default)]
    pub redis_ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM) for a Redis that asks for one.
    #[serde(default)]
    pub redis_client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub redis_client_key_file: Option<PathBuf>,
    /// A file holding Redis's password (replaces the URL's).
    #[serde(default)]
    pub redis_password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub base_url: String,
    /// PEM CA of the provider's HTTPS certificate (else the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// A call that fails fast within this window is retried once.
    pub retry_window_ms: u64,
    /// Circuit breaker: over the last `breaker_window` calls, at least
    /// `breaker_min_calls` and a failure share of `breaker_failure_rate`
    /// open it for `breaker_open_ms`.
    pub breaker_window: usize,
    pub breaker_min_calls: usize,
    pub breaker_failure_rate: f64,
    pub breaker_open_ms: u64,
    /// Upstream calls in flight at once, per upstream; past it a status is
    /// unavailable (never waived).
    pub max_concurrent_calls: usize,
    /// Subjects waiting for an upstream answer at once, per upstream.
    pub max_in_flight_subjects: usize,
    /// Largest upstream answer read, per batch call.
    pub max_answer_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Relative paths are resolved against the configuration directory.
    pub path: PathBuf,
    /// The reason-message catalogue (zh-CN and en), likewise.
    pub messages: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditBackend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditKeySettings {
    pub id: String,
    /// The secret itself, or
    #[serde(default)]
    pub secret: Option<Secret>,
    /// a file holding it (a mounted Kubernetes secret).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    pub backend: AuditBackend,
    /// Relative paths are relative to the working directory.
    pub sqlite_path: PathBuf,
    pub sqlite_busy_timeout_ms: u64,
    /// Size at which the SQLite store's log starts a new segment.
    pub sqlite_log_segment_bytes: u64,
    /// How long start-up waits for another process to release the SQLite
    /// store's log (a pod still draining) before refusing to start.
    pub journal_lock_wait_ms: u64,
    /// Start although the log is damaged before acknowledged records,
    /// keeping what comes before the damage (the rest is counted, logged
    /// and dropped). Off: start-up stops and names the segment and offset.
    pub salvage_journal: bool,
    pub postgres_url: String,
    pub postgres_pool_size: usize,
    /// How long the audit writer's statements may wait for a lock or the
    /// server before the decisions they carry are refused (503).
    pub postgres_write_timeout_ms: u64,
    /// PEM CA that signed PostgreSQL's certificate (else the system's).
    #[serde(default)]
    pub postgres_ca_file: Option<PathBuf>,
    /// A file holding PostgreSQL's password (else the URL's).
    #[serde(default)]
    pub postgres_password_file: Option<PathBuf>,
    /// Names this instance's chain; empty means `<hostname>-<pid>`.
    pub instance_id: String,
    pub retention_days: u32,
    pub purge_interval_secs: u64,
    /// Most records committed in one transaction.
    pub max_batch: usize,
    /// Decisions waiting for the writer before callers wait to enqueue.
    pub queue_capacity: usize,
    /// The same bound in bytes (candidate checks make large records).
    pub queue_max_bytes: usize,
    /// A summary or export that names no `from` covers this many hours
    /// back from `to` (or now): no request scans the whole trail by accident.
    pub default_window_hours: u32,
    pub active_key: String,
    pub keys: Vec<AuditKeySettings>,
    /// The Ed25519 key that signs chain heads and checkpoints (base64 of
    /// 32 bytes; `tripgate audit keygen` makes one). Relative paths are
    /// resolved against the configuration directory.
    pub signing_key_file: PathBuf,
    /// Public keys (`ed25519:<base64>`) of retired signing keys, whose
    /// signatures stay valid.
    pub retired_public_keys: Vec<String>,
    /// The chain head is signed at least this often while records come.
    pub head_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A tracing filter directive (`info`, `tripgate=debug,warn` ...).
    pub level: String,
    pub format: LogFormat,
}

/// Tokens that appear in documentation and examples; never valid in
/// production.
pub const EXAMPLE_TOKENS: &[&str] = &[
    "example-dispatch-token",
    "example-regulator-token",
    "example-provider-token",
    "example-ops-token",
];

/// Key ids of the example signing keys in this repository's configuration
/// (`config/audit-signing-key.example`): production refuses them.
pub const EXAMPLE_SIGNING_KEY_IDS: &[&str] = &["81587cf2f04103c5"];

pub use crate::hexcode::sha256;

/// The configuration directory: `TRIPGATE_CONFIG_DIR`, else `./config`.
pub fn config_dir() -> PathBuf {
    std::env::var_os("TRIPGATE_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("config"))
}

impl Settings {
    /// Settings for the environment named by `TRIPGATE_ENV`.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(&config_dir(), Environment::from_env()?)
    }

    pub fn load_from(dir: &Path, environment: Environment) -> Result<Self, ConfigError> {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from(dir.join("base.toml")).required(true))
            .add_source(
                config::File::from(dir.join(format!("{}.toml", environment.as_str())))
                    .required(true),
            )
            .add_source(
                config::Environment::with_prefix("TRIPGATE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("cache.redis_cluster_nodes"),
            )
            .build()?
            .try_deserialize()?;
        let mut settings = settings;
        settings.environment = environment;
        if settings.policy.path.is_relative() {
            settings.policy.path = dir.join(&settings.policy.path);
        }
        if settings.policy.messages.is_relative() {
            settings.policy.messages = dir.join(&settings.policy.messages);
        }
        if settings.audit.signing_key_file.is_relative()
            && !settings.audit.signing_key_file.as_os_str().is_empty()
        {
            settings.audit.signing_key_file = dir.join(&settings.audit.signing_key_file);
        }
        Ok(settings)
    }

    /// Checks what the types alone cannot and reads every secret, once:
    /// start-up consumes what this returns.
    pub fn parse(&self) -> Result<Parsed, ConfigError> {
        let provider_url = self.provider_url()?;
        let national_url = self.national_url()?;
        let itinerary_url = self.itinerary_url()?;
        if self.cache.backend == CacheBackend::Redis {
            redis::Client::open(self.cache.redis_url.as_str()).map_err(|e| {
                ConfigError::Invalid {
                    key: "cache.redis_url",
                    problem: format!("not a usable Redis URL: {e}"),
                }
            })?;
        }
        let positive = [
            ("cache.ttl_secs", self.cache.ttl_secs),
            ("cache.negative_ttl_secs", self.cache.negative_ttl_secs),
            ("cache.command_timeout_ms", self.cache.command_timeout_ms),
            ("cache.connect_timeout_ms", self.cache.connect_timeout_ms),
            ("cache.memory_max_entries", self.cache.memory_max_entries),
            ("provider.timeout_ms", self.provider.timeout_ms),
            (
                "provider.connect_timeout_ms",
                self.provider.connect_timeout_ms,
            ),
        ];
        let more_positive = [
            ("checks.deadline_ms", self.checks.deadline_ms),
            (
                "checks.idempotency_ttl_secs",
                self.checks.idempotency_ttl_secs,
            ),
            (
                "checks.idempotency_max_keys",
                self.checks.idempotency_max_keys,
            ),
            (
                "cache.skip_after_failure_ms",
                self.cache.skip_after_failure_ms,
            ),
            ("cache.l1_ttl_ms", self.cache.l1_ttl_ms),
            ("cache.l1_max_entries", self.cache.l1_max_entries),
            (
                "provider.breaker_window",
                self.provider.breaker_window as u64,
            ),
            (
                "provider.breaker_min_calls",
                self.provider.breaker_min_calls as u64,
            ),
            ("provider.breaker_open_ms", self.provider.breaker_open_ms),
            ("events.max_skew_secs", self.events.max_skew_secs),
            ("notify.window_secs", self.notify.window_secs),
            ("notify.outbox_max_events", self.notify.outbox_max_events),
            ("notify.retry_for_secs", self.notify.retry_for_secs),
            ("notify.timeout_ms", self.notify.timeout_ms),
            (
                "provider.max_concurrent_calls",
                self.provider.max_concurrent_calls as u64,
            ),
            (
                "provider.max_in_flight_subjects",
                self.provider.max_in_flight_subjects as u64,
            ),
            (
                "provider.max_answer_bytes",
                self.provider.max_answer_bytes as u64,
            ),
        ];
        if !(self.provider.breaker_failure_rate > 0.0 && self.provider.breaker_failure_rate <= 1.0)
        {
            return Err(ConfigError::Invalid {
                key: "provider.breaker_failure_rate",
                problem: "must be greater than 0 and at most 1".into(),
            });
        }
        for node in &self.cache.redis_cluster_nodes {
            redis::Client::open(node.as_str()).map_err(|e| ConfigError::Invalid {
                key: "cache.redis_cluster_nodes",
                problem: format!("not a usable Redis URL: {e}"),
            })?;
        }
        let events_secret = self.events_secret()?;
        let notify = self.notify_target()?;
        let redis_access = self.redis_access()?;
        let upstream_cas = self.upstream_cas()?;
        self.check_postgres_access()?;
        let audit_key_secrets = self.audit_key_secrets()?;
        let others: Vec<&str> = audit_key_secrets
            .iter()
            .map(|(_, secret)| secret.as_str())
            .chain(std::iter::once(events_secret.expose()))
            .collect();
        let cache_keys = self.cache_keys(&others)?;
        let auth_clients = self.auth_clients()?;
        if self.environment == Environment::Production {
            self.refuse_unsafe_production(&events_secret, &auth_clients)?;
        }
        let audit_positive = [
            (
                "audit.sqlite_busy_timeout_ms",
                self.audit.sqlite_busy_timeout_ms,
            ),
            (
                "audit.sqlite_log_segment_bytes",
                self.audit.sqlite_log_segment_bytes,
            ),
            (
                "audit.postgres_pool_size",
                self.audit.postgres_pool_size as u64,
            ),
            (
                "audit.postgres_write_timeout_ms",
                self.audit.postgres_write_timeout_ms,
            ),
            ("audit.retention_days", u64::from(self.audit.retention_days)),
            ("audit.purge_interval_secs", self.audit.purge_interval_secs),
            ("audit.max_batch", self.audit.max_batch as u64),
            ("audit.queue_capacity", self.audit.queue_capacity as u64),
            ("audit.queue_max_bytes", self.audit.queue_max_bytes as u64),
            ("audit.head_interval_secs", self.audit.head_interval_secs),
            (
                "audit.default_window_hours",
                u64::from(self.audit.default_window_hours),
            ),
        ];
        for (key, value) in positive
            .into_iter()
            .chain(audit_positive)
            .chain(more_positive)
        {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "must be greater than 0".into(),
                });
            }
        }
        if self.cache.namespace.is_empty()
            || self
                .cache
                .namespace
                .contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
        {
            return Err(ConfigError::Invalid {
                key: "cache.namespace",
                problem: "must be a non-empty word without spaces or braces".into(),
            });
        }
        // PostgreSQL's lock_timeout and statement_timeout take at most
        // i32::MAX milliseconds; a larger value would fail every batch.
        if self.audit.postgres_write_timeout_ms > i32::MAX as u64 {
            return Err(ConfigError::Invalid {
                key: "audit.postgres_write_timeout_ms",
                problem: format!("must be at most {} (PostgreSQL's limit)", i32::MAX),
            });
        }
        if self.audit.backend == AuditBackend::Postgres {
            self.audit
                .postgres_url
                .parse::<tokio_postgres::Config>()
                .map_err(|e| ConfigError::Invalid {
                    key: "audit.postgres_url",
                    problem: format!("not a PostgreSQL URL: {e}"),
                })?;
        }
        let audit_keys = self.audit_keys_of(&audit_key_secrets)?;
        let signer = self.audit_signer()?;
        let public_keys = self.audit_public_keys_of(&signer)?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError::Invalid {
                key: "log.level",
                problem: format!("not a log filter: {e}"),
            }
        })?;
        Ok(Parsed {
            provider_url,
            national_url,
            itinerary_url,
            audit_keys,
            cache_keys,
            signer,
            public_keys,
            events_secret,
            auth_clients,
            notify,
            redis_access,
            upstream_cas,
        })
    }

    pub fn provider_url(&self) -> Result<Url, ConfigError> {
        http_url("provider.base_url", &self.provider.base_url)
    }

    pub fn national_url(&self) -> Result<Option<Url>, ConfigError> {
        optional_url("national.base_url", &self.national.base_url)
    }

    pub fn itinerary_url(&self) -> Result<Option<Url>, ConfigError> {
        optional_url("itinerary.base_url", &self.itinerary.base_url)
    }
}

fn optional_url(key: &'static str, raw: &str) -> Result<Option<Url>, ConfigError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    http_url(key, raw).map(Some)
}

fn http_url(key: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid { key, problem };
    let url = Url::parse(raw).map_err(|e| invalid(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme must be http or https, not {}",
            url.scheme()
        )));
    }
    Ok(url)
}

impl Settings {
    /// This instance's chain id.
    pub fn audit_instance_id(&self) -> String {
        if !self.audit.instance_id.is_empty() {
            return self.audit.instance_id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "tripgate".to_owned());
        format!("{host}-{}", std::process::id())
    }

    pub fn audit_store(&self) -> crate::audit::StoreConfig {
        match self.audit.backend {
            AuditBackend::Sqlite => crate::audit::StoreConfig::Sqlite {
                path: self.audit.sqlite_path.clone(),
                busy_timeout_ms: self.audit.sqlite_busy_timeout_ms,
                log_segment_bytes: self.audit.sqlite_log_segment_bytes,
                journal: crate::audit::JournalAccess::Own {
                    wait: Duration::from_millis(self.audit.journal_lock_wait_ms),
                    salvage: self.audit.salvage_journal,
                },
            },
            AuditBackend::Postgres => crate::audit::StoreConfig::Postgres {
                url: self.audit.postgres_url.clone(),
                pool_size: self.audit.postgres_pool_size,
                access: crate::audit::PostgresAccess {
                    ca_file: self.audit.postgres_ca_file.clone(),
                    password_file: self.audit.postgres_password_file.clone(),
                    write_timeout: Duration::from_millis(self.audit.postgres_write_timeout_ms),
                },
            },
        }
    }
}

impl CacheSettings {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }
    pub fn negative_ttl(&self) -> Duration {
        Duration::from_secs(self.negative_ttl_secs)
    }
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl ServerSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

impl CheckSettings {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

impl ProviderSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}
