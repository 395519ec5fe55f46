//! Abuse evidence and cases in the store: evidence items (complaints, DNSBL listings,
//! flow fan-out, submission anomalies) with their attribution, per-subscriber cases,
//! the fingerprints of reports already seen, DNSBL listing state, customer notices,
//! and the `suspended` flag that a submission anomaly sets.
//!
//! The abuse crate decides; this module only stores and fetches.

use std::net::IpAddr;

use policy::{Actor, Timestamp};
use serde::Serialize;
use serde_json::json;

use crate::db::{Row, Stmt};
use crate::error::StoreError;
use crate::events::append;
use crate::{params, Store};

/// Schema version 5: evidence and cases.
pub(crate) const MIGRATION: &str = "
CREATE TABLE abuse_cases (
    id {serial},
    login TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    closed_at BIGINT,
    note TEXT
);
CREATE UNIQUE INDEX abuse_cases_open ON abuse_cases (login) WHERE status = 'open';
CREATE INDEX abuse_cases_login ON abuse_cases (login, id);
CREATE TABLE abuse_evidence (
    id {serial},
    kind TEXT NOT NULL,
    fingerprint TEXT,
    ip TEXT,
    at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    login TEXT,
    case_id BIGINT,
    unattributed TEXT,
    summary TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX abuse_evidence_login ON abuse_evidence (login, kind, at);
CREATE INDEX abuse_evidence_case ON abuse_evidence (case_id, id);
CREATE TABLE abuse_seen (
    fingerprint TEXT PRIMARY KEY,
    first_seen BIGINT NOT NULL,
    evidence_id BIGINT
);
CREATE TABLE dnsbl_listings (
    ip TEXT NOT NULL,
    zone TEXT NOT NULL,
    listed BIGINT NOT NULL,
    code TEXT,
    reason TEXT,
    listed_at BIGINT,
    delisted_at BIGINT,
    checked_at BIGINT NOT NULL,
    PRIMARY KEY (ip, zone)
);
CREATE TABLE abuse_notices (
    id {serial},
    login TEXT NOT NULL,
    case_id BIGINT,
    kind TEXT NOT NULL,
    recipient TEXT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    queue_id TEXT
);
CREATE INDEX abuse_notices_login ON abuse_notices (login, kind, created_at);
";

/// One piece of evidence to record.
#[derive(Clone, Debug)]
pub struct NewEvidence {
    /// `complaint`, `listing`, `delisting`, `flow`, `anomaly`.
    pub kind: String,
    /// Dedup key: evidence with a fingerprint already seen is not recorded again.
    pub fingerprint: Option<String>,
    pub ip: Option<IpAddr>,
    /// When the abuse happened (not when we heard of it).
    pub at: Timestamp,
    /// The subscriber who held `ip` at `at`; `None` with `unattributed` saying why.
    pub login: Option<String>,
    pub unattributed: Option<String>,
    /// One line an operator reads in `abuse cases`.
    pub summary: String,
    /// Everything else, as JSON (the complaint, the listing's code and reason...).
    pub detail: serde_json::Value,
}

/// A stored piece of evidence.
#[derive(Clone, Debug, Serialize)]
pub struct EvidenceRecord {
    pub id: i64,
    pub kind: String,
    pub ip: Option<String>,
    pub at: Timestamp,
    pub recorded_at: Timestamp,
    pub login: Option<String>,
    pub case_id: Option<i64>,
    pub unattributed: Option<String>,
    pub summary: String,
    pub detail: serde_json::Value,
}

/// A subscriber's abuse case: the evidence against them while it is open.
#[derive(Clone, Debug, Serialize)]
pub struct AbuseCase {
    pub id: i64,
    pub login: String,
    /// `open` or `closed`.
    pub status: String,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    pub evidence_count: i64,
    /// Evidence counts by kind, e.g. `{"complaint": 2, "flow": 1}`.
    pub by_kind: std::collections::BTreeMap<String, i64>,
}

/// A notice to a customer.
#[derive(Clone, Debug)]
pub struct NewNotice {
    pub login: String,
    pub case_id: Option<i64>,
    /// `reinstated`, `infection`, `suspended`.
    pub kind: String,
    pub recipient: Option<String>,
    pub subject: String,
    pub body: String,
    /// `pending-mail` (no queue yet), `queued`, `no-address`.
    pub status: String,
}

/// A stored notice.
#[derive(Clone, Debug, Serialize)]
pub struct NoticeRecord {
    pub id: i64,
    pub login: String,
    pub case_id: Option<i64>,
    pub kind: String,
    pub recipient: Option<String>,
    pub subject: String,
    pub body: String,
    pub status: String,
    pub created_at: Timestamp,
    pub queue_id: Option<String>,
}

/// What the store knows of one address in one DNSBL zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsblState {
    pub ip: String,
    pub zone: String,
    pub listed: bool,
    /// The A answer, e.g. `127.0.0.2`.
    pub code: Option<String>,
    /// The TXT answer.
    pub reason: Option<String>,
    pub listed_at: Option<Timestamp>,
    pub delisted_at: Option<Timestamp>,
    pub checked_at: Timestamp,
}

