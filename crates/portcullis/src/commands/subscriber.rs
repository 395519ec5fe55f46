//! `portcullis subscriber add | import | show | list | set-plan | allow-sender`.

use std::collections::HashMap;
use std::io::BufRead;

use config::AuthBackend;
use policy::{subscriber::validate_email, validate_login, validate_sender, IpNet, Plan};
use store::password::{check_phc, hash_password};
use store::NewSubscriber;

use super::{csv_input, CliError, Ctx};
use crate::cli::{PasswordArgs, SubscriberCmd};
use crate::output;

pub async fn run(ctx: &Ctx, cmd: SubscriberCmd) -> Result<(), CliError> {
    match cmd {
        SubscriberCmd::Add {
            login,
            password,
            plan,
            static_ip,
            email,
            name,
        } => add(ctx, login, password, &plan, &static_ip, email, name).await,
        SubscriberCmd::Import { file } => import(ctx, &file).await,
        SubscriberCmd::Show { login } => show(ctx, &login).await,
        SubscriberCmd::List => list(ctx).await,
        SubscriberCmd::SetPlan {
            login,
            plan,
            static_ip,
        } => {
            let plan: Plan = plan
                .parse()
                .map_err(|e: policy::SubscriberError| CliError(e.to_string()))?;
            let nets = static_ip
                .iter()
                .map(|s| static_net(ctx, s))
                .collect::<Result<Vec<_>, _>>()?;
            let store = ctx.store().await?;
            let s = store.set_plan(&login, plan, &nets, &ctx.actor()).await?;
            println!("{}: plan {}, port 25 {}", s.login, s.plan, s.port25);
            Ok(())
        }
        SubscriberCmd::Suspend { login, reason } => suspend(ctx, &login, true, &reason).await,
        SubscriberCmd::Unsuspend { login, reason } => suspend(ctx, &login, false, &reason).await,
        SubscriberCmd::AllowSender { login, sender } => {
            let sender = validate_sender(&sender).map_err(|e| CliError(e.to_string()))?;
            let store = ctx.store().await?;
            let added = store.allow_sender(&login, &sender, &ctx.actor()).await?;
            println!(
                "{login}: {sender} {}",
                if added {
                    "allowed"
                } else {
                    "was already allowed"
                }
            );
            Ok(())
        }
    }
}

async fn suspend(ctx: &Ctx, login: &str, on: bool, reason: &str) -> Result<(), CliError> {
    if reason.trim().is_empty() {
        return Err(CliError(
            "--reason must say why (it goes into the audit log)".into(),
        ));
    }
    let store = ctx.store().await?;
    store.subscriber(login).await?;
    let changed = store.set_suspended(login, on, &ctx.actor(), reason).await?;
    let state = if on { "suspended" } else { "allowed to send" };
    println!(
        "{login}: {}{state}",
        if changed { "" } else { "was already " }
    );
    Ok(())
}

/// A static address given by the operator: well-formed and inside a static pool.
pub fn static_net(ctx: &Ctx, text: &str) -> Result<IpNet, CliError> {
    let net: IpNet = text
        .parse()
        .map_err(|e: policy::NetError| CliError(e.to_string()))?;
    if !ctx.config.network.pools().is_static(&net) {
        let pools: Vec<String> = ctx
            .config
            .network
            .static_pools
            .iter()
            .map(ToString::to_string)
            .collect();
        return Err(CliError(format!(
            "static address {net} is outside the static pools ({})",
            if pools.is_empty() {
                "none configured".to_string()
            } else {
                pools.join(", ")
            }
        )));
    }
    Ok(net)
}

pub fn read_password(args: &PasswordArgs) -> Result<Option<String>, CliError> {
    if let Some(p) = &args.password {
        return Ok(Some(p.clone()));
    }
    if !args.password_stdin {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError(format!("cannot read the password from stdin: {e}")))?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        return Err(CliError("the password read from stdin is empty".into()));
    }
    Ok(Some(pw))
}

async fn add(
    ctx: &Ctx,
    login: String,
    password: PasswordArgs,
    plan: &str,
    static_ip: &[String],
    email: Option<String>,
    name: Option<String>,
) -> Result<(), CliError> {
    validate_login(&login).map_err(|e| CliError(e.to_string()))?;
    let plan: Plan = plan
        .parse()
        .map_err(|e: policy::SubscriberError| CliError(e.to_string()))?;
    let nets = static_ip
        .iter()
        .map(|s| static_net(ctx, s))
        .collect::<Result<Vec<_>, _>>()?;
    plan.check_addresses(&nets)
        .map_err(|e| CliError(e.to_string()))?;
    if let Some(e) = &email {
        validate_email(e).map_err(|e| CliError(e.to_string()))?;
    }
    let password = read_password(&password)?;
    if password.is_none() && ctx.config.auth.backend == AuthBackend::Local {
        return Err(CliError(
            "a password is required with auth.backend = \"local\" (--password or --password-stdin)"
                .into(),
        ));
    }
    let new = NewSubscriber {
        login,
        display_name: name,
        email,
        plan,
        static_ips: nets,
        password_hash: password.as_deref().map(hash_password),
    };
    let store = ctx.store().await?;
    let s = store.add_subscriber(&new, &ctx.actor()).await?;
    println!("{}: added, plan {}, port 25 {}", s.login, s.plan, s.port25);
    Ok(())
}

