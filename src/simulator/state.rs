//! The simulator's mutable state: codes set through the admin API (they win
//! over the seeded population), injected faults and request counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use super::Population;
use crate::provider_api::{
    sign_event, CodeDeleted, Faults, HealthCodeRecord, ItineraryRecord, SimulatorStats, StatusPush,
    Visit, Webhook, EVENT_SIGNATURE_HEADER, EVENT_TIMESTAMP_HEADER,
};

pub struct SimulatorState {
    population: Population,
    /// `None` marks a subject whose code was deleted.
    overrides: RwLock<HashMap<String, Option<HealthCodeRecord>>>,
    faults: RwLock<Faults>,
    requests: AtomicU64,
    subjects_looked_up: AtomicU64,
    injected_errors: AtomicU64,
    webhook: RwLock<Option<Webhook>>,
    itineraries: RwLock<HashMap<String, Vec<Visit>>>,
    itinerary_requests: AtomicU64,
    pushes_delivered: std::sync::Arc<AtomicU64>,
    pushes_failed: std::sync::Arc<AtomicU64>,
    transitions: AtomicU64,
    last_trace_id: RwLock<Option<String>>,
    http: reqwest::Client,
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
            webhook: RwLock::new(None),
            itineraries: RwLock::new(HashMap::new()),
            itinerary_requests: AtomicU64::new(0),
            pushes_delivered: Default::default(),
            pushes_failed: Default::default(),
            transitions: AtomicU64::new(0),
            last_trace_id: RwLock::new(None),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn code_of(&self, subject_id: &str) -> Option<HealthCodeRecord> {
        let overrides = self.overrides.read().unwrap_or_else(|p| p.into_inner());
        match overrides.get(subject_id) {
            Some(set) => set.clone(),
            None => self.population.code_of(subject_id),
        }
    }

    /// Sets a code and, when a webhook is configured, pushes the change.
    pub fn set_code(&self, record: HealthCodeRecord) {
        let mut overrides = self.overrides.write().unwrap_or_else(|p| p.into_inner());
        overrides.insert(record.subject_id.clone(), Some(record.clone()));
        drop(overrides);
        self.push(StatusPush::Code(record));
    }

    pub fn itinerary_of(&self, subject_id: &str) -> Option<ItineraryRecord> {
        let set = self.itineraries.read().unwrap_or_else(|p| p.into_inner());
        match set.get(subject_id) {
            Some(visits) => Some(ItineraryRecord {
                subject_id: subject_id.to_owned(),
                days: 30,
                visits: visits.clone(),
            }),
            None => self.population.itinerary_of(subject_id),
        }
    }

    pub fn set_itinerary(&self, subject_id: &str, visits: Vec<Visit>) {
        let mut set = self.itineraries.write().unwrap_or_else(|p| p.into_inner());
        set.insert(subject_id.to_owned(), visits);
    }

    pub fn count_itinerary_request(&self) {
        self.itinerary_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_webhook(&self, webhook: Option<Webhook>) {
        *self.webhook.write().unwrap_or_else(|p| p.into_inner()) = webhook;
    }

    /// Delivers the change in the background, signed, with a few retries.
    fn push(&self, event: StatusPush) {
        let Some(webhook) = self
            .webhook
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let (http, delivered, failed) = (
            self.http.clone(),
            std::sync::Arc::clone(&self.pushes_delivered),
            std::sync::Arc::clone(&self.pushes_failed),
        );
        tokio::spawn(async move {
            let body = serde_json::to_vec(&event).unwrap_or_default();
            for attempt in 0..3u64 {
                let timestamp = chrono::Utc::now().timestamp().to_string();
                let signature = sign_event(webhook.secret.as_bytes(), &timestamp, &body);
                let sent = http
                    .post(&webhook.url)
                    .header("content-type", "application/json")
                    .header(EVENT_TIMESTAMP_HEADER, &timestamp)
                    .header(EVENT_SIGNATURE_HEADER, signature)
                    .body(body.clone())
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100 * (attempt + 1))).await;
            }
            failed.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// Deletes the subject's code and, when it had one and a webhook is
    /// configured, pushes the deletion. Returns whether it had a code.
    pub fn delete_code(&self, subject_id: &str) -> bool {
        let had = self.code_of(subject_id).is_some();
        let mut overrides = self.overrides.write().unwrap_or_else(|p| p.into_inner());
        overrides.insert(subject_id.to_owned(), None);
        drop(overrides);
        if had {
            self.push(StatusPush::Deleted(CodeDeleted {
                subject_id: subject_id.to_owned(),
                deleted_at: chrono::Utc::now(),
            }));
        }
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

    /// The trace id of the last lookup that carried a `traceparent`.
    pub fn saw_trace(&self, trace_id: &str) {
        *self
            .last_trace_id
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(trace_id.chars().take(32).collect());
    }

    /// A code changed colour, was issued or deleted by the transitions.
    pub fn count_transition(&self) {
        self.transitions.fetch_add(1, Ordering::Relaxed);
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
            itinerary_requests: self.itinerary_requests.load(Ordering::Relaxed),
            pushes_delivered: self.pushes_delivered.load(Ordering::Relaxed),
            pushes_failed: self.pushes_failed.load(Ordering::Relaxed),
            transitions: self.transitions.load(Ordering::Relaxed),
            last_traceparent_trace_id: self
                .last_trace_id
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            population: self.population.size(),
            overrides: self
                .overrides
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .len() as u64,
        }
    }
}
