//! Complaint intake: an .eml file, an mbox, a maildir (`cur/` and `new/`), a
//! directory of files, stdin, or the raw bytes posted to `/api/v1/abuse/arf`.
//! Each complaint is parsed (`arf`), attributed and recorded (`engine`); the report
//! says, per message, what was recorded, what was a duplicate and what was refused.

use std::path::{Path, PathBuf};

use serde::Serialize;
use store::NewEvidence;

use crate::arf::{self, Complaint, ComplaintFormat};
use crate::engine::{ActionTaken, Engine};
use crate::AbuseError;

/// What became of one complaint.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum IngestOutcome {
    /// New evidence, attributed or not, and the actions it caused.
    Recorded {
        evidence_id: i64,
        format: ComplaintFormat,
        feedback_type: String,
        source_ip: Option<String>,
        at: policy::Timestamp,
        login: Option<String>,
        unattributed: Option<String>,
        case_id: Option<i64>,
        actions: Vec<ActionTaken>,
    },
    /// The same report was ingested before; it counts once.
    Duplicate { fingerprint: String },
}

/// One message of an ingest run.
#[derive(Clone, Debug, Serialize)]
pub struct IngestItem {
    /// The file, and `#N` for the Nth message of an mbox.
    pub source: String,
    #[serde(flatten)]
    pub outcome: Option<IngestOutcome>,
    /// Why the message was refused (not a message, too large, unreadable).
    pub refused: Option<String>,
}

/// The result of `abuse ingest`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestReport {
    pub recorded: usize,
    pub duplicates: usize,
    pub refused: usize,
    pub items: Vec<IngestItem>,
}

/// Parses, attributes and records one complaint.
pub async fn ingest_with(engine: &Engine, raw: &[u8]) -> Result<IngestOutcome, AbuseError> {
    let complaint = arf::parse(raw, engine.pools())?;
    record_complaint(engine, complaint).await
}

/// Records a parsed complaint.
pub async fn record_complaint(
    engine: &Engine,
    complaint: Complaint,
) -> Result<IngestOutcome, AbuseError> {
    let at = complaint.arrival_date.unwrap_or(engine.now());
    let attribution = engine.attribute(complaint.source_ip, at).await?;
    record_attributed(engine, complaint, attribution).await
}

/// Records a parsed complaint whose attribution is known.
pub async fn record_attributed(
    engine: &Engine,
    complaint: Complaint,
    attribution: crate::engine::Attribution,
) -> Result<IngestOutcome, AbuseError> {
    let at = complaint.arrival_date.unwrap_or(engine.now());
    let summary = match complaint.format {
        ComplaintFormat::Arf => format!("spam complaint ({})", complaint.feedback_type),
        ComplaintFormat::Unstructured => "spam complaint (plain text)".to_string(),
    };
    let fingerprint = complaint.fingerprint.clone();
    let evidence = NewEvidence {
        kind: "complaint".into(),
        fingerprint: Some(fingerprint.clone()),
        ip: complaint.source_ip,
        at,
        login: attribution.login.clone(),
        unattributed: attribution.unattributed.clone(),
        summary,
        detail: serde_json::to_value(&complaint).unwrap_or(serde_json::Value::Null),
    };
    match engine.record(evidence, 0, false).await? {
        None => Ok(IngestOutcome::Duplicate { fingerprint }),
        Some((rec, actions)) => Ok(IngestOutcome::Recorded {
            evidence_id: rec.id,
            format: complaint.format,
            feedback_type: complaint.feedback_type,
            source_ip: rec.ip,
            at: rec.at,
            login: rec.login,
            unattributed: rec.unattributed,
            case_id: rec.case_id,
            actions,
        }),
    }
}

