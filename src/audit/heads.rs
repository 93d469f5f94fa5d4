//! Stores the audit writer's signed heads without holding up its commits.
//!
//! The writer signs its chain's head every `head_interval`; storing that
//! signature is a write to the store (SQLite: the write connection, after
//! loading whatever the log holds; PostgreSQL: a statement that a lock on
//! `audit_heads` can hold indefinitely). Done on the writer's thread, every
//! decision queued meanwhile waited for it: once per interval, a stall of
//! every decision in flight. So the writer hands each signed head over here
//! and goes on committing; a task on the runtime stores it.
//!
//! Invariants:
//! - Only the newest head handed over waits to be stored: it covers every
//!   earlier one (the store keeps a head only if its seq is not behind the
//!   stored one's), so an older one still waiting is dropped.
//! - A head that could not be stored is tried again (every `RETRY`, or at
//!   once when a newer one arrives), so a store that recovers gets the
//!   newest signature without waiting for the chain to move.
//! - The writer's `closed` head, handed over by `finish`, is the last one
//!   stored: it replaces any head still waiting (it covers them), and one in
//!   flight is stored before it, so no older head can land on top.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::signing::SignedHead;
use super::AuditStore;
use crate::metrics::Metrics;

/// How long a head that could not be stored waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

pub(super) struct HeadPublisher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    /// The newest head not yet taken by the task.
    next: Mutex<Option<SignedHead>>,
    /// Set once, by `finish`: store what is waiting, then stop.
    finishing: AtomicBool,
    wake: Notify,
}

impl HeadPublisher {
    /// Starts the storing task on `runtime`.
    pub(super) fn start(store: AuditStore, metrics: Arc<Metrics>, runtime: &Handle) -> Self {
        let shared = Arc::new(Shared {
            next: Mutex::new(None),
            finishing: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let task = runtime.spawn(run(Arc::clone(&shared), store, metrics));
        Self { shared, task }
    }

    /// Hands a signed head over to be stored; never waits.
    pub(super) fn publish(&self, head: SignedHead) {
        *self.shared.next() = Some(head);
        self.shared.wake.notify_one();
    }

    /// Stores `closed` (the writer's last word, if its chain has a head)
    /// after every head handed over before it, one try once stopping, and
    /// stops; blocks the calling thread, which must not be a runtime's.
    pub(super) fn finish(self, closed: Option<SignedHead>, runtime: &Handle) {
        if let Some(closed) = closed {
            *self.shared.next() = Some(closed);
        }
        self.shared.finishing.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Err(error) = runtime.block_on(self.task) {
            tracing::error!(%error, "the task storing signed audit heads ended abnormally");
        }
    }
}

async fn run(shared: Arc<Shared>, store: AuditStore, metrics: Arc<Metrics>) {
    loop {
        let finishing = shared.finishing.load(Ordering::SeqCst);
        let next = shared.next().take();
        let Some(head) = next else {
            if finishing {
                return;
            }
            shared.wake.notified().await;
            continue;
        };
        let Err(error) = store.put_head(&head).await else {
            continue;
        };
        metrics.audit_commit_failures.inc();
        let error = crate::telemetry::error_chain(&error);
        if finishing {
            // The closed head (only it is taken once stopping): the stop
            // reports it and goes on.
            tracing::error!(%error, chain = %head.instance_id, seq = head.seq, "could not store the closed audit head");
            return;
        }
        tracing::error!(%error, chain = %head.instance_id, seq = head.seq, "could not store the signed audit head; will try again");
        shared.next().get_or_insert(head);
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = shared.wake.notified() => {}
        }
    }
}

impl Shared {
    fn next(&self) -> MutexGuard<'_, Option<SignedHead>> {
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }
}
