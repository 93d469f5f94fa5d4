//! Resolving a subject's health-code status: in-process L1, the shared cache
//! (Redis or in-process), then the provider.
//!
//! The resolver is the only part that knows the lookup order and it never
//! fails as a whole: a subject whose status cannot be determined in time
//! comes back as `StatusLookup::Unavailable`, and policy decides what that
//! means. Each known status carries its provenance (`Source`) and the time
//! it was fetched from the provider. Cached statuses stay *fresh* for their
//! TTL and remain usable as *stale* copies for `max_stale` more, but only
//! when the provider cannot answer.
//!
//! Two statuses of one subject are ordered by `CachedStatus::supersedes`:
//! the newer `updated_at` wins, and on a tie the stricter level stands, so
//! no race, replay or eviction can let green replace red with the same
//! stamp. Outside the process a subject is only ever named by its keyed
//! pseudonym (`pseudonym`).

mod breaker;
mod cache;
mod l1;
mod memory_cache;
#[cfg(test)]
mod properties;
mod provider;
mod pseudonym;
mod redis_cache;
mod resolver;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{HealthCode, ItineraryVerdict, Strictness, UNKNOWN_RANK};

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use cache::{CacheError, CacheTtls, Put, StatusCache};
pub use l1::L1Cache;
pub use memory_cache::MemoryCache;
pub use provider::{ProviderClient, ProviderError, SourceKind};
pub use pseudonym::{CacheKeys, Pseudonym};
pub use redis_cache::{spawn_invalidation_listener, RedisCache, RedisCacheOptions};
pub use resolver::{Resolver, ResolverHealth, ResolverOptions};

/// What the provider says about a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Registered(HealthCode),
    /// The provider has no code (or itinerary) for this subject.
    NotRegistered,
    /// From the itinerary source: its verdict, not the travel history.
    Itinerary(ItineraryVerdict),
}

/// Where a status came from on this lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The in-process cache.
    L1,
    Redis,
    Upstream,
    /// A cached copy past its fresh TTL, used because the provider failed.
    Stale,
}

impl Source {
    pub const ALL: [Source; 4] = [Source::L1, Source::Redis, Source::Upstream, Source::Stale];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::L1 => "l1",
            Source::Redis => "redis",
            Source::Upstream => "upstream",
            Source::Stale => "stale",
        }
    }
}

/// A status as stored in a cache: what the provider said, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedStatus {
    pub status: Status,
    pub fetched_at: DateTime<Utc>,
    /// Orders writes of one subject: the code's `updated_at` (or, for "not
    /// registered" and itineraries, the fetch time) in microseconds; Redis
    /// compares it in a script.
    pub order_us: i64,
    /// Breaks ties of `order_us`: the higher (stricter) stands. 0 green,
    /// 1 yellow, 2 red, 3 anything not known to be one of them.
    pub rank: u8,
}

impl CachedStatus {
    pub fn new(status: Status, fetched_at: DateTime<Utc>, strictness: &Strictness) -> Self {
        let (order_us, rank) = match &status {
            Status::Registered(code) => (code.updated_at.timestamp_micros(), strictness.rank(code)),
            Status::NotRegistered => (fetched_at.timestamp_micros(), UNKNOWN_RANK),
            Status::Itinerary(_) => (fetched_at.timestamp_micros(), 0),
        };
        Self {
            status,
            fetched_at,
            order_us,
            rank,
        }
    }

    /// Whether this status may replace `current`: it is newer, or as new
    /// and at least as strict. The one ordering rule of every cache (the
    /// Redis script mirrors it).
    pub fn supersedes(&self, current: &CachedStatus) -> bool {
        (self.order_us, self.rank) >= (current.order_us, current.rank)
    }
}

/// Why a status could not be had. Policy waives only what is not the
/// caller's doing and not tripgate's own refusal to trust an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The upstream failed (timeout, 5xx, connection) or its circuit is
    /// open: an outage.
    Outage,
    /// The configured deadline passed before an answer came.
    Deadline,
    /// A deadline the caller shortened passed before an answer came (set
    /// by the gate): the caller's own doing, so never waived.
    CallerDeadline,
    /// The upstream's answer cannot be used: refused (4xx), not the
    /// contract, incomplete, or a code stamped beyond the allowed clock skew.
    Unusable,
    /// tripgate's own bound on upstream calls in flight was reached.
    Overloaded,
}

impl Unavailable {
    /// Whether a city's `allow_degraded` may waive it: only what happened
    /// to tripgate (an upstream outage, the configured deadline), never
    /// what a caller can cause (a shortened deadline, invented ids, load).
    pub fn is_waivable(self) -> bool {
        matches!(self, Unavailable::Outage | Unavailable::Deadline)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::Outage => "outage",
            Unavailable::Deadline => "deadline",
            Unavailable::CallerDeadline => "caller_deadline",
            Unavailable::Unusable => "unusable",
            Unavailable::Overloaded => "overloaded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusLookup {
    Known {
        status: Status,
        source: Source,
        fetched_at: DateTime<Utc>,
    },
    /// Neither a cache nor the provider could say in time.
    Unavailable(Unavailable),
}

impl StatusLookup {
    fn known(cached: CachedStatus, source: Source) -> Self {
        StatusLookup::Known {
            status: cached.status,
            source,
            fetched_at: cached.fetched_at,
        }
    }
}
