//! CoA and Disconnect (RFC 5176) for live sessions. Not yet built.

use std::sync::Arc;

/// Follows the event log and sends CoA/Disconnect for state changes.
pub async fn start(
    _config: Arc<config::Config>,
    _store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    Ok(vec![])
}
