//! Leases in the store: who held which address or prefix when.
//!
//! Each lease keeps its prefix as a key range (`lo`, `hi`, fixed-width hex of the
//! `u128` keys of `policy::net`), so text comparison is numeric comparison in both
//! backends. A lookup asks for the few networks that can contain the address (one per
//! prefix length) by exact `lo`, which the index answers without scanning.

use std::collections::HashSet;
use std::net::IpAddr;

use policy::{who_held, Actor, IpNet, Lease, LeaseSource, Timestamp};
use serde::Serialize;
use serde_json::json;

use crate::db::{bulk_insert, Row, Stmt, Value};
use crate::error::StoreError;
use crate::events::append;
use crate::{params, Store};

pub(crate) fn key_hex(k: u128) -> String {
    format!("{k:032x}")
}

/// The static-address row and its never-ending lease.
pub(crate) fn static_lease_stmts(login: &str, net: &IpNet, start: Timestamp) -> Vec<Stmt> {
    let (lo, hi) = net.key_range();
    vec![
        Stmt::new(
            "INSERT INTO static_addresses (net, login, lo, hi) VALUES ($1, $2, $3, $4)",
            params![net.to_string(), login, key_hex(lo), key_hex(hi)],
        ),
        Stmt::new(
            "INSERT INTO leases (login, net, lo, hi, start_at, end_at, source) VALUES ($1, $2, $3, $4, $5, NULL, 'static')",
            params![login, net.to_string(), key_hex(lo), key_hex(hi), start.0],
        ),
    ]
}

/// A lease to record, from an import or from RADIUS accounting.
#[derive(Clone, Debug)]
pub struct NewLease {
    pub login: String,
    pub net: IpNet,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub source: LeaseSource,
    pub session_id: Option<String>,
    /// The NAS that reported the session (where CoA goes).
    pub nas: Option<IpAddr>,
}

/// A stored lease with its id and session details.
#[derive(Clone, Debug, Serialize)]
pub struct LeaseRecord {
    pub id: i64,
    #[serde(flatten)]
    pub lease: Lease,
    pub session_id: Option<String>,
    pub nas: Option<String>,
}

const LEASE_COLUMNS: &str = "id, login, net, start_at, end_at, source, session_id, nas";

fn parse_lease(r: &Row) -> Result<LeaseRecord, StoreError> {
    let source = r.text(5)?;
    Ok(LeaseRecord {
        id: r.int(0)?,
        lease: Lease {
            login: r.text(1)?,
            net: r
                .text(2)?
                .parse()
                .map_err(|e: policy::NetError| StoreError::Corrupt(e.to_string()))?,
            start: Timestamp(r.int(3)?),
            end: r.opt_int(4)?.map(Timestamp),
            source: LeaseSource::parse(&source)
                .ok_or_else(|| StoreError::Corrupt(format!("lease source '{source}'")))?,
        },
        session_id: r.opt_text(6)?,
        nas: r.opt_text(7)?,
    })
}

fn lease_values(l: &NewLease) -> Vec<Value> {
    let (lo, hi) = l.net.key_range();
    params![
        &l.login,
        l.net.to_string(),
        key_hex(lo),
        key_hex(hi),
        l.start.0,
        l.end.map(|e| e.0),
        l.source.as_str(),
        l.session_id.clone(),
        l.nas.map(|a| a.to_string())
    ]
}

const LEASE_INSERT: &str =
    "INSERT INTO leases (login, net, lo, hi, start_at, end_at, source, session_id, nas) VALUES";

