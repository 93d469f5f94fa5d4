//! How records leave the store: the JSON shape of the regulator's API, NDJSON
//! and CSV lines for exports, and whole-store verification. Shared by the
//! HTTP routes and the `tripgate audit` commands so both say the same thing.

use serde::Serialize;

use super::chain::{ChainVerifier, StoredLink, Trust};
use super::signing::{PublicKeys, SignedHead};
use super::AuditRecord;
use super::{
    AppealEvent, AuditKeys, AuditParty, AuditReason, AuditStore, ChainReport, SealedRecord,
    StoreError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

impl ExportFormat {
    pub fn parse(raw: Option<&str>) -> Option<Self> {
        match raw {
            None | Some("ndjson") => Some(ExportFormat::Ndjson),
            Some("csv") => Some(ExportFormat::Csv),
            Some(_) => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The first line of an export, if the format has one.
    pub fn header(self) -> Option<&'static str> {
        match self {
            ExportFormat::Ndjson => None,
            ExportFormat::Csv => Some(
                "decision_id,decided_at,hook,trip_id,city,decision,degraded,policy_version,\
                 reasons,parties,instance_id,seq,hash\n",
            ),
        }
    }

    pub fn line(self, sealed: &SealedRecord) -> String {
        match self {
            ExportFormat::Ndjson => {
                let mut line = serde_json::to_string(&RecordView::new(sealed)).unwrap_or_default();
                line.push('\n');
                line
            }
            ExportFormat::Csv => csv_line(sealed),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChainView<'a> {
    pub instance_id: &'a str,
    pub seq: i64,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

/// A record as the regulator's API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordView<'a> {
    pub decision_id: &'a str,
    pub decided_at: String,
    pub hook: &'static str,
    pub trip_id: &'a str,
    pub city: &'a str,
    pub decision: &'a str,
    pub degraded: bool,
    pub policy_version: &'a str,
    pub key_id: &'a str,
    /// The record format (2: its chain link is a plain SHA-256).
    pub format: u32,
    pub reasons: &'a [AuditReason],
    pub parties: &'a [AuditParty],
    /// On an appeal's record (decision `appeal_filed` or `appeal_resolved`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appeal: Option<&'a AppealEvent>,
    /// The client that asked (absent with authentication off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<&'a str>,
    pub chain: ChainView<'a>,
}

pub fn rfc3339_micros(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

impl<'a> RecordView<'a> {
    pub fn new(sealed: &'a SealedRecord) -> Self {
        let r = &sealed.record;
        Self {
            decision_id: &r.decision_id,
            decided_at: rfc3339_micros(r.decided_at_us),
            hook: r.hook.as_str(),
            trip_id: &r.trip_id,
            city: &r.city,
            decision: &r.decision,
            degraded: r.degraded,
            policy_version: &r.policy_version,
            key_id: &r.key_id,
            format: r.format,
            reasons: &r.reasons,
            parties: &r.parties,
            appeal: r.appeal.as_ref(),
            client: r.client.as_deref(),
            chain: ChainView {
                instance_id: &r.instance_id,
                seq: sealed.seq,
                prev_hash: &sealed.prev_hash,
                hash: &sealed.hash,
            },
        }
    }
}

fn party_label(party: &str, index: Option<u32>) -> String {
    match index {
        Some(i) => format!("{party}[{i}]"),
        None => party.to_owned(),
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

fn csv_line(sealed: &SealedRecord) -> String {
    let r = &sealed.record;
    let reasons: Vec<String> = r
        .reasons
        .iter()
        .map(|x| format!("{}:{}", party_label(&x.party, x.index), x.code))
        .collect();
    let parties: Vec<String> = r
        .parties
        .iter()
        .map(|p| {
            format!(
                "{}:{}:{}",
                party_label(&p.party, p.index),
                p.subject_ref,
                p.status
            )
        })
        .collect();
    let fields = [
        r.decision_id.clone(),
        rfc3339_micros(r.decided_at_us),
        r.hook.as_str().to_owned(),
        r.trip_id.clone(),
        r.city.clone(),
        r.decision.clone(),
        r.degraded.to_string(),
        r.policy_version.clone(),
        reasons.join(";"),
        parties.join(";"),
        r.instance_id.clone(),
        sealed.seq.to_string(),
        sealed.hash.clone(),
    ];
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// Checks every chain in the store, page by page, against its checkpoints,
/// its stored signed heads and `saved` heads (a regulator's earlier copy);
/// `progress` is called with the number of records checked so far. Without
/// `public_keys` only the links are checked (heads and checkpoints need a
/// key to mean anything); `keys` are needed for format-1 records only.
pub async fn verify_store(
    store: &AuditStore,
    keys: Option<&AuditKeys>,
    public_keys: Option<PublicKeys>,
    saved: Vec<SignedHead>,
    mut progress: impl FnMut(u64),
) -> Result<ChainReport, StoreError> {
    const PAGE: u32 = 5_000;
    let mut heads = store.heads().await?;
    heads.extend(saved);
    let mut verifier = ChainVerifier::new(Trust {
        keys,
        public_keys,
        checkpoints: store.checkpoints().await?,
        heads,
    });
    let mut after = None;
    let mut checked = 0;
    loop {
        let (links, next) = store.links_after(after.take(), PAGE).await?;
        after = next;
        let fetched = links.len();
        for link in links {
            verifier.push(link);
        }
        checked += fetched as u64;
        progress(checked);
        if fetched < PAGE as usize || after.is_none() {
            break;
        }
    }
    Ok(verifier.finish())
}

/// A line of an NDJSON export, read back to verify the export on its own.
#[derive(serde::Deserialize)]
struct ExportedRecord {
    decision_id: String,
    decided_at: String,
    hook: String,
    trip_id: String,
    city: String,
    decision: String,
    degraded: bool,
    policy_version: String,
    key_id: String,
    format: u32,
    reasons: Vec<AuditReason>,
    parties: Vec<AuditParty>,
    #[serde(default)]
    appeal: Option<AppealEvent>,
    #[serde(default)]
    client: Option<String>,
    chain: ExportedChain,
}

#[derive(serde::Deserialize)]
struct ExportedChain {
    instance_id: String,
    seq: i64,
    prev_hash: String,
    hash: String,
}

/// The links of an NDJSON export, in chain order (exports are newest
/// first). Holds the export in memory.
pub fn links_of_export(text: &str) -> Result<Vec<StoredLink>, String> {
    let mut links = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let e: ExportedRecord = serde_json::from_str(line)
            .map_err(|error| format!("line {}: not an exported record: {error}", n + 1))?;
        let decided_at_us = chrono::DateTime::parse_from_rfc3339(&e.decided_at)
            .map_err(|error| format!("line {}: decided_at: {error}", n + 1))?
            .timestamp_micros();
        let record = super::record::Hook::parse(&e.hook)
            .map(|hook| AuditRecord {
                client: e.client,
                appeal: e.appeal,
                format: e.format,
                decision_id: e.decision_id.clone(),
                decided_at_us,
                hook,
                trip_id: e.trip_id,
                city: e.city,
                decision: e.decision,
                degraded: e.degraded,
                policy_version: e.policy_version,
                instance_id: e.chain.instance_id.clone(),
                key_id: e.key_id,
                reasons: e.reasons,
                parties: e.parties,
            })
            .ok_or_else(|| format!("unknown hook {:?}", e.hook));
        links.push(StoredLink {
            format: i64::from(e.format),
            instance_id: e.chain.instance_id,
            seq: e.chain.seq,
            decision_id: e.decision_id,
            prev_hash: e.chain.prev_hash,
            hash: e.chain.hash,
            record,
        });
    }
    links.sort_by(|a, b| (&a.instance_id, a.seq).cmp(&(&b.instance_id, b.seq)));
    Ok(links)
}
