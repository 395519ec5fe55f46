//! The web side: customer portal at `/`, operator console at `/console/`, JSON API
//! under `/api/v1`, `/metrics` and `/healthz`.

use std::sync::Arc;

/// Extra Prometheus text from other components (submission, RADIUS counters).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds `portal.listen` and serves it. Returns once every listener is bound.
pub async fn start(
    _config: Arc<config::Config>,
    _store: store::Store,
    _metrics: Vec<MetricsSource>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    Ok(vec![])
}
