//! `portcullis abuse ingest | cases`.

use super::{CliError, Ctx};
use crate::cli::AbuseCmd;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: AbuseCmd) -> Result<(), CliError> {
    let store = ctx.store().await?;
    match cmd {
        AbuseCmd::Ingest { path } => {
            let report = abuse::ingest_path(&ctx.config, &store, &path)
                .await
                .map_err(|e| CliError(e.to_string()))?;
            if ctx.json {
                return output::json(&report);
            }
            for item in &report.items {
                let what = match (&item.outcome, &item.refused) {
                    (_, Some(why)) => format!("refused: {why}"),
                    (Some(o), None) => describe(o),
                    (None, None) => String::new(),
                };
                println!("{}: {what}", item.source);
            }
            println!(
                "{} recorded, {} duplicates, {} refused",
                report.recorded, report.duplicates, report.refused
            );
            if report.recorded + report.duplicates == 0 && report.refused > 0 {
                return Err(CliError(format!(
                    "nothing ingested from {}: every message was refused",
                    path.display()
                )));
            }
        }
        AbuseCmd::Cases { login } => {
            if let Some(l) = &login {
                store.subscriber(l).await?;
            }
            let cases = abuse::cases(&store, login.as_deref())
                .await
                .map_err(|e| CliError(e.to_string()))?;
            if ctx.json {
                return output::json(&cases);
            }
            let rows: Vec<Vec<String>> = cases
                .iter()
                .map(|c| {
                    let kinds: Vec<String> =
                        c.by_kind.iter().map(|(k, n)| format!("{k}:{n}")).collect();
                    vec![
                        c.id.to_string(),
                        c.login.clone(),
                        c.status.clone(),
                        format!("{} ({})", c.evidence_count, kinds.join(" ")),
                        c.opened_at.to_string(),
                        c.updated_at.to_string(),
                    ]
                })
                .collect();
            output::table(
                &["CASE", "LOGIN", "STATUS", "EVIDENCE", "OPENED", "UPDATED"],
                &rows,
            );
        }
    }
    Ok(())
}

/// One line for a recorded or duplicate complaint.
fn describe(outcome: &abuse::IngestOutcome) -> String {
    match outcome {
        abuse::IngestOutcome::Duplicate { .. } => "duplicate (counted once)".into(),
        abuse::IngestOutcome::Recorded {
            feedback_type,
            source_ip,
            login,
            unattributed,
            actions,
            ..
        } => {
            let who = match (login, unattributed) {
                (Some(l), _) => format!("attributed to {l}"),
                (None, Some(why)) => format!("unattributed ({why})"),
                (None, None) => "unattributed".into(),
            };
            let from = source_ip.as_deref().unwrap_or("-");
            format!(
                "{feedback_type} from {from} {who}; {} action(s)",
                actions.len()
            )
        }
    }
}
