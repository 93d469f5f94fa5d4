//! One decision's audit record and its canonical encoding.
//!
//! The record holds no raw subject id: parties are `subject_ref`s, an HMAC of
//! the id under the key named by `key_id`. The canonical encoding (the
//! struct serialised as JSON, fields in declaration order, no maps) is what
//! the chain hash covers; changing this struct changes that encoding, so any
//! change must bump `FORMAT`.

use serde::{Deserialize, Serialize};

use super::AuditKeys;
use crate::domain::{Decided, Party, Reason, ReasonCode, SubjectId};

/// The format of new records: 2 links by plain SHA-256 (format 1 sealed
/// with HMAC under the audit key). Stored per row.
pub const FORMAT: u32 = 2;

/// About the encoded size of a trip's record (three parties).
pub const RECORD_BYTES: usize = 1024;

pub use crate::domain::Hook;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditReason {
    /// `driver`, `passenger` or `all`.
    pub party: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<u32>,
    pub code: String,
    /// The policy rule that fired (`<city>.<hook>[.<check>]`).
    pub rule: String,
    /// E.g. the risk area of ITINERARY_RISK_AREA.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditParty {
    pub party: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<u32>,
    /// base64url(HMAC-SHA256(subject key, raw id)), see `keys`.
    pub subject_ref: String,
    /// The standing policy gave it: green, yellow, red, unknown, no_code ...
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
    /// l1, redis, upstream or stale; absent when the status was unavailable.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    /// Seconds between the code's last renewal and the decision.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status_age_secs: Option<i64>,
    /// For candidate drivers: eligible (true) or excluded (false).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eligible: Option<bool>,
    /// For a refused party: when it may pass again (microseconds since the
    /// epoch), where policy could derive it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eligible_after_us: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub format: u32,
    pub decision_id: String,
    /// Microseconds since the Unix epoch: an integer, so the encoding is exact.
    pub decided_at_us: i64,
    pub hook: Hook,
    pub trip_id: String,
    pub city: String,
    /// `allow` or `reject`.
    pub decision: String,
    pub degraded: bool,
    pub policy_version: String,
    /// The instance that decided; also the chain the record belongs to.
    pub instance_id: String,
    /// The key that made the subject refs and sealed the record.
    pub key_id: String,
    pub reasons: Vec<AuditReason>,
    pub parties: Vec<AuditParty>,
    /// On an appeal's record (`decision` is `appeal_filed` or
    /// `appeal_resolved`) only; left out when absent, so decisions keep
    /// their encoding.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub appeal: Option<AppealEvent>,
    /// The authenticated client that asked (absent with authentication
    /// off). Last, and left out when absent, so that records without it
    /// keep their encoding.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client: Option<String>,
}

/// The `decision` of the record that files an appeal.
pub const APPEAL_FILED: &str = "appeal_filed";
/// The `decision` of the record that resolves one.
pub const APPEAL_RESOLVED: &str = "appeal_resolved";

/// What an appeal's record says besides the columns every record has. Its
/// hook, trip, city, policy version and key id are the appealed
/// decision's, its one party the appealed party as that decision recorded
/// it (the same subject ref), its `client` who filed or resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppealEvent {
    /// The id of the record that filed the appeal.
    pub appeal_id: String,
    /// The appealed decision.
    pub decision_id: String,
    /// Filed: what the person argues (party ids replaced).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grounds: Option<String>,
    /// Resolved: upheld or overturned.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outcome: Option<String>,
    /// Overturned: why the refusal was wrong (provider_data_wrong,
    /// status_outdated, wrong_person, policy_misapplied, other).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cause: Option<String>,
    /// Resolved: the regulator's explanation (party ids replaced).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
    /// Tokens of the text replaced because they were a party's raw id.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub redacted: u32,
    /// The text holds a run of digits as long as a phone or ID number.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub possible_identifier: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Every field of a record but its reasons and parties, in the record's
/// order: the canonical encoding is this object with the detail's fields
/// appended.
#[derive(Serialize)]
struct RecordHead<'a> {
    format: u32,
    decision_id: &'a str,
    decided_at_us: i64,
    hook: Hook,
    trip_id: &'a str,
    city: &'a str,
    decision: &'a str,
    degraded: bool,
    policy_version: &'a str,
    instance_id: &'a str,
    key_id: &'a str,
}

/// The reasons and parties of a record, as the `detail` column keeps them.
#[derive(Serialize)]
struct DetailFields<'a> {
    reasons: &'a [AuditReason],
    parties: &'a [AuditParty],
    #[serde(skip_serializing_if = "Option::is_none")]
    appeal: Option<&'a AppealEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
}

