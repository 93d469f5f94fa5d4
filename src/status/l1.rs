//! L1: a small in-process cache in front of Redis, so a hot subject costs no
//! Redis round trip on every check. Bounded in entries and short-lived
//! (default 2 s): a code pushed to another replica reaches this one by an
//! invalidation message, and at worst by expiry.

use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::CachedStatus;
use crate::domain::SubjectId;

/// An entry's age is checked on read rather than expired by moka: with
/// moka's `time_to_live`, every expiry removed the entry and left a
/// tombstone in its hash table, and rehashing those away (plus the expiry
/// housekeeping) was about 6% of the CPU of a decision at peak. A stale
/// entry is a miss; the answer fetched for it replaces it in place. The
/// entry bound still holds, so memory stays bounded.
#[derive(Clone)]
pub struct L1Cache {
    entries: Cache<SubjectId, (CachedStatus, Instant)>,
    ttl: Duration,
}

impl L1Cache {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self {
            entries: Cache::builder().max_capacity(max_entries).build(),
            ttl,
        }
    }

    pub fn get(&self, subject: &SubjectId) -> Option<CachedStatus> {
        let (status, stored) = self.entries.get(subject)?;
        (stored.elapsed() < self.ttl).then_some(status)
    }

    pub fn insert(&self, subject: SubjectId, status: CachedStatus) {
        self.entries.insert(subject, (status, Instant::now()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    fn status() -> CachedStatus {
        CachedStatus::new(Status::NotRegistered, chrono::Utc::now())
    }

    #[test]
    fn an_entry_is_served_within_its_ttl_and_missed_after_it_or_once_invalidated() {
        let subject = SubjectId::parse("P-0000001").unwrap();
        let long = L1Cache::new(10, Duration::from_secs(3600));
        long.insert(subject.clone(), status());
        assert!(long.get(&subject).is_some(), "fresh entry must be served");

        let short = L1Cache::new(10, Duration::from_millis(1));
        short.insert(subject.clone(), status());
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            short.get(&subject).is_none(),
            "an entry past its TTL is a miss"
        );
        short.insert(subject.clone(), status());
        short.invalidate(&subject);
        assert!(
            short.get(&subject).is_none(),
            "an invalidated entry is gone"
        );
    }
}
