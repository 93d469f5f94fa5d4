//! Per-instance hash chains: sealing records, and verifying stored chains.
//!
//! Each instance numbers its records 1, 2, 3 ... and seals each with
//! HMAC(chain key, prev_hash, seq, canonical record). Without the key a
//! record cannot be forged or re-sealed, so any modification shows as a hash
//! mismatch, a deletion as a gap in `seq`, and an insertion or reordering as
//! a `prev_hash` that does not link to the record before it. Purged records
//! leave a checkpoint (last purged seq and hash) where the chain resumes.

use std::collections::HashMap;

use serde::Serialize;

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

/// Seals `record` as the link after `head`; returns the new link.
pub fn seal(keys: &AuditKeys, head: &ChainHead, record: AuditRecord) -> SealedRecord {
    let seq = head.seq + 1;
    let (canonical, detail) = record.canonical_and_detail();
    let hash = keys
        .chain_hash(&record.key_id, &head.hash, seq, &canonical)
        // Records are built with the active key, which is always configured.
        .unwrap_or_default();
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
}

impl ChainReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies links one at a time, in storage order: chains may interleave,
/// but each chain's links must come in the order they were written. State is
/// one head per chain, so a store of any size is checked in small memory.
pub struct ChainVerifier<'k> {
    keys: &'k AuditKeys,
    checkpoints: HashMap<String, ChainHead>,
    /// Per chain: the link expected next, and whether a problem was reported.
    chains: HashMap<String, (ChainHead, bool)>,
    /// Chains in the order first seen, for the report.
    order: Vec<String>,
    records: u64,
    problems: HashMap<String, ChainProblem>,
}

impl<'k> ChainVerifier<'k> {
    pub fn new(keys: &'k AuditKeys, checkpoints: HashMap<String, ChainHead>) -> Self {
        Self {
            keys,
            checkpoints,
            chains: HashMap::new(),
            order: Vec::new(),
            records: 0,
            problems: HashMap::new(),
        }
    }

    pub fn push(&mut self, link: StoredLink) {
        self.records += 1;
        if !self.chains.contains_key(&link.instance_id) {
            let head = self
                .checkpoints
                .get(&link.instance_id)
                .cloned()
                .unwrap_or_else(ChainHead::genesis);
            self.chains.insert(link.instance_id.clone(), (head, false));
            self.order.push(link.instance_id.clone());
        }
        let Some((expected, reported)) = self.chains.get_mut(&link.instance_id) else {
            return;
        };

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
                Ok(record) => match self.keys.chain_hash(
                    &record.key_id,
                    &link.prev_hash,
                    link.seq,
                    &record.canonical_bytes(),
                ) {
                    None => Some(ProblemKind::UnknownKey {
                        key_id: record.key_id.clone(),
                    }),
                    Some(hash) if hash != link.hash => Some(ProblemKind::Modified),
                    Some(_) => None,
                },
            }
        };
        if let Some(kind) = problem {
            if !*reported {
                self.problems.insert(
                    link.instance_id.clone(),
                    ChainProblem {
                        instance_id: link.instance_id.clone(),
                        seq: link.seq,
                        decision_id: link.decision_id.clone(),
                        kind,
                    },
                );
                *reported = true;
            }
        }
        // Continue from what is stored, so one break is reported once.
        *expected = ChainHead {
            seq: link.seq,
            hash: link.hash,
        };
    }

    pub fn finish(mut self) -> ChainReport {
        ChainReport {
            chains: self.order.len(),
            records: self.records,
            problems: self
                .order
                .iter()
                .filter_map(|chain| self.problems.remove(chain))
                .collect(),
        }
    }
}

/// Verifies a whole sequence of links (tests and small stores).
pub fn verify_chains(
    keys: &AuditKeys,
    checkpoints: HashMap<String, ChainHead>,
    links: impl IntoIterator<Item = StoredLink>,
) -> ChainReport {
    let mut verifier = ChainVerifier::new(keys, checkpoints);
    for link in links {
        verifier.push(link);
    }
    verifier.finish()
}
