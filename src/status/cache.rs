//! The status cache seen by the resolver: Redis (shared by replicas) or an
//! in-process map (one machine, no server).
//!
//! An enum rather than a trait object: there are exactly two backends, and
//! static dispatch keeps the hot path free of boxing.

use std::time::Duration;

use super::{CachedStatus, MemoryCache, RedisCache, Source, Status};
use crate::domain::SubjectId;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// How long a cached status is served before the provider is asked again.
#[derive(Debug, Clone, Copy)]
pub struct CacheTtls {
    pub registered: Duration,
    /// "No code registered" is kept shorter: the subject may be applying now.
    pub not_registered: Duration,
}

impl CacheTtls {
    pub fn for_status(&self, status: &Status) -> Duration {
        match status {
            Status::Registered(_) => self.registered,
            Status::NotRegistered => self.not_registered,
        }
    }
}

#[derive(Clone)]
pub enum StatusCache {
    Redis(RedisCache),
    Memory(MemoryCache),
}

impl StatusCache {
    /// The provenance reported for a hit in this cache.
    pub fn source(&self) -> Source {
        match self {
            StatusCache::Redis(_) => Source::Redis,
            StatusCache::Memory(_) => Source::L1,
        }
    }

    /// One entry per subject, in order; one round trip for all of them.
    pub async fn get_many(
        &self,
        subjects: &[SubjectId],
    ) -> Result<Vec<Option<CachedStatus>>, CacheError> {
        match self {
            StatusCache::Redis(cache) => cache.get_many(subjects).await,
            StatusCache::Memory(cache) => Ok(cache.get_many(subjects).await),
        }
    }

    pub async fn put_many(&self, entries: &[(&SubjectId, CachedStatus)]) -> Result<(), CacheError> {
        match self {
            StatusCache::Redis(cache) => cache.put_many(entries).await,
            StatusCache::Memory(cache) => {
                cache.put_many(entries).await;
                Ok(())
            }
        }
    }
}
