//! Status changes pushed by the provider (`POST /v1/status-events`).
//!
//! A push is trusted only if its signature (HMAC-SHA256 under the shared
//! secret, over timestamp + "." + body) matches, its timestamp is within
//! `max_skew` of now, and it is not an exact replay of a push seen within
//! that window (the replay guard lives in the shared cache, so it holds
//! across replicas). A code stamped more than `max_skew` in the future is
//! refused: it would outrank every later change. A valid push is applied
//! through the resolver: the cached status stands if it is newer, or as new
//! and stricter; with nothing cached, a push older than `max_skew` is not
//! applied (the provider is asked on the next check). Every replica drops
//! its L1 copy either way.

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::Status;
use crate::domain::{Colour, HealthCode, IssuerId, SubjectId};
use crate::notify::Level;
use crate::provider_api::{event_signature_matches, StatusPush};
use crate::status::{CacheError, Put, Resolver};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the signature does not match the body and timestamp")]
    BadSignature,
    #[error("the timestamp is not Unix seconds or is more than {0} s away from now")]
    StaleTimestamp(u64),
    #[error("the event body is neither a health-code record nor a deletion: {0}")]
    BadBody(String),
    #[error("the event is stamped more than {0} s in the future; it is not applied")]
    FutureCode(u64),
    #[error("this signed event was already received; a replay is not applied again")]
    Replayed,
    #[error("the status cache could not store the event: {0}")]
    Unavailable(#[from] CacheError),
}

pub struct StatusEvents {
    resolver: Resolver,
    secret: Vec<u8>,
    max_skew: TimeDelta,
    /// Told of every applied change that takes a subject off the road.
    notifier: Option<std::sync::Arc<crate::notify::Notifier>>,
}

impl StatusEvents {
    pub fn new(resolver: Resolver, secret: crate::config::Secret, max_skew_secs: u64) -> Self {
        Self {
            resolver,
            secret: secret.expose().as_bytes().to_vec(),
            max_skew: TimeDelta::seconds(max_skew_secs as i64),
            notifier: None,
        }
    }

    pub fn with_notifier(
        mut self,
        notifier: Option<std::sync::Arc<crate::notify::Notifier>>,
    ) -> Self {
        self.notifier = notifier;
        self
    }

    /// What dispatch must hear of a change to `status`, and since when:
    /// anything but a green code.
    fn off_the_road(
        &self,
        status: &Status,
        stated_at: DateTime<Utc>,
    ) -> Option<(Level, DateTime<Utc>)> {
        match status {
            Status::Registered(code) => {
                let level = match self.resolver.level_of(code) {
                    Some(crate::domain::Level::Green) => return None,
                    Some(crate::domain::Level::Yellow) => Level::Yellow,
                    Some(crate::domain::Level::Red) => Level::Red,
                    None => Level::Unknown,
                };
                Some((level, code.colour_since.unwrap_or(code.renewed_at)))
            }
            Status::NotRegistered => Some((Level::NoCode, stated_at)),
            Status::Itinerary(_) => None,
        }
    }

    /// Verifies and applies one push; returns what the cache did with it.
    pub async fn apply(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Put, EventError> {
        let timestamp = timestamp.ok_or(EventError::MissingHeader(
            crate::provider_api::EVENT_TIMESTAMP_HEADER,
        ))?;
        let signature = signature.ok_or(EventError::MissingHeader(
            crate::provider_api::EVENT_SIGNATURE_HEADER,
        ))?;
        if !event_signature_matches(&self.secret, timestamp, body, signature) {
            return Err(EventError::BadSignature);
        }
        let skew = self.max_skew.num_seconds() as u64;
        let sent = timestamp
            .parse::<i64>()
            .ok()
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .ok_or(EventError::StaleTimestamp(skew))?;
        if (Utc::now() - sent).abs() > self.max_skew {
            return Err(EventError::StaleTimestamp(skew));
        }
        // Told apart by `deleted_at`, so that the error names what is wrong
        // with the one the provider meant.
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| EventError::BadBody(e.to_string()))?;
        let bad = |kind: &str, e: serde_json::Error| EventError::BadBody(format!("{kind}: {e}"));
        let push = if value.get("deleted_at").is_some() {
            StatusPush::Deleted(serde_json::from_value(value).map_err(|e| bad("deletion", e))?)
        } else {
            StatusPush::Code(
                serde_json::from_value(value).map_err(|e| bad("health-code record", e))?,
            )
        };
        let now = Utc::now();
        let (subject_id, status, stated_at) = match push {
            StatusPush::Code(record) => {
                if record.color.trim().is_empty() || record.issuer.trim().is_empty() {
                    return Err(EventError::BadBody(
                        "color and issuer must not be empty".into(),
                    ));
                }
                let renewed_at = record.renewed().ok_or_else(|| {
                    EventError::BadBody("renewed_at (or v1 updated_at) is required".into())
                })?;
                let code = HealthCode {
                    colour: Colour::new(&record.color),
                    issuer: IssuerId::new(&record.issuer),
                    renewed_at,
                    colour_since: record.color_since,
                };
                if code.stamped_at() > now + self.max_skew {
                    return Err(EventError::FutureCode(skew));
                }
                (record.subject_id, Status::Registered(code), now)
            }
            StatusPush::Deleted(deleted) => {
                if deleted.deleted_at > now + self.max_skew {
                    return Err(EventError::FutureCode(skew));
                }
                (
                    deleted.subject_id,
                    Status::NotRegistered,
                    deleted.deleted_at.min(now),
                )
            }
        };
        let subject = SubjectId::parse(&subject_id)
            .map_err(|e| EventError::BadBody(format!("subject_id {e}")))?;
        // What was signed, not how the signature is spelt (its hex may be
        // written in either case, with or without `sha256=`); a replay can
        // only arrive while the timestamp is within the skew on either side.
        let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(body);
        let digest = crate::hexcode::encode(&crate::hexcode::sha256(&signed));
        let window = (self.max_skew * 2).to_std().unwrap_or_default();
        if !self.resolver.first_sighting(&digest, window).await? {
            return Err(EventError::Replayed);
        }
        match self
            .resolver
            .apply_pushed(&subject, status.clone(), stated_at, now - self.max_skew)
            .await
        {
            Ok(Put::Written) => {
                if let (Some(notifier), Some((level, changed_at))) =
                    (&self.notifier, self.off_the_road(&status, stated_at))
                {
                    notifier.changed(&subject, level, changed_at).await;
                }
                Ok(Put::Written)
            }
            Ok(put) => Ok(put),
            Err(error) => {
                // Not applied: the provider's retry must not count as a replay.
                self.resolver.forget_sighting(&digest).await;
                Err(error.into())
            }
        }
    }
}
