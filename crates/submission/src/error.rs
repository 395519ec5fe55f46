//! Errors of the submission server's start-up. Errors inside a session are SMTP
//! replies (`response`), never these.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    /// A listener could not be bound (address in use, no permission, no such address).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The data directory (generated certificate) could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `submission.tls_cert` / `tls_key` could not be read or parsed.
    #[error("cannot load TLS {what} '{path}': {reason}")]
    Certificate {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("TLS configuration refused: {0}")]
    Tls(#[from] rustls::Error),
    /// The self-signed pair could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
    /// The SIGHUP handler could not be installed.
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
}
