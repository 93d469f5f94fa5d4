//! The embedded status cache: a bounded in-process map (moka) whose entries
//! live for their TTL plus the stale allowance.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use super::{CacheTtls, CachedStatus, Pseudonym, Put};

#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<Pseudonym, CachedStatus>,
    /// Serialises compare-and-write; writes are rare next to reads.
    write: std::sync::Arc<Mutex<()>>,
    /// Digests of signed pushes seen, with when (the replay guard).
    sightings: Cache<String, Instant>,
}

/// Bound of the replay guard; pushes are rate-limited per client, and a
/// replay that outlives an evicted sighting is still ordered by
/// `CachedStatus::supersedes`, so it cannot undo a newer status.
const MAX_SIGHTINGS: u64 = 100_000;

struct ExpireByStatus(CacheTtls);

impl Expiry<Pseudonym, CachedStatus> for ExpireByStatus {
    fn expire_after_create(
        &self,
        _key: &Pseudonym,
        value: &CachedStatus,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.0.keep_for(&value.status))
    }

    fn expire_after_update(
        &self,
        _key: &Pseudonym,
        value: &CachedStatus,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.0.keep_for(&value.status))
    }
}

impl MemoryCache {
    pub fn new(max_entries: u64, ttls: CacheTtls) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(ExpireByStatus(ttls))
                .build(),
            write: Default::default(),
            sightings: Cache::builder().max_capacity(MAX_SIGHTINGS).build(),
        }
    }

    pub fn first_sighting(&self, digest: &str, ttl: Duration) -> bool {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seen) = self.sightings.get(digest) {
            if seen.elapsed() < ttl {
                return false;
            }
        }
        self.sightings.insert(digest.to_owned(), Instant::now());
        true
    }

    pub fn forget_sighting(&self, digest: &str) {
        self.sightings.invalidate(digest);
    }

    pub fn get(&self, subject: &Pseudonym) -> Option<CachedStatus> {
        self.entries.get(subject)
    }

    /// Drops an entry, as the size bound or the TTL does (for tests of the
    /// ordering rules).
    #[cfg(test)]
    pub fn evict(&self, subject: &Pseudonym) {
        self.entries.invalidate(subject);
    }

    pub fn get_many(&self, subjects: &[&Pseudonym]) -> Vec<Option<CachedStatus>> {
        subjects.iter().map(|s| self.entries.get(*s)).collect()
    }

    /// Writes `status` unless the cached one stands against it
    /// (`CachedStatus::supersedes`); with nothing cached, a status ordered
    /// before `floor_us` is refused.
    pub fn put(&self, subject: &Pseudonym, status: CachedStatus, floor_us: Option<i64>) -> Put {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        match self.entries.get(subject) {
            Some(current) if !status.supersedes(&current) => return Put::Kept(current),
            None if floor_us.is_some_and(|floor| status.order_us < floor) => return Put::Refused,
            _ => {}
        }
        self.entries.insert(subject.clone(), status);
        Put::Written
    }
}
