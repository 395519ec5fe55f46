//! The router (every route in one place) and the accept loop that serves it over
//! plain TCP or TLS, recording each connection's peer address for login throttling.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::{api, console, customer, mailconfig, metrics, security, Shared};

/// The peer of the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientAddr(pub SocketAddr);

const CSS: &str = include_str!("../static/portal.css");
const ICON: &str = include_str!("../static/favicon.svg");

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        // Customer portal.
        .route("/", get(customer::home))
        .route("/login", get(customer::login_form).post(customer::login))
        .route("/logout", post(customer::logout))
        .route("/sending", get(customer::sending))
        .route(
            "/sending/portcullis.mobileconfig",
            get(mailconfig::mobileconfig),
        )
        .route(
            "/optout",
            get(customer::optout_form).post(customer::optout_request),
        )
        .route(
            "/static-address",
            get(customer::static_form).post(customer::static_request),
        )
        .route("/notices", get(customer::notices))
        .route(
            "/support",
            get(customer::support_form).post(customer::support_request),
        )
        .route("/support/{id}", get(customer::support_show))
        .route(
            "/password",
            get(customer::password_form).post(customer::password_change),
        )
        // Mail-client set-up.
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(mailconfig::autoconfig),
        )
        .route("/mail/config-v1.1.xml", get(mailconfig::autoconfig))
        .route(
            "/autodiscover/autodiscover.xml",
            post(mailconfig::autodiscover),
        )
        .route(
            "/Autodiscover/Autodiscover.xml",
            post(mailconfig::autodiscover),
        )
        // Operator console.
        .route(
            "/console",
            get(|| async { axum::response::Redirect::to("/console/") }),
        )
        .route("/console/", get(console::dashboard))
        .route(
            "/console/login",
            get(console::login_form).post(console::login),
        )
        .route("/console/logout", post(console::logout))
        .route("/console/subscribers", get(console::subscribers))
        .route("/console/subscribers/{login}", get(console::subscriber))
        .route("/console/subscribers/{login}/port25", post(console::port25))
        .route("/console/whois", get(console::whois))
        .route("/console/optouts", get(console::optouts))
        .route("/console/optouts/{login}", post(console::optout_decide))
        .route("/console/static-requests", get(console::static_requests))
        .route(
            "/console/static-requests/{id}",
            post(console::static_decide),
        )
        .route("/console/support", get(console::support))
        .route("/console/support/{id}/close", post(console::support_close))
        .route("/console/abuse", get(console::abuse))
        .route("/console/abuse/{id}", get(console::abuse_case))
        .route("/console/abuse/{id}/close", post(console::abuse_case_close))
        .route("/console/queue", get(console::queue))
        .route("/console/queue/{id}/{action}", post(console::queue_action))
        .route("/console/audit", get(console::audit))
        .route("/console/operators", get(console::operators))
        // Operations.
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/assets/portal.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    CSS,
                )
            }),
        )
        .route(
            "/assets/favicon.svg",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "image/svg+xml"),
                        (header::CACHE_CONTROL, "public, max-age=86400"),
                    ],
                    ICON,
                )
            }),
        )
        .route(
            "/favicon.ico",
            get(|| async { axum::response::Redirect::permanent("/assets/favicon.svg") }),
        )
        .merge(api::router())
        .fallback(|| async { crate::error::PortalError::NotFound("page".into()).into_response() })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::headers,
        ))
        .with_state(state)
}

/// Accepts connections until the task is aborted.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("portal accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer));
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let mut http = hyper::server::conn::http1::Builder::new();
            // A client that never finishes its headers is dropped (30 s).
            http.timer(hyper_util::rt::TokioTimer::new());
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(s)) => http.serve_connection(TokioIo::new(s), service).await,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "portal connection ended: {e}");
            }
        });
    }
}
