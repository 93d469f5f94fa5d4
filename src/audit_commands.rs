//! `tripgate audit verify` and `tripgate audit export`: the audit trail from
//! the command line. Both read the same configuration as `serve` (so
//! `TRIPGATE__AUDIT__*` variables select the store), and flags may point
//! them elsewhere.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use futures_util::StreamExt;

use crate::audit::{
    export_stream, verify_store, AuditStore, ExportFormat, HeadSigner, HeadView, PublicKeys,
    RawFilter, SignedHead,
};
use crate::config::{AuditBackend, Settings};
use crate::telemetry::error_chain;

/// Where to find the store, overriding configuration.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct StoreFlags {
    /// An SQLite audit file.
    #[arg(long, conflicts_with = "postgres")]
    pub sqlite: Option<PathBuf>,
    /// A PostgreSQL URL (`?sslmode=require` for TLS).
    #[arg(long)]
    pub postgres: Option<String>,
    /// With --postgres: the PEM CA of the server's certificate.
    #[arg(long, requires = "postgres")]
    pub postgres_ca_file: Option<PathBuf>,
    /// With --postgres: a file holding the password.
    #[arg(long, requires = "postgres")]
    pub postgres_password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, clap::Args)]
pub struct VerifyFlags {
    #[command(flatten)]
    pub store: StoreFlags,
    /// A file holding the public key(s) heads must be signed with, as
    /// `GET /v1/audit/heads` serves them (`ed25519:<base64>`; retired keys
    /// on further lines). With `--sqlite` or `--postgres` no configuration
    /// and no audit secret is needed.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// A saved body of `GET /v1/audit/heads`: every chain must still reach
    /// every head in it.
    #[arg(long)]
    pub heads: Option<PathBuf>,
    /// Verify an NDJSON export (`audit export --output FILE`) instead of a
    /// store, with the heads and checkpoints written beside it
    /// (FILE.heads.json), checked against `--public-key`.
    #[arg(long, conflicts_with_all = ["sqlite", "postgres"], requires = "public_key")]
    pub export: Option<PathBuf>,
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
    /// The client that asked for the decisions.
    #[arg(long)]
    pub client: Option<String>,
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
        if flags.postgres_ca_file.is_some() {
            settings.audit.postgres_ca_file = flags.postgres_ca_file.clone();
        }
        if flags.postgres_password_file.is_some() {
            settings.audit.postgres_password_file = flags.postgres_password_file.clone();
        }
    }
    Ok(settings)
}

/// Opens the store to read: the CLI never takes the SQLite log from a
/// running server, nor appends.
async fn open(config: &crate::audit::StoreConfig) -> Result<AuditStore, String> {
    let mut config = config.clone();
    if let crate::audit::StoreConfig::Sqlite { path, journal, .. } = &mut config {
        if !path.exists() {
            return Err(format!("no audit file at {}", path.display()));
        }
        *journal = crate::audit::JournalAccess::Read;
    }
    AuditStore::open(&config)
        .await
        .map_err(|e| format!("cannot open the audit store: {}", error_chain(&e)))
}

/// The store a flag names, with the defaults of the configuration files.
fn store_of_flags(flags: &StoreFlags) -> Option<crate::audit::StoreConfig> {
    if let Some(path) = &flags.sqlite {
        return Some(crate::audit::StoreConfig::Sqlite {
            path: path.clone(),
            busy_timeout_ms: 2_000,
            log_segment_bytes: 64 << 20,
            journal: crate::audit::JournalAccess::Read,
        });
    }
    flags
        .postgres
        .as_ref()
        .map(|url| crate::audit::StoreConfig::Postgres {
            url: url.clone(),
            pool_size: 2,
            access: crate::audit::PostgresAccess {
                ca_file: flags.postgres_ca_file.clone(),
                password_file: flags.postgres_password_file.clone(),
                ..Default::default()
            },
        })
}

/// A saved body of `GET /v1/audit/heads` (or the heads file beside an
/// export): its signed heads, and its checkpoints when it has them.
fn saved_heads(path: &std::path::Path) -> Result<(Vec<SignedHead>, Vec<SignedHead>), String> {
    #[derive(serde::Deserialize)]
    struct Saved {
        heads: Vec<HeadView>,
        #[serde(default)]
        checkpoints: Vec<HeadView>,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let saved: Saved = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not a saved GET /v1/audit/heads body: {e}",
            path.display()
        )
    })?;
    let signed = |views: Vec<HeadView>| {
        views
            .into_iter()
            .map(|h| SignedHead::try_from(h).map_err(|e| format!("{}: {e}", path.display())))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok((signed(saved.heads)?, signed(saved.checkpoints)?))
}

/// The heads file written beside an export.
fn heads_beside(export: &std::path::Path) -> PathBuf {
    let mut name = export.as_os_str().to_owned();
    name.push(".heads.json");
    PathBuf::from(name)
}

