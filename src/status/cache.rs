//! The shared status cache seen by the resolver: Redis (shared by replicas)
//! or an in-process map (one machine, no server).
//!
//! An enum rather than a trait object: there are exactly two backends, and
//! static dispatch keeps the hot path free of boxing. Both keep an entry for
//! its fresh TTL plus `max_stale`; telling fresh from stale is the
//! resolver's job, from `fetched_at`. Both order writes of one subject by
//! `CachedStatus::supersedes` (newer wins, a tie keeps the stricter), and
//! tell the writer which status stands, so the answer given is the one kept.
//! Both key everything by the subject's pseudonym, never its id.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{CachedStatus, MemoryCache, Pseudonym, RedisCache, Source, Status};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis is skipped for a moment after a failure")]
    Skipped,
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    Written,
    /// The cached status stands (newer, or as new and stricter): this one.
    Kept(CachedStatus),
    /// Nothing was cached and the status is older than the floor given.
    Refused,
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
        subjects: &[&Pseudonym],
    ) -> Result<Vec<Option<CachedStatus>>, CacheError> {
        match self {
            StatusCache::Redis(cache) => cache.get_many(subjects).await,
            StatusCache::Memory(cache) => Ok(cache.get_many(subjects)),
        }
    }

    /// Writes statuses fetched from the provider (one round trip); per
    /// entry, what the write did.
    pub async fn put_many(
        &self,
        entries: &[(&Pseudonym, CachedStatus)],
    ) -> Result<Vec<Put>, CacheError> {
        match self {
            StatusCache::Redis(cache) => cache.put_many(entries).await,
            StatusCache::Memory(cache) => Ok(entries
                .iter()
                .map(|(subject, status)| cache.put(subject, status.clone(), None))
                .collect()),
        }
    }

    /// Writes a pushed status under each of `subjects` (the pseudonyms under
    /// the active and the previous cache secret) unless the cached one
    /// stands; with nothing cached, a status ordered before `floor_us` is
    /// refused. Every replica is told to drop its L1 copy either way.
    /// Returns what the write under the first pseudonym did.
    pub async fn put_pushed(
        &self,
        subjects: &[Pseudonym],
        status: CachedStatus,
        floor_us: i64,
    ) -> Result<Put, CacheError> {
        match self {
            StatusCache::Redis(cache) => cache.put_pushed(subjects, status, floor_us).await,
            // One process: only the active pseudonym is ever read.
            StatusCache::Memory(cache) => Ok(subjects.first().map_or(Put::Refused, |subject| {
                cache.put(subject, status, Some(floor_us))
            })),
        }
    }

    /// Records `digest` (of a signed push) as seen for `ttl`; false if it
    /// was seen already: a replay. Shared by replicas through Redis.
    pub async fn first_sighting(&self, digest: &str, ttl: Duration) -> Result<bool, CacheError> {
        match self {
            StatusCache::Redis(cache) => cache.first_sighting(digest, ttl).await,
            StatusCache::Memory(cache) => Ok(cache.first_sighting(digest, ttl)),
        }
    }

    /// Forgets a sighting whose push could not be applied, so the
    /// provider's retry is not taken for a replay.
    pub async fn forget_sighting(&self, digest: &str) {
        match self {
            StatusCache::Redis(cache) => cache.forget_sighting(digest).await,
            StatusCache::Memory(cache) => cache.forget_sighting(digest),
        }
    }
}
