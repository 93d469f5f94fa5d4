//! The lookup order for the subjects of one check, within its deadline:
//!
//! 1. L1, in process (only in front of Redis);
//! 2. the shared cache, one round trip for everything L1 lacked;
//! 3. the provider for what is still missing: one batch call, coalesced
//!    with identical calls already in flight, behind a circuit breaker, with
//!    at most one quick jittered retry;
//! 4. when the provider cannot answer in time, a stale cached copy (within
//!    `max_stale`), else `Unavailable`.
//!
//! A provider call runs as its own task: it is shared by every check that
//! wants the same subjects, survives a caller that gives up at its deadline,
//! and writes its answer back to L1 and the shared cache before it leaves
//! the in-flight table, so a check that just missed the cache finds either
//! the call in flight or its answer in L1, never neither.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use super::{
    BreakerState, CacheTtls, CachedStatus, CircuitBreaker, L1Cache, ProviderClient, Source, Status,
    StatusCache, StatusLookup,
};
use crate::domain::{HealthCode, SubjectId};
use crate::metrics::Metrics;

type FetchOutcome = Result<Arc<HashMap<String, CachedStatus>>, Arc<str>>;
type SharedFetch = Shared<BoxFuture<'static, FetchOutcome>>;

pub struct ResolverOptions {
    pub ttls: CacheTtls,
    /// A provider call that failed fast within this window is retried once.
    pub retry_window: Duration,
    /// Bound on writing answers back to the shared cache.
    pub write_back_timeout: Duration,
}

#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Arc<Metrics>,
    l1: Option<L1Cache>,
    cache: StatusCache,
    provider: ProviderClient,
    breaker: CircuitBreaker,
    options: ResolverOptions,
    in_flight: Mutex<HashMap<SubjectId, SharedFetch>>,
}

/// What readiness reports about the status path.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResolverHealth {
    pub cache: &'static str,
    pub cache_up: bool,
    pub provider_circuit: &'static str,
    pub l1_entries: u64,
}

