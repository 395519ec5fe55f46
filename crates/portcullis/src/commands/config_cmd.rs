//! `portcullis config check | default`.

use config::{Source, DEFAULT_TOML};

use super::{CliError, Ctx};
use crate::cli::ConfigCmd;

pub fn run(ctx: &Ctx, cmd: ConfigCmd) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Default => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        ConfigCmd::Check => {
            let from = match &ctx.source {
                Source::File(p) => p.display().to_string(),
                Source::Defaults => "built-in defaults (no portcullis.toml)".to_string(),
            };
            if ctx.json {
                return crate::output::json(
                    &serde_json::json!({ "source": from, "ok": true, "config": ctx.config }),
                );
            }
            let c = &ctx.config;
            println!("{from}: ok");
            println!("store: {}", c.store.url);
            println!(
                "pools: dynamic {}; static {}",
                list(&c.network.dynamic_pools),
                list(&c.network.static_pools)
            );
            println!(
                "submission: starttls {}; tls {}; auth {:?}",
                list(&c.submission.listen_starttls),
                list(&c.submission.listen_tls),
                c.auth.backend
            );
            println!(
                "radius: auth {}; acct {}",
                list(&c.radius.listen_auth),
                list(&c.radius.listen_acct)
            );
            println!(
                "nftables: {}",
                if c.enforce.nftables { "managed" } else { "off" }
            );
            println!("portal: {}", list(&c.portal.listen));
            Ok(())
        }
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "(off)".to_string();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
