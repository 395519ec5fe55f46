//! The JSON API under `/api/v1`: everything the console does, for scripts and other
//! systems. Callers authenticate with an operator API token
//! (`Authorization: Bearer TOKEN`, made by `portcullis operator token NAME`); the
//! operator's role is checked on every call, as in the console. No cookies are
//! accepted here, so the API needs no CSRF token.
//!
//! The OpenAPI 3 document at `/api/v1/openapi.json` is written by hand in
//! [`openapi`]; a test checks that it lists exactly the routes of [`router`].

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use store::OperatorRole;

use crate::charts;
use crate::desk;
use crate::error::{ApiError, PortalError};
use crate::security::ApiOperator;
use crate::Shared;

type ApiResult = Result<Json<Value>, ApiError>;

pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/dashboard", get(dashboard))
        .route("/api/v1/subscribers", get(subscribers))
        .route("/api/v1/subscribers/{login}", get(subscriber))
        .route("/api/v1/subscribers/{login}/block", post(block))
        .route("/api/v1/subscribers/{login}/unblock", post(unblock))
        .route("/api/v1/whois", get(whois))
        .route("/api/v1/optouts", get(optouts))
        .route("/api/v1/optouts/{login}/approve", post(optout_approve))
        .route("/api/v1/optouts/{login}/deny", post(optout_deny))
        .route("/api/v1/static-requests", get(static_requests))
        .route("/api/v1/static-requests/{id}/approve", post(static_approve))
        .route("/api/v1/static-requests/{id}/deny", post(static_deny))
        .route("/api/v1/support-requests", get(support_requests))
        .route("/api/v1/support-requests/{id}/close", post(support_close))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/queue", get(queue))
        .route("/api/v1/queue/flush", post(queue_flush))
        .route(
            "/api/v1/queue/{id}",
            get(queue_message).delete(queue_delete),
        )
        .route("/api/v1/queue/{id}/retry", post(queue_retry))
        .route("/api/v1/operators", get(operators))
        .route("/api/v1/abuse/arf", post(abuse_arf))
        .route("/api/v1/abuse/cases", get(abuse_cases))
        .route("/api/v1/abuse/cases/{id}", get(abuse_case))
        .route("/api/v1/abuse/cases/{id}/close", post(abuse_case_close))
        .route("/api/v1/{*rest}", any(no_route))
}

async fn no_route() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "no such API route; see /api/v1/openapi.json" })),
    )
}

fn ok<T: serde::Serialize>(v: T) -> ApiResult {
    serde_json::to_value(v).map(Json).map_err(|e| {
        ApiError(PortalError::BadRequest(format!(
            "cannot encode the answer: {e}"
        )))
    })
}

/// The optional JSON body `{"reason": "..."}` of decisions.
#[derive(Deserialize, Default)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

fn reason_of(body: &Bytes) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let b: ReasonBody = serde_json::from_slice(body).map_err(|e| {
        PortalError::BadRequest(format!(
            "the body must be JSON like {{\"reason\": \"...\"}}: {e}"
        ))
    })?;
    Ok(b.reason)
}

fn id_of(id: &str, what: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError(PortalError::NotFound(format!("{what} #{id}"))))
}

async fn openapi_json() -> impl IntoResponse {
    Json(openapi())
}

async fn dashboard(State(state): State<Shared>, op: ApiOperator) -> ApiResult {
    op.require(OperatorRole::Support)?;
    ok(charts::dashboard(&state).await?)
}

#[derive(Deserialize, Default)]
struct SearchQuery {
    q: Option<String>,
    limit: Option<i64>,
}

async fn subscribers(
    State(state): State<Shared>,
    op: ApiOperator,
    Query(q): Query<SearchQuery>,
) -> ApiResult {
    op.require(OperatorRole::Support)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    ok(state
        .store
        .search_subscribers(q.q.as_deref().unwrap_or(""), limit)
        .await?)
}

async fn subscriber(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(login): Path<String>,
) -> ApiResult {
    op.require(OperatorRole::Support)?;
    ok(desk::subscriber_detail(&state, &login).await?)
}

