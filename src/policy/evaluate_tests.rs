//! Policy evaluation, case by case: each test is one situation a city's
//! rules must decide the way an auditor would expect.

use super::*;
use crate::domain::{CityCode, Colour, HealthCode, IssuerId};
use crate::domain::{Source, Unavailable};
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
            renewed_at: now - TimeDelta::hours(age_hours),
            colour_since: None,
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

/// A v2 code: renewed `renewed_hours` ago, this colour for `days_held`.
fn held(colour: &str, renewed_hours: i64, days_held: i64, now: DateTime<Utc>) -> StatusLookup {
    StatusLookup::Known {
        status: Status::Registered(HealthCode {
            colour: Colour::new(colour),
            issuer: IssuerId::new("hangzhou"),
            renewed_at: now - TimeDelta::hours(renewed_hours),
            colour_since: Some(now - TimeDelta::days(days_held)),
        }),
        source: Source::Upstream,
        fetched_at: now,
    }
}

#[test]
fn colour_is_reported_whatever_the_age_and_staleness_is_a_second_reason() {
    let now = Utc::now();
    let stale_red = run("hangzhou", &[held("red", 50, 3, now)]);
    assert_eq!(
        codes(&stale_red),
        vec![ReasonCode::HealthCodeRed, ReasonCode::StatusStale]
    );
    assert_eq!(stale_red.standings[0], Standing::Level(Level::Red));
    let stale_yellow = run("hangzhou", &[held("yellow", 50, 1, now)]);
    assert_eq!(
        codes(&stale_yellow),
        vec![ReasonCode::HealthCodeYellow, ReasonCode::StatusStale]
    );
    let stale_grey = run("hangzhou", &[held("grey", 50, 1, now)]);
    assert_eq!(
        codes(&stale_grey),
        vec![ReasonCode::HealthCodeUnrecognised, ReasonCode::StatusStale]
    );
    let stale_green = run("hangzhou", &[held("green", 50, 30, now)]);
    assert_eq!(codes(&stale_green), vec![ReasonCode::StatusStale]);
}

#[test]
fn eligible_after_follows_the_scheme() {
    let now = Utc::now();
    let after = |lookup: StatusLookup| {
        let e = run("hangzhou", &[lookup]);
        e.eligible_after[0]
            .clone()
            .map(|a| ((a.at - now).num_hours(), a.rule.to_string()))
    };
    // Yellow since 2 days: 5 days to go; red since 3 days: 11.
    assert_eq!(
        after(held("yellow", 1, 2, now)),
        Some((5 * 24, "hangzhou.isolation.yellow".into()))
    );
    assert_eq!(
        after(held("red", 1, 3, now)),
        Some((11 * 24, "hangzhou.isolation.red".into()))
    );
    // Xiamen's orange is its yellow: 7 days too.
    let orange = StatusLookup::Known {
        status: Status::Registered(HealthCode {
            colour: Colour::new("orange"),
            issuer: IssuerId::new("xiamen"),
            renewed_at: now,
            colour_since: Some(now - TimeDelta::days(1)),
        }),
        source: Source::Upstream,
        fetched_at: now,
    };
    assert_eq!(
        after(orange),
        Some((6 * 24, "hangzhou.isolation.yellow".into()))
    );
    // Stale green: after a check-in, now.
    assert_eq!(
        after(held("green", 50, 30, now)),
        Some((0, "hangzhou.renewal".into()))
    );
    // Stale red still isolating: the isolation's end; isolation over
    // but not renewed: now, after a check-in.
    assert_eq!(
        after(held("red", 50, 3, now)),
        Some((11 * 24, "hangzhou.isolation.red".into()))
    );
    assert_eq!(
        after(held("red", 50, 20, now)),
        Some((0, "hangzhou.renewal".into()))
    );
    // A v1 code does not say when the colour changed: not derivable.
    assert_eq!(after(known("red", "hangzhou", 1, now)), None);
    // Nothing to derive for no code or an outage; a green passes.
    assert_eq!(after(StatusLookup::Unavailable(Unavailable::Outage)), None);
    assert_eq!(after(held("green", 1, 30, now)), None);
}

#[test]
fn isolation_days_and_messages_come_from_the_city() {
    let text = format!(
        "{POLICY}\n[cities.hangzhou.isolation_days]\nyellow = 3\n\
         [cities.hangzhou.messages.NO_HEALTH_CODE]\nzh-CN = \"请通过浙里办申领\"\nen = \"Apply through Zheliban\"\n"
    );
    let policy = Policy::parse("t", &text).unwrap();
    let city = policy.city(&CityCode::parse("hangzhou").unwrap()).unwrap();
    assert_eq!(
        city.isolation(Level::Yellow).unwrap().period,
        TimeDelta::days(3)
    );
    assert_eq!(
        city.isolation(Level::Red).unwrap().period,
        TimeDelta::days(14)
    );
    use crate::messages::Lang;
    assert_eq!(
        city.message(ReasonCode::NoHealthCode, Lang::En),
        Some("Apply through Zheliban")
    );
    assert_eq!(city.message(ReasonCode::HealthCodeRed, Lang::En), None);
    let half = format!("{POLICY}\n[cities.hangzhou.messages.NO_HEALTH_CODE]\nen = \"Apply\"\n");
    let err = Policy::parse("p.toml", &half).unwrap_err().to_string();
    assert_eq!(
        err,
        "p.toml: cities.hangzhou.messages.NO_HEALTH_CODE.zh-CN: is missing or empty; a city's message needs both zh-CN and en"
    );
    let unknown = format!("{POLICY}\n[cities.hangzhou.messages.NOPE]\nen = \"x\"\nzh-CN = \"y\"\n");
    assert!(Policy::parse("p.toml", &unknown)
        .unwrap_err()
        .to_string()
        .contains("'NOPE' is not a reason code"));
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
            StatusLookup::Unavailable(Unavailable::Outage),
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
            StatusLookup::Unavailable(Unavailable::Outage),
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
            StatusLookup::Unavailable(Unavailable::Outage),
        ],
    );
    assert_eq!(e.decision.outcome, Outcome::Allow);
    assert!(e.decision.degraded);
    assert_eq!(codes(&e), vec![ReasonCode::StatusUnavailable]);

    let e = run(
        "open",
        &[
            known("red", "hangzhou", 1, now),
            StatusLookup::Unavailable(Unavailable::Outage),
        ],
    );
    assert_eq!(e.decision.outcome, Outcome::Reject);
    assert!(!e.decision.degraded);

    let e = run(
        "hangzhou",
        &[
            known("green", "hangzhou", 1, now),
            StatusLookup::Unavailable(Unavailable::Outage),
        ],
    );
    assert_eq!(e.decision.outcome, Outcome::Reject);
}

