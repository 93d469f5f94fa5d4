//! The upstream adapter: tripgate's only way to ask the health-code provider.
//!
//! One shared reqwest client (connection pool, timeouts from config). Lookups
//! always use the batch endpoint, split into chunks of `MAX_BATCH`, so a
//! request with several misses costs one provider call. Errors never carry a
//! subject id: the batch URL has none, and the ids travel in the body. Each
//! call carries the W3C `traceparent` of the request it is made for.
//! Answers are read up to `max_answer_bytes` and no further: a misbehaving
//! upstream cannot make tripgate buffer without bound.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::Status;
use crate::domain::{Colour, HealthCode, IssuerId, ItineraryVerdict, SubjectId};
use crate::provider_api::{BatchAnswer, BatchLookup, ItineraryBatchAnswer, MAX_BATCH};

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider request failed: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("provider answered HTTP {0}")]
    Status(StatusCode),
    #[error("provider answer is not valid JSON of the contract: {0}")]
    Body(#[source] serde_json::Error),
    #[error("provider answer is larger than the {0} bytes allowed")]
    TooLarge(usize),
    #[error("provider answer omits {0} of the requested subjects")]
    Incomplete(usize),
    #[error("provider answer holds a code with neither renewed_at nor updated_at")]
    Undated,
}

impl ProviderError {
    /// Worth one quick retry: the provider refused or failed fast. A timeout
    /// is not: the time is already spent.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProviderError::Transport(e) if e.is_timeout())
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Transport(e) => e.is_connect(),
            ProviderError::Status(status) => status.is_server_error() || status.as_u16() == 429,
            ProviderError::Body(_)
            | ProviderError::TooLarge(_)
            | ProviderError::Incomplete(_)
            | ProviderError::Undated => false,
        }
    }

    /// A failure of the upstream itself (timeout, connection, 5xx, 429):
    /// what the circuit breaker counts, and what a city may waive as an
    /// outage. An answer refused or unusable for what was asked (4xx, not
    /// the contract) is neither: a caller could cause it with invented ids.
    pub fn is_upstream_failure(&self) -> bool {
        match self {
            ProviderError::Transport(_) => true,
            ProviderError::Status(status) => status.is_server_error() || status.as_u16() == 429,
            ProviderError::Body(_)
            | ProviderError::TooLarge(_)
            | ProviderError::Incomplete(_)
            | ProviderError::Undated => false,
        }
    }
}

/// Which contract a client speaks: health codes (the regional provider or
/// the national platform, same contract) or itinerary cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    HealthCodes,
    Itineraries,
}

#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    batch_url: Url,
    kind: SourceKind,
    max_answer_bytes: usize,
}

impl ProviderClient {
    /// `ca_pem`: the only roots its HTTPS certificate is verified against
    /// (else the built-in ones).
    pub fn new(
        base_url: &Url,
        ca_pem: Option<&[u8]>,
        kind: SourceKind,
        timeout: Duration,
        connect_timeout: Duration,
        max_answer_bytes: usize,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            builder = builder.tls_built_in_root_certs(false);
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("tripgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        // A base URL with or without a trailing slash means the same thing.
        let mut base = base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let path = match kind {
            SourceKind::HealthCodes => "v1/health-codes/batch",
            SourceKind::Itineraries => "v1/itineraries/batch",
        };
        let batch_url = base.join(path).unwrap_or_else(|_| base.clone());
        Ok(Self {
            http,
            batch_url,
            kind,
            max_answer_bytes,
        })
    }

    /// The status of each subject, keyed by raw id. Either every subject is
    /// answered or the call fails: a partial answer would be indistinguishable
    /// from "not registered".
    pub async fn lookup(
        &self,
        subjects: &[&SubjectId],
    ) -> Result<HashMap<String, Status>, ProviderError> {
        let mut statuses = HashMap::with_capacity(subjects.len());
        for chunk in subjects.chunks(MAX_BATCH) {
            let request = BatchLookup {
                subject_ids: chunk.iter().map(|s| s.expose().to_owned()).collect(),
            };
            let mut call = self.http.post(self.batch_url.clone()).json(&request);
            // The trace of the check that asks (for a call shared by
            // several checks, the first one's).
            if let Some(traceparent) = crate::telemetry::TraceContext::current_child_header() {
                call = call.header("traceparent", traceparent);
            }
            let response = call.send().await.map_err(ProviderError::Transport)?;
            if !response.status().is_success() {
                return Err(ProviderError::Status(response.status()));
            }
            let body = read_limited(response, self.max_answer_bytes).await?;
            let not_found = match self.kind {
                SourceKind::HealthCodes => {
                    let answer: BatchAnswer =
                        serde_json::from_slice(&body).map_err(ProviderError::Body)?;
                    for record in answer.codes {
                        let renewed_at = record.renewed().ok_or(ProviderError::Undated)?;
                        let code = HealthCode {
                            colour: Colour::new(&record.color),
                            issuer: IssuerId::new(&record.issuer),
                            renewed_at,
                            colour_since: record.color_since,
                        };
                        statuses.insert(record.subject_id, Status::Registered(code));
                    }
                    answer.not_found
                }
                SourceKind::Itineraries => {
                    let answer: ItineraryBatchAnswer =
                        serde_json::from_slice(&body).map_err(ProviderError::Body)?;
                    for record in answer.itineraries {
                        // The history is reduced to its verdict here and
                        // goes no further.
                        let verdict = ItineraryVerdict::from_visits(
                            record
                                .visits
                                .iter()
                                .map(|v| (v.region.as_str(), v.risk.as_str(), v.date)),
                        );
                        statuses.insert(record.subject_id, Status::Itinerary(verdict));
                    }
                    answer.not_found
                }
            };
            for subject_id in not_found {
                statuses.entry(subject_id).or_insert(Status::NotRegistered);
            }
        }
        let missing = subjects
            .iter()
            .filter(|s| !statuses.contains_key(s.expose()))
            .count();
        if missing > 0 {
            return Err(ProviderError::Incomplete(missing));
        }
        Ok(statuses)
    }
}

/// The body, unless it is longer than `limit` (checked against the declared
/// length first, then as it arrives).
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ProviderError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(ProviderError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ProviderError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(ProviderError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
