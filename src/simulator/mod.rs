//! The provider simulator: a real HTTP server that speaks the provider
//! contract (`provider_api`), for demos, tests and benchmarks.
//!
//! It is deliberately a separate server, not a mock inside the service: the
//! service's real HTTP client, timeouts and error handling are exercised
//! against it. State is a seeded population computed on demand (no memory
//! per subject, so a million subjects cost nothing) plus the codes set by the
//! admin API, and the injected faults.

mod population;
mod routes;
mod state;
mod transitions;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

pub use crate::provider_api::Webhook;
pub use population::{Population, PopulationSpec};
pub use state::SimulatorState;
pub use transitions::Transitions;

pub struct Simulator {
    address: SocketAddr,
    server: Server,
    state: Arc<SimulatorState>,
}

impl Simulator {
    /// Binds `listen` (port 0 picks a free port) and prepares the server;
    /// it runs once `run_until_stopped` is awaited or spawned.
    pub fn build(
        listen: SocketAddr,
        spec: PopulationSpec,
        workers: usize,
    ) -> std::io::Result<Self> {
        let state = Arc::new(SimulatorState::new(Population::new(spec)));
        let listener = TcpListener::bind(listen)?;
        let address = listener.local_addr()?;
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(routes::configure)
        })
        .workers(workers.max(1))
        .shutdown_timeout(1)
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self {
            address,
            server,
            state,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn state(&self) -> Arc<SimulatorState> {
        Arc::clone(&self.state)
    }

    /// Turns codes over at `transitions.rate` a second until the returned
    /// task is aborted (see `transitions`).
    pub fn start_transitions(
        &self,
        spec: PopulationSpec,
        transitions: Transitions,
    ) -> tokio::task::JoinHandle<()> {
        transitions::spawn(Arc::clone(&self.state), spec, transitions)
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
