//! Retries of one check answered once: the `Idempotency-Key` header.
//!
//! A dispatch backend that times out and retries must not get a second
//! decision (and a second audit record) for the same trip. The first
//! request with a key claims it; the decision's answer is kept for
//! `checks.idempotency_ttl_secs` (24 h by default) and every later request
//! with the same key and the same body gets that answer again, with the
//! same `decision_id` and `Idempotent-Replayed: true`. The same key with a
//! different body is refused (422): it is a client bug, and answering it
//! either way would hide one. A request whose key is claimed by a check
//! still being decided is told to retry (409).
//!
//! Keys are per client and hook. In Redis (when the status cache is Redis,
//! so every replica sees them) they are stored under a keyed digest of
//! (client, hook, key), never the key itself; the body is remembered as a
//! keyed digest of the parsed check (so whitespace does not make a body
//! different), and the stored answer has no subject id: a candidate's id
//! is put back from the retried request, which names the same subjects.
//! Without Redis the keys live in a bounded in-process map.
//!
//! If the store cannot be reached the check is decided anyway, without the
//! guarantee (a logged warning, a metric): a retry may then make a second
//! decision, which is recorded like any other and loosens nothing.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Check;
use crate::metrics::Metrics;
use crate::status::{CacheKeys, RedisCache};

pub const HEADER: &str = "Idempotency-Key";
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// How long a claim holds while its check is decided: long past any
/// deadline, short enough that a replica that died mid-check does not
/// block the key for a day.
const PENDING_TTL: Duration = Duration::from_secs(60);

/// A key as sent: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const PROBLEM: &'static str = "must be 1 to 255 visible ASCII characters";

    pub fn parse(raw: &[u8]) -> Option<Self> {
        let valid = (1..=255).contains(&raw.len()) && raw.iter().all(|b| (0x21..=0x7e).contains(b));
        valid.then(|| Self(String::from_utf8_lossy(raw).into_owned()))
    }
}

/// The answer given the first time, as it is kept and replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// The Content-Language it was rendered in.
    pub language: String,
    /// The JSON answer without candidates' ids.
    pub body: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    fingerprint: String,
    #[serde(default)]
    answer: Option<StoredAnswer>,
}

/// What a request with a key may do.
pub enum Claim {
    /// The first with this key: decide, then `complete` (or `release`).
    First(Ticket),
    /// Decided already: give this answer again.
    Replay(StoredAnswer),
    /// The key was used with another body.
    Mismatch,
    /// A request with this key is being decided now.
    InProgress,
    /// The store cannot be reached: decide without the guarantee.
    Unavailable,
}

/// A claimed key, to be completed with the answer or released.
pub struct Ticket {
    name: String,
    fingerprint: String,
}

enum Store {
    Shared(RedisCache),
    Local(moka::sync::Cache<String, Arc<Vec<u8>>>),
}

pub struct Idempotency {
    store: Store,
    keys: CacheKeys,
    ttl: Duration,
    metrics: Arc<Metrics>,
}

impl Idempotency {
    /// Shared through `redis` when given, else in process (at most
    /// `max_local_keys`).
    pub fn new(
        redis: Option<RedisCache>,
        keys: CacheKeys,
        ttl: Duration,
        max_local_keys: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        let store = match redis {
            Some(redis) => Store::Shared(redis),
            None => Store::Local(
                moka::sync::Cache::builder()
                    .max_capacity(max_local_keys)
                    .time_to_live(ttl)
                    .build(),
            ),
        };
        Self {
            store,
            keys,
            ttl,
            metrics,
        }
    }

    /// Claims `key` of `client` for `check`, or says what was done with it.
    pub async fn claim(&self, client: Option<&str>, key: &IdempotencyKey, check: &Check) -> Claim {
        let name = format!(
            "idem:{}",
            self.keys
                .digest(&[
                    b"idempotency-key",
                    client.unwrap_or_default().as_bytes(),
                    check.hook.as_str().as_bytes(),
                    key.0.as_bytes(),
                ])
                .to_hex()
        );
        let fingerprint = self.fingerprint(check);
        let pending = serde_json::to_vec(&Entry {
            fingerprint: fingerprint.clone(),
            answer: None,
        })
        .unwrap_or_default();
        let existing = match &self.store {
            Store::Shared(redis) => match redis.kv_claim(&name, &pending, PENDING_TTL).await {
                Ok(existing) => existing,
                Err(error) => {
                    tracing::warn!(%error, "idempotency store unavailable; deciding without it");
                    self.count("unavailable");
                    return Claim::Unavailable;
                }
            },
            Store::Local(map) => {
                let entry = map.entry(name.clone()).or_insert_with(|| Arc::new(pending));
                (!entry.is_fresh()).then(|| entry.into_value().as_ref().clone())
            }
        };
        let Some(existing) = existing else {
            self.count("first");
            return Claim::First(Ticket { name, fingerprint });
        };
        let claim = match serde_json::from_slice::<Entry>(&existing) {
            Ok(entry) if entry.fingerprint != fingerprint => Claim::Mismatch,
            Ok(Entry {
                answer: Some(answer),
                ..
            }) => Claim::Replay(answer),
            Ok(_) => Claim::InProgress,
            // Not ours to read: treat as taken, never as free.
            Err(_) => Claim::InProgress,
        };
        self.count(match claim {
            Claim::Mismatch => "mismatch",
            Claim::Replay(_) => "replayed",
            _ => "in_progress",
        });
        claim
    }

