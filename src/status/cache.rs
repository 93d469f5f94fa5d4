//! The shared status cache seen by the resolver: Redis (shared by replicas)
//! or an in-process map (one machine, no server).
//!
//! An enum rather than a trait object: there are exactly two backends, and
//! static dispatch keeps the hot path free of boxing. Both keep an entry for
//! its fresh TTL plus `max_stale`; telling fresh from stale is the
//! resolver's job, from `fetched_at`. Both order writes of one subject by
//! `CachedStatus::order_us`, so an older status never replaces a newer one.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{CachedStatus, MemoryCache, RedisCache, Source, Status};
use crate::domain::SubjectId;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis is skipped for a moment after a failure")]
    Skipped,
}

#[derive(Debug, Clone, Copy)]
pub struct CacheTtls {
    pub registered: Duration,
    /// "No code registered" is kept shorter: the subject may be applying now.
    pub not_registered: Duration,
    /// How long past its TTL a status is kept as a stale copy.
    pub max_stale: Duration,
}

impl CacheTtls {
    pub fn fresh_for(&self, status: &Status) -> Duration {
        match status {
            Status::Registered(_) | Status::Itinerary(_) => self.registered,
            Status::NotRegistered => self.not_registered,
        }
    }

    /// How long a cache keeps the entry at all.
    pub fn keep_for(&self, status: &Status) -> Duration {
        self.fresh_for(status) + self.max_stale
    }

    pub fn is_fresh(&self, cached: &CachedStatus, now: DateTime<Utc>) -> bool {
        let age = (now - cached.fetched_at).to_std().unwrap_or_default();
        age <= self.fresh_for(&cached.status)
    }
}

#[derive(Clone)]
pub enum StatusCache {
    Redis(RedisCache),
    Memory(MemoryCache),
}

impl StatusCache {
    /// The provenance reported for a fresh hit in this cache.
    pub fn source(&self) -> Source {
        match self {
            StatusCache::Redis(_) => Source::Redis,
            StatusCache::Memory(_) => Source::L1,
        }
    }

    /// One entry per subject, in order; one round trip for all of them.
    pub async fn get_many(
        &self,
        subjects: &[&SubjectId],
    ) -> Result<Vec<Option<CachedStatus>>, CacheError> {
        match self {
            StatusCache::Redis(cache) => cache.get_many(subjects).await,
            StatusCache::Memory(cache) => Ok(cache.get_many(subjects)),
        }
    }

    /// Writes statuses fetched from the provider (one round trip).
    pub async fn put_many(&self, entries: &[(&SubjectId, CachedStatus)]) -> Result<(), CacheError> {
        match self {
            StatusCache::Redis(cache) => cache.put_many(entries).await,
            StatusCache::Memory(cache) => {
                for (subject, status) in entries {
                    cache.put_if_newer(subject, status.clone());
                }
                Ok(())
            }
        }
    }

    /// Writes a pushed status unless a newer one is cached, and tells every
    /// replica to drop its L1 copy. Returns whether it was written.
    pub async fn put_pushed(
        &self,
        subject: &SubjectId,
        status: CachedStatus,
    ) -> Result<bool, CacheError> {
        match self {
            StatusCache::Redis(cache) => cache.put_pushed(subject, status).await,
            StatusCache::Memory(cache) => Ok(cache.put_if_newer(subject, status)),
        }
    }
}