/// `verify --export`: an export checked on its own, against the public key.
fn verify_export(
    export: &std::path::Path,
    public_keys: PublicKeys,
    saved: Vec<SignedHead>,
) -> Result<crate::audit::ChainReport, String> {
    let text = std::fs::read_to_string(export)
        .map_err(|e| format!("cannot read {}: {e}", export.display()))?;
    let links =
        crate::audit::links_of_export(&text).map_err(|e| format!("{}: {e}", export.display()))?;
    let (mut heads, checkpoints) = saved_heads(&heads_beside(export))?;
    heads.extend(saved);
    let trust = crate::audit::Trust {
        keys: None,
        public_keys: Some(public_keys),
        checkpoints: checkpoints
            .into_iter()
            .map(|c| (c.instance_id.clone(), c))
            .collect(),
        heads,
    };
    Ok(crate::audit::verify_chains(trust, links))
}

/// `tripgate audit keygen`: a new signing key file and its public key.
pub fn keygen(out: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let text = HeadSigner::generate_text().map_err(|e| format!("no randomness: {e}"))?;
    let signer = HeadSigner::from_text(&text).map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    writeln!(file, "{text}").map_err(|e| e.to_string())?;
    println!(
        "{}\n(key id {}; give regulators this public key)",
        crate::audit::public_key_string(&signer.public_key()),
        signer.key_id()
    );
    Ok(())
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
pub async fn verify(flags: VerifyFlags) -> Result<bool, String> {
    let saved = match &flags.heads {
        Some(path) => saved_heads(path)?.0,
        None => Vec::new(),
    };
    if let (Some(export), Some(key)) = (&flags.export, &flags.public_key) {
        let text = std::fs::read_to_string(key)
            .map_err(|e| format!("cannot read {}: {e}", key.display()))?;
        let public_keys =
            PublicKeys::parse(&text).map_err(|e| format!("{}: {e}", key.display()))?;
        return Ok(print_report(&verify_export(export, public_keys, saved)?));
    }
    // A regulator names the store and the public key: no configuration,
    // no audit secret.
    let standalone = flags.public_key.is_some() && store_of_flags(&flags.store).is_some();
    let settings = if standalone {
        None
    } else {
        Some(settings_with(&flags.store)?)
    };
    let config = match &settings {
        Some(settings) => settings.audit_store(),
        None => store_of_flags(&flags.store).ok_or("name the store")?,
    };
    let keys = settings.as_ref().and_then(|s| s.audit_keys().ok());
    let public_keys = match &flags.public_key {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Some(PublicKeys::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => settings.as_ref().and_then(|s| s.audit_public_keys().ok()),
    };
    if public_keys.is_none() {
        eprintln!("no public key: checking links only (heads and checkpoints unchecked)");
    }
    let store = open(&config).await?;
    let total = store.count().await.map_err(|e| error_chain(&e))?;
    let mut progress = Progress::new(total);
    let report = verify_store(&store, keys.as_ref(), public_keys, saved, |done| {
        progress.show(done)
    })
    .await
    .map_err(|e| error_chain(&e))?;
    if progress.terminal {
        eprintln!();
    }
    Ok(print_report(&report))
}

/// Prints the outcome; true when intact.
fn print_report(report: &crate::audit::ChainReport) -> bool {
    if report.is_intact() {
        println!(
            "audit trail intact: {} records in {} chains verified",
            report.records, report.chains
        );
        if report.unvouched > 0 {
            println!(
                "  {} records are newer than their chain's newest signed head (signed within audit.head_interval_secs)",
                report.unvouched
            );
        }
        return true;
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
    false
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
        client: flags.client,
    };
    let mut filter =
        crate::audit::DecisionFilter::parse(&raw, &keys).map_err(|e| format!("--{e}"))?;
    // Every link of the chains covered, so the export verifies on its own.
    filter.with_appeals = true;
    let store = open(&settings.audit_store()).await?;
    if let Some(path) = &flags.output {
        write_heads_beside(&store, &settings, path).await?;
    }
    let mut out: Box<dyn Write> = match &flags.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut stream = Box::pin(export_stream(store, filter, format));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| error_chain(&e))?;
        out.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

/// `tripgate audit migrate`: opens the store as `serve` does, which brings
/// its schema up to this build's (under the schema lock, in one
/// transaction), and says how long that took.
pub async fn migrate(flags: StoreFlags) -> Result<(), String> {
    let settings = settings_with(&flags)?;
    let started = std::time::Instant::now();
    AuditStore::open(&settings.audit_store())
        .await
        .map_err(|e| format!("cannot open the audit store: {}", error_chain(&e)))?;
    println!(
        "audit store schema up to date ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes `<export>.heads.json` beside an export: the public key, the signed
/// heads and the signed checkpoints it relied on, so the export can be
/// checked on its own.
async fn write_heads_beside(
    store: &AuditStore,
    settings: &Settings,
    export: &std::path::Path,
) -> Result<(), String> {
    let public_key = settings
        .audit_signer()
        .map(|s| crate::audit::public_key_string(&s.public_key()))
        .map_err(|e| e.to_string())?;
    let heads = store.heads().await.map_err(|e| error_chain(&e))?;
    let checkpoints: Vec<SignedHead> = store
        .checkpoints()
        .await
        .map_err(|e| error_chain(&e))?
        .into_values()
        .collect();
    let body = serde_json::json!({
        "public_key": public_key,
        "heads": heads.iter().map(HeadView::from).collect::<Vec<_>>(),
        "checkpoints": checkpoints.iter().map(HeadView::from).collect::<Vec<_>>(),
    });
    let path = heads_beside(export);
    std::fs::write(&path, serde_json::to_vec_pretty(&body).unwrap_or_default())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
