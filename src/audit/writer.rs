//! Group commit: the single writer of an instance's chain.
//!
//! Decisions hand their records to a queue and wait. The writer takes
//! everything queued (up to `max_batch`), seals it onto the chain and commits
//! it in one transaction, then releases every waiter at once: durability
//! costs each decision about one commit of latency, not one commit of
//! throughput. If a commit fails, every waiter of that batch is told so (the
//! hook answers 503 rather than give an unrecorded decision) and the chain
//! head is re-read from the store before the next batch, because a failed
//! commit may still have landed.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::chain::{seal, ChainHead};
use super::{AuditKeys, AuditRecord, AuditStore, StoreError};
use crate::metrics::Metrics;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the audit store could not record the decision: {0}")]
    Unavailable(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

struct Pending {
    record: AuditRecord,
    committed: oneshot::Sender<Result<(), WriteError>>,
}

#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Pending>,
    store: AuditStore,
    metrics: Arc<Metrics>,
    keys: AuditKeys,
    instance_id: String,
}

impl AuditWriter {
    /// Starts the writer task; it ends, after committing what was queued,
    /// once every clone of the returned writer is dropped.
    pub async fn start(
        store: AuditStore,
        keys: AuditKeys,
        instance_id: String,
        max_batch: usize,
        queue_capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, JoinHandle<()>), StoreError> {
        let head = store
            .chain_head(&instance_id)
            .await?
            .unwrap_or_else(ChainHead::genesis);
        let (queue, receiver) = mpsc::channel(queue_capacity.max(1));
        let store_for_probe = store.clone();
        let task = tokio::spawn(run(
            receiver,
            store,
            keys.clone(),
            instance_id.clone(),
            head,
            max_batch.max(1),
            Arc::clone(&metrics),
        ));
        Ok((
            Self {
                queue,
                store: store_for_probe,
                metrics,
                keys,
                instance_id,
            },
            task,
        ))
    }

    /// Decisions queued and not yet committed.
    pub fn backlog(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Records durable but not yet queryable (see `AuditStore::unloaded`).
    pub fn unloaded(&self) -> usize {
        self.store.unloaded()
    }

    pub async fn store_writable(&self) -> Result<(), String> {
        self.store.ping().await.map_err(|e| e.to_string())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn keys(&self) -> &AuditKeys {
        &self.keys
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Returns once the record is committed (or could not be).
    pub async fn append(&self, record: AuditRecord) -> Result<(), WriteError> {
        let (committed, outcome) = oneshot::channel();
        self.queue
            .send(Pending { record, committed })
            .await
            .map_err(|_| WriteError::Stopped)?;
        outcome.await.map_err(|_| WriteError::Stopped)?
    }
}

async fn run(
    mut receiver: mpsc::Receiver<Pending>,
    store: AuditStore,
    keys: AuditKeys,
    instance_id: String,
    head: ChainHead,
    max_batch: usize,
    metrics: Arc<Metrics>,
) {
    let mut head = Some(head);
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    while receiver.recv_many(&mut batch, max_batch).await > 0 {
        let start = match head.take() {
            Some(known) => Ok(known),
            None => store
                .chain_head(&instance_id)
                .await
                .map(|h| h.unwrap_or_else(ChainHead::genesis)),
        };
        let timer = std::time::Instant::now();
        let (records, waiters): (Vec<AuditRecord>, Vec<_>) = batch
            .drain(..)
            .map(|pending| (pending.record, pending.committed))
            .unzip();
        let outcome = match start {
            Ok(start) => commit(&store, &keys, start, records).await,
            Err(e) => Err(e),
        };
        metrics
            .audit_commit_seconds
            .observe(timer.elapsed().as_secs_f64());
        metrics.audit_batch_size.observe(waiters.len() as f64);
        let reply = match outcome {
            Ok(new_head) => {
                head = Some(new_head);
                Ok(())
            }
            Err(error) => {
                metrics.audit_commit_failures.inc();
                tracing::error!(%error, records = waiters.len(), "audit commit failed; answering 503 for these decisions");
                Err(WriteError::Unavailable(error.to_string()))
            }
        };
        for committed in waiters {
            // A waiter that gave up (client gone) needs no answer.
            let _ = committed.send(reply.clone());
        }
    }
    tracing::info!("audit writer stopped after committing every queued record");
}

/// Seals the batch after `start` and commits it; returns the new head.
async fn commit(
    store: &AuditStore,
    keys: &AuditKeys,
    start: ChainHead,
    records: Vec<AuditRecord>,
) -> Result<ChainHead, StoreError> {
    let mut head = start;
    let mut sealed = Vec::with_capacity(records.len());
    for record in records {
        let link = seal(keys, &head, record);
        head = ChainHead {
            seq: link.seq,
            hash: link.hash.clone(),
        };
        sealed.push(link);
    }
    store.append(sealed).await?;
    Ok(head)
}
