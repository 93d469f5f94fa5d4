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
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 9] = [
        ReasonCode::AllGreen,
        ReasonCode::HealthCodeYellow,
        ReasonCode::HealthCodeRed,
        ReasonCode::HealthCodeUnrecognised,
        ReasonCode::NoHealthCode,
        ReasonCode::StatusStale,
        ReasonCode::StatusUnavailable,
        ReasonCode::IssuerNotRecognised,
        ReasonCode::ItineraryRiskArea,
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
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == raw)
    }

    /// Human text telling the person what to do.
    pub fn message(self) -> &'static str {
        match self {
            ReasonCode::AllGreen => "Every party holds a valid green health code.",
            ReasonCode::HealthCodeYellow => {
                "The health code is yellow: 7 days of isolation and daily check-in are required before it turns green."
            }
            ReasonCode::HealthCodeRed => {
                "The health code is red: 14 days of isolation and daily check-in are required before it turns green."
            }
            ReasonCode::HealthCodeUnrecognised => {
                "The health code shows a colour this city's policy does not recognise; it is not treated as green."
            }
            ReasonCode::NoHealthCode => {
                "Please apply for a health code and make sure it is green."
            }
            ReasonCode::StatusStale => {
                "The health code has not been renewed recently enough; please check in to renew it."
            }
            ReasonCode::StatusUnavailable => {
                "The health-code status could not be determined right now; please try again shortly."
            }
            ReasonCode::IssuerNotRecognised => {
                "The health code was issued by an authority this city does not recognise."
            }
            ReasonCode::ItineraryRiskArea => {
                "The travel history shows a visit to a risk area within the policy window."
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// `None` for reasons about the whole check (`ALL_GREEN`), serialised as
    /// `"party": "all"` so every reason object has the same shape.
    pub party: Option<Party>,
    pub code: ReasonCode,
    pub message: &'static str,
}

impl Reason {
    pub fn new(party: Option<Party>, code: ReasonCode) -> Self {
        Self {
            party,
            code,
            message: code.message(),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self.party {
            Some(party) => {
                map.serialize_entry("party", party.role())?;
                if let Some(index) = party.index() {
                    map.serialize_entry("index", &index)?;
                }
            }
            None => map.serialize_entry("party", "all")?,
        }
        map.serialize_entry("code", &self.code)?;
        map.serialize_entry("message", self.message)?;
        map.end()
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