    /// Keeps the answer for the key's lifetime.
    pub async fn complete(&self, ticket: Ticket, answer: StoredAnswer) {
        let entry = serde_json::to_vec(&Entry {
            fingerprint: ticket.fingerprint,
            answer: Some(answer),
        })
        .unwrap_or_default();
        match &self.store {
            Store::Shared(redis) => {
                if let Err(error) = redis.kv_set(&ticket.name, &entry, self.ttl).await {
                    tracing::warn!(%error, "could not keep an answer for its idempotency key; a retry will be told to wait, then decided anew");
                    self.count("unavailable");
                }
            }
            Store::Local(map) => map.insert(ticket.name, Arc::new(entry)),
        }
    }

    /// Frees a key whose check gave no decision, so a retry may decide.
    pub async fn release(&self, ticket: Ticket) {
        match &self.store {
            Store::Shared(redis) => {
                if let Err(error) = redis.kv_delete(&ticket.name).await {
                    tracing::warn!(%error, "could not release an idempotency key; it frees itself shortly");
                }
            }
            Store::Local(map) => map.invalidate(&ticket.name),
        }
    }

    /// A keyed digest of what the check asks: hook, city, reference and
    /// every party with its subject, in order.
    fn fingerprint(&self, check: &Check) -> String {
        let reference = check.reference.as_ref().map_or("", |r| r.as_str());
        let mut parts: Vec<Vec<u8>> = vec![
            b"check".to_vec(),
            check.hook.as_str().into(),
            check.city.as_str().into(),
            reference.into(),
        ];
        for (party, subject) in check.parties() {
            let index = party.index().map_or(String::new(), |i| i.to_string());
            parts.push(format!("{}:{index}", party.role()).into_bytes());
            parts.push(subject.expose().as_bytes().to_vec());
        }
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        self.keys.digest(&parts).to_hex()
    }

    fn count(&self, outcome: &str) {
        self.metrics.idempotency.with_label_values(&[outcome]).inc();
    }
}

/// The answer as kept: the candidates' ids taken out.
pub fn without_ids(mut body: serde_json::Value) -> serde_json::Value {
    for list in ["eligible_drivers", "excluded_drivers"] {
        if let Some(drivers) = body.get_mut(list).and_then(|l| l.as_array_mut()) {
            for driver in drivers {
                if let Some(driver) = driver.as_object_mut() {
                    driver.remove("id");
                }
            }
        }
    }
    body
}

/// A kept answer with the candidates' ids put back from `check`.
pub fn with_ids(mut body: serde_json::Value, check: &Check) -> serde_json::Value {
    let candidates: Vec<&str> = check
        .parties()
        .filter(|(party, _)| matches!(party, crate::domain::Party::Candidate(_)))
        .map(|(_, subject)| subject.expose())
        .collect();
    for list in ["eligible_drivers", "excluded_drivers"] {
        if let Some(drivers) = body.get_mut(list).and_then(|l| l.as_array_mut()) {
            for driver in drivers {
                let index = driver["index"].as_u64().map(|i| i as usize);
                if let (Some(object), Some(id)) = (
                    driver.as_object_mut(),
                    index.and_then(|i| candidates.get(i)),
                ) {
                    object.insert("id".into(), serde_json::Value::from(*id));
                }
            }
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse(b"retry-7f3a").is_some());
        assert!(IdempotencyKey::parse(b"").is_none());
        assert!(IdempotencyKey::parse(b"has space").is_none());
        assert!(IdempotencyKey::parse(&[b'a'; 256]).is_none());
        assert!(IdempotencyKey::parse(&[b'a'; 255]).is_some());
        assert!(IdempotencyKey::parse("键".as_bytes()).is_none());
    }

    #[test]
    fn candidates_ids_are_kept_out_and_put_back() {
        let body = serde_json::json!({
            "decision_id": "x",
            "eligible_drivers": [{"index": 1, "id": "D-2"}],
            "excluded_drivers": [{"index": 0, "id": "D-1", "reasons": []}],
        });
        let kept = without_ids(body.clone());
        assert!(!kept.to_string().contains("D-"), "{kept}");
        let check = Check::try_from(crate::domain::CandidatesBody {
            city: "hangzhou".into(),
            trip_id: "T-1".into(),
            passengers: vec![crate::domain::PartyBody { id: "P-1".into() }],
            drivers: vec![
                crate::domain::PartyBody { id: "D-1".into() },
                crate::domain::PartyBody { id: "D-2".into() },
            ],
        })
        .unwrap();
        assert_eq!(with_ids(kept, &check), body);
    }
}
