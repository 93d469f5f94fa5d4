//! Retention: a background task that purges records older than
//! `audit.retention_days`, leaving per-chain signed checkpoints so that the
//! remaining records still verify. The cut is by time and by sequence: only
//! a prefix of records all older than the cutoff goes (see the stores).

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::task::JoinHandle;

use super::{AuditStore, HeadSigner};

pub fn spawn_retention(
    store: AuditStore,
    signer: HeadSigner,
    retention_days: u32,
    interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let cutoff = Utc::now() - TimeDelta::days(i64::from(retention_days));
            match store.purge_before(cutoff.timestamp_micros(), &signer).await {
                Ok(0) => {}
                Ok(purged) => {
                    tracing::info!(purged, %cutoff, "purged audit records past retention")
                }
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::error_chain(&error), "audit retention purge failed; will retry")
                }
            }
        }
    })
}