async fn import(ctx: &Ctx, file: &std::path::Path) -> Result<(), CliError> {
    let rows = csv_input::read(
        file,
        &["login"],
        &["plan", "static_ip", "email", "password_hash", "name"],
    )?;
    let name = file.display();
    let mut seen_logins: HashMap<String, u64> = HashMap::new();
    let mut seen_ips: Vec<(IpNet, u64)> = Vec::new();
    let mut subs = Vec::with_capacity(rows.len());
    let mut lines = Vec::with_capacity(rows.len());
    for row in &rows {
        let at = |msg: String| CliError(format!("{name} line {}: {msg}", row.line));
        let login = row.get("login").to_string();
        validate_login(&login).map_err(|e| at(e.to_string()))?;
        if let Some(first) = seen_logins.insert(login.clone(), row.line) {
            return Err(at(format!("login '{login}' repeats line {first}")));
        }
        let plan = match row.get("plan") {
            "" => Plan::Dynamic,
            p => p
                .parse()
                .map_err(|e: policy::SubscriberError| at(e.to_string()))?,
        };
        let nets = row
            .get("static_ip")
            .split([' ', ';'])
            .filter(|s| !s.is_empty())
            .map(|s| static_net(ctx, s).map_err(|e| at(e.0)))
            .collect::<Result<Vec<_>, _>>()?;
        plan.check_addresses(&nets).map_err(|e| at(e.to_string()))?;
        for net in &nets {
            if let Some((_, other)) = seen_ips.iter().find(|(n, _)| n.overlaps(net)) {
                return Err(at(format!(
                    "static address {net} is also given on line {other}"
                )));
            }
            seen_ips.push((*net, row.line));
        }
        let email = match row.get("email") {
            "" => None,
            e => {
                validate_email(e).map_err(|e| at(e.to_string()))?;
                Some(e.to_string())
            }
        };
        let password_hash = match row.get("password_hash") {
            "" => None,
            h => {
                check_phc(h).map_err(|e| at(format!("password_hash: {e}")))?;
                Some(h.to_string())
            }
        };
        let display_name = Some(row.get("name").to_string()).filter(|n| !n.is_empty());
        subs.push(NewSubscriber {
            login,
            display_name,
            email,
            plan,
            static_ips: nets,
            password_hash,
        });
        lines.push(row.line);
    }
    let store = ctx.store().await?;
    match store.import_subscribers(&subs, &ctx.actor()).await {
        Ok(n) => {
            println!("{name}: imported {n} subscribers");
            Ok(())
        }
        Err((Some(i), e)) => Err(CliError(format!("{name} line {}: {e}", lines[i]))),
        Err((None, e)) => Err(CliError(format!("{name}: {e}; nothing was imported"))),
    }
}

async fn show(ctx: &Ctx, login: &str) -> Result<(), CliError> {
    let store = ctx.store().await?;
    let s = store.subscriber(login).await?;
    let leases = store.leases_of(login, 20).await?;
    let optouts = store.optout_requests(Some(login)).await?;
    let cases = store.abuse_cases(Some(login)).await?;
    if ctx.json {
        return output::json(&serde_json::json!({
            "subscriber": s,
            "leases": leases,
            "optout_requests": optouts,
            "cases": cases,
        }));
    }
    println!("login:      {}", s.login);
    if let Some(n) = &s.display_name {
        println!("name:       {n}");
    }
    println!("email:      {}", s.email.as_deref().unwrap_or("-"));
    println!("plan:       {}", s.plan);
    println!(
        "port 25:    {} ({})",
        s.port25,
        if s.port25.is_open() {
            "open"
        } else {
            "blocked"
        }
    );
    if s.suspended {
        println!("sending:    SUSPENDED");
    }
    let statics: Vec<String> = s.static_ips.iter().map(ToString::to_string).collect();
    println!(
        "static:     {}",
        if statics.is_empty() {
            "-".into()
        } else {
            statics.join(", ")
        }
    );
    if !s.allowed_senders.is_empty() {
        println!("senders:    {}", s.allowed_senders.join(", "));
    }
    println!("created:    {}", s.created);
    println!();
    println!("leases (newest first):");
    for l in &leases {
        let end = l.lease.end.map_or("open".to_string(), |e| e.to_string());
        println!(
            "  {}  {} .. {}  ({})",
            l.lease.net,
            l.lease.start,
            end,
            l.lease.source.as_str()
        );
    }
    if !optouts.is_empty() {
        println!();
        println!("opt-out requests:");
        for r in &optouts {
            let decided = match (&r.decided_by, r.decided_at) {
                (Some(by), Some(at)) => format!(
                    " by {by} at {at}: {}",
                    r.decision_reason.as_deref().unwrap_or("")
                ),
                _ => String::new(),
            };
            println!(
                "  {}  {}  \"{}\"{decided}",
                r.requested_at, r.status, r.reason
            );
        }
    }
    if !cases.is_empty() {
        println!();
        println!("abuse cases:");
        for c in &cases {
            let kinds: Vec<String> = c.by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
            println!(
                "  #{}  {}  opened {}  {}",
                c.id,
                c.status,
                c.opened_at,
                kinds.join(", ")
            );
        }
    }
    Ok(())
}

async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let store = ctx.store().await?;
    let subs = store.list_subscribers().await?;
    if ctx.json {
        return output::json(&subs);
    }
    let rows: Vec<Vec<String>> = subs
        .iter()
        .map(|s| {
            vec![
                s.login.clone(),
                s.plan.to_string(),
                s.port25.to_string(),
                s.email.clone().unwrap_or_default(),
                s.static_ips
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    output::table(&["LOGIN", "PLAN", "PORT25", "EMAIL", "STATIC"], &rows);
    Ok(())
}
