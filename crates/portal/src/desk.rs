//! What the desks do, shared by the console (HTML forms) and the API (JSON): decide
//! opt-outs, block and unblock, grant static addresses, look things up. Each action
//! goes through the store, which records the audit entry and the event.

use std::collections::HashSet;

use policy::{Actor, IpNet, Plan, Port25Action, Port25State, Timestamp};
use serde::Serialize;
use store::{LeaseRecord, OptoutRequest, StaticRequest, SupportRequest};

use crate::error::PortalError;
use crate::Shared;

/// How many addresses of the static pools are scanned for a free one.
const MAX_SCAN: u128 = 1 << 20;

/// Checks an operator-supplied reason.
pub(crate) fn reason(text: &str, required: bool) -> Result<String, PortalError> {
    let t = text.trim();
    if t.len() > 2000 {
        return Err(PortalError::BadRequest(
            "the reason is limited to 2000 characters".into(),
        ));
    }
    if required && t.is_empty() {
        return Err(PortalError::BadRequest(
            "give a reason; it is recorded in the audit log".into(),
        ));
    }
    Ok(t.to_string())
}

pub(crate) async fn decide_optout(
    state: &Shared,
    actor: &Actor,
    login: &str,
    approve: bool,
    why: &str,
) -> Result<(Port25State, Port25State), PortalError> {
    let why = reason(why, !approve)?;
    let action = if approve {
        Port25Action::ApproveOptOut
    } else {
        Port25Action::DenyOptOut
    };
    let r = state.store.transition(login, action, actor, &why).await?;
    tracing::info!(%actor, login, approve, "opt-out decided");
    Ok(r)
}

pub(crate) async fn port25(
    state: &Shared,
    actor: &Actor,
    login: &str,
    block: bool,
    why: &str,
) -> Result<(Port25State, Port25State), PortalError> {
    let why = reason(why, true)?;
    let action = if block {
        Port25Action::Block
    } else {
        Port25Action::Unblock
    };
    let r = state.store.transition(login, action, actor, &why).await?;
    tracing::info!(%actor, login, block, "port 25 changed by operator");
    Ok(r)
}

/// The first address of the static pools that nobody holds (network and broadcast
/// addresses of IPv4 pools larger than /31 are skipped).
pub(crate) async fn free_static_address(state: &Shared) -> Result<Option<IpNet>, PortalError> {
    let used: Vec<IpNet> = state.store.static_addresses_in_use().await?;
    let used_keys: HashSet<u128> = used
        .iter()
        .filter(|n| n.is_host())
        .map(|n| n.key_range().0)
        .collect();
    for pool in &state.config.network.static_pools {
        let (lo, hi) = pool.key_range();
        let v4 = pool.is_ipv4();
        let (first, last) = if v4 && pool.prefix_len() < 31 {
            (lo + 1, hi - 1)
        } else {
            (lo, hi)
        };
        let mut k = first;
        while k <= last && k - first < MAX_SCAN {
            if !used_keys.contains(&k) {
                let net = IpNet::host(policy::net::key_to_addr(k, v4));
                if !used.iter().any(|u| u.overlaps(&net)) {
                    return Ok(Some(net));
                }
            }
            k += 1;
        }
    }
    Ok(None)
}

pub(crate) async fn decide_static(
    state: &Shared,
    actor: &Actor,
    id: i64,
    approve: bool,
    why: &str,
) -> Result<StaticRequest, PortalError> {
    let why = reason(why, !approve)?;
    let req = state
        .store
        .static_request(id)
        .await?
        .ok_or_else(|| PortalError::NotFound(format!("static-address request #{id}")))?;
    if req.status != "pending" {
        return Err(PortalError::BadRequest(format!(
            "static-address request #{id} is already {}",
            req.status
        )));
    }
    let assigned = if approve {
        let addr = free_static_address(state).await?.ok_or_else(|| {
            PortalError::BadRequest(
                "no free address left in network.static_pools; widen the pool first".into(),
            )
        })?;
        state
            .store
            .set_plan(&req.login, Plan::Static, &[addr], actor)
            .await?;
        Some(addr)
    } else {
        None
    };
    let r = state
        .store
        .decide_static_request(id, approve, assigned.as_ref(), actor, &why)
        .await?;
    tracing::info!(%actor, login = %r.login, approve, assigned = ?assigned, "static request decided");
    Ok(r)
}

/// A notice to a customer about their connection.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Notice {
    pub at: Timestamp,
    pub subject: String,
    pub body: String,
}

/// The customer's notices, newest first: those the abuse component wrote (with
/// what it saw and what to do), and every operator block of port 25 with its reason.
pub(crate) async fn customer_notices(
    state: &Shared,
    login: &str,
) -> Result<Vec<Notice>, PortalError> {
    let mut out: Vec<Notice> = state
        .store
        .notices(Some(login), 50)
        .await?
        .into_iter()
        .map(|n| Notice {
            at: n.created_at,
            subject: n.subject,
            body: n.body,
        })
        .collect();
    let audit = state.store.audit(Some(login), 200).await?;
    out.extend(
        audit
            .into_iter()
            .filter(|e| e.action == "port25-block")
            .map(|e| Notice {
                at: e.at,
                subject: "Port 25 blocked by our abuse desk".into(),
                body: e.reason,
            }),
    );
    out.sort_by_key(|n| std::cmp::Reverse(n.at));
    Ok(out)
}

