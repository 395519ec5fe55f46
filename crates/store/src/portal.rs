//! What the portal keeps in the store: operator accounts and API tokens (tables of
//! migration 1), web sessions, static-address requests and support requests (migration
//! 6), and the read-only queries behind the console's dashboard.
//!
//! Secrets never reach the database in the clear: operator passwords are argon2id PHC
//! strings, API tokens and session ids are stored as hashes that the caller computes
//! (the portal uses SHA-256; a token has 256 random bits, so a fast hash suffices).

use std::fmt;
use std::str::FromStr;

use policy::{Actor, IpNet, Port25State, Subscriber, Timestamp};
use serde::Serialize;
use serde_json::json;

use crate::db::{Row, Stmt};
use crate::error::StoreError;
use crate::events::append;
use crate::{params, Store};

/// Schema version 6: portal state.
pub(crate) const MIGRATION: &str = "
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    principal TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_principal ON web_sessions (kind, principal);
CREATE TABLE static_requests (
    id {serial},
    login TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    note TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    decision_reason TEXT,
    assigned TEXT
);
CREATE INDEX static_requests_login ON static_requests (login, id);
CREATE TABLE support_requests (
    id {serial},
    login TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    closed_at BIGINT,
    closed_by TEXT
);
CREATE INDEX support_requests_login ON support_requests (login, id);
";

/// Migration 9: at most one pending static-address request per subscriber, also when
/// two requests race past [`Store::request_static`]'s check.
pub(crate) const MIGRATION_ONE_PENDING_STATIC: &str = "
CREATE UNIQUE INDEX static_requests_one_pending ON static_requests (login) WHERE status = 'pending';
";

/// What an operator may do: `support` reads and answers customers, `abuse` also
/// decides on port 25 and abuse cases, `admin` also manages operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatorRole {
    Support,
    Abuse,
    Admin,
}

impl OperatorRole {
    pub const ALL: [OperatorRole; 3] = [
        OperatorRole::Support,
        OperatorRole::Abuse,
        OperatorRole::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Support => "support",
            OperatorRole::Abuse => "abuse",
            OperatorRole::Admin => "admin",
        }
    }

    /// Roles are ordered: an admin may do what abuse may, abuse what support may.
    pub fn allows(self, needed: OperatorRole) -> bool {
        self >= needed
    }
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperatorRole {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<OperatorRole, StoreError> {
        OperatorRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "role '{s}' is invalid: use support, abuse or admin"
                ))
            })
    }
}

/// An operator account (without its password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Operator {
    pub name: String,
    pub role: OperatorRole,
    pub created: Timestamp,
}

/// Whose a web session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Customer,
    Operator,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            SessionKind::Customer => "customer",
            SessionKind::Operator => "operator",
        }
    }
}

/// A logged-in browser: a customer (principal = PPPoE login) or an operator (name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSession {
    pub kind: SessionKind,
    pub principal: String,
    /// The anti-CSRF token every form of this session must carry.
    pub csrf: String,
    pub expires: Timestamp,
}

/// A subscriber's request for a static address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StaticRequest {
    pub id: i64,
    pub login: String,
    pub requested_at: Timestamp,
    pub note: String,
    /// pending, approved or denied.
    pub status: String,
    pub decided_at: Option<Timestamp>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    /// The address given on approval.
    pub assigned: Option<String>,
}

/// A message from a subscriber to the support desk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SupportRequest {
    pub id: i64,
    pub login: String,
    pub created_at: Timestamp,
    pub subject: String,
    pub body: String,
    /// open or closed.
    pub status: String,
    pub closed_at: Option<Timestamp>,
    pub closed_by: Option<String>,
}

/// One port-25 transition from the audit log, for the dashboard's charts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Port25Change {
    pub at: Timestamp,
    pub action: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

const STATIC_COLUMNS: &str =
    "id, login, requested_at, note, status, decided_at, decided_by, decision_reason, assigned";
const SUPPORT_COLUMNS: &str = "id, login, created_at, subject, body, status, closed_at, closed_by";

