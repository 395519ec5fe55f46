//! Outbound delivery: the durable queue's workers, MX routing, the SMTP client with
//! opportunistic STARTTLS, MTA-STS (RFC 8461) and DANE (RFC 7672) where recipient
//! domains publish them, smart-host AUTH over TLS, retries, DSN bounces (RFC 3464)
//! and DKIM signing.

pub mod admin;
pub mod client;
pub mod dane;
pub mod dkim;
pub mod dns;
pub mod dsn;
pub mod error;
pub mod mta_sts;
pub mod protocol;
pub mod routing;
pub mod schedule;
pub mod tls_policy;
pub mod worker;

use std::sync::Arc;

pub use admin::{queue_delete, queue_flush, queue_list, queue_retry, queue_show, QueueEntry};
pub use dkim::dkim_keygen;
pub use error::DeliveryError;
pub use worker::{
    start_with, BounceFn, BounceHook, DeliveryNode, DeliveryTunables, Intake, Reservation,
};

/// Starts the delivery workers. Returns at once; the workers run until shutdown.
pub async fn start(
    config: Arc<config::Config>,
    store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    start_with(config, store, DeliveryTunables::default())
        .await
        .map(DeliveryNode::into_handles)
        .map_err(|e| e.to_string())
}
