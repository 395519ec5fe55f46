//! CSV files for `subscriber import` and `lease import`: a required header, and
//! errors naming the file's line number (header = line 1).

use std::path::Path;
use std::sync::Arc;

use super::CliError;

/// One data row: its line number and its fields, named by the shared header.
pub struct CsvRow {
    pub line: u64,
    header: Arc<Vec<String>>,
    record: csv::StringRecord,
}

impl CsvRow {
    /// The trimmed field, empty when the column is absent.
    pub fn get(&self, name: &str) -> &str {
        self.header
            .iter()
            .position(|h| h == name)
            .and_then(|i| self.record.get(i))
            .map_or("", str::trim)
    }
}

/// Reads `path`, checking the header has every `required` column.
pub fn read(path: &Path, required: &[&str], optional: &[&str]) -> Result<Vec<CsvRow>, CliError> {
    let name = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_path(path)
        .map_err(|e| CliError(format!("cannot read {name}: {}", io_reason(&e))))?;
    let header: Arc<Vec<String>> = Arc::new(
        reader
            .headers()
            .map_err(|e| CliError(format!("{name} line 1: {}", io_reason(&e))))?
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
    );
    for want in required {
        if !header.iter().any(|h| h == want) {
            return Err(CliError(format!(
                "{name} line 1: header lacks column '{want}' (expected {})",
                required.join(",")
            )));
        }
    }
    if let Some(extra) = header
        .iter()
        .find(|h| !required.contains(&h.as_str()) && !optional.contains(&h.as_str()))
    {
        return Err(CliError(format!("{name} line 1: unknown column '{extra}'")));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            CliError(format!("{name} line {line}: {}", io_reason(&e)))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        rows.push(CsvRow {
            line,
            header: header.clone(),
            record,
        });
    }
    Ok(rows)
}

fn io_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}
