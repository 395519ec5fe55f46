//! `portcullis enforce render | export-pbl`.

use super::{CliError, Ctx};
use crate::cli::EnforceCmd;

pub async fn run(ctx: &Ctx, cmd: EnforceCmd) -> Result<(), CliError> {
    match cmd {
        EnforceCmd::Render => {
            let store = ctx.store().await?;
            let ruleset = enforce::nftables::render(&ctx.config, &store)
                .await
                .map_err(CliError)?;
            print!("{ruleset}");
        }
        EnforceCmd::ExportPbl => print!("{}", enforce::nftables::render_pbl(&ctx.config)),
    }
    Ok(())
}
