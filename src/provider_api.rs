//! The wire contract of the health-code provider API.
//!
//! tripgate's upstream client and the bundled simulator both speak through
//! these types, so the two cannot drift apart. The contract is documented in
//! the README ("Provider API").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most subject ids one batch request may carry.
pub const MAX_BATCH: usize = 1000;

/// `GET /v1/health-codes/{subject_id}` → 200 with this body, or 404.
///
/// Contract v2 states two times: `color_since` (when the colour last
/// changed) and `renewed_at` (the last daily check-in). A v1 answer has
/// `updated_at` only, read as `renewed_at` (and no `color_since`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthCodeRecord {
    pub subject_id: String,
    pub color: String,
    pub issuer: String,
    /// v2: when the colour last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_since: Option<DateTime<Utc>>,
    /// v2: the last daily check-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<DateTime<Utc>>,
    /// v1: the only time a v1 provider states; read as `renewed_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl HealthCodeRecord {
    /// A v2 record.
    pub fn v2(
        subject_id: &str,
        color: &str,
        issuer: &str,
        color_since: DateTime<Utc>,
        renewed_at: DateTime<Utc>,
    ) -> Self {
        Self {
            subject_id: subject_id.to_owned(),
            color: color.to_owned(),
            issuer: issuer.to_owned(),
            color_since: Some(color_since),
            renewed_at: Some(renewed_at),
            updated_at: None,
        }
    }

    /// The last check-in: `renewed_at`, or a v1 record's `updated_at`.
    pub fn renewed(&self) -> Option<DateTime<Utc>> {
        self.renewed_at.or(self.updated_at)
    }
}

/// A pushed deletion (`POST /v1/status-events`): the provider no longer
/// holds a code for the subject, as of `deleted_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeDeleted {
    pub subject_id: String,
    pub deleted_at: DateTime<Utc>,
}

/// What a status push carries: a code (v1 or v2) or a deletion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StatusPush {
    Deleted(CodeDeleted),
    Code(HealthCodeRecord),
}

/// `POST /v1/health-codes/batch` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchLookup {
    pub subject_ids: Vec<String>,
}

/// `POST /v1/health-codes/batch` response: every requested id is in exactly
/// one of the two lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub codes: Vec<HealthCodeRecord>,
    pub not_found: Vec<String>,
}

/// One visit on an itinerary card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// Region code, e.g. `330100`.
    pub region: String,
    /// none, low, medium or high.
    pub risk: String,
    pub date: chrono::NaiveDate,
}

/// `GET /v1/itineraries/{subject_id}`: the regions visited in the last
/// `days` days with their risk level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItineraryRecord {
    pub subject_id: String,
    pub days: u32,
    pub visits: Vec<Visit>,
}

/// `POST /v1/itineraries/batch` response (request: `BatchLookup`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ItineraryBatchAnswer {
    pub itineraries: Vec<ItineraryRecord>,
    pub not_found: Vec<String>,
}

/// `PUT /admin/itineraries/{subject_id}` (simulator only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetItinerary {
    pub visits: Vec<Visit>,
}

/// `PUT /admin/health-codes/{subject_id}` (simulator only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetHealthCode {
    pub color: String,
    pub issuer: String,
    /// Defaults to now, or to the current code's `color_since` when the
    /// colour is unchanged.
    #[serde(default)]
    pub color_since: Option<DateTime<Utc>>,
    /// Defaults to now. (`updated_at`, the v1 name, is read as this.)
    #[serde(default, alias = "updated_at")]
    pub renewed_at: Option<DateTime<Utc>>,
}

/// `PUT /admin/faults` (simulator only). All zero / false clears them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of provider requests answered with 503, from 0.0 to 1.0.
    #[serde(default)]
    pub error_rate: f64,
    /// Every provider request is answered with 503.
    #[serde(default)]
    pub outage: bool,
    /// A batch naming a subject with no code is refused with 400, as a
    /// provider that validates ids would (the ids a caller invented).
    #[serde(default)]
    pub refuse_unknown: bool,
    /// Answers in contract v1 (`updated_at` only), as an older provider.
    #[serde(default)]
    pub contract_v1: bool,
}

/// `GET /admin/stats` (simulator only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulatorStats {
    /// Provider requests served so far (single and batch lookups).
    pub requests: u64,
    /// Subject ids looked up so far, over all requests.
    pub subjects_looked_up: u64,
    /// Requests answered with an injected error or outage.
    pub injected_errors: u64,
    pub faults: Faults,
    /// Itinerary lookups (single and batch).
    pub itinerary_requests: u64,
    /// Code changes pushed to the webhook, and pushes given up on.
    pub pushes_delivered: u64,
    pub pushes_failed: u64,
    /// Colour changes, issues and deletions made by `--transitions`.
    #[serde(default)]
    pub transitions: u64,
    /// The trace id of the last batch lookup that carried a W3C
    /// `traceparent` (to check that tripgate propagates it).
    #[serde(default)]
    pub last_traceparent_trace_id: Option<String>,
    pub population: u64,
    pub overrides: u64,
}

/// The provider's error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderError {
    pub error: String,
}

/// Pushed status events (`POST /v1/status-events` on tripgate) carry a
/// `StatusPush` body (a `HealthCodeRecord` or a `CodeDeleted`) and two headers: the Unix time in seconds, and
/// `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub const EVENT_TIMESTAMP_HEADER: &str = "X-Tripgate-Timestamp";
pub const EVENT_SIGNATURE_HEADER: &str = "X-Tripgate-Signature";

fn event_mac(secret: &[u8], timestamp: &str, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::{KeyInit, Mac};
    // HMAC accepts keys of any length.
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value for an event.
pub fn sign_event(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let digest = event_mac(secret, timestamp, body).finalize().into_bytes();
    format!("sha256={}", crate::hexcode::encode(&digest))
}

/// Checks a signature header value in constant time.
pub fn event_signature_matches(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    use hmac::Mac;
    let hex = signature.strip_prefix("sha256=").unwrap_or(signature);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    event_mac(secret, timestamp, body)
        .verify_slice(&bytes)
        .is_ok()
}

/// `PUT /admin/webhook` (simulator only): where to push code changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}
