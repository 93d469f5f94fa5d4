//! tripgate: the pre-trip health-code gate for ride-hailing dispatch.
//!
//! See DESIGN.md for the flow of one decision. Module map:
//! `routes` (HTTP in/out) → `gate` (the decision path) → `status` (cache and
//! provider I/O) and `policy` (pure evaluation), over `domain` types.

pub mod audit;
pub mod audit_commands;
pub mod auth;
pub mod config;
pub mod demo;
pub mod domain;
pub mod events;
pub mod gate;
pub mod hexcode;
pub mod messages;
pub mod metrics;
pub mod policy;
pub mod provider_api;
pub mod routes;
pub mod simulator;
pub mod startup;
pub mod status;
pub mod telemetry;
