//! Support for tests (ours and other crates'): a fresh PostgreSQL schema per test, so
//! parallel tests on one database never see each other's rows. Not for production use.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::StoreError;

/// The PostgreSQL the test suites use (see `.ci/run`).
pub const TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Creates an empty schema named `PREFIX_PID_N_NANOS` on [`TEST_POSTGRES`] and returns
/// a store URL whose connections use it.
pub async fn fresh_postgres_schema(prefix: &str) -> Result<String, StoreError> {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let schema = format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let (client, conn) = tokio_postgres::connect(TEST_POSTGRES, tokio_postgres::NoTls)
        .await
        .map_err(|e| StoreError::open(TEST_POSTGRES, e))?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await?;
    Ok(format!("{TEST_POSTGRES}?options=-csearch_path%3D{schema}"))
}