impl Store {
    /// Logins among `logins` that are not subscribers.
    pub async fn unknown_logins(&self, logins: &[&str]) -> Result<Vec<String>, StoreError> {
        let mut missing = Vec::new();
        for chunk in logins.chunks(500) {
            let sql = format!(
                "SELECT login FROM subscribers WHERE login IN ({})",
                (1..=chunk.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let found: HashSet<String> = self
                .db
                .query(&sql, chunk.iter().map(|l| Value::from(*l)).collect())
                .await?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<_, _>>()?;
            missing.extend(
                chunk
                    .iter()
                    .filter(|l| !found.contains(**l))
                    .map(|l| l.to_string()),
            );
        }
        Ok(missing)
    }

    /// Records many leases in one transaction (the caller checked logins and times).
    pub async fn import_leases(
        &self,
        leases: &[NewLease],
        actor: &Actor,
    ) -> Result<usize, StoreError> {
        let now = self.now();
        let mut stmts = bulk_insert(LEASE_INSERT, "", leases.iter().map(lease_values).collect());
        stmts.push(append(
            now,
            "lease.imported",
            None,
            json!({ "count": leases.len(), "actor": actor }),
        ));
        self.db.tx(stmts, true).await?;
        Ok(leases.len())
    }

    /// Opens a lease (a session started), with its `lease.opened` event.
    pub async fn open_lease(&self, lease: &NewLease) -> Result<(), StoreError> {
        let now = self.now();
        let stmts = vec![
            Stmt::new(
                format!("{LEASE_INSERT} ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
                lease_values(lease),
            ),
            append(
                now,
                "lease.opened",
                Some(&lease.login),
                json!({ "net": lease.net, "session_id": lease.session_id, "nas": lease.nas }),
            ),
        ];
        self.db.tx(stmts, true).await?;
        Ok(())
    }

    /// Closes the open lease of `session_id` from `nas`; false when there was none.
    pub async fn close_lease(
        &self,
        nas: IpAddr,
        session_id: &str,
        end: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(r) = self
            .db
            .query_one(
                &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE nas = $1 AND session_id = $2 AND end_at IS NULL"),
                params![nas.to_string(), session_id],
            )
            .await?
        else {
            return Ok(false);
        };
        let l = parse_lease(&r)?;
        let stmts = vec![
            Stmt::new(
                "UPDATE leases SET end_at = $1 WHERE id = $2 AND end_at IS NULL",
                params![end.0, l.id],
            )
            .expect(1),
            append(
                self.now(),
                "lease.closed",
                Some(&l.lease.login),
                json!({ "net": l.lease.net, "session_id": session_id }),
            ),
        ];
        match self.db.tx(stmts, true).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Leases of one subscriber, newest first.
    pub async fn leases_of(&self, login: &str, limit: i64) -> Result<Vec<LeaseRecord>, StoreError> {
        let sql = format!("SELECT {LEASE_COLUMNS} FROM leases WHERE login = $1 ORDER BY start_at DESC, id DESC LIMIT $2");
        self.db
            .query(&sql, params![login, limit])
            .await?
            .iter()
            .map(parse_lease)
            .collect()
    }

    /// Every lease, newest first.
    pub async fn all_leases(&self, limit: i64) -> Result<Vec<LeaseRecord>, StoreError> {
        let sql =
            format!("SELECT {LEASE_COLUMNS} FROM leases ORDER BY start_at DESC, id DESC LIMIT $1");
        self.db
            .query(&sql, params![limit])
            .await?
            .iter()
            .map(parse_lease)
            .collect()
    }

    /// Every lease whose prefix contains `addr`, newest first.
    pub async fn leases_covering(&self, addr: IpAddr) -> Result<Vec<LeaseRecord>, StoreError> {
        let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let key = policy::net::addr_key(addr);
        let mut params: Vec<Value> = vec![key_hex(key).into()];
        for p in 0..=width {
            let host_bits = u32::from(width - p);
            let mask = 1u128.checked_shl(host_bits).map_or(u128::MAX, |m| m - 1);
            params.push(key_hex(key & !mask).into());
        }
        let list = (2..=params.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {LEASE_COLUMNS} FROM leases WHERE lo IN ({list}) AND hi >= $1 ORDER BY start_at DESC, id DESC");
        let leases: Vec<LeaseRecord> = self
            .db
            .query(&sql, params)
            .await?
            .iter()
            .map(parse_lease)
            .collect::<Result<_, _>>()?;
        Ok(leases
            .into_iter()
            .filter(|l| l.lease.net.contains(addr))
            .collect())
    }

    /// The lease (and so the subscriber) that held `addr` at `at`.
    pub async fn whois(
        &self,
        addr: IpAddr,
        at: Timestamp,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        let records = self.leases_covering(addr).await?;
        let leases: Vec<Lease> = records.iter().map(|r| r.lease.clone()).collect();
        let held = who_held(&leases, addr, at).cloned();
        Ok(held.and_then(|h| records.into_iter().find(|r| r.lease == h)))
    }
}