impl AuditRecord {
    /// The decision as the audit trail keeps it: subjects pseudonymised,
    /// every reason (including why each excluded candidate was excluded).
    pub fn from_decided(
        decided: &Decided,
        subjects: &[&SubjectId],
        keys: &AuditKeys,
        instance_id: &str,
    ) -> Self {
        let index = |party: Party| party.index().map(|i| i as u32);
        let audit_reason = |r: &Reason| AuditReason {
            party: r.party.map_or("all", Party::role).to_owned(),
            index: r.party.and_then(index),
            code: r.code.as_str().to_owned(),
            rule: r.rule.to_string(),
            detail: r.detail.clone(),
        };
        let mut reasons: Vec<AuditReason> =
            decided.decision.reasons.iter().map(audit_reason).collect();
        for excluded in decided.parties.iter().flat_map(|p| &p.failures) {
            if !decided.decision.reasons.contains(excluded) {
                reasons.push(audit_reason(excluded));
            }
        }
        AuditRecord {
            format: FORMAT,
            decision_id: decided.decision_id.to_string(),
            decided_at_us: decided.decided_at.timestamp_micros(),
            hook: decided.hook,
            trip_id: decided
                .reference
                .as_ref()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            city: decided.city.as_str().to_owned(),
            decision: decided.decision.outcome.as_str().to_owned(),
            degraded: decided.decision.degraded,
            policy_version: decided.policy_version.clone(),
            instance_id: instance_id.to_owned(),
            key_id: keys.active_id().to_owned(),
            reasons,
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
                    eligible: matches!(p.party, Party::Candidate(_)).then_some(p.eligible),
                    eligible_after_us: p.eligible_after.as_ref().map(|e| e.at.timestamp_micros()),
                })
                .collect(),
            appeal: None,
            client: decided.client.clone(),
        }
    }

    /// Whether this is an appeal's record rather than a decision's.
    pub fn is_appeal(&self) -> bool {
        self.appeal.is_some()
    }

    /// What the chain hash covers: the record serialised as JSON, fields in
    /// declaration order (byte for byte `serde_json::to_vec(record)`).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        self.canonical_and_detail().0
    }

    /// The canonical bytes and the `detail` column's text. The reasons and
    /// parties, most of a record, are serialised once for both: the
    /// canonical encoding ends with the detail's fields, so it is the head
    /// object with the detail object's inside appended.
    pub fn canonical_and_detail(&self) -> (Vec<u8>, String) {
        let detail = DetailFields {
            reasons: &self.reasons,
            parties: &self.parties,
            appeal: self.appeal.as_ref(),
            client: self.client.as_deref(),
        };
        let head = RecordHead {
            format: self.format,
            decision_id: &self.decision_id,
            decided_at_us: self.decided_at_us,
            hook: self.hook,
            trip_id: &self.trip_id,
            city: &self.city,
            decision: &self.decision,
            degraded: self.degraded,
            policy_version: &self.policy_version,
            instance_id: &self.instance_id,
            key_id: &self.key_id,
        };
        // Sized for a trip's record up front: growing from serde_json's
        // default 128 bytes took five reallocations per record.
        let mut detail_bytes = Vec::with_capacity(RECORD_BYTES);
        let mut canonical = Vec::with_capacity(RECORD_BYTES + 256);
        // Structs of strings, integers and vectors always serialise, to
        // objects: `{...}` each.
        let _ = serde_json::to_writer(&mut detail_bytes, &detail);
        let _ = serde_json::to_writer(&mut canonical, &head);
        canonical.pop();
        canonical.push(b',');
        canonical.extend_from_slice(&detail_bytes[1..]);
        // serde_json writes UTF-8 only.
        let detail = String::from_utf8(detail_bytes).unwrap_or_default();
        (canonical, detail)
    }

    /// One bit per reason code present, for filtering by reason in SQL.
    /// About how many bytes the record holds in memory (for the writer's
    /// queue bound; an overestimate is fine).
    pub fn approx_bytes(&self) -> usize {
        let appeal = self.appeal.as_ref().map_or(0, |a| {
            256 + a.grounds.as_ref().map_or(0, String::len) + a.note.as_ref().map_or(0, String::len)
        });
        let head = 256
            + appeal
            + self.client.as_ref().map_or(0, String::len)
            + self.decision_id.len()
            + self.trip_id.len()
            + self.city.len()
            + self.policy_version.len()
            + self.instance_id.len()
            + self.key_id.len();
        let reasons: usize = self
            .reasons
            .iter()
            .map(|r| {
                96 + r.party.len()
                    + r.code.len()
                    + r.rule.len()
                    + r.detail.as_ref().map_or(0, String::len)
            })
            .sum();
        let parties: usize = self
            .parties
            .iter()
            .map(|p| {
                160 + p.party.len()
                    + p.subject_ref.len()
                    + p.status.len()
                    + p.color.as_ref().map_or(0, String::len)
                    + p.issuer.as_ref().map_or(0, String::len)
                    + p.source.as_ref().map_or(0, String::len)
            })
            .sum();
        head + reasons + parties
    }

    pub fn reason_mask(&self) -> i64 {
        self.reasons
            .iter()
            .filter_map(|r| ReasonCode::parse(&r.code))
            .fold(0, |mask, code| mask | reason_bit(code))
    }

    pub fn subject_refs(&self) -> impl Iterator<Item = &str> {
        self.parties.iter().map(|p| p.subject_ref.as_str())
    }
}

