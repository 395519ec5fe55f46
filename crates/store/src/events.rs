//! The event log: append-only, monotonically numbered. Writers append inside the
//! transaction of the change they describe; followers read from a cursor.

use std::time::Duration;

use policy::Timestamp;
use serde::Serialize;

use crate::db::Stmt;
use crate::error::StoreError;
use crate::{params, Store};

/// How often an idle follower looks for new events: well inside the one-second
/// promise of DESIGN.md, and cheap (one indexed query).
const POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub id: i64,
    pub at: Timestamp,
    /// e.g. `port25.changed`, `lease.opened`; see the writers in this crate.
    pub kind: String,
    pub login: Option<String>,
    pub payload: serde_json::Value,
}

/// The statement appending an event. `payload` is a `json!` value or, on hot paths,
/// a struct serialized straight to text without building a JSON tree first.
pub(crate) fn append(
    at: Timestamp,
    kind: &str,
    login: Option<&str>,
    payload: impl Serialize,
) -> Stmt {
    // Payloads are maps of strings and numbers, which always serialize.
    let payload = serde_json::to_string(&payload).unwrap_or_else(|_| "null".into());
    Stmt::new(
        "INSERT INTO events (at, kind, login, payload) VALUES ($1, $2, $3, $4)",
        params![at.0, kind, login, payload],
    )
}

impl Store {
    /// Events with an id above `cursor`, oldest first, at most `limit`.
    pub async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT id, at, kind, login, payload FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                params![cursor, limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    id: r.int(0)?,
                    at: Timestamp(r.int(1)?),
                    kind: r.text(2)?,
                    login: r.opt_text(3)?,
                    payload: serde_json::from_str(&r.text(4)?)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    /// The id of the newest event, 0 when the log is empty.
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        let r = self
            .db
            .query_one("SELECT COALESCE(MAX(id), 0) FROM events", vec![])
            .await?;
        r.map_or(Ok(0), |r| r.int(0))
    }

    /// A follower that starts after event `cursor` (use [`Store::last_event_id`] to
    /// see only what happens from now on).
    pub fn follow(&self, cursor: i64) -> EventFollower {
        EventFollower {
            store: self.clone(),
            cursor,
        }
    }
}

/// Reads the event log in order, waking within [`POLL`] of a new event.
pub struct EventFollower {
    store: Store,
    cursor: i64,
}

impl EventFollower {
    /// The next batch of events; waits until there is at least one.
    pub async fn next_batch(&mut self) -> Result<Vec<Event>, StoreError> {
        loop {
            let batch = self.store.events_after(self.cursor, 1000).await?;
            if let Some(last) = batch.last() {
                self.cursor = last.id;
                return Ok(batch);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn cursor(&self) -> i64 {
        self.cursor
    }
}
