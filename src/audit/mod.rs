//! The audit trail: every decision, durable before it is answered,
//! pseudonymised, hash-chained and queryable.
//!
//! - `record`: what one decision's record holds, and its canonical encoding.
//! - `keys`: the secret keys that pseudonymise subjects and seal chains.
//! - `chain`: linking records into per-instance hash chains, and verifying them.
//! - `signing`: Ed25519-signed chain heads and checkpoints (public-key checks).
//! - `writer`: group commit; many decisions share one transaction; signs heads.
//! - `heads`: stores the signed heads off the writer's thread.
//! - `resume`: where a chain continues after a restart or a failed commit.
//! - `store`: SQLite (embedded) and PostgreSQL (shared) behind one interface.
//! - `query`: filters, cursors and summaries of the regulator's API.
//! - `retention`: purging old records without breaking verification.

mod chain;
mod export;
mod heads;
mod keys;
mod query;
mod reader;
mod record;
mod resume;
mod retention;
mod signing;
mod store;
mod writer;

pub use chain::{
    link_hash, seal, verify_chains, ChainHead, ChainProblem, ChainReport, ChainVerifier,
    ProblemKind, StoredLink, Trust, GENESIS_HASH,
};
pub use export::{links_of_export, rfc3339_micros, verify_store, ExportFormat, RecordView};
pub use keys::{AuditKeys, KeyError};
pub use query::{
    check_known, parse_limit, time_range, timestamp, Cursor, DecisionFilter, FilterError, GroupBy,
    OutOfScope, Page, RawFilter, ReadScope, SqlValue, SummaryRow, MAX_PAGE_LIMIT,
};
pub use reader::{export_stream, AuditReader, HeadCheck};
pub use record::{
    AppealEvent, AuditParty, AuditReason, AuditRecord, Hook, SealedRecord, APPEAL_FILED,
    APPEAL_RESOLVED, FORMAT,
};
pub use retention::spawn_retention;
pub use signing::{
    public_key_string, HeadKind, HeadSigner, HeadView, PublicKeys, SignedHead, SigningKeyError,
};
pub use store::appeals::{AppealCounts, AppealCursor, AppealFilter, AppealRow};
pub use store::{
    postgres_requires_tls, reserve_sqlite_page_pool, sqlite_memory_used, sqlite_page_pool_bytes,
    AuditStore, JournalAccess, LinkPosition, PostgresAccess, StoreConfig, StoreError,
};
pub use writer::{AuditWriter, WriteError, WriterLimits};
