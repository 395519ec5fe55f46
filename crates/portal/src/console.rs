//! The operator console under `/console/`: dashboard, subscribers, IP lookup, the
//! opt-out and static-address queues, support requests, abuse, the mail queue, the
//! audit log and operators. Every handler takes an [`OperatorSession`] (no session:
//! redirect to the console login) and checks the role its action needs; every form
//! carries the session's CSRF token.
//!
//! Roles: `support` reads everything and handles static-address and support
//! requests; `abuse` also decides opt-outs and blocks or unblocks port 25; `admin`
//! also sees the operator accounts.

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;
use store::{OperatorRole, SessionKind};

use crate::auth;
use crate::charts;
use crate::desk;
use crate::error::PortalError;
use crate::html::{csrf_field, esc, notice, page, state_badge, table, time, url, Viewer};
use crate::security::{self, OperatorSession};
use crate::server::ClientAddr;
use crate::Shared;

fn viewer(s: &OperatorSession) -> Viewer<'_> {
    Viewer::Operator {
        name: &s.operator.name,
        role: s.operator.role.as_str(),
        csrf: &s.csrf,
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct Msg {
    msg: Option<String>,
}

fn back(to: &str, msg: &str) -> Redirect {
    Redirect::to(&format!("{to}?msg={}", url(msg)))
}

// ----- login -----------------------------------------------------------------------

fn login_page(csrf: &str, error: Option<&str>) -> Html<String> {
    let err = error
        .map(|e| format!(r#"<p class="error" id="error">{}</p>"#, esc(e)))
        .unwrap_or_default();
    page(
        "Operator login",
        &Viewer::Anonymous,
        &format!(
            r#"{err}<form method="post" action="/console/login" class="card">{}
<label>Operator name<input name="name" autocomplete="username" required></label>
<label>Password<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form>"#,
            csrf_field(csrf)
        ),
    )
}

pub(crate) async fn login_form(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let (token, cookie) = security::login_csrf(&state, &headers, "/console");
    let mut res = login_page(&token, None).into_response();
    if let Some(c) = cookie.and_then(|c| c.parse().ok()) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn login(
    State(state): State<Shared>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, PortalError> {
    security::check_login_csrf(&headers, &f.csrf)?;
    match auth::operator_login(&state, &f.name, &f.password, client.map(|c| c.0 .0.ip())).await {
        Ok(op) => {
            let cookie = security::open_session(&state, SessionKind::Operator, &op.name).await?;
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/console/")).into_response())
        }
        Err(e @ (PortalError::BadCredentials | PortalError::Throttled(_))) => {
            Ok((e.status(), login_page(&f.csrf, Some(&e.to_string()))).into_response())
        }
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout(
    State(state): State<Shared>,
    s: OperatorSession,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PortalError> {
    s.check_csrf(&f.csrf)?;
    let cookie = security::close_session(&state, &headers, SessionKind::Operator).await?;
    Ok((
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/login"),
    )
        .into_response())
}

// ----- dashboard -------------------------------------------------------------------

pub(crate) async fn dashboard(
    State(state): State<Shared>,
    s: OperatorSession,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Support)?;
    let d = charts::dashboard(&state).await?;
    let body = format!(
        r#"<section class="stats">
<a class="stat" href="/console/optouts"><span class="n" id="optouts-pending">{op}</span> opt-outs pending</a>
<a class="stat" href="/console/static-requests"><span class="n">{sr}</span> static requests</a>
<a class="stat" href="/console/support"><span class="n">{su}</span> support requests open</a>
<a class="stat" href="/console/queue"><span class="n" id="queue-size">{q}</span> messages queued</a></section>
<section class="card"><h2>Subscribers by port-25 state</h2>{bars}</section>
<section class="card"><h2>Port-25 states, last {days} days</h2>{lines}</section>
<section class="card"><h2>Opt-outs and re-instatements per day</h2>{p25}</section>
<section class="card"><h2>Complaints, listings and blocked port-25 flows per day</h2>{abuse}</section>"#,
        op = d.optouts_pending,
        sr = d.static_requests_pending,
        su = d.support_open,
        q = d.queue_messages,
        bars = charts::state_bars(&d.states_now),
        days = charts::DAYS,
        lines = charts::state_lines(&d.days, &d.states_daily),
        p25 = charts::daily_bars(
            "Opt-outs and re-instatements per day",
            &d.days,
            &d.port25_daily
        ),
        abuse = charts::daily_bars("Abuse per day", &d.days, &d.abuse_daily),
    );
    Ok(page("Dashboard", &viewer(&s), &body))
}

// ----- subscribers -----------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct Search {
    q: Option<String>,
}

pub(crate) async fn subscribers(
    State(state): State<Shared>,
    s: OperatorSession,
    Query(q): Query<Search>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Support)?;
    let query = q.q.unwrap_or_default();
    let found = state.store.search_subscribers(&query, 200).await?;
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|sub| {
            vec![
                format!(
                    r#"<a href="/console/subscribers/{}">{}</a>"#,
                    url(&sub.login),
                    esc(&sub.login)
                ),
                esc(sub.display_name.as_deref().unwrap_or("")),
                esc(sub.email.as_deref().unwrap_or("")),
                esc(sub.plan.as_str()),
                state_badge(sub.port25),
            ]
        })
        .collect();
    let body = format!(
        r#"<form method="get" action="/console/subscribers" class="search"><input name="q" value="{}" placeholder="login, name or email"><button type="submit">Search</button></form>{}"#,
        esc(&query),
        table(&["login", "name", "email", "plan", "port 25"], &rows)
    );
    Ok(page("Subscribers", &viewer(&s), &body))
}

pub(crate) async fn subscriber(
    State(state): State<Shared>,
    s: OperatorSession,
    Path(login): Path<String>,
    Query(m): Query<Msg>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Support)?;
    let d = desk::subscriber_detail(&state, &login).await?;
    let sub = &d.subscriber;
    let target = format!("/console/subscribers/{}/port25", url(&sub.login));
    let actions = if s.operator.role.allows(OperatorRole::Abuse) {
        let (action, label) =
            if sub.port25 == policy::Port25State::Reinstated || !sub.port25.is_open() {
                ("unblock", "Open port 25")
            } else {
                ("block", "Block port 25")
            };
        let mut forms = format!(
            r#"<form method="post" action="{target}" class="card">{csrf}<input type="hidden" name="action" value="{action}">
<label>Reason (recorded in the audit log)<input name="reason" required maxlength="2000"></label><button type="submit" id="port25-{action}">{label}</button></form>"#,
            csrf = csrf_field(&s.csrf)
        );
        if sub.port25 != policy::Port25State::Reinstated && !sub.port25.is_open() {
            forms.push_str(&format!(
                r#"<form method="post" action="{target}" class="card">{csrf}<input type="hidden" name="action" value="block">
<label>Reason<input name="reason" required maxlength="2000"></label><button type="submit" id="port25-block">Block until an operator re-opens (re-instate)</button></form>"#,
                csrf = csrf_field(&s.csrf)
            ));
        }
        forms
    } else {
        r#"<p class="muted">Blocking and unblocking needs the abuse role.</p>"#.into()
    };
    let leases: Vec<Vec<String>> = d
        .leases
        .iter()
        .map(|l| {
            vec![
                format!("<code>{}</code>", esc(&l.lease.net.to_string())),
                time(l.lease.start),
                l.lease.end.map(time).unwrap_or_else(|| "open".into()),
                esc(l.lease.source.as_str()),
                esc(l.nas.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let audit: Vec<Vec<String>> = d
        .audit
        .iter()
        .rev()
        .map(|a| {
            vec![
                time(a.at),
                esc(&a.actor.to_string()),
                esc(&a.action),
                esc(&format!(
                    "{} → {}",
                    a.from.as_deref().unwrap_or("-"),
                    a.to.as_deref().unwrap_or("-")
                )),
                esc(&a.reason),
            ]
        })
        .collect();
    let optouts: Vec<Vec<String>> = d
        .optout_requests
        .iter()
        .map(|r| {
            vec![
                time(r.requested_at),
                esc(&r.status),
                esc(&r.reason),
                esc(r.decided_by.as_deref().unwrap_or("")),
                esc(r.decision_reason.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let cases: Vec<Vec<String>> = d
        .abuse_cases
        .iter()
        .map(|c| {
            vec![
                format!(r#"<a href="/console/abuse/{id}">#{id}</a>"#, id = c.id),
                esc(&c.status),
                time(c.opened_at),
                c.evidence_count.to_string(),
            ]
        })
        .collect();
    let body = format!(
        r#"{msg}<section class="card"><dl>
<dt>Login</dt><dd>{login}</dd><dt>Name</dt><dd>{name}</dd><dt>Email</dt><dd>{email}</dd>
<dt>Plan</dt><dd>{plan}</dd><dt>Static addresses</dt><dd>{statics}</dd>
<dt>Port 25</dt><dd id="port25">{badge}</dd><dt>Sending</dt><dd>{susp}</dd></dl></section>
{actions}
<h2>Abuse cases</h2>{cases}
<h2>Opt-out requests</h2>{optouts}
<h2>Leases</h2>{leases}
<h2>Audit trail</h2>{audit}"#,
        msg = notice(m.msg.as_deref()),
        login = esc(&sub.login),
        name = esc(sub.display_name.as_deref().unwrap_or("")),
        email = esc(sub.email.as_deref().unwrap_or("")),
        plan = esc(sub.plan.as_str()),
        statics = esc(&sub
            .static_ips
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")),
        badge = state_badge(sub.port25),
        susp = if sub.suspended {
            "suspended"
        } else {
            "allowed"
        },
        optouts = table(
            &["requested", "status", "reason", "decided by", "answer"],
            &optouts
        ),
        cases = table(&["case", "status", "opened", "evidence"], &cases),
        leases = table(&["address", "start", "end", "source", "NAS"], &leases),
        audit = table(&["when", "who", "action", "state", "reason"], &audit),
    );
    Ok(page(
        &format!("Subscriber {}", sub.login),
        &viewer(&s),
        &body,
    ))
}

#[derive(Deserialize)]
pub(crate) struct Port25Form {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn port25(
    State(state): State<Shared>,
    s: OperatorSession,
    Path(login): Path<String>,
    Form(f): Form<Port25Form>,
) -> Result<Redirect, PortalError> {
    s.check_csrf(&f.csrf)?;
    s.require(OperatorRole::Abuse)?;
    let block = match f.action.as_str() {
        "block" => true,
        "unblock" => false,
        other => {
            return Err(PortalError::BadRequest(format!(
                "action '{other}' is neither block nor unblock"
            )))
        }
    };
    let (from, to) = desk::port25(&state, &s.actor(), &login, block, &f.reason).await?;
    Ok(back(
        &format!("/console/subscribers/{}", url(&login)),
        &format!("port 25: {from} → {to}"),
    ))
}

// ----- IP lookup -------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct WhoisQuery {
    ip: Option<String>,
    at: Option<String>,
}

pub(crate) async fn whois(
    State(state): State<Shared>,
    s: OperatorSession,
    Query(q): Query<WhoisQuery>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Support)?;
    let mut result = String::new();
    if let Some(ip) = q.ip.as_deref().filter(|i| !i.trim().is_empty()) {
        let (addr, at) = desk::whois_query(ip, q.at.as_deref(), state.store.now())?;
        result = match state.store.whois(addr, at).await? {
            Some(l) => format!(
                r#"<p class="notice" id="whois-result">{addr} was held at {at} by <a href="/console/subscribers/{u}">{login}</a> (lease {net}, {start} – {end}, {src}).</p>"#,
                at = time(at),
                u = url(&l.lease.login),
                login = esc(&l.lease.login),
                net = esc(&l.lease.net.to_string()),
                start = time(l.lease.start),
                end = l.lease.end.map(time).unwrap_or_else(|| "open".into()),
                src = esc(l.lease.source.as_str()),
            ),
            None => format!(
                r#"<p class="error" id="whois-result">Nobody held {addr} at {}.</p>"#,
                time(at)
            ),
        };
    }
    let body = format!(
        r#"<form method="get" action="/console/whois" class="search"><input name="ip" value="{}" placeholder="IP address" required><input name="at" value="{}" placeholder="time, RFC 3339 (empty: now)"><button type="submit">Look up</button></form>{result}"#,
        esc(q.ip.as_deref().unwrap_or("")),
        esc(q.at.as_deref().unwrap_or(""))
    );
    Ok(page("Who held this address?", &viewer(&s), &body))
}

// ----- opt-out queue ---------------------------------------------------------------

pub(crate) async fn optouts(
    State(state): State<Shared>,
    s: OperatorSession,
    Query(m): Query<Msg>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Support)?;
    let pending = state.store.optout_requests(None).await?;
    let can = s.operator.role.allows(OperatorRole::Abuse);
    let rows: Vec<Vec<String>> = pending
        .iter()
        .map(|r| {
            let decide = if can {
                format!(
                    r#"<form method="post" action="/console/optouts/{u}" class="decide">{csrf}<input name="reason" placeholder="reason (required to deny)" maxlength="2000"><button type="submit" name="decision" value="approve" class="approve" data-login="{l}">Approve</button><button type="submit" name="decision" value="deny" class="deny" data-login="{l}">Deny</button></form>"#,
                    u = url(&r.login),
                    l = esc(&r.login),
                    csrf = csrf_field(&s.csrf)
                )
            } else {
                "abuse role needed".into()
            };
            vec![
                format!(r#"<a href="/console/subscribers/{}">{}</a>"#, url(&r.login), esc(&r.login)),
                time(r.requested_at),
                esc(&r.reason),
                decide,
            ]
        })
        .collect();
    let body = format!(
        "{}{}",
        notice(m.msg.as_deref()),
        table(&["subscriber", "requested", "reason", "decision"], &rows)
    );
    Ok(page("Opt-out requests", &viewer(&s), &body))
}

#[derive(Deserialize)]
pub(crate) struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
}

fn approve_of(decision: &str) -> Result<bool, PortalError> {
    match decision {
        "approve" => Ok(true),
        "deny" => Ok(false),
        other => Err(PortalError::BadRequest(format!(
            "decision '{other}' is neither approve nor deny"
        ))),
    }
}

pub(crate) async fn optout_decide(
    State(state): State<Shared>,
    s: OperatorSession,
    Path(login): Path<String>,
    Form(f): Form<DecideForm>,
) -> Result<Redirect, PortalError> {
    s.check_csrf(&f.csrf)?;
    s.require(OperatorRole::Abuse)?;
    let approve = approve_of(&f.decision)?;
    desk::decide_optout(&state, &s.actor(), &login, approve, &f.reason).await?;
    Ok(back(
        "/console/optouts",
        &format!(
            "{login}: opt-out {}",
            if approve { "approved" } else { "denied" }
        ),
    ))
}

// ----- static-address requests -----------------------------------------------------

pub(crate) async fn static_requests(
    State(state): State<Shared>,
    s: OperatorSession,
    Query(m): Query<Msg>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Support)?;
    let pending = state.store.static_requests(None).await?;
    let next = desk::free_static_address(&state).await?;
    let rows: Vec<Vec<String>> = pending
        .iter()
        .map(|r| {
            vec![
                format!(r#"<a href="/console/subscribers/{}">{}</a>"#, url(&r.login), esc(&r.login)),
                time(r.requested_at),
                esc(&r.note),
                format!(
                    r#"<form method="post" action="/console/static-requests/{id}" class="decide">{csrf}<input name="reason" placeholder="reason (required to deny)" maxlength="2000"><button type="submit" name="decision" value="approve" class="approve">Approve</button><button type="submit" name="decision" value="deny" class="deny">Deny</button></form>"#,
                    id = r.id,
                    csrf = csrf_field(&s.csrf)
                ),
            ]
        })
        .collect();
    let body = format!(
        r#"{}<p>Approving assigns the next free address of the static pools: <code>{}</code>.</p>{}"#,
        notice(m.msg.as_deref()),
        next.map(|n| esc(&n.to_string()))
            .unwrap_or_else(|| "none left".into()),
        table(&["subscriber", "requested", "note", "decision"], &rows)
    );
    Ok(page("Static-address requests", &viewer(&s), &body))
}

pub(crate) async fn static_decide(
    State(state): State<Shared>,
    s: OperatorSession,
    Path(id): Path<String>,
    Form(f): Form<DecideForm>,
) -> Result<Redirect, PortalError> {
    s.check_csrf(&f.csrf)?;
    s.require(OperatorRole::Support)?;
    let id: i64 = id
        .parse()
        .map_err(|_| PortalError::NotFound(format!("static-address request #{id}")))?;
    let approve = approve_of(&f.decision)?;
    let r = desk::decide_static(&state, &s.actor(), id, approve, &f.reason).await?;
    Ok(back(
        "/console/static-requests",
        &format!(
            "{}: {}{}",
            r.login,
            r.status,
            r.assigned
                .map(|a| format!(", address {a}"))
                .unwrap_or_default()
        ),
    ))
}

// ----- support ---------------------------------------------------------------------

pub(crate) async fn support(
    State(state): State<Shared>,
    s: OperatorSession,
    Query(m): Query<Msg>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Support)?;
    let open = state.store.support_requests(None).await?;
    let rows: Vec<Vec<String>> = open
        .iter()
        .map(|r| {
            vec![
                format!("#{}", r.id),
                format!(r#"<a href="/console/subscribers/{}">{}</a>"#, url(&r.login), esc(&r.login)),
                time(r.created_at),
                format!("<strong>{}</strong><pre>{}</pre>", esc(&r.subject), esc(&r.body)),
                format!(
                    r#"<form method="post" action="/console/support/{}/close">{}<button type="submit">Close</button></form>"#,
                    r.id,
                    csrf_field(&s.csrf)
                ),
            ]
        })
        .collect();
    let body = format!(
        "{}{}",
        notice(m.msg.as_deref()),
        table(&["#", "subscriber", "sent", "message", ""], &rows)
    );
    Ok(page("Support requests", &viewer(&s), &body))
}

pub(crate) async fn support_close(
    State(state): State<Shared>,
    s: OperatorSession,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Redirect, PortalError> {
    s.check_csrf(&f.csrf)?;
    s.require(OperatorRole::Support)?;
    let id: i64 = id
        .parse()
        .map_err(|_| PortalError::NotFound(format!("support request #{id}")))?;
    state.store.close_support_request(id, &s.actor()).await?;
    Ok(back(
        "/console/support",
        &format!("support request #{id} closed"),
    ))
}

// ----- abuse, queue, audit, operators ----------------------------------------------

pub(crate) async fn abuse(
    State(state): State<Shared>,
    s: OperatorSession,
    Query(m): Query<Msg>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Abuse)?;
    let cases = state.store.abuse_cases(None).await?;
    let rows: Vec<Vec<String>> = cases
        .iter()
        .take(500)
        .map(|c| {
            vec![
                format!(r#"<a href="/console/abuse/{id}">#{id}</a>"#, id = c.id),
                format!(
                    r#"<a href="/console/subscribers/{}">{}</a>"#,
                    url(&c.login),
                    esc(&c.login)
                ),
                esc(&c.status),
                time(c.opened_at),
                time(c.updated_at),
                esc(&c
                    .by_kind
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")),
            ]
        })
        .collect();
    let body = format!(
        r#"{}<p class="muted">Reports also arrive by <code>POST /api/v1/abuse/arf</code> and <code>portcullis abuse ingest</code>.</p>{}"#,
        notice(m.msg.as_deref()),
        table(
            &[
                "case",
                "subscriber",
                "status",
                "opened",
                "updated",
                "evidence"
            ],
            &rows
        )
    );
    Ok(page("Abuse cases", &viewer(&s), &body))
}

pub(crate) async fn abuse_case(
    State(state): State<Shared>,
    s: OperatorSession,
    Path(id): Path<String>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Abuse)?;
    let (case, evidence) = crate::desk::abuse_case(&state, &id).await?;
    let rows: Vec<Vec<String>> = evidence
        .iter()
        .map(|e| {
            vec![
                time(e.at),
                esc(&e.kind),
                esc(e.ip.as_deref().unwrap_or("")),
                esc(&e.summary),
                format!("<pre>{}</pre>", esc(&e.detail.to_string())),
            ]
        })
        .collect();
    let close = if case.status == "open" {
        format!(
            r#"<form method="post" action="/console/abuse/{}/close" class="card">{}<label>Resolution (recorded in the audit log)<input name="reason" required maxlength="2000"></label><button type="submit">Close case</button></form>"#,
            case.id,
            csrf_field(&s.csrf)
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<section class="card"><dl><dt>Subscriber</dt><dd><a href="/console/subscribers/{u}">{l}</a></dd><dt>Status</dt><dd>{st}</dd><dt>Opened</dt><dd>{o}</dd></dl></section>{close}<h2>Evidence</h2>{t}"#,
        u = url(&case.login),
        l = esc(&case.login),
        st = esc(&case.status),
        o = time(case.opened_at),
        t = table(&["when", "kind", "address", "summary", "detail"], &rows)
    );
    Ok(page(
        &format!("Abuse case #{}", case.id),
        &viewer(&s),
        &body,
    ))
}

pub(crate) async fn abuse_case_close(
    State(state): State<Shared>,
    s: OperatorSession,
    Path(id): Path<String>,
    Form(f): Form<Port25Form>,
) -> Result<Redirect, PortalError> {
    s.check_csrf(&f.csrf)?;
    s.require(OperatorRole::Abuse)?;
    let n = crate::desk::close_case(&state, &s.actor(), &id, &f.reason).await?;
    Ok(back("/console/abuse", &format!("case #{n} closed")))
}

pub(crate) async fn queue(
    State(state): State<Shared>,
    s: OperatorSession,
    Query(m): Query<Msg>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Support)?;
    let msgs = state.store.list_queue(200).await?;
    let can_delete = s.operator.role.allows(OperatorRole::Abuse);
    let rows: Vec<Vec<String>> = msgs
        .iter()
        .map(|m| {
            let id = url(&m.id);
            let delete = if can_delete {
                format!(
                    r#"<form method="post" action="/console/queue/{id}/delete" class="inline">{}<button type="submit" class="deny">Delete</button></form>"#,
                    csrf_field(&s.csrf)
                )
            } else {
                String::new()
            };
            vec![
                format!("<code>{}</code>", esc(&m.id)),
                esc(&m.login),
                esc(&m.mail_from),
                time(m.received_at),
                m.size.to_string(),
                esc(&m
                    .recipients
                    .iter()
                    .map(|r| {
                        format!(
                            "{} ({}, {} attempts{})",
                            r.address,
                            r.status.as_str(),
                            r.attempts,
                            r.last_error
                                .as_deref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")),
                format!(
                    r#"<form method="post" action="/console/queue/{id}/retry" class="inline">{}<button type="submit">Retry now</button></form> {delete}"#,
                    csrf_field(&s.csrf)
                ),
            ]
        })
        .collect();
    let body = format!(
        r#"{}<p><span id="queue-size">{}</span> message(s) in the queue.</p>{}"#,
        notice(m.msg.as_deref()),
        state.store.queue_len().await?,
        table(
            &["id", "login", "from", "received", "bytes", "recipients", ""],
            &rows
        )
    );
    Ok(page("Mail queue", &viewer(&s), &body))
}

pub(crate) async fn queue_action(
    State(state): State<Shared>,
    s: OperatorSession,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<CsrfOnly>,
) -> Result<Redirect, PortalError> {
    s.check_csrf(&f.csrf)?;
    let msg = match action.as_str() {
        "retry" => {
            s.require(OperatorRole::Support)?;
            let n = desk::queue_retry(&state, &s.actor(), &id).await?;
            format!("{id}: {n} recipient(s) due now")
        }
        "delete" => {
            s.require(OperatorRole::Abuse)?;
            desk::queue_delete(&state, &s.actor(), &id).await?;
            format!("{id}: deleted")
        }
        other => return Err(PortalError::NotFound(format!("queue action '{other}'"))),
    };
    Ok(back("/console/queue", &msg))
}

#[derive(Deserialize, Default)]
pub(crate) struct AuditQuery {
    login: Option<String>,
}

pub(crate) async fn audit(
    State(state): State<Shared>,
    s: OperatorSession,
    Query(q): Query<AuditQuery>,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Support)?;
    let login = q.login.as_deref().map(str::trim).filter(|l| !l.is_empty());
    let entries = state.store.audit(login, 500).await?;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .rev()
        .map(|a| {
            vec![
                time(a.at),
                esc(&a.actor.to_string()),
                format!(
                    r#"<a href="/console/subscribers/{}">{}</a>"#,
                    url(&a.login),
                    esc(&a.login)
                ),
                esc(&a.action),
                esc(&format!(
                    "{} → {}",
                    a.from.as_deref().unwrap_or("-"),
                    a.to.as_deref().unwrap_or("-")
                )),
                esc(&a.reason),
            ]
        })
        .collect();
    let body = format!(
        r#"<form method="get" action="/console/audit" class="search"><input name="login" value="{}" placeholder="login (empty: everyone)"><button type="submit">Filter</button></form>{}"#,
        esc(login.unwrap_or("")),
        table(
            &["when", "who", "subscriber", "action", "state", "reason"],
            &rows
        )
    );
    Ok(page("Audit log", &viewer(&s), &body))
}

pub(crate) async fn operators(
    State(state): State<Shared>,
    s: OperatorSession,
) -> Result<Html<String>, PortalError> {
    s.require(OperatorRole::Admin)?;
    let ops = state.store.list_operators().await?;
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|o| vec![esc(&o.name), esc(o.role.as_str()), time(o.created)])
        .collect();
    let body = format!(
        r#"<p>Manage accounts with <code>portcullis operator add|list|remove</code> and API tokens with <code>portcullis operator token NAME</code>.</p>{}"#,
        table(&["name", "role", "created"], &rows)
    );
    Ok(page("Operators", &viewer(&s), &body))
}
