//! Policy evaluation: a pure function of (city policy, lookups, now).
//!
//! Each party is classified into a `Standing`; a party that is not plainly
//! green, recognised and fresh yields exactly one reason. The checks run in
//! the order an auditor would ask them: do we know the status at all, is
//! there a code, is its issuer one we accept, is it recent enough to mean
//! anything, and only then what colour it is.

use chrono::{DateTime, Utc};

use super::{CityPolicy, OnUnavailable, Policy};
use crate::domain::{Decision, Level, Outcome, Party, Reason, ReasonCode};
use crate::status::{Status, StatusLookup};

/// A party's status as policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Level(Level),
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    /// One per party, in the order given.
    pub standings: Vec<Standing>,
}

pub fn evaluate(
    policy: &Policy,
    city: &CityPolicy,
    parties: &[(Party, &StatusLookup)],
    now: DateTime<Utc>,
) -> Evaluation {
    let mut standings = Vec::with_capacity(parties.len());
    let mut reasons = Vec::new();
    for (party, lookup) in parties {
        let (standing, failure) = assess(policy, city, lookup, now);
        standings.push(standing);
        if let Some(code) = failure {
            reasons.push(Reason::new(Some(*party), code));
        }
    }

    let decision = if reasons.is_empty() {
        Decision {
            outcome: Outcome::Allow,
            reasons: vec![Reason::new(None, ReasonCode::AllGreen)],
            degraded: false,
        }
    } else if city.on_unavailable == OnUnavailable::AllowDegraded
        && reasons
            .iter()
            .all(|r| r.code == ReasonCode::StatusUnavailable)
    {
        Decision {
            outcome: Outcome::Allow,
            reasons,
            degraded: true,
        }
    } else {
        Decision {
            outcome: Outcome::Reject,
            reasons,
            degraded: false,
        }
    };
    Evaluation {
        decision,
        standings,
    }
}

