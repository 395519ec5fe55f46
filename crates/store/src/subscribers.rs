//! Subscribers, their static addresses and owned senders, port-25 transitions with
//! their audit entries, and opt-out requests.

use std::collections::HashMap;

use policy::{Actor, AuditEntry, IpNet, Plan, Port25Action, Port25State, Subscriber, Timestamp};
use serde::Serialize;
use serde_json::json;

use crate::db::{bulk_insert, Row, Stmt, Value};
use crate::error::StoreError;
use crate::events::append;
use crate::leases::{key_hex, static_lease_stmts};
use crate::{params, Store};

/// What `subscriber add` and `subscriber import` create. Validated by the caller
/// (login syntax, pools); the store checks uniqueness.
#[derive(Clone, Debug)]
pub struct NewSubscriber {
    pub login: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub plan: Plan,
    pub static_ips: Vec<IpNet>,
    pub password_hash: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OptoutRequest {
    pub id: i64,
    pub login: String,
    pub requested_at: Timestamp,
    pub reason: String,
    /// pending, approved, denied, or withdrawn (superseded by another change).
    pub status: String,
    pub decided_at: Option<Timestamp>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
}

const SUBSCRIBER_COLUMNS: &str =
    "login, display_name, email, plan, port25, password_hash, suspended, created_at, version";

fn audit_stmt(
    at: Timestamp,
    actor: &Actor,
    login: &str,
    action: &str,
    from: Option<&str>,
    to: Option<&str>,
    reason: &str,
) -> Stmt {
    Stmt::new(
        "INSERT INTO audit (at, actor, login, action, from_state, to_state, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params![at.0, actor.to_string(), login, action, from, to, reason],
    )
}

fn parse_subscriber(r: &Row) -> Result<(Subscriber, i64), StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(e);
    Ok((
        Subscriber {
            login: r.text(0)?,
            display_name: r.opt_text(1)?,
            email: r.opt_text(2)?,
            plan: r
                .text(3)?
                .parse()
                .map_err(|e: policy::SubscriberError| corrupt(e.to_string()))?,
            port25: r.text(4)?.parse().map_err(corrupt)?,
            password_hash: r.opt_text(5)?,
            suspended: r.int(6)? != 0,
            created: Timestamp(r.int(7)?),
            static_ips: Vec::new(),
            allowed_senders: Vec::new(),
        },
        r.int(8)?,
    ))
}

impl Store {
    /// Creates one subscriber with its static addresses (as never-ending leases).
    pub async fn add_subscriber(
        &self,
        new: &NewSubscriber,
        actor: &Actor,
    ) -> Result<Subscriber, StoreError> {
        new.plan
            .check_addresses(&new.static_ips)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        if self.subscriber_row(&new.login).await?.is_some() {
            return Err(StoreError::DuplicateLogin(new.login.clone()));
        }
        for net in &new.static_ips {
            if let Some(holder) = self.static_holder(net).await? {
                return Err(StoreError::AddressTaken(*net, holder));
            }
        }
        let now = self.now();
        let state = Port25State::initial(new.plan);
        let mut stmts = vec![Stmt::new(
            format!("INSERT INTO subscribers ({SUBSCRIBER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 0)"),
            params![&new.login, new.display_name.clone(), new.email.clone(), new.plan.as_str(), state.as_str(), new.password_hash.clone(), now.0],
        )];
        for net in &new.static_ips {
            stmts.extend(static_lease_stmts(&new.login, net, now));
        }
        stmts.push(audit_stmt(
            now,
            actor,
            &new.login,
            "subscriber-add",
            None,
            Some(state.as_str()),
            &format!("plan {}", new.plan),
        ));
        stmts.push(append(
            now,
            "subscriber.added",
            Some(&new.login),
            json!({ "plan": new.plan, "port25": state, "static_ips": new.static_ips }),
        ));
        self.db.tx(stmts, true).await?;
        self.subscriber(&new.login).await
    }

