//! Wires the parts together, binds the listeners, and owns shutdown.
//!
//! `Application::build` does everything that can fail at start-up (policy,
//! secrets, Redis URL, audit store, binding) so a misconfiguration stops the
//! process before it accepts traffic. Binding port 0 gives tests free ports.
//! Two listeners: the API (`server.listen`) and the admin listener
//! (`server.admin_listen`: metrics, probes, operator endpoints).
//!
//! Shutdown lives here and only here: on SIGTERM or SIGINT both servers stop
//! accepting, in-flight checks finish (each one's audit record commits before
//! its answer), then the audit writer drains what is queued, all within one
//! deadline, `server.shutdown_grace_secs` after the signal: the stages share
//! it rather than each taking the whole of it (the admin listener, probes
//! and metrics only, stops at once).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::audit::{spawn_retention, AuditReader, AuditStore, AuditWriter, StoreError};
use crate::auth::Authenticator;
use crate::config::{CacheBackend, ConfigError, Environment, Settings};
use crate::events::StatusEvents;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyError};
use crate::routes;
use crate::status::{
    spawn_invalidation_listener, BreakerConfig, CacheTtls, CircuitBreaker, L1Cache, MemoryCache,
    ProviderClient, RedisCache, RedisCacheOptions, Resolver, ResolverOptions, SourceKind,
    StatusCache,
};
use crate::telemetry::RedactedRootSpan;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("policy")]
    Policy(#[from] PolicyError),
    #[error("policy.messages")]
    Messages(#[from] crate::messages::MessagesError),
    #[error("configuration: cache.redis_url")]
    Redis(#[from] redis::RedisError),
    #[error("cannot build the provider HTTP client")]
    ProviderClient(#[from] reqwest::Error),
    #[error("audit store ({backend})")]
    AuditStore {
        backend: &'static str,
        source: StoreError,
    },
    #[error("notify.outbox_path")]
    Outbox(#[from] crate::notify::OutboxError),
    #[error("{key}: cannot listen on {addr}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    gate: Arc<Gate>,
    address: SocketAddr,
    admin_address: SocketAddr,
    server: Server,
    admin: Server,
    shutdown_grace: Duration,
    /// Completes when the audit writer has committed its last record.
    audit_writer: tokio::sync::oneshot::Receiver<()>,
    /// Background tasks that end with the server: retention, invalidations,
    /// notification delivery (what it has not delivered stays in its
    /// outbox for the next start).
    background: Vec<tokio::task::JoinHandle<()>>,
}

fn bind(key: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
    let error = |source| StartupError::Bind { key, addr, source };
    let listener = TcpListener::bind(addr).map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    Ok((listener, local))
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Everything that can be wrong with the settings, and every secret
        // read, once.
        let parsed = settings.parse()?;
        let metrics = Arc::new(Metrics::new());
        let policy = Policy::load(&settings.policy.path)?;
        let messages = web::Data::new(crate::messages::Messages::load(&settings.policy.messages)?);
        metrics.set_policy_version(policy.version());
        // Reserved (or not) by `main` before anything opened SQLite; fixed since.
        metrics
            .sqlite_page_pool
            .set(crate::audit::sqlite_page_pool_bytes() as i64);
        let sources = build_sources(&settings, &parsed, &metrics)?;
        let resolver = sources.health.clone();
        let backend = match settings.audit.backend {
            crate::config::AuditBackend::Sqlite => "audit.sqlite_path",
            crate::config::AuditBackend::Postgres => "audit.postgres_url",
        };
        let store = AuditStore::open(&settings.audit_store())
            .await
            .map_err(|source| StartupError::AuditStore { backend, source })?;
        let crate::config::Parsed {
            audit_keys,
            signer,
            public_keys,
            events_secret,
            auth_clients,
            notify,
            ..
        } = parsed;
        let (audit, audit_writer) = AuditWriter::start(
            store.clone(),
            audit_keys,
            signer.clone(),
            public_keys,
            settings.audit_instance_id(),
            crate::audit::WriterLimits {
                max_batch: settings.audit.max_batch,
                queue_records: settings.audit.queue_capacity,
                queue_bytes: settings.audit.queue_max_bytes,
                head_interval: Duration::from_secs(settings.audit.head_interval_secs),
            },
            Arc::clone(&metrics),
        )
        .await
        .map_err(|source| StartupError::AuditStore { backend, source })?;
        let retention = spawn_retention(
            store.clone(),
            signer.clone(),
            settings.audit.retention_days,
            Duration::from_secs(settings.audit.purge_interval_secs),
        );
        let appeals = web::Data::new(crate::appeals::Appeals::new(
            audit.clone(),
            store.clone(),
            Arc::clone(&metrics),
        ));
        let reader = web::Data::new(AuditReader::new(
            store,
            audit.keys().clone(),
            crate::audit::public_key_string(&signer.public_key()),
            chrono::TimeDelta::hours(i64::from(settings.audit.default_window_hours)),
        ));
        let idempotency = web::Data::new(crate::idempotency::Idempotency::new(
            resolver.shared_redis(),
            resolver.cache_keys().clone(),
            Duration::from_secs(settings.checks.idempotency_ttl_secs),
            settings.checks.idempotency_max_keys,
            Arc::clone(&metrics),
        ));
        let (notifier, delivery) = match notify {
            None => (None, None),
            Some((url, secret)) => {
                let notify = &settings.notify;
                let outbox = crate::notify::Outbox::open(
                    &notify.outbox_path,
                    notify.outbox_max_events,
                    Arc::clone(&metrics),
                )?;
                let delivery = outbox.spawn_delivery(
                    url,
                    secret.expose().as_bytes().to_vec(),
                    Duration::from_millis(notify.timeout_ms),
                    Duration::from_secs(notify.retry_for_secs),
                );
                let notifier = Arc::new(crate::notify::Notifier::new(
                    resolver.shared_redis(),
                    resolver.cache_keys().clone(),
                    Duration::from_secs(notify.window_secs),
                    outbox,
                    Arc::clone(&metrics),
                ));
                (Some(notifier), Some(delivery))
            }
        };
        let events = web::Data::new(
            StatusEvents::new(
                resolver.clone(),
                events_secret,
                settings.events.max_skew_secs,
            )
            .with_notifier(notifier.clone()),
        );
        let gate = web::Data::new(
            Gate::new(
                resolver,
                policy,
                settings.policy.path.clone(),
                audit,
                settings.checks.deadline(),
                Arc::clone(&metrics),
            )
            .with_national(sources.national)
            .with_itinerary(sources.itinerary)
            .with_notifier(notifier),
        );
        let authenticator = web::Data::new(Authenticator::new(
            settings.auth.enabled,
            auth_clients,
            settings.auth.rate_per_sec,
            settings.auth.burst,
        ));
        if !settings.auth.enabled {
            let warning = "AUTHENTICATION IS DISABLED: any caller may run checks and read the audit trail. \
                           Only acceptable on a developer machine; production refuses to start this way.";
            tracing::warn!("{warning}");
            if settings.environment == Environment::Local {
                eprintln!("WARNING: {warning}");
            }
        }
        let metrics = web::Data::from(metrics);
        let server_settings = &settings.server;
        let grace = server_settings.shutdown_grace();

        let (listener, address) = bind("server.listen", server_settings.listen)?;
        let api = {
            let (gate, reader, events, authenticator, metrics, messages) = (
                gate.clone(),
                reader.clone(),
                events.clone(),
                authenticator.clone(),
                metrics.clone(),
                messages.clone(),
            );
            let idempotency = idempotency.clone();
            let appeals = appeals.clone();
            HttpServer::new(move || {
                // The factory runs once on each worker thread, as it starts.
                crate::scheduling::prefer_low_latency();
                App::new()
                    .wrap(TracingLogger::<RedactedRootSpan>::new())
                    .wrap(from_fn(routes::observe::observe))
                    .app_data(gate.clone())
                    .app_data(reader.clone())
                    .app_data(events.clone())
                    .app_data(authenticator.clone())
                    .app_data(metrics.clone())
                    .app_data(messages.clone())
                    .app_data(idempotency.clone())
                    .app_data(appeals.clone())
                    .configure(routes::configure)
                    .default_service(web::to(routes::not_found))
            })
        };
        let mut api = api
            .shutdown_timeout(grace.as_secs())
            .disable_signals()
            .client_request_timeout(Duration::from_millis(
                server_settings.client_request_timeout_ms,
            ))
            .keep_alive(Duration::from_secs(server_settings.keep_alive_secs));
        if server_settings.workers > 0 {
            api = api.workers(server_settings.workers);
        }
        let server = api
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                key: "server.listen",
                addr: address,
                source,
            })?
            .run();

        let (admin_listener, admin_address) =
            bind("server.admin_listen", server_settings.admin_listen)?;
        let reload_gate = gate.clone().into_inner();
        let admin = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(routes::observe::observe))
                .app_data(gate.clone())
                .app_data(appeals.clone())
                .app_data(authenticator.clone())
                .app_data(metrics.clone())
                .configure(routes::configure_admin)
                .default_service(web::to(routes::not_found))
        })
        .workers(1)
        .shutdown_timeout(grace.as_secs())
        .disable_signals()
        .listen(admin_listener)
        .map_err(|source| StartupError::Bind {
            key: "server.admin_listen",
            addr: admin_address,
            source,
        })?
        .run();

        Ok(Self {
            gate: reload_gate,
            address,
            admin_address,
            server,
            admin,
            shutdown_grace: grace,
            audit_writer,
            background: std::iter::once(retention)
                .chain(sources.tasks)
                .chain(delivery)
                .collect(),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// A handle to stop the API server from elsewhere (tests, the demo);
    /// the admin server and the writer follow it down.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or until stopped through `handle`), then
    /// shuts down gracefully within the grace period.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (api_handle, admin_handle) = (self.server.handle(), self.admin.handle());
        let mut api = tokio::spawn(self.server);
        let admin = tokio::spawn(self.admin);
        let mut hangups = hangups();
        let mut deadline = None;
        let served = loop {
            tokio::select! {
                _ = terminated() => {
                    tracing::info!("termination signal: draining in-flight checks");
                    deadline = Some(tokio::time::Instant::now() + self.shutdown_grace);
                    api_handle.stop(true).await;
                    break api.await;
                }
                Some(()) = hangups.recv() => {
                    // Refusals are logged and counted by the gate.
                    let _ = self.gate.reload_policy();
                }
                served = &mut api => break served,
            }
        };
        // The gate holds the audit writer's queue: let it go, or the writer
        // would wait for records that can no longer come.
        drop(self.gate);
        let deadline =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + self.shutdown_grace);
        admin_handle.stop(false).await;
        let _ = admin.await;
        for task in &self.background {
            task.abort();
        }
        // The writer ends once the last decision that could queue a record
        // is gone; what is queued commits first, within what is left.
        if tokio::time::timeout_at(deadline, self.audit_writer)
            .await
            .is_err()
        {
            tracing::error!("the audit writer did not drain within the shutdown grace period");
        }
        tracing::info!("tripgate stopped");
        served.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// SIGHUPs as a stream (empty where there are no signals).
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hangup) = signal(SignalKind::hangup()) {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    if sender.send(()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    #[cfg(not(unix))]
    drop(sender);
    receiver
}

/// Waits for SIGINT or SIGTERM.
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// One status source: its own provider client, breaker, cache keys and L1.
struct SourceSpec<'a> {
    /// Names the breaker in logs, and suffixes the cache namespace.
    name: &'static str,
    base_url: &'a reqwest::Url,
    /// PEM CA of its HTTPS certificate (else the system's roots).
    ca_pem: Option<&'a [u8]>,
    kind: SourceKind,
    ttl: Duration,
    /// Listen for pushed invalidations (only pushed health codes have them).
    invalidations: bool,
}

