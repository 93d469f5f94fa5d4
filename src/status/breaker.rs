//! A circuit breaker around the provider.
//!
//! Closed: calls go through and their outcomes fill a window of the last
//! `window` calls. When at least `min_calls` are in the window and the share
//! of failures reaches `failure_rate`, it opens: calls are refused at once
//! (decisions fall back to stale copies or STATUS_UNAVAILABLE instead of
//! piling up on a sick provider). After `open_for` one probe is let through
//! (half-open): success closes it, failure opens it again. State changes are
//! logged and counted, and set the upstream's state gauge as they happen. Hand-written: the crates for this are dormant, and it is small.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::BreakerState;

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub window: usize,
    pub min_calls: usize,
    pub failure_rate: f64,
    pub open_for: Duration,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// `true` for a failed call, newest last.
    outcomes: VecDeque<bool>,
    opened_at: Instant,
    probe_in_flight: bool,
}

pub struct CircuitBreaker {
    name: &'static str,
    config: BreakerConfig,
    inner: Mutex<Inner>,
    /// Told of every state change (gauge and counter per upstream).
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl CircuitBreaker {
    pub fn new(name: &'static str, config: BreakerConfig) -> Self {
        Self {
            name,
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                outcomes: VecDeque::with_capacity(config.window),
                opened_at: Instant::now(),
                probe_in_flight: false,
            }),
            metrics: None,
        }
    }

    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The upstream it guards, as metrics name it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether a call may go out now. In half-open, only one probe may.
    pub fn allow(&self) -> bool {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open if inner.opened_at.elapsed() >= self.config.open_for => {
                self.transition(&mut inner, BreakerState::HalfOpen);
                inner.probe_in_flight = true;
                true
            }
            BreakerState::Open => false,
            BreakerState::HalfOpen if !inner.probe_in_flight => {
                inner.probe_in_flight = true;
                true
            }
            BreakerState::HalfOpen => false,
        }
    }

    pub fn record(&self, success: bool) {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::HalfOpen => {
                inner.probe_in_flight = false;
                if success {
                    inner.outcomes.clear();
                    self.transition(&mut inner, BreakerState::Closed);
                } else {
                    inner.opened_at = Instant::now();
                    self.transition(&mut inner, BreakerState::Open);
                }
            }
            BreakerState::Closed => {
                if inner.outcomes.len() == self.config.window {
                    inner.outcomes.pop_front();
                }
                inner.outcomes.push_back(!success);
                let calls = inner.outcomes.len();
                let failures = inner.outcomes.iter().filter(|f| **f).count();
                if calls >= self.config.min_calls
                    && failures as f64 >= self.config.failure_rate * calls as f64
                {
                    inner.opened_at = Instant::now();
                    self.transition(&mut inner, BreakerState::Open);
                }
            }
            // A call admitted before the breaker opened: its outcome is moot.
            BreakerState::Open => {}
        }
    }

    /// A call whose outcome says nothing about the upstream's health (it
    /// refused what was asked): not counted, but a half-open probe is
    /// over, so the next call may probe.
    pub fn release(&self) {
        self.lock().probe_in_flight = false;
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState) {
        if inner.state != to {
            tracing::warn!(
                breaker = self.name,
                from = inner.state.as_str(),
                to = to.as_str(),
                "circuit breaker changed state"
            );
            inner.state = to;
            if let Some(metrics) = &self.metrics {
                metrics.breaker_transition(self.name, to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerConfig {
                window: 10,
                min_calls: 4,
                failure_rate: 0.5,
                open_for,
            },
        )
    }

    #[test]
    fn opens_on_failure_rate_and_refuses_calls() {
        let b = breaker(Duration::from_secs(60));
        for success in [true, false, true] {
            assert!(b.allow());
            b.record(success);
        }
        assert_eq!(b.state(), BreakerState::Closed, "below min_calls");
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
    }

    #[test]
    fn half_open_lets_one_probe_and_closes_on_success() {
        let b = breaker(Duration::ZERO);
        for _ in 0..4 {
            b.record(false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow(), "the probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(), "only one probe at a time");
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = breaker(Duration::ZERO);
        for _ in 0..4 {
            b.record(false);
        }
        assert!(b.allow());
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open);
    }
}