fn transition_json(
    login: &str,
    (from, to): (policy::Port25State, policy::Port25State),
) -> ApiResult {
    ok(json!({ "login": login, "from": from, "to": to, "port25_open": to.is_open() }))
}

async fn block(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(login): Path<String>,
    body: Bytes,
) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    let r = desk::port25(&state, &op.actor(), &login, true, &reason_of(&body)?).await?;
    transition_json(&login, r)
}

async fn unblock(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(login): Path<String>,
    body: Bytes,
) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    let r = desk::port25(&state, &op.actor(), &login, false, &reason_of(&body)?).await?;
    transition_json(&login, r)
}

#[derive(Deserialize, Default)]
struct WhoisQuery {
    ip: Option<String>,
    at: Option<String>,
}

async fn whois(
    State(state): State<Shared>,
    op: ApiOperator,
    Query(q): Query<WhoisQuery>,
) -> ApiResult {
    op.require(OperatorRole::Support)?;
    let ip =
        q.ip.ok_or_else(|| PortalError::BadRequest("give the address as ?ip=".into()))?;
    let (addr, at) = desk::whois_query(&ip, q.at.as_deref(), state.store.now())?;
    match state.store.whois(addr, at).await? {
        Some(l) => ok(json!({ "ip": addr, "at": at, "login": l.lease.login, "lease": l })),
        None => Err(PortalError::NotFound(format!("a holder of {addr} at {at}")).into()),
    }
}

async fn optouts(State(state): State<Shared>, op: ApiOperator) -> ApiResult {
    op.require(OperatorRole::Support)?;
    ok(state.store.optout_requests(None).await?)
}

async fn optout_approve(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(login): Path<String>,
    body: Bytes,
) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    let r = desk::decide_optout(&state, &op.actor(), &login, true, &reason_of(&body)?).await?;
    transition_json(&login, r)
}

async fn optout_deny(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(login): Path<String>,
    body: Bytes,
) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    let r = desk::decide_optout(&state, &op.actor(), &login, false, &reason_of(&body)?).await?;
    transition_json(&login, r)
}

async fn static_requests(State(state): State<Shared>, op: ApiOperator) -> ApiResult {
    op.require(OperatorRole::Support)?;
    ok(state.store.static_requests(None).await?)
}

async fn static_approve(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    op.require(OperatorRole::Support)?;
    let id = id_of(&id, "static-address request")?;
    ok(desk::decide_static(&state, &op.actor(), id, true, &reason_of(&body)?).await?)
}

async fn static_deny(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    op.require(OperatorRole::Support)?;
    let id = id_of(&id, "static-address request")?;
    ok(desk::decide_static(&state, &op.actor(), id, false, &reason_of(&body)?).await?)
}

async fn support_requests(State(state): State<Shared>, op: ApiOperator) -> ApiResult {
    op.require(OperatorRole::Support)?;
    ok(state.store.support_requests(None).await?)
}

async fn support_close(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(id): Path<String>,
) -> ApiResult {
    op.require(OperatorRole::Support)?;
    let id = id_of(&id, "support request")?;
    state.store.close_support_request(id, &op.actor()).await?;
    ok(json!({ "id": id, "status": "closed" }))
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    login: Option<String>,
    limit: Option<i64>,
}

async fn audit(
    State(state): State<Shared>,
    op: ApiOperator,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    op.require(OperatorRole::Support)?;
    let limit = q.limit.unwrap_or(500).clamp(1, 100_000);
    ok(state.store.audit(q.login.as_deref(), limit).await?)
}

async fn queue(State(state): State<Shared>, op: ApiOperator) -> ApiResult {
    op.require(OperatorRole::Support)?;
    ok(json!({
        "messages": state.store.queue_len().await?,
        "queue": state.store.list_queue(1000).await?,
    }))
}

async fn queue_message(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(id): Path<String>,
) -> ApiResult {
    op.require(OperatorRole::Support)?;
    match state.store.queue_message(&id).await? {
        Some(m) => ok(m),
        None => Err(PortalError::NotFound(format!("queued message {id}")).into()),
    }
}

async fn queue_retry(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(id): Path<String>,
) -> ApiResult {
    op.require(OperatorRole::Support)?;
    let n = desk::queue_retry(&state, &op.actor(), &id).await?;
    ok(json!({ "id": id, "recipients_due": n }))
}

