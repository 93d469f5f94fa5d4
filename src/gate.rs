//! The decision path of one check, top to bottom: pick the city's policy,
//! resolve every party's status, evaluate, stamp the decision, and record it
//! in the audit trail; the decision is returned only once its record is
//! durable.
//!
//! This is the only place that sequences the parts; routes hand it parsed
//! requests and turn its results into HTTP, the resolver does the I/O, and
//! policy stays pure. The policy in force can be replaced at any moment
//! (hot reload); a check reads it once, so no check sees half of each.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::audit::{AuditRecord, AuditWriter, WriteError};
use crate::domain::{
    Check, CityCode, Decided, IssuerId, Party, PartyReport, Source, Standing, Status, StatusLookup,
    SubjectId, Unavailable,
};
use crate::metrics::Metrics;
use crate::policy::{evaluate, Policy, PolicyError};
use crate::status::Resolver;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("city '{city}' is not configured in policy version {policy_version}")]
    UnknownCity {
        city: CityCode,
        policy_version: String,
    },
    #[error("the decision could not be recorded in the audit trail, so it is not given")]
    AuditUnavailable(#[from] WriteError),
}

pub struct Gate {
    resolver: Resolver,
    metrics: Arc<Metrics>,
    /// Where the policy is reloaded from (SIGHUP, the admin endpoint).
    policy_path: PathBuf,
    /// The national platform, asked about codes the city does not recognise.
    national: Option<Resolver>,
    /// The itinerary-card source, for hooks whose policy checks it.
    itinerary: Option<Resolver>,
    policy: RwLock<Arc<Policy>>,
    audit: AuditWriter,
    /// The longest any decision may take; callers may ask for less.
    deadline: Duration,
    /// Remembers who was let through, to tell dispatch when they turn.
    notifier: Option<Arc<crate::notify::Notifier>>,
}

impl Gate {
    pub fn new(
        resolver: Resolver,
        policy: Policy,
        policy_path: PathBuf,
        audit: AuditWriter,
        deadline: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        resolver.set_strictness(policy.strictness().clone());
        Self {
            resolver,
            metrics,
            policy_path,
            national: None,
            itinerary: None,
            policy: RwLock::new(Arc::new(policy)),
            audit,
            deadline,
            notifier: None,
        }
    }

    pub fn with_notifier(mut self, notifier: Option<Arc<crate::notify::Notifier>>) -> Self {
        self.notifier = notifier;
        self
    }

    pub fn with_national(mut self, national: Option<Resolver>) -> Self {
        if let Some(national) = &national {
            national.set_strictness(self.policy().strictness().clone());
        }
        self.national = national;
        self
    }

