//! What outbound delivery keeps in the store beyond the queue itself (`queue`):
//! claims of due recipients with a lease, the log of delivery attempts, the
//! outcome of each attempt, and the operator's queue actions (retry, flush, delete).
//!
//! **Claims.** A delivery node claims due recipients by setting `lease_owner` and
//! `lease_until` on their `queue_recipients` rows in one statement:
//! `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING ...` on
//! PostgreSQL, so concurrent nodes skip each other's rows instead of waiting; on
//! SQLite the same statement without the locking clause (SQLite has one writer, so
//! the statement is atomic). A row whose lease has run out is due again, so a dead
//! node's claims are taken over. Outcomes are written only while the writer still
//! holds the lease ([`StoreError::Conflict`] otherwise).
//!
//! **Attempts.** Every attempt for a recipient (time, host, reply, TLS, node) is
//! kept in `delivery_attempts` until its message leaves the queue, for `queue show`.
//! A message leaves the queue when no recipient is `queued` or `deferred` any more;
//! on SQLite the attempt that makes it leave is never written.

use policy::Timestamp;
use serde::Serialize;

use crate::db::{bulk_insert, Stmt};
use crate::error::StoreError;
use crate::queue::RecipientStatus;
use crate::{params, Store};

/// Schema version 7: delivery state.
pub(crate) const MIGRATION: &str = "
ALTER TABLE queue_recipients ADD COLUMN delay_warned BIGINT NOT NULL DEFAULT 0;
ALTER TABLE queue_recipients ADD COLUMN last_host TEXT;
CREATE TABLE delivery_attempts (
    id {serial},
    message_id TEXT NOT NULL,
    recipient_id BIGINT NOT NULL,
    rcpt TEXT NOT NULL,
    at BIGINT NOT NULL,
    host TEXT,
    reply TEXT NOT NULL,
    outcome TEXT NOT NULL,
    tls TEXT,
    node TEXT NOT NULL
);
CREATE INDEX delivery_attempts_message ON delivery_attempts (message_id, id);
";

/// A message with recipients claimed for delivery (without its body:
/// [`Store::queue_body`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClaimedMessage {
    pub id: String,
    pub login: String,
    pub mail_from: String,
    pub received_at: Timestamp,
    pub size: i64,
    pub ret: Option<String>,
    pub envid: Option<String>,
    pub smtputf8: bool,
    pub body_type: Option<String>,
    pub recipients: Vec<ClaimedRecipient>,
}

/// A lease on recipients: the node that holds them, and until when unless renewed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub owner: String,
    pub until: Timestamp,
}

/// One claimed recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClaimedRecipient {
    pub id: i64,
    pub address: String,
    pub notify: Option<String>,
    pub orcpt: Option<String>,
    /// Attempts made before this one.
    pub attempts: i64,
    pub delay_warned: bool,
}

/// What happened to a recipient in one attempt, to be written with
/// [`Store::record_outcomes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientOutcome {
    pub recipient_id: i64,
    pub address: String,
    /// `Delivered`, `Bounced`, or `Deferred` (with `next_attempt`).
    pub status: RecipientStatus,
    pub next_attempt: Timestamp,
    /// The reply or reason, e.g. `450 4.2.0 mailbox busy`.
    pub reply: String,
    /// The host (and address) that answered, when one did.
    pub host: Option<String>,
    /// `TLSv1.3`, `TLSv1.2`, or `None` for plaintext.
    pub tls: Option<String>,
    /// Whether an attempt was made (false for a delay warning mark only).
    pub attempted: bool,
    pub delay_warned: bool,
}

/// One recorded delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryAttempt {
    pub id: i64,
    pub message_id: String,
    pub recipient: String,
    pub at: Timestamp,
    pub host: Option<String>,
    pub reply: String,
    /// `delivered`, `deferred` or `bounced`.
    pub outcome: String,
    pub tls: Option<String>,
    pub node: String,
}

const PENDING: &str = "status IN ('queued', 'deferred')";

