//! Properties of policy evaluation over generated parties: any red party
//! rejects, an allow means every party is green, recognised and fresh, and
//! a candidate is eligible exactly when it passes.

use super::*;
use crate::domain::{CityCode, Colour, HealthCode, IssuerId};
use crate::domain::{Source, Unavailable};
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
    Unavailable(Unavailable),
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
        2 => prop::sample::select(vec![
            Unavailable::Outage,
            Unavailable::Deadline,
            Unavailable::CallerDeadline,
            Unavailable::Unusable,
            Unavailable::Overloaded,
        ])
        .prop_map(Given::Unavailable),
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
                renewed_at: now - TimeDelta::hours(*age_hours),
                colour_since: None,
            }),
            source: Source::Upstream,
            fetched_at: now,
        },
        Given::NotRegistered => StatusLookup::Known {
            status: Status::NotRegistered,
            source: Source::Redis,
            fetched_at: now,
        },
        Given::Unavailable(why) => StatusLookup::Unavailable(*why),
    }
}

fn good(p: &Given, city: &str) -> bool {
    matches!(p, Given::Code { colour, issuer, age_hours }
        if colour.eq_ignore_ascii_case("green")
            && (issuer == "hangzhou" || (city == "lenient" && issuer == "xiamen"))
            && *age_hours <= 24)
}

/// What `allow_degraded` may waive: an outage or the configured
/// deadline, never a cause a caller can produce.
fn waivable(p: &Given, city: &str) -> bool {
    city == "lenient"
        && matches!(
            p,
            Given::Unavailable(Unavailable::Outage | Unavailable::Deadline)
        )
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
            // Only unavailable statuses of waivable causes are waived.
            prop_assert!(parties.iter().all(|p| good(p, city) || waivable(p, city)));
            prop_assert!(decision.reasons.iter().all(|r| r.code == ReasonCode::StatusUnavailable));
        }
        if parties.iter().all(|p| good(p, city)) {
            prop_assert_eq!(decision.outcome, Outcome::Allow);
        }
        // A cause a caller can produce never buys an allow.
        if parties.iter().any(|p| matches!(p, Given::Unavailable(why) if !why.is_waivable())) {
            prop_assert_eq!(decision.outcome, Outcome::Reject);
        }
        // One reason per failing party when rejected, and a second
        // (STATUS_STALE) for a code of another colour than green that
        // was not renewed in time: the colour is never hidden by age.
        if decision.outcome == Outcome::Reject {
            let failing = parties.iter().filter(|p| !good(p, city)).count();
            let stale_not_green = parties
                .iter()
                .filter(|p| {
                    matches!(p, Given::Code { colour, issuer, age_hours }
                        if *age_hours > 24
                            && !colour.eq_ignore_ascii_case("green")
                            && (issuer == "hangzhou" || (city == "lenient" && issuer == "xiamen")))
                })
                .count();
            prop_assert_eq!(decision.reasons.len(), failing + stale_not_green);
        }
    }

    #[test]
    fn candidates_are_eligible_exactly_when_they_pass(
        parties in prop::collection::vec(party_strategy(), 2..30),
        city in prop::sample::select(vec!["strict", "lenient"]),
    ) {
        let evaluation = run(Hook::Candidates, city, &parties);
        for (i, p) in parties.iter().enumerate().skip(1) {
            prop_assert_eq!(evaluation.eligible[i], good(p, city) || waivable(p, city));
        }
        let passenger_ok = good(&parties[0], city) || waivable(&parties[0], city);
        let any_eligible = (1..parties.len()).any(|i| evaluation.eligible[i]);
        prop_assert_eq!(evaluation.decision.outcome == Outcome::Allow, passenger_ok && any_eligible);
    }
}
