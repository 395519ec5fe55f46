//! The DNSBL monitor: every `abuse.dnsbl_interval`, looks up each leased and static
//! IPv4 address in each of `abuse.dnsbl_zones` through `abuse.dnsbl_resolver`,
//! rate-limited. A 127.0.0.2–127.0.0.254 answer is a listing (with its TXT reason);
//! a 127.255.255.x answer means the blocklist refused the query and is logged, never
//! taken as a listing. New listings and delistings become evidence.
//!
//! The wire format is in `dns`; this is the thin UDP layer and the bookkeeping.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use store::NewEvidence;
use tokio::net::UdpSocket;

use crate::dns::{self, Answer, ListingCode, QType};
use crate::engine::Engine;
use crate::AbuseError;

/// Queries per second sent to the resolver, at most.
pub const DEFAULT_QUERIES_PER_SECOND: u32 = 50;

/// How long one query waits for its answer, and how often it is tried.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_TRIES: u32 = 2;

/// What one sweep found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub addresses: usize,
    pub queries: usize,
    /// (address, zone) pairs listed now.
    pub listed: usize,
    pub newly_listed: usize,
    pub delisted: usize,
    /// Answers in 127.255.255.x: the blocklist refused to answer.
    pub refused: usize,
    /// Timeouts and malformed answers.
    pub errors: usize,
}

/// The monitor, ready to run.
pub struct Monitor {
    engine: Engine,
    zones: Vec<String>,
    resolver: SocketAddr,
    interval: Duration,
    /// Gap between two queries (the rate limit).
    pub gap: Duration,
}

impl Monitor {
    /// From `[abuse]`; without `dnsbl_resolver`, the first nameserver of
    /// /etc/resolv.conf (DNSBLs often refuse big public resolvers).
    pub fn from_config(abuse: &config::AbuseConfig, engine: Engine) -> Result<Monitor, AbuseError> {
        let resolver = match abuse.dnsbl_resolver {
            Some(r) => r,
            None => system_resolver().ok_or_else(|| AbuseError::Io {
                path: "/etc/resolv.conf".into(),
                reason: "no nameserver line; set abuse.dnsbl_resolver".into(),
            })?,
        };
        Ok(Monitor::new(
            engine,
            abuse.dnsbl_zones.clone(),
            resolver,
            abuse.dnsbl_interval.get(),
        ))
    }

    pub fn new(
        engine: Engine,
        zones: Vec<String>,
        resolver: SocketAddr,
        interval: Duration,
    ) -> Monitor {
        Monitor {
            engine,
            zones,
            resolver,
            interval,
            gap: Duration::from_secs(1) / DEFAULT_QUERIES_PER_SECOND,
        }
    }

