//! The RADIUS server for the BRAS. Not yet built.

use std::sync::Arc;

/// Binds `radius.listen_auth` and `radius.listen_acct` and serves them.
pub async fn start(
    _config: Arc<config::Config>,
    _store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    Ok(vec![])
}