    /// Creates many subscribers in one transaction: all or nothing. Duplicates within
    /// `rows` must be rejected by the caller (it knows the line numbers); a login or
    /// address that already exists in the store is reported with its index in `rows`.
    pub async fn import_subscribers(
        &self,
        rows: &[NewSubscriber],
        actor: &Actor,
    ) -> Result<usize, (Option<usize>, StoreError)> {
        let now = self.now();
        // Existing logins and static addresses, checked in chunks so the error can name a row.
        for (chunk_no, chunk) in rows.chunks(500).enumerate() {
            let logins: Vec<Value> = chunk.iter().map(|s| Value::from(&s.login)).collect();
            let sql = format!(
                "SELECT login FROM subscribers WHERE login IN ({})",
                placeholders(1, logins.len())
            );
            if let Some(r) = self
                .db
                .query_one(&sql, logins)
                .await
                .map_err(|e| (None, e))?
            {
                let login = r.text(0).map_err(|e| (None, e))?;
                let i = chunk.iter().position(|s| s.login == login).unwrap_or(0) + chunk_no * 500;
                return Err((Some(i), StoreError::DuplicateLogin(login)));
            }
        }
        for (i, s) in rows.iter().enumerate() {
            for net in &s.static_ips {
                if let Some(holder) = self.static_holder(net).await.map_err(|e| (None, e))? {
                    return Err((Some(i), StoreError::AddressTaken(*net, holder)));
                }
            }
        }
        let mut subs = Vec::with_capacity(rows.len());
        let mut audits = Vec::with_capacity(rows.len());
        let mut statics = Vec::new();
        for s in rows {
            let state = Port25State::initial(s.plan);
            subs.push(params![
                &s.login,
                s.display_name.clone(),
                s.email.clone(),
                s.plan.as_str(),
                state.as_str(),
                s.password_hash.clone(),
                0i64,
                now.0,
                0i64
            ]);
            audits.push(params![
                now.0,
                actor.to_string(),
                &s.login,
                "subscriber-add",
                Value::Null,
                state.as_str(),
                format!("imported, plan {}", s.plan)
            ]);
            for net in &s.static_ips {
                // Imported static addresses have been held since before our records.
                statics.extend(static_lease_stmts(&s.login, net, Timestamp(0)));
            }
        }
        let mut stmts = bulk_insert(
            &format!("INSERT INTO subscribers ({SUBSCRIBER_COLUMNS}) VALUES"),
            "",
            subs,
        );
        stmts.extend(statics);
        stmts.extend(bulk_insert(
            "INSERT INTO audit (at, actor, login, action, from_state, to_state, reason) VALUES",
            "",
            audits,
        ));
        stmts.push(append(
            now,
            "subscriber.imported",
            None,
            json!({ "count": rows.len() }),
        ));
        self.db.tx(stmts, true).await.map_err(|e| (None, e))?;
        Ok(rows.len())
    }

    async fn subscriber_row(&self, login: &str) -> Result<Option<(Subscriber, i64)>, StoreError> {
        let sql = format!("SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE login = $1");
        match self.db.query_one(&sql, params![login]).await? {
            Some(r) => parse_subscriber(&r).map(Some),
            None => Ok(None),
        }
    }

    /// One subscriber with static addresses and owned senders.
    pub async fn find_subscriber(&self, login: &str) -> Result<Option<Subscriber>, StoreError> {
        let Some((mut s, _)) = self.subscriber_row(login).await? else {
            return Ok(None);
        };
        for r in self
            .db
            .query(
                "SELECT net FROM static_addresses WHERE login = $1 ORDER BY lo",
                params![login],
            )
            .await?
        {
            s.static_ips.push(
                r.text(0)?
                    .parse()
                    .map_err(|e: policy::NetError| StoreError::Corrupt(e.to_string()))?,
            );
        }
        for r in self
            .db
            .query(
                "SELECT sender FROM allowed_senders WHERE login = $1 ORDER BY sender",
                params![login],
            )
            .await?
        {
            s.allowed_senders.push(r.text(0)?);
        }
        Ok(Some(s))
    }

    /// Like [`Store::find_subscriber`], with an error naming the login when absent.
    pub async fn subscriber(&self, login: &str) -> Result<Subscriber, StoreError> {
        self.find_subscriber(login)
            .await?
            .ok_or_else(|| StoreError::UnknownSubscriber(login.to_string()))
    }

    /// All subscribers, by login, with their static addresses.
    pub async fn list_subscribers(&self) -> Result<Vec<Subscriber>, StoreError> {
        let sql = format!("SELECT {SUBSCRIBER_COLUMNS} FROM subscribers ORDER BY login");
        let mut subs: Vec<Subscriber> = self
            .db
            .query(&sql, vec![])
            .await?
            .iter()
            .map(|r| parse_subscriber(r).map(|p| p.0))
            .collect::<Result<_, _>>()?;
        let mut statics: HashMap<String, Vec<IpNet>> = HashMap::new();
        for r in self
            .db
            .query(
                "SELECT login, net FROM static_addresses ORDER BY lo",
                vec![],
            )
            .await?
        {
            let net = r
                .text(1)?
                .parse()
                .map_err(|e: policy::NetError| StoreError::Corrupt(e.to_string()))?;
            statics.entry(r.text(0)?).or_default().push(net);
        }
        for s in &mut subs {
            s.static_ips = statics.remove(&s.login).unwrap_or_default();
        }
        Ok(subs)
    }

