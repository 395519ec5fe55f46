//! The nftables table on the router. Not yet built.

use std::sync::Arc;

/// Loads the table and keeps it in step with the event log (when `enforce.nftables`).
pub async fn start(
    _config: Arc<config::Config>,
    _store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    Ok(vec![])
}
