//! The `tripgate` command line: `serve`, `simulate`, `demo`, `policy check`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tripgate::audit_commands::{self, ExportFlags, StoreFlags, VerifyFlags};
use tripgate::config::Settings;
use tripgate::demo::{self, DemoOptions};
use tripgate::policy::Policy;
use tripgate::simulator::{PopulationSpec, Simulator, Transitions, Webhook};
use tripgate::startup::Application;
use tripgate::telemetry;

// A decision allocates and frees a few hundred small objects (parsed
// request, lookups, record, response); glibc's malloc was about a tenth of
// the CPU at peak, mimalloc's thread-local free lists much less. With the
// crate's `override` feature mimalloc is the C allocator too, so SQLite's
// page caches, sorts and statements come from it: glibc's per-thread arenas
// kept what SQLite freed, mimalloc gives freed pages back to the system
// (about a second later: v3's default purge delay).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tripgate",
    version,
    about = "Pre-trip health-code gate for ride-hailing dispatch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (settings: config/, TRIPGATE_ENV, TRIPGATE__* variables).
    Serve,
    /// Run the health-code provider simulator.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// Seeded drivers, ids D-000000, D-000001, ...
        #[arg(long, default_value_t = 1_000)]
        drivers: u64,
        /// Seeded passengers, ids P-0000000, P-0000001, ...
        #[arg(long, default_value_t = 10_000)]
        passengers: u64,
        #[arg(long, default_value_t = 2020)]
        seed: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Push every code change here (tripgate's /v1/status-events).
        #[arg(long, requires = "webhook_secret")]
        webhook_url: Option<String>,
        /// Shared secret for signing pushes (tripgate's events.secret).
        #[arg(long)]
        webhook_secret: Option<String>,
        /// Code changes a second: green to yellow or red and back after the
        /// scheme's 7 or 14 days, deletions, new codes; each pushed.
        #[arg(long, default_value_t = 0.0)]
        transitions: f64,
        /// Simulated seconds per real second for those days (86400: a day
        /// a second).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
    },
    /// Start the simulator and the service, drive trip checks, print a summary.
    Demo {
        /// Exit after the summary instead of serving on.
        #[arg(long)]
        exit: bool,
        /// How many trip checks to drive.
        #[arg(long, default_value_t = 400)]
        checks: usize,
    },
    /// The audit trail: verify its chains, export records.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Policy document tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Ask the running service's admin listener whether it is ready: exit 0
    /// ready (or degraded), 1 not (for a container's health check).
    Healthcheck,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and check the configuration (every secret read), print it with
    /// secrets hidden; non-zero exit on an error naming the key.
    Check,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every chain: links, signed heads and checkpoints (and saved
    /// heads); report the first problem of each chain; exit 1 if any.
    Verify(VerifyFlags),
    /// Make a new head-signing key file and print its public key.
    Keygen {
        /// The key file to create (mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write matching records as NDJSON or CSV, newest first.
    Export(Box<ExportFlags>),
    /// Bring the store's schema up to this build's and exit (what `serve`
    /// does at start-up: run it first when that could take longer than
    /// the start-up probe allows).
    Migrate(StoreFlags),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy document; non-zero exit on error.
    Check { file: PathBuf },
}

/// Keeps the heap in the kernel's 4 KiB pages: no transparent huge pages
/// for this process.
///
/// mimalloc asks for huge pages on the arenas it reserves (`MADV_HUGEPAGE`).
/// A kernel that honours that (`transparent_hugepage` set to `always` or
/// `madvise`) backs a 2 MiB stretch of the arena the heap touches with a
/// whole huge page, and its `khugepaged` thread, once its scan reaches the
/// arena, merges the stretches the heap has left sparse by freeing back
/// into huge pages (by default around as little as one resident 4 KiB
/// page). Resident memory then grows with nothing live in it, well after
/// start-up, and a page fault may wait while the kernel compacts memory
/// into a free huge page. The heap is a few hundred MiB at most: the TLB
/// misses huge pages would save on it are not worth either.
fn keep_heap_in_small_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a process-wide flag; no memory is passed.
        let refused = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0;
        if refused {
            eprintln!(
                "tripgate: transparent huge pages stay enabled: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn main() -> ExitCode {
    // Before the runtime's threads touch the heap.
    keep_heap_in_small_pages();
    // Before anything opens an SQLite file.
    if let Err(error) = tripgate::audit::reserve_sqlite_page_pool() {
        eprintln!("tripgate: SQLite's page caches stay on the heap: {error}");
    }
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve().await,
        Command::Simulate {
            listen,
            drivers,
            passengers,
            seed,
            workers,
            webhook_url,
            webhook_secret,
            transitions,
            time_scale,
        } => {
            let webhook = webhook_url
                .zip(webhook_secret)
                .map(|(url, secret)| Webhook { url, secret });
            let spec = PopulationSpec {
                drivers,
                passengers,
                seed,
            };
            let transitions = Transitions {
                rate: transitions,
                time_scale,
            };
            simulate(listen, spec, workers, webhook, transitions).await
        }
        Command::Demo { exit, checks } => demo::run(DemoOptions { exit, checks })
            .await
            .map_err(|e| tripgate::telemetry::error_chain(&e)),
        Command::Audit {
            command: AuditCommand::Keygen { out },
        } => audit_commands::keygen(&out),
        Command::Audit {
            command: AuditCommand::Verify(flags),
        } => match audit_commands::verify(flags).await {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Audit {
            command: AuditCommand::Export(flags),
        } => audit_commands::export(*flags).await,
        Command::Audit {
            command: AuditCommand::Migrate(flags),
        } => audit_commands::migrate(flags).await,
        Command::Healthcheck => match tripgate::ops_commands::healthcheck().await {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Config {
            command: ConfigCommand::Check,
        } => tripgate::ops_commands::config_check(),
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => Policy::load(&file)
            .map(|policy| println!("{}: valid, version {}", file.display(), policy.version()))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

async fn serve() -> Result<(), String> {
    let settings = Settings::load().map_err(|e| e.to_string())?;
    telemetry::init(&settings.log);
    let app = Application::build(settings)
        .await
        .map_err(|e| tripgate::telemetry::error_chain(&e))?;
    tracing::info!(address = %app.address(), "tripgate listening");
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn simulate(
    listen: SocketAddr,
    spec: PopulationSpec,
    workers: usize,
    webhook: Option<Webhook>,
    transitions: Transitions,
) -> Result<(), String> {
    if !(transitions.rate >= 0.0 && transitions.rate.is_finite()) {
        return Err("--transitions must be a number of changes a second, 0 or more".into());
    }
    if !(transitions.time_scale > 0.0 && transitions.time_scale.is_finite()) {
        return Err("--time-scale must be greater than 0".into());
    }
    let simulator = Simulator::build(listen, spec, workers)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    simulator.state().set_webhook(webhook);
    let _transitions = simulator.start_transitions(spec, transitions);
    println!(
        "provider simulator on {} ({} drivers, {} passengers, seed {})",
        simulator.base_url(),
        spec.drivers,
        spec.passengers,
        spec.seed
    );
    let handle = simulator.handle();
    tokio::spawn(async move {
        tripgate::startup::terminated().await;
        handle.stop(true).await;
    });
    simulator
        .run_until_stopped()
        .await
        .map_err(|e| e.to_string())
}