const EVIDENCE_COLUMNS: &str =
    "id, kind, ip, at, recorded_at, login, case_id, unattributed, summary, detail";

fn parse_evidence(r: &Row) -> Result<EvidenceRecord, StoreError> {
    Ok(EvidenceRecord {
        id: r.int(0)?,
        kind: r.text(1)?,
        ip: r.opt_text(2)?,
        at: Timestamp(r.int(3)?),
        recorded_at: Timestamp(r.int(4)?),
        login: r.opt_text(5)?,
        case_id: r.opt_int(6)?,
        unattributed: r.opt_text(7)?,
        summary: r.text(8)?,
        detail: serde_json::from_str(&r.text(9)?)
            .map_err(|e| StoreError::Corrupt(format!("evidence detail: {e}")))?,
    })
}

const NOTICE_COLUMNS: &str =
    "id, login, case_id, kind, recipient, subject, body, status, created_at, queue_id";

fn parse_notice(r: &Row) -> Result<NoticeRecord, StoreError> {
    Ok(NoticeRecord {
        id: r.int(0)?,
        login: r.text(1)?,
        case_id: r.opt_int(2)?,
        kind: r.text(3)?,
        recipient: r.opt_text(4)?,
        subject: r.text(5)?,
        body: r.text(6)?,
        status: r.text(7)?,
        created_at: Timestamp(r.int(8)?),
        queue_id: r.opt_text(9)?,
    })
}

