//! `tripgate audit verify` and `tripgate audit export`: the audit trail from
//! the command line. Both read the same configuration as `serve` (so
//! `TRIPGATE__AUDIT__*` variables select the store), and flags may point
//! them elsewhere.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use futures_util::StreamExt;

use crate::audit::{export_stream, verify_store, AuditStore, ExportFormat, RawFilter};
use crate::config::{AuditBackend, Settings};

/// Where to find the store, overriding configuration.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct StoreFlags {
    /// An SQLite audit file.
    #[arg(long, conflicts_with = "postgres")]
    pub sqlite: Option<PathBuf>,
    /// A PostgreSQL URL.
    #[arg(long)]
    pub postgres: Option<String>,
}

#[derive(Debug, Default, Clone, clap::Args)]
pub struct ExportFlags {
    #[command(flatten)]
    pub store: StoreFlags,
    /// ndjson or csv.
    #[arg(long, default_value = "ndjson")]
    pub format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Inclusive RFC 3339 lower bound of decided_at.
    #[arg(long)]
    pub from: Option<String>,
    /// Exclusive RFC 3339 upper bound.
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long)]
    pub decision: Option<String>,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub city: Option<String>,
    #[arg(long)]
    pub hook: Option<String>,
    #[arg(long)]
    pub trip_id: Option<String>,
    /// A raw subject id; hashed with every configured key.
    #[arg(long)]
    pub subject: Option<String>,
}

fn settings_with(flags: &StoreFlags) -> Result<Settings, String> {
    let mut settings = Settings::load().map_err(|e| e.to_string())?;
    if let Some(path) = &flags.sqlite {
        settings.audit.backend = AuditBackend::Sqlite;
        settings.audit.sqlite_path = path.clone();
    }
    if let Some(url) = &flags.postgres {
        settings.audit.backend = AuditBackend::Postgres;
        settings.audit.postgres_url = url.clone();
    }
    Ok(settings)
}

async fn open(settings: &Settings) -> Result<AuditStore, String> {
    if let crate::audit::StoreConfig::Sqlite { path, .. } = settings.audit_store() {
        if !path.exists() {
            return Err(format!("no audit file at {}", path.display()));
        }
    }
    AuditStore::open(&settings.audit_store())
        .await
        .map_err(|e| format!("cannot open the audit store: {e}"))
}

struct Progress {
    total: u64,
    terminal: bool,
    last_tenth: u64,
}

impl Progress {
    fn new(total: u64) -> Self {
        Self {
            total: total.max(1),
            terminal: std::io::stderr().is_terminal(),
            last_tenth: 0,
        }
    }

    fn show(&mut self, done: u64) {
        const WIDTH: u64 = 40;
        if self.terminal {
            let filled = (WIDTH * done / self.total).min(WIDTH) as usize;
            eprint!(
                "\r  verifying [{}{}] {done}/{}",
                "#".repeat(filled),
                ".".repeat(WIDTH as usize - filled),
                self.total
            );
            let _ = std::io::stderr().flush();
        } else {
            let tenth = 10 * done / self.total;
            if tenth > self.last_tenth {
                self.last_tenth = tenth;
                eprintln!("  verified {done}/{} records", self.total);
            }
        }
    }
}

/// Exit code 0 when every chain is intact, 1 when tampering was found.
pub async fn verify(flags: StoreFlags) -> Result<bool, String> {
    let settings = settings_with(&flags)?;
    let keys = settings.audit_keys().map_err(|e| e.to_string())?;
    let store = open(&settings).await?;
    let total = store.count().await.map_err(|e| e.to_string())?;
    let mut progress = Progress::new(total);
    let report = verify_store(&store, &keys, |done| progress.show(done))
        .await
        .map_err(|e| e.to_string())?;
    if progress.terminal {
        eprintln!();
    }
    if report.is_intact() {
        println!(
            "audit trail intact: {} records in {} chains verified",
            report.records, report.chains
        );
        return Ok(true);
    }
    println!(
        "audit trail TAMPERED: {} of {} chains are broken ({} records checked)",
        report.problems.len(),
        report.chains,
        report.records
    );
    for problem in &report.problems {
        println!("  {problem}");
    }
    Ok(false)
}

pub async fn export(flags: ExportFlags) -> Result<(), String> {
    let settings = settings_with(&flags.store)?;
    let keys = settings.audit_keys().map_err(|e| e.to_string())?;
    let format =
        ExportFormat::parse(Some(&flags.format)).ok_or("--format must be ndjson or csv")?;
    let raw = RawFilter {
        from: flags.from,
        to: flags.to,
        decision: flags.decision,
        reason: flags.reason,
        city: flags.city,
        hook: flags.hook,
        trip_id: flags.trip_id,
        subject: flags.subject,
    };
    let filter = crate::audit::DecisionFilter::parse(&raw, &keys).map_err(|e| format!("--{e}"))?;
    let store = open(&settings).await?;
    let mut out: Box<dyn Write> = match &flags.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut stream = Box::pin(export_stream(store, filter, format));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        out.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}
