//! Where an instance's chain continues: at start-up, and after a commit
//! whose outcome is unknown.
//!
//! Sequence numbers are never reused. An instance continues its chain only
//! from a head it can vouch for: the newest head it signed (checked with
//! its public keys, and found in the store with the same hash), or, after
//! an ambiguous commit, the last head it knows was durable. When the store
//! no longer reaches that head (records were deleted, or the chain was
//! closed at a clean shutdown), the instance opens a new chain segment,
//! `<instance_id>~<n>`, instead of writing over the gap: the old chain
//! keeps ending where its signed head says, which `audit verify` reports.

use super::signing::{HeadKind, PublicKeys, SignedHead};
use super::{AuditStore, ChainHead, StoreError};

/// The chain to append to, and its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuation {
    pub chain: String,
    pub head: ChainHead,
}

/// The chain id of segment `n` of `instance_id` (segment 0 is the id
/// itself).
fn segment_id(instance_id: &str, n: u64) -> String {
    if n == 0 {
        instance_id.to_owned()
    } else {
        format!("{instance_id}~{n}")
    }
}

/// Which segment of `instance_id` a chain id is, if it is one.
fn segment_of(instance_id: &str, chain: &str) -> Option<u64> {
    if chain == instance_id {
        return Some(0);
    }
    chain
        .strip_prefix(instance_id)?
        .strip_prefix('~')?
        .parse()
        .ok()
}

/// Where `instance_id` continues at start-up.
pub async fn at_start(
    store: &AuditStore,
    instance_id: &str,
    trusted: &PublicKeys,
) -> Result<Continuation, StoreError> {
    let heads = store.heads().await?;
    // The newest segment of this instance that the store knows of.
    let mut newest: Option<(u64, SignedHead)> = None;
    for head in heads {
        if let Some(n) = segment_of(instance_id, &head.instance_id) {
            if newest.as_ref().is_none_or(|(m, _)| n > *m) {
                newest = Some((n, head));
            }
        }
    }
    let Some((n, signed)) = newest else {
        // Nothing signed yet (a new instance, or a store from before signed
        // heads): continue from what is stored.
        let head = store
            .chain_head(instance_id)
            .await?
            .unwrap_or_else(ChainHead::genesis);
        return Ok(Continuation {
            chain: instance_id.to_owned(),
            head,
        });
    };
    let stored = store
        .chain_head(&signed.instance_id)
        .await?
        .unwrap_or_else(ChainHead::genesis);
    let vouched = trusted.verify(&signed)
        && signed.kind == HeadKind::Head
        && reaches(store, &signed.instance_id, &signed.head(), &stored).await?;
    if vouched {
        return Ok(Continuation {
            chain: signed.instance_id,
            head: stored,
        });
    }
    if signed.kind != HeadKind::Closed {
        tracing::error!(
            chain = %signed.instance_id,
            signed_seq = signed.seq,
            stored_seq = stored.seq,
            "the audit chain no longer reaches its signed head (records deleted?); opening a new chain segment"
        );
    }
    fresh_segment(store, instance_id, n + 1).await
}

/// After a commit whose outcome is unknown: continue from the store when it
/// still reaches `durable` (the chain and the last head known to be
/// durable in it), else open the next segment.
pub async fn after_failure(
    store: &AuditStore,
    instance_id: &str,
    durable: &Continuation,
) -> Result<Continuation, StoreError> {
    let stored = store
        .chain_head(&durable.chain)
        .await?
        .unwrap_or_else(ChainHead::genesis);
    if reaches(store, &durable.chain, &durable.head, &stored).await? {
        return Ok(Continuation {
            chain: durable.chain.clone(),
            head: stored,
        });
    }
    tracing::error!(
        chain = %durable.chain,
        durable_seq = durable.head.seq,
        stored_seq = stored.seq,
        "the audit chain lost records it had committed; opening a new chain segment"
    );
    let n = segment_of(instance_id, &durable.chain).unwrap_or(0);
    fresh_segment(store, instance_id, n + 1).await
}

/// Whether the stored chain still holds `head` (same hash at its seq) and
/// has not gone back before it.
async fn reaches(
    store: &AuditStore,
    chain: &str,
    head: &ChainHead,
    stored: &ChainHead,
) -> Result<bool, StoreError> {
    if head.seq == 0 {
        return Ok(true);
    }
    if stored.seq < head.seq {
        return Ok(false);
    }
    if stored.seq == head.seq {
        return Ok(stored.hash == head.hash);
    }
    Ok(store.link_at(chain, head.seq).await?.as_deref() == Some(head.hash.as_str()))
}

/// The first segment from `n` on that holds no record yet.
async fn fresh_segment(
    store: &AuditStore,
    instance_id: &str,
    mut n: u64,
) -> Result<Continuation, StoreError> {
    while store
        .chain_head(&segment_id(instance_id, n))
        .await?
        .is_some()
    {
        n += 1;
    }
    Ok(Continuation {
        chain: segment_id(instance_id, n),
        head: ChainHead::genesis(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_named_after_their_instance() {
        assert_eq!(segment_id("tg-1", 0), "tg-1");
        assert_eq!(segment_id("tg-1", 3), "tg-1~3");
        assert_eq!(segment_of("tg-1", "tg-1~3"), Some(3));
        assert_eq!(segment_of("tg-1", "tg-1"), Some(0));
        assert_eq!(segment_of("tg-1", "tg-12"), None);
        assert_eq!(segment_of("tg-1", "tg-1~x"), None);
    }
}
