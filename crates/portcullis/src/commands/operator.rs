//! `portcullis operator add | list | remove | token`: accounts for the console and API.

use store::password::hash_password;
use store::OperatorRole;

use super::subscriber::read_password;
use super::{CliError, Ctx};
use crate::cli::OperatorCmd;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: OperatorCmd) -> Result<(), CliError> {
    let store = ctx.store().await?;
    match cmd {
        OperatorCmd::Add { name, role, password } => {
            let role: OperatorRole = role.parse()?;
            let password = read_password(&password)?
                .ok_or_else(|| CliError("a password is required (--password or --password-stdin)".into()))?;
            let op = store.add_operator(&name, role, &hash_password(&password)).await?;
            println!("operator {}: added with role {}", op.name, op.role);
        }
        OperatorCmd::List => {
            let ops = store.list_operators().await?;
            if ctx.json {
                return output::json(&ops);
            }
            let rows: Vec<Vec<String>> =
                ops.iter().map(|o| vec![o.name.clone(), o.role.to_string(), o.created.to_string()]).collect();
            output::table(&["NAME", "ROLE", "CREATED"], &rows);
        }
        OperatorCmd::Remove { name } => {
            if !store.remove_operator(&name).await? {
                return Err(CliError(format!("no operator named '{name}'")));
            }
            println!("operator {name}: removed, with its API tokens and sessions");
        }
        OperatorCmd::Token { name } => {
            let token = portal::create_api_token(&store, &name).await.map_err(|e| CliError(e.to_string()))?;
            println!("{token}");
        }
    }
    Ok(())
}
