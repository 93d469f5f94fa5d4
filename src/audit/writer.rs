//! Group commit: the single writer of an instance's chain.
//!
//! Decisions hand their records to a queue and wait. The writer takes
//! everything queued (up to `max_batch`), seals it onto the chain and commits
//! it in one transaction, then releases every waiter at once: durability
//! costs each decision about one commit of latency, not one commit of
//! throughput. If a commit fails, every waiter of that batch is told so (the
//! hook answers 503 rather than give an unrecorded decision) and the chain
//! head is re-read from the store before the next batch, because a failed
//! commit may still have landed (`resume`: it continues only from a head it
//! knows was durable, else in a new chain segment; no seq is reused).
//!
//! The writer also signs its chain's head (`signing`): after a commit once
//! `head_interval` has passed since the last signature, on a tick of that
//! interval when records came since, and as a `closed` head when it stops
//! cleanly. A signed head is stored only after the records it covers are
//! durable, and by `heads`, off this thread: commits never wait for it.
//!
//! The writer is a blocking loop on a thread of its own, not a task: a
//! commit is a write and an fsync, and doing them right where the batch was
//! sealed saves two thread hand-offs per batch (task to blocking pool and
//! back). On two busy cores each hand-off can wait a scheduler slice, which
//! showed as milliseconds of p99 and as a fifth of the runtime's CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::chain::{seal, ChainHead};
use super::heads::HeadPublisher;
use super::resume::{self, Continuation};
use super::signing::{HeadKind, HeadSigner, PublicKeys, SignedHead};
use super::{AuditKeys, AuditRecord, AuditStore, StoreError};
use crate::metrics::Metrics;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the audit store could not record the decision")]
    Unavailable(#[source] Arc<StoreError>),
    #[error("the audit writer has stopped")]
    Stopped,
}

/// How much may wait for the writer: records per batch, and records and
/// bytes queued (past either, callers wait to enqueue: memory stays bounded
/// whatever the size of the checks); and how often the head is signed.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    pub max_batch: usize,
    pub queue_records: usize,
    pub queue_bytes: usize,
    pub head_interval: Duration,
}

impl Default for WriterLimits {
    fn default() -> Self {
        Self {
            max_batch: 64,
            queue_records: 64,
            queue_bytes: 8 << 20,
            head_interval: Duration::from_secs(10),
        }
    }
}

/// What the writer thread is handed: a record, or a tick of the signing
/// interval. Records travel by value: boxing them would allocate once more
/// per decision for the sake of the rare tick.
#[allow(clippy::large_enum_variant)]
enum Work {
    Record(Pending),
    Tick,
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
    queue: mpsc::Sender<Work>,
    /// Units of `BYTE_UNIT` bytes a queued record may still take.
    bytes: Arc<Semaphore>,
    byte_units: u32,
    store: AuditStore,
    keys: AuditKeys,
    instance_id: String,
}

impl AuditWriter {
    /// Starts the writer thread; it ends, after committing what was queued,
    /// once every clone of the returned writer is dropped, and then
    /// completes the returned receiver.
    /// `trusted` are the public keys whose signed heads the writer may
    /// continue from (its own and retired ones).
    pub async fn start(
        store: AuditStore,
        keys: AuditKeys,
        signer: HeadSigner,
        trusted: PublicKeys,
        instance_id: String,
        limits: WriterLimits,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, oneshot::Receiver<()>), StoreError> {
        let WriterLimits {
            max_batch,
            queue_records: queue_capacity,
            queue_bytes,
            head_interval,
        } = limits;
        let byte_units = (queue_bytes / BYTE_UNIT).clamp(1, u32::MAX as usize >> 1) as u32;
        let continuation = resume::at_start(&store, &instance_id, &trusted).await?;
        let (queue, receiver) = mpsc::channel(queue_capacity.max(1));
        spawn_ticker(queue.downgrade(), head_interval);
        let runtime = tokio::runtime::Handle::current();
        let committer = Committer {
            heads: HeadPublisher::start(store.clone(), Arc::clone(&metrics), &runtime),
            store: store.clone(),
            signer,
            instance_id: instance_id.clone(),
            max_batch: max_batch.max(1),
            head_interval,
            metrics,
            runtime,
        };
        // A thread of its own rather than the blocking pool: a runtime waits
        // for its blocking tasks when it shuts down, and a writer still
        // waiting for records must not hold the process open.
        let (finished, task) = oneshot::channel();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                crate::scheduling::prefer_low_latency();
                committer.run(receiver, continuation);
                let _ = finished.send(());
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start the audit writer: {e}")))?;
        Ok((
            Self {
                queue,
                bytes: Arc::new(Semaphore::new(byte_units as usize)),
                byte_units,
                store,
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
        self.store
            .ping()
            .await
            .map_err(|e| crate::telemetry::error_chain(&e))
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
            .send(Work::Record(Pending { record, committed }))
            .await
            .map_err(|_| WriteError::Stopped)?;
        outcome.await.map_err(|_| WriteError::Stopped)?
    }
}

/// Ticks the writer every `interval` while it lives; holds only a weak
/// handle to the queue, so it never keeps the writer from ending.
fn spawn_ticker(queue: mpsc::WeakSender<Work>, interval: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(queue) = queue.upgrade() else { break };
            // A full queue will commit soon, and signs then if due.
            let _ = queue.try_send(Work::Tick);
        }
    });
}

