//! Per-instance hash chains: sealing records, and verifying stored chains.
//!
//! Each instance numbers its records 1, 2, 3 ... and links each to the one
//! before: since record format 2 the link is SHA-256(prev_hash, seq,
//! canonical record), which anyone can recompute, so a modification shows
//! as a hash mismatch, a deletion in the middle as a gap in `seq`, and an
//! insertion or reordering as a `prev_hash` that does not link. What makes
//! a chain unforgeable is its signed heads (`signing`): a chain must reach
//! every signed head with the signed hash, a closed chain must end there,
//! and the checkpoints retention leaves must be signed. Records of format 1
//! were sealed with HMAC under the audit key and need that key to verify.
//! Purged records leave a checkpoint (last purged seq and hash) where the
//! chain resumes.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sha2::Digest;

use super::signing::{HeadKind, PublicKeys, SignedHead};
use super::{AuditKeys, AuditRecord, SealedRecord};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The last sealed link of an instance's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl ChainHead {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// The link of a format-2 record: hex SHA-256 of the previous link, the
/// sequence number and the canonical record, newline-separated.
pub fn link_hash(prev_hash: &str, seq: i64, canonical: &[u8]) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(prev_hash.as_bytes());
    hash.update(b"\n");
    hash.update(seq.to_string().as_bytes());
    hash.update(b"\n");
    hash.update(canonical);
    crate::hexcode::encode(&hash.finalize())
}

/// Seals `record` as the link after `head`; returns the new link.
pub fn seal(head: &ChainHead, record: AuditRecord) -> SealedRecord {
    let seq = head.seq + 1;
    let (canonical, detail) = record.canonical_and_detail();
    let hash = link_hash(&head.hash, seq, &canonical);
    SealedRecord {
        record,
        seq,
        prev_hash: head.hash.clone(),
        hash,
        detail,
    }
}

