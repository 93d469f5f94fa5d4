//! The simulator's mutable state: codes set through the admin API (they win
//! over the seeded population), injected faults and request counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use super::Population;
use crate::provider_api::{Faults, HealthCodeRecord, SimulatorStats};

pub struct SimulatorState {
    population: Population,
    /// `None` marks a subject whose code was deleted.
    overrides: RwLock<HashMap<String, Option<HealthCodeRecord>>>,
    faults: RwLock<Faults>,
    requests: AtomicU64,
    subjects_looked_up: AtomicU64,
    injected_errors: AtomicU64,
}

impl SimulatorState {
    pub fn new(population: Population) -> Self {
        Self {
            population,
            overrides: RwLock::new(HashMap::new()),
            faults: RwLock::new(Faults::default()),
            requests: AtomicU64::new(0),
            subjects_looked_up: AtomicU64::new(0),
            injected_errors: AtomicU64::new(0),
        }
    }

    pub fn code_of(&self, subject_id: &str) -> Option<HealthCodeRecord> {
        let overrides = self.overrides.read().unwrap_or_else(|p| p.into_inner());
        match overrides.get(subject_id) {
            Some(set) => set.clone(),
            None => self.population.code_of(subject_id),
        }
    }

    pub fn set_code(&self, record: HealthCodeRecord) {
        let mut overrides = self.overrides.write().unwrap_or_else(|p| p.into_inner());
        overrides.insert(record.subject_id.clone(), Some(record));
    }

    /// Returns whether the subject had a code.
    pub fn delete_code(&self, subject_id: &str) -> bool {
        let had = self.code_of(subject_id).is_some();
        let mut overrides = self.overrides.write().unwrap_or_else(|p| p.into_inner());
        overrides.insert(subject_id.to_owned(), None);
        had
    }

    pub fn faults(&self) -> Faults {
        *self.faults.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    pub fn count_request(&self, subjects: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.subjects_looked_up
            .fetch_add(subjects as u64, Ordering::Relaxed);
    }

    pub fn count_injected_error(&self) {
        self.injected_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> SimulatorStats {
        SimulatorStats {
            requests: self.requests.load(Ordering::Relaxed),
            subjects_looked_up: self.subjects_looked_up.load(Ordering::Relaxed),
            injected_errors: self.injected_errors.load(Ordering::Relaxed),
            faults: self.faults(),
            population: self.population.size(),
            overrides: self
                .overrides
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .len() as u64,
        }
    }
}