impl Store {
    /// Records one piece of evidence, opening the subscriber's case when none is
    /// open. Returns `None` when its fingerprint was already seen (the same report
    /// twice counts once).
    pub async fn record_evidence(
        &self,
        e: &NewEvidence,
    ) -> Result<Option<EvidenceRecord>, StoreError> {
        let now = self.now();
        if let Some(fp) = &e.fingerprint {
            if self
                .db
                .query_one(
                    "SELECT fingerprint FROM abuse_seen WHERE fingerprint = $1",
                    params![fp],
                )
                .await?
                .is_some()
            {
                return Ok(None);
            }
        }
        let mut stmts = Vec::new();
        if let Some(fp) = &e.fingerprint {
            stmts.push(
                Stmt::new(
                    "INSERT INTO abuse_seen (fingerprint, first_seen) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    params![fp, now.0],
                )
                .expect(1),
            );
        }
        if let Some(login) = &e.login {
            stmts.push(Stmt::new(
                "INSERT INTO abuse_cases (login, status, opened_at, updated_at) \
                 SELECT CAST($1 AS TEXT), 'open', CAST($2 AS BIGINT), CAST($2 AS BIGINT) \
                 WHERE NOT EXISTS (SELECT 1 FROM abuse_cases WHERE login = $1 AND status = 'open')",
                params![login, now.0],
            ));
            stmts.push(Stmt::new(
                "UPDATE abuse_cases SET updated_at = $1 WHERE login = $2 AND status = 'open'",
                params![now.0, login],
            ));
        }
        stmts.push(Stmt::new(
            "INSERT INTO abuse_evidence (kind, fingerprint, ip, at, recorded_at, login, case_id, unattributed, summary, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, (SELECT id FROM abuse_cases WHERE login = $6 AND status = 'open'), $7, $8, $9)",
            params![
                &e.kind,
                e.fingerprint.clone(),
                e.ip.map(|i| i.to_string()),
                e.at.0,
                now.0,
                e.login.clone(),
                e.unattributed.clone(),
                &e.summary,
                e.detail.to_string()
            ],
        ));
        stmts.push(append(
            now,
            "abuse.evidence",
            e.login.as_deref(),
            json!({ "kind": e.kind, "ip": e.ip, "at": e.at, "summary": e.summary, "unattributed": e.unattributed }),
        ));
        match self.db.tx(stmts, true).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => return Ok(None),
            Err(err) => return Err(err),
        }
        let rec = match &e.fingerprint {
            Some(fp) => {
                self.db
                    .query_one(
                        &format!("SELECT {EVIDENCE_COLUMNS} FROM abuse_evidence WHERE fingerprint = $1 ORDER BY id DESC LIMIT 1"),
                        params![fp],
                    )
                    .await?
            }
            None => {
                self.db
                    .query_one(
                        &format!("SELECT {EVIDENCE_COLUMNS} FROM abuse_evidence WHERE kind = $1 AND recorded_at = $2 AND summary = $3 ORDER BY id DESC LIMIT 1"),
                        params![&e.kind, now.0, &e.summary],
                    )
                    .await?
            }
        };
        rec.map(|r| parse_evidence(&r)).transpose()
    }

    /// Whether a report with this fingerprint was already recorded.
    pub async fn evidence_seen(&self, fingerprint: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .query_one(
                "SELECT fingerprint FROM abuse_seen WHERE fingerprint = $1",
                params![fingerprint],
            )
            .await?
            .is_some())
    }

    /// How many pieces of evidence of `kind` against `login` happened at or after `since`.
    pub async fn count_evidence(
        &self,
        login: &str,
        kind: &str,
        since: Timestamp,
    ) -> Result<i64, StoreError> {
        let r = self
            .db
            .query_one(
                "SELECT COUNT(*) FROM abuse_evidence WHERE login = $1 AND kind = $2 AND at >= $3",
                params![login, kind, since.0],
            )
            .await?;
        r.map_or(Ok(0), |r| r.int(0))
    }

    /// Evidence against one subscriber (or the unattributed evidence when `login` is
    /// `None`), newest first.
    pub async fn evidence_of(
        &self,
        login: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EvidenceRecord>, StoreError> {
        let rows = match login {
            Some(l) => self.db.query(
                &format!("SELECT {EVIDENCE_COLUMNS} FROM abuse_evidence WHERE login = $1 ORDER BY id DESC LIMIT $2"),
                params![l, limit],
            ).await?,
            None => self.db.query(
                &format!("SELECT {EVIDENCE_COLUMNS} FROM abuse_evidence WHERE login IS NULL ORDER BY id DESC LIMIT $1"),
                params![limit],
            ).await?,
        };
        rows.iter().map(parse_evidence).collect()
    }

    /// The evidence of one case, oldest first.
    pub async fn case_evidence(&self, case_id: i64) -> Result<Vec<EvidenceRecord>, StoreError> {
        self.db
            .query(
                &format!(
                    "SELECT {EVIDENCE_COLUMNS} FROM abuse_evidence WHERE case_id = $1 ORDER BY id"
                ),
                params![case_id],
            )
            .await?
            .iter()
            .map(parse_evidence)
            .collect()
    }

    /// Abuse cases, newest activity first: one subscriber's, or everyone's.
    pub async fn abuse_cases(&self, login: Option<&str>) -> Result<Vec<AbuseCase>, StoreError> {
        let cols = "c.id, c.login, c.status, c.opened_at, c.updated_at, c.closed_at";
        let rows = match login {
            Some(l) => {
                self.db
                    .query(
                        &format!("SELECT {cols} FROM abuse_cases c WHERE c.login = $1 ORDER BY c.updated_at DESC, c.id DESC"),
                        params![l],
                    )
                    .await?
            }
            None => {
                self.db
                    .query(
                        &format!("SELECT {cols} FROM abuse_cases c ORDER BY c.updated_at DESC, c.id DESC"),
                        vec![],
                    )
                    .await?
            }
        };
        let mut cases = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = r.int(0)?;
            let mut by_kind = std::collections::BTreeMap::new();
            for k in self
                .db
                .query(
                    "SELECT kind, COUNT(*) FROM abuse_evidence WHERE case_id = $1 GROUP BY kind",
                    params![id],
                )
                .await?
            {
                by_kind.insert(k.text(0)?, k.int(1)?);
            }
            cases.push(AbuseCase {
                id,
                login: r.text(1)?,
                status: r.text(2)?,
                opened_at: Timestamp(r.int(3)?),
                updated_at: Timestamp(r.int(4)?),
                closed_at: r.opt_int(5)?.map(Timestamp),
                evidence_count: by_kind.values().sum(),
                by_kind,
            });
        }
        Ok(cases)
    }

    /// The open case of a subscriber, if any.
    pub async fn open_case(&self, login: &str) -> Result<Option<AbuseCase>, StoreError> {
        Ok(self
            .abuse_cases(Some(login))
            .await?
            .into_iter()
            .find(|c| c.status == "open"))
    }

    /// Closes a case (an operator dealt with it); false when it was not open.
    pub async fn close_case(
        &self,
        case_id: i64,
        actor: &Actor,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let Some(r) = self
            .db
            .query_one(
                "SELECT login FROM abuse_cases WHERE id = $1 AND status = 'open'",
                params![case_id],
            )
            .await?
        else {
            return Ok(false);
        };
        let login = r.text(0)?;
        let now = self.now();
        let stmts = vec![
            Stmt::new(
                "UPDATE abuse_cases SET status = 'closed', closed_at = $1, note = $2 WHERE id = $3 AND status = 'open'",
                params![now.0, reason, case_id],
            )
            .expect(1),
            audit(now, actor, &login, "case-close", reason),
            append(now, "abuse.case_closed", Some(&login), json!({ "case": case_id, "actor": actor })),
        ];
        match self.db.tx(stmts, true).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records a customer notice; returns its id.
    pub async fn record_notice(&self, n: &NewNotice) -> Result<NoticeRecord, StoreError> {
        let now = self.now();
        self.db
            .tx(
                vec![
                    Stmt::new(
                        "INSERT INTO abuse_notices (login, case_id, kind, recipient, subject, body, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        params![&n.login, n.case_id, &n.kind, n.recipient.clone(), &n.subject, &n.body, &n.status, now.0],
                    ),
                    append(now, "abuse.notice", Some(&n.login), json!({ "kind": n.kind, "status": n.status })),
                ],
                true,
            )
            .await?;
        let r = self
            .db
            .query_one(
                &format!("SELECT {NOTICE_COLUMNS} FROM abuse_notices WHERE login = $1 AND kind = $2 ORDER BY id DESC LIMIT 1"),
                params![&n.login, &n.kind],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("notice vanished after insert".into()))?;
        parse_notice(&r)
    }

    /// Marks a notice as handed to the mail queue.
    pub async fn set_notice_queued(&self, id: i64, queue_id: &str) -> Result<(), StoreError> {
        self.db
            .tx(
                vec![Stmt::new(
                    "UPDATE abuse_notices SET status = 'queued', queue_id = $1 WHERE id = $2",
                    params![queue_id, id],
                )],
                false,
            )
            .await?;
        Ok(())
    }

    /// Notices, newest first: one subscriber's, or everyone's.
    pub async fn notices(
        &self,
        login: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NoticeRecord>, StoreError> {
        let rows = match login {
            Some(l) => self.db.query(
                &format!("SELECT {NOTICE_COLUMNS} FROM abuse_notices WHERE login = $1 ORDER BY id DESC LIMIT $2"),
                params![l, limit],
            ).await?,
            None => self.db.query(
                &format!("SELECT {NOTICE_COLUMNS} FROM abuse_notices ORDER BY id DESC LIMIT $1"),
                params![limit],
            ).await?,
        };
        rows.iter().map(parse_notice).collect()
    }

    /// When `login` was last sent a notice of `kind`.
    pub async fn last_notice_at(
        &self,
        login: &str,
        kind: &str,
    ) -> Result<Option<Timestamp>, StoreError> {
        let r = self
            .db
            .query_one(
                "SELECT MAX(created_at) FROM abuse_notices WHERE login = $1 AND kind = $2",
                params![login, kind],
            )
            .await?;
        Ok(r.map(|r| r.opt_int(0))
            .transpose()?
            .flatten()
            .map(Timestamp))
    }

    /// Suspends (or lifts the suspension of) a subscriber's sending through
    /// submission, with its audit entry and a `subscriber.suspended` event. Returns
    /// false when the flag already had that value.
    pub async fn set_suspended(
        &self,
        login: &str,
        suspended: bool,
        actor: &Actor,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let stmts = vec![
            Stmt::new(
                "UPDATE subscribers SET suspended = $1, version = version + 1 WHERE login = $2 AND suspended <> $1",
                params![suspended, login],
            )
            .expect(1),
            audit(
                now,
                actor,
                login,
                if suspended { "suspend" } else { "unsuspend" },
                reason,
            ),
            append(
                now,
                "subscriber.suspended",
                Some(login),
                json!({ "suspended": suspended, "actor": actor, "reason": reason }),
            ),
        ];
        match self.db.tx(stmts, true).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => {
                self.subscriber(login).await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The DNSBL state of one address in one zone.
    pub async fn dnsbl_state(
        &self,
        ip: IpAddr,
        zone: &str,
    ) -> Result<Option<DnsblState>, StoreError> {
        let r = self
            .db
            .query_one(
                "SELECT ip, zone, listed, code, reason, listed_at, delisted_at, checked_at FROM dnsbl_listings WHERE ip = $1 AND zone = $2",
                params![ip.to_string(), zone],
            )
            .await?;
        r.map(|r| parse_dnsbl(&r)).transpose()
    }

    /// Every address currently listed, by zone.
    pub async fn dnsbl_listed(&self) -> Result<Vec<DnsblState>, StoreError> {
        self.db
            .query(
                "SELECT ip, zone, listed, code, reason, listed_at, delisted_at, checked_at FROM dnsbl_listings WHERE listed = 1 ORDER BY zone, ip",
                vec![],
            )
            .await?
            .iter()
            .map(parse_dnsbl)
            .collect()
    }

    /// Records the result of one DNSBL lookup: `Some((code, reason))` when listed.
    pub async fn set_dnsbl_state(
        &self,
        ip: IpAddr,
        zone: &str,
        listing: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let ip = ip.to_string();
        let stmt = match listing {
            Some((code, reason)) => Stmt::new(
                "INSERT INTO dnsbl_listings (ip, zone, listed, code, reason, listed_at, delisted_at, checked_at) VALUES ($1, $2, 1, $3, $4, $5, NULL, $5) \
                 ON CONFLICT (ip, zone) DO UPDATE SET code = excluded.code, reason = excluded.reason, checked_at = excluded.checked_at, \
                 listed_at = CASE WHEN dnsbl_listings.listed = 1 THEN dnsbl_listings.listed_at ELSE excluded.listed_at END, listed = 1, delisted_at = NULL",
                params![ip, zone, code, reason, now.0],
            ),
            None => Stmt::new(
                "INSERT INTO dnsbl_listings (ip, zone, listed, checked_at) VALUES ($1, $2, 0, $3) \
                 ON CONFLICT (ip, zone) DO UPDATE SET checked_at = excluded.checked_at, \
                 delisted_at = CASE WHEN dnsbl_listings.listed = 1 THEN excluded.checked_at ELSE dnsbl_listings.delisted_at END, listed = 0",
                params![ip, zone, now.0],
            ),
        };
        self.db.tx(vec![stmt], false).await?;
        Ok(())
    }

    /// The IPv4 addresses worth checking against DNSBLs: every address of an open
    /// lease (static addresses included), networks expanded up to /24.
    pub async fn leased_ipv4_addresses(&self) -> Result<Vec<std::net::Ipv4Addr>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT DISTINCT net FROM leases WHERE end_at IS NULL ORDER BY net",
                vec![],
            )
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let net: policy::IpNet = r
                .text(0)?
                .parse()
                .map_err(|e: policy::NetError| StoreError::Corrupt(e.to_string()))?;
            let (IpAddr::V4(base), true) = (net.addr(), net.prefix_len() >= 24) else {
                continue;
            };
            let base = u32::from(base);
            let size = 1u32 << (32 - u32::from(net.prefix_len()));
            for i in 0..size {
                out.push(std::net::Ipv4Addr::from(base.wrapping_add(i)));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl Store {
    /// [`Store::whois`] for many (address, time) pairs at once: a few queries for a
    /// whole batch instead of one per address (complaint intake in bulk).
    pub async fn whois_many(
        &self,
        queries: &[(IpAddr, Timestamp)],
    ) -> Result<Vec<Option<crate::LeaseRecord>>, StoreError> {
        use std::collections::{BTreeSet, HashMap};
        // The network keys that can contain each address, one per prefix length.
        let candidates = |addr: IpAddr| -> Vec<String> {
            let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
            let key = policy::net::addr_key(addr);
            (0..=width)
                .map(|p| {
                    let mask = 1u128
                        .checked_shl(u32::from(width - p))
                        .map_or(u128::MAX, |m| m - 1);
                    crate::leases::key_hex(key & !mask)
                })
                .collect()
        };
        let all: BTreeSet<String> = queries.iter().flat_map(|(a, _)| candidates(*a)).collect();
        let all: Vec<String> = all.into_iter().collect();
        let mut by_lo: HashMap<String, Vec<crate::LeaseRecord>> = HashMap::new();
        for chunk in all.chunks(2000) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT id, login, net, start_at, end_at, source, session_id, nas, lo FROM leases WHERE lo IN ({list})"
            );
            let params = chunk
                .iter()
                .map(|k| crate::Value::from(k.as_str()))
                .collect();
            for r in self.db.query(&sql, params).await? {
                let source = r.text(5)?;
                let rec = crate::LeaseRecord {
                    id: r.int(0)?,
                    lease: policy::Lease {
                        login: r.text(1)?,
                        net: r
                            .text(2)?
                            .parse()
                            .map_err(|e: policy::NetError| StoreError::Corrupt(e.to_string()))?,
                        start: Timestamp(r.int(3)?),
                        end: r.opt_int(4)?.map(Timestamp),
                        source: policy::LeaseSource::parse(&source).ok_or_else(|| {
                            StoreError::Corrupt(format!("lease source '{source}'"))
                        })?,
                    },
                    session_id: r.opt_text(6)?,
                    nas: r.opt_text(7)?,
                };
                by_lo.entry(r.text(8)?).or_default().push(rec);
            }
        }
        Ok(queries
            .iter()
            .map(|(addr, at)| {
                let records: Vec<&crate::LeaseRecord> = candidates(*addr)
                    .iter()
                    .filter_map(|k| by_lo.get(k))
                    .flatten()
                    .filter(|l| l.lease.net.contains(*addr))
                    .collect();
                let leases: Vec<policy::Lease> = records.iter().map(|r| r.lease.clone()).collect();
                let held = policy::who_held(&leases, *addr, *at)?;
                records.into_iter().find(|r| &r.lease == held).cloned()
            })
            .collect())
    }
}

fn parse_dnsbl(r: &Row) -> Result<DnsblState, StoreError> {
    Ok(DnsblState {
        ip: r.text(0)?,
        zone: r.text(1)?,
        listed: r.int(2)? != 0,
        code: r.opt_text(3)?,
        reason: r.opt_text(4)?,
        listed_at: r.opt_int(5)?.map(Timestamp),
        delisted_at: r.opt_int(6)?.map(Timestamp),
        checked_at: Timestamp(r.int(7)?),
    })
}

fn audit(at: Timestamp, actor: &Actor, login: &str, action: &str, reason: &str) -> Stmt {
    Stmt::new(
        "INSERT INTO audit (at, actor, login, action, from_state, to_state, reason) VALUES ($1, $2, $3, $4, NULL, NULL, $5)",
        params![at.0, actor.to_string(), login, action, reason],
    )
}
