//! The embedded status cache: a bounded in-process map (moka) whose entries
//! expire after the TTL that fits their status.

use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::{CacheTtls, CachedStatus};
use crate::domain::SubjectId;

#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<SubjectId, CachedStatus>,
}

struct ExpireByStatus(CacheTtls);

impl Expiry<SubjectId, CachedStatus> for ExpireByStatus {
    fn expire_after_create(
        &self,
        _key: &SubjectId,
        value: &CachedStatus,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.0.for_status(&value.status))
    }

    fn expire_after_update(
        &self,
        _key: &SubjectId,
        value: &CachedStatus,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.0.for_status(&value.status))
    }
}

impl MemoryCache {
    pub fn new(max_entries: u64, ttls: CacheTtls) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(ExpireByStatus(ttls))
                .build(),
        }
    }

    pub async fn get_many(&self, subjects: &[SubjectId]) -> Vec<Option<CachedStatus>> {
        let mut found = Vec::with_capacity(subjects.len());
        for subject in subjects {
            found.push(self.entries.get(subject).await);
        }
        found
    }

    pub async fn put_many(&self, entries: &[(&SubjectId, CachedStatus)]) {
        for (subject, status) in entries {
            self.entries
                .insert((*subject).clone(), status.clone())
                .await;
        }
    }
}
