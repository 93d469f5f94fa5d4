//! A health code as the issuer states it, and the canonical levels policy
//! maps it to.
//!
//! The colour is kept as the issuer's own word (`orange`, `grey`, ...):
//! turning it into a `Level` is the policy document's job, so an issuer with
//! a new palette needs a policy change, not a code change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The issuer's colour word, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Colour(String);

impl Colour {
    pub fn new(raw: &str) -> Self {
        Self(raw.trim().to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The authority that issued a code (`hangzhou`, `xiamen`, `national` ...),
/// trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IssuerId(String);

impl IssuerId {
    pub fn new(raw: &str) -> Self {
        Self(raw.trim().to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCode {
    pub colour: Colour,
    pub issuer: IssuerId,
    /// The last daily check-in: what staleness is judged on.
    pub renewed_at: DateTime<Utc>,
    /// When the colour last changed (provider contract v2; a v1 provider
    /// does not say): what an isolation period counts from.
    pub colour_since: Option<DateTime<Utc>>,
}

impl HealthCode {
    /// The newest time the code states: orders two codes of one subject,
    /// and is what must not lie in the future.
    pub fn stamped_at(&self) -> DateTime<Utc> {
        self.colour_since
            .map_or(self.renewed_at, |since| since.max(self.renewed_at))
    }
}

/// The canonical levels every palette maps onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Green,
    Yellow,
    Red,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Green => "green",
            Level::Yellow => "yellow",
            Level::Red => "red",
        }
    }
}
