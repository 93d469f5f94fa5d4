//! Black-box tests: the whole service over HTTP, against a real
//! `redis-server` and the provider simulator, each started per test.

mod appeals;
mod audit;
mod audit_integrity;
mod bad_input;
mod bounds;
mod browser;
mod cache;
mod cluster;
mod configuration;
mod console;
mod fail_closed;
mod fleets;
mod helpers;
mod hooks;
mod idempotency;
mod notify;
mod openapi;
mod operations;
mod proxy;
mod replicas;
mod resilience;
mod scheme;
mod sources;
mod tls;
mod trail;
mod trip_check;
