//! CoA and Disconnect (RFC 5176) for live sessions: when a subscriber's port-25
//! state or plan changes, every live RADIUS session of theirs gets a CoA-Request with
//! the new Filter-Id, sent to the NAS that reported the session's accounting on
//! `radius.coa_port`. On a NAK or no answer the session is disconnected instead (the
//! subscriber reconnects and the Access-Accept carries the new filter). Each outcome
//! is written to the audit log as actor `system:coa`.
//!
//! This module follows the event log; it does not decide states (the store and
//! policy do) and does not touch the nftables table (see [`crate::nftables`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use policy::{Actor, Port25State};
use radius::{Attribute, CoaOutcome, Code, Packet};
use store::{Event, LiveSession, Store};

use crate::radius_server::{client_secret, COUNTERS};

/// How long to wait for a NAS's answer, per attempt.
pub const COA_TIMEOUT: Duration = Duration::from_secs(1);
/// Retransmissions after the first attempt.
pub const COA_RETRIES: u32 = 1;

/// The port-25 change an event announces, if it is one CoA cares about.
fn change_of(event: &Event) -> Option<(String, Port25State, Port25State)> {
    if event.kind != "port25.changed" && event.kind != "subscriber.plan" {
        return None;
    }
    let login = event.login.clone()?;
    let state = |k: &str| serde_json::from_value::<Port25State>(event.payload.get(k)?.clone()).ok();
    Some((login, state("from")?, state("to")?))
}

fn counted(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The attributes that identify a session to its NAS (RFC 5176 section 3).
fn session_packet(code: Code, s: &LiveSession) -> Packet {
    let mut p = Packet::new(code, 0)
        .with(Attribute::UserName(s.login.clone()))
        .with(Attribute::AcctSessionId(s.session_id.clone()));
    match s.nas {
        IpAddr::V4(a) => p.attributes.push(Attribute::NasIpAddress(a)),
        IpAddr::V6(a) => p.attributes.push(Attribute::NasIpv6Address(a)),
    }
    p
}

/// Sends the CoA (and if needed the Disconnect) for one session and audits it.
async fn apply_to_session(
    config: &config::Config,
    store: &Store,
    s: &LiveSession,
    from: Port25State,
    to: Port25State,
) {
    let filter = if to.is_open() {
        &config.radius.filter_open
    } else {
        &config.radius.filter_blocked
    };
    let nas = SocketAddr::new(s.nas, config.radius.coa_port);
    let audit = |action: &'static str, reason: String| async move {
        tracing::info!(login = %s.login, %nas, session = %s.session_id, "{action}: {reason}");
        if let Err(e) = store
            .record_audit(
                &Actor::System("coa".into()),
                &s.login,
                action,
                Some(from.as_str()),
                Some(to.as_str()),
                &reason,
            )
            .await
        {
            tracing::error!(login = %s.login, "cannot record the CoA outcome in the audit log: {e}");
        }
    };
    let Some(secret) = client_secret(config, s.nas) else {
        audit(
            "coa-failed",
            format!(
                "NAS {} is not in radius.clients: no shared secret for CoA",
                s.nas
            ),
        )
        .await;
        return;
    };
    let coa = session_packet(Code::CoaRequest, s).with(Attribute::FilterId(filter.clone()));
    let why = match radius::change_of_authorization(
        nas,
        secret.as_bytes(),
        &coa,
        COA_TIMEOUT,
        COA_RETRIES,
    )
    .await
    {
        Ok(CoaOutcome::Ack) => {
            counted(&COUNTERS.coa_acks);
            audit(
                "coa",
                format!(
                    "CoA-ACK from {nas} for session {}: Filter-Id {filter}",
                    s.session_id
                ),
            )
            .await;
            return;
        }
        Ok(CoaOutcome::Nak { error_cause }) => {
            counted(&COUNTERS.coa_naks);
            format!(
                "CoA-NAK (Error-Cause {})",
                error_cause.map_or("none".into(), |c| c.to_string())
            )
        }
        Err(e) => {
            counted(&COUNTERS.coa_timeouts);
            format!("CoA failed ({e})")
        }
    };
    let disconnect = session_packet(Code::DisconnectRequest, s);
    match radius::change_of_authorization(
        nas,
        secret.as_bytes(),
        &disconnect,
        COA_TIMEOUT,
        COA_RETRIES,
    )
    .await
    {
        Ok(CoaOutcome::Ack) => {
            counted(&COUNTERS.disconnect_acks);
            audit(
                "disconnect",
                format!(
                    "{why}; Disconnect-ACK from {nas} for session {}",
                    s.session_id
                ),
            )
            .await;
        }
        Ok(CoaOutcome::Nak { error_cause }) => {
            counted(&COUNTERS.disconnect_failures);
            let cause = error_cause.map_or("none".into(), |c| c.to_string());
            audit(
                "disconnect-failed",
                format!(
                    "{why}; Disconnect-NAK (Error-Cause {cause}) from {nas} for session {}",
                    s.session_id
                ),
            )
            .await;
        }
        Err(e) => {
            counted(&COUNTERS.disconnect_failures);
            audit(
                "disconnect-failed",
                format!(
                    "{why}; Disconnect failed ({e}) for session {}",
                    s.session_id
                ),
            )
            .await;
        }
    }
}

