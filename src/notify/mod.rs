//! Status-change notifications to dispatch: a driver who turns red on duty
//! is taken off it.
//!
//! A decision lets people through at one moment; dispatch acts on it for
//! hours. So after a subject passes a driver-shift, trip or passenger-order
//! check, the notifier remembers which decisions let it through (under the
//! subject's keyed pseudonym, for `notify.window_secs`; in Redis when the
//! cache is Redis, so the replica that receives the push sees the passes
//! every replica gave). When a push turns that subject yellow, red or
//! no-code, the passes are taken (each is announced once) and an event per
//! party role goes to the outbox, which delivers it to `notify.url`, signed
//! like the provider's pushes:
//! `{"event": "status_changed", "event_id", "level", "decision_ids",
//! "trip_ids", "party", "changed_at"}`. The event never names the subject:
//! dispatch knows who its own decisions were about.
//!
//! Remembering is off the answer's path (a spawned task); if Redis cannot
//! take it, the pass is not remembered, which is logged and counted as a
//! failed notification.

mod outbox;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Decided, Hook, SubjectId};
use crate::metrics::Metrics;
use crate::status::{CacheKeys, Pseudonym, RedisCache};

pub use outbox::{Outbox, OutboxError};

/// The most passes remembered per subject (the newest are kept).
const MAX_PASSES_PER_SUBJECT: usize = 64;

/// One decision that let a subject through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pass {
    decision_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trip_id: Option<String>,
    party: String,
}

/// What a push turned a subject into, when dispatch must hear of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Yellow,
    Red,
    /// A colour no palette lists: never green.
    Unknown,
    NoCode,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Yellow => "yellow",
            Level::Red => "red",
            Level::Unknown => "unknown",
            Level::NoCode => "no_code",
        }
    }
}

/// The event as delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusChanged {
    pub event: String,
    /// Unique per event: a receiver that sees one twice (a retry whose
    /// answer was lost) can tell.
    pub event_id: String,
    pub level: String,
    pub decision_ids: Vec<String>,
    pub trip_ids: Vec<String>,
    pub party: String,
    pub changed_at: DateTime<Utc>,
}

enum Passes {
    Shared(RedisCache),
    Local(moka::sync::Cache<Pseudonym, Arc<std::sync::Mutex<Vec<Pass>>>>),
}

pub struct Notifier {
    passes: Passes,
    keys: CacheKeys,
    window: Duration,
    outbox: Outbox,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn new(
        redis: Option<RedisCache>,
        keys: CacheKeys,
        window: Duration,
        outbox: Outbox,
        metrics: Arc<Metrics>,
    ) -> Self {
        let passes = match redis {
            Some(redis) => Passes::Shared(redis),
            None => Passes::Local(
                moka::sync::Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_live(window)
                    .build(),
            ),
        };
        Self {
            passes,
            keys,
            window,
            outbox,
            metrics,
        }
    }

    /// Remembers every party the decision let through, for the hooks that
    /// put people on the road. Off the answer's path.
    pub fn remember(self: &Arc<Self>, decided: &Decided, subjects: &[&SubjectId]) {
        if !matches!(
            decided.hook,
            Hook::DriverShift | Hook::Trip | Hook::PassengerOrder
        ) || decided.decision.outcome != crate::domain::Outcome::Allow
        {
            return;
        }
        let passes: Vec<(Pseudonym, Pass)> = decided
            .parties
            .iter()
            .zip(subjects)
            .filter(|(report, _)| report.eligible)
            .map(|(report, subject)| {
                (
                    self.keys.pseudonym(subject),
                    Pass {
                        decision_id: decided.decision_id.to_string(),
                        trip_id: decided.reference.as_ref().map(|r| r.as_str().to_owned()),
                        party: report.party.role().to_owned(),
                    },
                )
            })
            .collect();
        let notifier = Arc::clone(self);
        tokio::spawn(async move {
            for (pseudonym, pass) in passes {
                notifier.keep(pseudonym, pass).await;
            }
        });
    }