    /// Sweeps forever, one sweep per interval.
    pub async fn run(self) {
        tracing::info!(resolver = %self.resolver, zones = ?self.zones, "DNSBL monitor started");
        loop {
            match self.sweep().await {
                Ok(r) => tracing::info!(
                    addresses = r.addresses,
                    listed = r.listed,
                    newly_listed = r.newly_listed,
                    delisted = r.delisted,
                    refused = r.refused,
                    errors = r.errors,
                    "DNSBL sweep done"
                ),
                Err(e) => tracing::error!("DNSBL sweep failed: {e}"),
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// One pass over every leased IPv4 address and zone.
    pub async fn sweep(&self) -> Result<SweepReport, AbuseError> {
        let addresses = self.engine.store().leased_ipv4_addresses().await?;
        let bind: SocketAddr = if self.resolver.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut client = Client::bind(bind, self.resolver).await?;
        let mut report = SweepReport {
            addresses: addresses.len(),
            ..SweepReport::default()
        };
        let mut next = tokio::time::Instant::now();
        for ip in addresses {
            for zone in &self.zones {
                tokio::time::sleep_until(next).await;
                next = tokio::time::Instant::now() + self.gap;
                report.queries += 1;
                self.check(&mut client, ip, zone, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn check(
        &self,
        client: &mut Client,
        ip: Ipv4Addr,
        zone: &str,
        report: &mut SweepReport,
    ) -> Result<(), AbuseError> {
        let name = dns::dnsbl_name(ip, zone);
        let answer = match client.query(&name, QType::A).await {
            Ok(a) => a,
            Err(e) => {
                report.errors += 1;
                tracing::warn!(%ip, zone, "DNSBL query failed: {e}");
                return Ok(());
            }
        };
        let store = self.engine.store();
        let prev = store.dnsbl_state(IpAddr::V4(ip), zone).await?;
        let was_listed = prev.as_ref().is_some_and(|p| p.listed);
        let code = match answer {
            Answer::A(addrs) => {
                let codes: Vec<ListingCode> = addrs.into_iter().map(dns::listing_code).collect();
                if let Some(ListingCode::Listed(c)) =
                    codes.iter().find(|c| matches!(c, ListingCode::Listed(_)))
                {
                    Some(*c)
                } else {
                    if codes.iter().any(|c| matches!(c, ListingCode::Refused(_))) {
                        report.refused += 1;
                        tracing::warn!(%ip, zone, answer = ?codes, "DNSBL refused the query (127.255.255.x): not a listing; check abuse.dnsbl_resolver");
                    } else {
                        report.errors += 1;
                        tracing::warn!(%ip, zone, answer = ?codes, "DNSBL answered outside 127.0.0.0/24: ignored");
                    }
                    return Ok(());
                }
            }
            _ => None,
        };
        match code {
            Some(code) => {
                report.listed += 1;
                let reason = match client.query(&name, QType::Txt).await {
                    Ok(Answer::Txt(t)) => t.join(" "),
                    _ => String::new(),
                };
                store
                    .set_dnsbl_state(IpAddr::V4(ip), zone, Some((&code.to_string(), &reason)))
                    .await?;
                if !was_listed {
                    report.newly_listed += 1;
                    self.evidence(ip, zone, "listing", &code.to_string(), &reason)
                        .await?;
                }
            }
            None if was_listed => {
                report.delisted += 1;
                store.set_dnsbl_state(IpAddr::V4(ip), zone, None).await?;
                self.evidence(ip, zone, "delisting", "", "").await?;
            }
            None => {}
        }
        Ok(())
    }

    async fn evidence(
        &self,
        ip: Ipv4Addr,
        zone: &str,
        kind: &str,
        code: &str,
        reason: &str,
    ) -> Result<(), AbuseError> {
        let now = self.engine.now();
        let who = self.engine.attribute(Some(IpAddr::V4(ip)), now).await?;
        let summary = if kind == "listing" {
            format!("listed on the {zone} blocklist ({code})")
        } else {
            format!("removed from the {zone} blocklist")
        };
        tracing::warn!(%ip, zone, code, reason, login = who.login.as_deref().unwrap_or("-"), "DNSBL {kind}");
        self.engine
            .record(
                NewEvidence {
                    kind: kind.into(),
                    fingerprint: Some(format!("{kind}:{zone}:{ip}:{}", now.0)),
                    ip: Some(IpAddr::V4(ip)),
                    at: now,
                    login: who.login,
                    unattributed: who.unattributed,
                    summary,
                    detail: serde_json::json!({ "zone": zone, "code": code, "reason": reason }),
                },
                0,
                false,
            )
            .await?;
        Ok(())
    }
}

/// The first `nameserver` of /etc/resolv.conf.
fn system_resolver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver"))
            .then(|| w.next()?.parse::<IpAddr>().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No answer within the timeout, after retries.
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("DNS: {0}")]
    Dns(#[from] dns::DnsError),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// One UDP socket talking to one resolver.
pub struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    next_id: u16,
}

impl Client {
    pub async fn bind(local: SocketAddr, server: SocketAddr) -> Result<Client, AbuseError> {
        let socket = UdpSocket::bind(local).await.map_err(|e| AbuseError::Bind {
            addr: local.to_string(),
            what: "DNSBL client",
            reason: e.to_string(),
        })?;
        Ok(Client {
            socket,
            server,
            next_id: (std::process::id() as u16).wrapping_mul(7919),
        })
    }

    /// One query, retried once; answers from elsewhere or for other ids are ignored.
    pub async fn query(&mut self, name: &str, qtype: QType) -> Result<Answer, LookupError> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let packet = dns::encode_query(id, name, qtype)?;
        let mut buf = vec![0u8; 4096];
        for _ in 0..QUERY_TRIES {
            self.socket.send_to(&packet, self.server).await?;
            let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
            loop {
                let recv = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await;
                let Ok(recv) = recv else { break };
                let (n, from) = recv?;
                if from != self.server || dns::message_id(&buf[..n]) != Some(id) {
                    continue;
                }
                return Ok(dns::decode_answer(&buf[..n], id, qtype)?);
            }
        }
        Err(LookupError::Timeout(self.server, QUERY_TIMEOUT))
    }
}