pub fn reason_bit(code: ReasonCode) -> i64 {
    let position = ReasonCode::ALL.iter().position(|c| *c == code).unwrap_or(0);
    1 << position
}

/// The part of a record that is stored as one JSON column, as read back.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordDetail {
    pub reasons: Vec<AuditReason>,
    pub parties: Vec<AuditParty>,
    #[serde(default)]
    pub appeal: Option<AppealEvent>,
    #[serde(default)]
    pub client: Option<String>,
}

/// A record with its place in its instance's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub record: AuditRecord,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    /// The `detail` column's text (`AuditRecord::canonical_and_detail`).
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(text: String, with_options: bool, parties: usize) -> AuditRecord {
        let optional = |s: &str| with_options.then(|| format!("{s}{text}"));
        AuditRecord {
            format: FORMAT,
            decision_id: format!("id-{text}"),
            decided_at_us: -42,
            hook: Hook::Candidates,
            trip_id: text.clone(),
            city: "hangzhou".into(),
            decision: "reject".into(),
            degraded: with_options,
            policy_version: format!("v\"{text}"),
            instance_id: "i-1".into(),
            key_id: "k1".into(),
            reasons: (0..parties.min(2))
                .map(|i| AuditReason {
                    party: "driver".into(),
                    index: with_options.then_some(i as u32),
                    code: "DRIVER_RED".into(),
                    rule: format!("hangzhou.trip.{text}"),
                    detail: optional("area "),
                })
                .collect(),
            parties: (0..parties)
                .map(|i| AuditParty {
                    party: "candidate".into(),
                    index: Some(i as u32),
                    subject_ref: format!("ref{i}{text}"),
                    status: "red".into(),
                    color: optional("c"),
                    issuer: optional("i"),
                    source: optional("s"),
                    status_age_secs: with_options.then_some(7),
                    eligible: with_options.then_some(false),
                    eligible_after_us: with_options.then_some(9),
                })
                .collect(),
            appeal: with_options.then(|| AppealEvent {
                appeal_id: format!("a{text}"),
                decision_id: format!("d{text}"),
                grounds: optional("g"),
                outcome: None,
                cause: optional("c"),
                note: None,
                redacted: 1,
                possible_identifier: true,
            }),
            client: optional("client "),
        }
    }

    proptest! {
        // The chain hash of every record already stored covers
        // `serde_json::to_vec(record)`: the one-pass encoding must give
        // exactly those bytes, and the detail column exactly its fields.
        #[test]
        fn canonical_bytes_are_the_serialised_record_and_detail_its_tail(
            text in "\\PC{0,12}|[\",\\\\{}:\\[\\]]{0,6}",
            with_options: bool,
            parties in 0usize..4,
        ) {
            let record = record(text, with_options, parties);
            let (canonical, detail) = record.canonical_and_detail();
            prop_assert_eq!(&canonical, &serde_json::to_vec(&record).unwrap());
            prop_assert_eq!(&record.canonical_bytes(), &canonical);
            let read_back: RecordDetail = serde_json::from_str(&detail).unwrap();
            prop_assert_eq!(&read_back.reasons, &record.reasons);
            prop_assert_eq!(&read_back.parties, &record.parties);
            let mut expected = serde_json::json!({"reasons": record.reasons.clone(), "parties": record.parties.clone()});
            if let Some(appeal) = &record.appeal {
                expected["appeal"] = serde_json::json!(appeal);
            }
            if let Some(client) = &record.client {
                expected["client"] = serde_json::json!(client);
            }
            prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&detail).unwrap(), expected);
            prop_assert!(detail.starts_with(r#"{"reasons":["#), "detail: {}", detail);
            prop_assert!(canonical.ends_with(&detail.as_bytes()[1..]));
        }
    }
}
