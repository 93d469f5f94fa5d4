//! The lookup order for the subjects of one check, within its deadline:
//!
//! 1. L1, in process (only in front of Redis);
//! 2. the shared cache, one round trip for everything L1 lacked;
//! 3. the provider for what is still missing: one batch call, coalesced
//!    with identical calls already in flight, behind a circuit breaker, with
//!    at most one quick jittered retry;
//! 4. when the provider cannot answer in time, a stale cached copy (within
//!    `max_stale`), else `Unavailable` with its cause.
//!
//! A provider call runs as its own task: it is shared by every check that
//! wants the same subjects, survives a caller that gives up at its deadline,
//! and writes its answer back to the shared cache and L1 before it leaves
//! the in-flight table, so a check that just missed the cache finds either
//! the call in flight or its answer in L1, never neither.
//!
//! Invariants:
//! - What a write-back answers is what the shared cache kept: when a pushed
//!   status that stands against the provider's answer landed while the call
//!   was out, the pushed one is the answer (stricter / newer wins).
//! - L1 takes a provider answer only if no invalidation arrived since the
//!   call went out, the same guard as for a Redis read.
//! - A code stamped further in the future than the allowed clock skew is
//!   never cached and never used: it would outrank every later change.
//! - Upstream calls in flight and subjects in the coalescing table are
//!   bounded; past either bound a status is `Unavailable(Overloaded)`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{
    BreakerState, CacheKeys, CacheTtls, CachedStatus, CircuitBreaker, L1Cache, ProviderClient,
    Pseudonym, Put, Source, Status, StatusCache, StatusLookup, Unavailable,
};
use crate::domain::{Strictness, SubjectId};
use crate::metrics::Metrics;

/// Per subject of a call: its status, or why there is none.
type Answers = HashMap<Pseudonym, Result<CachedStatus, Unavailable>>;
type FetchOutcome = Result<Arc<Answers>, Unavailable>;
type SharedFetch = Shared<BoxFuture<'static, FetchOutcome>>;

pub struct ResolverOptions {
    pub ttls: CacheTtls,
    /// A provider call that failed fast within this window is retried once.
    pub retry_window: Duration,
    /// Bound on writing answers back to the shared cache.
    pub write_back_timeout: Duration,
    /// A code stamped further than this in the future is not used.
    pub max_future_skew: TimeDelta,
    /// Upstream calls in flight at once.
    pub max_concurrent_calls: usize,
    /// Subjects waiting for an upstream answer at once (coalescing table).
    pub max_in_flight_subjects: usize,
}

