//! Sessions, cookies, anti-forgery tokens, API tokens and the security headers.
//!
//! A session id is 256 random bits in a cookie (HttpOnly, SameSite=Strict, Secure
//! under TLS); the store keeps only its SHA-256. Customer sessions live in the
//! `pc_customer` cookie, operator sessions in `pc_operator` (path `/console`), and the
//! stored session says which kind it is, so one can never stand in for the other.
//! Every form carries the session's CSRF token; the login forms, which have no
//! session yet, use a double-submit cookie.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use store::{Operator, OperatorRole, SessionKind, WebSession};

use crate::error::{ApiError, PortalError};
use crate::Shared;

pub(crate) const CUSTOMER_COOKIE: &str = "pc_customer";
pub(crate) const OPERATOR_COOKIE: &str = "pc_operator";
pub(crate) const LOGIN_CSRF_COOKIE: &str = "pc_login_csrf";
/// How long a login lasts.
const SESSION_SECS: i64 = 8 * 3600;

/// 256 random bits as 64 hex digits.
pub(crate) fn random_token() -> String {
    let mut buf = [0u8; 32];
    if let Err(e) = getrandom::getrandom(&mut buf) {
        // Without an entropy source no session is safe; refuse loudly.
        panic!("no operating-system randomness available: {e}");
    }
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a token, as stored (hex).
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Creates an API token for `operator`; returns it (it is not stored, only its hash).
/// For `portcullis operator token NAME`.
pub async fn create_api_token(store: &store::Store, operator: &str) -> Result<String, PortalError> {
    let token = format!("pct_{}", random_token());
    store.add_api_token(operator, &hash_token(&token)).await?;
    Ok(token)
}

/// Compares two secrets without an early exit.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value with our flags.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    secure: bool,
    max_age: Option<i64>,
) -> String {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Starts a session; returns the `Set-Cookie` header value.
pub(crate) async fn open_session(
    state: &Shared,
    kind: SessionKind,
    principal: &str,
) -> Result<String, PortalError> {
    let id = random_token();
    let session = WebSession {
        kind,
        principal: principal.to_string(),
        csrf: random_token(),
        expires: store_now(state).plus(std::time::Duration::from_secs(SESSION_SECS as u64)),
    };
    state
        .store
        .create_web_session(&hash_token(&id), &session)
        .await?;
    let (name, path) = cookie_of(kind);
    Ok(set_cookie(
        name,
        &id,
        path,
        state.secure,
        Some(SESSION_SECS),
    ))
}

/// Ends the session in the request, if any; returns the clearing `Set-Cookie`.
pub(crate) async fn close_session(
    state: &Shared,
    headers: &HeaderMap,
    kind: SessionKind,
) -> Result<String, PortalError> {
    let (name, path) = cookie_of(kind);
    if let Some(id) = cookie(headers, name) {
        state.store.delete_web_session(&hash_token(&id)).await?;
    }
    Ok(set_cookie(name, "", path, state.secure, Some(0)))
}

fn store_now(state: &Shared) -> policy::Timestamp {
    state.store.now()
}

fn cookie_of(kind: SessionKind) -> (&'static str, &'static str) {
    match kind {
        SessionKind::Customer => (CUSTOMER_COOKIE, "/"),
        SessionKind::Operator => (OPERATOR_COOKIE, "/console"),
    }
}

async fn session_of(
    state: &Shared,
    headers: &HeaderMap,
    kind: SessionKind,
) -> Result<Option<WebSession>, PortalError> {
    let (name, _) = cookie_of(kind);
    let Some(id) = cookie(headers, name) else {
        return Ok(None);
    };
    if id.len() != 64 {
        return Ok(None);
    }
    Ok(state
        .store
        .web_session(&hash_token(&id))
        .await?
        .filter(|s| s.kind == kind))
}

/// A logged-in customer (extractor; redirects to `/login` otherwise).
pub(crate) struct CustomerSession {
    pub login: String,
    pub csrf: String,
}

impl CustomerSession {
    pub fn check_csrf(&self, token: &str) -> Result<(), PortalError> {
        if same_secret(&self.csrf, token) {
            Ok(())
        } else {
            Err(PortalError::Csrf)
        }
    }
}

impl FromRequestParts<Shared> for CustomerSession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        match session_of(state, &parts.headers, SessionKind::Customer).await {
            Ok(Some(s)) => Ok(CustomerSession {
                login: s.principal,
                csrf: s.csrf,
            }),
            Ok(None) if parts.method == axum::http::Method::GET => {
                Err(Redirect::to("/login").into_response())
            }
            Ok(None) => Err(PortalError::Unauthenticated.into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// A logged-in operator in the console (extractor; redirects to `/console/login`).
pub(crate) struct OperatorSession {
    pub operator: Operator,
    pub csrf: String,
}

impl OperatorSession {
    pub fn check_csrf(&self, token: &str) -> Result<(), PortalError> {
        if same_secret(&self.csrf, token) {
            Ok(())
        } else {
            Err(PortalError::Csrf)
        }
    }

    pub fn require(&self, role: OperatorRole) -> Result<(), PortalError> {
        require(&self.operator, role)
    }

    pub fn actor(&self) -> policy::Actor {
        policy::Actor::Operator(self.operator.name.clone())
    }
}

pub(crate) fn require(op: &Operator, role: OperatorRole) -> Result<(), PortalError> {
    if op.role.allows(role) {
        Ok(())
    } else {
        tracing::warn!(operator = %op.name, role = %op.role, needed = %role, "operator refused");
        Err(PortalError::Forbidden(role))
    }
}

impl FromRequestParts<Shared> for OperatorSession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let session = match session_of(state, &parts.headers, SessionKind::Operator).await {
            Ok(s) => s,
            Err(e) => return Err(e.into_response()),
        };
        // The account may have been removed since login.
        let operator = match &session {
            Some(s) => match state.store.operator(&s.principal).await {
                Ok(op) => op,
                Err(e) => return Err(PortalError::from(e).into_response()),
            },
            None => None,
        };
        match (session, operator) {
            (Some(s), Some(operator)) => Ok(OperatorSession {
                operator,
                csrf: s.csrf,
            }),
            _ if parts.method == axum::http::Method::GET => {
                Err(Redirect::to("/console/login").into_response())
            }
            _ => Err(PortalError::Unauthenticated.into_response()),
        }
    }
}

/// An operator calling the API with `Authorization: Bearer TOKEN`.
pub(crate) struct ApiOperator(pub Operator);

impl ApiOperator {
    pub fn require(&self, role: OperatorRole) -> Result<(), ApiError> {
        Ok(require(&self.0, role)?)
    }

    pub fn actor(&self) -> policy::Actor {
        policy::Actor::Operator(self.0.name.clone())
    }
}

impl FromRequestParts<Shared> for ApiOperator {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(PortalError::Unauthenticated)?;
        match state
            .store
            .operator_by_token_hash(&hash_token(token))
            .await?
        {
            Some(op) => Ok(ApiOperator(op)),
            None => {
                tracing::warn!("API call with an unknown token");
                Err(PortalError::Unauthenticated.into())
            }
        }
    }
}

