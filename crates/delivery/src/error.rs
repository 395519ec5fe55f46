//! Errors of the delivery layer. Per-recipient SMTP outcomes are not errors (see
//! [`crate::outcome::Outcome`]); these are the failures of the machinery around them.

use std::path::PathBuf;

/// Something delivery could not do.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The store refused or failed a read or write.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// A DKIM key file could not be read or written.
    #[error("DKIM key file '{path}': {reason}")]
    KeyFile { path: PathBuf, reason: String },
    /// A DKIM key could not be parsed, generated or used.
    #[error("DKIM: {0}")]
    Dkim(String),
    /// The DNS resolver could not be built from the configuration.
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// A configuration value delivery depends on is unusable (names the key).
    #[error("configuration: {0}")]
    Config(String),
    /// The TLS client configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// `queue show|retry|delete` named a message that is not in the queue.
    #[error("no queued message with id '{0}'")]
    UnknownMessage(String),
    /// Input rejected with the reason (e.g. an unknown DKIM algorithm).
    #[error("{0}")]
    Invalid(String),
}
