//! Wires the parts together and binds the listener.
//!
//! `Application::build` does everything that can fail at start-up (policy,
//! Redis URL, provider URL, binding) so a misconfiguration stops the process
//! before it accepts traffic. Binding port 0 gives tests a free port.
//! Shutdown lives in one place: actix's server handles SIGINT/SIGTERM by
//! refusing new connections and draining in-flight requests for
//! `SHUTDOWN_GRACE`.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::audit::{spawn_retention, AuditReader, AuditStore, AuditWriter, StoreError};
use crate::config::{CacheBackend, ConfigError, Settings};
use crate::events::StatusEvents;
use crate::gate::Gate;
use crate::policy::{Policy, PolicyError};
use crate::routes;
use crate::status::{
    spawn_invalidation_listener, BreakerConfig, CacheTtls, CircuitBreaker, L1Cache, MemoryCache,
    ProviderClient, RedisCache, RedisCacheOptions, Resolver, ResolverOptions, StatusCache,
};
use crate::telemetry::RedactedRootSpan;

const SHUTDOWN_GRACE_SECS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("configuration: cache.redis_url: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot build the provider HTTP client: {0}")]
    ProviderClient(#[from] reqwest::Error),
    #[error("audit store ({backend}): {source}")]
    AuditStore {
        backend: &'static str,
        source: StoreError,
    },
    #[error("server.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    address: SocketAddr,
    server: Server,
    audit_writer: tokio::task::JoinHandle<()>,
    /// Background tasks that end with the server: retention, invalidations.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.validate()?;
        let policy = Policy::load(&settings.policy.path)?;
        let (resolver, invalidations) = build_resolver(&settings)?;
        let backend = match settings.audit.backend {
            crate::config::AuditBackend::Sqlite => "audit.sqlite_path",
            crate::config::AuditBackend::Postgres => "audit.postgres_url",
        };
        let store = AuditStore::open(&settings.audit_store())
            .await
            .map_err(|source| StartupError::AuditStore { backend, source })?;
        let (audit, audit_writer) = AuditWriter::start(
            store.clone(),
            settings.audit_keys()?,
            settings.audit_instance_id(),
            settings.audit.max_batch,
            settings.audit.queue_capacity,
        )
        .await
        .map_err(|source| StartupError::AuditStore { backend, source })?;
        let retention = spawn_retention(
            store.clone(),
            settings.audit.retention_days,
            std::time::Duration::from_secs(settings.audit.purge_interval_secs),
        );
        let reader = web::Data::new(AuditReader::new(store, audit.keys().clone()));
        let events = web::Data::new(StatusEvents::new(
            resolver.clone(),
            settings.events_secret()?,
            settings.events.max_skew_secs,
        ));
        let gate = web::Data::new(Gate::new(
            resolver,
            policy,
            audit,
            settings.checks.deadline(),
        ));

        let listener =
            TcpListener::bind(settings.server.listen).map_err(|source| StartupError::Bind {
                addr: settings.server.listen,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.server.listen,
            source,
        })?;

        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<RedactedRootSpan>::new())
                .app_data(gate.clone())
                .app_data(reader.clone())
                .app_data(events.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .shutdown_timeout(SHUTDOWN_GRACE_SECS);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                addr: address,
                source,
            })?
            .run();
        Ok(Self {
            address,
            server,
            audit_writer,
            background: [Some(retention), invalidations]
                .into_iter()
                .flatten()
                .collect(),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// A handle to stop the server from elsewhere (tests, the demo).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped, then waits for the audit writer to commit
    /// whatever the last requests queued.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        for task in &self.background {
            task.abort();
        }
        let _ = self.audit_writer.await;
        served
    }
}

/// The status path; with Redis also the task that listens for L1
/// invalidations.
fn build_resolver(
    settings: &Settings,
) -> Result<(Resolver, Option<tokio::task::JoinHandle<()>>), StartupError> {
    let cache_settings = &settings.cache;
    let ttls = CacheTtls {
        registered: cache_settings.ttl(),
        not_registered: cache_settings.negative_ttl(),
        max_stale: Duration::from_secs(cache_settings.max_stale_secs),
    };
    let (cache, l1, invalidations) = match cache_settings.backend {
        CacheBackend::Redis => {
            let redis = RedisCache::new(RedisCacheOptions {
                url: cache_settings.redis_url.clone(),
                cluster_nodes: cache_settings.redis_cluster_nodes.clone(),
                namespace: cache_settings.namespace.clone(),
                ttls,
                command_timeout: cache_settings.command_timeout(),
                connect_timeout: cache_settings.connect_timeout(),
                skip_after_failure: Duration::from_millis(cache_settings.skip_after_failure_ms),
            })?;
            let l1 = L1Cache::new(
                cache_settings.l1_max_entries,
                Duration::from_millis(cache_settings.l1_ttl_ms),
            );
            let listen_to = cache_settings
                .redis_cluster_nodes
                .first()
                .unwrap_or(&cache_settings.redis_url)
                .clone();
            let listener = spawn_invalidation_listener(
                listen_to,
                redis.invalidation_channel().to_owned(),
                l1.clone(),
            );
            (StatusCache::Redis(redis), Some(l1), Some(listener))
        }
        CacheBackend::Memory => (
            StatusCache::Memory(MemoryCache::new(cache_settings.memory_max_entries, ttls)),
            None,
            None,
        ),
    };
    let provider_settings = &settings.provider;
    let provider = ProviderClient::new(
        &settings.provider_url()?,
        provider_settings.timeout(),
        provider_settings.connect_timeout(),
    )?;
    let breaker = CircuitBreaker::new(
        "provider",
        BreakerConfig {
            window: provider_settings.breaker_window,
            min_calls: provider_settings.breaker_min_calls,
            failure_rate: provider_settings.breaker_failure_rate,
            open_for: Duration::from_millis(provider_settings.breaker_open_ms),
        },
    );
    let options = ResolverOptions {
        ttls,
        retry_window: Duration::from_millis(provider_settings.retry_window_ms),
        write_back_timeout: cache_settings.command_timeout(),
    };
    Ok((
        Resolver::new(l1, cache, provider, breaker, options),
        invalidations,
    ))
}
