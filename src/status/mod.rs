//! Resolving a subject's health-code status: caches in front of the provider.
//!
//! The resolver is the only part that knows the lookup order (cache, then the
//! provider in one batch) and it never fails as a whole: a subject whose
//! status cannot be determined comes back as `StatusLookup::Unavailable`, and
//! policy decides what that means. Each known status carries its provenance
//! (`Source`) and the time it was fetched from the provider.

mod cache;
mod memory_cache;
mod provider;
mod redis_cache;
mod resolver;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::HealthCode;

pub use cache::{CacheError, CacheTtls, StatusCache};
pub use memory_cache::MemoryCache;
pub use provider::{ProviderClient, ProviderError};
pub use redis_cache::{RedisCache, RedisCacheOptions};
pub use resolver::Resolver;

/// What the provider says about a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Registered(HealthCode),
    /// The provider has no code for this subject.
    NotRegistered,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusLookup {
    Known {
        status: Status,
        source: Source,
        fetched_at: DateTime<Utc>,
    },
    /// Neither a cache nor the provider could say.
    Unavailable,
}
