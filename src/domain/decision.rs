//! The outcome of a check and the reasons behind it.
//!
//! `Decided` is a decision as made: stamped with its id and time, with what
//! the caller is told about each party; routes render it, the audit trail
//! records it (`AuditRecord::from_decided`).
//!
//! `ReasonCode` is the public contract with dispatch backends and regulators:
//! codes are stable SCREAMING_SNAKE_CASE identifiers and are never renamed.

use serde::Serialize;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{CityCode, Colour, Hook, IssuerId, Party, Source, TripId};

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

/// When a refused party may pass again, and the rule that derived it:
/// yellow or red, the isolation period counted from when the colour last
/// changed; a code not renewed in time, now (after a check-in); a risk-area
/// visit, the end of the itinerary window. Dispatch may re-check then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EligibleAfter {
    pub at: DateTime<Utc>,
    pub rule: std::sync::Arc<str>,
}

/// What policy decided, before it is stamped with an id and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub reasons: Vec<Reason>,
    /// True when the policy allowed despite a status it could not determine.
    pub degraded: bool,
}

/// A party's status as policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Level(super::Level),
    /// A colour the issuer's palette does not contain.
    UnknownColour,
    /// A code from an issuer the city does not recognise.
    UnrecognisedIssuer,
    NoCode,
    Unavailable,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Level(level) => level.as_str(),
            Standing::UnknownColour => "unknown",
            Standing::UnrecognisedIssuer => "unrecognised_issuer",
            Standing::NoCode => "no_code",
            Standing::Unavailable => "unavailable",
        }
    }
}

/// What the caller is told about one party.
#[derive(Debug, Clone)]
pub struct PartyReport {
    pub party: Party,
    pub standing: Standing,
    pub colour: Option<Colour>,
    pub issuer: Option<IssuerId>,
    pub source: Option<Source>,
    /// The code's last renewal (daily check-in).
    pub as_of: Option<DateTime<Utc>>,
    /// When the code's colour last changed (provider contract v2).
    pub colour_since: Option<DateTime<Utc>>,
    /// The party's own failing reasons (for candidates: why excluded); a
    /// yellow or red code not renewed in time has two.
    pub failures: Vec<Reason>,
    /// Whether the party may take part (for candidates: eligible).
    pub eligible: bool,
    /// For a refused party, when it may pass again, if that can be derived.
    pub eligible_after: Option<EligibleAfter>,
}

#[derive(Debug, Clone)]
pub struct Decided {
    /// UUIDv7: time-ordered, so ids sort by decision time.
    pub decision_id: Uuid,
    pub hook: Hook,
    /// The trip or order id; none for a driver's shift.
    pub reference: Option<TripId>,
    pub city: CityCode,
    pub policy_version: String,
    pub decision: Decision,
    /// One per party of the check, in its order.
    pub parties: Vec<PartyReport>,
    pub decided_at: DateTime<Utc>,
    /// The authenticated client that asked; `None` with authentication off.
    pub client: Option<String>,
}

/// A UUIDv7 whose timestamp is the record's time, to the millisecond (the
/// SQLite store finds a record by id within that millisecond).
pub fn record_id_at(at: chrono::DateTime<chrono::Utc>) -> uuid::Uuid {
    let nanos = at.timestamp_subsec_nanos();
    let secs = at.timestamp().max(0) as u64;
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos))
}
