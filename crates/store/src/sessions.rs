//! RADIUS sessions in the store: what the accounting side of `enforce` needs beyond
//! plain leases. A session is the set of open `radius` leases sharing one NAS and
//! Acct-Session-Id (an IPv4 address and IPv6 prefixes); this module opens, refreshes
//! and closes them, closes all of a NAS's sessions (Accounting-On/Off) and sessions
//! whose interim updates stopped, finds the live sessions of a login for CoA, and
//! records CoA outcomes in the audit log. It does not decide anything: `enforce` does.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use policy::{Actor, IpNet, LeaseSource, Port25State, Timestamp};
use serde::Serialize;
use serde_json::json;

use crate::db::{Query, Stmt, Unflushed, Value};
use crate::error::StoreError;
use crate::events::append;
use crate::leases::key_hex;
use crate::{params, Store};

/// Schema version 4: session bookkeeping. `last_seen` is the time of the newest
/// accounting packet of an open RADIUS lease (NULL until the first interim update).
pub(crate) const MIGRATION: &str = "
ALTER TABLE leases ADD COLUMN last_seen BIGINT;
CREATE INDEX leases_session ON leases (nas, session_id);
";

/// Schema version 10: the open leases of a session are found without reading its
/// closed ones (a NAS that reuses session ids, or a long-lived id, would otherwise
/// make every accounting packet read the session's whole history). Closed leases of
/// a session are looked up by login ([`Store::session_leases`]), which is rare.
pub(crate) const OPEN_SESSIONS_MIGRATION: &str = "
DROP INDEX leases_session;
CREATE INDEX leases_open_session ON leases (nas, session_id) WHERE end_at IS NULL;
";

/// What one accounting packet says about a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionReport {
    /// The NAS that sent the accounting (where CoA goes).
    pub nas: IpAddr,
    pub session_id: String,
    /// User-Name, the subscriber's login.
    pub login: String,
    /// Framed-IP-Address as a host, Framed-IPv6-Prefix, Delegated-IPv6-Prefix.
    pub nets: Vec<IpNet>,
    /// When the event happened (Event-Timestamp, or arrival minus Acct-Delay-Time).
    pub at: Timestamp,
    /// Acct-Session-Time: seconds since the session started, when known.
    pub session_time: Option<u32>,
}

/// A live session of a login, as CoA needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSession {
    pub nas: IpAddr,
    pub session_id: String,
    pub login: String,
}

/// What the RADIUS server needs to answer an Access-Request, in one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadiusProfile {
    pub password_hash: Option<String>,
    pub port25: Port25State,
    /// The first static IPv4 host address, for Framed-IP-Address.
    pub framed_ipv4: Option<Ipv4Addr>,
}

impl SessionReport {
    fn started_at(&self) -> Timestamp {
        Timestamp(self.at.0 - i64::from(self.session_time.unwrap_or(0)))
    }
}

/// The kind of accounting packet a [`SessionReport`] came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    Start,
    Interim,
    Stop,
}

/// A session as the store holds it: its NAS (as text) and Acct-Session-Id.
type SessionKey<'a> = (&'a str, &'a str);

/// Every RADIUS lease of a session, as (net, still open).
type SessionLeases = Vec<(String, bool)>;

/// The most reports whose sessions are read with one query.
const READ_CHUNK: usize = 500;

/// How often a lone report is retried when a concurrent writer got there first.
const CONFLICT_RETRIES: usize = 3;

/// The payload of a RADIUS lease's `lease.opened` and `lease.closed` events, the
/// same text as `json!` with these keys writes, without a JSON tree per packet.
#[derive(Serialize)]
struct LeaseEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    nas: Option<IpAddr>,
    net: &'a str,
    session_id: &'a str,
}

