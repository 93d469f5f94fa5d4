//! Prometheus metrics, one registry per application instance.
//!
//! Handles for every label combination on the hot path (decision × reason,
//! lookup source) are resolved once at start-up, so recording a decision is
//! a few atomic adds, not a label lookup. Names follow Prometheus
//! conventions: `tripgate_` prefix, `_total` counters, `_seconds` units.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::domain::{BreakerState, Source};
use crate::domain::{Outcome, ReasonCode};

/// The upstreams, as their metrics are labelled.
pub const UPSTREAMS: [&str; 3] = ["provider", "national", "itinerary"];

/// Sub-millisecond resolution where decisions live, up to the deadline.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub struct Metrics {
    registry: Registry,
    checks: IntCounterVec,
    /// [outcome] for the trip hook.
    trip_checks: Vec<IntCounter>,
    decisions: IntCounterVec,
    decision_seconds: HistogramVec,
    /// [outcome][reason] for the trip hook, resolved up front.
    trip_decisions: Vec<Vec<IntCounter>>,
    trip_seconds: Histogram,
    /// Where a decision's time went: [status lookups, audit commit wait,
    /// the part of that wait after the record was durable].
    stage_seconds: [Histogram; 3],
    lookups: Vec<IntCounter>,
    lookups_unavailable: IntCounter,
    /// Per upstream (`provider`, `national`, `itinerary`) and outcome.
    pub provider_requests: IntCounterVec,
    pub provider_seconds: HistogramVec,
    provider_circuit: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    pub redis_errors: IntCounterVec,
    pub audit_commit_seconds: Histogram,
    pub audit_batch_size: Histogram,
    pub audit_backlog: IntGauge,
    pub audit_unloaded: IntGauge,
    /// SQLite's own count of the memory it holds (read when scraped).
    pub sqlite_memory: IntGauge,
    /// Memory reserved for SQLite's page caches as tripgate started.
    pub sqlite_page_pool: IntGauge,
    pub audit_commit_failures: IntCounter,
    /// Records of failed commits that the store turned out to hold.
    pub audit_refused_records_stored: IntCounter,
    pub policy_version: IntGaugeVec,
    pub policy_reloads: IntCounterVec,
    pub auth_rejections: IntCounterVec,
    /// Checks with an `Idempotency-Key`, by what the key did.
    pub idempotency: IntCounterVec,
    /// Status-change notifications to dispatch, by outcome.
    pub notify_events: IntCounterVec,
    /// Notifications waiting in the outbox.
    pub notify_outbox: IntGauge,
    /// Appeals not yet resolved (all replicas: read from the store).
    pub appeals_open: IntGauge,
    /// Seconds since the oldest open appeal was filed (0: none open).
    pub appeals_oldest_open_seconds: IntGauge,
    /// Appeals filed and resolved through this instance, by event.
    pub appeal_events: IntCounterVec,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are fixed and unique in this file; registration cannot clash.
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// Built once at start-up; metric definitions are constants, so the
    /// constructors cannot fail.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let checks = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "tripgate_checks_total",
                    "Decisions by hook and outcome (one per decision).",
                ),
                &["hook", "decision"],
            )
            .expect("valid metric"),
        );
        let decisions = register(
            r,
            IntCounterVec::new(
                Opts::new("tripgate_decisions_total", "Decisions by hook, decision and reason code (a decision with two reasons counts under each)."),
                &["hook", "decision", "reason"],
            )
            .expect("valid metric"),
        );
        let decision_seconds = register(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "tripgate_decision_duration_seconds",
                    "Time from parsed request to durable decision.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["hook"],
            )
            .expect("valid metric"),
        );
        let stage_seconds = register(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "tripgate_decision_stage_seconds",
                    "Parts of a decision's time: status (every party's status, \
                     from L1, Redis or the provider), audit (from handing the \
                     record to the audit writer until the decision resumes, \
                     durable) and resume (the part of audit after the record \
                     was durable: waiting for a CPU).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["stage"],
            )
            .expect("valid metric"),
        );
        let lookups_vec = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "tripgate_status_lookups_total",
                    "Party status lookups by where the status came from.",
                ),
                &["source"],
            )
            .expect("valid metric"),
        );
        let trip_decisions = [Outcome::Allow, Outcome::Reject]
            .iter()
            .map(|o| {
                ReasonCode::ALL
                    .iter()
                    .map(|c| decisions.with_label_values(&["trip", o.as_str(), c.as_str()]))
                    .collect()
            })
            .collect();
        let provider_circuit = register(
            r,
            IntGaugeVec::new(
                Opts::new(
                    "tripgate_provider_circuit_state",
                    "1 for each upstream circuit breaker's current state.",
                ),
                &["upstream", "state"],
            )
            .expect("valid metric"),
        );
        let metrics = Self {
            trip_checks: [Outcome::Allow, Outcome::Reject]
                .iter()
                .map(|o| checks.with_label_values(&["trip", o.as_str()]))
                .collect(),
            checks,
            trip_decisions,
            trip_seconds: decision_seconds.with_label_values(&["trip"]),
            stage_seconds: [
                stage_seconds.with_label_values(&["status"]),
                stage_seconds.with_label_values(&["audit"]),
                stage_seconds.with_label_values(&["resume"]),
            ],
            lookups: Source::ALL
                .iter()
                .map(|s| lookups_vec.with_label_values(&[s.as_str()]))
                .collect(),
            lookups_unavailable: lookups_vec.with_label_values(&["unavailable"]),
            provider_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tripgate_provider_requests_total",
                        "Upstream batch calls by upstream (provider, national, itinerary) and outcome.",
                    ),
                    &["upstream", "outcome"],
                )
                .expect("valid metric"),
            ),
            provider_seconds: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "tripgate_provider_request_duration_seconds",
                        "Upstream batch call latency by upstream.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["upstream"],
                )
                .expect("valid metric"),
            ),
            provider_circuit,
            breaker_transitions: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tripgate_breaker_transitions_total",
                        "Circuit breaker state changes by upstream and the state entered.",
                    ),
                    &["upstream", "to"],
                )
                .expect("valid metric"),
            ),
            redis_errors: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tripgate_redis_errors_total",
                        "Failed or skipped Redis calls by operation.",
                    ),
                    &["operation"],
                )
                .expect("valid metric"),
            ),
            audit_commit_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tripgate_audit_commit_duration_seconds",
                        "Time to commit one audit batch.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            audit_batch_size: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("tripgate_audit_batch_size", "Records per audit commit.")
                        .buckets(vec![
                            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                        ]),
                )
                .expect("valid metric"),
            ),
            audit_backlog: register(
                r,
                IntGauge::new(
                    "tripgate_audit_backlog",
                    "Decisions waiting for the audit writer.",
                )
                .expect("valid metric"),
            ),
            audit_unloaded: register(
                r,
                IntGauge::new(
                    "tripgate_audit_unloaded",
                    "Records durable in the SQLite store's log, not yet loaded into the audit file.",
                )
                .expect("valid metric"),
            ),
            sqlite_memory: register(
                r,
                IntGauge::new(
                    "tripgate_sqlite_memory_bytes",
                    "Memory SQLite holds in this process (page caches, sorts, statements), by its own count.",
                )
                .expect("valid metric"),
            ),
            sqlite_page_pool: register(
                r,
                IntGauge::new(
                    "tripgate_sqlite_page_pool_bytes",
                    "Memory reserved for SQLite's page caches when tripgate serve started (0: none, caches use the heap).",
                )
                .expect("valid metric"),
            ),
            audit_commit_failures: register(
                r,
                IntCounter::new(
                    "tripgate_audit_commit_failures_total",
                    "Audit commits that failed (their decisions got 503), and signed heads that could not be stored.",
                )
                .expect("valid metric"),
            ),
            audit_refused_records_stored: register(
                r,
                IntCounter::new(
                    "tripgate_audit_refused_records_stored_total",
                    "Records of a failed audit commit (their decisions got 503) that the store held after all: the commit landed after its answer was lost or late.",
                )
                .expect("valid metric"),
            ),
            policy_version: register(
                r,
                IntGaugeVec::new(
                    Opts::new("tripgate_policy_info", "1 for the policy version in force."),
                    &["version"],
                )
                .expect("valid metric"),
            ),
            policy_reloads: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tripgate_policy_reloads_total",
                        "Policy reload attempts by outcome.",
                    ),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            auth_rejections: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tripgate_auth_rejections_total",
                        "Requests refused by authentication, authorisation or rate limit.",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            idempotency: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tripgate_idempotency_total",
                        "Checks carrying an Idempotency-Key: first, replayed, mismatch (422), in_progress (409), unavailable (decided without the guarantee).",
                    ),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            notify_events: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tripgate_notify_events_total",
                        "Status-change notifications to dispatch: queued, delivered, failed (given up after retries), dropped (outbox full).",
                    ),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            notify_outbox: register(
                r,
                IntGauge::new(
                    "tripgate_notify_outbox",
                    "Status-change notifications waiting to be delivered.",
                )
                .expect("valid metric"),
            ),
            appeals_open: register(
                r,
                IntGauge::new(
                    "tripgate_appeals_open",
                    "Appeals filed and not yet resolved (the whole trail, read when scraped).",
                )
                .expect("valid metric"),
            ),
            appeals_oldest_open_seconds: register(
                r,
                IntGauge::new(
                    "tripgate_appeals_oldest_open_seconds",
                    "Age of the oldest open appeal in seconds (0 when none is open).",
                )
                .expect("valid metric"),
            ),
            appeal_events: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tripgate_appeal_events_total",
                        "Appeal records written by this instance: filed, upheld, overturned.",
                    ),
                    &["event"],
                )
                .expect("valid metric"),
            ),
            http_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "tripgate_http_requests_total",
                        "HTTP requests by route pattern, method and status (both listeners).",
                    ),
                    &["route", "method", "status"],
                )
                .expect("valid metric"),
            ),
            http_seconds: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "tripgate_http_request_duration_seconds",
                        "HTTP request duration by route pattern and method, from the first middleware to the response.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route", "method"],
                )
                .expect("valid metric"),
            ),
            registry,
            decisions,
            decision_seconds,
        };
        // Known series start at zero, so rates and alerts see them before
        // the first event.
        for upstream in UPSTREAMS {
            for outcome in [
                "ok",
                "error",
                "timeout",
                "refused",
                "circuit_open",
                "overloaded",
            ] {
                metrics
                    .provider_requests
                    .with_label_values(&[upstream, outcome]);
            }
            metrics.provider_seconds.with_label_values(&[upstream]);
            metrics.set_circuit(upstream, BreakerState::Closed);
            for to in [
                BreakerState::Open,
                BreakerState::HalfOpen,
                BreakerState::Closed,
            ] {
                metrics
                    .breaker_transitions
                    .with_label_values(&[upstream, to.as_str()]);
            }
        }
        let build_info = IntGaugeVec::new(
            Opts::new(
                "tripgate_build_info",
                "1, labelled with the version and the commit of this build.",
            ),
            &["version", "git_sha"],
        )
        .expect("valid metric");
        register(&metrics.registry, build_info.clone())
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("TRIPGATE_GIT_SHA")])
            .set(1);
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds, process_start_time_seconds ... (Linux).
        #[cfg(target_os = "linux")]
        let _ = metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        for operation in ["read", "write"] {
            metrics.redis_errors.with_label_values(&[operation]);
        }
        for reason in ["unauthenticated", "forbidden", "rate_limited"] {
            metrics.auth_rejections.with_label_values(&[reason]);
        }
        for outcome in ["applied", "refused"] {
            metrics.policy_reloads.with_label_values(&[outcome]);
        }
        for outcome in [
            "first",
            "replayed",
            "mismatch",
            "in_progress",
            "unavailable",
        ] {
            metrics.idempotency.with_label_values(&[outcome]);
        }
        for outcome in ["queued", "delivered", "failed", "dropped"] {
            metrics.notify_events.with_label_values(&[outcome]);
        }
        metrics
    }

    pub fn record_decision(
        &self,
        hook: &str,
        outcome: Outcome,
        reasons: &[ReasonCode],
        seconds: f64,
    ) {
        let outcome_index = usize::from(outcome == Outcome::Reject);
        if hook == "trip" {
            self.trip_checks[outcome_index].inc();
            let row = &self.trip_decisions[outcome_index];
            for code in reasons {
                row[*code as usize].inc();
            }
            self.trip_seconds.observe(seconds);
        } else {
            self.checks
                .with_label_values(&[hook, outcome.as_str()])
                .inc();
            for code in reasons {
                self.decisions
                    .with_label_values(&[hook, outcome.as_str(), code.as_str()])
                    .inc();
            }
            self.decision_seconds
                .with_label_values(&[hook])
                .observe(seconds);
        }
    }

    /// A decision's time spent on status lookups and waiting for its
    /// audit record to be durable, and the part of that wait after it was
    /// durable: when decisions are slow, which one.
    pub fn record_stages(&self, status_seconds: f64, audit_seconds: f64, resume_seconds: f64) {
        self.stage_seconds[0].observe(status_seconds);
        self.stage_seconds[1].observe(audit_seconds);
        self.stage_seconds[2].observe(resume_seconds);
    }

    pub fn record_lookup(&self, source: Option<Source>) {
        match source {
            Some(source) => self.lookups[source as usize].inc(),
            None => self.lookups_unavailable.inc(),
        }
    }

    /// One HTTP exchange (`routes::observe`).
    pub fn record_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let buffer = itoa_status(status);
        let status = std::str::from_utf8(&buffer).unwrap_or("0");
        self.http_requests
            .with_label_values(&[route, method, status])
            .inc();
        self.http_seconds
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    pub fn set_circuit(&self, upstream: &str, state: BreakerState) {
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            self.provider_circuit
                .with_label_values(&[upstream, s.as_str()])
                .set(i64::from(s == state));
        }
    }

    /// A breaker changed state: counted, and its gauge set at once.
    pub fn breaker_transition(&self, upstream: &str, to: BreakerState) {
        self.breaker_transitions
            .with_label_values(&[upstream, to.as_str()])
            .inc();
        self.set_circuit(upstream, to);
    }

    pub fn set_policy_version(&self, version: &str) {
        self.policy_version.reset();
        self.policy_version.with_label_values(&[version]).set(1);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A status code's three digits, without allocating.
fn itoa_status(status: u16) -> [u8; 3] {
    let status = status.min(999);
    [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handles are indexed by enum discriminant; the orders must agree.
    #[test]
    fn enum_orders_match_their_lists() {
        for (i, code) in ReasonCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i);
        }
        for (i, source) in Source::ALL.iter().enumerate() {
            assert_eq!(*source as usize, i);
        }
    }

    #[test]
    fn a_decision_counts_once_per_outcome_and_once_per_reason() {
        let metrics = Metrics::new();
        let reasons = [ReasonCode::HealthCodeRed, ReasonCode::NoHealthCode];
        metrics.record_decision("trip", Outcome::Reject, &reasons, 0.001);
        let text = metrics.encode();
        assert!(text.contains(r#"tripgate_checks_total{decision="reject",hook="trip"} 1"#));
        assert!(text.contains(
            r#"tripgate_decisions_total{decision="reject",hook="trip",reason="NO_HEALTH_CODE"} 1"#
        ));
    }
}