#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Arc<Metrics>,
    keys: CacheKeys,
    l1: Option<L1Cache>,
    cache: StatusCache,
    provider: ProviderClient,
    breaker: CircuitBreaker,
    options: ResolverOptions,
    /// Ranks ties between statuses; follows the policy's palettes.
    strictness: RwLock<Arc<Strictness>>,
    in_flight: Mutex<HashMap<Pseudonym, SharedFetch>>,
    calls: Arc<Semaphore>,
    /// Set while over a bound, so an overload is logged once, not per check.
    overloaded: AtomicBool,
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
        keys: CacheKeys,
        l1: Option<L1Cache>,
        cache: StatusCache,
        provider: ProviderClient,
        breaker: CircuitBreaker,
        options: ResolverOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        let calls = Arc::new(Semaphore::new(options.max_concurrent_calls.max(1)));
        Self {
            inner: Arc::new(Inner {
                metrics,
                keys,
                l1,
                cache,
                provider,
                breaker,
                options,
                strictness: RwLock::new(Arc::new(Strictness::default())),
                in_flight: Mutex::new(HashMap::new()),
                calls,
                overloaded: AtomicBool::new(false),
            }),
        }
    }

    /// Puts the policy's palettes in force for ranking ties.
    /// The shared cache, when it is Redis: other parts that must hold
    /// across replicas keep their keyed values there.
    pub fn shared_redis(&self) -> Option<super::RedisCache> {
        match &self.inner.cache {
            super::StatusCache::Redis(redis) => Some(redis.clone()),
            super::StatusCache::Memory(_) => None,
        }
    }

    /// The level a code maps to under the policy's palettes (`None`: a
    /// colour or issuer no palette lists).
    pub fn level_of(&self, code: &crate::domain::HealthCode) -> Option<crate::domain::Level> {
        self.inner.strictness().level_of(code)
    }

    /// The cache secrets (pseudonyms and keyed digests).
    pub fn cache_keys(&self) -> &super::CacheKeys {
        &self.inner.keys
    }

    pub fn set_strictness(&self, strictness: Strictness) {
        *self
            .inner
            .strictness
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(strictness);
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

    /// The upstream this resolver asks, as metrics name it.
    pub fn upstream(&self) -> &'static str {
        self.inner.breaker.name()
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
        let names: Vec<Pseudonym> = subjects.iter().map(|s| inner.keys.pseudonym(s)).collect();
        let mut lookups: Vec<Option<StatusLookup>> = vec![None; subjects.len()];
        let mut stale: Vec<Option<CachedStatus>> = vec![None; subjects.len()];

        if let Some(l1) = &inner.l1 {
            for (name, lookup) in names.iter().zip(lookups.iter_mut()) {
                if let Some(hit) = l1.get(name).filter(|c| ttls.is_fresh(c, now)) {
                    *lookup = Some(super::known(hit, Source::L1));
                }
            }
        }

        let wanted: Vec<usize> = (0..subjects.len())
            .filter(|i| lookups[*i].is_none())
            .collect();
        if !wanted.is_empty() {
            let keys: Vec<&Pseudonym> = wanted.iter().map(|i| &names[*i]).collect();
            // L1 with its invalidation count before the read.
            let l1_before_read = inner.l1.as_ref().map(|l1| (l1, l1.invalidations()));
            let read = tokio::time::timeout_at(deadline, inner.cache.get_many(&keys)).await;
            match read {
                Ok(Ok(entries)) => {
                    for (i, entry) in wanted.iter().zip(entries) {
                        let Some(cached) = entry else { continue };
                        if ttls.is_fresh(&cached, now) {
                            if let Some((l1, seen)) = l1_before_read {
                                l1.insert_read(names[*i].clone(), cached.clone(), seen);
                            }
                            lookups[*i] = Some(super::known(cached, inner.cache.source()));
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

        let mut misses: Vec<(&SubjectId, &Pseudonym)> = Vec::new();
        for ((subject, name), lookup) in subjects.iter().zip(&names).zip(&lookups) {
            if lookup.is_none() && !misses.iter().any(|(_, n)| *n == name) {
                misses.push((subject, name));
            }
        }
        let mut answers = HashMap::new();
        if !misses.is_empty() {
            answers = self.fetch(&misses, deadline).await;
        }

        lookups
            .into_iter()
            .zip(stale)
            .zip(&names)
            .map(|((lookup, stale), name)| match (lookup, stale) {
                (Some(lookup), _) => lookup,
                (None, stale) => match answers.get(name) {
                    Some(Ok((cached, source))) => super::known(cached.clone(), *source),
                    failed => match stale {
                        Some(copy) => super::known(copy, Source::Stale),
                        None => StatusLookup::Unavailable(match failed {
                            Some(Err(why)) => *why,
                            _ => Unavailable::Deadline,
                        }),
                    },
                },
            })
            .collect()
    }

    /// Answers for `subjects` from the provider (or from a call in flight,
    /// or from a write-back that just landed), waiting until `deadline`.
    /// A subject with no entry ran out of time.
    async fn fetch(
        &self,
        subjects: &[(&SubjectId, &Pseudonym)],
        deadline: Instant,
    ) -> HashMap<Pseudonym, Result<(CachedStatus, Source), Unavailable>> {
        let inner = &self.inner;
        let mut answers = HashMap::new();
        let mut waits: Vec<(SharedFetch, Vec<Pseudonym>)> = Vec::new();
        {
            let mut in_flight = inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let mut mine: Vec<(SubjectId, Pseudonym)> = Vec::new();
            let now = Utc::now();
            for (subject, name) in subjects {
                if let Some(call) = in_flight.get(*name) {
                    match waits.iter_mut().find(|(w, _)| w.ptr_eq(call)) {
                        Some((_, wanted)) => wanted.push((*name).clone()),
                        None => waits.push((call.clone(), vec![(*name).clone()])),
                    }
                } else if let Some(landed) = self.landed(name, now) {
                    answers.insert((*name).clone(), Ok(landed));
                } else {
                    mine.push(((*subject).clone(), (*name).clone()));
                }
            }
            if !mine.is_empty() {
                if in_flight.len() + mine.len() > inner.options.max_in_flight_subjects {
                    inner.overload("in-flight subjects");
                    for (_, name) in mine {
                        answers.insert(name, Err(Unavailable::Overloaded));
                    }
                } else {
                    let names: Vec<Pseudonym> = mine.iter().map(|(_, n)| n.clone()).collect();
                    let call = self.start_call(mine);
                    for name in &names {
                        in_flight.insert(name.clone(), call.clone());
                    }
                    waits.push((call, names));
                }
            }
        }

        for (call, wanted) in waits {
            match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(found)) => {
                    for name in wanted {
                        if let Some(answer) = found.get(&name) {
                            let answer = answer.clone().map(|c| (c, Source::Upstream));
                            answers.insert(name, answer);
                        }
                    }
                }
                Ok(Err(why)) => {
                    for name in wanted {
                        answers.insert(name, Err(why));
                    }
                }
                Err(_) => tracing::debug!("deadline reached while waiting for the provider"),
            }
        }
        answers
    }

    /// A fresh answer written back by a call that finished a moment ago.
    fn landed(
        &self,
        name: &Pseudonym,
        now: chrono::DateTime<Utc>,
    ) -> Option<(CachedStatus, Source)> {
        let ttls = self.inner.options.ttls;
        let hit = match (&self.inner.l1, &self.inner.cache) {
            (Some(l1), _) => l1.get(name),
            (None, StatusCache::Memory(memory)) => memory.get(name),
            (None, StatusCache::Redis(_)) => None,
        }?;
        ttls.is_fresh(&hit, now).then_some((hit, Source::Upstream))
    }

    fn start_call(&self, subjects: Vec<(SubjectId, Pseudonym)>) -> SharedFetch {
        let inner = Arc::clone(&self.inner);
        // Before the call goes out: an invalidation after this may announce
        // a change the answer predates.
        let seen = inner.l1.as_ref().map(L1Cache::invalidations);
        // The call runs on its own task: it carries the trace of the check
        // that started it.
        let trace = crate::telemetry::TRACE.try_with(Clone::clone).ok();
        let task = tokio::spawn(async move {
            let call = async {
                match Arc::clone(&inner.calls).try_acquire_owned() {
                    Ok(_permit) => {
                        let outcome = inner.call_provider(&subjects).await;
                        match outcome {
                            Ok(answers) => Ok(Arc::new(inner.write_back(answers, seen).await)),
                            Err(why) => Err(why),
                        }
                    }
                    Err(_) => {
                        inner.overload("concurrent upstream calls");
                        Err(Unavailable::Overloaded)
                    }
                }
            };
            let outcome = match trace {
                Some(trace) => crate::telemetry::TRACE.scope(trace, call).await,
                None => call.await,
            };
            let mut in_flight = inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for (_, name) in &subjects {
                in_flight.remove(name);
            }
            if in_flight.is_empty() {
                inner.overloaded.store(false, Ordering::Relaxed);
            }
            outcome
        });
        task.map(|joined| {
            joined.unwrap_or_else(|error| {
                tracing::error!(%error, "provider task failed");
                Err(Unavailable::Outage)
            })
        })
        .boxed()
        .shared()
    }

    /// Resolves a pushed status change: cached unless the cached status
    /// stands against it, or (nothing cached) it is older than `floor`;
    /// every replica drops its L1 copy either way. `stated_at` is when the
    /// provider said it (now for a code; a deletion's time, which orders
    /// "no code" against the codes before and after it).
    pub async fn apply_pushed(
        &self,
        subject: &SubjectId,
        status: Status,
        stated_at: chrono::DateTime<Utc>,
        floor: chrono::DateTime<Utc>,
    ) -> Result<Put, super::CacheError> {
        let inner = &self.inner;
        let strictness = inner.strictness();
        let status = CachedStatus::new(status, stated_at, &strictness);
        let active = inner.keys.pseudonym(subject);
        let names: Vec<Pseudonym> = std::iter::once(active.clone())
            .chain(inner.keys.previous_pseudonym(subject))
            .collect();
        let put = inner
            .cache
            .put_pushed(&names, status, floor.timestamp_micros())
            .await;
        if let Some(l1) = &inner.l1 {
            l1.invalidate(&active);
        }
        put
    }

    /// Records `digest` of a signed push; false when it is a replay.
    pub async fn first_sighting(
        &self,
        digest: &str,
        ttl: Duration,
    ) -> Result<bool, super::CacheError> {
        self.inner.cache.first_sighting(digest, ttl).await
    }

    pub async fn forget_sighting(&self, digest: &str) {
        self.inner.cache.forget_sighting(digest).await
    }
}

impl Inner {
    fn strictness(&self) -> Arc<Strictness> {
        Arc::clone(&self.strictness.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Counts an overload, and logs it when one begins.
    fn overload(&self, bound: &'static str) {
        self.metrics
            .provider_requests
            .with_label_values(&[self.breaker.name(), "overloaded"])
            .inc();
        if !self.overloaded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                bound,
                "upstream bound reached: statuses are unavailable until calls drain"
            );
        }
    }

    async fn call_provider(
        &self,
        subjects: &[(SubjectId, Pseudonym)],
    ) -> Result<Answers, Unavailable> {
        let refs: Vec<&SubjectId> = subjects.iter().map(|(s, _)| s).collect();
        let started = Instant::now();
        let mut retried = false;
        loop {
            if !self.breaker.allow() {
                self.metrics
                    .provider_requests
                    .with_label_values(&[self.breaker.name(), "circuit_open"])
                    .inc();
                return Err(Unavailable::Outage);
            }
            let timer = std::time::Instant::now();
            let result = self.provider.lookup(&refs).await;
            let upstream = self.breaker.name();
            self.metrics
                .provider_seconds
                .with_label_values(&[upstream])
                .observe(timer.elapsed().as_secs_f64());
            self.metrics
                .provider_requests
                .with_label_values(&[
                    upstream,
                    match &result {
                        Ok(_) => "ok",
                        Err(e) if e.is_timeout() => "timeout",
                        Err(e) if e.is_upstream_failure() => "error",
                        Err(_) => "refused",
                    },
                ])
                .inc();
            match &result {
                Ok(_) => self.breaker.record(true),
                Err(e) if e.is_upstream_failure() => self.breaker.record(false),
                Err(_) => self.breaker.release(),
            }
            match result {
                Ok(mut statuses) => {
                    let fetched_at = Utc::now();
                    let latest_allowed = fetched_at + self.options.max_future_skew;
                    let strictness = self.strictness();
                    return Ok(subjects
                        .iter()
                        .filter_map(|(subject, name)| {
                            let status = statuses.remove(subject.expose())?;
                            let answer = match &status {
                                Status::Registered(code) if code.stamped_at() > latest_allowed => {
                                    tracing::warn!(
                                        "provider stamped a code beyond the allowed clock skew; not used"
                                    );
                                    Err(Unavailable::Unusable)
                                }
                                _ => Ok(CachedStatus::new(status, fetched_at, &strictness)),
                            };
                            Some((name.clone(), answer))
                        })
                        .collect());
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
                    return Err(if error.is_upstream_failure() {
                        Unavailable::Outage
                    } else {
                        Unavailable::Unusable
                    });
                }
            }
        }
    }

    /// Writes answers to the shared cache and returns, per subject, the
    /// status that stands there (a pushed one may have landed meanwhile);
    /// L1 keeps each unless an invalidation arrived since `seen`.
    async fn write_back(&self, mut answers: Answers, seen: Option<u64>) -> Answers {
        let entries: Vec<(&Pseudonym, CachedStatus)> = answers
            .iter()
            .filter_map(|(name, answer)| Some((name, answer.as_ref().ok()?.clone())))
            .collect();
        let kept: Vec<(Pseudonym, CachedStatus)> = match tokio::time::timeout(
            self.options.write_back_timeout,
            self.cache.put_many(&entries),
        )
        .await
        {
            Ok(Ok(puts)) => entries
                .iter()
                .zip(puts)
                .filter_map(|((name, _), put)| match put {
                    Put::Kept(current) => Some(((*name).clone(), current)),
                    Put::Written | Put::Refused => None,
                })
                .collect(),
            Ok(Err(error)) => {
                self.metrics
                    .redis_errors
                    .with_label_values(&["write"])
                    .inc();
                tracing::debug!(%error, "status cache write-back failed");
                Vec::new()
            }
            Err(_) => {
                self.metrics
                    .redis_errors
                    .with_label_values(&["write"])
                    .inc();
                tracing::debug!("status cache write-back timed out");
                Vec::new()
            }
        };
        for (name, current) in kept {
            answers.insert(name, Ok(current));
        }
        if let (Some(l1), Some(seen)) = (&self.l1, seen) {
            for (name, answer) in &answers {
                if let Ok(cached) = answer {
                    l1.insert_read(name.clone(), cached.clone(), seen);
                }
            }
        }
        answers
    }
}