/// What the writer thread needs besides its queue.
struct Committer {
    store: AuditStore,
    /// Stores the heads this thread signs.
    heads: HeadPublisher,
    signer: HeadSigner,
    instance_id: String,
    max_batch: usize,
    head_interval: Duration,
    metrics: Arc<Metrics>,
    /// For the store's async calls (PostgreSQL, re-reading a chain head).
    runtime: tokio::runtime::Handle,
}

/// The writer thread's view of its chain.
struct ChainState {
    /// The chain and the last head known to be durable in it: where the
    /// next batch goes, unless
    durable: Continuation,
    /// a commit failed since, and the store must be asked first.
    uncertain: bool,
    /// The last head signed, and when.
    signed: Option<(ChainHead, Instant)>,
}

impl Committer {
    fn run(self, mut receiver: mpsc::Receiver<Work>, start: Continuation) {
        let metrics = &self.metrics;
        let mut state = ChainState {
            durable: start,
            uncertain: false,
            signed: None,
        };
        let mut work: Vec<Work> = Vec::with_capacity(self.max_batch);
        while receiver.blocking_recv_many(&mut work, self.max_batch) > 0 {
            let pending: Vec<Pending> = work
                .drain(..)
                .filter_map(|w| match w {
                    Work::Record(pending) => Some(pending),
                    Work::Tick => None,
                })
                .collect();
            if pending.is_empty() {
                self.sign_if_due(&mut state, Duration::ZERO);
                continue;
            }
            let start = if state.uncertain {
                let resumed = self.runtime.block_on(resume::after_failure(
                    &self.store,
                    &self.instance_id,
                    &state.durable,
                ));
                if let Ok(resumed) = &resumed {
                    self.report_refused_but_stored(&state.durable, resumed);
                }
                resumed
            } else {
                Ok(state.durable.clone())
            };
            let timer = Instant::now();
            let (records, waiters): (Vec<AuditRecord>, Vec<_>) = pending
                .into_iter()
                .map(|pending| (pending.record, pending.committed))
                .unzip();
            let outcome = start.and_then(|start| {
                let head = self.commit(&start, records)?;
                Ok(Continuation {
                    chain: start.chain,
                    head,
                })
            });
            metrics
                .audit_commit_seconds
                .observe(timer.elapsed().as_secs_f64());
            metrics.audit_batch_size.observe(waiters.len() as f64);
            let reply = match outcome {
                Ok(durable) => {
                    if durable.chain != state.durable.chain {
                        state.signed = None;
                    }
                    state.durable = durable;
                    state.uncertain = false;
                    Ok(Instant::now())
                }
                Err(error) => {
                    state.uncertain = true;
                    metrics.audit_commit_failures.inc();
                    tracing::error!(error = %crate::telemetry::error_chain(&error), records = waiters.len(), "audit commit failed; answering 503 for these decisions");
                    Err(WriteError::Unavailable(Arc::new(error)))
                }
            };
            for committed in waiters {
                // A waiter that gave up (client gone) needs no answer.
                let _ = committed.send(reply.clone());
            }
            self.sign_if_due(&mut state, self.head_interval);
        }
        self.close(&state);
        tracing::info!("audit writer stopped after committing every queued record");
    }

    /// After a failed commit, the store may hold its records after all (a
    /// commit that landed once its answer was lost or late): their
    /// decisions were refused, not given, and an operator asked about one
    /// needs to know that from the log, since the trail cannot say it.
    fn report_refused_but_stored(&self, durable: &Continuation, resumed: &Continuation) {
        if resumed.chain != durable.chain || resumed.head.seq <= durable.head.seq {
            return;
        }
        let records = resumed.head.seq - durable.head.seq;
        self.metrics
            .audit_refused_records_stored
            .inc_by(records as u64);
        tracing::warn!(
            chain = %durable.chain,
            first_seq = durable.head.seq + 1,
            last_seq = resumed.head.seq,
            "records of a failed audit commit were stored after all; their decisions were refused (503), not given"
        );
    }

    /// Signs the durable head if it moved and `interval` has passed since
    /// the last signature.
    fn sign_if_due(&self, state: &mut ChainState, interval: Duration) {
        let due = match &state.signed {
            None => state.durable.head.seq > 0,
            Some((head, at)) => *head != state.durable.head && at.elapsed() >= interval,
        };
        if due {
            self.sign(state);
        }
    }

    /// The durable head signed as `kind`; none before the first record.
    fn signed_head(&self, state: &ChainState, kind: HeadKind) -> Option<SignedHead> {
        let head = &state.durable.head;
        (head.seq > 0).then(|| self.signer.sign(&state.durable.chain, head, kind))
    }

    /// Signs the durable head and hands it over to be stored.
    fn sign(&self, state: &mut ChainState) {
        if let Some(signed) = self.signed_head(state, HeadKind::Head) {
            self.heads.publish(signed);
            state.signed = Some((state.durable.head.clone(), Instant::now()));
        }
    }

    /// Signs the durable head as `closed` and waits until it is stored,
    /// after every head handed over before: the closed head is the last word.
    fn close(self, state: &ChainState) {
        let closed = self.signed_head(state, HeadKind::Closed);
        self.heads.finish(closed, &self.runtime);
    }

    /// Seals the batch after `start` and commits it; returns the new head.
    fn commit(
        &self,
        start: &Continuation,
        records: Vec<AuditRecord>,
    ) -> Result<ChainHead, StoreError> {
        let mut head = start.head.clone();
        let mut sealed = Vec::with_capacity(records.len());
        for mut record in records {
            record.instance_id.clone_from(&start.chain);
            let link = seal(&head, record);
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
