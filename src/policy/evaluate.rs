//! Policy evaluation: a pure function of (city policy, lookups, now).
//!
//! Each party is classified into a `Standing`; a party that is not plainly
//! green, recognised and fresh yields exactly one reason. The checks run in
//! the order an auditor would ask them: do we know the status at all, is
//! there a code, is its issuer one we accept, is it recent enough to mean
//! anything, and only then what colour it is.

use chrono::{DateTime, Utc};

use std::sync::Arc;

use super::{CheckKind, CityPolicy, OnUnavailable, Policy};
use crate::domain::{Decision, Hook, Level, Outcome, Party, Reason, ReasonCode};
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
    /// Each party's own failing reason, if any (also for candidates that
    /// were excluded without failing the decision).
    pub failures: Vec<Option<Reason>>,
    /// Per party: may it take part (for candidates: is it eligible).
    pub eligible: Vec<bool>,
}

/// Decides a check of `hook` in `city`.
///
/// Every party must pass, except in the candidate filter, where passengers
/// must pass and each candidate driver is eligible or excluded on its own;
/// the filter allows when at least one candidate is eligible. A failure
/// that is only "status unavailable" is waived (and the decision marked
/// degraded) when the city says `allow_degraded`.
///
/// `itineraries`, when the hook checks the itinerary card, holds each party's
/// itinerary lookup (`None`: no itinerary source is configured).
pub fn evaluate(
    policy: &Policy,
    city: &CityPolicy,
    hook: Hook,
    parties: &[(Party, &StatusLookup)],
    itineraries: Option<&[StatusLookup]>,
    now: DateTime<Utc>,
) -> Evaluation {
    let rules = city.rules(hook);
    let health_rule = rules.rule_for(CheckKind::HealthCode);
    let itinerary_rule = rules.rule_for(CheckKind::Itinerary);
    let check_itinerary = city.needs_itinerary(hook);
    let mut standings = Vec::with_capacity(parties.len());
    let mut failures = Vec::with_capacity(parties.len());
    for (i, (party, lookup)) in parties.iter().enumerate() {
        let (standing, failure) = assess(policy, city, lookup, now);
        standings.push(standing);
        let failure = match failure {
            Some(code) => Some(Reason::new(Some(*party), code, Arc::clone(&health_rule))),
            None if check_itinerary => {
                let itinerary = itineraries.and_then(|all| all.get(i));
                assess_itinerary(city, itinerary, now).map(|(code, area)| Reason {
                    detail: area,
                    ..Reason::new(Some(*party), code, Arc::clone(&itinerary_rule))
                })
            }
            None => None,
        };
        failures.push(failure);
    }
    let waivable = |reason: &Reason| {
        city.on_unavailable == OnUnavailable::AllowDegraded
            && reason.code == ReasonCode::StatusUnavailable
    };
    let blocks = |failure: &Option<Reason>| failure.as_ref().is_some_and(|r| !waivable(r));
    let eligible: Vec<bool> = failures.iter().map(|f| !blocks(f)).collect();
    let is_candidate = |i: usize| matches!(parties[i].0, Party::Candidate(_));
    let collect = |filter: &dyn Fn(usize) -> bool| -> Vec<Reason> {
        (0..parties.len())
            .filter(|i| filter(*i))
            .filter_map(|i| failures[i].clone())
            .collect()
    };

    let everyone_required = |i: usize| hook != Hook::Candidates || !is_candidate(i);
    let required_blocked = (0..parties.len()).any(|i| everyone_required(i) && !eligible[i]);
    let any_candidate_eligible = (0..parties.len()).any(|i| is_candidate(i) && eligible[i]);
    let decision = if required_blocked {
        Decision {
            outcome: Outcome::Reject,
            reasons: collect(&|i| everyone_required(i)),
            degraded: false,
        }
    } else if hook == Hook::Candidates && !any_candidate_eligible {
        Decision {
            outcome: Outcome::Reject,
            reasons: collect(&is_candidate),
            degraded: false,
        }
    } else {
        // Allowed: any failures left are waived "unavailable" ones of
        // parties that take part.
        let waived = collect(&|i| eligible[i]);
        if waived.is_empty() {
            Decision {
                outcome: Outcome::Allow,
                reasons: vec![Reason::new(
                    None,
                    ReasonCode::AllGreen,
                    Arc::clone(&rules.all_clear),
                )],
                degraded: false,
            }
        } else {
            Decision {
                outcome: Outcome::Allow,
                reasons: waived,
                degraded: true,
            }
        }
    };
    Evaluation {
        decision,
        standings,
        failures,
        eligible,
    }
}

