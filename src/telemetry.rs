//! Logging: tracing to stdout, JSON in production, readable locally.
//!
//! The request span records the route *pattern*, never the concrete path or
//! query string: paths and queries can carry subject ids (phone numbers), and
//! those must not reach a log line. Domain types help too: `SubjectId`'s
//! `Debug` output is redacted.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the
/// configured level. Safe to call more than once (later calls do nothing),
/// which the test harness relies on.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// The request id of an HTTP request (`routes::observe`): the caller's
/// `X-Request-Id` when it is safe to log, else a minted one.
#[derive(Debug, Clone)]
pub struct RequestIdentity(pub String);

/// A W3C trace context: the trace a request belongs to, and the span that
/// called us (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// Sampled, as the caller said (`01`), or set when we start the trace.
    pub sampled: bool,
}

tokio::task_local! {
    /// The trace context of the request being handled on this task: what
    /// upstream calls carry on.
    pub static TRACE: TraceContext;
}

fn is_hex(raw: &str, len: usize) -> bool {
    raw.len() == len && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl TraceContext {
    /// A `traceparent` header of version 00 (or a later version's first
    /// four fields); `None` when malformed or all-zero.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = is_hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && is_hex(trace_id, 32)
            && trace_id.bytes().any(|b| b != b'0')
            && is_hex(parent, 16)
            && parent.bytes().any(|b| b != b'0')
            && is_hex(flags, 2);
        valid.then(|| Self {
            trace_id: trace_id.to_owned(),
            sampled: u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1),
        })
    }

    /// A new trace, for a request that came without one.
    pub fn start() -> Self {
        Self {
            trace_id: format!("{:032x}", uuid::Uuid::new_v4().as_u128()),
            sampled: true,
        }
    }

    /// The `traceparent` of a call we make within this trace: a new span id.
    pub fn child_header(&self) -> String {
        format!(
            "00-{}-{:016x}-{}",
            self.trace_id,
            fastrand::u64(1..),
            if self.sampled { "01" } else { "00" }
        )
    }

    /// The header for a call made on this task, if it is handling a request.
    pub fn current_child_header() -> Option<String> {
        TRACE.try_with(TraceContext::child_header).ok()
    }
}

/// The root span of every HTTP request, without the raw target.
pub struct RedactedRootSpan;

impl RootSpanBuilder for RedactedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        let extensions = request.extensions();
        let request_id = extensions
            .get::<RequestIdentity>()
            .map(|id| id.0.clone())
            .or_else(|| extensions.get::<RequestId>().map(|id| id.to_string()))
            .unwrap_or_default();
        let trace_id = extensions
            .get::<TraceContext>()
            .map(|t| t.trace_id.clone())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %request.method(),
            route = %route,
            request_id = %request_id,
            trace_id = %trace_id,
            status = tracing::field::Empty,
            client = tracing::field::Empty,
            decision_id = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => response.response().status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("status", status.as_u16());
        if status.is_server_error() {
            span.in_scope(|| tracing::warn!(status = status.as_u16(), "request failed"));
        } else {
            span.in_scope(|| tracing::debug!(status = status.as_u16(), "request done"));
        }
    }
}

/// An error and its causes, `: `-separated (for the log).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_contexts_are_parsed_strictly_and_continued() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::parse(header).unwrap();
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(trace.sampled);
        let child = trace.child_header();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_eq!(TraceContext::parse(&child).unwrap(), trace);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        let started = TraceContext::start();
        assert!(is_hex(&started.trace_id, 32));
    }
}