/// Each report's NAS as the store writes it, formatted once per NAS in the batch
/// (a batch comes from a few NASes, and every statement of a report names it).
fn nas_texts(batch: &[(SessionEvent, SessionReport)]) -> Vec<String> {
    let mut formatted: Vec<(IpAddr, String)> = Vec::new();
    batch
        .iter()
        .map(
            |(_, r)| match formatted.iter().find(|(ip, _)| *ip == r.nas) {
                Some((_, text)) => text.clone(),
                None => {
                    let text = r.nas.to_string();
                    formatted.push((r.nas, text.clone()));
                    text
                }
            },
        )
        .collect()
}

impl Store {
    /// The RADIUS leases of the sessions `batch` names (with `nas`, the text of each
    /// report's NAS): the open ones, and for a Stop of a session with none open (its
    /// Start was lost), the closed ones too.
    fn session_leases<'a>(
        query: &mut Query<'_>,
        batch: &'a [(SessionEvent, SessionReport)],
        nas: &'a [String],
    ) -> Result<HashMap<SessionKey<'a>, SessionLeases>, StoreError> {
        let mut known: HashMap<SessionKey<'a>, SessionLeases> = HashMap::new();
        for ((_, r), nas) in batch.iter().zip(nas) {
            known.entry((nas, &r.session_id)).or_default();
        }
        let keys: Vec<SessionKey<'a>> = known.keys().copied().collect();
        let list = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for chunk in keys.chunks(READ_CHUNK) {
            let nases: BTreeSet<&str> = chunk.iter().map(|(n, _)| *n).collect();
            let ids: BTreeSet<&str> = chunk.iter().map(|(_, s)| *s).collect();
            // Both lists are answered by the open-session index; pairs that match
            // across two sessions are sorted out below.
            let sql = format!(
                "SELECT nas, session_id, net FROM leases WHERE end_at IS NULL AND source = 'radius' \
                 AND nas IN ({}) AND session_id IN ({}) ORDER BY id",
                list(1, nases.len()),
                list(1 + nases.len(), ids.len())
            );
            let values = nases
                .iter()
                .chain(ids.iter())
                .map(|v| Value::from(*v))
                .collect();
            for r in query(&sql, values)? {
                let (nas, id) = (r.text(0)?, r.text(1)?);
                // The map is keyed by the batch's own strings: find them by the row's.
                let key = nases.get(nas.as_str()).zip(ids.get(id.as_str()));
                if let Some(leases) = key.and_then(|(n, i)| known.get_mut(&(*n, *i))) {
                    leases.push((r.text(2)?, true));
                }
            }
        }
        let mut lost_starts = BTreeSet::new();
        for ((event, r), nas) in batch.iter().zip(nas) {
            let key = (nas.as_str(), r.session_id.as_str());
            if *event == SessionEvent::Stop && known.get(&key).is_some_and(|l| l.is_empty()) {
                lost_starts.insert((r.login.as_str(), key));
            }
        }
        for (login, key) in lost_starts {
            let rows = query(
                "SELECT net FROM leases WHERE login = $1 AND nas = $2 AND session_id = $3 \
                 AND source = 'radius' AND end_at IS NOT NULL ORDER BY id",
                params![login, key.0, key.1],
            )?;
            let leases = known.entry(key).or_default();
            for r in rows {
                leases.push((r.text(0)?, false));
            }
        }
        Ok(known)
    }

    /// Statements opening leases for the nets of `report` not open in `leases` (or,
    /// with an `end`, not known at all), and their events; `leases` learns them.
    fn open_stmts(
        &self,
        report: &SessionReport,
        nas: &str,
        leases: &mut SessionLeases,
        end: Option<Timestamp>,
        last_seen: Option<Timestamp>,
        stmts: &mut Vec<Stmt>,
    ) -> usize {
        let now = self.now();
        let start = report.started_at();
        let mut opened = 0;
        for net in &report.nets {
            let text = net.to_string();
            let skip = |(n, open): &(String, bool)| *n == text && (*open || end.is_some());
            if leases.iter().any(skip) {
                continue;
            }
            let (lo, hi) = net.key_range();
            stmts.push(Stmt::new(
                "INSERT INTO leases (login, net, lo, hi, start_at, end_at, source, session_id, nas, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                params![
                    &report.login,
                    &text,
                    key_hex(lo),
                    key_hex(hi),
                    start.0,
                    end.map(|e| e.0),
                    LeaseSource::Radius.as_str(),
                    &report.session_id,
                    nas,
                    last_seen.map(|t| t.0)
                ],
            ));
            let payload = LeaseEvent {
                nas: Some(report.nas),
                net: &text,
                session_id: &report.session_id,
            };
            stmts.push(append(now, "lease.opened", Some(&report.login), &payload));
            if end.is_some() {
                stmts.push(append(now, "lease.closed", Some(&report.login), &payload));
            }
            leases.push((text, end.is_none()));
            opened += 1;
        }
        opened
    }

    /// The statements one accounting packet needs given what its session holds
    /// (`leases`, updated as if they ran), and the number of leases it opens or closes.
    fn account_stmts(
        &self,
        event: SessionEvent,
        report: &SessionReport,
        nas: &str,
        leases: &mut SessionLeases,
        stmts: &mut Vec<Stmt>,
    ) -> usize {
        match event {
            // A retransmitted Start changes nothing: its nets are open already.
            SessionEvent::Start => self.open_stmts(report, nas, leases, None, None, stmts),
            SessionEvent::Interim => {
                let opened = self.open_stmts(report, nas, leases, None, Some(report.at), stmts);
                stmts.push(Stmt::new(
                    "UPDATE leases SET last_seen = $1 WHERE nas = $2 AND session_id = $3 AND end_at IS NULL AND source = 'radius'",
                    params![report.at.0, nas, &report.session_id],
                ));
                opened
            }
            SessionEvent::Stop => {
                let closed = leases.iter().filter(|(_, open)| *open).count();
                if closed == 0 {
                    // A Stop for a session whose Start was lost still records who held
                    // the addresses; nets it already has (closed) leases for were
                    // recorded by an earlier copy of this Stop.
                    return self.open_stmts(
                        report,
                        nas,
                        leases,
                        Some(report.at),
                        Some(report.at),
                        stmts,
                    );
                }
                let now = self.now();
                stmts.push(
                    Stmt::new(
                        "UPDATE leases SET end_at = $1, last_seen = $1 WHERE nas = $2 AND session_id = $3 AND end_at IS NULL AND source = 'radius'",
                        params![report.at.0, nas, &report.session_id],
                    )
                    // Fewer means a concurrent writer closed some: read again.
                    .expect(closed as u64),
                );
                for lease in leases.iter_mut().filter(|(_, open)| *open) {
                    lease.1 = false;
                    stmts.push(append(
                        now,
                        "lease.closed",
                        Some(&report.login),
                        LeaseEvent {
                            nas: None,
                            net: &lease.0,
                            session_id: &report.session_id,
                        },
                    ));
                }
                closed
            }
        }
    }

    /// Runs `batch` in one transaction; per report, the leases it opened or closed,
    /// and the commit to wait for before telling anyone.
    async fn account_together(
        &self,
        batch: &[(SessionEvent, SessionReport)],
    ) -> Result<(Vec<usize>, Unflushed), StoreError> {
        let store = self.clone();
        let batch = batch.to_vec();
        self.db
            .read_then_tx(move |query| {
                let nas = nas_texts(&batch);
                let mut known = Store::session_leases(query, &batch, &nas)?;
                let mut stmts = Vec::with_capacity(batch.len() * 3);
                let mut counts = Vec::with_capacity(batch.len());
                for ((event, report), nas) in batch.iter().zip(&nas) {
                    let leases = known.entry((nas, &report.session_id)).or_default();
                    counts.push(store.account_stmts(*event, report, nas, leases, &mut stmts));
                }
                Ok((counts, stmts))
            })
            .await
    }

    /// One accounting packet in its own transaction, read again and retried when a
    /// concurrent writer (a Stop, the stale-session sweeper) changed the session first.
    async fn account_one(
        &self,
        event: SessionEvent,
        report: &SessionReport,
    ) -> Result<usize, StoreError> {
        let batch = [(event, report.clone())];
        let mut tries = 0;
        loop {
            match self.account_together(&batch).await {
                Err(StoreError::Conflict) if tries < CONFLICT_RETRIES => tries += 1,
                Err(e) => return Err(e),
                Ok((counts, unflushed)) => {
                    unflushed.flushed().await?;
                    return Ok(counts[0]);
                }
            }
        }
    }

    /// Accounting packets in bulk, in order: what arrived together is written in one
    /// transaction. Returns once it committed, with the commit to wait for before
    /// any result is told (the caller may write its next batch meanwhile, so one
    /// batch's flush overlaps the next one's writing). If the transaction fails, each
    /// packet is retried in its own, so one bad packet fails only itself. Per packet,
    /// the number of leases it opened or closed, as [`Store::session_started`],
    /// [`Store::session_interim`] and [`Store::session_stopped`] return.
    pub async fn sessions_written(
        &self,
        batch: &[(SessionEvent, SessionReport)],
    ) -> (Vec<Result<usize, StoreError>>, Unflushed) {
        match self.account_together(batch).await {
            Ok((counts, unflushed)) => (counts.into_iter().map(Ok).collect(), unflushed),
            Err(e) if batch.len() == 1 && !matches!(e, StoreError::Conflict) => {
                (vec![Err(e)], Unflushed::done())
            }
            Err(_) => {
                let mut results = Vec::with_capacity(batch.len());
                for (event, report) in batch {
                    results.push(self.account_one(*event, report).await);
                }
                (results, Unflushed::done())
            }
        }
    }

    /// [`Store::sessions_written`], returning once the batch is on disk.
    pub async fn sessions_accounted(
        &self,
        batch: &[(SessionEvent, SessionReport)],
    ) -> Vec<Result<usize, StoreError>> {
        let (results, unflushed) = self.sessions_written(batch).await;
        unflushed.settle(results).await
    }

    /// Accounting Start: opens a lease per net not already open in this session (a
    /// retransmitted Start changes nothing). Returns the number of leases opened.
    pub async fn session_started(&self, report: &SessionReport) -> Result<usize, StoreError> {
        self.account_one(SessionEvent::Start, report).await
    }

    /// Accounting Interim-Update: records that the session is alive and opens leases
    /// for nets that have none (a missed Start, or an address added mid-session),
    /// started `session_time` before `at`. Returns the number of leases opened.
    pub async fn session_interim(&self, report: &SessionReport) -> Result<usize, StoreError> {
        self.account_one(SessionEvent::Interim, report).await
    }

    /// Accounting Stop: closes every open lease of the session at `at`. A Stop for a
    /// session we never saw start still records its leases, closed, from
    /// `session_time` before `at`, so `whois` knows who held the address. Returns the
    /// number of leases closed or recorded.
    pub async fn session_stopped(&self, report: &SessionReport) -> Result<usize, StoreError> {
        self.account_one(SessionEvent::Stop, report).await
    }

    async fn close_where(
        &self,
        filter: &str,
        params: Vec<Value>,
        end_of: impl Fn(i64, Option<i64>) -> i64,
    ) -> Result<usize, StoreError> {
        let rows = self
            .db
            .query(
                &format!("SELECT id, login, net, session_id, start_at, last_seen FROM leases WHERE end_at IS NULL AND source = 'radius' AND {filter}"),
                params,
            )
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let mut stmts = Vec::with_capacity(rows.len() * 2);
        for r in &rows {
            let end = end_of(r.int(4)?, r.opt_int(5)?);
            stmts.push(Stmt::new(
                "UPDATE leases SET end_at = $1 WHERE id = $2 AND end_at IS NULL",
                params![end, r.int(0)?],
            ));
            stmts.push(append(
                now,
                "lease.closed",
                Some(&r.text(1)?),
                json!({ "net": r.text(2)?, "session_id": r.opt_text(3)? }),
            ));
        }
        self.db.tx(stmts, true).await?;
        Ok(rows.len())
    }

    /// Accounting-On or -Off from `nas`: it rebooted, so every session it had is
    /// over. Closes them at `end`; returns how many leases were closed.
    pub async fn close_nas_sessions(
        &self,
        nas: IpAddr,
        end: Timestamp,
    ) -> Result<usize, StoreError> {
        self.close_where("nas = $1", params![nas.to_string()], |start, _| {
            end.0.max(start)
        })
        .await
    }

    /// Closes sessions whose last interim update is older than `seen_before`: the NAS
    /// stopped reporting them. Each ends at its last sign of life. Sessions that never
    /// sent an interim update are left alone (not every NAS sends them).
    pub async fn close_stale_sessions(&self, seen_before: Timestamp) -> Result<usize, StoreError> {
        self.close_where(
            "last_seen IS NOT NULL AND last_seen < $1",
            params![seen_before.0],
            |start, seen| seen.unwrap_or(start).max(start),
        )
        .await
    }

    /// The live RADIUS sessions of `login` (one per NAS and session id).
    pub async fn live_sessions(&self, login: &str) -> Result<Vec<LiveSession>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT DISTINCT nas, session_id FROM leases WHERE login = $1 AND end_at IS NULL AND source = 'radius' \
                 AND nas IS NOT NULL AND session_id IS NOT NULL ORDER BY nas, session_id",
                params![login],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let nas = r.text(0)?;
                Ok(LiveSession {
                    nas: nas.parse().map_err(|_| {
                        StoreError::Corrupt(format!("lease nas '{nas}' is not an address"))
                    })?,
                    session_id: r.text(1)?,
                    login: login.to_string(),
                })
            })
            .collect()
    }

    /// The Access-Request view of `login`: one indexed query (the static addresses
    /// joined in), where [`Store::find_subscriber`] takes three.
    pub async fn radius_profile(&self, login: &str) -> Result<Option<RadiusProfile>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT s.password_hash, s.port25, a.net FROM subscribers s \
                 LEFT JOIN static_addresses a ON a.login = s.login WHERE s.login = $1 ORDER BY a.lo",
                params![login],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut framed_ipv4 = None;
        for r in &rows {
            let Some(net) = r.opt_text(2)? else { continue };
            let net: IpNet = net
                .parse()
                .map_err(|e: policy::NetError| StoreError::Corrupt(e.to_string()))?;
            if let (true, IpAddr::V4(a)) = (net.is_host(), net.addr()) {
                framed_ipv4 = Some(a);
                break;
            }
        }
        Ok(Some(RadiusProfile {
            password_hash: first.opt_text(0)?,
            port25: first.text(1)?.parse().map_err(StoreError::Corrupt)?,
            framed_ipv4,
        }))
    }

    /// What may have changed [`Store::radius_profile`] answers since event `after`:
    /// the newest event id, and per event that is not a lease change, its login
    /// (`None`, naming no subscriber, may have changed any). Reads two columns, not
    /// the payloads, so following a busy accounting log stays cheap.
    pub async fn profile_changes(
        &self,
        after: i64,
    ) -> Result<(i64, Vec<Option<String>>), StoreError> {
        let newest = self.last_event_id().await?;
        if newest <= after {
            return Ok((after, Vec::new()));
        }
        let rows = self
            .db
            .query(
                "SELECT login FROM events WHERE id > $1 AND id <= $2 AND kind NOT LIKE 'lease.%' ORDER BY id",
                params![after, newest],
            )
            .await?;
        let logins = rows
            .iter()
            .map(|r| r.opt_text(0))
            .collect::<Result<_, _>>()?;
        Ok((newest, logins))
    }

    /// Appends one audit entry, e.g. the outcome of a CoA (`actor` `system:coa`).
    pub async fn record_audit(
        &self,
        actor: &Actor,
        login: &str,
        action: &str,
        from: Option<&str>,
        to: Option<&str>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.db
            .tx(
                vec![Stmt::new(
                    "INSERT INTO audit (at, actor, login, action, from_state, to_state, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    params![self.now().0, actor.to_string(), login, action, from, to, reason],
                )],
                false,
            )
            .await?;
        Ok(())
    }
}
