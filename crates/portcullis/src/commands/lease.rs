//! `portcullis lease import | list` and `portcullis whois`.

use std::collections::HashSet;
use std::net::IpAddr;

use policy::{IpNet, LeaseSource, Timestamp};
use store::{LeaseRecord, NewLease};

use super::{csv_input, CliError, Ctx};
use crate::cli::LeaseCmd;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: LeaseCmd) -> Result<(), CliError> {
    match cmd {
        LeaseCmd::Import { file } => import(ctx, &file).await,
        LeaseCmd::List { login_or_ip, limit } => {
            let store = ctx.store().await?;
            let leases = match login_or_ip.as_deref() {
                None => store.all_leases(limit).await?,
                Some(arg) => match arg.parse::<IpAddr>() {
                    Ok(ip) => store.leases_covering(ip).await?,
                    Err(_) => {
                        store.subscriber(arg).await?;
                        store.leases_of(arg, limit).await?
                    }
                },
            };
            print_leases(ctx, &leases)
        }
    }
}

fn print_leases(ctx: &Ctx, leases: &[LeaseRecord]) -> Result<(), CliError> {
    if ctx.json {
        return output::json(&leases);
    }
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.lease.login.clone(),
                l.lease.net.to_string(),
                l.lease.start.to_string(),
                l.lease.end.map_or("open".into(), |e| e.to_string()),
                l.lease.source.as_str().into(),
                l.nas.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &["LOGIN", "ADDRESS", "START", "END", "SOURCE", "NAS"],
        &rows,
    );
    Ok(())
}

async fn import(ctx: &Ctx, file: &std::path::Path) -> Result<(), CliError> {
    let rows = csv_input::read(file, &["login", "ip", "start", "end"], &[])?;
    let name = file.display();
    let mut leases = Vec::with_capacity(rows.len());
    for row in &rows {
        let at = |msg: String| CliError(format!("{name} line {}: {msg}", row.line));
        let net: IpNet = row
            .get("ip")
            .parse()
            .map_err(|e: policy::NetError| at(e.to_string()))?;
        let start =
            Timestamp::parse_rfc3339(row.get("start")).map_err(|e| at(format!("start: {e}")))?;
        let end = match row.get("end") {
            "" => None,
            t => Some(Timestamp::parse_rfc3339(t).map_err(|e| at(format!("end: {e}")))?),
        };
        if end.is_some_and(|e| e <= start) {
            return Err(at("end is not after start".into()));
        }
        leases.push(NewLease {
            login: row.get("login").to_string(),
            net,
            start,
            end,
            source: LeaseSource::Import,
            session_id: None,
            nas: None,
        });
    }
    let store = ctx.store().await?;
    let logins: Vec<&str> = leases
        .iter()
        .map(|l| l.login.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let unknown = store.unknown_logins(&logins).await?;
    if let Some((row, lease)) = rows
        .iter()
        .zip(&leases)
        .find(|(_, l)| unknown.contains(&l.login))
    {
        return Err(CliError(format!(
            "{name} line {}: no subscriber with login '{}'",
            row.line, lease.login
        )));
    }
    let n = store.import_leases(&leases, &ctx.actor()).await?;
    println!("{name}: imported {n} leases");
    Ok(())
}

pub async fn whois(ctx: &Ctx, ip: &str, at: Option<&str>) -> Result<(), CliError> {
    let addr: IpAddr = ip
        .parse()
        .map_err(|_| CliError(format!("'{ip}' is not an IP address")))?;
    let store = ctx.store().await?;
    let at = match at {
        Some(t) => Timestamp::parse_rfc3339(t).map_err(|e| CliError(format!("--at: {e}")))?,
        None => store.now(),
    };
    let Some(l) = store.whois(addr, at).await? else {
        return Err(CliError(format!("nobody held {addr} at {at}")));
    };
    if ctx.json {
        return output::json(
            &serde_json::json!({ "ip": addr, "at": at, "login": l.lease.login, "lease": l }),
        );
    }
    println!("{addr} at {at}: {}", l.lease.login);
    println!(
        "  lease {} from {} to {} ({})",
        l.lease.net,
        l.lease.start,
        l.lease.end.map_or("now".into(), |e| e.to_string()),
        l.lease.source.as_str()
    );
    Ok(())
}
