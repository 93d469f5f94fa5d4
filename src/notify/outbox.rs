//! The notifications' outbox: a small SQLite file that keeps every
//! notification until dispatch has taken it (2xx), across restarts.
//!
//! An event is written (and synced) before anything is sent; the delivery
//! task sends the oldest due events, deletes each once answered with 2xx,
//! and otherwise retries it with exponential backoff (250 ms doubling, at
//! most a minute apart) until `retry_for` has passed since it was queued,
//! when it is given up (counted, logged). The file is bounded: past
//! `max_events` a new event is dropped (counted, logged) rather than let
//! the disk fill. Delivery is at least once; each event carries an
//! `event_id` for receivers that must tell a retry from a new event.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::StatusChanged;
use crate::metrics::Metrics;
use crate::provider_api::{sign_event, EVENT_SIGNATURE_HEADER, EVENT_TIMESTAMP_HEADER};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("notify outbox {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("notify outbox {path}: cannot create its directory: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The longest wait between two attempts at one event.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Events sent per round.
const ROUND: i64 = 32;

struct Inner {
    connection: Mutex<Connection>,
    max_events: u64,
    wake: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Outbox {
    pub fn open(path: &Path, max_events: u64, metrics: Arc<Metrics>) -> Result<Self, OutboxError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::Directory {
                path: path.to_owned(),
                source,
            })?;
        }
        let open = || -> rusqlite::Result<Connection> {
            let connection = Connection::open(path)?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.busy_timeout(Duration::from_secs(5))?;
            connection.execute_batch(
                "CREATE TABLE IF NOT EXISTS outbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    body TEXT NOT NULL,
                    queued_at INTEGER NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_at INTEGER NOT NULL
                );
                CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at, id);",
            )?;
            Ok(connection)
        };
        let connection = open().map_err(|source| OutboxError::Open {
            path: path.to_owned(),
            source,
        })?;
        let outbox = Self {
            inner: Arc::new(Inner {
                connection: Mutex::new(connection),
                max_events,
                wake: tokio::sync::Notify::new(),
                metrics,
            }),
        };
        outbox.refresh_gauge();
        Ok(outbox)
    }

    /// Events waiting now.
    pub fn pending(&self) -> u64 {
        self.with(|c| c.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0)))
            .map_or(0, |n| n.max(0) as u64)
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let connection = self
            .inner
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&connection)
    }

    fn refresh_gauge(&self) {
        self.inner.metrics.notify_outbox.set(self.pending() as i64);
    }

    fn count(&self, outcome: &str) {
        self.inner
            .metrics
            .notify_events
            .with_label_values(&[outcome])
            .inc();
    }

    /// Writes the event (synced) for delivery, unless the outbox is full.
    pub async fn enqueue(&self, event: &StatusChanged) {
        let body = serde_json::to_string(event).unwrap_or_default();
        let outbox = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            outbox.with(|c| {
                let pending: i64 = c.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
                if pending as u64 >= outbox.inner.max_events {
                    return Ok(false);
                }
                let now = now_ms();
                c.execute(
                    "INSERT INTO outbox (body, queued_at, next_at) VALUES (?1, ?2, ?2)",
                    params![body, now],
                )?;
                Ok(true)
            })
        })
        .await;
        match written {
            Ok(Ok(true)) => {
                self.count("queued");
                self.refresh_gauge();
                self.inner.wake.notify_one();
            }
            Ok(Ok(false)) => {
                tracing::error!(
                    max = self.inner.max_events,
                    "notify outbox full; a status-change notification is dropped"
                );
                self.count("dropped");
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "notify outbox write failed; a status-change notification is dropped");
                self.count("dropped");
            }
            Err(error) => {
                tracing::error!(%error, "notify outbox task failed; a status-change notification is dropped");
                self.count("dropped");
            }
        }
    }

    /// Delivers to `url` until the task is aborted (shutdown): what is not
    /// delivered stays in the file for the next start.
    pub fn spawn_delivery(
        &self,
        url: reqwest::Url,
        secret: Vec<u8>,
        timeout: Duration,
        retry_for: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("tripgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default();
            loop {
                let due = outbox.due();
                if due.is_empty() {
                    let wait = outbox.until_next_due();
                    let _ = tokio::time::timeout(wait, outbox.inner.wake.notified()).await;
                    continue;
                }
                for (id, body, attempts, queued_at) in due {
                    let timestamp = chrono::Utc::now().timestamp().to_string();
                    let signature = sign_event(&secret, &timestamp, body.as_bytes());
                    let sent = http
                        .post(url.clone())
                        .header("content-type", "application/json")
                        .header(EVENT_TIMESTAMP_HEADER, &timestamp)
                        .header(EVENT_SIGNATURE_HEADER, signature)
                        .body(body)
                        .send()
                        .await;
                    let delivered = match &sent {
                        Ok(response) => response.status().is_success(),
                        Err(_) => false,
                    };
                    if delivered {
                        outbox.forget(id);
                        outbox.count("delivered");
                    } else if now_ms() - queued_at > retry_for.as_millis() as i64 {
                        tracing::error!(attempts = attempts + 1, "a status-change notification was not delivered in time and is given up");
                        outbox.forget(id);
                        outbox.count("failed");
                    } else {
                        let status = sent.as_ref().map(|r| r.status().as_u16()).ok();
                        tracing::warn!(
                            ?status,
                            attempts = attempts + 1,
                            "status-change notification not delivered; retrying"
                        );
                        outbox.retry_later(id, attempts + 1);
                    }
                }
                outbox.refresh_gauge();
            }
        })
    }

    fn due(&self) -> Vec<(i64, String, i64, i64)> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT id, body, attempts, queued_at FROM outbox WHERE next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
            )?;
            let rows = statement.query_map(params![now_ms(), ROUND], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
        .unwrap_or_else(|error| {
            tracing::error!(%error, "notify outbox read failed");
            Vec::new()
        })
    }

    fn until_next_due(&self) -> Duration {
        let next: Option<i64> = self
            .with(|c| {
                c.query_row("SELECT min(next_at) FROM outbox", [], |r| r.get(0))
                    .optional()
                    .map(Option::flatten)
            })
            .unwrap_or(None);
        match next {
            Some(at) => Duration::from_millis((at - now_ms()).clamp(1, 1000) as u64),
            None => Duration::from_secs(1),
        }
    }

    fn forget(&self, id: i64) {
        if let Err(error) = self.with(|c| c.execute("DELETE FROM outbox WHERE id = ?1", [id])) {
            tracing::error!(%error, "notify outbox delete failed; the event may be sent again");
        }
    }

    fn retry_later(&self, id: i64, attempts: i64) {
        let backoff = FIRST_BACKOFF
            .saturating_mul(1u32 << attempts.clamp(0, 16))
            .min(MAX_BACKOFF);
        let next = now_ms() + backoff.as_millis() as i64;
        if let Err(error) = self.with(|c| {
            c.execute(
                "UPDATE outbox SET attempts = ?2, next_at = ?3 WHERE id = ?1",
                params![id, attempts, next],
            )
        }) {
            tracing::error!(%error, "notify outbox update failed");
        }
    }
}