async fn queue_delete(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(id): Path<String>,
) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    desk::queue_delete(&state, &op.actor(), &id).await?;
    ok(json!({ "id": id, "deleted": true }))
}

async fn queue_flush(State(state): State<Shared>, op: ApiOperator) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    let n = state.store.flush_queue().await?;
    tracing::info!(operator = %op.0.name, recipients = n, "queue flushed");
    ok(json!({ "recipients_due": n }))
}

async fn operators(State(state): State<Shared>, op: ApiOperator) -> ApiResult {
    op.require(OperatorRole::Admin)?;
    ok(state.store.list_operators().await?)
}

async fn abuse_arf(
    State(state): State<Shared>,
    op: ApiOperator,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ctype.starts_with("message/rfc822") {
        return Err(PortalError::BadRequest(format!(
            "send the raw report with Content-Type: message/rfc822 (got '{ctype}')"
        ))
        .into());
    }
    if body.is_empty() {
        return Err(PortalError::BadRequest("the report is empty".into()).into());
    }
    match abuse::ingest_bytes(&state.config, &state.store, &body).await {
        Ok(outcome) => {
            tracing::info!(operator = %op.0.name, bytes = body.len(), "abuse report ingested over the API");
            ok(outcome)
        }
        Err(abuse::AbuseError::Store(e)) => Err(PortalError::Store(e).into()),
        Err(e) => Err(PortalError::Unprocessable(e.to_string()).into()),
    }
}

#[derive(Deserialize, Default)]
struct CasesQuery {
    login: Option<String>,
}

async fn abuse_cases(
    State(state): State<Shared>,
    op: ApiOperator,
    Query(q): Query<CasesQuery>,
) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    ok(state.store.abuse_cases(q.login.as_deref()).await?)
}

async fn abuse_case(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(id): Path<String>,
) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    let (case, evidence) = desk::abuse_case(&state, &id).await?;
    ok(json!({ "case": case, "evidence": evidence }))
}

async fn abuse_case_close(
    State(state): State<Shared>,
    op: ApiOperator,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    op.require(OperatorRole::Abuse)?;
    let n = desk::close_case(&state, &op.actor(), &id, &reason_of(&body)?).await?;
    ok(json!({ "id": n, "status": "closed" }))
}

// ----- OpenAPI ---------------------------------------------------------------------

fn param(name: &str, place: &str, required: bool, desc: &str) -> Value {
    json!({ "name": name, "in": place, "required": required, "description": desc, "schema": { "type": "string" } })
}

fn operation(summary: &str, role: &str, params: Vec<Value>, reason_body: bool) -> Value {
    let mut op = json!({
        "summary": summary,
        "description": format!("Needs the `{role}` role or higher."),
        "security": [{ "bearer": [] }],
        "parameters": params,
        "responses": {
            "200": { "description": "OK", "content": { "application/json": { "schema": { "type": "object" } } } },
            "400": { "$ref": "#/components/responses/Error" },
            "401": { "$ref": "#/components/responses/Error" },
            "403": { "$ref": "#/components/responses/Error" },
            "404": { "$ref": "#/components/responses/Error" },
            "409": { "$ref": "#/components/responses/Error" }
        }
    });
    if reason_body {
        op["requestBody"] = json!({
            "required": false,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Reason" } } }
        });
    }
    op
}