/// The party's standing, and the reason it fails (`None`: it passes).
fn assess(
    policy: &Policy,
    city: &CityPolicy,
    lookup: &StatusLookup,
    now: DateTime<Utc>,
) -> (Standing, Option<ReasonCode>) {
    let code = match lookup {
        StatusLookup::Unavailable => {
            return (Standing::Unavailable, Some(ReasonCode::StatusUnavailable))
        }
        StatusLookup::Known {
            status: Status::NotRegistered,
            ..
        } => return (Standing::NoCode, Some(ReasonCode::NoHealthCode)),
        StatusLookup::Known {
            status: Status::Registered(code),
            ..
        } => code,
    };
    let palette = match policy.palette(&code.issuer) {
        Some(palette) if city.recognises(&code.issuer) => palette,
        _ => {
            return (
                Standing::UnrecognisedIssuer,
                Some(ReasonCode::IssuerNotRecognised),
            )
        }
    };
    let standing = match palette.level_of(&code.colour) {
        Some(level) => Standing::Level(level),
        None => Standing::UnknownColour,
    };
    if now - code.updated_at > city.max_status_age {
        return (standing, Some(ReasonCode::StatusStale));
    }
    let failure = match standing {
        Standing::Level(Level::Green) => None,
        Standing::Level(Level::Yellow) => Some(ReasonCode::HealthCodeYellow),
        Standing::Level(Level::Red) => Some(ReasonCode::HealthCodeRed),
        _ => Some(ReasonCode::HealthCodeUnrecognised),
    };
    (standing, failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CityCode, Colour, HealthCode, IssuerId};
    use crate::status::Source;
    use chrono::TimeDelta;

    const POLICY: &str = r#"
        version = "t1"
        [issuers.hangzhou.palette]
        green = "green"
        yellow = "yellow"
        red = "red"
        [issuers.xiamen.palette]
        green = "green"
        orange = "yellow"
        red = "red"
        [issuers.mars.palette]
        green = "green"
        [cities.hangzhou]
        recognised_issuers = ["hangzhou", "xiamen"]
        [cities.open]
        recognised_issuers = ["hangzhou"]
        on_unavailable = "allow_degraded"
    "#;

    fn known(colour: &str, issuer: &str, age_hours: i64, now: DateTime<Utc>) -> StatusLookup {
        StatusLookup::Known {
            status: Status::Registered(HealthCode {
                colour: Colour::new(colour),
                issuer: IssuerId::new(issuer),
                updated_at: now - TimeDelta::hours(age_hours),
            }),
            source: Source::Upstream,
            fetched_at: now,
        }
    }

    fn run(city: &str, lookups: &[StatusLookup]) -> Evaluation {
        let policy = Policy::parse("t", POLICY).unwrap();
        let city = policy
            .city(&CityCode::parse(city).unwrap())
            .unwrap()
            .clone();
        let parties: Vec<(Party, &StatusLookup)> = lookups
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    if i == 0 {
                        Party::Driver
                    } else {
                        Party::Passenger(i - 1)
                    },
                    l,
                )
            })
            .collect();
        evaluate(&policy, &city, &parties, Utc::now())
    }

    fn codes(e: &Evaluation) -> Vec<ReasonCode> {
        e.decision.reasons.iter().map(|r| r.code).collect()
    }

    #[test]
    fn classification_per_party() {
        let now = Utc::now();
        let cases = [
            (known("green", "hangzhou", 1, now), None),
            (known("GREEN", "hangzhou", 1, now), None),
            (
                known("yellow", "hangzhou", 1, now),
                Some(ReasonCode::HealthCodeYellow),
            ),
            (
                known("orange", "xiamen", 1, now),
                Some(ReasonCode::HealthCodeYellow),
            ),
            (
                known("red", "hangzhou", 1, now),
                Some(ReasonCode::HealthCodeRed),
            ),
            (
                known("grey", "hangzhou", 1, now),
                Some(ReasonCode::HealthCodeUnrecognised),
            ),
            (
                known("green", "hangzhou", 25, now),
                Some(ReasonCode::StatusStale),
            ),
            (
                known("green", "mars", 1, now),
                Some(ReasonCode::IssuerNotRecognised),
            ),
            (
                known("green", "pluto", 1, now),
                Some(ReasonCode::IssuerNotRecognised),
            ),
            (
                StatusLookup::Known {
                    status: Status::NotRegistered,
                    source: Source::Redis,
                    fetched_at: now,
                },
                Some(ReasonCode::NoHealthCode),
            ),
            (
                StatusLookup::Unavailable,
                Some(ReasonCode::StatusUnavailable),
            ),
        ];
        for (lookup, expected) in cases {
            let green = known("green", "hangzhou", 1, now);
            let evaluation = run("hangzhou", &[green, lookup.clone()]);
            match expected {
                None => assert_eq!(codes(&evaluation), vec![ReasonCode::AllGreen], "{lookup:?}"),
                Some(code) => {
                    assert_eq!(evaluation.decision.outcome, Outcome::Reject, "{lookup:?}");
                    assert_eq!(codes(&evaluation), vec![code], "{lookup:?}");
                    assert_eq!(
                        evaluation.decision.reasons[0].party,
                        Some(Party::Passenger(0))
                    );
                }
            }
        }
    }

    #[test]
    fn one_reason_per_failing_party() {
        let now = Utc::now();
        let e = run(
            "hangzhou",
            &[
                known("red", "hangzhou", 1, now),
                known("green", "hangzhou", 1, now),
                StatusLookup::Unavailable,
            ],
        );
        assert_eq!(
            codes(&e),
            vec![ReasonCode::HealthCodeRed, ReasonCode::StatusUnavailable]
        );
        assert_eq!(e.standings[2], Standing::Unavailable);
    }

    #[test]
    fn allow_degraded_only_covers_unavailable_status() {
        let now = Utc::now();
        let e = run(
            "open",
            &[
                known("green", "hangzhou", 1, now),
                StatusLookup::Unavailable,
            ],
        );
        assert_eq!(e.decision.outcome, Outcome::Allow);
        assert!(e.decision.degraded);
        assert_eq!(codes(&e), vec![ReasonCode::StatusUnavailable]);

        let e = run(
            "open",
            &[known("red", "hangzhou", 1, now), StatusLookup::Unavailable],
        );
        assert_eq!(e.decision.outcome, Outcome::Reject);
        assert!(!e.decision.degraded);

        let e = run(
            "hangzhou",
            &[
                known("green", "hangzhou", 1, now),
                StatusLookup::Unavailable,
            ],
        );
        assert_eq!(e.decision.outcome, Outcome::Reject);
    }
}
