//! Versioned schema migrations, applied in order at open. Each is written once in the
//! common dialect (see `db`); `{serial}` becomes the backend's auto-numbered key.

use crate::db::Db;
use crate::error::StoreError;

/// Every migration ever shipped, oldest first. Never edit a shipped one: add a new one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, V1_FOUNDATION),
    (2, crate::queue::MIGRATION),
    (3, crate::enforcement::MIGRATION),
    (4, crate::sessions::MIGRATION),
    (5, crate::abuse::MIGRATION),
    (6, crate::portal::MIGRATION),
    (7, crate::delivery::MIGRATION),
    (8, crate::mta_sts::MIGRATION),
    (9, crate::portal::MIGRATION_ONE_PENDING_STATIC),
    (10, crate::sessions::OPEN_SESSIONS_MIGRATION),
    (11, crate::queue::DROP_LOGIN_INDEX_MIGRATION),
];

const V1_FOUNDATION: &str = "
CREATE TABLE subscribers (
    login TEXT PRIMARY KEY,
    display_name TEXT,
    email TEXT,
    plan TEXT NOT NULL,
    port25 TEXT NOT NULL,
    password_hash TEXT,
    suspended BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE static_addresses (
    net TEXT PRIMARY KEY,
    login TEXT NOT NULL REFERENCES subscribers (login),
    lo TEXT NOT NULL,
    hi TEXT NOT NULL
);
CREATE INDEX static_addresses_login ON static_addresses (login);
CREATE TABLE allowed_senders (
    login TEXT NOT NULL REFERENCES subscribers (login),
    sender TEXT NOT NULL,
    PRIMARY KEY (login, sender)
);
CREATE TABLE leases (
    id {serial},
    login TEXT NOT NULL,
    net TEXT NOT NULL,
    lo TEXT NOT NULL,
    hi TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT,
    source TEXT NOT NULL,
    session_id TEXT,
    nas TEXT
);
CREATE INDEX leases_lo ON leases (lo, start_at);
CREATE INDEX leases_login ON leases (login, start_at);
CREATE TABLE audit (
    id {serial},
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    login TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    reason TEXT NOT NULL
);
CREATE INDEX audit_login ON audit (login, id);
CREATE TABLE events (
    id {serial},
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    login TEXT,
    payload TEXT NOT NULL
);
CREATE TABLE optout_requests (
    id {serial},
    login TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    decision_reason TEXT
);
CREATE INDEX optout_requests_login ON optout_requests (login, id);
CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    operator TEXT NOT NULL REFERENCES operators (name),
    created_at BIGINT NOT NULL
);
";

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

pub(crate) async fn migrate(db: &Db, now: i64) -> Result<(), StoreError> {
    let serial = if db.is_postgres() {
        "BIGSERIAL PRIMARY KEY"
    } else {
        "INTEGER PRIMARY KEY AUTOINCREMENT"
    };
    if db.is_postgres() {
        // Two nodes starting together must not both migrate.
        db.batch("SELECT pg_advisory_lock(7070250)").await?;
    }
    let result = apply_pending(db, serial, now).await;
    if db.is_postgres() {
        db.batch("SELECT pg_advisory_unlock(7070250)").await?;
    }
    result
}

async fn apply_pending(db: &Db, serial: &str, now: i64) -> Result<(), StoreError> {
    db.batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .await?;
    let current = db
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            vec![],
        )
        .await?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    if current > LATEST {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: LATEST,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let script = format!(
            "BEGIN; {} INSERT INTO schema_migrations (version, applied_at) VALUES ({version}, {now}); COMMIT;",
            sql.replace("{serial}", serial)
        );
        if let Err(e) = db.batch(&script).await {
            let _ = db.batch("ROLLBACK").await;
            return Err(StoreError::Backend(format!(
                "migration {version} failed: {e}"
            )));
        }
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}