impl Store {
    /// Claims up to `limit` due recipients for `owner` until `lease_until`, grouped
    /// by message (oldest due first).
    pub async fn claim_due_recipients(
        &self,
        owner: &str,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        let now = self.now();
        let lock = if self.db.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE queue_recipients SET lease_owner = $1, lease_until = $2 WHERE id IN \
             (SELECT id FROM queue_recipients WHERE {PENDING} AND next_attempt <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_attempt, id LIMIT $4{lock}) \
             RETURNING message_id, id, rcpt, notify, orcpt, attempts, delay_warned"
        );
        // A claim lost with a power cut is a lease that never was: nothing to redo.
        let rows = self
            .db
            .query_flush_later(&sql, params![owner, lease_until.0, now.0, limit])
            .await?;
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let mut by_message: Vec<(String, Vec<ClaimedRecipient>)> = Vec::new();
        let mut claimed: Vec<(String, ClaimedRecipient)> = rows
            .iter()
            .map(|r| {
                Ok((
                    r.text(0)?,
                    ClaimedRecipient {
                        id: r.int(1)?,
                        address: r.text(2)?,
                        notify: r.opt_text(3)?,
                        orcpt: r.opt_text(4)?,
                        attempts: r.int(5)?,
                        delay_warned: r.int(6)? != 0,
                    },
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        claimed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        for (mid, rcpt) in claimed {
            match by_message.last_mut() {
                Some((m, list)) if *m == mid => list.push(rcpt),
                _ => by_message.push((mid, vec![rcpt])),
            }
        }
        let mut out = Vec::with_capacity(by_message.len());
        for chunk in by_message.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT id, login, mail_from, received_at, size, ret, envid, smtputf8, body_type \
                 FROM queue_messages WHERE id IN ({marks})"
            );
            let rows = self
                .db
                .query(
                    &sql,
                    chunk
                        .iter()
                        .map(|(m, _)| crate::db::Value::from(m))
                        .collect(),
                )
                .await?;
            let mut found = std::collections::HashMap::new();
            for r in rows {
                found.insert(
                    r.text(0)?,
                    ClaimedMessage {
                        id: r.text(0)?,
                        login: r.text(1)?,
                        mail_from: r.text(2)?,
                        received_at: Timestamp(r.int(3)?),
                        size: r.int(4)?,
                        ret: r.opt_text(5)?,
                        envid: r.opt_text(6)?,
                        smtputf8: r.int(7)? != 0,
                        body_type: r.opt_text(8)?,
                        recipients: vec![],
                    },
                );
            }
            for (mid, rcpts) in chunk {
                // A message deleted meanwhile takes its recipients with it.
                if let Some(mut m) = found.remove(mid) {
                    m.recipients = rcpts.clone();
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Writes the outcomes of one attempt at `message_id` by `owner` in one
    /// transaction: recipient states, the attempt log, and the message's removal
    /// once nothing is pending. Fails with [`StoreError::Conflict`], writing nothing,
    /// when `owner` no longer holds a recipient's lease.
    pub async fn record_outcomes(
        &self,
        owner: &str,
        message_id: &str,
        outcomes: &[RecipientOutcome],
    ) -> Result<(), StoreError> {
        self.record_outcomes_batch(owner, &[(message_id.to_string(), outcomes.to_vec())])
            .await
    }

    /// [`Store::record_outcomes`] for several messages in one transaction, reported
    /// before its flush (a power cut may undo it: the attempt is made again). All or
    /// nothing: one lost lease fails the batch with [`StoreError::Conflict`].
    pub async fn record_outcomes_batch(
        &self,
        owner: &str,
        batch: &[(String, Vec<RecipientOutcome>)],
    ) -> Result<(), StoreError> {
        let now = self.now();
        let mut stmts = Vec::new();
        let mut attempts = Vec::new();
        for (message_id, outcomes) in batch {
            for o in outcomes {
                let error = match o.status {
                    RecipientStatus::Delivered => None,
                    _ => Some(o.reply.clone()),
                };
                stmts.push(
                    Stmt::new(
                        "UPDATE queue_recipients SET status = $1, attempts = attempts + $2, \
                         next_attempt = $3, last_error = $4, last_host = $5, delay_warned = $6, \
                         lease_owner = NULL, lease_until = NULL, updated_at = $7 \
                         WHERE id = $8 AND lease_owner = $9",
                        params![
                            o.status.as_str(),
                            i64::from(o.attempted),
                            o.next_attempt.0,
                            error,
                            o.host.clone(),
                            o.delay_warned,
                            now.0,
                            o.recipient_id,
                            owner
                        ],
                    )
                    .expect(1),
                );
                if o.attempted {
                    attempts.push(params![
                        message_id,
                        o.recipient_id,
                        &o.address,
                        now.0,
                        o.host.clone(),
                        &o.reply,
                        o.status.as_str(),
                        o.tls.clone(),
                        owner
                    ]);
                }
            }
        }
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let finish = ids.chunks(500).flat_map(finish_if_done);
        if self.db.is_postgres() {
            // One COPY for the whole batch; `finish_if_done` deletes the rows of the
            // messages it removes.
            stmts.extend(bulk_insert(ATTEMPT_INSERT, "", attempts));
            stmts.extend(finish);
        } else {
            // Every page a SQLite transaction touches is a frame of the next flush: the
            // attempt of a message this transaction removes is never written, which
            // spares a delivered message's outcome the attempt log's pages and
            // `sqlite_sequence` (3 of its 10 frames).
            stmts.extend(finish);
            stmts.extend(
                attempts
                    .into_iter()
                    .map(|row| Stmt::new(ATTEMPT_INSERT_IF_QUEUED, row)),
            );
        }
        // Lost with a power cut, the attempt is made again: at least once, never lost.
        self.db.tx_flush_later(stmts).await?;
        Ok(())
    }

    /// Extends every lease `owner` holds to `lease_until` (a live node's heartbeat,
    /// so a slow transaction is never taken over); returns how many.
    pub async fn renew_claims(
        &self,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<u64, StoreError> {
        let n = self
            .db
            .tx(
                vec![Stmt::new(
                    "UPDATE queue_recipients SET lease_until = $1 WHERE lease_owner = $2",
                    params![lease_until.0, owner],
                )],
                false,
            )
            .await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    /// Gives up `owner`'s leases on recipients (a worker shutting down or unable to
    /// try them), leaving them due at their current time.
    pub async fn release_claims(
        &self,
        owner: &str,
        recipient_ids: &[i64],
    ) -> Result<(), StoreError> {
        let stmts = recipient_ids
            .iter()
            .map(|id| {
                Stmt::new(
                    "UPDATE queue_recipients SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
                    params![*id, owner],
                )
            })
            .collect();
        self.db.tx(stmts, false).await?;
        Ok(())
    }

    /// Every attempt recorded for a queued message, oldest first.
    pub async fn delivery_attempts(
        &self,
        message_id: &str,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT id, message_id, rcpt, at, host, reply, outcome, tls, node FROM delivery_attempts \
                 WHERE message_id = $1 ORDER BY id",
                params![message_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryAttempt {
                    id: r.int(0)?,
                    message_id: r.text(1)?,
                    recipient: r.text(2)?,
                    at: Timestamp(r.int(3)?),
                    host: r.opt_text(4)?,
                    reply: r.text(5)?,
                    outcome: r.text(6)?,
                    tls: r.opt_text(7)?,
                    node: r.text(8)?,
                })
            })
            .collect()
    }

    /// Makes a message's pending recipients due now (`queue retry ID`); returns how
    /// many. Recipients being tried right now keep their lease.
    pub async fn retry_message_now(&self, message_id: &str) -> Result<u64, StoreError> {
        let now = self.now();
        let n = self
            .db
            .tx(
                vec![Stmt::new(
                    format!("UPDATE queue_recipients SET next_attempt = $1 WHERE message_id = $2 AND {PENDING}"),
                    params![now.0, message_id],
                )],
                false,
            )
            .await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    /// Makes every pending recipient due now (`queue flush`); returns how many.
    pub async fn flush_queue(&self) -> Result<u64, StoreError> {
        let now = self.now();
        let n = self
            .db
            .tx(
                vec![Stmt::new(
                    format!("UPDATE queue_recipients SET next_attempt = $1 WHERE {PENDING} AND next_attempt > $1"),
                    params![now.0],
                )],
                false,
            )
            .await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    /// Removes a message, its recipients and its attempt log (`queue delete ID`);
    /// false when there was no such message.
    pub async fn delete_queued_message(&self, message_id: &str) -> Result<bool, StoreError> {
        let n = self
            .db
            .tx(
                vec![
                    Stmt::new(
                        "DELETE FROM queue_recipients WHERE message_id = $1",
                        params![message_id],
                    ),
                    Stmt::new(
                        "DELETE FROM queue_messages WHERE id = $1",
                        params![message_id],
                    ),
                    Stmt::new(
                        "DELETE FROM delivery_attempts WHERE message_id = $1",
                        params![message_id],
                    ),
                ],
                false,
            )
            .await?;
        Ok(n.get(1).copied().unwrap_or(0) > 0)
    }

    /// Removes messages that have nothing pending left (two nodes finishing the last
    /// recipients of one message at the same moment can both miss the removal).
    pub async fn sweep_finished_messages(&self) -> Result<u64, StoreError> {
        let n = self
            .db
            .tx(
                vec![
                    Stmt::new(
                        format!("DELETE FROM queue_recipients WHERE message_id IN (SELECT m.id FROM queue_messages m \
                         WHERE NOT EXISTS (SELECT 1 FROM queue_recipients r WHERE r.message_id = m.id AND r.{PENDING}))"),
                        vec![],
                    ),
                    Stmt::new(
                        "DELETE FROM queue_messages WHERE NOT EXISTS \
                         (SELECT 1 FROM queue_recipients r WHERE r.message_id = queue_messages.id)",
                        vec![],
                    ),
                    Stmt::new(
                        "DELETE FROM delivery_attempts WHERE NOT EXISTS \
                         (SELECT 1 FROM queue_messages m WHERE m.id = delivery_attempts.message_id)",
                        vec![],
                    ),
                ],
                false,
            )
            .await?;
        Ok(n.get(1).copied().unwrap_or(0))
    }

    /// How many recipients are pending (queued or deferred), for tests and metrics.
    pub async fn pending_recipients(&self) -> Result<i64, StoreError> {
        match self
            .db
            .query_one(
                &format!("SELECT COUNT(*) FROM queue_recipients WHERE {PENDING}"),
                vec![],
            )
            .await?
        {
            Some(r) => r.int(0),
            None => Ok(0),
        }
    }
}

const ATTEMPT_INSERT: &str = "INSERT INTO delivery_attempts \
     (message_id, recipient_id, rcpt, at, host, reply, outcome, tls, node) VALUES";

/// One row of [`ATTEMPT_INSERT`], written only while its message is queued.
const ATTEMPT_INSERT_IF_QUEUED: &str = "INSERT INTO delivery_attempts \
     (message_id, recipient_id, rcpt, at, host, reply, outcome, tls, node) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
     WHERE EXISTS (SELECT 1 FROM queue_messages WHERE id = $1)";

/// Statements removing those of `message_ids` that have nothing pending any more
/// (message, recipients by cascade, attempt log); they touch nothing otherwise.
fn finish_if_done(message_ids: &[String]) -> Vec<Stmt> {
    let marks = (1..=message_ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let values = || {
        message_ids
            .iter()
            .map(crate::db::Value::from)
            .collect::<Vec<_>>()
    };
    vec![
        Stmt::new(
            format!(
                "DELETE FROM queue_messages WHERE id IN ({marks}) AND NOT EXISTS \
                 (SELECT 1 FROM queue_recipients p WHERE p.message_id = queue_messages.id AND p.{PENDING})"
            ),
            values(),
        ),
        Stmt::new(
            format!(
                "DELETE FROM queue_recipients WHERE message_id IN ({marks}) AND NOT EXISTS \
                 (SELECT 1 FROM queue_messages m WHERE m.id = queue_recipients.message_id)"
            ),
            values(),
        ),
        Stmt::new(
            format!(
                "DELETE FROM delivery_attempts WHERE message_id IN ({marks}) AND NOT EXISTS \
                 (SELECT 1 FROM queue_messages m WHERE m.id = delivery_attempts.message_id)"
            ),
            values(),
        ),
    ]
}