/// A stored row as read back for verification. `record` is `Err` when the
/// stored columns no longer decode into a record.
#[derive(Debug)]
pub struct StoredLink {
    /// The record format the row was written in (1: HMAC seal, 2: SHA-256).
    pub format: i64,
    pub instance_id: String,
    pub seq: i64,
    pub decision_id: String,
    pub prev_hash: String,
    pub hash: String,
    pub record: Result<AuditRecord, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemKind {
    /// The record's content no longer matches its seal.
    Modified,
    /// Records `first..=last` of the chain are missing.
    Deleted { first: i64, last: i64 },
    /// The record does not link to the one before it.
    InsertedOrReordered,
    /// The record names a key that is not configured; it cannot be checked.
    UnknownKey { key_id: String },
    /// The stored columns do not decode into a record.
    Undecodable { error: String },
    /// A format-1 record: sealed with the audit secret, which is not given.
    LegacySeal,
    /// The chain ends at `last` before a signed head at `head_seq`: its
    /// newest records were deleted.
    Truncated { last: i64, head_seq: i64 },
    /// At a signed head's seq the chain holds another hash: re-sealed.
    Diverged { head_seq: i64 },
    /// The chain was closed at `head_seq` and still goes on.
    ContinuedAfterClose { head_seq: i64 },
    /// A head or checkpoint whose signature does not verify.
    BadSignature { what: String },
    /// A checkpoint without a signature (written by hand, or by a build
    /// before signed checkpoints).
    UnsignedCheckpoint,
    /// A saved head names a chain the store does not have.
    ChainMissing { head_seq: i64 },
    /// The chain has records but no signed head vouches for any of them.
    NoSignedHead,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainProblem {
    pub instance_id: String,
    pub seq: i64,
    pub decision_id: String,
    #[serde(flatten)]
    pub kind: ProblemKind,
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.kind {
            ProblemKind::Modified => {
                "was modified (its content does not match its seal)".to_owned()
            }
            ProblemKind::Deleted { first, last } if first == last => {
                format!("is preceded by a deleted record (seq {first} is missing)")
            }
            ProblemKind::Deleted { first, last } => {
                format!("is preceded by deleted records (seq {first} to {last} are missing)")
            }
            ProblemKind::InsertedOrReordered => {
                "does not link to the record before it (a record was inserted or the order changed)"
                    .to_owned()
            }
            ProblemKind::UnknownKey { key_id } => {
                format!("is sealed with key {key_id:?}, which is not configured")
            }
            ProblemKind::Undecodable { error } => format!("cannot be decoded: {error}"),
            ProblemKind::LegacySeal => {
                "is sealed in format 1 (HMAC); verifying it needs the audit secret".to_owned()
            }
            ProblemKind::Truncated { last, head_seq } => format!(
                "is the last one, but a signed head vouches for seq {head_seq}: records {}..={head_seq} were deleted",
                last + 1
            ),
            ProblemKind::Diverged { head_seq } => format!(
                "holds another hash than the signed head at seq {head_seq}: the chain was re-sealed"
            ),
            ProblemKind::ContinuedAfterClose { head_seq } => {
                format!("comes after the chain was closed at seq {head_seq}")
            }
            ProblemKind::BadSignature { what } => {
                format!("is vouched for by a {what} whose signature does not verify")
            }
            ProblemKind::UnsignedCheckpoint => {
                "follows a checkpoint that carries no valid signature".to_owned()
            }
            ProblemKind::ChainMissing { head_seq } => format!(
                "is missing: a saved signed head vouches for seq {head_seq} of a chain the store does not hold"
            ),
            ProblemKind::NoSignedHead => {
                "and the rest of its chain carry no signed head".to_owned()
            }
        };
        write!(
            f,
            "chain {}: record seq {} (decision {}) {what}",
            self.instance_id, self.seq, self.decision_id
        )
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ChainReport {
    pub chains: usize,
    pub records: u64,
    /// The first problem of each chain that has one, in chain order.
    pub problems: Vec<ChainProblem>,
    /// Records newer than their chain's newest signed head (the seconds
    /// before the next signing): linked, but not yet vouched for.
    pub unvouched: u64,
}

impl ChainReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What a verifier checks the links against besides themselves.
#[derive(Default)]
pub struct Trust<'k> {
    /// The audit keys, for format-1 (HMAC-sealed) records only.
    pub keys: Option<&'k AuditKeys>,
    /// The public keys heads and checkpoints must be signed with; `None`
    /// checks links only (a trail written before signed heads).
    pub public_keys: Option<PublicKeys>,
    /// Per chain, the link before its oldest record (retention).
    pub checkpoints: HashMap<String, SignedHead>,
    /// The newest signed head of each chain as the store keeps it, and the
    /// heads a regulator saved earlier.
    pub heads: Vec<SignedHead>,
}

/// Per chain: the link expected next, whether a problem was reported, and
/// the hashes seen at the seqs a signed head vouches for.
struct ChainState {
    expected: ChainHead,
    reported: bool,
    first_seq: Option<i64>,
    at_heads: HashMap<i64, String>,
}

/// Verifies links one at a time, in storage order: chains may interleave,
/// but each chain's links must come in the order they were written. State is
/// one head per chain (plus the hashes at signed heads), so a store of any
/// size is checked in small memory.
pub struct ChainVerifier<'k> {
    trust: Trust<'k>,
    /// Per chain, the seqs some signed head vouches for.
    wanted: HashMap<String, HashSet<i64>>,
    chains: HashMap<String, ChainState>,
    /// Chains in the order first seen, for the report.
    order: Vec<String>,
    records: u64,
    problems: HashMap<String, ChainProblem>,
}

impl<'k> ChainVerifier<'k> {
    pub fn new(trust: Trust<'k>) -> Self {
        let mut wanted: HashMap<String, HashSet<i64>> = HashMap::new();
        for head in &trust.heads {
            wanted
                .entry(head.instance_id.clone())
                .or_default()
                .insert(head.seq);
        }
        Self {
            trust,
            wanted,
            chains: HashMap::new(),
            order: Vec::new(),
            records: 0,
            problems: HashMap::new(),
        }
    }

    fn report(&mut self, instance_id: &str, seq: i64, decision_id: &str, kind: ProblemKind) {
        if let Some(state) = self.chains.get_mut(instance_id) {
            if state.reported {
                return;
            }
            state.reported = true;
        } else if self.problems.contains_key(instance_id) {
            return;
        }
        if !self.order.iter().any(|c| c == instance_id) {
            self.order.push(instance_id.to_owned());
        }
        self.problems.insert(
            instance_id.to_owned(),
            ChainProblem {
                instance_id: instance_id.to_owned(),
                seq,
                decision_id: decision_id.to_owned(),
                kind,
            },
        );
    }