    /// Who holds a static address overlapping `net`, if anyone.
    async fn static_holder(&self, net: &IpNet) -> Result<Option<String>, StoreError> {
        let (lo, hi) = net.key_range();
        let r = self
            .db
            .query_one(
                "SELECT login FROM static_addresses WHERE lo <= $1 AND hi >= $2",
                params![key_hex(hi), key_hex(lo)],
            )
            .await?;
        r.map(|r| r.text(0)).transpose()
    }

    /// Applies one step of the port-25 state machine, with its audit entry and event,
    /// in one transaction. Returns the states before and after.
    pub async fn transition(
        &self,
        login: &str,
        action: Port25Action,
        actor: &Actor,
        reason: &str,
    ) -> Result<(Port25State, Port25State), StoreError> {
        for _ in 0..10 {
            let (sub, version) = self
                .subscriber_row(login)
                .await?
                .ok_or_else(|| StoreError::UnknownSubscriber(login.to_string()))?;
            let from = sub.port25;
            let to = from
                .apply(sub.plan, &action)
                .map_err(|source| StoreError::Transition {
                    login: login.to_string(),
                    source,
                })?;
            let now = self.now();
            let mut stmts = vec![Stmt::new(
                "UPDATE subscribers SET port25 = $1, version = version + 1 WHERE login = $2 AND version = $3",
                params![to.as_str(), login, version],
            )
            .expect(1)];
            stmts.extend(optout_stmts(now, login, &action, actor, reason, from));
            stmts.push(audit_stmt(
                now,
                actor,
                login,
                action.name(),
                Some(from.as_str()),
                Some(to.as_str()),
                reason,
            ));
            stmts.push(append(
                now,
                "port25.changed",
                Some(login),
                json!({ "from": from, "to": to, "plan": sub.plan, "actor": actor }),
            ));
            match self.db.tx(stmts, true).await {
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
                Ok(_) => return Ok((from, to)),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Changes the plan. Static needs at least one address (all replacing the old
    /// ones); dynamic releases the static addresses, closing their leases.
    pub async fn set_plan(
        &self,
        login: &str,
        plan: Plan,
        static_ips: &[IpNet],
        actor: &Actor,
    ) -> Result<Subscriber, StoreError> {
        plan.check_addresses(static_ips)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        for net in static_ips {
            match self.static_holder(net).await? {
                Some(holder) if holder != login => {
                    return Err(StoreError::AddressTaken(*net, holder))
                }
                _ => {}
            }
        }
        for _ in 0..10 {
            let (sub, version) = self
                .subscriber_row(login)
                .await?
                .ok_or_else(|| StoreError::UnknownSubscriber(login.to_string()))?;
            let current = self.subscriber(login).await?.static_ips;
            let from = sub.port25;
            let to = from
                .apply(plan, &Port25Action::PlanChanged(plan))
                .map_err(|source| StoreError::Transition {
                    login: login.to_string(),
                    source,
                })?;
            let now = self.now();
            let mut stmts = vec![Stmt::new(
                "UPDATE subscribers SET plan = $1, port25 = $2, version = version + 1 WHERE login = $3 AND version = $4",
                params![plan.as_str(), to.as_str(), login, version],
            )
            .expect(1)];
            for old in current.iter().filter(|n| !static_ips.contains(n)) {
                stmts.push(Stmt::new(
                    "DELETE FROM static_addresses WHERE net = $1",
                    params![old.to_string()],
                ));
                stmts.push(Stmt::new(
                    "UPDATE leases SET end_at = $1 WHERE login = $2 AND net = $3 AND source = 'static' AND end_at IS NULL",
                    params![now.0, login, old.to_string()],
                ));
            }
            for new in static_ips.iter().filter(|n| !current.contains(n)) {
                stmts.extend(static_lease_stmts(login, new, now));
            }
            let reason = format!("plan {} -> {plan}", sub.plan);
            stmts.push(audit_stmt(
                now,
                actor,
                login,
                "set-plan",
                Some(from.as_str()),
                Some(to.as_str()),
                &reason,
            ));
            stmts.push(append(
                now,
                "subscriber.plan",
                Some(login),
                json!({ "plan": plan, "from": from, "to": to, "static_ips": static_ips, "released": current.iter().filter(|n| !static_ips.contains(n)).collect::<Vec<_>>() }),
            ));
            match self.db.tx(stmts, true).await {
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
                Ok(_) => return self.subscriber(login).await,
            }
        }
        Err(StoreError::Conflict)
    }

    /// Adds an owned sender address or `@domain` (validated by the caller).
    pub async fn allow_sender(
        &self,
        login: &str,
        sender: &str,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        self.subscriber(login).await?;
        let now = self.now();
        let counts = self
            .db
            .tx(
                vec![
                    Stmt::new("INSERT INTO allowed_senders (login, sender) VALUES ($1, $2) ON CONFLICT DO NOTHING", params![login, sender]),
                    audit_stmt(now, actor, login, "allow-sender", None, None, sender),
                    append(now, "subscriber.sender", Some(login), json!({ "sender": sender })),
                ],
                true,
            )
            .await?;
        Ok(counts[0] == 1)
    }

    /// The audit log, newest last; for one subscriber or everyone.
    pub async fn audit(
        &self,
        login: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let cols = "at, actor, login, action, from_state, to_state, reason";
        let rows = match login {
            Some(l) => {
                self.db
                    .query(&format!("SELECT {cols} FROM (SELECT id, {cols} FROM audit WHERE login = $1 ORDER BY id DESC LIMIT $2) AS a ORDER BY id"), params![l, limit])
                    .await?
            }
            None => {
                self.db
                    .query(&format!("SELECT {cols} FROM (SELECT id, {cols} FROM audit ORDER BY id DESC LIMIT $1) AS a ORDER BY id"), params![limit])
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: Timestamp(r.int(0)?),
                    actor: r.text(1)?.parse().map_err(StoreError::Corrupt)?,
                    login: r.text(2)?,
                    action: r.text(3)?,
                    from: r.opt_text(4)?,
                    to: r.opt_text(5)?,
                    reason: r.text(6)?,
                })
            })
            .collect()
    }

    /// Opt-out requests, newest first: for one subscriber, or all pending ones.
    pub async fn optout_requests(
        &self,
        login: Option<&str>,
    ) -> Result<Vec<OptoutRequest>, StoreError> {
        let cols =
            "id, login, requested_at, reason, status, decided_at, decided_by, decision_reason";
        let rows = match login {
            Some(l) => {
                self.db
                    .query(
                        &format!(
                            "SELECT {cols} FROM optout_requests WHERE login = $1 ORDER BY id DESC"
                        ),
                        params![l],
                    )
                    .await?
            }
            None => {
                self.db
                    .query(
                        &format!(
                        "SELECT {cols} FROM optout_requests WHERE status = 'pending' ORDER BY id"
                    ),
                        vec![],
                    )
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(OptoutRequest {
                    id: r.int(0)?,
                    login: r.text(1)?,
                    requested_at: Timestamp(r.int(2)?),
                    reason: r.text(3)?,
                    status: r.text(4)?,
                    decided_at: r.opt_int(5)?.map(Timestamp),
                    decided_by: r.opt_text(6)?,
                    decision_reason: r.opt_text(7)?,
                })
            })
            .collect()
    }

    /// Number of subscribers in each port-25 state.
    pub async fn count_by_state(&self) -> Result<Vec<(Port25State, i64)>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT port25, COUNT(*) FROM subscribers GROUP BY port25 ORDER BY port25",
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.text(0)?.parse().map_err(StoreError::Corrupt)?, r.int(1)?)))
            .collect()
    }
}

/// The opt-out request bookkeeping that goes with a transition.
fn optout_stmts(
    now: Timestamp,
    login: &str,
    action: &Port25Action,
    actor: &Actor,
    reason: &str,
    from: Port25State,
) -> Vec<Stmt> {
    let decide = |status: &str| {
        Stmt::new(
            "UPDATE optout_requests SET status = $1, decided_at = $2, decided_by = $3, decision_reason = $4 WHERE login = $5 AND status = 'pending'",
            params![status, now.0, actor.to_string(), reason, login],
        )
    };
    match action {
        Port25Action::RequestOptOut { .. } => vec![Stmt::new(
            "INSERT INTO optout_requests (login, requested_at, reason, status) VALUES ($1, $2, $3, 'pending')",
            params![login, now.0, reason],
        )],
        Port25Action::ApproveOptOut => vec![decide("approved")],
        Port25Action::DenyOptOut => vec![decide("denied")],
        _ if from == Port25State::OptoutPending => vec![decide("withdrawn")],
        _ => vec![],
    }
}

fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
