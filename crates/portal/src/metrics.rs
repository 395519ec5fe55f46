//! `/metrics` in the Prometheus text format: subscribers by port-25 state, pending
//! requests, the mail queue, and the lines of every registered [`crate::MetricsSource`].

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::PortalError;
use crate::Shared;

pub(crate) async fn metrics(State(state): State<Shared>) -> Result<impl IntoResponse, PortalError> {
    let store = &state.store;
    let mut out = String::new();
    out.push_str("# HELP portcullis_subscribers Subscribers by port-25 state.\n# TYPE portcullis_subscribers gauge\n");
    for (s, n) in store.state_counts().await? {
        let _ = writeln!(
            out,
            "portcullis_subscribers{{state=\"{}\"}} {n}",
            s.as_str()
        );
    }
    let gauges = [
        (
            "portcullis_optout_requests_pending",
            "Opt-out requests waiting for a decision.",
            store.optout_requests(None).await?.len() as i64,
        ),
        (
            "portcullis_static_requests_pending",
            "Static-address requests waiting for a decision.",
            store.static_requests(None).await?.len() as i64,
        ),
        (
            "portcullis_support_requests_open",
            "Support requests not yet closed.",
            store.support_requests(None).await?.len() as i64,
        ),
        (
            "portcullis_queue_messages",
            "Messages in the mail queue.",
            store.queue_len().await?,
        ),
        (
            "portcullis_events_last_id",
            "Id of the newest event in the event log.",
            store.last_event_id().await?,
        ),
    ];
    for (name, help, v) in gauges {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        );
    }
    for source in &state.metrics {
        let text = source();
        out.push_str(&text);
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}
