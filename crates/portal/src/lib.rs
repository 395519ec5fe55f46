//! The web side of portcullis: the customer portal at `/`, the operator console at
//! `/console/`, the JSON API under `/api/v1` (documented at `/api/v1/openapi.json`),
//! Prometheus `/metrics` and `/healthz`.
//!
//! Everything is rendered on the server: plain HTML forms, one CSS file of our own,
//! charts as inline SVG, no JavaScript and nothing loaded from elsewhere, so a strict
//! Content-Security-Policy (`default-src 'self'`) holds. Customers and operators are
//! separate worlds: separate logins, separate cookies, and each session records whose
//! it is, so a customer session never opens the console and an operator session is
//! not a customer. State changes go through the store (`transition`, `set_plan`),
//! which writes the audit entry and the event the other components follow.
//!
//! This crate does not decide policy (that is `policy`) and does not parse abuse
//! reports (that is `abuse`); it presents and forwards.

mod api;
mod auth;
mod charts;
mod console;
mod customer;
mod desk;
mod error;
mod html;
mod mailconfig;
mod metrics;
pub mod operators;
mod security;
mod server;
mod tls;

use std::sync::Arc;

pub use error::PortalError;
pub use security::{create_api_token, hash_token};

/// Extra Prometheus text from other components (submission, RADIUS counters).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// What every request handler shares.
pub(crate) struct AppState {
    pub config: Arc<config::Config>,
    pub store: store::Store,
    pub metrics: Vec<MetricsSource>,
    pub throttle: auth::Throttle,
    /// Served over TLS: cookies get the `Secure` flag.
    pub secure: bool,
}

pub(crate) type Shared = Arc<AppState>;

/// Binds `portal.listen` and serves it. Returns once every listener is bound.
///
/// With `submission.tls_cert` and `submission.tls_key` set, every listener speaks
/// HTTPS with that certificate (rustls, ring provider); without, plain HTTP (put a
/// TLS-terminating proxy in front, or listen on loopback only).
pub async fn start(
    config: Arc<config::Config>,
    store: store::Store,
    metrics: Vec<MetricsSource>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let tls = tls::acceptor(&config).map_err(|e| e.to_string())?;
    let state = Arc::new(AppState {
        throttle: auth::Throttle::new(config.auth.max_failures, config.auth.lockout.get()),
        config: config.clone(),
        store,
        metrics,
        secure: tls.is_some(),
    });
    let app = server::router(state);
    let mut handles = Vec::new();
    for addr in &config.portal.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| PortalError::Bind(*addr, e.to_string()).to_string())?;
        tracing::info!(%addr, tls = tls.is_some(), "portal listening");
        handles.push(tokio::spawn(server::serve(
            listener,
            app.clone(),
            tls.clone(),
        )));
    }
    Ok(handles)
}