/// The itinerary check: a risk-area visit within the city's window fails
/// (with the area); an itinerary that cannot be had counts as unavailable.
fn assess_itinerary(
    city: &CityPolicy,
    lookup: Option<&StatusLookup>,
    now: DateTime<Utc>,
) -> Option<(ReasonCode, Option<String>)> {
    match lookup {
        None | Some(StatusLookup::Unavailable) => Some((ReasonCode::StatusUnavailable, None)),
        Some(StatusLookup::Known {
            status: Status::Itinerary(verdict),
            ..
        }) => {
            let visit = verdict.last_risk_visit.as_ref()?;
            let since = (now - city.itinerary_window).date_naive();
            (visit.date >= since).then(|| (ReasonCode::ItineraryRiskArea, Some(visit.area.clone())))
        }
        // No itinerary on record: nothing to object to.
        Some(StatusLookup::Known { .. }) => None,
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
        StatusLookup::Unavailable
        | StatusLookup::Known {
            status: Status::Itinerary(_),
            ..
        } => return (Standing::Unavailable, Some(ReasonCode::StatusUnavailable)),
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
        evaluate(&policy, &city, Hook::Trip, &parties, None, Utc::now())
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

#[cfg(test)]
mod properties {
    use super::*;
    use crate::domain::{CityCode, Colour, HealthCode, IssuerId};
    use crate::status::Source;
    use chrono::TimeDelta;
    use proptest::prelude::*;

    const POLICY: &str = r#"
        version = "p1"
        [issuers.hangzhou.palette]
        green = "green"
        yellow = "yellow"
        red = "red"
        [issuers.xiamen.palette]
        green = "green"
        orange = "yellow"
        red = "red"
        [cities.strict]
        recognised_issuers = ["hangzhou"]
        [cities.lenient]
        recognised_issuers = ["hangzhou", "xiamen"]
        on_unavailable = "allow_degraded"
    "#;

    #[derive(Debug, Clone)]
    enum Given {
        Code {
            colour: String,
            issuer: String,
            age_hours: i64,
        },
        NotRegistered,
        Unavailable,
    }

    fn party_strategy() -> impl Strategy<Value = Given> {
        prop_oneof![
            6 => (
                prop::sample::select(vec!["green", "yellow", "red", "orange", "grey", "GREEN", ""]),
                prop::sample::select(vec!["hangzhou", "xiamen", "mars", ""]),
                -48i64..72,
            )
                .prop_map(|(c, i, a)| Given::Code { colour: c.into(), issuer: i.into(), age_hours: a }),
            1 => Just(Given::NotRegistered),
            1 => Just(Given::Unavailable),
        ]
    }

    fn lookup(p: &Given, now: DateTime<Utc>) -> StatusLookup {
        match p {
            Given::Code {
                colour,
                issuer,
                age_hours,
            } => StatusLookup::Known {
                status: Status::Registered(HealthCode {
                    colour: Colour::new(colour),
                    issuer: IssuerId::new(issuer),
                    updated_at: now - TimeDelta::hours(*age_hours),
                }),
                source: Source::Upstream,
                fetched_at: now,
            },
            Given::NotRegistered => StatusLookup::Known {
                status: Status::NotRegistered,
                source: Source::Redis,
                fetched_at: now,
            },
            Given::Unavailable => StatusLookup::Unavailable,
        }
    }

    fn good(p: &Given, city: &str) -> bool {
        matches!(p, Given::Code { colour, issuer, age_hours }
            if colour.eq_ignore_ascii_case("green")
                && (issuer == "hangzhou" || (city == "lenient" && issuer == "xiamen"))
                && *age_hours <= 24)
    }

    fn red(p: &Given, city: &str) -> bool {
        matches!(p, Given::Code { colour, issuer, age_hours }
            if colour == "red"
                && (issuer == "hangzhou" || (city == "lenient" && issuer == "xiamen"))
                && *age_hours <= 24)
    }

    fn run(hook: Hook, city: &str, parties: &[Given]) -> Evaluation {
        let policy = Policy::parse("p", POLICY).unwrap();
        let city_policy = policy.city(&CityCode::parse(city).unwrap()).unwrap();
        let now = Utc::now();
        let lookups: Vec<StatusLookup> = parties.iter().map(|p| lookup(p, now)).collect();
        let roles: Vec<(Party, &StatusLookup)> = lookups
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let party = match (hook, i) {
                    (Hook::Candidates, 0) => Party::Passenger(0),
                    (Hook::Candidates, i) => Party::Candidate(i - 1),
                    (_, 0) => Party::Driver,
                    (_, i) => Party::Passenger(i - 1),
                };
                (party, l)
            })
            .collect();
        evaluate(&policy, city_policy, hook, &roles, None, now)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_red_party_rejects(
            parties in prop::collection::vec(party_strategy(), 1..10),
            city in prop::sample::select(vec!["strict", "lenient"]),
            hook in prop::sample::select(vec![Hook::Trip, Hook::DriverShift, Hook::PassengerOrder]),
        ) {
            let evaluation = run(hook, city, &parties);
            if parties.iter().any(|p| red(p, city)) {
                prop_assert_eq!(evaluation.decision.outcome, Outcome::Reject);
            }
        }

        #[test]
        fn allow_means_every_party_is_green_recognised_and_fresh(
            parties in prop::collection::vec(party_strategy(), 1..10),
            city in prop::sample::select(vec!["strict", "lenient"]),
            hook in prop::sample::select(vec![Hook::Trip, Hook::DriverShift, Hook::PassengerOrder]),
        ) {
            let evaluation = run(hook, city, &parties);
            let decision = &evaluation.decision;
            if decision.outcome == Outcome::Allow && !decision.degraded {
                prop_assert!(parties.iter().all(|p| good(p, city)));
                prop_assert_eq!(decision.reasons.len(), 1);
                prop_assert_eq!(decision.reasons[0].code, ReasonCode::AllGreen);
            }
            if decision.degraded {
                // Only unavailable statuses are ever waived.
                prop_assert!(parties.iter().all(|p| good(p, city) || matches!(p, Given::Unavailable)));
                prop_assert!(decision.reasons.iter().all(|r| r.code == ReasonCode::StatusUnavailable));
            }
            if parties.iter().all(|p| good(p, city)) {
                prop_assert_eq!(decision.outcome, Outcome::Allow);
            }
            // One reason per failing party when rejected.
            if decision.outcome == Outcome::Reject {
                let failing = parties.iter().filter(|p| !good(p, city)).count();
                prop_assert_eq!(decision.reasons.len(), failing);
            }
        }

        #[test]
        fn candidates_are_eligible_exactly_when_they_pass(
            parties in prop::collection::vec(party_strategy(), 2..30),
            city in prop::sample::select(vec!["strict", "lenient"]),
        ) {
            let evaluation = run(Hook::Candidates, city, &parties);
            for (i, p) in parties.iter().enumerate().skip(1) {
                let waived = city == "lenient" && matches!(p, Given::Unavailable);
                prop_assert_eq!(evaluation.eligible[i], good(p, city) || waived);
            }
            let passenger_ok = good(&parties[0], city) || (city == "lenient" && matches!(parties[0], Given::Unavailable));
            let any_eligible = (1..parties.len()).any(|i| evaluation.eligible[i]);
            prop_assert_eq!(evaluation.decision.outcome == Outcome::Allow, passenger_ok && any_eligible);
        }
    }
}