/// The login forms' anti-forgery token: reuses the cookie's value or makes one.
/// Returns the token and, when new, the `Set-Cookie` to send.
pub(crate) fn login_csrf(
    state: &Shared,
    headers: &HeaderMap,
    path: &str,
) -> (String, Option<String>) {
    match cookie(headers, LOGIN_CSRF_COOKIE).filter(|c| c.len() == 64) {
        Some(t) => (t, None),
        None => {
            let t = random_token();
            let c = set_cookie(LOGIN_CSRF_COOKIE, &t, path, state.secure, None);
            (t, Some(c))
        }
    }
}

/// Checks a login form's token against its cookie.
pub(crate) fn check_login_csrf(headers: &HeaderMap, token: &str) -> Result<(), PortalError> {
    match cookie(headers, LOGIN_CSRF_COOKIE) {
        Some(c) if c.len() == 64 && same_secret(&c, token) => Ok(()),
        _ => Err(PortalError::Csrf),
    }
}

/// Adds the security headers to every response.
/// Also logs each request (method, path, status, time taken) at debug level.
pub(crate) async fn headers(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let mut res = next.run(req).await;
    tracing::debug!(
        %method,
        path,
        status = res.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "portal request"
    );
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    if state.secure {
        set(h, "strict-transport-security", "max-age=31536000");
    }
    res
}
