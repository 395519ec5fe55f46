//! The CLI commands. Each reads the configuration, opens the store when it needs
//! it, and reports failure as one [`CliError`] line naming the bad input.

mod abuse_cmd;
mod audit;
mod config_cmd;
mod csv_input;
mod enforce_cmd;
mod lease;
mod operator;
mod port25;
mod queue;
mod subscriber;

use std::fmt;

use config::{Config, Source};
use policy::Actor;
use store::{Store, StoreError};

use crate::cli::{Cli, Command};

/// A command failure: one line, printed after `portcullis: `.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        CliError(e.to_string())
    }
}

impl From<config::ConfigError> for CliError {
    fn from(e: config::ConfigError) -> CliError {
        CliError(e.to_string())
    }
}

/// What every command gets: the configuration and how to print.
pub struct Ctx {
    pub config: Config,
    pub source: Source,
    pub json: bool,
}

impl Ctx {
    pub async fn store(&self) -> Result<Store, CliError> {
        Ok(Store::open(&self.config.store.url).await?)
    }

    /// The operator running the CLI, for the audit log.
    pub fn actor(&self) -> Actor {
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "cli".to_string());
        Actor::Operator(user)
    }
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let (config, source) = Config::load(cli.config.as_deref())?;
    let ctx = Ctx {
        config,
        source,
        json: cli.json,
    };
    match cli.command {
        Command::Serve => crate::serve::run(ctx).await,
        Command::Config(c) => config_cmd::run(&ctx, c),
        Command::Subscriber(c) => subscriber::run(&ctx, c).await,
        Command::Optout(c) => port25::optout(&ctx, c).await,
        Command::Port25(c) => port25::port25(&ctx, c).await,
        Command::Lease(c) => lease::run(&ctx, c).await,
        Command::Whois { ip, at } => lease::whois(&ctx, &ip, at.as_deref()).await,
        Command::Audit { login, limit } => audit::run(&ctx, login.as_deref(), limit).await,
        Command::Enforce(c) => enforce_cmd::run(&ctx, c).await,
        Command::Operator(c) => operator::run(&ctx, c).await,
        Command::Abuse(c) => abuse_cmd::run(&ctx, c).await,
        Command::Queue(c) => queue::run(&ctx, c).await,
        Command::Dkim(c) => queue::dkim(&ctx, c),
    }
}
