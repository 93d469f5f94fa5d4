//! The lookup order for the subjects of one check: cache (one round trip for
//! all of them), then the provider for the misses (one batch call), then the
//! answers written back to the cache.

use chrono::Utc;

use super::{CachedStatus, ProviderClient, Source, StatusCache, StatusLookup};
use crate::domain::SubjectId;

#[derive(Clone)]
pub struct Resolver {
    cache: StatusCache,
    provider: ProviderClient,
}

impl Resolver {
    pub fn new(cache: StatusCache, provider: ProviderClient) -> Self {
        Self { cache, provider }
    }

    /// One lookup per subject, in the order given. Never fails as a whole.
    pub async fn resolve(&self, subjects: &[SubjectId]) -> Vec<StatusLookup> {
        let cached = match self.cache.get_many(subjects).await {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(%error, "status cache read failed; asking the provider");
                vec![None; subjects.len()]
            }
        };
        let cache_source = self.cache.source();
        let mut lookups: Vec<Option<StatusLookup>> = cached
            .into_iter()
            .map(|hit| {
                hit.map(|c| StatusLookup::Known {
                    status: c.status,
                    source: cache_source,
                    fetched_at: c.fetched_at,
                })
            })
            .collect();

        let mut misses: Vec<&SubjectId> = Vec::new();
        for (subject, lookup) in subjects.iter().zip(&lookups) {
            if lookup.is_none() && !misses.contains(&subject) {
                misses.push(subject);
            }
        }
        if !misses.is_empty() {
            self.fill_from_provider(subjects, &misses, &mut lookups)
                .await;
        }

        lookups
            .into_iter()
            .map(|lookup| lookup.unwrap_or(StatusLookup::Unavailable))
            .collect()
    }

    async fn fill_from_provider(
        &self,
        subjects: &[SubjectId],
        misses: &[&SubjectId],
        lookups: &mut [Option<StatusLookup>],
    ) {
        let mut answers = match self.provider.lookup(misses).await {
            Ok(answers) => answers,
            Err(error) => {
                tracing::warn!(%error, subjects = misses.len(), "provider lookup failed");
                return;
            }
        };
        let fetched_at = Utc::now();
        let fresh: Vec<(&SubjectId, CachedStatus)> = misses
            .iter()
            .filter_map(|subject| {
                let status = answers.remove(subject.expose())?;
                Some((*subject, CachedStatus { status, fetched_at }))
            })
            .collect();

        for (subject, lookup) in subjects.iter().zip(lookups.iter_mut()) {
            if lookup.is_some() {
                continue;
            }
            if let Some((_, cached)) = fresh.iter().find(|(s, _)| *s == subject) {
                *lookup = Some(StatusLookup::Known {
                    status: cached.status.clone(),
                    source: Source::Upstream,
                    fetched_at,
                });
            }
        }

        if let Err(error) = self.cache.put_many(&fresh).await {
            tracing::warn!(%error, "status cache write-back failed");
        }
    }
}
