//! Wires the parts together and binds the listener.
//!
//! `Application::build` does everything that can fail at start-up (policy,
//! Redis URL, provider URL, binding) so a misconfiguration stops the process
//! before it accepts traffic. Binding port 0 gives tests a free port.
//! Shutdown lives in one place: actix's server handles SIGINT/SIGTERM by
//! refusing new connections and draining in-flight requests for
//! `SHUTDOWN_GRACE`.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::audit::{spawn_retention, AuditReader, AuditStore, AuditWriter, StoreError};
use crate::config::{CacheBackend, ConfigError, Settings};
use crate::gate::Gate;
use crate::policy::{Policy, PolicyError};
use crate::routes;
use crate::status::{
    CacheTtls, MemoryCache, ProviderClient, RedisCache, RedisCacheOptions, Resolver, StatusCache,
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
    retention: tokio::task::JoinHandle<()>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.validate()?;
        let policy = Policy::load(&settings.policy.path)?;
        let resolver = build_resolver(&settings)?;
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
        let gate = web::Data::new(Gate::new(resolver, policy, audit));

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
            retention,
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
        self.retention.abort();
        let _ = self.audit_writer.await;
        served
    }
}

fn build_resolver(settings: &Settings) -> Result<Resolver, StartupError> {
    let cache_settings = &settings.cache;
    let ttls = CacheTtls {
        registered: cache_settings.ttl(),
        not_registered: cache_settings.negative_ttl(),
    };
    let cache = match cache_settings.backend {
        CacheBackend::Redis => StatusCache::Redis(RedisCache::new(RedisCacheOptions {
            url: cache_settings.redis_url.clone(),
            namespace: cache_settings.namespace.clone(),
            ttls,
            command_timeout: cache_settings.command_timeout(),
            connect_timeout: cache_settings.connect_timeout(),
        })?),
        CacheBackend::Memory => {
            StatusCache::Memory(MemoryCache::new(cache_settings.memory_max_entries, ttls))
        }
    };
    let provider = ProviderClient::new(
        &settings.provider_url()?,
        settings.provider.timeout(),
        settings.provider.connect_timeout(),
    )?;
    Ok(Resolver::new(cache, provider))
}
