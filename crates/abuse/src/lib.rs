//! The abuse loop: ARF complaints (RFC 5965), DNSBL monitoring, the NetFlow/IPFIX
//! collector and submission anomalies in; attribution to the subscriber who held the
//! address, cases, re-instatement and customer notices out.
//!
//! Wire formats are pure cores without I/O, each unit-tested and fuzzed (`fuzz/`):
//! [`arf`] (complaints), [`dns`] (DNSBL queries), [`flow`] (NetFlow v5/v9, IPFIX).
//! The rules are pure too ([`decide`], with an injected clock). The [`engine`] applies
//! them to the store; the thin tokio layers ([`ingest`], [`dnsbl`], [`collector`],
//! the maildir watcher here) move bytes. Not here: enforcing the block (enforce follows
//! the `port25.changed` event) and delivering notices (delivery drains the queue).

pub mod anomaly;
pub mod arf;
pub mod collector;
pub mod decide;
pub mod dns;
pub mod dnsbl;
pub mod engine;
pub mod flow;
pub mod ingest;
pub mod mailer;
pub mod notice;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use anomaly::{Anomaly, AnomalyLimits, SendingMonitor, SubmissionWatch};
pub use arf::{ArfError, Complaint};
pub use decide::{Decision, Thresholds};
pub use engine::{ActionTaken, Attribution, Engine};
pub use flow::{FlowError, FlowRecord};
pub use ingest::{IngestItem, IngestOutcome, IngestReport};
pub use store::{AbuseCase, EvidenceRecord, NoticeRecord};

/// Errors of the abuse layer.
#[derive(Debug, thiserror::Error)]
pub enum AbuseError {
    /// A complaint was refused by the parser.
    #[error("complaint refused: {0}")]
    Report(#[from] ArfError),
    /// The store failed; nothing was recorded.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A file, directory or stdin could not be read.
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind {
        addr: String,
        what: &'static str,
        reason: String,
    },
}

/// `portcullis abuse ingest FILE|DIR|-`: every complaint at `path` (an .eml file, an
/// mbox, a maildir, a directory of files, or `-` for stdin).
pub async fn ingest_path(
    config: &config::Config,
    store: &store::Store,
    path: &Path,
) -> Result<IngestReport, AbuseError> {
    let engine = Engine::new(config, store.clone());
    ingest::ingest_all(&engine, path).await
}

/// One raw complaint (`POST /api/v1/abuse/arf`, a maildir file).
pub async fn ingest_bytes(
    config: &config::Config,
    store: &store::Store,
    raw: &[u8],
) -> Result<IngestOutcome, AbuseError> {
    let engine = Engine::new(config, store.clone());
    ingest::ingest_with(&engine, raw).await
}

/// `portcullis abuse cases [LOGIN]`: cases, newest activity first.
pub async fn cases(
    store: &store::Store,
    login: Option<&str>,
) -> Result<Vec<AbuseCase>, AbuseError> {
    Ok(store.abuse_cases(login).await?)
}

/// How often the maildir watcher looks for new complaints.
const MAILDIR_POLL: Duration = Duration::from_secs(5);

/// Starts the maildir watcher, the DNSBL monitor and the flow collector as configured.
pub async fn start(
    config: Arc<config::Config>,
    store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let engine = Engine::new(&config, store);
    let mut tasks = Vec::new();
    if !config.abuse.flow_listen.is_empty() {
        tasks.extend(
            collector::start(&config.abuse.flow_listen, engine.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    if !config.abuse.dnsbl_zones.is_empty() {
        let monitor = dnsbl::Monitor::from_config(&config.abuse, engine.clone())
            .map_err(|e| e.to_string())?;
        tasks.push(tokio::spawn(monitor.run()));
    }
    if let Some(dir) = config.abuse.maildir.clone() {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            tracing::info!(maildir = %dir.display(), "watching maildir for complaints");
            loop {
                if let Err(e) = scan_maildir(&engine, &dir).await {
                    tracing::error!(maildir = %dir.display(), "maildir scan failed: {e}");
                }
                tokio::time::sleep(MAILDIR_POLL).await;
            }
        }));
    }
    Ok(tasks)
}

/// Ingests every message in `new/` and moves it to `cur/` (flagged seen), so each
/// is read once; refused messages are moved too, flagged `T`, and logged.
pub async fn scan_maildir(engine: &Engine, dir: &Path) -> Result<usize, AbuseError> {
    let cur = dir.join("cur");
    let mut n = 0;
    for file in ingest::list_files(&dir.join("new")).await? {
        let data = match tokio::fs::read(&file).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(file = %file.display(), "cannot read complaint: {e}");
                continue;
            }
        };
        let flag = match ingest::ingest_with(engine, &data).await {
            Ok(_) => "S",
            Err(AbuseError::Store(e)) => return Err(AbuseError::Store(e)),
            Err(e) => {
                tracing::warn!(file = %file.display(), "complaint refused: {e}");
                "T"
            }
        };
        n += 1;
        if let Some(name) = file.file_name() {
            let _ = tokio::fs::create_dir_all(&cur).await;
            let target = cur.join(format!("{}:2,{flag}", name.to_string_lossy()));
            if let Err(e) = tokio::fs::rename(&file, &target).await {
                tracing::error!(file = %file.display(), "cannot move complaint to cur/: {e}");
            }
        }
    }
    Ok(n)
}
