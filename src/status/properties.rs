//! The ordering rules of the status path as a property: whatever the order
//! of pushes, provider answers (each may be overtaken by pushes while in
//! flight) and evictions, the status served for a subject is never less
//! strict than the strictest status stamped with the newest stamp
//! that the shared cache or L1 still holds.
//!
//! The model follows the resolver's protocol step by step: a push writes
//! the shared cache and invalidates L1; a provider call notes L1's
//! invalidation count when it goes out, writes its answer back to the
//! shared cache, answers with what the cache kept and offers that to L1
//! under the count; a read serves L1, else the shared cache (offering the
//! hit to L1 under the count taken before the read).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::{CacheKeys, CacheTtls, CachedStatus, L1Cache, MemoryCache, Put, Status};
use crate::domain::{Colour, HealthCode, IssuerId, Level, Strictness, SubjectId};

#[derive(Debug, Clone)]
enum Step {
    Push {
        colour: usize,
        at: i64,
    },
    /// A provider call goes out; it answers `colour` stamped `at`.
    CallOut {
        colour: usize,
        at: i64,
    },
    /// The oldest call in flight answers.
    CallBack,
    EvictCache,
    EvictL1,
    Read,
}

const COLOURS: [&str; 4] = ["green", "yellow", "red", "purple"];

fn step() -> impl Strategy<Value = Step> {
    let colour = 0..COLOURS.len();
    let at = 0i64..6; // few stamps, so ties are common
    prop_oneof![
        3 => (colour.clone(), at.clone()).prop_map(|(colour, at)| Step::Push { colour, at }),
        3 => (colour, at).prop_map(|(colour, at)| Step::CallOut { colour, at }),
        3 => Just(Step::CallBack),
        1 => Just(Step::EvictCache),
        1 => Just(Step::EvictL1),
        3 => Just(Step::Read),
    ]
}

fn strictness() -> Strictness {
    let palette = [
        ("green", Level::Green),
        ("yellow", Level::Yellow),
        ("red", Level::Red),
    ]
    .into_iter()
    .map(|(c, l)| (Colour::new(c), l))
    .collect();
    Strictness::new([(IssuerId::new("hangzhou"), palette)].into())
}

fn status(colour: usize, at: i64, strictness: &Strictness) -> CachedStatus {
    let updated_at = Utc.timestamp_opt(1_790_000_000 + at, 0).unwrap();
    CachedStatus::new(
        Status::Registered(HealthCode {
            colour: Colour::new(COLOURS[colour]),
            issuer: IssuerId::new("hangzhou"),
            renewed_at: updated_at,
            colour_since: None,
        }),
        Utc::now(),
        strictness,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn the_status_served_is_never_less_strict_than_the_newest_held(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        let strictness = strictness();
        let ttls = CacheTtls {
            registered: Duration::from_secs(300),
            not_registered: Duration::from_secs(30),
            max_stale: Duration::from_secs(600),
        };
        let shared = MemoryCache::new(100, ttls);
        let l1 = L1Cache::new(100, Duration::from_secs(3600));
        let subject = CacheKeys::new(b"property-test-secret", None)
            .pseudonym(&SubjectId::parse("13800138000").unwrap());
        let mut calls: Vec<(CachedStatus, u64)> = Vec::new();

        for step in steps {
            match step {
                Step::Push { colour, at } => {
                    shared.put(&subject, status(colour, at, &strictness), None);
                    l1.invalidate(&subject);
                }
                Step::CallOut { colour, at } => {
                    calls.push((status(colour, at, &strictness), l1.invalidations()));
                }
                Step::CallBack => {
                    if calls.is_empty() {
                        continue;
                    }
                    let (answer, seen) = calls.remove(0);
                    let answer = match shared.put(&subject, answer.clone(), None) {
                        Put::Kept(current) => current,
                        Put::Written | Put::Refused => answer,
                    };
                    l1.insert_read(subject.clone(), answer, seen);
                }
                Step::EvictCache => shared.evict(&subject),
                Step::EvictL1 => l1.evict(&subject),
                Step::Read => {
                    if l1.get(&subject).is_none() {
                        let seen = l1.invalidations();
                        if let Some(hit) = shared.get(&subject) {
                            l1.insert_read(subject.clone(), hit, seen);
                        }
                    }
                }
            }

            let held: Vec<CachedStatus> =
                [l1.get(&subject), shared.get(&subject)].into_iter().flatten().collect();
            let served = l1.get(&subject).or_else(|| shared.get(&subject));
            if let Some(served) = served {
                let newest = held.iter().map(|s| s.order_us).max().unwrap();
                let strictest = held
                    .iter()
                    .filter(|s| s.order_us == newest)
                    .map(|s| s.rank)
                    .max()
                    .unwrap();
                prop_assert_eq!(served.order_us, newest, "an older status is served");
                prop_assert!(served.rank >= strictest, "a less strict status is served");
            }
        }
    }
}