    async fn keep(&self, pseudonym: Pseudonym, pass: Pass) {
        match &self.passes {
            Passes::Shared(redis) => {
                let value = serde_json::to_vec(&pass).unwrap_or_default();
                let name = format!("pass:{}", pseudonym.to_hex());
                if let Err(error) = redis
                    .kv_append(&name, &value, MAX_PASSES_PER_SUBJECT, self.window)
                    .await
                {
                    tracing::warn!(%error, "could not remember a pass for notifications");
                    self.metrics
                        .notify_events
                        .with_label_values(&["failed"])
                        .inc();
                }
            }
            Passes::Local(map) => {
                let list = map.get_with(pseudonym, Default::default);
                let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
                list.push(pass);
                let excess = list.len().saturating_sub(MAX_PASSES_PER_SUBJECT);
                list.drain(..excess);
            }
        }
    }

    /// A push turned `subject` into `level` at `changed_at`: announces the
    /// passes it had, once.
    pub async fn changed(&self, subject: &SubjectId, level: Level, changed_at: DateTime<Utc>) {
        let pseudonym = self.keys.pseudonym(subject);
        let passes: Vec<Pass> = match &self.passes {
            Passes::Shared(redis) => {
                match redis.kv_take(&format!("pass:{}", pseudonym.to_hex())).await {
                    Ok(items) => items
                        .iter()
                        .filter_map(|item| serde_json::from_slice(item).ok())
                        .collect(),
                    Err(error) => {
                        tracing::error!(%error, "could not read the passes of a subject whose status changed; dispatch is not told");
                        self.metrics
                            .notify_events
                            .with_label_values(&["failed"])
                            .inc();
                        return;
                    }
                }
            }
            Passes::Local(map) => map
                .remove(&pseudonym)
                .map(|list| std::mem::take(&mut *list.lock().unwrap_or_else(|p| p.into_inner())))
                .unwrap_or_default(),
        };
        for event in events(&passes, level, changed_at) {
            self.outbox.enqueue(&event).await;
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

/// One event per party role, decisions in the order they were made.
fn events(passes: &[Pass], level: Level, changed_at: DateTime<Utc>) -> Vec<StatusChanged> {
    let mut roles: Vec<&str> = passes.iter().map(|p| p.party.as_str()).collect();
    roles.sort_unstable();
    roles.dedup();
    roles
        .into_iter()
        .map(|role| {
            let of_role = || passes.iter().filter(move |p| p.party == role);
            let mut decision_ids: Vec<String> = of_role().map(|p| p.decision_id.clone()).collect();
            decision_ids.dedup();
            let mut trip_ids: Vec<String> = of_role().filter_map(|p| p.trip_id.clone()).collect();
            trip_ids.sort_unstable();
            trip_ids.dedup();
            StatusChanged {
                event: "status_changed".into(),
                event_id: uuid::Uuid::now_v7().to_string(),
                level: level.as_str().into(),
                decision_ids,
                trip_ids,
                party: role.into(),
                changed_at,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_role_with_its_decisions_and_trips() {
        let pass = |id: &str, trip: Option<&str>, party: &str| Pass {
            decision_id: id.into(),
            trip_id: trip.map(Into::into),
            party: party.into(),
        };
        let passes = [
            pass("d1", None, "driver"),
            pass("d2", Some("T-1"), "driver"),
            pass("d3", Some("T-1"), "driver"),
            pass("d4", Some("O-9"), "passenger"),
        ];
        let now = Utc::now();
        let events = events(&passes, Level::Red, now);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].party, "driver");
        assert_eq!(events[0].decision_ids, ["d1", "d2", "d3"]);
        assert_eq!(events[0].trip_ids, ["T-1"]);
        assert_eq!(events[0].level, "red");
        assert_eq!(events[1].party, "passenger");
        assert_eq!(events[1].trip_ids, ["O-9"]);
        assert_ne!(events[0].event_id, events[1].event_id);
        assert!(super::events(&[], Level::Red, now).is_empty());
    }
}