/// The messages at `path`: a file (one message or an mbox), a maildir, a directory
/// of files, or `-` for stdin. Unreadable files are refused items, not errors.
pub async fn read_messages(
    path: &Path,
) -> Result<Vec<(String, Result<Vec<u8>, String>)>, AbuseError> {
    if path == Path::new("-") {
        let data = tokio::task::spawn_blocking(|| {
            use std::io::Read;
            let mut data = Vec::new();
            std::io::stdin().read_to_end(&mut data).map(|_| data)
        })
        .await
        .map_err(|e| AbuseError::Io {
            path: "-".into(),
            reason: e.to_string(),
        })?
        .map_err(|e| AbuseError::Io {
            path: "-".into(),
            reason: e.to_string(),
        })?;
        return Ok(split("-", data));
    }
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| AbuseError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if meta.is_file() {
        let data = tokio::fs::read(path).await.map_err(|e| AbuseError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        return Ok(split(&path.display().to_string(), data));
    }
    let mut files = Vec::new();
    let dirs: Vec<PathBuf> = if is_maildir(path) {
        vec![path.join("cur"), path.join("new")]
    } else {
        vec![path.to_path_buf()]
    };
    for dir in dirs {
        files.extend(list_files(&dir).await?);
    }
    let mut out = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match tokio::fs::read(&f).await {
            Ok(data) => out.extend(split(&name, data)),
            Err(e) => out.push((name, Err(format!("cannot read: {e}")))),
        }
    }
    Ok(out)
}

/// A maildir has `cur/` or `new/`.
pub fn is_maildir(path: &Path) -> bool {
    path.join("new").is_dir() || path.join("cur").is_dir()
}

/// Regular files of `dir`, sorted, hidden ones skipped; a missing dir is empty.
pub async fn list_files(dir: &Path) -> Result<Vec<PathBuf>, AbuseError> {
    let mut out = Vec::new();
    let mut rd = match tokio::fs::read_dir(dir).await {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(AbuseError::Io {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    while let Ok(Some(entry)) = rd.next_entry().await {
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().await.is_ok_and(|t| t.is_file()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn split(name: &str, data: Vec<u8>) -> Vec<(String, Result<Vec<u8>, String>)> {
    if arf::is_mbox(&data) {
        let msgs = arf::split_mbox(&data);
        if msgs.len() > 1 {
            return msgs
                .into_iter()
                .enumerate()
                .map(|(i, m)| (format!("{name}#{}", i + 1), Ok(m)))
                .collect();
        }
    }
    vec![(name.to_string(), Ok(data))]
}

/// How many complaints are parsed and attributed together.
const BATCH: usize = 256;

/// Ingests everything at `path` (see [`read_messages`]): parsed and attributed in
/// batches, recorded one by one.
pub async fn ingest_all(engine: &Engine, path: &Path) -> Result<IngestReport, AbuseError> {
    let mut report = IngestReport::default();
    let messages = read_messages(path).await?;
    for batch in messages.chunks(BATCH) {
        let parsed: Vec<(String, Result<Complaint, AbuseError>)> = batch
            .iter()
            .map(|(source, data)| {
                let result = match data {
                    Ok(raw) => arf::parse(raw, engine.pools()).map_err(AbuseError::from),
                    Err(reason) => Err(AbuseError::Io {
                        path: source.clone(),
                        reason: reason.clone(),
                    }),
                };
                (source.clone(), result)
            })
            .collect();
        let now = engine.now();
        let keys: Vec<_> = parsed
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|c| (c.source_ip, c.arrival_date.unwrap_or(now)))
            .collect();
        let mut attributions = engine.attribute_many(&keys).await?.into_iter();
        for (source, result) in parsed {
            let result = match result {
                Ok(c) => match attributions.next() {
                    Some(a) => record_attributed(engine, c, a).await,
                    None => record_complaint(engine, c).await,
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(outcome) => {
                    match &outcome {
                        IngestOutcome::Recorded { .. } => report.recorded += 1,
                        IngestOutcome::Duplicate { .. } => report.duplicates += 1,
                    }
                    report.items.push(IngestItem {
                        source,
                        outcome: Some(outcome),
                        refused: None,
                    });
                }
                Err(AbuseError::Store(e)) => return Err(AbuseError::Store(e)),
                Err(e) => {
                    tracing::warn!(source = %source, "complaint refused: {e}");
                    report.refused += 1;
                    report.items.push(IngestItem {
                        source,
                        outcome: None,
                        refused: Some(e.to_string()),
                    });
                }
            }
        }
    }
    Ok(report)
}
