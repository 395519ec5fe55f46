//! Operator accounts for the command line: `portcullis operator add|list|remove` and
//! `portcullis operator token NAME` call these. Passwords are hashed here (argon2id,
//! on a blocking thread); API tokens are made by [`crate::create_api_token`].

use store::{Operator, OperatorRole, Store};

use crate::error::PortalError;

/// Operator passwords are at least this long.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Creates an operator. `role` is `support`, `abuse` or `admin`.
pub async fn add_operator(
    store: &Store,
    name: &str,
    role: &str,
    password: &str,
) -> Result<Operator, PortalError> {
    let role: OperatorRole = role.parse()?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PortalError::BadRequest(format!(
            "operator passwords need at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    let pw = password.to_string();
    let hash = tokio::task::spawn_blocking(move || store::password::hash_password(&pw))
        .await
        .map_err(|e| PortalError::BadRequest(format!("could not hash the password: {e}")))?;
    let op = store.add_operator(name, role, &hash).await?;
    tracing::info!(operator = %op.name, role = %op.role, "operator added");
    Ok(op)
}

/// Every operator, by name.
pub async fn list_operators(store: &Store) -> Result<Vec<Operator>, PortalError> {
    Ok(store.list_operators().await?)
}

/// Removes an operator with its API tokens and sessions.
pub async fn remove_operator(store: &Store, name: &str) -> Result<(), PortalError> {
    if store.remove_operator(name).await? {
        tracing::info!(operator = name, "operator removed");
        Ok(())
    } else {
        Err(PortalError::NotFound(format!("operator '{name}'")))
    }
}
