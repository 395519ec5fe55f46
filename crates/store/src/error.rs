//! Errors of the store layer.

use policy::{IpNet, TransitionError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("cannot open store '{url}': {reason}")]
    Open { url: String, reason: String },
    /// The store URL is neither `sqlite://...` nor `postgres://...`.
    #[error("store url '{0}' must start with sqlite:// or postgres://")]
    BadUrl(String),
    /// The backend refused a statement.
    #[error("database error: {0}")]
    Backend(String),
    /// A row does not have the shape this version of portcullis expects.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// The database was migrated by a newer portcullis.
    #[error("store schema version {found} is newer than this portcullis understands ({known}); upgrade portcullis")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("no subscriber with login '{0}'")]
    UnknownSubscriber(String),
    #[error("subscriber '{0}' already exists")]
    DuplicateLogin(String),
    #[error("address {0} is already assigned to '{1}'")]
    AddressTaken(IpNet, String),
    /// The port-25 state machine refused the step.
    #[error("{login}: {source}")]
    Transition {
        login: String,
        source: TransitionError,
    },
    /// Input that the store refuses, with the reason.
    #[error("{0}")]
    Invalid(String),
    /// Another writer changed the row first; the caller retries.
    #[error("concurrent update, try again")]
    Conflict,
}

impl StoreError {
    pub(crate) fn open(url: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Open {
            url: url.to_string(),
            reason: e.to_string(),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Backend(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        match e.as_db_error() {
            Some(db) => StoreError::Backend(db.message().to_string()),
            None => StoreError::Backend(e.to_string()),
        }
    }
}
