//! The customer portal: what a subscriber sees after logging in with the PPPoE
//! login. Every page is scoped to the session's own login; no route takes a login,
//! and the one that takes an id (`/support/{id}`) answers 404 for anyone else's.

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use policy::{Actor, Plan, Port25Action, Port25State, Subscriber};
use serde::Deserialize;
use store::SessionKind;

use crate::auth;
use crate::error::PortalError;
use crate::html::{csrf_field, esc, page, state_badge, table, time, Viewer};
use crate::security::{self, CustomerSession};
use crate::server::ClientAddr;
use crate::Shared;

fn viewer(s: &CustomerSession) -> Viewer<'_> {
    Viewer::Customer {
        login: &s.login,
        csrf: &s.csrf,
    }
}

/// Plain words for each port-25 state: what it means and what the options are.
pub(crate) fn explain(state: Port25State) -> &'static str {
    match state {
        Port25State::Blocked => {
            r#"<p><strong>Outgoing connections to port 25 are blocked on your connection.</strong>
Port 25 is how mail servers pass mail to each other. Almost all mail sent straight to port 25 from home
connections with changing (dynamic) addresses comes from viruses on infected computers, so we close it by default.
This protects you and keeps our addresses off spam blacklists.</p>
<p><strong>What still works:</strong> everything else — web, streaming, games, VPNs, and sending mail
through any mail provider on ports 587 or 465, including ours (see <a href="/sending">Sending mail</a>).
Receiving mail is not affected.</p>
<p><strong>Your options:</strong> use our mail server with your connection's login (recommended for almost everyone);
if you run your own mail server, <a href="/optout">request an opt-out</a>; or get a
<a href="/static-address">static address</a>, which is exempt.</p>"#
        }
        Port25State::OptoutPending => {
            r#"<p><strong>Your opt-out request is being reviewed.</strong> Port 25 stays blocked until our team approves it.
Sending mail through our mail server on ports 587 and 465 works meanwhile.</p>"#
        }
        Port25State::OptedOut => {
            r#"<p><strong>Port 25 is open on your connection.</strong> You opted out of the block and accepted our
acceptable use policy. If spam, a blacklisting or signs of an infected computer are seen from your connection,
the block comes back automatically.</p>"#
        }
        Port25State::Exempt => {
            r#"<p><strong>Port 25 is open on your connection.</strong> Static addresses are exempt from the block.
If spam or an infection is seen from your connection, our abuse desk may block it.</p>"#
        }
        Port25State::Reinstated => {
            r#"<p><strong>Port 25 was blocked again on your connection</strong> because spam, a blacklisting or signs of an
infected computer were seen from it (see <a href="/notices">Notices</a>). Clean up the affected computers, change
your passwords, then <a href="/support">contact support</a>: only our abuse desk can re-open port 25.
Sending mail through our mail server on ports 587 and 465 still works unless we told you otherwise.</p>"#
        }
    }
}

async fn me(state: &Shared, s: &CustomerSession) -> Result<Subscriber, PortalError> {
    Ok(state.store.subscriber(&s.login).await?)
}

// ----- login -----------------------------------------------------------------------

