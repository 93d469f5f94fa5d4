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
use crate::domain::{
    Decision, EligibleAfter, Hook, Level, Outcome, Party, Reason, ReasonCode, Standing,
};
use crate::domain::{Status, StatusLookup};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    /// One per party, in the order given.
    pub standings: Vec<Standing>,
    /// Each party's own failing reasons (also for candidates that were
    /// excluded without failing the decision).
    pub failures: Vec<Vec<Reason>>,
    /// Per party: may it take part (for candidates: is it eligible).
    pub eligible: Vec<bool>,
    /// Per party: when a refused party may pass again, where derivable.
    pub eligible_after: Vec<Option<EligibleAfter>>,
}

/// Decides a check of `hook` in `city`.
///
/// Every party must pass, except in the candidate filter, where passengers
/// must pass and each candidate driver is eligible or excluded on its own;
/// the filter allows when at least one candidate is eligible. A failure
/// that is only "status unavailable" is waived (and the decision marked
/// degraded) when the city says `allow_degraded` and the cause is one a
/// caller cannot produce (`Unavailable::is_waivable`): a shortened
/// deadline, an upstream refusing what was asked, or tripgate's own load
/// bounds are never waived.
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
    let mut eligible = Vec::with_capacity(parties.len());
    let mut eligible_after = Vec::with_capacity(parties.len());
    let allow_degraded = city.on_unavailable == OnUnavailable::AllowDegraded;
    for (i, (party, lookup)) in parties.iter().enumerate() {
        let assessment = assess(policy, city, lookup, now);
        standings.push(assessment.standing);
        let mut after = assessment.after;
        let mut party_failures: Vec<(Reason, bool)> = assessment
            .failures
            .into_iter()
            .map(|failure| {
                (
                    Reason::new(Some(*party), failure.code, Arc::clone(&health_rule)),
                    failure.waivable,
                )
            })
            .collect();
        if party_failures.is_empty() && check_itinerary {
            let itinerary = itineraries.and_then(|all| all.get(i));
            if let Some(failure) = assess_itinerary(policy, city, itinerary, now) {
                after = failure.until.map(|at| EligibleAfter {
                    at,
                    rule: Arc::clone(&itinerary_rule),
                });
                party_failures.push((
                    Reason {
                        detail: failure.area,
                        ..Reason::new(Some(*party), failure.code, Arc::clone(&itinerary_rule))
                    },
                    failure.waivable,
                ));
            }
        }
        let may_take_part = party_failures
            .iter()
            .all(|(_, waivable)| allow_degraded && *waivable);
        eligible.push(may_take_part);
        eligible_after.push(if may_take_part { None } else { after });
        failures.push(
            party_failures
                .into_iter()
                .map(|(reason, _)| reason)
                .collect::<Vec<_>>(),
        );
    }
    let is_candidate = |i: usize| matches!(parties[i].0, Party::Candidate(_));
    let collect = |filter: &dyn Fn(usize) -> bool| -> Vec<Reason> {
        (0..parties.len())
            .filter(|i| filter(*i))
            .flat_map(|i| failures[i].iter().cloned())
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
        eligible_after,
    }
}

/// A party's failing check: its code, whether `allow_degraded` may waive
/// it, and for the itinerary the risk area and when the visit leaves the
/// window.
struct Failure {
    code: ReasonCode,
    waivable: bool,
    area: Option<String>,
    until: Option<DateTime<Utc>>,
}

impl Failure {
    fn firm(code: ReasonCode) -> Self {
        Self {
            code,
            waivable: false,
            area: None,
            until: None,
        }
    }

    fn unavailable(waivable: bool) -> Self {
        Self {
            code: ReasonCode::StatusUnavailable,
            waivable,
            area: None,
            until: None,
        }
    }
}

