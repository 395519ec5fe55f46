//! The dashboard: figures derived from the store (current states, the audit log's
//! port-25 transitions, the event log's abuse events, the queue) and charts drawn as
//! inline SVG on the server — no script, no external service, CSP-clean (presentation
//! attributes only, no `style`).

use std::fmt::Write;

use policy::{Port25State, Timestamp};
use serde::Serialize;

use crate::error::PortalError;
use crate::html::esc;
use crate::Shared;

/// Days shown in the time charts.
pub(crate) const DAYS: i64 = 14;

const COLOURS: [&str; 6] = [
    "#2f6fb3", "#c0392b", "#27ae60", "#d68910", "#7d3c98", "#566573",
];

fn state_colour(s: Port25State) -> &'static str {
    match s {
        Port25State::Exempt => "#27ae60",
        Port25State::OptedOut => "#2f6fb3",
        Port25State::OptoutPending => "#d68910",
        Port25State::Blocked => "#566573",
        Port25State::Reinstated => "#c0392b",
    }
}

/// A named series of daily values, oldest day first.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Series {
    pub name: String,
    pub values: Vec<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Dashboard {
    /// The days of the time series, as YYYY-MM-DD (UTC), oldest first.
    pub days: Vec<String>,
    pub states_now: Vec<(Port25State, i64)>,
    /// Subscribers in each state at the end of each day.
    pub states_daily: Vec<Series>,
    /// Per day: opt-out requests, approvals, re-instatements, operator blocks.
    pub port25_daily: Vec<Series>,
    /// Per day: abuse complaints, DNSBL listings, blocked port-25 flow reports (the
    /// abuse component's evidence, by the day the abuse happened).
    pub abuse_daily: Vec<Series>,
    pub optouts_pending: i64,
    pub static_requests_pending: i64,
    pub support_open: i64,
    pub queue_messages: i64,
}

fn day_label(day: i64) -> String {
    let s = Timestamp(day * 86_400).to_string();
    s.get(..10).unwrap_or(&s).to_string()
}

pub(crate) async fn dashboard(state: &Shared) -> Result<Dashboard, PortalError> {
    let store = &state.store;
    let today = store.now().0.div_euclid(86_400);
    let first = today - (DAYS - 1);
    let days: Vec<i64> = (first..=today).collect();
    let states_now = store.state_counts().await?;
    let since = Timestamp(first * 86_400);
    let changes = store.port25_transitions_since(since).await?;

    // Walk back from now: the count at the end of day d is today's count minus every
    // change made after that day.
    let idx = |s: &str| Port25State::ALL.iter().position(|x| x.as_str() == s);
    let mut counts: Vec<i64> = states_now.iter().map(|(_, n)| *n).collect();
    let mut daily = vec![vec![0i64; days.len()]; Port25State::ALL.len()];
    let mut ci = changes.len();
    for (di, d) in days.iter().enumerate().rev() {
        let end = (d + 1) * 86_400;
        while ci > 0 && changes[ci - 1].at.0 >= end {
            ci -= 1;
            let c = &changes[ci];
            if let Some(i) = c.to.as_deref().and_then(idx) {
                counts[i] -= 1;
            }
            if let Some(i) = c.from.as_deref().and_then(idx) {
                counts[i] += 1;
            }
        }
        for (si, n) in counts.iter().enumerate() {
            daily[si][di] = (*n).max(0);
        }
    }
    let states_daily = Port25State::ALL
        .iter()
        .zip(daily)
        .map(|(s, values)| Series {
            name: s.as_str().into(),
            values,
        })
        .collect();

    let mut port25 = vec![vec![0i64; days.len()]; 4];
    for c in &changes {
        let di = (c.at.0.div_euclid(86_400) - first) as usize;
        let si = match c.action.as_str() {
            "optout-request" => 0,
            "optout-approve" => 1,
            "reinstate" => 2,
            "port25-block" => 3,
            _ => continue,
        };
        if let Some(v) = port25[si].get_mut(di) {
            *v += 1;
        }
    }
    let port25_daily = [
        "opt-out requests",
        "opt-outs approved",
        "re-instatements",
        "operator blocks",
    ]
    .iter()
    .zip(port25)
    .map(|(n, values)| Series {
        name: (*n).into(),
        values,
    })
    .collect();

    let mut abuse = vec![vec![0i64; days.len()]; 3];
    for (day, kind, n) in store.daily_evidence_counts(since).await? {
        let si = match kind.as_str() {
            "complaint" => 0,
            "listing" => 1,
            "flow" => 2,
            _ => continue,
        };
        if let Some(v) = usize::try_from(day - first)
            .ok()
            .and_then(|i| abuse[si].get_mut(i))
        {
            *v += n;
        }
    }
    let abuse_daily = ["complaints", "DNSBL listings", "blocked port-25 flows"]
        .iter()
        .zip(abuse)
        .map(|(n, values)| Series {
            name: (*n).into(),
            values,
        })
        .collect();

    Ok(Dashboard {
        days: days.iter().map(|d| day_label(*d)).collect(),
        states_now,
        states_daily,
        port25_daily,
        abuse_daily,
        optouts_pending: store.optout_requests(None).await?.len() as i64,
        static_requests_pending: store.static_requests(None).await?.len() as i64,
        support_open: store.support_requests(None).await?.len() as i64,
        queue_messages: store.queue_len().await?,
    })
}