    pub fn push(&mut self, link: StoredLink) {
        self.records += 1;
        if !self.chains.contains_key(&link.instance_id) {
            let expected = self
                .trust
                .checkpoints
                .get(&link.instance_id)
                .map(SignedHead::head)
                .unwrap_or_else(ChainHead::genesis);
            self.chains.insert(
                link.instance_id.clone(),
                ChainState {
                    expected,
                    reported: false,
                    first_seq: None,
                    at_heads: HashMap::new(),
                },
            );
            self.order.push(link.instance_id.clone());
        }
        let keys = self.trust.keys;
        let Some(state) = self.chains.get_mut(&link.instance_id) else {
            return;
        };
        state.first_seq.get_or_insert(link.seq);
        let expected = &state.expected;
        let problem = if link.seq > expected.seq + 1 {
            Some(ProblemKind::Deleted {
                first: expected.seq + 1,
                last: link.seq - 1,
            })
        } else if link.seq <= expected.seq || link.prev_hash != expected.hash {
            Some(ProblemKind::InsertedOrReordered)
        } else {
            match &link.record {
                Err(error) => Some(ProblemKind::Undecodable {
                    error: error.clone(),
                }),
                Ok(record) if link.format >= 2 => {
                    let hash = link_hash(&link.prev_hash, link.seq, &record.canonical_bytes());
                    (hash != link.hash).then_some(ProblemKind::Modified)
                }
                Ok(record) => match keys.map(|keys| {
                    keys.chain_hash(
                        &record.key_id,
                        &link.prev_hash,
                        link.seq,
                        &record.canonical_bytes(),
                    )
                }) {
                    None => Some(ProblemKind::LegacySeal),
                    Some(None) => Some(ProblemKind::UnknownKey {
                        key_id: record.key_id.clone(),
                    }),
                    Some(Some(hash)) if hash != link.hash => Some(ProblemKind::Modified),
                    Some(Some(_)) => None,
                },
            }
        };
        if self
            .wanted
            .get(&link.instance_id)
            .is_some_and(|seqs| seqs.contains(&link.seq))
        {
            state.at_heads.insert(link.seq, link.hash.clone());
        }
        // Continue from what is stored, so one break is reported once.
        state.expected = ChainHead {
            seq: link.seq,
            hash: link.hash.clone(),
        };
        if let Some(kind) = problem {
            self.report(&link.instance_id, link.seq, &link.decision_id, kind);
        }
    }

    pub fn finish(mut self) -> ChainReport {
        let mut unvouched = 0;
        if let Some(public_keys) = self.trust.public_keys.clone() {
            // Checkpoints must be signed, by a key trusted.
            let checkpoints: Vec<SignedHead> = self.trust.checkpoints.values().cloned().collect();
            for checkpoint in &checkpoints {
                let signed = checkpoint.kind == HeadKind::Checkpoint
                    && !checkpoint.signature.is_empty()
                    && public_keys.verify(checkpoint);
                if !signed {
                    let kind = if checkpoint.signature.is_empty() {
                        ProblemKind::UnsignedCheckpoint
                    } else {
                        ProblemKind::BadSignature {
                            what: "checkpoint".into(),
                        }
                    };
                    self.report(&checkpoint.instance_id, checkpoint.seq, "", kind);
                }
            }
            // Every signed head must verify, and its chain must reach it.
            let heads = std::mem::take(&mut self.trust.heads);
            let mut newest: HashMap<String, i64> = HashMap::new();
            for head in &heads {
                if !public_keys.verify(head) {
                    self.report(
                        &head.instance_id,
                        head.seq,
                        "",
                        ProblemKind::BadSignature {
                            what: format!("{} signed head", head.kind.as_str()),
                        },
                    );
                    continue;
                }
                let top = newest.entry(head.instance_id.clone()).or_insert(head.seq);
                *top = (*top).max(head.seq);
                let purged_to = self.trust.checkpoints.get(&head.instance_id).map(|c| c.seq);
                let Some(state) = self.chains.get(&head.instance_id) else {
                    if purged_to.is_none_or(|purged| purged < head.seq) {
                        self.report(
                            &head.instance_id,
                            head.seq,
                            "",
                            ProblemKind::ChainMissing { head_seq: head.seq },
                        );
                    }
                    continue;
                };
                let last = state.expected.seq;
                let kind = if last < head.seq {
                    Some(ProblemKind::Truncated {
                        last,
                        head_seq: head.seq,
                    })
                } else if purged_to.is_some_and(|purged| purged >= head.seq) {
                    None
                } else if state.at_heads.get(&head.seq) != Some(&head.hash) {
                    Some(ProblemKind::Diverged { head_seq: head.seq })
                } else if head.kind == HeadKind::Closed && last > head.seq {
                    Some(ProblemKind::ContinuedAfterClose { head_seq: head.seq })
                } else {
                    None
                };
                if let Some(kind) = kind {
                    self.report(&head.instance_id, last, "", kind);
                }
            }
            let chains: Vec<(String, i64, Option<i64>)> = self
                .chains
                .iter()
                .map(|(id, state)| (id.clone(), state.expected.seq, state.first_seq))
                .collect();
            for (chain, last, first) in chains {
                match newest.get(&chain) {
                    Some(head_seq) => unvouched += (last - head_seq).max(0) as u64,
                    None => {
                        self.report(&chain, first.unwrap_or(last), "", ProblemKind::NoSignedHead)
                    }
                }
            }
        }
        ChainReport {
            chains: self.order.len(),
            records: self.records,
            problems: self
                .order
                .iter()
                .filter_map(|chain| self.problems.remove(chain))
                .collect(),
            unvouched,
        }
    }
}

/// Verifies a whole sequence of links (tests and small stores).
pub fn verify_chains(trust: Trust<'_>, links: impl IntoIterator<Item = StoredLink>) -> ChainReport {
    let mut verifier = ChainVerifier::new(trust);
    for link in links {
        verifier.push(link);
    }
    verifier.finish()
}