fn login_page(csrf: &str, error: Option<&str>, login: &str) -> Html<String> {
    let err = error
        .map(|e| format!(r#"<p class="error" id="error">{}</p>"#, esc(e)))
        .unwrap_or_default();
    page(
        "Log in",
        &Viewer::Anonymous,
        &format!(
            r#"{err}<form method="post" action="/login" class="card">
{csrf}
<label>Login (as for your internet connection)<input name="login" autocomplete="username" value="{login}" required></label>
<label>Password<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form>"#,
            csrf = csrf_field(csrf),
            login = esc(login)
        ),
    )
}

pub(crate) async fn login_form(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let (token, cookie) = security::login_csrf(&state, &headers, "/");
    let mut res = login_page(&token, None, "").into_response();
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
    login: String,
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
    let ip = client.map(|c| c.0 .0.ip());
    match auth::customer_login(&state, &f.login, &f.password, ip).await {
        Ok(login) => {
            let cookie = security::open_session(&state, SessionKind::Customer, &login).await?;
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
        }
        Err(e @ (PortalError::BadCredentials | PortalError::Throttled(_))) => {
            let status = e.status();
            Ok((status, login_page(&f.csrf, Some(&e.to_string()), &f.login)).into_response())
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
    s: CustomerSession,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PortalError> {
    s.check_csrf(&f.csrf)?;
    let cookie = security::close_session(&state, &headers, SessionKind::Customer).await?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

// ----- home ------------------------------------------------------------------------

pub(crate) async fn home(
    State(state): State<Shared>,
    s: CustomerSession,
) -> Result<Html<String>, PortalError> {
    let sub = me(&state, &s).await?;
    let leases = state.store.leases_of(&s.login, 20).await?;
    let current: Vec<String> = leases
        .iter()
        .filter(|l| l.lease.end.is_none())
        .map(|l| format!("<code>{}</code>", esc(&l.lease.net.to_string())))
        .collect();
    let address = if current.is_empty() {
        "not connected right now".to_string()
    } else {
        current.join(", ")
    };
    let notices = crate::desk::customer_notice_count(&state, &s.login).await;
    let notice_line = if notices > 0 {
        format!(
            r#"<p class="error">You have {notices} notice(s) about your connection: <a href="/notices">read them</a>.</p>"#
        )
    } else {
        String::new()
    };
    let suspended = if sub.suspended {
        r#"<p class="error">Sending through our mail server is suspended for your login because it looked misused.
<a href="/password">Change your password</a> to lift the suspension.</p>"#
    } else {
        ""
    };
    let body = format!(
        r#"{notice_line}{suspended}<section class="card"><dl>
<dt>Login</dt><dd>{login}</dd>
<dt>Plan</dt><dd id="plan">{plan}</dd>
<dt>Current address</dt><dd id="address">{address}</dd>
<dt>Port 25</dt><dd id="port25">{badge} {open}</dd></dl></section>
<section class="card"><h2>Port 25, in plain words</h2>{explain}</section>"#,
        login = esc(&sub.login),
        plan = if sub.plan == Plan::Static {
            "static address"
        } else {
            "dynamic address"
        },
        badge = state_badge(sub.port25),
        open = if sub.port25.is_open() {
            "open"
        } else {
            "blocked"
        },
        explain = explain(sub.port25),
    );
    Ok(page("Your connection", &viewer(&s), &body))
}

// ----- sending mail ----------------------------------------------------------------

pub(crate) async fn sending(
    State(state): State<Shared>,
    s: CustomerSession,
) -> Result<Html<String>, PortalError> {
    let sub = &state.config.submission;
    let host = esc(sub.public_hostname());
    let body = format!(
        r#"<p>Send mail through our mail server from anywhere, with the same login and password as your connection.
Ports 587 and 465 are never blocked.</p>
<section class="card"><h2>Settings</h2><table>
<tr><th>Outgoing server (SMTP)</th><td id="smtp-host"><code>{host}</code></td></tr>
<tr><th>Port, STARTTLS</th><td id="port-starttls"><code>{starttls}</code> (security: STARTTLS)</td></tr>
<tr><th>Port, SSL/TLS</th><td id="port-tls"><code>{tls}</code> (security: SSL/TLS)</td></tr>
<tr><th>Authentication</th><td>normal password</td></tr>
<tr><th>User name</th><td id="smtp-login"><code>{login}</code></td></tr></table></section>
<section class="card"><h2>Automatic set-up</h2>
<p><strong>Thunderbird</strong> finds these settings by itself (autoconfig) when your mail domain points to us; otherwise enter them by hand.
<strong>Outlook</strong> uses autodiscover the same way.</p>
<p><strong>iPhone, iPad and Mac:</strong> <a href="/sending/portcullis.mobileconfig" id="mobileconfig">download the profile</a>, then open it in Settings.</p></section>"#,
        starttls = sub.public_starttls_port,
        tls = sub.public_tls_port,
        login = esc(&s.login),
    );
    Ok(page("Sending mail", &viewer(&s), &body))
}

// ----- opt-out ---------------------------------------------------------------------

pub(crate) async fn optout_form(
    State(state): State<Shared>,
    s: CustomerSession,
) -> Result<Html<String>, PortalError> {
    let sub = me(&state, &s).await?;
    let requests = state.store.optout_requests(Some(&s.login)).await?;
    let status = match sub.port25 {
        _ if sub.plan == Plan::Static => r#"<p id="optout-unavailable">You have a static address, which is exempt from the port-25 block: there is nothing to opt out of.</p>"#.to_string(),
        Port25State::Reinstated => r#"<p id="optout-unavailable">Port 25 was blocked again after abuse was seen from your connection, so an opt-out cannot be requested here. Clean up, then <a href="/support">contact support</a>; only our abuse desk can re-open it.</p>"#.to_string(),
        Port25State::OptoutPending => r#"<p id="optout-status" data-status="pending">Your request is <strong>pending</strong>: our team will review it soon. Port 25 stays blocked meanwhile.</p>"#.to_string(),
        Port25State::OptedOut => r#"<p id="optout-status" data-status="approved">Your opt-out was <strong>approved</strong>: port 25 is open.</p>"#.to_string(),
        Port25State::Exempt => r#"<p id="optout-unavailable">Port 25 is already open.</p>"#.to_string(),
        Port25State::Blocked => {
            let last = match requests.first() {
                Some(r) if r.status == "denied" => format!(
                    r#"<p class="error" id="optout-status" data-status="denied">Your last request was denied: {}</p>"#,
                    esc(r.decision_reason.as_deref().unwrap_or("no reason given"))
                ),
                _ => String::new(),
            };
            format!(
                r#"{last}<p>Only do this if you run your own mail server. Everyone else should use <a href="/sending">our mail server</a>.</p>
<form method="post" action="/optout" class="card">{csrf}
<h2>Acceptable use policy</h2><blockquote id="aup">{aup}</blockquote>
<label class="check"><input type="checkbox" name="accept_aup" value="yes" id="accept_aup" required> I have read and accept the acceptable use policy</label>
<label>Why do you need port 25?<textarea name="reason" id="reason" maxlength="2000" required></textarea></label>
<button type="submit" id="request-optout">Request opt-out</button></form>"#,
                csrf = csrf_field(&s.csrf),
                aup = esc(&state.config.portal.aup_text).replace('\n', "<br>"),
            )
        }
    };
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            vec![
                time(r.requested_at),
                esc(&r.status),
                esc(&r.reason),
                esc(r.decision_reason.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let body = format!(
        r#"<section class="card"><p>Port 25: {badge}</p>{status}</section><h2>Your requests</h2>{table}"#,
        badge = state_badge(sub.port25),
        table = table(&["requested", "status", "your reason", "our answer"], &rows),
    );
    Ok(page("Port 25 opt-out", &viewer(&s), &body))
}

#[derive(Deserialize)]
pub(crate) struct OptoutForm {
    #[serde(default)]
    csrf: String,
    accept_aup: Option<String>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn optout_request(
    State(state): State<Shared>,
    s: CustomerSession,
    Form(f): Form<OptoutForm>,
) -> Result<Redirect, PortalError> {
    s.check_csrf(&f.csrf)?;
    let reason = f.reason.trim();
    if reason.is_empty() || reason.len() > 2000 {
        return Err(PortalError::BadRequest(
            "say in a few words (up to 2000 characters) why you need port 25".into(),
        ));
    }
    let accepted = f.accept_aup.as_deref().is_some_and(|v| !v.is_empty());
    state
        .store
        .transition(
            &s.login,
            Port25Action::RequestOptOut {
                aup_accepted: accepted,
            },
            &Actor::Customer(s.login.clone()),
            reason,
        )
        .await?;
    tracing::info!(login = %s.login, "opt-out requested");
    Ok(Redirect::to("/optout"))
}

// ----- static address --------------------------------------------------------------

pub(crate) async fn static_form(
    State(state): State<Shared>,
    s: CustomerSession,
) -> Result<Html<String>, PortalError> {
    let sub = me(&state, &s).await?;
    let requests = state.store.static_requests(Some(&s.login)).await?;
    let pending = requests.iter().any(|r| r.status == "pending");
    let status = if sub.plan == Plan::Static {
        format!(
            r#"<p id="static-status">You have a static address: {}.</p>"#,
            sub.static_ips
                .iter()
                .map(|n| format!("<code>{}</code>", esc(&n.to_string())))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if pending {
        r#"<p id="static-status" data-status="pending">Your request is pending; we will set it up and tell you the address.</p>"#.into()
    } else {
        format!(
            r#"<p>A static address stays the same every time you connect, and is exempt from the port-25 block.
It costs <strong id="price">{price}</strong>.</p>
<form method="post" action="/static-address" class="card">{csrf}
<label>Anything we should know? (optional)<textarea name="note" maxlength="2000"></textarea></label>
<button type="submit" id="request-static">Request a static address</button></form>"#,
            price = esc(&state.config.portal.static_ip_price),
            csrf = csrf_field(&s.csrf)
        )
    };
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            vec![
                time(r.requested_at),
                esc(&r.status),
                esc(r.assigned.as_deref().unwrap_or("")),
                esc(r.decision_reason.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let body = format!(
        r#"<section class="card">{status}</section><h2>Your requests</h2>{}"#,
        table(&["requested", "status", "address", "our answer"], &rows)
    );
    Ok(page("Static address", &viewer(&s), &body))
}

#[derive(Deserialize)]
pub(crate) struct StaticForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

pub(crate) async fn static_request(
    State(state): State<Shared>,
    s: CustomerSession,
    Form(f): Form<StaticForm>,
) -> Result<Redirect, PortalError> {
    s.check_csrf(&f.csrf)?;
    if f.note.len() > 2000 {
        return Err(PortalError::BadRequest(
            "the note is limited to 2000 characters".into(),
        ));
    }
    state.store.request_static(&s.login, f.note.trim()).await?;
    Ok(Redirect::to("/static-address"))
}

// ----- notices ---------------------------------------------------------------------

const CLEANUP: &str = r#"<h2>Cleaning up</h2><ol>
<li>Update the operating system and every program on each computer, phone and tablet at home.</li>
<li>Run a full scan with an up-to-date antivirus program; remove what it finds.</li>
<li>Change the passwords of your mail accounts and of your router; switch off remote administration on the router.</li>
<li>Check that no device sends mail by itself (a mail server or script you did not set up).</li>
<li>Then <a href="/support">tell us</a>: we review and lift the block.</li></ol>"#;

pub(crate) async fn notices(
    State(state): State<Shared>,
    s: CustomerSession,
) -> Result<Html<String>, PortalError> {
    let sub = me(&state, &s).await?;
    let list = crate::desk::customer_notices(&state, &s.login).await?;
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            vec![
                time(n.at),
                format!(
                    "<strong>{}</strong><pre>{}</pre>",
                    esc(&n.subject),
                    esc(&n.body)
                ),
            ]
        })
        .collect();
    let guidance = if sub.port25 == Port25State::Reinstated || !list.is_empty() {
        CLEANUP
    } else {
        ""
    };
    let body = format!("{}{guidance}", table(&["when", "notice"], &rows));
    Ok(page("Notices about your connection", &viewer(&s), &body))
}

// ----- support ---------------------------------------------------------------------

pub(crate) async fn support_form(
    State(state): State<Shared>,
    s: CustomerSession,
) -> Result<Html<String>, PortalError> {
    let mine = state.store.support_requests(Some(&s.login)).await?;
    let rows: Vec<Vec<String>> = mine
        .iter()
        .map(|r| {
            vec![
                format!(r#"<a href="/support/{}">#{}</a>"#, r.id, r.id),
                time(r.created_at),
                esc(&r.subject),
                esc(&r.status),
            ]
        })
        .collect();
    let body = format!(
        r#"<form method="post" action="/support" class="card">{csrf}
<label>Subject<input name="subject" maxlength="200" required></label>
<label>Message<textarea name="body" maxlength="5000" required></textarea></label>
<button type="submit">Send to support</button></form>
<h2>Your messages</h2>{table}"#,
        csrf = csrf_field(&s.csrf),
        table = table(&["#", "sent", "subject", "status"], &rows)
    );
    Ok(page("Contact support", &viewer(&s), &body))
}

#[derive(Deserialize)]
pub(crate) struct SupportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
}

pub(crate) async fn support_request(
    State(state): State<Shared>,
    s: CustomerSession,
    Form(f): Form<SupportForm>,
) -> Result<Redirect, PortalError> {
    s.check_csrf(&f.csrf)?;
    let (subject, body) = (f.subject.trim(), f.body.trim());
    if subject.is_empty() || subject.len() > 200 || body.is_empty() || body.len() > 5000 {
        return Err(PortalError::BadRequest(
            "a subject (up to 200 characters) and a message (up to 5000) are needed".into(),
        ));
    }
    let id = state
        .store
        .create_support_request(&s.login, subject, body)
        .await?;
    Ok(Redirect::to(&format!("/support/{id}")))
}

pub(crate) async fn support_show(
    State(state): State<Shared>,
    s: CustomerSession,
    Path(id): Path<String>,
) -> Result<Html<String>, PortalError> {
    let not_found = || PortalError::NotFound(format!("support request #{id}"));
    let n: i64 = id.parse().map_err(|_| not_found())?;
    let r = state
        .store
        .support_requests(Some(&s.login))
        .await?
        .into_iter()
        .find(|r| r.id == n)
        .ok_or_else(not_found)?;
    let body = format!(
        r#"<section class="card"><dl><dt>Sent</dt><dd>{}</dd><dt>Status</dt><dd>{}</dd><dt>Subject</dt><dd>{}</dd></dl><pre>{}</pre></section>"#,
        time(r.created_at),
        esc(&r.status),
        esc(&r.subject),
        esc(&r.body)
    );
    Ok(page(
        &format!("Support request #{}", r.id),
        &viewer(&s),
        &body,
    ))
}

// ----- password --------------------------------------------------------------------

pub(crate) async fn password_form(
    State(state): State<Shared>,
    s: CustomerSession,
) -> Result<Html<String>, PortalError> {
    let body = if state.config.auth.backend == config::AuthBackend::Radius {
        "<p>Your password is managed with your internet account; change it there.</p>".to_string()
    } else {
        format!(
            r#"<p>This is the password of your connection and of our mail server. After a change, update it on your router and in your mail programs.</p>
<form method="post" action="/password" class="card">{}
<label>Current password<input name="current" type="password" autocomplete="current-password" required></label>
<label>New password (at least 10 characters)<input name="new" type="password" autocomplete="new-password" minlength="10" required></label>
<label>New password again<input name="confirm" type="password" autocomplete="new-password" minlength="10" required></label>
<button type="submit">Change password</button></form>"#,
            csrf_field(&s.csrf)
        )
    };
    Ok(page("Change password", &viewer(&s), &body))
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub(crate) async fn password_change(
    State(state): State<Shared>,
    s: CustomerSession,
    client: Option<Extension<ClientAddr>>,
    Form(f): Form<PasswordForm>,
) -> Result<Response, PortalError> {
    s.check_csrf(&f.csrf)?;
    if state.config.auth.backend == config::AuthBackend::Radius {
        return Err(PortalError::BadRequest(
            "passwords are managed by the RADIUS server; change it there".into(),
        ));
    }
    if f.new != f.confirm {
        return Err(PortalError::BadRequest(
            "the two new passwords differ".into(),
        ));
    }
    if f.new.chars().count() < 10 || f.new.len() > 1024 {
        return Err(PortalError::BadRequest(
            "the new password needs at least 10 characters".into(),
        ));
    }
    auth::customer_login(&state, &s.login, &f.current, client.map(|c| c.0 .0.ip())).await?;
    let new = f.new.clone();
    let hash = tokio::task::spawn_blocking(move || store::password::hash_password(&new))
        .await
        .map_err(|e| PortalError::BadRequest(format!("could not hash the password: {e}")))?;
    let actor = Actor::Customer(s.login.clone());
    state
        .store
        .set_subscriber_password(&s.login, &hash, &actor)
        .await?;
    // A new password is the cure for stolen credentials: lift a sending suspension.
    let lifted = state.store.subscriber(&s.login).await?.suspended
        && state
            .store
            .set_suspended(&s.login, false, &actor, "password changed by the customer")
            .await?;
    let msg = if lifted {
        "Password changed. The sending suspension is lifted."
    } else {
        "Password changed."
    };
    Ok((
        StatusCode::OK,
        page(
            "Change password",
            &viewer(&s),
            &format!(r#"<p class="notice" id="notice">{msg}</p>"#),
        ),
    )
        .into_response())
}
