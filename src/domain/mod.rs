//! The vocabulary of tripgate as types that can only hold valid values.
//!
//! Requests are parsed into these types at the edge (routes); everything past
//! the edge may assume validity. Identifiers of people (`SubjectId`) redact
//! themselves in `Debug` output so that a stray `?value` in a log line cannot
//! leak a phone number.

mod appeal;
mod decision;
mod health_code;
mod hook;
mod identifiers;
mod itinerary;
mod lookup;
mod party;
mod strictness;
mod trip_check;

pub use appeal::{
    possible_identifier, AppealOutcome, AppealedParty, FreeText, OverturnCause,
    MAX_FREE_TEXT_CHARS, REDACTED,
};
pub use decision::{
    record_id_at, Decided, Decision, EligibleAfter, Outcome, PartyReport, Reason, ReasonCode,
    Standing,
};
pub use health_code::{Colour, HealthCode, IssuerId, Level};
pub use hook::Hook;
pub use identifiers::{CityCode, InvalidIdentifier, SubjectId, TripId};
pub use itinerary::{fold_risk_word, ItineraryVerdict, RiskVisit, MAX_RISK_WORDS};
pub use lookup::{BreakerState, Source, Status, StatusLookup, Unavailable};
pub use party::Party;
pub use strictness::{level_rank, Strictness, UNKNOWN_RANK};
pub use trip_check::{
    CandidatesBody, Check, DriverShiftBody, InvalidRequest, PartyBody, PassengerOrderBody,
    TripCheckBody, MAX_CANDIDATES, MAX_PASSENGERS,
};
