//! RADIUS sessions in the store: what the accounting side of `enforce` needs beyond
//! plain leases. A session is the set of open `radius` leases sharing one NAS and
//! Acct-Session-Id (an IPv4 address and IPv6 prefixes); this module opens, refreshes
//! and closes them, closes all of a NAS's sessions (Accounting-On/Off) and sessions
//! whose interim updates stopped, finds the live sessions of a login for CoA, and
//! records CoA outcomes in the audit log. It does not decide anything: `enforce` does.

use std::net::{IpAddr, Ipv4Addr};

use policy::{Actor, IpNet, LeaseSource, Port25State, Timestamp};
use serde_json::json;

use crate::db::Stmt;
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

/// How many leases a list of statements from `open_stmts` opens.
fn count_inserts(stmts: &[Stmt]) -> usize {
    stmts
        .iter()
        .filter(|s| s.sql.starts_with("INSERT INTO leases"))
        .count()
}

impl Store {
    /// The open RADIUS leases (id, net) of one session.
    async fn open_session_nets(
        &self,
        nas: IpAddr,
        session_id: &str,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.session_nets(nas, session_id, "AND end_at IS NULL")
            .await
    }

    /// The RADIUS leases (id, net) of one session, narrowed by the SQL in `and`.
    async fn session_nets(
        &self,
        nas: IpAddr,
        session_id: &str,
        and: &str,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self
            .db
            .query(
                &format!("SELECT id, net FROM leases WHERE nas = $1 AND session_id = $2 AND source = 'radius' {and}"),
                params![nas.to_string(), session_id],
            )
            .await?;
        rows.iter().map(|r| Ok((r.int(0)?, r.text(1)?))).collect()
    }

    /// Statements opening leases for the nets of `report` not open yet, starting at `start`.
    fn open_stmts(
        &self,
        report: &SessionReport,
        open: &[(i64, String)],
        start: Timestamp,
        end: Option<Timestamp>,
        last_seen: Option<Timestamp>,
    ) -> Vec<Stmt> {
        let now = self.now();
        let mut stmts = Vec::new();
        for net in report
            .nets
            .iter()
            .filter(|n| !open.iter().any(|(_, o)| *o == n.to_string()))
        {
            let (lo, hi) = net.key_range();
            stmts.push(Stmt::new(
                "INSERT INTO leases (login, net, lo, hi, start_at, end_at, source, session_id, nas, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                params![
                    &report.login,
                    net.to_string(),
                    key_hex(lo),
                    key_hex(hi),
                    start.0,
                    end.map(|e| e.0),
                    LeaseSource::Radius.as_str(),
                    &report.session_id,
                    report.nas.to_string(),
                    last_seen.map(|t| t.0)
                ],
            ));
            let payload = json!({ "net": net, "session_id": report.session_id, "nas": report.nas });
            stmts.push(append(
                now,
                "lease.opened",
                Some(&report.login),
                payload.clone(),
            ));
            if end.is_some() {
                stmts.push(append(now, "lease.closed", Some(&report.login), payload));
            }
        }
        stmts
    }

    /// Accounting Start: opens a lease per net not already open in this session (a
    /// retransmitted Start changes nothing). Returns the number of leases opened.
    pub async fn session_started(&self, report: &SessionReport) -> Result<usize, StoreError> {
        let open = self
            .open_session_nets(report.nas, &report.session_id)
            .await?;
        let stmts = self.open_stmts(report, &open, report.started_at(), None, None);
        let opened = count_inserts(&stmts);
        if opened > 0 {
            self.db.tx(stmts, true).await?;
        }
        Ok(opened)
    }

    /// Accounting Interim-Update: records that the session is alive and opens leases
    /// for nets that have none (a missed Start, or an address added mid-session),
    /// started `session_time` before `at`. Returns the number of leases opened.
    pub async fn session_interim(&self, report: &SessionReport) -> Result<usize, StoreError> {
        let open = self
            .open_session_nets(report.nas, &report.session_id)
            .await?;
        let mut stmts = self.open_stmts(report, &open, report.started_at(), None, Some(report.at));
        let opened = count_inserts(&stmts);
        stmts.push(Stmt::new(
            "UPDATE leases SET last_seen = $1 WHERE nas = $2 AND session_id = $3 AND end_at IS NULL AND source = 'radius'",
            params![report.at.0, report.nas.to_string(), &report.session_id],
        ));
        self.db.tx(stmts, opened > 0).await?;
        Ok(opened)
    }

    /// Interim-Updates in bulk, in one transaction: refreshes `last_seen` of each
    /// report's open leases. Returns, per report, whether every net it names (or, naming
    /// none, at least one) had an open lease; for the others the caller takes the full
    /// path, [`Store::session_interim`], which opens what is missing.
    pub async fn sessions_seen(&self, reports: &[SessionReport]) -> Result<Vec<bool>, StoreError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let stmts = reports
            .iter()
            .map(|r| {
                let mut sql = String::from(
                    "UPDATE leases SET last_seen = $1 WHERE nas = $2 AND session_id = $3 \
                     AND end_at IS NULL AND source = 'radius'",
                );
                let mut values = params![r.at.0, r.nas.to_string(), &r.session_id];
                if !r.nets.is_empty() {
                    let list: Vec<String> =
                        (4..4 + r.nets.len()).map(|i| format!("${i}")).collect();
                    sql.push_str(&format!(" AND net IN ({})", list.join(", ")));
                    values.extend(r.nets.iter().map(|n| crate::Value::from(n.to_string())));
                }
                Stmt::new(sql, values)
            })
            .collect();
        let counts = self.db.tx(stmts, false).await?;
        Ok(reports
            .iter()
            .zip(counts)
            .map(|(r, n)| {
                if r.nets.is_empty() {
                    n >= 1
                } else {
                    n as usize == r.nets.len()
                }
            })
            .collect())
    }

    /// Accounting Stop: closes every open lease of the session at `at`. A Stop for a
    /// session we never saw start still records its leases, closed, from
    /// `session_time` before `at`, so `whois` knows who held the address. Returns the
    /// number of leases closed or recorded.
    pub async fn session_stopped(&self, report: &SessionReport) -> Result<usize, StoreError> {
        let open = self
            .open_session_nets(report.nas, &report.session_id)
            .await?;
        let now = self.now();
        let mut stmts = Vec::new();
        for (id, net) in &open {
            stmts.push(
                Stmt::new("UPDATE leases SET end_at = $1, last_seen = $1 WHERE id = $2 AND end_at IS NULL", params![report.at.0, *id])
                    .expect(1),
            );
            stmts.push(append(
                now,
                "lease.closed",
                Some(&report.login),
                json!({ "net": net, "session_id": report.session_id }),
            ));
        }
        let closed = open.len();
        let recorded = if open.is_empty() {
            // Nets this session already has (closed) leases for were recorded by an
            // earlier copy of this Stop.
            let known = self
                .session_nets(report.nas, &report.session_id, "")
                .await?;
            let s = self.open_stmts(
                report,
                &known,
                report.started_at(),
                Some(report.at),
                Some(report.at),
            );
            let n = count_inserts(&s);
            stmts.extend(s);
            n
        } else {
            0
        };
        if stmts.is_empty() {
            return Ok(0);
        }
        match self.db.tx(stmts, true).await {
            Ok(_) => Ok(closed + recorded),
            // A concurrent Stop closed it first.
            Err(StoreError::Conflict) => Ok(0),
            Err(e) => Err(e),
        }
    }

    async fn close_where(
        &self,
        filter: &str,
        params: Vec<crate::Value>,
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