fn parse_static(r: &Row) -> Result<StaticRequest, StoreError> {
    Ok(StaticRequest {
        id: r.int(0)?,
        login: r.text(1)?,
        requested_at: Timestamp(r.int(2)?),
        note: r.text(3)?,
        status: r.text(4)?,
        decided_at: r.opt_int(5)?.map(Timestamp),
        decided_by: r.opt_text(6)?,
        decision_reason: r.opt_text(7)?,
        assigned: r.opt_text(8)?,
    })
}

fn parse_support(r: &Row) -> Result<SupportRequest, StoreError> {
    Ok(SupportRequest {
        id: r.int(0)?,
        login: r.text(1)?,
        created_at: Timestamp(r.int(2)?),
        subject: r.text(3)?,
        body: r.text(4)?,
        status: r.text(5)?,
        closed_at: r.opt_int(6)?.map(Timestamp),
        closed_by: r.opt_text(7)?,
    })
}

fn validate_operator_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "operator name '{name}' is invalid: use 1-64 characters from letters, digits and . _ - @"
        )))
    }
}

fn audit_stmt(at: Timestamp, actor: &Actor, login: &str, action: &str, reason: &str) -> Stmt {
    Stmt::new(
        "INSERT INTO audit (at, actor, login, action, from_state, to_state, reason) VALUES ($1, $2, $3, $4, NULL, NULL, $5)",
        params![at.0, actor.to_string(), login, action, reason],
    )
}

impl Store {
    // ----- operators -------------------------------------------------------------

    /// Creates an operator; `password_hash` is an argon2id PHC string.
    pub async fn add_operator(
        &self,
        name: &str,
        role: OperatorRole,
        password_hash: &str,
    ) -> Result<Operator, StoreError> {
        validate_operator_name(name)?;
        crate::password::check_phc(password_hash).map_err(StoreError::Invalid)?;
        if self.operator(name).await?.is_some() {
            return Err(StoreError::Invalid(format!(
                "operator '{name}' already exists"
            )));
        }
        let now = self.now();
        self.db
            .tx(
                vec![
                    Stmt::new(
                        "INSERT INTO operators (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)",
                        params![name, role.as_str(), password_hash, now.0],
                    ),
                    append(now, "operator.added", None, json!({ "name": name, "role": role })),
                ],
                true,
            )
            .await?;
        Ok(Operator {
            name: name.to_string(),
            role,
            created: now,
        })
    }

