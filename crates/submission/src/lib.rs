//! The submission server (RFC 6409): SMTP on 587 with STARTTLS and 465 with implicit
//! TLS (RFC 8314), AUTH PLAIN/LOGIN after TLS only, limits, throttling and durable
//! accept into the delivery queue.

pub mod data;
pub mod request;
pub mod response;
pub mod session;
pub mod throttle;

use std::sync::Arc;

/// Binds `submission.listen_starttls` and `submission.listen_tls` and serves them.
/// Returns once every listener is bound.
pub async fn start(
    _config: Arc<config::Config>,
    _store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    Ok(vec![])
}
