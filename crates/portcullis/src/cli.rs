//! The command line: DESIGN.md's public contract, as clap definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "The outbound-mail control plane of an ISP"
)]
pub struct Cli {
    /// Configuration file (default ./portcullis.toml; built-in defaults when absent).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print what a reading command finds as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every enabled component in one process.
    Serve,
    #[command(subcommand)]
    Config(ConfigCmd),
    #[command(subcommand)]
    Subscriber(SubscriberCmd),
    #[command(subcommand)]
    Optout(OptoutCmd),
    #[command(subcommand)]
    Port25(Port25Cmd),
    #[command(subcommand)]
    Lease(LeaseCmd),
    /// Who held IP at a time (default: now). Exit 1 when nobody did.
    Whois {
        ip: String,
        /// RFC 3339 time, e.g. 2026-11-27T10:00:00Z.
        #[arg(long)]
        at: Option<String>,
    },
    /// The audit log, for one subscriber or everyone.
    Audit {
        login: Option<String>,
        #[arg(long, default_value_t = 200)]
        limit: i64,
    },
    #[command(subcommand)]
    Enforce(EnforceCmd),
    #[command(subcommand)]
    Operator(OperatorCmd),
    #[command(subcommand)]
    Abuse(AbuseCmd),
    #[command(subcommand)]
    Queue(QueueCmd),
    #[command(subcommand)]
    Dkim(DkimCmd),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate the configuration and say where it came from.
    Check,
    /// Print the commented default configuration.
    Default,
}

#[derive(Args, Debug)]
pub struct PasswordArgs {
    /// The subscriber's password (visible in the process list: prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum SubscriberCmd {
    /// Create a subscriber.
    Add {
        login: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[arg(long, default_value = "dynamic")]
        plan: String,
        /// A static address or prefix (repeatable); requires --plan static.
        #[arg(long = "static-ip")]
        static_ip: Vec<String>,
        #[arg(long)]
        email: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Create subscribers from CSV: login,plan,static_ip,email,password_hash.
    Import {
        file: PathBuf,
    },
    /// Plan, port-25 state, addresses, leases, opt-out requests.
    Show {
        login: String,
    },
    List,
    /// Change the plan; static needs --static-ip.
    SetPlan {
        login: String,
        plan: String,
        #[arg(long = "static-ip")]
        static_ip: Vec<String>,
    },
    /// Let LOGIN send as ADDR or any address @DOMAIN.
    AllowSender {
        login: String,
        sender: String,
    },
    /// Stop LOGIN from sending through submission (e.g. stolen credentials).
    Suspend {
        login: String,
        #[arg(long)]
        reason: String,
    },
    /// Let LOGIN send again.
    Unsuspend {
        login: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum OptoutCmd {
    /// Ask to open port 25 (on the subscriber's behalf).
    Request {
        login: String,
        /// The subscriber accepts the acceptable use policy.
        #[arg(long)]
        accept_aup: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Approve a pending request: port 25 opens.
    Approve {
        login: String,
        #[arg(long, default_value = "approved")]
        reason: String,
    },
    /// Deny a pending request: port 25 stays blocked.
    Deny {
        login: String,
        #[arg(long, default_value = "denied")]
        reason: String,
    },
    /// Pending requests.
    List,
}

#[derive(Subcommand, Debug)]
pub enum Port25Cmd {
    /// Block port 25 (state reinstated: only an operator re-opens).
    Block {
        login: String,
        #[arg(long)]
        reason: String,
    },
    /// Open port 25 (opted-out for dynamic, exempt for static).
    Unblock {
        login: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum LeaseCmd {
    /// Load session history from CSV: login,ip,start,end.
    Import { file: PathBuf },
    /// Leases of a subscriber, of an address, or all.
    List {
        login_or_ip: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum EnforceCmd {
    /// Print the nftables ruleset for `nft -f`.
    Render,
    /// Print the dynamic pools as an rbldnsd ip4set (policy block list).
    ExportPbl,
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Create an operator account for the console and the API.
    Add {
        name: String,
        /// support, abuse or admin.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    List,
    /// Remove an operator with its API tokens and sessions.
    Remove {
        name: String,
    },
    /// Print a new API token (alone on stdout) for `Authorization: Bearer TOKEN`.
    Token {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AbuseCmd {
    /// Ingest ARF or plain complaints: an .eml file, an mbox, a maildir, or - for stdin.
    Ingest { path: PathBuf },
    /// Abuse cases, for one subscriber or all.
    Cases { login: Option<String> },
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Messages in the queue.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// One message: recipients, every attempt, the next attempt.
    Show { id: String },
    /// Try the message's pending recipients now.
    Retry { id: String },
    /// Remove a message; --bounce tells the sender with a delivery status notification.
    Delete {
        id: String,
        #[arg(long)]
        bounce: bool,
    },
    /// Try every pending recipient now.
    Flush,
}

#[derive(Subcommand, Debug)]
pub enum DkimCmd {
    /// Make a signing key in data_dir/dkim/DOMAIN.SELECTOR.key and print its DNS record.
    Keygen {
        domain: String,
        selector: String,
        #[arg(long, default_value = "rsa")]
        algorithm: String,
    },
}