impl Resolver {
    pub fn new(
        l1: Option<L1Cache>,
        cache: StatusCache,
        provider: ProviderClient,
        breaker: CircuitBreaker,
        options: ResolverOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                metrics,
                l1,
                cache,
                provider,
                breaker,
                options,
                in_flight: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn health(&self) -> ResolverHealth {
        let (cache, cache_up) = match &self.inner.cache {
            StatusCache::Redis(redis) => ("redis", redis.is_up()),
            StatusCache::Memory(_) => ("memory", true),
        };
        ResolverHealth {
            cache,
            cache_up,
            provider_circuit: self.inner.breaker.state().as_str(),
            l1_entries: self.inner.l1.as_ref().map_or(0, L1Cache::entry_count),
        }
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// One lookup per subject, in the order given, by `deadline` at the
    /// latest. Never fails as a whole.
    pub async fn resolve(&self, subjects: &[SubjectId], deadline: Instant) -> Vec<StatusLookup> {
        let inner = &self.inner;
        let ttls = inner.options.ttls;
        let now = Utc::now();
        let mut lookups: Vec<Option<StatusLookup>> = vec![None; subjects.len()];
        let mut stale: Vec<Option<CachedStatus>> = vec![None; subjects.len()];

        if let Some(l1) = &inner.l1 {
            for (subject, lookup) in subjects.iter().zip(lookups.iter_mut()) {
                if let Some(hit) = l1.get(subject).filter(|c| ttls.is_fresh(c, now)) {
                    *lookup = Some(StatusLookup::known(hit, Source::L1));
                }
            }
        }

        let wanted: Vec<usize> = (0..subjects.len())
            .filter(|i| lookups[*i].is_none())
            .collect();
        if !wanted.is_empty() {
            let keys: Vec<&SubjectId> = wanted.iter().map(|i| &subjects[*i]).collect();
            // L1 with its invalidation count before the read.
            let l1_before_read = inner.l1.as_ref().map(|l1| (l1, l1.invalidations()));
            let read = tokio::time::timeout_at(deadline, inner.cache.get_many(&keys)).await;
            match read {
                Ok(Ok(entries)) => {
                    for (i, entry) in wanted.iter().zip(entries) {
                        let Some(cached) = entry else { continue };
                        if ttls.is_fresh(&cached, now) {
                            if let Some((l1, seen)) = l1_before_read {
                                l1.insert_read(subjects[*i].clone(), cached.clone(), seen);
                            }
                            lookups[*i] = Some(StatusLookup::known(cached, inner.cache.source()));
                        } else {
                            stale[*i] = Some(cached);
                        }
                    }
                }
                Ok(Err(error)) => {
                    inner
                        .metrics
                        .redis_errors
                        .with_label_values(&["read"])
                        .inc();
                    tracing::debug!(%error, "status cache read failed; asking the provider")
                }
                Err(_) => tracing::debug!("deadline reached while reading the status cache"),
            }
        }

        let mut misses: Vec<&SubjectId> = Vec::new();
        for (subject, lookup) in subjects.iter().zip(&lookups) {
            if lookup.is_none() && !misses.contains(&subject) {
                misses.push(subject);
            }
        }
        if !misses.is_empty() {
            let answers = self.fetch(&misses, deadline).await;
            for (subject, lookup) in subjects.iter().zip(lookups.iter_mut()) {
                if lookup.is_none() {
                    if let Some((cached, source)) = answers.get(subject) {
                        *lookup = Some(StatusLookup::known(cached.clone(), *source));
                    }
                }
            }
        }

        lookups
            .into_iter()
            .zip(stale)
            .map(|(lookup, stale)| match (lookup, stale) {
                (Some(lookup), _) => lookup,
                (None, Some(copy)) => StatusLookup::known(copy, Source::Stale),
                (None, None) => StatusLookup::Unavailable,
            })
            .collect()
    }

    /// Answers for `subjects` from the provider (or from a call in flight,
    /// or from a write-back that just landed), waiting until `deadline`.
    async fn fetch(
        &self,
        subjects: &[&SubjectId],
        deadline: Instant,
    ) -> HashMap<SubjectId, (CachedStatus, Source)> {
        let mut answers = HashMap::new();
        let mut waits: Vec<(SharedFetch, Vec<SubjectId>)> = Vec::new();
        {
            let mut in_flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mut mine: Vec<SubjectId> = Vec::new();
            let now = Utc::now();
            for subject in subjects {
                if let Some(call) = in_flight.get(*subject) {
                    match waits.iter_mut().find(|(w, _)| w.ptr_eq(call)) {
                        Some((_, wanted)) => wanted.push((*subject).clone()),
                        None => waits.push((call.clone(), vec![(*subject).clone()])),
                    }
                } else if let Some(landed) = self.landed(subject, now) {
                    answers.insert((*subject).clone(), landed);
                } else {
                    mine.push((*subject).clone());
                }
            }
            if !mine.is_empty() {
                let call = self.start_call(mine.clone());
                for subject in &mine {
                    in_flight.insert(subject.clone(), call.clone());
                }
                waits.push((call, mine));
            }
        }

        for (call, wanted) in waits {
            match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(found)) => {
                    for subject in wanted {
                        if let Some(cached) = found.get(subject.expose()) {
                            answers.insert(subject, (cached.clone(), Source::Upstream));
                        }
                    }
                }
                Ok(Err(_)) => {}
                Err(_) => tracing::debug!("deadline reached while waiting for the provider"),
            }
        }
        answers
    }

    /// A fresh answer written back by a call that finished a moment ago.
    fn landed(
        &self,
        subject: &SubjectId,
        now: chrono::DateTime<Utc>,
    ) -> Option<(CachedStatus, Source)> {
        let ttls = self.inner.options.ttls;
        let hit = match (&self.inner.l1, &self.inner.cache) {
            (Some(l1), _) => l1.get(subject),
            (None, StatusCache::Memory(memory)) => memory.get(subject),
            (None, StatusCache::Redis(_)) => None,
        }?;
        ttls.is_fresh(&hit, now).then_some((hit, Source::Upstream))
    }

