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
//! the newer stamp (`HealthCode::stamped_at`) wins, and on a tie the stricter level stands, so
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

pub use crate::domain::{BreakerState, Source, Status, StatusLookup, Unavailable};
use crate::domain::{Strictness, UNKNOWN_RANK};

pub use breaker::{BreakerConfig, CircuitBreaker};
pub use cache::{CacheError, CacheTtls, Put, StatusCache};
pub use l1::L1Cache;
pub use memory_cache::MemoryCache;
pub use provider::{ProviderClient, ProviderError, SourceKind};
pub use pseudonym::{CacheKeys, Pseudonym};
pub use redis_cache::{spawn_invalidation_listener, RedisAccess, RedisCache, RedisCacheOptions};
pub use resolver::{Resolver, ResolverHealth, ResolverOptions};

/// A status as stored in a cache: what the provider said, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedStatus {
    pub status: Status,
    pub fetched_at: DateTime<Utc>,
    /// Orders writes of one subject: the code's `stamped_at` (or, for "not
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
            Status::Registered(code) => {
                (code.stamped_at().timestamp_micros(), strictness.rank(code))
            }
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

/// A lookup of what a cache holds, with where it came from.
pub(crate) fn known(cached: CachedStatus, source: Source) -> StatusLookup {
    StatusLookup::Known {
        status: cached.status,
        source,
        fetched_at: cached.fetched_at,
    }
}