    /// Every operator, by name.
    pub async fn list_operators(&self) -> Result<Vec<Operator>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT name, role, created_at FROM operators ORDER BY name",
                vec![],
            )
            .await?;
        rows.iter().map(parse_operator).collect()
    }

    /// One operator, if it exists.
    pub async fn operator(&self, name: &str) -> Result<Option<Operator>, StoreError> {
        let r = self
            .db
            .query_one(
                "SELECT name, role, created_at FROM operators WHERE name = $1",
                params![name],
            )
            .await?;
        r.as_ref().map(parse_operator).transpose()
    }

    /// The operator and its password hash, for login.
    pub async fn operator_credentials(
        &self,
        name: &str,
    ) -> Result<Option<(Operator, String)>, StoreError> {
        let r = self
            .db
            .query_one(
                "SELECT name, role, created_at, password_hash FROM operators WHERE name = $1",
                params![name],
            )
            .await?;
        match r {
            Some(r) => Ok(Some((parse_operator(&r)?, r.text(3)?))),
            None => Ok(None),
        }
    }

    /// Removes an operator with its API tokens and web sessions. False when absent.
    pub async fn remove_operator(&self, name: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let counts = self
            .db
            .tx(
                vec![
                    Stmt::new("DELETE FROM api_tokens WHERE operator = $1", params![name]),
                    Stmt::new(
                        "DELETE FROM web_sessions WHERE kind = 'operator' AND principal = $1",
                        params![name],
                    ),
                    Stmt::new("DELETE FROM operators WHERE name = $1", params![name]),
                    append(now, "operator.removed", None, json!({ "name": name })),
                ],
                true,
            )
            .await?;
        Ok(counts[2] == 1)
    }

    /// Records an API token for `operator` by its hash (see the module docs).
    pub async fn add_api_token(&self, operator: &str, token_hash: &str) -> Result<(), StoreError> {
        if self.operator(operator).await?.is_none() {
            return Err(StoreError::Invalid(format!(
                "no operator named '{operator}' (add it with `portcullis operator add`)"
            )));
        }
        self.db
            .tx(
                vec![Stmt::new(
                    "INSERT INTO api_tokens (token_hash, operator, created_at) VALUES ($1, $2, $3)",
                    params![token_hash, operator, self.now().0],
                )],
                false,
            )
            .await?;
        Ok(())
    }

    /// The operator owning the token with this hash.
    pub async fn operator_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<Operator>, StoreError> {
        let r = self
            .db
            .query_one(
                "SELECT o.name, o.role, o.created_at FROM api_tokens t JOIN operators o ON o.name = t.operator WHERE t.token_hash = $1",
                params![token_hash],
            )
            .await?;
        r.as_ref().map(parse_operator).transpose()
    }

    // ----- web sessions ----------------------------------------------------------

    /// Stores a session under the hash of its id.
    pub async fn create_web_session(
        &self,
        id_hash: &str,
        session: &WebSession,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.db
            .tx(
                vec![
                    Stmt::new("DELETE FROM web_sessions WHERE expires_at <= $1", params![now.0]),
                    Stmt::new(
                        "INSERT INTO web_sessions (id_hash, kind, principal, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                        params![id_hash, session.kind.as_str(), &session.principal, &session.csrf, now.0, session.expires.0],
                    ),
                ],
                false,
            )
            .await?;
        Ok(())
    }

    /// The live (unexpired) session with this id hash.
    pub async fn web_session(&self, id_hash: &str) -> Result<Option<WebSession>, StoreError> {
        let r = self
            .db
            .query_one(
                "SELECT kind, principal, csrf, expires_at FROM web_sessions WHERE id_hash = $1 AND expires_at > $2",
                params![id_hash, self.now().0],
            )
            .await?;
        let Some(r) = r else { return Ok(None) };
        let kind = match r.text(0)?.as_str() {
            "customer" => SessionKind::Customer,
            "operator" => SessionKind::Operator,
            other => return Err(StoreError::Corrupt(format!("session kind '{other}'"))),
        };
        Ok(Some(WebSession {
            kind,
            principal: r.text(1)?,
            csrf: r.text(2)?,
            expires: Timestamp(r.int(3)?),
        }))
    }

    /// Ends a session (logout).
    pub async fn delete_web_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.db
            .tx(
                vec![Stmt::new(
                    "DELETE FROM web_sessions WHERE id_hash = $1",
                    params![id_hash],
                )],
                false,
            )
            .await?;
        Ok(())
    }

    // ----- customer requests -----------------------------------------------------

    /// Records a static-address request; refused while one is pending or when the
    /// subscriber already has the static plan.
    pub async fn request_static(&self, login: &str, note: &str) -> Result<i64, StoreError> {
        let sub = self.subscriber(login).await?;
        if sub.plan == policy::Plan::Static {
            return Err(StoreError::Invalid(
                "you already have a static address".into(),
            ));
        }
        if self
            .static_requests(Some(login))
            .await?
            .iter()
            .any(|r| r.status == "pending")
        {
            return Err(StoreError::Invalid(
                "a static-address request is already pending".into(),
            ));
        }
        let now = self.now();
        let actor = Actor::Customer(login.to_string());
        let done = self
            .db
            .tx(
                vec![
                    Stmt::new(
                        "INSERT INTO static_requests (login, requested_at, note, status) VALUES ($1, $2, $3, 'pending')",
                        params![login, now.0, note],
                    )
                    .returning_id(),
                    audit_stmt(now, &actor, login, "static-request", note),
                    append(now, "static.requested", Some(login), json!({})),
                ],
                true,
            )
            .await?;
        Ok(done[0] as i64)
    }

    /// Static-address requests, newest first: one subscriber's, or all pending ones.
    pub async fn static_requests(
        &self,
        login: Option<&str>,
    ) -> Result<Vec<StaticRequest>, StoreError> {
        let rows = match login {
            Some(l) => {
                self.db
                    .query(
                        &format!("SELECT {STATIC_COLUMNS} FROM static_requests WHERE login = $1 ORDER BY id DESC"),
                        params![l],
                    )
                    .await?
            }
            None => {
                self.db
                    .query(
                        &format!("SELECT {STATIC_COLUMNS} FROM static_requests WHERE status = 'pending' ORDER BY id"),
                        vec![],
                    )
                    .await?
            }
        };
        rows.iter().map(parse_static).collect()
    }

    /// One static-address request by id.
    pub async fn static_request(&self, id: i64) -> Result<Option<StaticRequest>, StoreError> {
        let r = self
            .db
            .query_one(
                &format!("SELECT {STATIC_COLUMNS} FROM static_requests WHERE id = $1"),
                params![id],
            )
            .await?;
        r.as_ref().map(parse_static).transpose()
    }

    /// Closes a pending static-address request. On approval the caller has already
    /// moved the subscriber to the static plan with `assigned` (see [`Store::set_plan`]).
    pub async fn decide_static_request(
        &self,
        id: i64,
        approved: bool,
        assigned: Option<&IpNet>,
        actor: &Actor,
        reason: &str,
    ) -> Result<StaticRequest, StoreError> {
        let req = self
            .static_request(id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("no static-address request #{id}")))?;
        if req.status != "pending" {
            return Err(StoreError::Invalid(format!(
                "static-address request #{id} is already {}",
                req.status
            )));
        }
        let now = self.now();
        let status = if approved { "approved" } else { "denied" };
        let assigned = assigned.map(|n| n.to_string());
        self.db
            .tx(
                vec![
                    Stmt::new(
                        "UPDATE static_requests SET status = $1, decided_at = $2, decided_by = $3, decision_reason = $4, assigned = $5 WHERE id = $6 AND status = 'pending'",
                        params![status, now.0, actor.to_string(), reason, assigned.clone(), id],
                    )
                    .expect(1),
                    audit_stmt(now, actor, &req.login, &format!("static-{status}"), reason),
                    append(now, "static.decided", Some(&req.login), json!({ "id": id, "status": status, "assigned": assigned })),
                ],
                true,
            )
            .await?;
        self.static_request(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("static request vanished".into()))
    }

    /// Every static address held by anyone (to find a free one in the pool).
    pub async fn static_addresses_in_use(&self) -> Result<Vec<IpNet>, StoreError> {
        self.db
            .query("SELECT net FROM static_addresses", vec![])
            .await?
            .iter()
            .map(|r| {
                r.text(0)?
                    .parse()
                    .map_err(|e: policy::NetError| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// Records a message to the support desk.
    pub async fn create_support_request(
        &self,
        login: &str,
        subject: &str,
        body: &str,
    ) -> Result<i64, StoreError> {
        self.subscriber(login).await?;
        let now = self.now();
        let done = self
            .db
            .tx(
                vec![
                    Stmt::new(
                        "INSERT INTO support_requests (login, created_at, subject, body, status) VALUES ($1, $2, $3, $4, 'open')",
                        params![login, now.0, subject, body],
                    )
                    .returning_id(),
                    append(now, "support.requested", Some(login), json!({ "subject": subject })),
                ],
                true,
            )
            .await?;
        Ok(done[0] as i64)
    }

    /// Support requests, newest first: one subscriber's, or all open ones.
    pub async fn support_requests(
        &self,
        login: Option<&str>,
    ) -> Result<Vec<SupportRequest>, StoreError> {
        let rows = match login {
            Some(l) => {
                self.db
                    .query(
                        &format!("SELECT {SUPPORT_COLUMNS} FROM support_requests WHERE login = $1 ORDER BY id DESC"),
                        params![l],
                    )
                    .await?
            }
            None => {
                self.db
                    .query(
                        &format!("SELECT {SUPPORT_COLUMNS} FROM support_requests WHERE status = 'open' ORDER BY id"),
                        vec![],
                    )
                    .await?
            }
        };
        rows.iter().map(parse_support).collect()
    }

    /// Closes an open support request.
    pub async fn close_support_request(&self, id: i64, actor: &Actor) -> Result<(), StoreError> {
        let counts = self
            .db
            .tx(
                vec![Stmt::new(
                    "UPDATE support_requests SET status = 'closed', closed_at = $1, closed_by = $2 WHERE id = $3 AND status = 'open'",
                    params![self.now().0, actor.to_string(), id],
                )],
                false,
            )
            .await?;
        if counts[0] == 1 {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "no open support request #{id}"
            )))
        }
    }

    /// Sets a subscriber's password (argon2id PHC string), with its audit entry and
    /// a `subscriber.password` event. (Lifting a sending suspension is
    /// [`Store::set_suspended`]'s job; the portal calls both.)
    pub async fn set_subscriber_password(
        &self,
        login: &str,
        password_hash: &str,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        crate::password::check_phc(password_hash).map_err(StoreError::Invalid)?;
        self.subscriber(login).await?;
        let now = self.now();
        self.db
            .tx(
                vec![
                    Stmt::new(
                        "UPDATE subscribers SET password_hash = $1, version = version + 1 WHERE login = $2",
                        params![password_hash, login],
                    )
                    .expect(1),
                    audit_stmt(now, actor, login, "password-change", "password changed"),
                    append(now, "subscriber.password", Some(login), json!({})),
                ],
                true,
            )
            .await?;
        Ok(())
    }

    // ----- console queries -------------------------------------------------------

    /// Subscribers whose login, name or email contains `q` (case-insensitive), by login.
    pub async fn search_subscribers(
        &self,
        q: &str,
        limit: i64,
    ) -> Result<Vec<Subscriber>, StoreError> {
        let pattern = format!(
            "%{}%",
            q.trim()
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows = self
            .db
            .query(
                "SELECT login FROM subscribers WHERE LOWER(login) LIKE $1 ESCAPE '\\' OR LOWER(COALESCE(email, '')) LIKE $1 ESCAPE '\\' OR LOWER(COALESCE(display_name, '')) LIKE $1 ESCAPE '\\' ORDER BY login LIMIT $2",
                params![pattern, limit],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(s) = self.find_subscriber(&r.text(0)?).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Port-25 state changes recorded since `since`, oldest first (for charts).
    pub async fn port25_transitions_since(
        &self,
        since: Timestamp,
    ) -> Result<Vec<Port25Change>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT at, action, from_state, to_state FROM audit WHERE at >= $1 AND to_state IS NOT NULL ORDER BY id",
                params![since.0],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Port25Change {
                    at: Timestamp(r.int(0)?),
                    action: r.text(1)?,
                    from: r.opt_text(2)?,
                    to: r.opt_text(3)?,
                })
            })
            .collect()
    }

    /// Abuse evidence per UTC day of the abuse since `since`: (day number since the
    /// epoch, evidence kind such as `complaint`, `listing`, `flow`, count). Reads the
    /// abuse component's `abuse_evidence` table.
    pub async fn daily_evidence_counts(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT at / 86400, kind, COUNT(*) FROM abuse_evidence WHERE at >= $1 GROUP BY at / 86400, kind ORDER BY 1",
                params![since.0],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.int(0)?, r.text(1)?, r.int(2)?)))
            .collect()
    }

    /// Number of subscribers in each state, every state present (zero when none).
    pub async fn state_counts(&self) -> Result<Vec<(Port25State, i64)>, StoreError> {
        let have = self.count_by_state().await?;
        Ok(Port25State::ALL
            .into_iter()
            .map(|s| (s, have.iter().find(|(h, _)| *h == s).map_or(0, |(_, n)| *n)))
            .collect())
    }
}

fn parse_operator(r: &Row) -> Result<Operator, StoreError> {
    Ok(Operator {
        name: r.text(0)?,
        role: r
            .text(1)?
            .parse()
            .map_err(|e: StoreError| StoreError::Corrupt(e.to_string()))?,
        created: Timestamp(r.int(2)?),
    })
}