/// The resolver of one source; with Redis and `invalidations` also the task
/// that drops invalidated subjects from its L1.
fn build_source(
    settings: &Settings,
    parsed: &crate::config::Parsed,
    spec: SourceSpec<'_>,
    metrics: Arc<Metrics>,
) -> Result<(Resolver, Option<tokio::task::JoinHandle<()>>), StartupError> {
    let cache_keys = &parsed.cache_keys;
    let redis_access = &parsed.redis_access;
    let cache_settings = &settings.cache;
    let ttls = CacheTtls {
        registered: spec.ttl,
        not_registered: cache_settings.negative_ttl(),
        max_stale: Duration::from_secs(cache_settings.max_stale_secs),
    };
    let namespace = match spec.name {
        "provider" => cache_settings.namespace.clone(),
        other => format!("{}:{other}", cache_settings.namespace),
    };
    let (cache, l1, invalidations) = match cache_settings.backend {
        CacheBackend::Redis => {
            let redis = RedisCache::new(RedisCacheOptions {
                url: cache_settings.redis_url.clone(),
                access: redis_access.clone(),
                cluster_nodes: cache_settings.redis_cluster_nodes.clone(),
                namespace,
                ttls,
                command_timeout: cache_settings.command_timeout(),
                connect_timeout: cache_settings.connect_timeout(),
                skip_after_failure: Duration::from_millis(cache_settings.skip_after_failure_ms),
            })?;
            let l1 = L1Cache::new(
                cache_settings.l1_max_entries,
                Duration::from_millis(cache_settings.l1_ttl_ms),
            );
            let listener = spec.invalidations.then(|| {
                let listen_to = cache_settings
                    .redis_cluster_nodes
                    .first()
                    .unwrap_or(&cache_settings.redis_url)
                    .clone();
                spawn_invalidation_listener(
                    listen_to,
                    redis_access.clone(),
                    redis.invalidation_channel().to_owned(),
                    l1.clone(),
                )
            });
            (StatusCache::Redis(redis), Some(l1), listener)
        }
        CacheBackend::Memory => (
            StatusCache::Memory(MemoryCache::new(cache_settings.memory_max_entries, ttls)),
            None,
            None,
        ),
    };
    let provider_settings = &settings.provider;
    let provider = ProviderClient::new(
        spec.base_url,
        spec.ca_pem,
        spec.kind,
        provider_settings.timeout(),
        provider_settings.connect_timeout(),
        provider_settings.max_answer_bytes,
    )?;
    let breaker = CircuitBreaker::new(
        spec.name,
        BreakerConfig {
            window: provider_settings.breaker_window,
            min_calls: provider_settings.breaker_min_calls,
            failure_rate: provider_settings.breaker_failure_rate,
            open_for: Duration::from_millis(provider_settings.breaker_open_ms),
        },
    )
    .with_metrics(Arc::clone(&metrics));
    let options = ResolverOptions {
        ttls,
        retry_window: Duration::from_millis(provider_settings.retry_window_ms),
        write_back_timeout: cache_settings.command_timeout(),
        max_future_skew: chrono::TimeDelta::seconds(settings.events.max_skew_secs as i64),
        max_concurrent_calls: provider_settings.max_concurrent_calls,
        max_in_flight_subjects: provider_settings.max_in_flight_subjects,
    };
    Ok((
        Resolver::new(
            cache_keys.clone(),
            l1,
            cache,
            provider,
            breaker,
            options,
            metrics,
        ),
        invalidations,
    ))
}

