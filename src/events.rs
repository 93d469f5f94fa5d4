//! Status changes pushed by the provider (`POST /v1/status-events`).
//!
//! A push is trusted only if its signature (HMAC-SHA256 under the shared
//! secret, over timestamp + "." + body) matches and its timestamp is within
//! `max_skew` of now, which bounds replays. A valid push is applied through
//! the resolver, which keeps the newer of the pushed and the cached status
//! and makes every replica drop its L1 copy.

use chrono::{TimeDelta, Utc};

use crate::domain::{Colour, HealthCode, IssuerId, SubjectId};
use crate::provider_api::{event_signature_matches, HealthCodeRecord};
use crate::status::{CacheError, Resolver};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the signature does not match the body and timestamp")]
    BadSignature,
    #[error("the timestamp is not Unix seconds or is more than {0} s away from now")]
    StaleTimestamp(u64),
    #[error("the event body is not a health-code record: {0}")]
    BadBody(String),
    #[error("the status cache could not store the event: {0}")]
    Unavailable(#[from] CacheError),
}

pub struct StatusEvents {
    resolver: Resolver,
    secret: Vec<u8>,
    max_skew: TimeDelta,
}

impl StatusEvents {
    pub fn new(resolver: Resolver, secret: String, max_skew_secs: u64) -> Self {
        Self {
            resolver,
            secret: secret.into_bytes(),
            max_skew: TimeDelta::seconds(max_skew_secs as i64),
        }
    }

    /// Verifies and applies one push; returns whether it changed the
    /// cached status (false: a newer status was already known).
    pub async fn apply(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<bool, EventError> {
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
        let record: HealthCodeRecord =
            serde_json::from_slice(body).map_err(|e| EventError::BadBody(e.to_string()))?;
        let subject = SubjectId::parse(&record.subject_id)
            .map_err(|e| EventError::BadBody(format!("subject_id {e}")))?;
        if record.color.trim().is_empty() || record.issuer.trim().is_empty() {
            return Err(EventError::BadBody(
                "color and issuer must not be empty".into(),
            ));
        }
        let code = HealthCode {
            colour: Colour::new(&record.color),
            issuer: IssuerId::new(&record.issuer),
            updated_at: record.updated_at,
        };
        Ok(self.resolver.apply_pushed(&subject, code).await?)
    }
}
