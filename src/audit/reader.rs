//! The read side of the audit trail, as the regulator's API uses it: parse
//! filters (hashing a raw subject id with every key), page, summarise,
//! export. Routes go through this and never touch SQL.

use actix_web::web::Bytes;
use futures_util::Stream;

use super::query::Cursor;
use super::{
    AuditKeys, AuditStore, DecisionFilter, ExportFormat, FilterError, GroupBy, Page, RawFilter,
    SealedRecord, SignedHead, StoreError, SummaryRow,
};

/// Without `from`, the filter covers `window` before `to` (or `now_us`).
fn bound_to_window(filter: &mut DecisionFilter, window: chrono::TimeDelta, now_us: i64) {
    if filter.from_us.is_none() {
        let to = filter.to_us.unwrap_or(now_us);
        let window_us = window.num_microseconds().unwrap_or(i64::MAX);
        filter.from_us = Some(to.saturating_sub(window_us));
    }
}

/// Records per page of an export: bounds the memory an export takes.
const EXPORT_PAGE: u32 = 1000;

/// A signed head and what a cheap look at the store says about it.
#[derive(Debug, Clone)]
pub struct HeadCheck {
    pub head: SignedHead,
    /// Its signature verifies against the service's public key.
    pub signed: bool,
    /// The link it names is in the store with its hash (or was purged by
    /// retention, behind a checkpoint).
    pub link_present: bool,
}

#[derive(Clone)]
pub struct AuditReader {
    store: AuditStore,
    keys: AuditKeys,
    /// The public key heads are signed with, as served (`ed25519:...`).
    public_key: String,
    /// What a summary or export without `from` covers, back from `to`.
    default_window: chrono::TimeDelta,
}

impl AuditReader {
    pub fn new(
        store: AuditStore,
        keys: AuditKeys,
        public_key: String,
        default_window: chrono::TimeDelta,
    ) -> Self {
        Self {
            store,
            keys,
            public_key,
            default_window,
        }
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    pub fn keys(&self) -> &AuditKeys {
        &self.keys
    }

    /// Every chain's newest signed head, with whether its signature
    /// verifies against the service's public key and whether the link it
    /// names is still in the store with that hash (false: the trail was
    /// cut short or altered after the head was signed).
    pub async fn head_checks(&self) -> Result<Vec<HeadCheck>, StoreError> {
        let keys = super::PublicKeys::parse(&self.public_key).ok();
        let checkpoints = self.store.checkpoints().await?;
        let mut checks = Vec::new();
        for head in self.store.heads().await? {
            let signed = keys.as_ref().is_some_and(|k| k.verify(&head));
            let stored = self.store.link_at(&head.instance_id, head.seq).await?;
            // A head at or before the purge checkpoint is checked against it.
            let purged = checkpoints
                .get(&head.instance_id)
                .is_some_and(|c| head.seq <= c.seq);
            let link_present = stored.as_deref() == Some(head.hash.as_str()) || purged;
            checks.push(HeadCheck {
                head,
                signed,
                link_present,
            });
        }
        Ok(checks)
    }

    /// The newest signed head of every chain.
    pub async fn heads(&self) -> Result<Vec<SignedHead>, StoreError> {
        self.store.heads().await
    }

    pub fn filter(&self, raw: &RawFilter) -> Result<DecisionFilter, FilterError> {
        DecisionFilter::parse(raw, &self.keys)
    }

    /// A filter for a summary or an export: without `from`, it covers the
    /// default window before `to` (or now), so no request scans the whole
    /// trail unless it asks to.
    pub fn bounded_filter(&self, raw: &RawFilter) -> Result<DecisionFilter, FilterError> {
        let mut filter = self.filter(raw)?;
        bound_to_window(
            &mut filter,
            self.default_window,
            chrono::Utc::now().timestamp_micros(),
        );
        Ok(filter)
    }

    pub async fn page(
        &self,
        filter: &DecisionFilter,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        self.store.page(filter, cursor, limit).await
    }

    pub async fn get(&self, decision_id: &str) -> Result<Option<SealedRecord>, StoreError> {
        self.store.get(decision_id).await
    }

    pub async fn summary(
        &self,
        filter: &DecisionFilter,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        self.store.summary(filter, group_by).await
    }

    /// Every matching record, newest first, rendered page by page.
    pub fn export(
        &self,
        filter: DecisionFilter,
        format: ExportFormat,
    ) -> impl Stream<Item = Result<Bytes, StoreError>> + 'static {
        export_stream(self.store.clone(), filter, format)
    }
}

enum ExportState {
    Header,
    Next(Option<Cursor>),
    Done,
}

pub fn export_stream(
    store: AuditStore,
    filter: DecisionFilter,
    format: ExportFormat,
) -> impl Stream<Item = Result<Bytes, StoreError>> + 'static {
    futures_util::stream::unfold(ExportState::Header, move |state| {
        let store = store.clone();
        let filter = filter.clone();
        async move {
            let cursor = match state {
                ExportState::Done => return None,
                ExportState::Header => {
                    if let Some(header) = format.header() {
                        return Some((
                            Ok(Bytes::from_static(header.as_bytes())),
                            ExportState::Next(None),
                        ));
                    }
                    None
                }
                ExportState::Next(cursor) => cursor,
            };
            match store.page(&filter, cursor.as_ref(), EXPORT_PAGE).await {
                Err(e) => Some((Err(e), ExportState::Done)),
                Ok(page) => {
                    let mut chunk = String::new();
                    for record in &page.records {
                        chunk.push_str(&format.line(record));
                    }
                    let next = match page.next_cursor {
                        Some(cursor) => ExportState::Next(Some(cursor)),
                        None => ExportState::Done,
                    };
                    Some((Ok(Bytes::from(chunk)), next))
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_from_a_summary_or_export_covers_the_default_window_only() {
        let hour = chrono::TimeDelta::hours(1);
        let now = 1_800_000_000_000_000;
        let mut open = DecisionFilter::default();
        bound_to_window(&mut open, hour * 24, now);
        assert_eq!(open.from_us, Some(now - 24 * 3_600_000_000));

        let to = now - 10 * 3_600_000_000;
        let mut until = DecisionFilter {
            to_us: Some(to),
            ..Default::default()
        };
        bound_to_window(&mut until, hour * 24, now);
        assert_eq!(until.from_us, Some(to - 24 * 3_600_000_000));

        let mut explicit = DecisionFilter {
            from_us: Some(5),
            ..Default::default()
        };
        bound_to_window(&mut explicit, hour, now);
        assert_eq!(explicit.from_us, Some(5), "an explicit from stands");
    }
}
