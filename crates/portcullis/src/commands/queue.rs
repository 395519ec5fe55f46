//! `portcullis queue list | show | retry | delete | flush` and `portcullis dkim keygen`.

use std::sync::Arc;

use super::{CliError, Ctx};
use crate::cli::{DkimCmd, QueueCmd};
use crate::output;

fn err(e: delivery::DeliveryError) -> CliError {
    CliError(e.to_string())
}

pub async fn run(ctx: &Ctx, cmd: QueueCmd) -> Result<(), CliError> {
    let store = ctx.store().await?;
    match cmd {
        QueueCmd::List { limit } => {
            let messages = delivery::admin::queue_list(&store, limit)
                .await
                .map_err(err)?;
            if ctx.json {
                return output::json(&messages);
            }
            let rows: Vec<Vec<String>> = messages
                .iter()
                .map(|m| {
                    let pending = m
                        .recipients
                        .iter()
                        .filter(|r| {
                            matches!(
                                r.status,
                                store::RecipientStatus::Queued | store::RecipientStatus::Deferred
                            )
                        })
                        .count();
                    vec![
                        m.id.clone(),
                        m.received_at.to_string(),
                        if m.mail_from.is_empty() {
                            "<>".into()
                        } else {
                            m.mail_from.clone()
                        },
                        m.login.clone(),
                        format!("{pending}/{}", m.recipients.len()),
                    ]
                })
                .collect();
            output::table(&["ID", "RECEIVED", "FROM", "LOGIN", "PENDING"], &rows);
        }
        QueueCmd::Show { id } => {
            let entry = delivery::admin::queue_show(&store, &id)
                .await
                .map_err(err)?;
            if ctx.json {
                return output::json(&entry);
            }
            print!("{entry}");
        }
        QueueCmd::Retry { id } => {
            let n = delivery::admin::queue_retry(&store, &id)
                .await
                .map_err(err)?;
            println!("{id}: {n} recipient(s) due now");
        }
        QueueCmd::Delete { id, bounce } => {
            let config = Arc::new(ctx.config.clone());
            match delivery::admin::queue_delete(&config, &store, &id, bounce)
                .await
                .map_err(err)?
            {
                Some(report) => println!("{id}: deleted; bounce queued as {report}"),
                None => println!(
                    "{id}: deleted{}",
                    if bounce {
                        " (no bounce: null sender or NOTIFY=NEVER)"
                    } else {
                        ""
                    }
                ),
            }
        }
        QueueCmd::Flush => {
            let n = delivery::admin::queue_flush(&store).await.map_err(err)?;
            println!("{n} recipient(s) due now");
        }
    }
    Ok(())
}

pub fn dkim(ctx: &Ctx, cmd: DkimCmd) -> Result<(), CliError> {
    let DkimCmd::Keygen {
        domain,
        selector,
        algorithm,
    } = cmd;
    let (path, record) =
        delivery::dkim::dkim_keygen(&ctx.config.store.data_dir, &domain, &selector, &algorithm)
            .map_err(err)?;
    eprintln!(
        "key written to {}; publish this TXT record:",
        path.display()
    );
    println!("{record}");
    Ok(())
}
