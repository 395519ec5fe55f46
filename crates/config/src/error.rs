//! Configuration errors: always one line naming the file and, where known, the key.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {reason}", file.display())]
    Unreadable { file: PathBuf, reason: String },
    /// The TOML is malformed or a value has the wrong type.
    #[error("{}{}: {}{message}", file.display(), Line(*line), key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Syntax {
        file: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("{}: {key}: {reason}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

struct Line(Option<usize>);

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, " line {n}"),
            None => Ok(()),
        }
    }
}

impl ConfigError {
    /// Turns toml's multi-line report into one line, finding the key at the error.
    pub(crate) fn from_toml(
        file: &std::path::Path,
        text: &str,
        e: &toml::de::Error,
    ) -> ConfigError {
        let message = e.message().trim().replace('\n', " ");
        let (line, key) = match e.span() {
            Some(span) => {
                let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
                (Some(line_no), key_at(text, line_no))
            }
            None => (None, None),
        };
        ConfigError::Syntax {
            file: file.to_path_buf(),
            line,
            key,
            message,
        }
    }
}

/// The dotted key assigned on line `line_no` (1-based): `[section]` + `name =`.
fn key_at(text: &str, line_no: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_no.checked_sub(1)?)?.trim();
    let name = line.split_once('=')?.0.trim();
    if name.is_empty() || name.starts_with('[') || name.contains(['"', '{', ' ']) {
        return None;
    }
    let section = lines[..line_no - 1].iter().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .map(|s| s.trim_matches(['[', ']']).trim().to_string())
    });
    Some(match section {
        Some(s) => format!("{s}.{name}"),
        None => name.to_string(),
    })
}
