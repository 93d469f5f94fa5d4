//! What a status lookup can say about a subject, as the status path
//! reports it and policy reads it: the provider's answer, where it was
//! found, or why there is none; and the state of an upstream's circuit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{HealthCode, ItineraryVerdict};

/// What the provider says about a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Registered(HealthCode),
    /// The provider has no code (or itinerary) for this subject.
    NotRegistered,
    /// From the itinerary source: its verdict, not the travel history.
    Itinerary(ItineraryVerdict),
}

/// Where a status came from on this lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The in-process cache.
    L1,
    Redis,
    Upstream,
    /// A cached copy past its fresh TTL, used because the provider failed.
    Stale,
    /// The national platform's answer (mutual recognition), wherever the
    /// national resolver found it.
    National,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::L1,
        Source::Redis,
        Source::Upstream,
        Source::Stale,
        Source::National,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::L1 => "l1",
            Source::Redis => "redis",
            Source::Upstream => "upstream",
            Source::Stale => "stale",
            Source::National => "national",
        }
    }
}

/// Why a status could not be had. Policy waives only what is not the
/// caller's doing and not tripgate's own refusal to trust an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The upstream failed (timeout, 5xx, connection) or its circuit is
    /// open: an outage.
    Outage,
    /// The configured deadline passed before an answer came.
    Deadline,
    /// A deadline the caller shortened passed before an answer came (set
    /// by the gate): the caller's own doing, so never waived.
    CallerDeadline,
    /// The upstream's answer cannot be used: refused (4xx), not the
    /// contract, incomplete, or a code stamped beyond the allowed clock skew.
    Unusable,
    /// tripgate's own bound on upstream calls in flight was reached.
    Overloaded,
}

impl Unavailable {
    /// Whether a city's `allow_degraded` may waive it: only what happened
    /// to tripgate (an upstream outage, the configured deadline), never
    /// what a caller can cause (a shortened deadline, invented ids, load).
    pub fn is_waivable(self) -> bool {
        matches!(self, Unavailable::Outage | Unavailable::Deadline)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::Outage => "outage",
            Unavailable::Deadline => "deadline",
            Unavailable::CallerDeadline => "caller_deadline",
            Unavailable::Unusable => "unusable",
            Unavailable::Overloaded => "overloaded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusLookup {
    Known {
        status: Status,
        source: Source,
        fetched_at: DateTime<Utc>,
    },
    /// Neither a cache nor the provider could say in time.
    Unavailable(Unavailable),
}

/// The state of an upstream's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}