#[test]
fn causes_a_caller_can_produce_are_never_waived() {
    let now = Utc::now();
    for why in [
        Unavailable::CallerDeadline,
        Unavailable::Unusable,
        Unavailable::Overloaded,
    ] {
        let e = run(
            "open",
            &[
                known("green", "hangzhou", 1, now),
                StatusLookup::Unavailable(why),
            ],
        );
        assert_eq!(e.decision.outcome, Outcome::Reject, "{why:?}");
        assert_eq!(codes(&e), vec![ReasonCode::StatusUnavailable]);
    }
    let e = run(
        "open",
        &[
            known("green", "hangzhou", 1, now),
            StatusLookup::Unavailable(Unavailable::Deadline),
        ],
    );
    assert_eq!(
        e.decision.outcome,
        Outcome::Allow,
        "the configured deadline is an outage"
    );
}

const VOCABULARY: &str = r#"
    version = "v1"
    [issuers.hangzhou.palette]
    green = "green"
    [cities.hangzhou]
    recognised_issuers = ["hangzhou"]
    [cities.hangzhou.hooks]
    trip = ["health_code", "itinerary"]
    [cities.open]
    recognised_issuers = ["hangzhou"]
    on_unavailable = "allow_degraded"
    [cities.open.hooks]
    trip = ["health_code", "itinerary"]
    [itinerary.risk_levels]
    low = "low"
    "Low-Risk" = "low"
    medium = "medium"
    high = "high"
    "高风险" = "high"
"#;

fn itinerary_run(city: &str, card: StatusLookup) -> Evaluation {
    let policy = Policy::parse("t", VOCABULARY).unwrap();
    let city = policy
        .city(&CityCode::parse(city).unwrap())
        .unwrap()
        .clone();
    let now = Utc::now();
    let driver = known("green", "hangzhou", 1, now);
    evaluate(
        &policy,
        &city,
        Hook::Trip,
        &[(Party::Driver, &driver)],
        Some(&[card]),
        now,
    )
}

fn card(visits: &[(&str, &str, i64)]) -> StatusLookup {
    let today = Utc::now().date_naive();
    StatusLookup::Known {
        status: Status::Itinerary(crate::domain::ItineraryVerdict::from_visits(
            visits
                .iter()
                .map(|(area, risk, ago)| (*area, *risk, today - TimeDelta::days(*ago))),
        )),
        source: Source::Upstream,
        fetched_at: Utc::now(),
    }
}

#[test]
fn risk_words_follow_the_policy_vocabulary_and_unknown_words_never_pass() {
    type Visits<'a> = &'a [(&'a str, &'a str, i64)];
    let cases: [(Visits, Option<ReasonCode>); 7] = [
        (&[("330100", "low", 1)], None),
        (&[("330100", " LOW-RISK ", 1)], None),
        (
            &[("420100", "高风险", 2)],
            Some(ReasonCode::ItineraryRiskArea),
        ),
        (
            &[("420100", "High-Risk", 2)],
            Some(ReasonCode::ItineraryUnrecognised),
        ),
        (
            &[("420100", "critical", 2)],
            Some(ReasonCode::ItineraryUnrecognised),
        ),
        // Outside the 14-day window, no word matters.
        (&[("420100", "critical", 30)], None),
        (
            &[("420100", "critical", 2), ("310000", "medium", 3)],
            Some(ReasonCode::ItineraryRiskArea),
        ),
    ];
    for (visits, expected) in cases {
        let e = itinerary_run("hangzhou", card(visits));
        let failure = e.failures[0].first().map(|r| r.code);
        assert_eq!(failure, expected, "{visits:?}");
    }
}

#[test]
fn a_missing_card_follows_on_unavailable() {
    let missing = || StatusLookup::Known {
        status: Status::NotRegistered,
        source: Source::Upstream,
        fetched_at: Utc::now(),
    };
    let strict = itinerary_run("hangzhou", missing());
    assert_eq!(strict.decision.outcome, Outcome::Reject);
    assert_eq!(codes(&strict), vec![ReasonCode::StatusUnavailable]);
    let open = itinerary_run("open", missing());
    assert_eq!(open.decision.outcome, Outcome::Allow);
    assert!(open.decision.degraded);
    // An unrecognised word is not waived by allow_degraded.
    let open = itinerary_run("open", card(&[("420100", "critical", 1)]));
    assert_eq!(open.decision.outcome, Outcome::Reject);
}
