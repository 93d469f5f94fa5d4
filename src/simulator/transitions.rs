//! A living population: codes turn over as in an outbreak week, and every
//! change is pushed (when a webhook is set), so the demo and the benchmark
//! see codes change as in life.
//!
//! `rate` changes a second: a random member is picked; a green code turns
//! yellow (80%) or red (20%) or, now and then (5%), is deleted; a member
//! without a code is issued a green one; a yellow or red code gets its
//! daily check-in, or turns green once its isolation is served. Every code
//! the transitions turn yellow turns green again 7 days later, every red
//! one after 14, on schedule whether picked or not. `time_scale` compresses the simulator's own calendar (86,400: a
//! simulated day a second); the times it states are wall-clock times, so
//! tripgate judges them as it would any provider's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Population, PopulationSpec, SimulatorState};
use crate::provider_api::HealthCodeRecord;

/// The scheme's isolation: days before a yellow or red code turns green.
const YELLOW_DAYS: f64 = 7.0;
const RED_DAYS: f64 = 14.0;
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct Transitions {
    /// Changes a second (0: none).
    pub rate: f64,
    /// Simulated seconds per real second.
    pub time_scale: f64,
}

/// Runs until the task is aborted.
pub fn spawn(
    state: Arc<SimulatorState>,
    spec: PopulationSpec,
    transitions: Transitions,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let members = spec.drivers + spec.passengers;
        if members == 0 || transitions.rate <= 0.0 {
            return;
        }
        let mut rng = fastrand::Rng::with_seed(spec.seed ^ 0x5eed);
        let mut owed = 0.0;
        // (when it turns green again, subject)
        let mut recoveries: BinaryHeap<Reverse<(tokio::time::Instant, String)>> = BinaryHeap::new();
        let real = |days: f64| {
            Duration::from_secs_f64((days * 86_400.0 / transitions.time_scale.max(1e-9)).min(1e9))
        };
        let mut ticks = tokio::time::interval(TICK);
        loop {
            ticks.tick().await;
            let now = tokio::time::Instant::now();
            while recoveries
                .peek()
                .is_some_and(|Reverse((due, _))| *due <= now)
            {
                if let Some(Reverse((_, subject))) = recoveries.pop() {
                    if let Some(code) = state.code_of(&subject) {
                        if code.color != "green" {
                            issue(&state, &subject, "green", &code.issuer);
                        }
                    }
                }
            }
            owed += transitions.rate * TICK.as_secs_f64();
            while owed >= 1.0 {
                owed -= 1.0;
                let pick = rng.u64(..members);
                let subject = if pick < spec.drivers {
                    Population::driver_id(pick)
                } else {
                    Population::passenger_id(pick - spec.drivers)
                };
                match state.code_of(&subject) {
                    None => issue(&state, &subject, "green", "hangzhou"),
                    Some(code) if code.color == "green" => {
                        let roll = rng.f64();
                        if roll < 0.05 {
                            state.delete_code(&subject);
                            state.count_transition();
                        } else {
                            let (colour, days) = if roll < 0.05 + 0.95 * 0.8 {
                                ("yellow", YELLOW_DAYS)
                            } else {
                                ("red", RED_DAYS)
                            };
                            issue(&state, &subject, colour, &code.issuer);
                            recoveries.push(Reverse((now + real(days), subject)));
                        }
                    }
                    // Isolation served (on the simulator's calendar): green
                    // again; otherwise a daily check-in, same colour.
                    Some(code) => {
                        let since = code.color_since.or(code.renewed()).unwrap_or_else(Utc::now);
                        let served = (Utc::now() - since).num_milliseconds() as f64 / 1000.0
                            * transitions.time_scale;
                        let days = if code.color == "red" {
                            RED_DAYS
                        } else {
                            YELLOW_DAYS
                        };
                        if served >= days * 86_400.0 {
                            issue(&state, &subject, "green", &code.issuer);
                        } else {
                            state.set_code(HealthCodeRecord {
                                renewed_at: Some(Utc::now()),
                                updated_at: None,
                                ..code
                            });
                        }
                    }
                }
            }
        }
    })
}

/// A new colour as of now.
fn issue(state: &SimulatorState, subject: &str, colour: &str, issuer: &str) {
    let now = Utc::now();
    state.set_code(HealthCodeRecord::v2(subject, colour, issuer, now, now));
    state.count_transition();
}
