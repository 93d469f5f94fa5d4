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

mod breaker;
mod cache;
mod l1;
mod memory_cache;
mod provider;
mod redis_cache;
mod resolver;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{HealthCode, ItineraryVerdict};

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use cache::{CacheError, CacheTtls, StatusCache};
pub use l1::L1Cache;
pub use memory_cache::MemoryCache;
pub use provider::{ProviderClient, ProviderError, SourceKind};
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
    /// Orders writes of one subject: a write never replaces a value with a
    /// larger order. The code's `updated_at` (or, for "not registered", the
    /// fetch time) in microseconds; Redis compares it in a script.
    pub order_us: i64,
}

impl CachedStatus {
    pub fn new(status: Status, fetched_at: DateTime<Utc>) -> Self {
        let order_us = match &status {
            Status::Registered(code) => code.updated_at.timestamp_micros(),
            Status::NotRegistered | Status::Itinerary(_) => fetched_at.timestamp_micros(),
        };
        Self {
            status,
            fetched_at,
            order_us,
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
    Unavailable,
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