/// The OpenAPI 3 document of this API.
pub(crate) fn openapi() -> Value {
    let login = || param("login", "path", true, "the subscriber's PPPoE login");
    let id = || param("id", "path", true, "the request's number");
    let mut arf = operation(
        "Submit an abuse report (ARF, RFC 5965, or a plain complaint) as raw message/rfc822",
        "abuse",
        vec![],
        false,
    );
    arf["requestBody"] = json!({ "required": true, "content": { "message/rfc822": { "schema": { "type": "string", "format": "binary" } } } });
    arf["responses"]["422"] = json!({ "$ref": "#/components/responses/Error" });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "portcullis API",
            "version": "1",
            "description": "The operator API of portcullis, the outbound-mail control plane. Authenticate with `Authorization: Bearer TOKEN` (`portcullis operator token NAME`). Errors are `{\"error\": \"...\"}`."
        },
        "servers": [{ "url": "/" }],
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Reason": { "type": "object", "properties": { "reason": { "type": "string", "maxLength": 2000 } } },
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } }
            },
            "responses": {
                "Error": { "description": "The request was refused; `error` says why.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        },
        "paths": {
            "/api/v1/openapi.json": { "get": { "summary": "This document", "security": [], "responses": { "200": { "description": "OpenAPI 3 document" } } } },
            "/api/v1/dashboard": { "get": operation("Dashboard figures: states now and per day, opt-outs, re-instatements, abuse per day, queue size", "support", vec![], false) },
            "/api/v1/subscribers": { "get": operation("Search subscribers by login, name or email", "support", vec![param("q", "query", false, "text to look for (empty: all)"), param("limit", "query", false, "at most this many (default 100)")], false) },
            "/api/v1/subscribers/{login}": { "get": operation("One subscriber with leases, audit trail, opt-out, static and support requests", "support", vec![login()], false) },
            "/api/v1/subscribers/{login}/block": { "post": operation("Block port 25 (state reinstated); a reason is required", "abuse", vec![login()], true) },
            "/api/v1/subscribers/{login}/unblock": { "post": operation("Open port 25 (opted-out, or exempt for static); a reason is required", "abuse", vec![login()], true) },
            "/api/v1/whois": { "get": operation("Who held an IP address at a time", "support", vec![param("ip", "query", true, "IPv4 or IPv6 address"), param("at", "query", false, "RFC 3339 time (default: now)")], false) },
            "/api/v1/optouts": { "get": operation("Pending opt-out requests", "support", vec![], false) },
            "/api/v1/optouts/{login}/approve": { "post": operation("Approve the subscriber's pending opt-out (port 25 opens)", "abuse", vec![login()], true) },
            "/api/v1/optouts/{login}/deny": { "post": operation("Deny the subscriber's pending opt-out; a reason is required", "abuse", vec![login()], true) },
            "/api/v1/static-requests": { "get": operation("Pending static-address requests", "support", vec![], false) },
            "/api/v1/static-requests/{id}/approve": { "post": operation("Approve: assigns the next free address of network.static_pools and moves the subscriber to the static plan", "support", vec![id()], true) },
            "/api/v1/static-requests/{id}/deny": { "post": operation("Deny a static-address request; a reason is required", "support", vec![id()], true) },
            "/api/v1/support-requests": { "get": operation("Open support requests", "support", vec![], false) },
            "/api/v1/support-requests/{id}/close": { "post": operation("Close a support request", "support", vec![id()], false) },
            "/api/v1/audit": { "get": operation("The audit log, newest last", "support", vec![param("login", "query", false, "one subscriber only"), param("limit", "query", false, "at most this many (default 500)")], false) },
            "/api/v1/queue": { "get": operation("The mail queue", "support", vec![], false) },
            "/api/v1/queue/flush": { "post": operation("Make every pending recipient due now", "abuse", vec![], false) },
            "/api/v1/queue/{id}": {
                "get": operation("One queued message with its recipients", "support", vec![param("id", "path", true, "queue id")], false),
                "delete": operation("Delete a queued message without delivering it", "abuse", vec![param("id", "path", true, "queue id")], false)
            },
            "/api/v1/queue/{id}/retry": { "post": operation("Make the message's pending recipients due now", "support", vec![param("id", "path", true, "queue id")], false) },
            "/api/v1/operators": { "get": operation("Operator accounts", "admin", vec![], false) },
            "/api/v1/abuse/arf": { "post": arf },
            "/api/v1/abuse/cases": { "get": operation("Abuse cases, newest activity first", "abuse", vec![param("login", "query", false, "one subscriber only")], false) },
            "/api/v1/abuse/cases/{id}": { "get": operation("One abuse case with its evidence", "abuse", vec![id()], false) },
            "/api/v1/abuse/cases/{id}/close": { "post": operation("Close an open abuse case; a reason is required", "abuse", vec![id()], true) }
        }
    })
}
