//! The operator's queue commands, for `portcullis queue list | show ID | retry ID |
//! delete ID [--bounce] | flush` (the CLI formats; these read and change the store).

use std::sync::Arc;

use serde::Serialize;
use store::{ClaimedMessage, DeliveryAttempt, QueuedMessage, RecipientStatus, Store};

use crate::dsn::{DsnKind, DsnRecipient};
use crate::error::DeliveryError;
use crate::protocol::EnhancedCode;
use crate::worker::{enqueue_report, ReportContext};

/// `queue show ID`: the message, each recipient's state and next attempt, and every
/// attempt with its time, host and reply.
#[derive(Clone, Debug, Serialize)]
pub struct QueueEntry {
    pub message: QueuedMessage,
    pub attempts: Vec<DeliveryAttempt>,
}

impl std::fmt::Display for QueueEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.message;
        let from = if m.mail_from.is_empty() {
            "<>"
        } else {
            &m.mail_from
        };
        writeln!(
            f,
            "{}  from {}  login {}  {} bytes  received {}",
            m.id, from, m.login, m.size, m.received_at
        )?;
        for r in &m.recipients {
            let next = match r.status {
                RecipientStatus::Queued | RecipientStatus::Deferred => {
                    format!("next attempt {}", r.next_attempt)
                }
                _ => "final".to_string(),
            };
            writeln!(
                f,
                "  {}  {}  attempts {}  {}",
                r.address,
                r.status.as_str(),
                r.attempts,
                next
            )?;
            if let Some(e) = &r.last_error {
                writeln!(f, "    last error: {e}")?;
            }
        }
        if !self.attempts.is_empty() {
            writeln!(f, "  attempts:")?;
        }
        for a in &self.attempts {
            writeln!(
                f,
                "    {}  {}  {}  via {}{}  {}",
                a.at,
                a.recipient,
                a.outcome,
                a.host.as_deref().unwrap_or("-"),
                a.tls
                    .as_deref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default(),
                a.reply
            )?;
        }
        Ok(())
    }
}

/// `queue list`: queued messages, oldest first, with recipient states.
pub async fn queue_list(store: &Store, limit: i64) -> Result<Vec<QueuedMessage>, DeliveryError> {
    Ok(store.list_queue(limit).await?)
}

/// `queue show ID`.
pub async fn queue_show(store: &Store, id: &str) -> Result<QueueEntry, DeliveryError> {
    let message = store
        .queue_message(id)
        .await?
        .ok_or_else(|| DeliveryError::UnknownMessage(id.to_string()))?;
    let attempts = store.delivery_attempts(id).await?;
    Ok(QueueEntry { message, attempts })
}

/// `queue retry ID`: every pending recipient due now; returns how many.
pub async fn queue_retry(store: &Store, id: &str) -> Result<u64, DeliveryError> {
    if store.queue_message(id).await?.is_none() {
        return Err(DeliveryError::UnknownMessage(id.to_string()));
    }
    Ok(store.retry_message_now(id).await?)
}

/// `queue flush`: every pending recipient due now; returns how many.
pub async fn queue_flush(store: &Store) -> Result<u64, DeliveryError> {
    Ok(store.flush_queue().await?)
}

struct CliReports<'a> {
    hostname: &'a str,
    store: &'a Store,
}

impl ReportContext for CliReports<'_> {
    fn reporting_mta(&self) -> &str {
        self.hostname
    }
    fn store(&self) -> &Store {
        self.store
    }
}

/// `queue delete ID [--bounce]`: removes the message; with `bounce`, first sends
/// the sender a failure report for the recipients still pending (status 5.0.0,
/// "deleted by the operator"), honouring NOTIFY and the null sender. Returns the
/// report's queue id when one was enqueued.
pub async fn queue_delete(
    config: &Arc<config::Config>,
    store: &Store,
    id: &str,
    bounce: bool,
) -> Result<Option<String>, DeliveryError> {
    let m = store
        .queue_message(id)
        .await?
        .ok_or_else(|| DeliveryError::UnknownMessage(id.to_string()))?;
    let mut report_id = None;
    if bounce {
        let now = store.now();
        let recipients: Vec<DsnRecipient> = m
            .recipients
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    RecipientStatus::Queued | RecipientStatus::Deferred
                )
            })
            .filter(|r| {
                crate::dsn::wants_report(&m.mail_from, r.notify.as_deref(), DsnKind::Failure)
            })
            .map(|r| DsnRecipient {
                address: r.address.clone(),
                orcpt: r.orcpt.clone(),
                status: EnhancedCode(5, 0, 0),
                smtp_reply: None,
                remote_mta: None,
                reason: match &r.last_error {
                    Some(e) => format!("deleted from the queue by the operator; last error: {e}"),
                    None => "deleted from the queue by the operator".to_string(),
                },
                last_attempt: None,
            })
            .collect();
        if !recipients.is_empty() {
            let body = store.queue_body(id).await?.unwrap_or_default();
            let meta = ClaimedMessage {
                id: m.id.clone(),
                login: m.login.clone(),
                mail_from: m.mail_from.clone(),
                received_at: m.received_at,
                size: m.size,
                ret: m.ret.clone(),
                envid: m.envid.clone(),
                smtputf8: m.smtputf8,
                body_type: m.body_type.clone(),
                recipients: vec![],
            };
            let ctx = CliReports {
                hostname: &config.submission.hostname,
                store,
            };
            report_id =
                Some(enqueue_report(&ctx, &meta, DsnKind::Failure, &recipients, &body, now).await?);
        }
    }
    store.delete_queued_message(id).await?;
    Ok(report_id)
}