/// The itinerary check: a visit within the city's window that the
/// vocabulary rates medium or high fails (with the area); a word the
/// vocabulary does not list fails as unrecognised, never as "no risk"; a
/// card that cannot be had, or that the source does not have, counts as
/// unavailable (waived only as the city says, and never for a cause a
/// caller can produce).
fn assess_itinerary(
    policy: &Policy,
    city: &CityPolicy,
    lookup: Option<&StatusLookup>,
    now: DateTime<Utc>,
) -> Option<Failure> {
    let verdict = match lookup {
        // No itinerary source configured: the operator's doing.
        None => return Some(Failure::unavailable(true)),
        Some(StatusLookup::Unavailable(why)) => {
            return Some(Failure::unavailable(why.is_waivable()))
        }
        // No card on record: as unavailable, per the city's rule.
        Some(StatusLookup::Known {
            status: Status::NotRegistered,
            ..
        }) => return Some(Failure::unavailable(true)),
        Some(StatusLookup::Known {
            status: Status::Registered(_),
            ..
        }) => return Some(Failure::unavailable(false)),
        Some(StatusLookup::Known {
            status: Status::Itinerary(verdict),
            ..
        }) => verdict,
    };
    if verdict.overflowed {
        return Some(Failure::firm(ReasonCode::ItineraryUnrecognised));
    }
    let since = (now - city.itinerary_window).date_naive();
    let mut latest_risk: Option<&crate::domain::RiskVisit> = None;
    let mut unrecognised = false;
    for (word, visit) in verdict
        .latest_by_risk
        .iter()
        .filter(|(_, v)| v.date >= since)
    {
        match policy.risk_level(word) {
            Some(level) if level.is_risk() => {
                if latest_risk.is_none_or(|seen| visit.date > seen.date) {
                    latest_risk = Some(visit);
                }
            }
            Some(_) => {}
            None => unrecognised = true,
        }
    }
    match latest_risk {
        Some(visit) => Some(Failure {
            area: Some(visit.area.clone()),
            // The visit's day leaves the window a full window after it.
            until: visit
                .date
                .succ_opt()
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .map(|midnight| midnight.and_utc() + city.itinerary_window),
            ..Failure::firm(ReasonCode::ItineraryRiskArea)
        }),
        None if unrecognised => Some(Failure::firm(ReasonCode::ItineraryUnrecognised)),
        None => None,
    }
}

/// How policy sees one party's health code.
struct Assessment {
    standing: Standing,
    /// Empty: it passes.
    failures: Vec<Failure>,
    after: Option<EligibleAfter>,
}

impl Assessment {
    fn failing(standing: Standing, failure: Failure) -> Self {
        Self {
            standing,
            failures: vec![failure],
            after: None,
        }
    }
}

/// The party's standing, why it fails, and when it may pass again. The
/// colour is reported whatever the code's age: a yellow or red code not
/// renewed in time is yellow or red, and STATUS_STALE is a second reason,
/// never instead.
fn assess(
    policy: &Policy,
    city: &CityPolicy,
    lookup: &StatusLookup,
    now: DateTime<Utc>,
) -> Assessment {
    let code = match lookup {
        StatusLookup::Unavailable(why) => {
            return Assessment::failing(
                Standing::Unavailable,
                Failure::unavailable(why.is_waivable()),
            )
        }
        StatusLookup::Known {
            status: Status::Itinerary(_),
            ..
        } => return Assessment::failing(Standing::Unavailable, Failure::unavailable(false)),
        StatusLookup::Known {
            status: Status::NotRegistered,
            ..
        } => return Assessment::failing(Standing::NoCode, Failure::firm(ReasonCode::NoHealthCode)),
        StatusLookup::Known {
            status: Status::Registered(code),
            ..
        } => code,
    };
    let palette = match policy.palette(&code.issuer) {
        Some(palette) if city.recognises(&code.issuer) => palette,
        _ => {
            return Assessment::failing(
                Standing::UnrecognisedIssuer,
                Failure::firm(ReasonCode::IssuerNotRecognised),
            )
        }
    };
    let standing = match palette.level_of(&code.colour) {
        Some(level) => Standing::Level(level),
        None => Standing::UnknownColour,
    };
    let mut failures = Vec::new();
    let mut after = None;
    match standing {
        Standing::Level(Level::Green) => {}
        Standing::Level(level) => {
            failures.push(Failure::firm(match level {
                Level::Red => ReasonCode::HealthCodeRed,
                _ => ReasonCode::HealthCodeYellow,
            }));
            // Without the time of the colour change (a v1 provider) the end
            // of the isolation cannot be derived.
            if let (Some(isolation), Some(since)) = (city.isolation(level), code.colour_since) {
                after = Some(EligibleAfter {
                    at: (since + isolation.period).max(now),
                    rule: Arc::clone(&isolation.rule),
                });
            }
        }
        _ => failures.push(Failure::firm(ReasonCode::HealthCodeUnrecognised)),
    }
    if now - code.renewed_at > city.max_status_age {
        failures.push(Failure::firm(ReasonCode::StatusStale));
        // A check-in renews the code at once; an isolation still running,
        // or a colour no one can read, keeps it off the road regardless.
        after = match (standing, after) {
            (Standing::Level(Level::Green), _) => Some(EligibleAfter {
                at: now,
                rule: Arc::clone(&city.renewal_rule),
            }),
            (_, Some(isolation)) if isolation.at > now => Some(isolation),
            (_, Some(_)) => Some(EligibleAfter {
                at: now,
                rule: Arc::clone(&city.renewal_rule),
            }),
            (_, None) => None,
        };
    }
    Assessment {
        standing,
        failures,
        after,
    }
}

#[cfg(test)]
mod tests {
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
        let unknown =
            format!("{POLICY}\n[cities.hangzhou.messages.NOPE]\nen = \"x\"\nzh-CN = \"y\"\n");
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
}

#[cfg(test)]
mod properties {
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
}
