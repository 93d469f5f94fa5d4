//! L1: a small in-process cache in front of Redis, so a hot subject costs no
//! Redis round trip on every check. Bounded in entries and short-lived
//! (default 30 s): a code pushed to another replica reaches this one by an
//! invalidation message, and at worst by expiry. A Redis round trip costs
//! the HTTP workers far more than the rest of a decision (measured at peak:
//! 14 µs of worker CPU per decision with every subject in L1, 30 with 2-s
//! entries), so the lifetime is what an invalidation that never arrives may
//! cost, not what freshness needs: statuses in Redis live 300 s anyway.
//!
//! An invalidation that overtakes a Redis read (the read returns the old
//! status, the message for the new one has already been applied) would
//! leave the old status here for a whole lifetime; so a value read from
//! Redis is kept only if no invalidation arrived while it was being read
//! (`insert_read`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::sync::Cache;

use super::CachedStatus;
use super::Pseudonym;

/// An entry's age is checked on read rather than expired by moka: with
/// moka's `time_to_live`, every expiry removed the entry and left a
/// tombstone in its hash table, and rehashing those away (plus the expiry
/// housekeeping) was about 6% of the CPU of a decision at peak. A stale
/// entry is a miss; the answer fetched for it replaces it in place. The
/// entry bound still holds, so memory stays bounded.
#[derive(Clone)]
pub struct L1Cache {
    entries: Cache<Pseudonym, (CachedStatus, Instant)>,
    ttl: Duration,
    /// Invalidations so far (of any subject), counted before they remove.
    invalidations: Arc<AtomicU64>,
}

impl L1Cache {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self {
            entries: Cache::builder().max_capacity(max_entries).build(),
            ttl,
            invalidations: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn get(&self, subject: &Pseudonym) -> Option<CachedStatus> {
        let (status, stored) = self.entries.get(subject)?;
        (stored.elapsed() < self.ttl).then_some(status)
    }

    /// Taken before a Redis read, for `insert_read`.
    pub fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    /// Keeps a status read from Redis or answered by the provider, unless an
    /// invalidation arrived since `seen` (taken before the read or call):
    /// the value may predate the change that invalidation announced. Every
    /// insert goes through here: a provider answer in flight while a push
    /// lands must not sit in L1 for a lifetime either. Checked again after
    /// inserting, because an invalidation counts itself before it removes:
    /// one counted between the two checks takes the entry out here, one
    /// counted after the second removes it itself.
    pub fn insert_read(&self, subject: Pseudonym, status: CachedStatus, seen: u64) {
        if self.invalidations() != seen {
            // Whatever L1 holds may be older than what was just written to
            // the shared cache: the next check reads the shared cache.
            self.entries.invalidate(&subject);
            return;
        }
        // A fresh entry that stands against this one (newer, or as new and
        // stricter) stays: L1 never goes back in time either.
        let ttl = self.ttl;
        self.entries
            .entry(subject.clone())
            .and_compute_with(|current| match current {
                Some(entry)
                    if entry.value().1.elapsed() < ttl && !status.supersedes(&entry.value().0) =>
                {
                    Op::Nop
                }
                _ => Op::Put((status, Instant::now())),
            });
        if self.invalidations() != seen {
            self.entries.invalidate(&subject);
        }
    }

    /// Drops an entry without counting an invalidation, as the size bound
    /// does (for tests of the ordering rules).
    #[cfg(test)]
    pub fn evict(&self, subject: &Pseudonym) {
        self.entries.invalidate(subject);
    }

    pub fn invalidate(&self, subject: &Pseudonym) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(subject);
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}

impl L1Cache {
    pub fn invalidate_all(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Strictness, SubjectId};
    use crate::status::{CacheKeys, Status};

    fn status() -> CachedStatus {
        CachedStatus::new(
            Status::NotRegistered,
            chrono::Utc::now(),
            &Strictness::default(),
        )
    }

    fn pseudonym(id: &str) -> Pseudonym {
        CacheKeys::new(b"l1-test-cache-secret", None).pseudonym(&SubjectId::parse(id).unwrap())
    }

    #[test]
    fn an_entry_is_served_within_its_ttl_and_missed_after_it_or_once_invalidated() {
        let subject = pseudonym("P-0000001");
        let long = L1Cache::new(10, Duration::from_secs(3600));
        long.insert_read(subject.clone(), status(), long.invalidations());
        assert!(long.get(&subject).is_some(), "fresh entry must be served");

        let short = L1Cache::new(10, Duration::from_millis(1));
        short.insert_read(subject.clone(), status(), short.invalidations());
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            short.get(&subject).is_none(),
            "an entry past its TTL is a miss"
        );
        short.insert_read(subject.clone(), status(), short.invalidations());
        short.invalidate(&subject);
        assert!(
            short.get(&subject).is_none(),
            "an invalidated entry is gone"
        );
    }

    #[test]
    fn a_redis_read_overtaken_by_an_invalidation_is_not_kept() {
        let subject = pseudonym("P-0000001");
        let other = pseudonym("P-0000002");
        let l1 = L1Cache::new(10, Duration::from_secs(3600));

        let seen = l1.invalidations();
        l1.insert_read(subject.clone(), status(), seen);
        assert!(l1.get(&subject).is_some(), "no invalidation since: kept");

        let seen = l1.invalidations();
        // The read is under way when a pushed change is announced.
        l1.invalidate(&other);
        l1.insert_read(subject.clone(), status(), seen);
        l1.insert_read(other.clone(), status(), seen);
        assert!(
            l1.get(&other).is_none(),
            "the old value of the changed subject must not be kept"
        );

        // A clone (another worker's handle) shares the count.
        let seen = l1.invalidations();
        l1.clone().invalidate_all();
        l1.insert_read(other.clone(), status(), seen);
        assert!(l1.get(&other).is_none());
        assert!(l1.get(&subject).is_none(), "invalidate_all cleared it");
    }
}
