//! `portcullis operator add | list | remove | token`: accounts for the console and
//! the API. The rules (roles, password length, hashing) live in `portal::operators`.

use portal::operators;

use super::subscriber::read_password;
use super::{CliError, Ctx};
use crate::cli::OperatorCmd;
use crate::output;

fn err(e: portal::PortalError) -> CliError {
    CliError(e.to_string())
}

pub async fn run(ctx: &Ctx, cmd: OperatorCmd) -> Result<(), CliError> {
    let store = ctx.store().await?;
    match cmd {
        OperatorCmd::Add {
            name,
            role,
            password,
        } => {
            let password = read_password(&password)?.ok_or_else(|| {
                CliError("a password is required (--password or --password-stdin)".into())
            })?;
            let op = operators::add_operator(&store, &name, &role, &password)
                .await
                .map_err(err)?;
            println!("operator {}: added with role {}", op.name, op.role);
        }
        OperatorCmd::List => {
            let ops = operators::list_operators(&store).await.map_err(err)?;
            if ctx.json {
                return output::json(&ops);
            }
            let rows: Vec<Vec<String>> = ops
                .iter()
                .map(|o| vec![o.name.clone(), o.role.to_string(), o.created.to_string()])
                .collect();
            output::table(&["NAME", "ROLE", "CREATED"], &rows);
        }
        OperatorCmd::Remove { name } => {
            operators::remove_operator(&store, &name)
                .await
                .map_err(err)?;
            println!("operator {name}: removed, with its API tokens and sessions");
        }
        OperatorCmd::Token { name } => {
            let token = portal::create_api_token(&store, &name).await.map_err(err)?;
            println!("{token}");
        }
    }
    Ok(())
}