    pub fn with_itinerary(mut self, itinerary: Option<Resolver>) -> Self {
        self.itinerary = itinerary;
        self
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Every configured upstream's breaker state.
    pub fn upstream_states(&self) -> Vec<(&'static str, crate::domain::BreakerState)> {
        std::iter::once(&self.resolver)
            .chain(&self.national)
            .chain(&self.itinerary)
            .map(|r| (r.upstream(), r.breaker_state()))
            .collect()
    }

    pub fn audit_backlog(&self) -> usize {
        self.audit.backlog()
    }

    pub fn audit_unloaded(&self) -> usize {
        self.audit.unloaded()
    }

    /// Bytes SQLite holds in this process (see `audit::sqlite_memory_used`).
    pub fn sqlite_memory_bytes(&self) -> i64 {
        crate::audit::sqlite_memory_used()
    }

    /// Whether the audit store takes writes now (for readiness).
    pub async fn audit_writable(&self) -> Result<(), String> {
        self.audit.store_writable().await
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Loads the policy document again and, if it is valid, puts it in
    /// force at once; an invalid document is refused and the old one keeps
    /// serving.
    pub fn reload_policy(&self) -> Result<String, PolicyError> {
        let metrics = &self.metrics;
        match Policy::load(&self.policy_path) {
            Ok(policy) => {
                let version = policy.version().to_owned();
                for resolver in std::iter::once(&self.resolver).chain(&self.national) {
                    resolver.set_strictness(policy.strictness().clone());
                }
                *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
                metrics.set_policy_version(&version);
                metrics.policy_reloads.with_label_values(&["applied"]).inc();
                tracing::info!(%version, "policy reloaded");
                Ok(version)
            }
            Err(error) => {
                metrics.policy_reloads.with_label_values(&["refused"]).inc();
                tracing::error!(%error, kept = self.policy().version(), "policy reload refused; the old policy keeps serving");
                Err(error)
            }
        }
    }

    /// Decides `check` within `budget` (capped by the configured deadline):
    /// whatever status is not known by then counts as unavailable, and when
    /// the caller shortened the deadline that is the caller's doing, which
    /// no city waives.
    pub async fn check(
        &self,
        check: Check,
        budget: Option<Duration>,
        client: Option<String>,
    ) -> Result<Decided, GateError> {
        let started = Instant::now();
        let callers_deadline = budget.is_some_and(|b| b < self.deadline);
        let deadline = started + budget.map_or(self.deadline, |b| b.min(self.deadline));
        let policy = self.policy();
        let city_policy = policy
            .city(&check.city)
            .ok_or_else(|| GateError::UnknownCity {
                city: check.city.clone(),
                policy_version: policy.version().to_owned(),
            })?;

        let subjects = check.subjects();
        let wants_itinerary = city_policy.needs_itinerary(check.hook);
        let (mut lookups, mut itineraries) =
            tokio::join!(self.resolver.resolve(&subjects, deadline), async {
                match (&self.itinerary, wants_itinerary) {
                    (Some(source), true) => Some(source.resolve(&subjects, deadline).await),
                    _ => None,
                }
            });
        self.mediate(&policy, city_policy, &subjects, &mut lookups, deadline)
            .await;
        if callers_deadline {
            let blame_caller = |lookup: &mut StatusLookup| {
                if *lookup == StatusLookup::Unavailable(Unavailable::Deadline) {
                    *lookup = StatusLookup::Unavailable(Unavailable::CallerDeadline);
                }
            };
            lookups.iter_mut().for_each(blame_caller);
            itineraries.iter_mut().flatten().for_each(blame_caller);
        }
        let status_seconds = started.elapsed().as_secs_f64();

        let decided_at = Utc::now();
        let parties: Vec<(Party, &StatusLookup)> = check
            .parties()
            .map(|(party, _)| party)
            .zip(&lookups)
            .collect();
        let evaluation = evaluate(
            &policy,
            city_policy,
            check.hook,
            &parties,
            itineraries.as_deref(),
            decided_at,
        );

        let reports = parties
            .iter()
            .zip(evaluation.failures)
            .zip(evaluation.eligible_after)
            .enumerate()
            .map(
                |(i, (((party, lookup), failures), eligible_after))| PartyReport {
                    failures,
                    eligible: evaluation.eligible[i],
                    eligible_after,
                    ..report(*party, lookup, evaluation.standings[i])
                },
            )
            .collect();
        let decided = Decided {
            // Minted from the decision time: the time index finds a decision
            // by id (see `SqliteStore::get`).
            decision_id: crate::domain::record_id_at(decided_at),
            hook: check.hook,
            reference: check.reference.clone(),
            city: check.city.clone(),
            policy_version: policy.version().to_owned(),
            decision: evaluation.decision,
            parties: reports,
            decided_at,
            client,
        };

        let subjects: Vec<&SubjectId> = check.parties().map(|(_, subject)| subject).collect();
        let record = AuditRecord::from_decided(
            &decided,
            &subjects,
            self.audit.keys(),
            self.audit.instance_id(),
        );
        let handed_over = Instant::now();
        let durable_at = self.audit.append(record).await?;
        let resumed = Instant::now();
        if let Some(notifier) = &self.notifier {
            notifier.remember(&decided, &subjects);
        }
        let audit_seconds = (resumed - handed_over).as_secs_f64();
        let resume_seconds = resumed
            .into_std()
            .saturating_duration_since(durable_at)
            .as_secs_f64();

        let metrics = &self.metrics;
        metrics.record_stages(status_seconds, audit_seconds, resume_seconds);
        for party in &decided.parties {
            metrics.record_lookup(party.source);
        }
        let codes: Vec<_> = decided.decision.reasons.iter().map(|r| r.code).collect();
        metrics.record_decision(
            decided.hook.as_str(),
            decided.decision.outcome,
            &codes,
            started.elapsed().as_secs_f64(),
        );
        Ok(decided)
    }

    /// Mutual recognition through the national platform, when one is
    /// configured. Asked, in one batch, about every subject whose regional
    /// code comes from an issuer the city does not accept, and, when the
    /// city recognises the national platform's codes, about every subject
    /// the regional provider has no code for or could not answer about (a
    /// visitor). A national code replaces a foreign regional code only when
    /// it is at least as strict (a regional red is never loosened by a
    /// national green); it replaces "no code" or "unavailable" outright.
    /// Otherwise the regional answer stands. A national answer used is
    /// reported with source `national`.
    async fn mediate(
        &self,
        policy: &Policy,
        city: &crate::policy::CityPolicy,
        subjects: &[SubjectId],
        lookups: &mut [StatusLookup],
        deadline: Instant,
    ) {
        let Some(national) = &self.national else {
            return;
        };
        let strictness = policy.strictness();
        let visitors_recognised = policy.accepts(city, &IssuerId::new(NATIONAL_ISSUER));
        let asked: Vec<(usize, Option<u8>)> = lookups
            .iter()
            .enumerate()
            .filter_map(|(i, lookup)| match lookup {
                StatusLookup::Known {
                    status: Status::Registered(code),
                    ..
                } if !policy.accepts(city, &code.issuer) => Some((i, Some(strictness.rank(code)))),
                StatusLookup::Known {
                    status: Status::NotRegistered,
                    ..
                }
                | StatusLookup::Unavailable(_)
                    if visitors_recognised =>
                {
                    Some((i, None))
                }
                _ => None,
            })
            .collect();
        if asked.is_empty() {
            return;
        }
        let ids: Vec<SubjectId> = asked.iter().map(|(i, _)| subjects[*i].clone()).collect();
        let answers = national.resolve(&ids, deadline).await;
        for ((i, regional_rank), answer) in asked.into_iter().zip(answers) {
            if let StatusLookup::Known {
                status: Status::Registered(code),
                fetched_at,
                ..
            } = answer
            {
                if regional_rank.is_none_or(|rank| strictness.rank(&code) >= rank) {
                    lookups[i] = StatusLookup::Known {
                        status: Status::Registered(code),
                        source: Source::National,
                        fetched_at,
                    };
                }
            }
        }
    }
}

/// The issuer id of codes the national platform issues; a city that lists
/// it among its recognised issuers recognises visitors through the platform.
pub const NATIONAL_ISSUER: &str = "national";

fn report(party: Party, lookup: &StatusLookup, standing: Standing) -> PartyReport {
    let mut report = PartyReport {
        party,
        standing,
        colour: None,
        issuer: None,
        source: None,
        as_of: None,
        colour_since: None,
        failures: Vec::new(),
        eligible: true,
        eligible_after: None,
    };
    if let StatusLookup::Known { status, source, .. } = lookup {
        report.source = Some(*source);
        if let Status::Registered(code) = status {
            report.colour = Some(code.colour.clone());
            report.issuer = Some(code.issuer.clone());
            report.as_of = Some(code.renewed_at);
            report.colour_since = code.colour_since;
        }
    }
    report
}
