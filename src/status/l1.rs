//! L1: a small in-process cache in front of Redis, so a hot subject costs no
//! Redis round trip on every check. Bounded in entries and short-lived
//! (default 2 s): a code pushed to another replica reaches this one by an
//! invalidation message, and at worst by expiry.

use std::time::Duration;

use moka::sync::Cache;

use super::CachedStatus;
use crate::domain::SubjectId;

#[derive(Clone)]
pub struct L1Cache {
    entries: Cache<SubjectId, CachedStatus>,
}

impl L1Cache {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn get(&self, subject: &SubjectId) -> Option<CachedStatus> {
        self.entries.get(subject)
    }

    pub fn insert(&self, subject: SubjectId, status: CachedStatus) {
        self.entries.insert(subject, status);
    }

    pub fn invalidate(&self, subject: &SubjectId) {
        self.entries.invalidate(subject);
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}

impl L1Cache {
    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }
}
