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
//!
//! The writer is a blocking loop on a thread of its own, not a task: a
//! commit is a write and an fsync, and doing them right where the batch was
//! sealed saves two thread hand-offs per batch (task to blocking pool and
//! back). On two busy cores each hand-off can wait a scheduler slice, which
//! showed as milliseconds of p99 and as a fifth of the runtime's CPU.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

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

/// How much may wait for the writer: records per batch, and records and
/// bytes queued (past either, callers wait to enqueue: memory stays bounded
/// whatever the size of the checks).
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    pub max_batch: usize,
    pub queue_records: usize,
    pub queue_bytes: usize,
}

impl Default for WriterLimits {
    fn default() -> Self {
        Self {
            max_batch: 64,
            queue_records: 64,
            queue_bytes: 8 << 20,
        }
    }
}

/// The queue's byte bound is kept in units of this many bytes (semaphore
/// permits are counted in `u32`).
const BYTE_UNIT: usize = 256;

struct Pending {
    record: AuditRecord,
    /// When the record became durable, or why it could not.
    committed: oneshot::Sender<Result<Instant, WriteError>>,
}

#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Pending>,
    /// Units of `BYTE_UNIT` bytes a queued record may still take.
    bytes: Arc<Semaphore>,
    byte_units: u32,
    store: AuditStore,
    metrics: Arc<Metrics>,
    keys: AuditKeys,
    instance_id: String,
}

impl AuditWriter {
    /// Starts the writer thread; it ends, after committing what was queued,
    /// once every clone of the returned writer is dropped, and then
    /// completes the returned receiver.
    pub async fn start(
        store: AuditStore,
        keys: AuditKeys,
        instance_id: String,
        limits: WriterLimits,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, oneshot::Receiver<()>), StoreError> {
        let WriterLimits {
            max_batch,
            queue_records: queue_capacity,
            queue_bytes,
        } = limits;
        let byte_units = (queue_bytes / BYTE_UNIT).clamp(1, u32::MAX as usize >> 1) as u32;
        let head = store
            .chain_head(&instance_id)
            .await?
            .unwrap_or_else(ChainHead::genesis);
        let (queue, receiver) = mpsc::channel(queue_capacity.max(1));
        let committer = Committer {
            store: store.clone(),
            keys: keys.clone(),
            instance_id: instance_id.clone(),
            max_batch: max_batch.max(1),
            metrics: Arc::clone(&metrics),
            runtime: tokio::runtime::Handle::current(),
        };
        // A thread of its own rather than the blocking pool: a runtime waits
        // for its blocking tasks when it shuts down, and a writer still
        // waiting for records must not hold the process open.
        let (finished, task) = oneshot::channel();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                crate::scheduling::prefer_low_latency();
                committer.run(receiver, head);
                let _ = finished.send(());
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start the audit writer: {e}")))?;
        Ok((
            Self {
                queue,
                bytes: Arc::new(Semaphore::new(byte_units as usize)),
                byte_units,
                store,
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

    /// Returns once the record is committed (or could not be), with the
    /// moment it became durable: the time from then until the caller runs
    /// again is time spent waiting for a CPU, not for the disk.
    pub async fn append(&self, record: AuditRecord) -> Result<Instant, WriteError> {
        let units = (record.approx_bytes() / BYTE_UNIT + 1).min(self.byte_units as usize) as u32;
        let _queued: OwnedSemaphorePermit = Arc::clone(&self.bytes)
            .acquire_many_owned(units)
            .await
            .map_err(|_| WriteError::Stopped)?;
        let (committed, outcome) = oneshot::channel();
        self.queue
            .send(Pending { record, committed })
            .await
            .map_err(|_| WriteError::Stopped)?;
        outcome.await.map_err(|_| WriteError::Stopped)?
    }
}

/// What the writer thread needs besides its queue.
struct Committer {
    store: AuditStore,
    keys: AuditKeys,
    instance_id: String,
    max_batch: usize,
    metrics: Arc<Metrics>,
    /// For the store's async calls (PostgreSQL, re-reading a chain head).
    runtime: tokio::runtime::Handle,
}

impl Committer {
    fn run(self, mut receiver: mpsc::Receiver<Pending>, head: ChainHead) {
        let metrics = &self.metrics;
        let mut head = Some(head);
        let mut batch: Vec<Pending> = Vec::with_capacity(self.max_batch);
        while receiver.blocking_recv_many(&mut batch, self.max_batch) > 0 {
            let start = match head.take() {
                Some(known) => Ok(known),
                None => self
                    .runtime
                    .block_on(self.store.chain_head(&self.instance_id))
                    .map(|h| h.unwrap_or_else(ChainHead::genesis)),
            };
            let timer = Instant::now();
            let (records, waiters): (Vec<AuditRecord>, Vec<_>) = batch
                .drain(..)
                .map(|pending| (pending.record, pending.committed))
                .unzip();
            let outcome = start.and_then(|start| self.commit(start, records));
            metrics
                .audit_commit_seconds
                .observe(timer.elapsed().as_secs_f64());
            metrics.audit_batch_size.observe(waiters.len() as f64);
            let reply = match outcome {
                Ok(new_head) => {
                    head = Some(new_head);
                    Ok(Instant::now())
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
    fn commit(&self, start: ChainHead, records: Vec<AuditRecord>) -> Result<ChainHead, StoreError> {
        let mut head = start;
        let mut sealed = Vec::with_capacity(records.len());
        for record in records {
            let link = seal(&self.keys, &head, record);
            head = ChainHead {
                seq: link.seq,
                hash: link.hash.clone(),
            };
            sealed.push(link);
        }
        self.store.append_blocking(sealed, &self.runtime)?;
        Ok(head)
    }
}
