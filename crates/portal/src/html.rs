//! HTML building blocks: escaping, the page frame with its navigation, small
//! helpers for tables and forms. Every value from the store or the user goes
//! through [`esc`] before it reaches a page.

use axum::http::StatusCode;
use axum::response::Html;
use policy::Timestamp;

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value.
pub(crate) fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn time(t: Timestamp) -> String {
    esc(&t.to_string())
}

/// Who is looking at the page, for the navigation bar.
pub(crate) enum Viewer<'a> {
    Anonymous,
    Customer {
        login: &'a str,
        csrf: &'a str,
    },
    Operator {
        name: &'a str,
        role: &'a str,
        csrf: &'a str,
    },
}

pub(crate) fn page(title: &str, viewer: &Viewer, body: &str) -> Html<String> {
    let (brand, nav) = match viewer {
        Viewer::Anonymous => ("Your connection", String::new()),
        Viewer::Customer { login, csrf } => (
            "Your connection",
            format!(
                r#"<nav><a href="/">Home</a><a href="/sending">Sending mail</a><a href="/optout">Port 25</a><a href="/static-address">Static address</a><a href="/notices">Notices</a><a href="/support">Support</a><a href="/password">Password</a>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button type="submit" class="link">Log out {}</button></form></nav>"#,
                esc(csrf),
                esc(login)
            ),
        ),
        Viewer::Operator { name, role, csrf } => (
            "portcullis console",
            format!(
                r#"<nav><a href="/console/">Dashboard</a><a href="/console/subscribers">Subscribers</a><a href="/console/whois">IP lookup</a><a href="/console/optouts">Opt-outs</a><a href="/console/static-requests">Static requests</a><a href="/console/support">Support</a><a href="/console/abuse">Abuse</a><a href="/console/queue">Queue</a><a href="/console/audit">Audit</a><a href="/console/operators">Operators</a>
<form method="post" action="/console/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button type="submit" class="link">Log out {} ({})</button></form></nav>"#,
                esc(csrf),
                esc(name),
                esc(role)
            ),
        ),
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {brand}</title><link rel="stylesheet" href="/assets/portal.css"><link rel="icon" href="/assets/favicon.svg" type="image/svg+xml"></head>
<body><header><span class="brand">{brand}</span>{nav}</header>
<main><h1>{title}</h1>
{body}
</main></body></html>"#,
        title = esc(title),
        brand = esc(brand),
    ))
}

pub(crate) fn error_page(status: StatusCode, message: &str) -> Html<String> {
    page(
        status.canonical_reason().unwrap_or("Error"),
        &Viewer::Anonymous,
        &format!(
            r#"<p class="error" id="error">{}</p><p><a href="/">Home</a> · <a href="/console/">Console</a></p>"#,
            esc(message)
        ),
    )
}

/// A table from a header row and body rows of already-escaped cells.
pub(crate) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return r#"<p class="muted">Nothing here.</p>"#.into();
    }
    let mut s = String::from("<table><thead><tr>");
    for h in head {
        s.push_str(&format!("<th>{}</th>", esc(h)));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            s.push_str(&format!("<td>{c}</td>"));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

pub(crate) fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
}

/// A flash message passed back in the query string after a redirect.
pub(crate) fn notice(msg: Option<&str>) -> String {
    match msg {
        Some(m) if !m.is_empty() => format!(r#"<p class="notice" id="notice">{}</p>"#, esc(m)),
        _ => String::new(),
    }
}

/// The port-25 state as a badge.
pub(crate) fn state_badge(state: policy::Port25State) -> String {
    let class = if state.is_open() { "open" } else { "closed" };
    format!(
        r#"<span class="badge {class}" data-state="{s}">{s}</span>"#,
        s = state.as_str()
    )
}
