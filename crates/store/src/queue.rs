//! The mail queue: messages accepted by submission and their per-recipient delivery
//! state. Submission writes ([`Store::enqueue`]); delivery claims, updates and removes;
//! the CLI and the portal read ([`Store::list_queue`], [`Store::queue_message`]).
//!
//! **Where bodies live.** The body is stored in the store itself, and only there
//! (`queue_messages.body`), so every node on a shared PostgreSQL can deliver any
//! message and a message is durable exactly when its row is committed: one copy, one
//! commit (one fsync, shared by a group of messages) before `250`. On SQLite the
//! column holds the bytes as a BLOB (SQLite keeps a BLOB as is in a TEXT column); on
//! PostgreSQL, whose TEXT cannot hold arbitrary bytes, base64 text. Rows written
//! before bodies were BLOBs hold base64 on SQLite too: [`Store::queue_body`] reads
//! both. `spool_path` is a legacy column: submission no longer keeps a spool copy.
//!
//! **Recipients are the unit of work.** Each has its status (`queued`, `deferred`,
//! `delivered`, `bounced`), attempts, `next_attempt` and `last_error`, and a lease
//! (`lease_owner`, `lease_until`) so several delivery workers can claim due recipients
//! without stepping on each other: on PostgreSQL
//! `SELECT id FROM queue_recipients WHERE status IN ('queued','deferred') AND
//! next_attempt <= $1 AND (lease_until IS NULL OR lease_until < $1) ORDER BY
//! next_attempt LIMIT $2 FOR UPDATE SKIP LOCKED`, then an `UPDATE` setting the lease,
//! in one transaction (SQLite has one writer, so a plain transaction does). The DSN
//! parameters (RET, ENVID per message; NOTIFY, ORCPT per recipient) are kept for the
//! bounces.
//!
//! Enqueueing appends no event: the event log carries policy changes, and one event per
//! message would swamp it; delivery polls `next_attempt`.

use policy::Timestamp;
use serde::Serialize;

use std::sync::Arc;

use crate::db::{bulk_insert, Row, Stmt, Unflushed};
use crate::delivery::{Claim, ClaimedMessage, ClaimedRecipient};
use crate::error::StoreError;
use crate::{params, Store};

/// Schema version 2: the mail queue.
pub(crate) const MIGRATION: &str = "
CREATE TABLE queue_messages (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    client_ip TEXT,
    received_at BIGINT NOT NULL,
    size BIGINT NOT NULL,
    ret TEXT,
    envid TEXT,
    smtputf8 BIGINT NOT NULL DEFAULT 0,
    body_type TEXT,
    spool_path TEXT,
    body TEXT NOT NULL
);
CREATE INDEX queue_messages_login ON queue_messages (login, received_at);
CREATE TABLE queue_recipients (
    id {serial},
    message_id TEXT NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
    rcpt TEXT NOT NULL,
    notify TEXT,
    orcpt TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,
    last_error TEXT,
    lease_owner TEXT,
    lease_until BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX queue_recipients_due ON queue_recipients (status, next_attempt);
CREATE INDEX queue_recipients_message ON queue_recipients (message_id);
";

/// Schema version 11: no query looks queued messages up by login, and every accepted
/// message paid for the index twice (its insert and its delete, a page each in the
/// WAL that the commit's flush writes).
pub(crate) const DROP_LOGIN_INDEX_MIGRATION: &str = "DROP INDEX queue_messages_login;";

/// A message to enqueue, as submission accepted it.
#[derive(Clone, Debug, Default)]
pub struct NewQueuedMessage {
    /// From [`new_queue_id`]; also names the spool file.
    pub id: String,
    /// The authenticated login that submitted it.
    pub login: String,
    /// MAIL FROM; empty for `<>`.
    pub mail_from: String,
    pub client_ip: Option<String>,
    /// RET (`FULL` or `HDRS`) and ENVID (xtext as received), RFC 3461.
    pub ret: Option<String>,
    pub envid: Option<String>,
    pub smtputf8: bool,
    /// BODY (`7BIT` or `8BITMIME`), RFC 6152.
    pub body_type: Option<String>,
    /// Legacy: a node-local copy of the body; submission leaves it `None`.
    pub spool_path: Option<String>,
    pub recipients: Vec<NewQueuedRecipient>,
    /// The whole message as it will be delivered (headers added by submission included).
    pub body: Arc<Vec<u8>>,
    /// Recipients inserted already claimed by this lease: the node that accepted the
    /// message delivers it from memory, without claiming it back from the queue.
    pub claim: Option<Claim>,
}

#[derive(Clone, Debug, Default)]
pub struct NewQueuedRecipient {
    pub address: String,
    /// NOTIFY as received (`NEVER` or a comma list).
    pub notify: Option<String>,
    /// ORCPT as received (`rfc822;...`).
    pub orcpt: Option<String>,
}

/// Delivery state of one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    Queued,
    Deferred,
    Delivered,
    Bounced,
}

