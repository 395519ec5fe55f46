//! `portcullis enforce render | export-pbl`.

use super::{CliError, Ctx};
use crate::cli::EnforceCmd;

pub async fn run(_ctx: &Ctx, cmd: EnforceCmd) -> Result<(), CliError> {
    match cmd {
        EnforceCmd::Render | EnforceCmd::ExportPbl => {
            Err(CliError("enforce: not built yet".into()))
        }
    }
}
