//! One decision's audit record and its canonical encoding.
//!
//! The record holds no raw subject id: parties are `subject_ref`s, an HMAC of
//! the id under the key named by `key_id`. The canonical encoding (the
//! struct serialised as JSON, fields in declaration order, no maps) is what
//! the chain hash covers; changing this struct changes that encoding, so any
//! change must bump `FORMAT`.

use serde::{Deserialize, Serialize};

use crate::domain::ReasonCode;

pub const FORMAT: u32 = 1;

/// About the encoded size of a trip's record (three parties).
pub const RECORD_BYTES: usize = 1024;

pub use crate::domain::Hook;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditReason {
    /// `driver`, `passenger` or `all`.
    pub party: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<u32>,
    pub code: String,
    /// The policy rule that fired (`<city>.<hook>[.<check>]`).
    pub rule: String,
    /// E.g. the risk area of ITINERARY_RISK_AREA.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditParty {
    pub party: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<u32>,
    /// base64url(HMAC-SHA256(subject key, raw id)), see `keys`.
    pub subject_ref: String,
    /// The standing policy gave it: green, yellow, red, unknown, no_code ...
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
    /// l1, redis, upstream or stale; absent when the status was unavailable.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    /// Seconds between the code's last renewal and the decision.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status_age_secs: Option<i64>,
    /// For candidate drivers: eligible (true) or excluded (false).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eligible: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub format: u32,
    pub decision_id: String,
    /// Microseconds since the Unix epoch: an integer, so the encoding is exact.
    pub decided_at_us: i64,
    pub hook: Hook,
    pub trip_id: String,
    pub city: String,
    /// `allow` or `reject`.
    pub decision: String,
    pub degraded: bool,
    pub policy_version: String,
    /// The instance that decided; also the chain the record belongs to.
    pub instance_id: String,
    /// The key that made the subject refs and sealed the record.
    pub key_id: String,
    pub reasons: Vec<AuditReason>,
    pub parties: Vec<AuditParty>,
}

impl AuditRecord {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Sized for a trip's record up front: growing from serde_json's
        // default 128 bytes took five reallocations per record.
        let mut bytes = Vec::with_capacity(RECORD_BYTES);
        // A struct of strings, integers and vectors always serialises.
        let _ = serde_json::to_writer(&mut bytes, self);
        bytes
    }

    /// One bit per reason code present, for filtering by reason in SQL.
    pub fn reason_mask(&self) -> i64 {
        self.reasons
            .iter()
            .filter_map(|r| ReasonCode::parse(&r.code))
            .fold(0, |mask, code| mask | reason_bit(code))
    }

    pub fn subject_refs(&self) -> impl Iterator<Item = &str> {
        self.parties.iter().map(|p| p.subject_ref.as_str())
    }
}

pub fn reason_bit(code: ReasonCode) -> i64 {
    let position = ReasonCode::ALL.iter().position(|c| *c == code).unwrap_or(0);
    1 << position
}

/// The part of a record that is stored as one JSON column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordDetail {
    pub reasons: Vec<AuditReason>,
    pub parties: Vec<AuditParty>,
}

impl RecordDetail {
    /// The column's text.
    pub fn to_json(&self) -> String {
        let mut bytes = Vec::with_capacity(RECORD_BYTES);
        // Plain data: serialisation cannot fail.
        let _ = serde_json::to_writer(&mut bytes, self);
        // serde_json writes UTF-8 only.
        String::from_utf8(bytes).unwrap_or_default()
    }
}

/// A record with its place in its instance's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub record: AuditRecord,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}