impl RecipientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientStatus::Queued => "queued",
            RecipientStatus::Deferred => "deferred",
            RecipientStatus::Delivered => "delivered",
            RecipientStatus::Bounced => "bounced",
        }
    }
}

impl std::str::FromStr for RecipientStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<RecipientStatus, String> {
        match s {
            "queued" => Ok(RecipientStatus::Queued),
            "deferred" => Ok(RecipientStatus::Deferred),
            "delivered" => Ok(RecipientStatus::Delivered),
            "bounced" => Ok(RecipientStatus::Bounced),
            other => Err(format!("unknown recipient status '{other}'")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedRecipient {
    pub id: i64,
    pub address: String,
    pub notify: Option<String>,
    pub orcpt: Option<String>,
    pub status: RecipientStatus,
    pub attempts: i64,
    pub next_attempt: Timestamp,
    pub last_error: Option<String>,
}

/// A queued message without its body ([`Store::queue_body`] reads that).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedMessage {
    pub id: String,
    pub login: String,
    pub mail_from: String,
    pub client_ip: Option<String>,
    pub received_at: Timestamp,
    pub size: i64,
    pub ret: Option<String>,
    pub envid: Option<String>,
    pub smtputf8: bool,
    pub body_type: Option<String>,
    pub spool_path: Option<String>,
    pub recipients: Vec<QueuedRecipient>,
}

/// A fresh queue id: 8 hex digits of the time (so ids sort roughly by arrival) and
/// 10 random ones, upper case, e.g. `6747A1B2C3D4E5F6A7`.
pub fn new_queue_id() -> String {
    use rand_core::RngCore;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let random = rand_core::OsRng.next_u64() & 0xff_ffff_ffff;
    format!("{:08X}{:010X}", secs as u32, random)
}

const MESSAGE_COLUMNS: &str =
    "id, login, mail_from, client_ip, received_at, size, ret, envid, smtputf8, body_type, spool_path";

fn parse_message(r: &Row) -> Result<QueuedMessage, StoreError> {
    Ok(QueuedMessage {
        id: r.text(0)?,
        login: r.text(1)?,
        mail_from: r.text(2)?,
        client_ip: r.opt_text(3)?,
        received_at: Timestamp(r.int(4)?),
        size: r.int(5)?,
        ret: r.opt_text(6)?,
        envid: r.opt_text(7)?,
        smtputf8: r.int(8)? != 0,
        body_type: r.opt_text(9)?,
        spool_path: r.opt_text(10)?,
        recipients: Vec::new(),
    })
}

fn parse_recipient(r: &Row) -> Result<(String, QueuedRecipient), StoreError> {
    Ok((
        r.text(0)?,
        QueuedRecipient {
            id: r.int(1)?,
            address: r.text(2)?,
            notify: r.opt_text(3)?,
            orcpt: r.opt_text(4)?,
            status: r.text(5)?.parse().map_err(StoreError::Corrupt)?,
            attempts: r.int(6)?,
            next_attempt: Timestamp(r.int(7)?),
            last_error: r.opt_text(8)?,
        },
    ))
}

const RECIPIENT_COLUMNS: &str =
    "message_id, id, rcpt, notify, orcpt, status, attempts, next_attempt, last_error";

impl Store {
    /// Records a message and its recipients (all `queued`, due now) in one
    /// transaction. When this returns Ok the message is durable.
    pub async fn enqueue(
        &self,
        m: &NewQueuedMessage,
    ) -> Result<Option<ClaimedMessage>, StoreError> {
        let mut claimed = self.enqueue_many(std::slice::from_ref(m)).await?;
        Ok(claimed.pop().flatten())
    }

    /// [`Store::enqueue`], committed on the calling thread for SQLite: it blocks that
    /// thread for the commit, for a caller that commits one message while no other is
    /// being committed (a blocking thread costs two more wake-ups). Returns before the
    /// flush, which the caller waits for ([`Unflushed::flushed_here`]) before it
    /// tells anyone the message is safe.
    pub async fn enqueue_on_caller(
        &self,
        m: &NewQueuedMessage,
    ) -> Result<(Option<ClaimedMessage>, Unflushed), StoreError> {
        let (mut claimed, unflushed) = self.enqueue_in(std::slice::from_ref(m), true).await?;
        Ok((claimed.pop().flatten(), unflushed))
    }

    /// Records several messages in one transaction (group commit: one fsync for all);
    /// all or none. Returns, for each message with a [`NewQueuedMessage::claim`], the
    /// message as [`Store::claim_due_recipients`] would have claimed it.
    pub async fn enqueue_many(
        &self,
        messages: &[NewQueuedMessage],
    ) -> Result<Vec<Option<ClaimedMessage>>, StoreError> {
        Ok(self.enqueue_in(messages, false).await?.0)
    }

    async fn enqueue_in(
        &self,
        messages: &[NewQueuedMessage],
        on_caller: bool,
    ) -> Result<(Vec<Option<ClaimedMessage>>, Unflushed), StoreError> {
        let now = self.now();
        let mut stmts = Vec::with_capacity(messages.len() * 2);
        let pg = self.db.is_postgres();
        let mut first_recipient = Vec::with_capacity(messages.len());
        for m in messages {
            stmts.extend(enqueue_stmts(m, now, pg)?);
            // A claimed message's recipients are its last statements, one each.
            first_recipient.push(m.claim.as_ref().map(|_| stmts.len() - m.recipients.len()));
        }
        let (results, unflushed) = if on_caller {
            self.db.tx_on_caller(stmts).await?
        } else {
            (self.db.tx(stmts, false).await?, Unflushed::done())
        };
        let claimed = messages
            .iter()
            .zip(first_recipient)
            .map(|(m, first)| {
                let first = first?;
                let recipients = m
                    .recipients
                    .iter()
                    .zip(&results[first..])
                    .map(|(r, id)| ClaimedRecipient {
                        id: *id as i64,
                        address: r.address.clone(),
                        notify: r.notify.clone(),
                        orcpt: r.orcpt.clone(),
                        attempts: 0,
                        delay_warned: false,
                    })
                    .collect();
                Some(ClaimedMessage {
                    id: m.id.clone(),
                    login: m.login.clone(),
                    mail_from: m.mail_from.clone(),
                    received_at: now,
                    size: m.body.len() as i64,
                    ret: m.ret.clone(),
                    envid: m.envid.clone(),
                    smtputf8: m.smtputf8,
                    body_type: m.body_type.clone(),
                    recipients,
                })
            })
            .collect();
        Ok((claimed, unflushed))
    }

    /// Queued messages, oldest first, at most `limit`, with their recipients.
    pub async fn list_queue(&self, limit: i64) -> Result<Vec<QueuedMessage>, StoreError> {
        let rows = self
            .db
            .query(&format!("SELECT {MESSAGE_COLUMNS} FROM queue_messages ORDER BY received_at, id LIMIT $1"), params![limit])
            .await?;
        let mut messages: Vec<QueuedMessage> =
            rows.iter().map(parse_message).collect::<Result<_, _>>()?;
        if messages.is_empty() {
            return Ok(messages);
        }
        let index: std::collections::HashMap<String, usize> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        for chunk in ids.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT {RECIPIENT_COLUMNS} FROM queue_recipients WHERE message_id IN ({marks}) ORDER BY id");
            for r in self
                .db
                .query(&sql, chunk.iter().map(crate::db::Value::from).collect())
                .await?
            {
                let (mid, rcpt) = parse_recipient(&r)?;
                if let Some(&i) = index.get(&mid) {
                    messages[i].recipients.push(rcpt);
                }
            }
        }
        Ok(messages)
    }

    /// One queued message with its recipients.
    pub async fn queue_message(&self, id: &str) -> Result<Option<QueuedMessage>, StoreError> {
        let Some(r) = self
            .db
            .query_one(
                &format!("SELECT {MESSAGE_COLUMNS} FROM queue_messages WHERE id = $1"),
                params![id],
            )
            .await?
        else {
            return Ok(None);
        };
        let mut m = parse_message(&r)?;
        for r in self
            .db
            .query(&format!("SELECT {RECIPIENT_COLUMNS} FROM queue_recipients WHERE message_id = $1 ORDER BY id"), params![id])
            .await?
        {
            m.recipients.push(parse_recipient(&r)?.1);
        }
        Ok(Some(m))
    }

    /// The body of a queued message, exactly as accepted.
    pub async fn queue_body(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(mut r) = self
            .db
            .query_one("SELECT body FROM queue_messages WHERE id = $1", params![id])
            .await?
        else {
            return Ok(None);
        };
        match r.take(0) {
            Some(crate::db::Value::Bytes(b)) => Ok(Some(Arc::unwrap_or_clone(b))),
            Some(crate::db::Value::Text(t)) => base64_decode(&t)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("queue body of {id} is not base64"))),
            other => Err(StoreError::Corrupt(format!(
                "queue body of {id}: expected bytes, found {other:?}"
            ))),
        }
    }

    /// How many messages are queued.
    pub async fn queue_len(&self) -> Result<i64, StoreError> {
        match self
            .db
            .query_one("SELECT COUNT(*) FROM queue_messages", vec![])
            .await?
        {
            Some(r) => r.int(0),
            None => Ok(0),
        }
    }
}

