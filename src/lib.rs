//! tripgate: the pre-trip health-code gate for ride-hailing dispatch.
//!
//! docs/ARCHITECTURE.md has the flow of one decision. Module map, one way:
//! `routes` (HTTP in/out; `routes::guard` asks `auth`; operator endpoints in
//! `routes::admin`) → `gate` (the
//! decision path) → `status` (caches and provider I/O), `policy` (pure
//! evaluation) and `audit` (the durable trail), over `domain` types. Around
//! them: `appeals` (contesting a refusal: records in the same trail, beside
//! `gate`), `console` (the regulator's web pages, beside `routes`),
//! `events` (pushed code changes), `metrics`, `messages`, `config`,
//! `telemetry`, and `startup`, which wires everything and owns shutdown.
//! `simulator` is the provider stand-in; `demo` and `audit_commands` back
//! the CLI.

pub mod appeals;
pub mod audit;
pub mod audit_commands;
pub mod auth;
pub mod config;
pub mod console;
pub mod demo;
pub mod domain;
pub mod events;
pub mod gate;
pub mod hexcode;
pub mod idempotency;
pub mod messages;
pub mod metrics;
pub mod notify;
pub mod ops_commands;
pub mod policy;
pub mod provider_api;
pub mod routes;
pub mod scheduling;
pub mod simulator;
pub mod startup;
pub mod status;
pub mod telemetry;
pub mod tls;