/// Horizontal bars, one per state.
pub(crate) fn state_bars(states: &[(Port25State, i64)]) -> String {
    let max = states.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let (w, row) = (520.0, 28.0);
    let h = row * states.len() as f64 + 10.0;
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Subscribers by port-25 state">"#
    );
    for (i, (st, n)) in states.iter().enumerate() {
        let y = 5.0 + row * i as f64;
        let bw = (*n as f64 / max as f64) * 300.0;
        let _ = write!(
            s,
            r##"<text x="0" y="{ty}" font-size="13" fill="#222">{name}</text><rect x="130" y="{y}" width="{bw:.1}" height="18" fill="{c}"><title>{name}: {n}</title></rect><text x="{tx:.1}" y="{ty}" font-size="13" fill="#222">{n}</text>"##,
            ty = y + 14.0,
            name = st.as_str(),
            c = state_colour(*st),
            tx = 136.0 + bw,
        );
    }
    s.push_str("</svg>");
    s
}

fn legend(series: &[Series], colours: &[&str], x0: f64, y: f64) -> String {
    let mut s = String::new();
    let mut x = x0;
    for (i, se) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        let _ = write!(
            s,
            r##"<rect x="{x}" y="{ry}" width="10" height="10" fill="{c}"/><text x="{tx}" y="{y}" font-size="11" fill="#222">{n}</text>"##,
            ry = y - 9.0,
            tx = x + 14.0,
            n = esc(&se.name)
        );
        x += 24.0 + 7.0 * se.name.len() as f64;
    }
    s
}

fn axes(days: &[String], max: i64, w: f64, h: f64, left: f64, bottom: f64) -> String {
    let mut s = format!(
        r##"<line x1="{left}" y1="10" x2="{left}" y2="{b}" stroke="#888"/><line x1="{left}" y1="{b}" x2="{w}" y2="{b}" stroke="#888"/><text x="2" y="18" font-size="11" fill="#555">{max}</text><text x="2" y="{b}" font-size="11" fill="#555">0</text>"##,
        b = h - bottom,
    );
    let step = (w - left) / days.len().max(1) as f64;
    for (i, d) in days.iter().enumerate() {
        if i % 2 == 0 {
            let _ = write!(
                s,
                r##"<text x="{x:.1}" y="{y}" font-size="10" fill="#555">{}</text>"##,
                esc(d.get(5..).unwrap_or(d)),
                x = left + step * i as f64,
                y = h - bottom + 14.0,
            );
        }
    }
    s
}

/// Grouped daily bars.
pub(crate) fn daily_bars(label: &str, days: &[String], series: &[Series]) -> String {
    let (w, h, left, bottom) = (620.0, 220.0, 30.0, 40.0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}">"#,
        esc(label)
    );
    s.push_str(&axes(days, max, w, h, left, bottom));
    let step = (w - left) / days.len().max(1) as f64;
    let bar = (step - 4.0) / series.len().max(1) as f64;
    let plot = h - bottom - 12.0;
    for (si, se) in series.iter().enumerate() {
        for (di, v) in se.values.iter().enumerate() {
            if *v == 0 {
                continue;
            }
            let bh = *v as f64 / max as f64 * plot;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{c}"><title>{d} {n}: {v}</title></rect>"#,
                x = left + 2.0 + step * di as f64 + bar * si as f64,
                y = h - bottom - bh,
                bw = bar.max(1.0),
                c = COLOURS[si % COLOURS.len()],
                d = esc(days.get(di).map_or("", String::as_str)),
                n = esc(&se.name),
            );
        }
    }
    s.push_str(&legend(series, &COLOURS, left, h - 4.0));
    s.push_str("</svg>");
    s
}

/// One line per state over the days.
pub(crate) fn state_lines(days: &[String], series: &[Series]) -> String {
    let (w, h, left, bottom) = (620.0, 220.0, 30.0, 40.0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Port-25 states over time">"#
    );
    s.push_str(&axes(days, max, w, h, left, bottom));
    let step = (w - left) / days.len().max(1) as f64;
    let plot = h - bottom - 12.0;
    let colours: Vec<&str> = Port25State::ALL.iter().map(|s| state_colour(*s)).collect();
    for (si, se) in series.iter().enumerate() {
        let pts: Vec<String> = se
            .values
            .iter()
            .enumerate()
            .map(|(di, v)| {
                format!(
                    "{:.1},{:.1}",
                    left + step * di as f64 + step / 2.0,
                    h - bottom - *v as f64 / max as f64 * plot
                )
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{p}"><title>{n}</title></polyline>"#,
            c = colours[si % colours.len()],
            p = pts.join(" "),
            n = esc(&se.name)
        );
    }
    s.push_str(&legend(series, &colours, left, h - 4.0));
    s.push_str("</svg>");
    s
}