    fn start_call(&self, subjects: Vec<SubjectId>) -> SharedFetch {
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(async move {
            let outcome = inner.call_provider(&subjects).await;
            if let Ok(found) = &outcome {
                inner.write_back(&subjects, found).await;
            }
            let mut in_flight = inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for subject in &subjects {
                in_flight.remove(subject);
            }
            outcome
        });
        task.map(|joined| {
            joined.unwrap_or_else(|e| Err(Arc::from(format!("provider task failed: {e}"))))
        })
        .boxed()
        .shared()
    }

    /// Resolves a pushed status change: cached unless a newer status is,
    /// and dropped from every replica's L1. Returns whether it was applied.
    pub async fn apply_pushed(
        &self,
        subject: &SubjectId,
        code: HealthCode,
    ) -> Result<bool, super::CacheError> {
        let status = CachedStatus::new(Status::Registered(code), Utc::now());
        let applied = self.inner.cache.put_pushed(subject, status).await?;
        if let Some(l1) = &self.inner.l1 {
            l1.invalidate(subject);
        }
        Ok(applied)
    }
}

impl Inner {
    async fn call_provider(&self, subjects: &[SubjectId]) -> FetchOutcome {
        let refs: Vec<&SubjectId> = subjects.iter().collect();
        let started = Instant::now();
        let mut retried = false;
        loop {
            if !self.breaker.allow() {
                self.metrics
                    .provider_requests
                    .with_label_values(&["circuit_open"])
                    .inc();
                return Err(Arc::from("provider circuit is open"));
            }
            let timer = std::time::Instant::now();
            let result = self.provider.lookup(&refs).await;
            self.metrics
                .provider_seconds
                .observe(timer.elapsed().as_secs_f64());
            self.metrics
                .provider_requests
                .with_label_values(&[match &result {
                    Ok(_) => "ok",
                    Err(e) if e.is_timeout() => "timeout",
                    Err(_) => "error",
                }])
                .inc();
            self.breaker.record(result.is_ok());
            match result {
                Ok(statuses) => {
                    let fetched_at = Utc::now();
                    return Ok(Arc::new(
                        statuses
                            .into_iter()
                            .map(|(id, status)| (id, CachedStatus::new(status, fetched_at)))
                            .collect(),
                    ));
                }
                Err(error)
                    if !retried
                        && error.is_retryable()
                        && started.elapsed() < self.options.retry_window =>
                {
                    retried = true;
                    tracing::debug!(%error, "provider call failed fast; retrying once");
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(10..=50))).await;
                }
                Err(error) => {
                    tracing::warn!(%error, subjects = subjects.len(), "provider lookup failed");
                    return Err(Arc::from(error.to_string()));
                }
            }
        }
    }

    async fn write_back(&self, subjects: &[SubjectId], found: &HashMap<String, CachedStatus>) {
        let entries: Vec<(&SubjectId, CachedStatus)> = subjects
            .iter()
            .filter_map(|s| Some((s, found.get(s.expose())?.clone())))
            .collect();
        if let Some(l1) = &self.l1 {
            for (subject, cached) in &entries {
                l1.insert((*subject).clone(), cached.clone());
            }
        }
        match tokio::time::timeout(
            self.options.write_back_timeout,
            self.cache.put_many(&entries),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.metrics
                    .redis_errors
                    .with_label_values(&["write"])
                    .inc();
                tracing::debug!(%error, "status cache write-back failed")
            }
            Err(_) => {
                self.metrics
                    .redis_errors
                    .with_label_values(&["write"])
                    .inc();
                tracing::debug!("status cache write-back timed out")
            }
        }
    }
}