/// One lock per login with a change in flight, so a login's CoAs go out one at a time.
type LoginLocks = Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// Applies one state change to every live session of `login`. Changes of one login
/// are serialized and each sends the filter of the state current when it runs, so
/// whichever runs last leaves the NAS with the latest state even if two changes in
/// quick succession were handled out of order.
async fn apply_change(
    config: Arc<config::Config>,
    store: Store,
    locks: LoginLocks,
    login: String,
    from: Port25State,
    to: Port25State,
) {
    let lock = match locks.lock() {
        Ok(mut map) => map.entry(login.clone()).or_default().clone(),
        Err(_) => Arc::default(),
    };
    let guard = lock.lock().await;
    let to = match store.find_subscriber(&login).await {
        Ok(Some(s)) => s.port25,
        Ok(None) => to,
        Err(e) => {
            tracing::error!(%login, "cannot read the port-25 state for CoA: {e}");
            to
        }
    };
    apply_to_sessions(&config, &store, &login, from, to).await;
    drop(guard);
    if let Ok(mut map) = locks.lock() {
        // Forget the lock when nobody else holds or waits for it.
        if map.get(&login).is_some_and(|l| Arc::strong_count(l) == 2) {
            map.remove(&login);
        }
    }
}

async fn apply_to_sessions(
    config: &config::Config,
    store: &Store,
    login: &str,
    from: Port25State,
    to: Port25State,
) {
    let sessions = match store.live_sessions(login).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%login, "cannot look up live sessions for CoA: {e}");
            return;
        }
    };
    for s in &sessions {
        apply_to_session(config, store, s, from, to).await;
    }
}

async fn follow(config: Arc<config::Config>, store: Store, cursor: i64) {
    let mut follower = store.follow(cursor);
    let locks: LoginLocks = Arc::default();
    loop {
        let batch = match follower.next_batch().await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("CoA cannot read the event log, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for event in &batch {
            let Some((login, from, to)) = change_of(event) else {
                continue;
            };
            if from.is_open() == to.is_open() {
                continue; // Same filter: nothing for the NAS to change.
            }
            // Each change on its own task: a silent NAS must not delay the others.
            tokio::spawn(apply_change(
                config.clone(),
                store.clone(),
                locks.clone(),
                login,
                from,
                to,
            ));
        }
    }
}

/// Follows the event log and sends CoA/Disconnect for state changes. Starts nothing
/// when the RADIUS server is off or has no clients (no NAS to tell).
pub async fn start(
    config: Arc<config::Config>,
    store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let radius = &config.radius;
    if radius.clients.is_empty() || (radius.listen_auth.is_empty() && radius.listen_acct.is_empty())
    {
        return Ok(vec![]);
    }
    let cursor = store
        .last_event_id()
        .await
        .map_err(|e| format!("CoA cannot read the event log: {e}"))?;
    Ok(vec![tokio::spawn(follow(config, store, cursor))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, payload: serde_json::Value) -> Event {
        Event {
            id: 1,
            at: policy::Timestamp(0),
            kind: kind.into(),
            login: Some("ann".into()),
            payload,
        }
    }

    #[test]
    fn reads_changes_from_both_event_kinds() {
        let e = event(
            "port25.changed",
            json!({ "from": "optout-pending", "to": "opted-out" }),
        );
        assert_eq!(
            change_of(&e),
            Some((
                "ann".into(),
                Port25State::OptoutPending,
                Port25State::OptedOut
            ))
        );
        let e = event(
            "subscriber.plan",
            json!({ "plan": "static", "from": "blocked", "to": "exempt" }),
        );
        assert_eq!(
            change_of(&e),
            Some(("ann".into(), Port25State::Blocked, Port25State::Exempt))
        );
        assert_eq!(change_of(&event("lease.opened", json!({}))), None);
        assert_eq!(
            change_of(&event(
                "port25.changed",
                json!({ "from": "nonsense", "to": "blocked" })
            )),
            None
        );
    }
}