/// Every configured status source: the provider, and optionally the
/// national platform and the itinerary card.
struct Sources {
    health: Resolver,
    national: Option<Resolver>,
    itinerary: Option<Resolver>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn build_sources(
    settings: &Settings,
    parsed: &crate::config::Parsed,
    metrics: &Arc<Metrics>,
) -> Result<Sources, StartupError> {
    let provider_url = parsed.provider_url.clone();
    let (health, invalidations) = build_source(
        settings,
        parsed,
        SourceSpec {
            name: "provider",
            base_url: &provider_url,
            ca_pem: parsed.upstream_cas.provider.as_deref(),
            kind: SourceKind::HealthCodes,
            ttl: settings.cache.ttl(),
            invalidations: true,
        },
        Arc::clone(metrics),
    )?;
    let national = match parsed.national_url.clone() {
        Some(url) => Some(
            build_source(
                settings,
                parsed,
                SourceSpec {
                    name: "national",
                    base_url: &url,
                    ca_pem: parsed.upstream_cas.national.as_deref(),
                    kind: SourceKind::HealthCodes,
                    ttl: settings.cache.ttl(),
                    invalidations: false,
                },
                Arc::clone(metrics),
            )?
            .0,
        ),
        None => None,
    };
    let itinerary = match parsed.itinerary_url.clone() {
        Some(url) => Some(
            build_source(
                settings,
                parsed,
                SourceSpec {
                    name: "itinerary",
                    base_url: &url,
                    ca_pem: parsed.upstream_cas.itinerary.as_deref(),
                    kind: SourceKind::Itineraries,
                    ttl: Duration::from_secs(settings.itinerary.ttl_secs),
                    invalidations: false,
                },
                Arc::clone(metrics),
            )?
            .0,
        ),
        None => None,
    };
    Ok(Sources {
        health,
        national,
        itinerary,
        tasks: invalidations.into_iter().collect(),
    })
}