/// The statements that record one message and its recipients.
fn enqueue_stmts(
    m: &NewQueuedMessage,
    now: Timestamp,
    postgres: bool,
) -> Result<Vec<Stmt>, StoreError> {
    if m.id.is_empty() || m.recipients.is_empty() {
        return Err(StoreError::Invalid(
            "a queued message needs an id and at least one recipient".into(),
        ));
    }
    let mut stmts = vec![Stmt::new(
        format!("INSERT INTO queue_messages ({MESSAGE_COLUMNS}, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
        params![
        &m.id,
        &m.login,
        &m.mail_from,
        m.client_ip.clone(),
        now.0,
        m.body.len() as i64,
        m.ret.clone(),
        m.envid.clone(),
        m.smtputf8,
        m.body_type.clone(),
        m.spool_path.clone(),
        if postgres {
            crate::db::Value::Text(base64_encode(&m.body))
        } else {
            crate::db::Value::Bytes(m.body.clone()) // shared, not copied
        },
        ],
    )];
    if let Some(claim) = &m.claim {
        // One statement each: their new ids are the claim's recipient ids.
        stmts.extend(m.recipients.iter().map(|r| {
            Stmt::new(
                "INSERT INTO queue_recipients (message_id, rcpt, notify, orcpt, status, attempts, \
                 next_attempt, updated_at, lease_owner, lease_until) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $7, $8)",
                params![
                    &m.id,
                    &r.address,
                    r.notify.clone(),
                    r.orcpt.clone(),
                    RecipientStatus::Queued.as_str(),
                    now.0,
                    &claim.owner,
                    claim.until.0
                ],
            )
            .returning_id()
        }));
        return Ok(stmts);
    }
    let rows = m
        .recipients
        .iter()
        .map(|r| {
            params![
                &m.id,
                &r.address,
                r.notify.clone(),
                r.orcpt.clone(),
                RecipientStatus::Queued.as_str(),
                0i64,
                now.0,
                now.0
            ]
        })
        .collect();
    stmts.extend(bulk_insert(
        "INSERT INTO queue_recipients (message_id, rcpt, notify, orcpt, status, attempts, next_attempt, updated_at) VALUES",
        "",
        rows,
    ));
    Ok(stmts)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding; the store crate keeps its dependencies few.
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.as_bytes();
    if t.len() & 3 != 0 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(t.len() / 4 * 3);
    for (ci, chunk) in t.chunks(4).enumerate() {
        let last = ci == t.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for len in 0..50 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64_encode(&data);
            assert_eq!(base64_decode(&text).as_deref(), Some(&data[..]), "{len}");
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert!(base64_decode("TWE").is_none());
        assert!(base64_decode("T=Fu").is_none());
        assert!(base64_decode("TW=u").is_none());
    }

    #[test]
    fn queue_ids_are_distinct_and_well_formed() {
        let a = new_queue_id();
        let b = new_queue_id();
        assert_eq!(a.len(), 18);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }

    #[tokio::test]
    async fn enqueue_and_read_back_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("q.db").display()))
            .await
            .unwrap();
        enqueue_and_read_back(&store).await;
    }

    #[tokio::test]
    async fn enqueue_and_read_back_postgres() {
        let url = crate::testing::fresh_postgres_schema("queue")
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        enqueue_and_read_back(&Store::open(&url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn bodies_are_blobs_on_sqlite_and_base64_rows_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("q.db").display()))
            .await
            .unwrap();
        let m = NewQueuedMessage {
            id: "NEW".into(),
            recipients: vec![NewQueuedRecipient {
                address: "bob@example.org".into(),
                ..NewQueuedRecipient::default()
            }],
            body: Arc::new(b"\x00\xffbytes".to_vec()),
            ..NewQueuedMessage::default()
        };
        store.enqueue(&m).await.unwrap();
        let kind = store
            .db
            .query_one(
                "SELECT typeof(body) FROM queue_messages WHERE id = 'NEW'",
                vec![],
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kind.text(0).unwrap(), "blob", "stored once, not as base64");
        assert_eq!(store.queue_body("NEW").await.unwrap().unwrap(), *m.body);
        // A row written by an older version: base64 text.
        store
            .db
            .tx(
                vec![Stmt::new(
                    "INSERT INTO queue_messages (id, login, mail_from, received_at, size, body) VALUES ('OLD', 'ann', '', 0, 5, $1)",
                    params![base64_encode(b"hello")],
                )],
                false,
            )
            .await
            .unwrap();
        assert_eq!(store.queue_body("OLD").await.unwrap().unwrap(), b"hello");
    }

    async fn enqueue_and_read_back(store: &Store) {
        let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let m = NewQueuedMessage {
            id: new_queue_id(),
            login: "ann".into(),
            mail_from: "ann@example.net".into(),
            client_ip: Some("192.0.2.1".into()),
            ret: Some("HDRS".into()),
            envid: Some("e1".into()),
            smtputf8: false,
            body_type: Some("8BITMIME".into()),
            spool_path: None,
            recipients: vec![
                NewQueuedRecipient {
                    address: "bob@example.org".into(),
                    notify: Some("FAILURE".into()),
                    orcpt: Some("rfc822;bob@example.org".into()),
                },
                NewQueuedRecipient {
                    address: "carol@example.org".into(),
                    notify: None,
                    orcpt: None,
                },
            ],
            body: Arc::new(body.clone()),
            claim: None,
        };
        store.enqueue(&m).await.unwrap();
        assert!(store.enqueue(&m).await.is_err(), "ids are unique");
        let got = store.queue_message(&m.id).await.unwrap().unwrap();
        assert_eq!(got.size, 10_000);
        assert_eq!(got.ret.as_deref(), Some("HDRS"));
        assert_eq!(got.recipients.len(), 2);
        assert_eq!(got.recipients[0].status, RecipientStatus::Queued);
        assert_eq!(
            got.recipients[0].orcpt.as_deref(),
            Some("rfc822;bob@example.org")
        );
        assert_eq!(store.queue_body(&m.id).await.unwrap().unwrap(), body);
        let list = store.list_queue(10).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].recipients.len(), 2);
        assert_eq!(store.queue_len().await.unwrap(), 1);
        assert!(store.queue_message("nope").await.unwrap().is_none());
        let none = NewQueuedMessage {
            id: "X".into(),
            ..NewQueuedMessage::default()
        };
        assert!(store.enqueue(&none).await.is_err());
    }
}