/// Number of notices of the last 30 days (for the home page).
pub(crate) async fn customer_notice_count(state: &Shared, login: &str) -> usize {
    let since = state
        .store
        .now()
        .minus(std::time::Duration::from_secs(30 * 86_400));
    customer_notices(state, login)
        .await
        .map(|n| n.iter().filter(|n| n.at >= since).count())
        .unwrap_or(0)
}

/// Everything the desk sees about one subscriber.
#[derive(Serialize)]
pub(crate) struct SubscriberDetail {
    pub subscriber: policy::Subscriber,
    pub port25_open: bool,
    pub leases: Vec<LeaseRecord>,
    pub audit: Vec<policy::AuditEntry>,
    pub optout_requests: Vec<OptoutRequest>,
    pub static_requests: Vec<StaticRequest>,
    pub support_requests: Vec<SupportRequest>,
    pub abuse_cases: Vec<store::AbuseCase>,
}

pub(crate) async fn subscriber_detail(
    state: &Shared,
    login: &str,
) -> Result<SubscriberDetail, PortalError> {
    let subscriber = state.store.subscriber(login).await?;
    Ok(SubscriberDetail {
        port25_open: subscriber.port25.is_open(),
        subscriber,
        leases: state.store.leases_of(login, 50).await?,
        audit: state.store.audit(Some(login), 100).await?,
        optout_requests: state.store.optout_requests(Some(login)).await?,
        static_requests: state.store.static_requests(Some(login)).await?,
        support_requests: state.store.support_requests(Some(login)).await?,
        abuse_cases: state.store.abuse_cases(Some(login)).await?,
    })
}

/// Parses an IP and an optional RFC 3339 time for an IP-at-time lookup.
pub(crate) fn whois_query(
    ip: &str,
    at: Option<&str>,
    now: Timestamp,
) -> Result<(std::net::IpAddr, Timestamp), PortalError> {
    let addr = ip
        .trim()
        .parse()
        .map_err(|_| PortalError::BadRequest(format!("'{ip}' is not an IP address")))?;
    let at = match at.map(str::trim).filter(|s| !s.is_empty()) {
        Some(t) => Timestamp::parse_rfc3339(t).map_err(PortalError::BadRequest)?,
        None => now,
    };
    Ok((addr, at))
}

/// One abuse case with its evidence; `id` as it came in the URL.
pub(crate) async fn abuse_case(
    state: &Shared,
    id: &str,
) -> Result<(store::AbuseCase, Vec<store::EvidenceRecord>), PortalError> {
    let not_found = || PortalError::NotFound(format!("abuse case #{id}"));
    let n: i64 = id.parse().map_err(|_| not_found())?;
    // Every case has evidence, and the evidence names the subscriber, whose few
    // cases the store lists with their counts.
    let evidence = state.store.case_evidence(n).await?;
    let login = evidence
        .iter()
        .find_map(|e| e.login.clone())
        .ok_or_else(not_found)?;
    let case = state
        .store
        .abuse_cases(Some(&login))
        .await?
        .into_iter()
        .find(|c| c.id == n)
        .ok_or_else(not_found)?;
    Ok((case, evidence))
}

/// Closes an open abuse case; returns its number.
pub(crate) async fn close_case(
    state: &Shared,
    actor: &Actor,
    id: &str,
    why: &str,
) -> Result<i64, PortalError> {
    let why = reason(why, true)?;
    let n: i64 = id
        .parse()
        .map_err(|_| PortalError::NotFound(format!("abuse case #{id}")))?;
    if state.store.close_case(n, actor, &why).await? {
        tracing::info!(%actor, case = n, "abuse case closed");
        Ok(n)
    } else {
        Err(PortalError::BadRequest(format!(
            "abuse case #{n} is not open"
        )))
    }
}

/// Makes a queued message's pending recipients due now; returns how many.
pub(crate) async fn queue_retry(
    state: &Shared,
    actor: &Actor,
    id: &str,
) -> Result<u64, PortalError> {
    if state.store.queue_message(id).await?.is_none() {
        return Err(PortalError::NotFound(format!("queued message {id}")));
    }
    let n = state.store.retry_message_now(id).await?;
    tracing::info!(%actor, queue_id = id, recipients = n, "queue retry");
    Ok(n)
}

/// Removes a queued message without delivering it.
pub(crate) async fn queue_delete(
    state: &Shared,
    actor: &Actor,
    id: &str,
) -> Result<(), PortalError> {
    if !state.store.delete_queued_message(id).await? {
        return Err(PortalError::NotFound(format!("queued message {id}")));
    }
    tracing::warn!(%actor, queue_id = id, "queued message deleted by an operator");
    Ok(())
}
