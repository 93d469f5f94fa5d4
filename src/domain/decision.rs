//! The outcome of a check and the reasons behind it.
//!
//! `ReasonCode` is the public contract with dispatch backends and regulators:
//! codes are stable SCREAMING_SNAKE_CASE identifiers and are never renamed.

use serde::Serialize;

use super::Party;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Reject,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Reject => "reject",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonCode {
    AllGreen,
    HealthCodeYellow,
    HealthCodeRed,
    /// The issuer's colour is not in the policy's palette for that issuer.
    HealthCodeUnrecognised,
    NoHealthCode,
    StatusStale,
    StatusUnavailable,
    IssuerNotRecognised,
    ItineraryRiskArea,
    /// The itinerary card uses a risk word the policy's vocabulary does not
    /// list; it is not treated as "no risk".
    ItineraryUnrecognised,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 10] = [
        ReasonCode::AllGreen,
        ReasonCode::HealthCodeYellow,
        ReasonCode::HealthCodeRed,
        ReasonCode::HealthCodeUnrecognised,
        ReasonCode::NoHealthCode,
        ReasonCode::StatusStale,
        ReasonCode::StatusUnavailable,
        ReasonCode::IssuerNotRecognised,
        ReasonCode::ItineraryRiskArea,
        ReasonCode::ItineraryUnrecognised,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::AllGreen => "ALL_GREEN",
            ReasonCode::HealthCodeYellow => "HEALTH_CODE_YELLOW",
            ReasonCode::HealthCodeRed => "HEALTH_CODE_RED",
            ReasonCode::HealthCodeUnrecognised => "HEALTH_CODE_UNRECOGNISED",
            ReasonCode::NoHealthCode => "NO_HEALTH_CODE",
            ReasonCode::StatusStale => "STATUS_STALE",
            ReasonCode::StatusUnavailable => "STATUS_UNAVAILABLE",
            ReasonCode::IssuerNotRecognised => "ISSUER_NOT_RECOGNISED",
            ReasonCode::ItineraryRiskArea => "ITINERARY_RISK_AREA",
            ReasonCode::ItineraryUnrecognised => "ITINERARY_UNRECOGNISED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == raw)
    }
}

/// One reason of a decision. The human message is not here: it is chosen
/// per request (language) from the message catalogue when the answer is
/// rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// `None` for reasons about the whole check (`ALL_GREEN`), shown as
    /// `"party": "all"`.
    pub party: Option<Party>,
    pub code: ReasonCode,
    /// The id of the policy rule that fired, e.g. `hangzhou.trip.health_code`.
    pub rule: std::sync::Arc<str>,
    /// A detail the code needs, e.g. the risk area of ITINERARY_RISK_AREA.
    pub detail: Option<String>,
}

impl Reason {
    pub fn new(party: Option<Party>, code: ReasonCode, rule: std::sync::Arc<str>) -> Self {
        Self {
            party,
            code,
            rule,
            detail: None,
        }
    }
}

/// What policy decided, before it is stamped with an id and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub reasons: Vec<Reason>,
    /// True when the policy allowed despite a status it could not determine.
    pub degraded: bool,
}
