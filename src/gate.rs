//! The decision path of one check, top to bottom: pick the city's policy,
//! resolve every party's status, evaluate, stamp the decision.
//!
//! This is the only place that sequences the parts; routes hand it parsed
//! requests and turn its results into HTTP, the resolver does the I/O, and
//! policy stays pure.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{CityCode, Colour, Decision, IssuerId, Party, TripCheck, TripId};
use crate::policy::{evaluate, Policy, Standing};
use crate::status::{Resolver, Source, Status, StatusLookup};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("city '{city}' is not configured in policy version {policy_version}")]
    UnknownCity {
        city: CityCode,
        policy_version: String,
    },
}

/// What the caller is told about one party.
#[derive(Debug, Clone)]
pub struct PartyReport {
    pub party: Party,
    pub standing: Standing,
    pub colour: Option<Colour>,
    pub issuer: Option<IssuerId>,
    pub source: Option<Source>,
    /// When the issuer last set or renewed the code.
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct TripDecision {
    /// UUIDv7: time-ordered, so ids sort by decision time.
    pub decision_id: Uuid,
    pub trip_id: TripId,
    pub city: CityCode,
    pub policy_version: String,
    pub decision: Decision,
    pub parties: Vec<PartyReport>,
    pub decided_at: DateTime<Utc>,
}

pub struct Gate {
    resolver: Resolver,
    policy: Arc<Policy>,
}

impl Gate {
    pub fn new(resolver: Resolver, policy: Policy) -> Self {
        Self {
            resolver,
            policy: Arc::new(policy),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub async fn check_trip(&self, check: TripCheck) -> Result<TripDecision, GateError> {
        let policy = Arc::clone(&self.policy);
        let city_policy = policy
            .city(&check.city)
            .ok_or_else(|| GateError::UnknownCity {
                city: check.city.clone(),
                policy_version: policy.version().to_owned(),
            })?;

        let lookups = self.resolver.resolve(&check.subjects()).await;

        let decided_at = Utc::now();
        let parties: Vec<(Party, &StatusLookup)> = check
            .parties()
            .map(|(party, _)| party)
            .zip(&lookups)
            .collect();
        let evaluation = evaluate(&policy, city_policy, &parties, decided_at);

        let reports = parties
            .iter()
            .zip(&evaluation.standings)
            .map(|((party, lookup), standing)| report(*party, lookup, *standing))
            .collect();
        Ok(TripDecision {
            decision_id: Uuid::now_v7(),
            trip_id: check.trip_id,
            city: check.city,
            policy_version: policy.version().to_owned(),
            decision: evaluation.decision,
            parties: reports,
            decided_at,
        })
    }
}

fn report(party: Party, lookup: &StatusLookup, standing: Standing) -> PartyReport {
    let mut report = PartyReport {
        party,
        standing,
        colour: None,
        issuer: None,
        source: None,
        as_of: None,
    };
    if let StatusLookup::Known { status, source, .. } = lookup {
        report.source = Some(*source);
        if let Status::Registered(code) = status {
            report.colour = Some(code.colour.clone());
            report.issuer = Some(code.issuer.clone());
            report.as_of = Some(code.updated_at);
        }
    }
    report
}
