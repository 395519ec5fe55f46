//! `portcullis audit [LOGIN]`.

use super::{CliError, Ctx};
use crate::output;

pub async fn run(ctx: &Ctx, login: Option<&str>, limit: i64) -> Result<(), CliError> {
    let store = ctx.store().await?;
    if let Some(l) = login {
        store.subscriber(l).await?;
    }
    let entries = store.audit(login, limit).await?;
    if ctx.json {
        return output::json(&entries);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let change = match (&e.from, &e.to) {
                (Some(f), Some(t)) => format!("{f} -> {t}"),
                (None, Some(t)) => format!("-> {t}"),
                _ => String::new(),
            };
            vec![
                e.at.to_string(),
                e.actor.to_string(),
                e.login.clone(),
                e.action.clone(),
                change,
                e.reason.clone(),
            ]
        })
        .collect();
    output::table(
        &["TIME", "ACTOR", "LOGIN", "ACTION", "STATE", "REASON"],
        &rows,
    );
    Ok(())
}
