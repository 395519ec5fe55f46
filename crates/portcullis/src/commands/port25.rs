//! `portcullis optout ...` and `portcullis port25 ...`: steps of the port-25 state
//! machine, each recorded in the audit log by the store.

use policy::Port25Action;

use super::{CliError, Ctx};
use crate::cli::{OptoutCmd, Port25Cmd};
use crate::output;

async fn step(ctx: &Ctx, login: &str, action: Port25Action, reason: &str) -> Result<(), CliError> {
    let store = ctx.store().await?;
    let (from, to) = store
        .transition(login, action, &ctx.actor(), reason)
        .await?;
    println!(
        "{login}: {from} -> {to} (port 25 {})",
        if to.is_open() { "open" } else { "blocked" }
    );
    Ok(())
}

pub async fn optout(ctx: &Ctx, cmd: OptoutCmd) -> Result<(), CliError> {
    match cmd {
        OptoutCmd::Request {
            login,
            accept_aup,
            reason,
        } => {
            step(
                ctx,
                &login,
                Port25Action::RequestOptOut {
                    aup_accepted: accept_aup,
                },
                &reason,
            )
            .await
        }
        OptoutCmd::Approve { login, reason } => {
            step(ctx, &login, Port25Action::ApproveOptOut, &reason).await
        }
        OptoutCmd::Deny { login, reason } => {
            step(ctx, &login, Port25Action::DenyOptOut, &reason).await
        }
        OptoutCmd::List => {
            let store = ctx.store().await?;
            let pending = store.optout_requests(None).await?;
            if ctx.json {
                return output::json(&pending);
            }
            let rows: Vec<Vec<String>> = pending
                .iter()
                .map(|r| {
                    vec![
                        r.login.clone(),
                        r.requested_at.to_string(),
                        r.reason.clone(),
                    ]
                })
                .collect();
            output::table(&["LOGIN", "REQUESTED", "REASON"], &rows);
            Ok(())
        }
    }
}

pub async fn port25(ctx: &Ctx, cmd: Port25Cmd) -> Result<(), CliError> {
    let (login, action, reason) = match cmd {
        Port25Cmd::Block { login, reason } => (login, Port25Action::Block, reason),
        Port25Cmd::Unblock { login, reason } => (login, Port25Action::Unblock, reason),
    };
    if reason.trim().is_empty() {
        return Err(CliError(
            "--reason must say why (it goes into the audit log)".into(),
        ));
    }
    step(ctx, &login, action, &reason).await
}
