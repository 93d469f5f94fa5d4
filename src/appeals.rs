//! Contesting an automated refusal: filing an appeal against a rejected
//! decision and a regulator's resolution of it.
//!
//! Invariants:
//! - Every appeal event is a record in this instance's hash chain, durable
//!   before it is answered, exactly like a decision (`AuditWriter`); the
//!   state the API and console show is the store's projection of those
//!   records (`store::appeals`).
//! - Only a reject can be appealed, only for a party it refused; a party
//!   has at most one open appeal per decision; a resolution is final.
//!   Both rules are checked and written under one lock (`with_appeal_lock`:
//!   an advisory lock every PostgreSQL replica takes; this process's mutex
//!   for SQLite), so two requests cannot both pass the check.
//! - Grounds and notes never carry a party's raw id into the trail: every
//!   token of the text that is the raw id of one of the decision's parties
//!   (its ref under some audit key equals the party's ref) is replaced
//!   before the record is built; a text with a digit run as long as a phone
//!   or ID number is kept but flagged, and the caller warned.

use std::sync::Arc;

use chrono::Utc;

use crate::audit::{
    AppealCounts, AppealCursor, AppealEvent, AppealFilter, AppealRow, AuditKeys, AuditParty,
    AuditRecord, AuditStore, AuditWriter, ReadScope, StoreError, WriteError, APPEAL_FILED,
    APPEAL_RESOLVED, FORMAT,
};
use crate::domain::{AppealOutcome, AppealedParty, FreeText, OverturnCause, SubjectId};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum AppealError {
    #[error("no decision with this id is in the audit trail")]
    DecisionNotFound,
    #[error("no appeal with this id")]
    AppealNotFound,
    #[error("{0}")]
    NotAppealable(String),
    #[error("the {party} of this decision already has an open appeal ({appeal_id}); it must be resolved first")]
    AlreadyOpen { party: String, appeal_id: String },
    #[error("this appeal was resolved ({outcome}); a resolution is final")]
    AlreadyResolved { outcome: String },
    #[error("{field}: {problem}")]
    InvalidResolution {
        field: &'static str,
        problem: String,
    },
    #[error("the audit store is unavailable")]
    Store(#[from] StoreError),
    #[error("the appeal could not be recorded in the audit trail")]
    Write(#[from] WriteError),
}

/// A request to file an appeal, parsed.
pub struct Filing {
    pub decision_id: uuid::Uuid,
    pub party: AppealedParty,
    pub grounds: FreeText,
    /// The client filing it (`None` with authentication off).
    pub by: Option<String>,
    /// Whose decisions it may appeal (a dispatch client: its own).
    pub scope: ReadScope,
}

/// A regulator's resolution, parsed.
pub struct Resolution {
    pub outcome: AppealOutcome,
    pub cause: Option<OverturnCause>,
    pub note: FreeText,
    pub by: Option<String>,
}

impl Resolution {
    /// An overturned refusal says why; an upheld one has no cause.
    pub fn new(
        outcome: AppealOutcome,
        cause: Option<&str>,
        note: FreeText,
        by: Option<String>,
    ) -> Result<Self, AppealError> {
        let cause = match (outcome, cause) {
            (AppealOutcome::Overturned, None) => {
                return Err(AppealError::InvalidResolution {
                    field: "cause",
                    problem: format!("an overturned refusal must say why: one of {}", causes()),
                })
            }
            (AppealOutcome::Overturned, Some(raw)) => Some(OverturnCause::parse(raw).ok_or_else(
                || AppealError::InvalidResolution {
                    field: "cause",
                    problem: format!("{raw:?} is not one of {}", causes()),
                },
            )?),
            (AppealOutcome::Upheld, Some(_)) => {
                return Err(AppealError::InvalidResolution {
                    field: "cause",
                    problem: "only an overturned refusal has a cause".into(),
                })
            }
            (AppealOutcome::Upheld, None) => None,
        };
        Ok(Self {
            outcome,
            cause,
            note,
            by,
        })
    }
}

fn causes() -> String {
    OverturnCause::ALL
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What filing or resolving answers: the appeal as it now stands, and what
/// was done to its text.
pub struct Written {
    pub appeal: AppealRow,
    /// Tokens of the text replaced because they were a party's raw id.
    pub redacted: u32,
}

pub struct Appeals {
    writer: AuditWriter,
    store: AuditStore,
    keys: AuditKeys,
    /// This process's half of the appeal lock (see the module doc).
    lock: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Appeals {
    pub fn new(writer: AuditWriter, store: AuditStore, metrics: Arc<Metrics>) -> Self {
        Self {
            keys: writer.keys().clone(),
            writer,
            store,
            lock: tokio::sync::Mutex::new(()),
            metrics,
        }
    }

    /// Files an appeal against the refusal of one party of a decision.
    pub async fn file(&self, filing: Filing) -> Result<Written, AppealError> {
        let decision = self
            .store
            .get(&filing.decision_id.to_string())
            .await?
            .filter(|d| !d.record.is_appeal() && filing.scope.admits(&d.record))
            .ok_or(AppealError::DecisionNotFound)?;
        let record = &decision.record;
        if record.decision != "reject" {
            return Err(AppealError::NotAppealable(format!(
                "decision {} was {}; only a reject can be appealed",
                record.decision_id, record.decision
            )));
        }
        let party = appealed_party(record, &filing.party)?;
        let mut grounds = filing.grounds;
        let redacted = self.redact(&mut grounds, record);
        let possible_identifier = grounds.possible_identifier();
        let _local = self.lock.lock().await;
        let written = self
            .store
            .with_appeal_lock(async {
                let open = AppealFilter {
                    state: Some("open"),
                    decision_id: Some(record.decision_id.clone()),
                    ..Default::default()
                };
                let (open, _) = self.store.appeals_page(&open, None, 100).await?;
                if let Some(existing) = open
                    .iter()
                    .find(|a| a.party == party.party && a.party_index == party.index)
                {
                    return Err(AppealError::AlreadyOpen {
                        party: party.party.clone(),
                        appeal_id: existing.appeal_id.clone(),
                    });
                }
                let now = Utc::now();
                let appeal_id = crate::domain::record_id_at(now).to_string();
                let event = AppealEvent {
                    appeal_id: appeal_id.clone(),
                    decision_id: record.decision_id.clone(),
                    grounds: Some(grounds.into_string()),
                    outcome: None,
                    cause: None,
                    note: None,
                    redacted,
                    possible_identifier,
                };
                let filed = self.event_record(
                    appeal_id.clone(),
                    now,
                    APPEAL_FILED,
                    record,
                    party.clone(),
                    event,
                    filing.by,
                );
                self.writer.append(filed).await?;
                self.metrics
                    .appeal_events
                    .with_label_values(&["filed"])
                    .inc();
                self.store
                    .appeal(&appeal_id)
                    .await?
                    .ok_or(AppealError::AppealNotFound)
            })
            .await??;
        Ok(Written {
            appeal: written,
            redacted,
        })
    }

    /// Resolves an open appeal; `scope` is the regulator's.
    pub async fn resolve(
        &self,
        appeal_id: &str,
        resolution: Resolution,
        scope: &ReadScope,
    ) -> Result<Written, AppealError> {
        let _local = self.lock.lock().await;
        self.store
            .with_appeal_lock(async {
                let appeal = self.get(appeal_id, scope).await?;
                if let Some(outcome) = &appeal.outcome {
                    return Err(AppealError::AlreadyResolved {
                        outcome: outcome.clone(),
                    });
                }
                let decision = self.store.get(&appeal.decision_id).await?;
                let mut note = resolution.note;
                let redacted = match &decision {
                    Some(d) => self.redact(&mut note, &d.record),
                    None => self.redact_refs(&mut note, &[appeal.subject_ref.as_str()]),
                };
                let party = decision
                    .as_ref()
                    .and_then(|d| {
                        d.record
                            .parties
                            .iter()
                            .find(|p| p.party == appeal.party && p.index == appeal.party_index)
                    })
                    .cloned()
                    .unwrap_or_else(|| bare_party(&appeal));
                let now = Utc::now();
                let event = AppealEvent {
                    appeal_id: appeal.appeal_id.clone(),
                    decision_id: appeal.decision_id.clone(),
                    grounds: None,
                    outcome: Some(resolution.outcome.as_str().to_owned()),
                    cause: resolution.cause.map(|c| c.as_str().to_owned()),
                    possible_identifier: note.possible_identifier(),
                    note: Some(note.into_string()),
                    redacted,
                };
                let base = decision.map(|d| d.record).unwrap_or_else(|| AuditRecord {
                    hook: crate::domain::Hook::parse(&appeal.hook)
                        .unwrap_or(crate::domain::Hook::Trip),
                    city: appeal.city.clone(),
                    decision_id: appeal.decision_id.clone(),
                    key_id: self.keys.active_id().to_owned(),
                    ..placeholder_record()
                });
                let resolved = self.event_record(
                    crate::domain::record_id_at(now).to_string(),
                    now,
                    APPEAL_RESOLVED,
                    &base,
                    party,
                    event,
                    resolution.by,
                );
                self.writer.append(resolved).await?;
                self.metrics
                    .appeal_events
                    .with_label_values(&[resolution.outcome.as_str()])
                    .inc();
                let appeal = self.get(appeal_id, scope).await?;
                Ok(Written { appeal, redacted })
            })
            .await?
    }

    /// One appeal, if it exists and the scope admits it.
    pub async fn get(&self, appeal_id: &str, scope: &ReadScope) -> Result<AppealRow, AppealError> {
        self.store
            .appeal(appeal_id)
            .await?
            .filter(|a| admits(scope, a))
            .ok_or(AppealError::AppealNotFound)
    }

    /// A page of appeals, oldest first.
    pub async fn list(
        &self,
        filter: &AppealFilter,
        cursor: Option<&AppealCursor>,
        limit: u32,
    ) -> Result<(Vec<AppealRow>, Option<AppealCursor>), AppealError> {
        Ok(self.store.appeals_page(filter, cursor, limit).await?)
    }

    /// Every appeal of a decision (open and resolved), oldest first.
    pub async fn of_decision(&self, decision_id: &str) -> Result<Vec<AppealRow>, AppealError> {
        let filter = AppealFilter {
            decision_id: Some(decision_id.to_owned()),
            ..Default::default()
        };
        Ok(self.store.appeals_page(&filter, None, 100).await?.0)
    }

    pub async fn counts(&self, filter: &AppealFilter) -> Result<AppealCounts, AppealError> {
        Ok(self.store.appeal_counts(filter).await?)
    }

    /// Sets the open-appeals gauges from the store (every replica's).
    pub async fn refresh_metrics(&self) -> Result<(), AppealError> {
        let (open, oldest) = self.store.open_appeals().await?;
        self.metrics.appeals_open.set(open as i64);
        let age = oldest.map_or(0, |us| {
            (Utc::now().timestamp_micros() - us).max(0) / 1_000_000
        });
        self.metrics.appeals_oldest_open_seconds.set(age);
        Ok(())
    }

    /// Replaces the tokens of `text` that are raw ids of the record's
    /// parties.
    fn redact(&self, text: &mut FreeText, record: &AuditRecord) -> u32 {
        let refs: Vec<&str> = record.subject_refs().collect();
        self.redact_refs(text, &refs)
    }

    fn redact_refs(&self, text: &mut FreeText, refs: &[&str]) -> u32 {
        text.redact(|token| {
            SubjectId::parse(token).is_ok_and(|id| {
                self.keys
                    .all_subject_refs(&id)
                    .iter()
                    .any(|r| refs.contains(&r.as_str()))
            })
        }) as u32
    }

    /// The record of an appeal event: the appealed decision's hook, trip,
    /// city, policy version and key, its one party, no reasons.
    #[allow(clippy::too_many_arguments)]
    fn event_record(
        &self,
        id: String,
        at: chrono::DateTime<Utc>,
        kind: &str,
        decision: &AuditRecord,
        party: AuditParty,
        event: AppealEvent,
        by: Option<String>,
    ) -> AuditRecord {
        AuditRecord {
            format: FORMAT,
            decision_id: id,
            decided_at_us: at.timestamp_micros(),
            hook: decision.hook,
            trip_id: decision.trip_id.clone(),
            city: decision.city.clone(),
            decision: kind.to_owned(),
            degraded: false,
            policy_version: decision.policy_version.clone(),
            instance_id: self.writer.instance_id().to_owned(),
            key_id: decision.key_id.clone(),
            reasons: Vec::new(),
            parties: vec![party],
            appeal: Some(event),
            client: by,
        }
    }
}

/// Whether a reader's scope admits an appeal: its cities, and a dispatch
/// client or fleet only what it (or its clients) filed.
pub fn admits(scope: &ReadScope, appeal: &AppealRow) -> bool {
    scope.admits_parts(&appeal.city, Some(appeal.filed_by.as_str()))
}

/// The party an appeal names, as the decision recorded it, if the
/// decision refused it.
fn appealed_party(record: &AuditRecord, asked: &AppealedParty) -> Result<AuditParty, AppealError> {
    let of_role: Vec<&AuditParty> = record
        .parties
        .iter()
        .filter(|p| p.party == asked.role)
        .collect();
    let party = match (asked.index, of_role.as_slice()) {
        (_, []) => {
            return Err(AppealError::NotAppealable(format!(
                "decision {} has no {}",
                record.decision_id, asked.role
            )))
        }
        (None, [only]) => *only,
        (None, _) => {
            return Err(AppealError::NotAppealable(format!(
                "decision {} has {} {}s; say which with index",
                record.decision_id,
                of_role.len(),
                asked.role
            )))
        }
        (Some(i), parties) => parties
            .iter()
            .find(|p| p.index == Some(i))
            .copied()
            .ok_or_else(|| {
                AppealError::NotAppealable(format!(
                    "decision {} has no {} with index {i}",
                    record.decision_id, asked.role
                ))
            })?,
    };
    let refused = record
        .reasons
        .iter()
        .any(|r| r.party == "all" || (r.party == party.party && r.index == party.index));
    if !refused {
        return Err(AppealError::NotAppealable(format!(
            "decision {} did not refuse its {}; only a refused party can appeal",
            record.decision_id, asked.role
        )));
    }
    Ok(party.clone())
}

/// The appealed party when its decision is no longer in the store.
fn bare_party(appeal: &AppealRow) -> AuditParty {
    AuditParty {
        party: appeal.party.clone(),
        index: appeal.party_index,
        subject_ref: appeal.subject_ref.clone(),
        status: "unknown".into(),
        color: None,
        issuer: None,
        source: None,
        status_age_secs: None,
        eligible: None,
        eligible_after_us: None,
    }
}

/// The fields of a purged decision the resolution cannot copy.
fn placeholder_record() -> AuditRecord {
    AuditRecord {
        format: FORMAT,
        decision_id: String::new(),
        decided_at_us: 0,
        hook: crate::domain::Hook::Trip,
        trip_id: String::new(),
        city: String::new(),
        decision: String::new(),
        degraded: false,
        policy_version: String::new(),
        instance_id: String::new(),
        key_id: String::new(),
        reasons: Vec::new(),
        parties: Vec::new(),
        appeal: None,
        client: None,
    }
}
