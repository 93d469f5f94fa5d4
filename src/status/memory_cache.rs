//! The embedded status cache: a bounded in-process map (moka) whose entries
//! live for their TTL plus the stale allowance.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use super::{CacheTtls, CachedStatus};
use crate::domain::SubjectId;

#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<SubjectId, CachedStatus>,
    /// Serialises compare-and-write; writes are rare next to reads.
    write: std::sync::Arc<Mutex<()>>,
}

struct ExpireByStatus(CacheTtls);

impl Expiry<SubjectId, CachedStatus> for ExpireByStatus {
    fn expire_after_create(
        &self,
        _key: &SubjectId,
        value: &CachedStatus,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.0.keep_for(&value.status))
    }

    fn expire_after_update(
        &self,
        _key: &SubjectId,
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
        }
    }

    pub fn get(&self, subject: &SubjectId) -> Option<CachedStatus> {
        self.entries.get(subject)
    }

    pub fn get_many(&self, subjects: &[&SubjectId]) -> Vec<Option<CachedStatus>> {
        subjects.iter().map(|s| self.entries.get(*s)).collect()
    }

    /// Returns whether it was written (no newer status was cached).
    pub fn put_if_newer(&self, subject: &SubjectId, status: CachedStatus) -> bool {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = self.entries.get(subject) {
            if current.order_us > status.order_us {
                return false;
            }
        }
        self.entries.insert(subject.clone(), status);
        true
    }
}
