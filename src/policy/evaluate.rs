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
#[path = "evaluate_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "evaluate_properties.rs"]
mod properties;
