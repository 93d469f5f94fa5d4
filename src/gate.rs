//! The decision path of one check, top to bottom: pick the city's policy,
//! resolve every party's status, evaluate, stamp the decision, and record it
//! in the audit trail; the decision is returned only once its record is
//! durable.
//!
//! This is the only place that sequences the parts; routes hand it parsed
//! requests and turn its results into HTTP, the resolver does the I/O, and
//! policy stays pure.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use crate::audit::{AuditParty, AuditReason, AuditRecord, AuditWriter, Hook, WriteError};
use crate::domain::{CityCode, Colour, Decision, IssuerId, Party, SubjectId, TripCheck, TripId};
use crate::policy::{evaluate, Policy, Standing};
use crate::status::{Resolver, Source, Status, StatusLookup};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("city '{city}' is not configured in policy version {policy_version}")]
    UnknownCity {
        city: CityCode,
        policy_version: String,
    },
    #[error("the decision could not be recorded in the audit trail, so it is not given: {0}")]
    AuditUnavailable(#[from] WriteError),
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
    audit: AuditWriter,
    /// The longest any decision may take; callers may ask for less.
    deadline: Duration,
}

impl Gate {
    pub fn new(resolver: Resolver, policy: Policy, audit: AuditWriter, deadline: Duration) -> Self {
        Self {
            resolver,
            policy: Arc::new(policy),
            audit,
            deadline,
        }
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    pub fn audit_backlog(&self) -> usize {
        self.audit.backlog()
    }

    /// Whether the audit store takes writes now (for readiness).
    pub async fn audit_writable(&self) -> Result<(), String> {
        self.audit.store_writable().await
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides `check` within `budget` (capped by the configured deadline):
    /// whatever status is not known by then counts as unavailable.
    pub async fn check_trip(
        &self,
        check: TripCheck,
        budget: Option<Duration>,
    ) -> Result<TripDecision, GateError> {
        let started = Instant::now();
        let deadline = started + budget.map_or(self.deadline, |b| b.min(self.deadline));
        let policy = Arc::clone(&self.policy);
        let city_policy = policy
            .city(&check.city)
            .ok_or_else(|| GateError::UnknownCity {
                city: check.city.clone(),
                policy_version: policy.version().to_owned(),
            })?;

        let lookups = self.resolver.resolve(&check.subjects(), deadline).await;

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
        let decided = TripDecision {
            decision_id: Uuid::now_v7(),
            trip_id: check.trip_id.clone(),
            city: check.city.clone(),
            policy_version: policy.version().to_owned(),
            decision: evaluation.decision,
            parties: reports,
            decided_at,
        };

        let subjects: Vec<&SubjectId> = check.parties().map(|(_, subject)| subject).collect();
        self.audit
            .append(self.audit_record(Hook::Trip, &decided, &subjects))
            .await?;

        let metrics = self.audit.metrics();
        for party in &decided.parties {
            metrics.record_lookup(party.source);
        }
        let codes: Vec<_> = decided.decision.reasons.iter().map(|r| r.code).collect();
        metrics.record_decision(
            Hook::Trip.as_str(),
            decided.decision.outcome,
            &codes,
            started.elapsed().as_secs_f64(),
        );
        Ok(decided)
    }

    /// The decision as the audit trail keeps it: subjects pseudonymised.
    fn audit_record(
        &self,
        hook: Hook,
        decided: &TripDecision,
        subjects: &[&SubjectId],
    ) -> AuditRecord {
        let keys = self.audit.keys();
        let index = |party: Party| party.index().map(|i| i as u32);
        AuditRecord {
            format: crate::audit::FORMAT,
            decision_id: decided.decision_id.to_string(),
            decided_at_us: decided.decided_at.timestamp_micros(),
            hook,
            trip_id: decided.trip_id.as_str().to_owned(),
            city: decided.city.as_str().to_owned(),
            decision: decided.decision.outcome.as_str().to_owned(),
            degraded: decided.decision.degraded,
            policy_version: decided.policy_version.clone(),
            instance_id: self.audit.instance_id().to_owned(),
            key_id: keys.active_id().to_owned(),
            reasons: decided
                .decision
                .reasons
                .iter()
                .map(|r| AuditReason {
                    party: r.party.map_or("all", Party::role).to_owned(),
                    index: r.party.and_then(index),
                    code: r.code.as_str().to_owned(),
                })
                .collect(),
            parties: decided
                .parties
                .iter()
                .zip(subjects)
                .map(|(p, subject)| AuditParty {
                    party: p.party.role().to_owned(),
                    index: index(p.party),
                    subject_ref: keys.subject_ref(subject),
                    status: p.standing.as_str().to_owned(),
                    color: p.colour.as_ref().map(|c| c.as_str().to_owned()),
                    issuer: p.issuer.as_ref().map(|i| i.as_str().to_owned()),
                    source: p.source.map(|s| s.as_str().to_owned()),
                    status_age_secs: p
                        .as_of
                        .map(|at| (decided.decided_at - at).num_seconds().max(0)),
                })
                .collect(),
        }
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
