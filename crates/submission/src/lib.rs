//! The submission server (RFC 6409): SMTP on 587 with STARTTLS and 465 with implicit
//! TLS (RFC 8314), AUTH PLAIN/LOGIN after TLS only, limits, throttling and durable
//! accept into the delivery queue.
//!
//! Layout, from the wire inwards:
//! - [`request`] parses command lines, [`response`] is the catalogue of replies with
//!   their RFC 3463 codes, [`data`] reads DATA bodies (dot-unstuffing, bare CR/LF,
//!   size), [`session`] is the protocol state machine. None of them does I/O.
//! - [`throttle`] decides failed-login locks and sending quotas; [`message`] adds the
//!   Received, Date and Message-ID headers.
//! - [`server`] is the tokio layer (listeners, TLS via [`tls`], timeouts, limits);
//!   [`auth`] checks credentials (store or RADIUS); `store::queue` (through
//!   [`committer`], which groups commits) makes a message durable before `250`.
//! - [`metrics`] counts what happens, for `/metrics`.
//!
//! Not here: delivery, bounces and DKIM (the `delivery` crate).

pub mod auth;
pub mod committer;
pub mod data;
pub mod error;
pub mod message;
pub mod metrics;
pub mod request;
pub mod response;
pub mod server;
pub mod session;
pub mod throttle;
pub mod tls;

use std::sync::Arc;

pub use error::SubmissionError;
pub use metrics::{metrics, SubmissionMetrics};
pub use server::{start_with, AcceptHook, Handoff, Reservation, Server, Tunables};

/// Binds `submission.listen_starttls` and `submission.listen_tls` and serves them.
/// Returns once every listener is bound.
pub async fn start(
    config: Arc<config::Config>,
    store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let server = start_with(config, store, Tunables::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(server.tasks)
}
