//! Persistence for portcullis behind one interface, [`Store`], with two backends:
//! SQLite (`sqlite://portcullis.db`, the embedded default, created on first use) and
//! PostgreSQL (`postgres://...`, for several nodes sharing one world). Both pass the
//! same test suite (`tests/store.rs`).
//!
//! Every state change is written in one transaction together with its audit entry and
//! an [`Event`] in the append-only event log, which the other components follow.
//! This crate stores and fetches; the rules themselves live in `policy`.

mod abuse;
mod db;
mod delivery;
mod enforcement;
mod error;
mod events;
mod leases;
mod migrations;
mod mta_sts;
mod page_cache;
pub mod password;
mod portal;
mod queue;
mod sessions;
mod subscribers;
pub mod testing;
mod write_coalescing;

use std::sync::Arc;

use policy::{Clock, SystemClock, Timestamp};

pub use abuse::{AbuseCase, DnsblState, EvidenceRecord, NewEvidence, NewNotice, NoticeRecord};
pub use db::{Unflushed, Value};
pub use delivery::{Claim, ClaimedMessage, ClaimedRecipient, DeliveryAttempt, RecipientOutcome};
pub use enforcement::{EnforcementState, HeldNet};
pub use error::StoreError;
pub use events::{Event, EventFollower};
pub use leases::{LeaseRecord, NewLease};
pub use migrations::LATEST as SCHEMA_VERSION;
pub use mta_sts::CachedStsPolicy;
pub use page_cache::parked_pages;
pub use portal::{
    Operator, OperatorRole, Port25Change, SessionKind, StaticRequest, SupportRequest, WebSession,
};
pub use queue::{
    new_queue_id, NewQueuedMessage, NewQueuedRecipient, QueuedMessage, QueuedRecipient,
    RecipientStatus,
};
pub use sessions::{LiveSession, RadiusProfile, SessionEvent, SessionReport};
pub use subscribers::{NewSubscriber, OptoutRequest};

use db::Db;

/// A handle on the store; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Store {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl Store {
    /// Opens (and creates, for SQLite) the store at `url` and applies migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with_clock(url, Arc::new(SystemClock)).await
    }

    pub async fn open_with_clock(url: &str, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        let db = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::BadUrl(url.to_string()));
            }
            Db::open_sqlite(path).await?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Db::open_postgres(url, 4).await?
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        migrations::migrate(&db, clock.now().0).await?;
        Ok(Store { db, clock })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn backend(&self) -> &'static str {
        if self.db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}
