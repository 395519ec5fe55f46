//! DNS for delivery: MX, A/AAAA and TXT lookups through hickory-resolver, using
//! `delivery.dns_server` when set (tests run a server on loopback), else the
//! system's resolver (`/etc/resolv.conf`).
//!
//! DNSSEC is not validated here. Like Postfix with `smtp_dns_support_level =
//! dnssec`, DANE trusts the AD (authentic data) bit of the configured resolver,
//! which the operator points at a validating resolver on the same host (unbound,
//! knot-resolver) so that the bit cannot be forged on the way. The queries that
//! need the bit ([`Dns::authenticated`], [`Dns::tlsa`]) are sent directly with
//! AD and EDNS DO set, since hickory's resolver API hides the response header.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::dane::Tlsa;
use crate::error::DeliveryError;
use crate::routing::MxAnswer;

/// A lookup that failed for now (timeout, SERVFAIL): the recipient is deferred.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DNS lookup of {name} failed: {reason}")]
pub struct DnsFailure {
    pub name: String,
    pub reason: String,
}

/// The resolver delivery uses; cheap to clone.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    /// Where authenticated queries go: `delivery.dns_server`, else the system's
    /// first name server.
    server: Option<SocketAddr>,
}

/// An answer from [`Dns::query_authenticated`]: whether the resolver vouched for it
/// (AD), its response code, and the records of the asked type.
#[derive(Clone, Debug)]
pub struct AuthenticatedAnswer {
    pub authentic: bool,
    pub code: ResponseCode,
    pub records: Vec<RData>,
}

/// Outcome of a lookup that may legitimately find nothing.
enum Found<T> {
    Records(Vec<T>),
    NoRecords,
    NoSuchDomain,
}

impl Dns {
    /// A resolver asking `server` (UDP, then TCP on truncation), or the system's.
    pub fn new(server: Option<SocketAddr>) -> Result<Dns, DeliveryError> {
        let resolver = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                let mut opts = ResolverOpts::default();
                opts.timeout = Duration::from_secs(3);
                opts.attempts = 2;
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
                .with_options(opts)
                .build()
                .map_err(|e| DeliveryError::Resolver(e.to_string()))?
            }
            None => TokioResolver::builder_tokio()
                .and_then(|b| b.build())
                .map_err(|e| DeliveryError::Resolver(format!("system resolver: {e}")))?,
        };
        let server = server.or_else(|| {
            hickory_resolver::system_conf::read_system_conf()
                .ok()
                .and_then(|(c, _)| {
                    c.name_servers()
                        .first()
                        .map(|ns| SocketAddr::new(ns.ip, 53))
                })
        });
        Ok(Dns { resolver, server })
    }

    /// Asks the resolver directly with AD and DO set (RFC 6840 5.7), over UDP and
    /// over TCP when the answer is truncated.
    pub async fn query_authenticated(
        &self,
        name: &str,
        kind: RecordType,
    ) -> Result<AuthenticatedAnswer, DnsFailure> {
        let failure = |reason: String| DnsFailure {
            name: name.to_string(),
            reason,
        };
        let server = self
            .server
            .ok_or_else(|| failure("no name server configured".into()))?;
        let qname = Name::from_ascii(fqdn(name)).map_err(|e| failure(e.to_string()))?;
        let mut query = Message::query();
        query.add_query(Query::query(qname, kind));
        query.metadata.recursion_desired = true;
        query.metadata.authentic_data = true;
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true).set_max_payload(1232);
        query.set_edns(edns);
        let wire = query.to_vec().map_err(|e| failure(e.to_string()))?;
        let id = query.metadata.id;
        let exchange = async {
            let response = udp_exchange(server, &wire, id).await?;
            if response.metadata.truncation {
                tcp_exchange(server, &wire, id).await
            } else {
                Ok(response)
            }
        };
        let response = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .map_err(|_| failure(format!("no answer from {server}")))?
            .map_err(|e| failure(format!("{server}: {e}")))?;
        let code = response.metadata.response_code;
        if !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) {
            return Err(failure(format!("{server} answered {code}")));
        }
        Ok(AuthenticatedAnswer {
            authentic: response.metadata.authentic_data,
            code,
            records: response
                .answers
                .into_iter()
                .filter(|r| r.record_type() == kind)
                .map(|r| r.data)
                .collect(),
        })
    }

    /// Whether the resolver vouches (AD) for the answer to `name`/`kind`, records
    /// or their absence alike.
    pub async fn authenticated(&self, name: &str, kind: RecordType) -> Result<bool, DnsFailure> {
        Ok(self.query_authenticated(name, kind).await?.authentic)
    }

    /// The TLSA records of `_PORT._tcp.HOST` when the resolver vouches for them
    /// (`Some(vec![])`: authenticated denial), `None` when the answer is not
    /// authenticated (no DANE then).
    pub async fn tlsa(&self, host: &str, port: u16) -> Result<Option<Vec<Tlsa>>, DnsFailure> {
        let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
        let answer = self.query_authenticated(&name, RecordType::TLSA).await?;
        if !answer.authentic {
            return Ok(None);
        }
        Ok(Some(
            answer
                .records
                .iter()
                .filter_map(|d| match d {
                    RData::TLSA(t) => Some(Tlsa {
                        usage: t.cert_usage.into(),
                        selector: t.selector.into(),
                        matching: t.matching.into(),
                        data: t.cert_data.clone(),
                    }),
                    _ => None,
                })
                .collect(),
        ))
    }

    async fn lookup<T>(
        &self,
        name: &str,
        kind: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Found<T>, DnsFailure> {
        let fqdn = fqdn(name);
        let failure = |reason: String| DnsFailure {
            name: name.to_string(),
            reason,
        };
        match self.resolver.lookup(fqdn.as_str(), kind).await {
            Ok(lookup) => {
                let found: Vec<T> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| pick(&r.data))
                    .collect();
                Ok(if found.is_empty() {
                    Found::NoRecords
                } else {
                    Found::Records(found)
                })
            }
            Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => {
                Ok(if nr.response_code == ResponseCode::NXDomain {
                    Found::NoSuchDomain
                } else {
                    Found::NoRecords
                })
            }
            Err(e) => Err(failure(e.to_string())),
        }
    }

    /// The MX answer for a recipient domain.
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsFailure> {
        let found = self
            .lookup(domain, RecordType::MX, |d| match d {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .await?;
        Ok(match found {
            Found::Records(r) => MxAnswer::Records(r),
            Found::NoRecords => MxAnswer::NoRecords,
            Found::NoSuchDomain => MxAnswer::NoSuchDomain,
        })
    }

    /// A then AAAA addresses of a host; empty when it has none.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsFailure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let (v4, v6) = tokio::join!(
            self.lookup(host, RecordType::A, |d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            }),
            self.lookup(host, RecordType::AAAA, |d| match d {
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
        );
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for r in [v4, v6] {
            match r {
                Ok(Found::Records(r)) => out.extend(r),
                Ok(_) => {}
                Err(e) => failures.push(e),
            }
        }
        match failures.into_iter().next() {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// The TXT strings at `name` (each record's strings joined).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsFailure> {
        let found = self
            .lookup(name, RecordType::TXT, |d| match d {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .await?;
        Ok(match found {
            Found::Records(r) => r,
            _ => vec![],
        })
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

async fn udp_exchange(server: SocketAddr, wire: &[u8], id: u16) -> Result<Message, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| "bad bind address".to_string())?
    } else {
        "[::]:0"
            .parse()
            .map_err(|_| "bad bind address".to_string())?
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| e.to_string())?;
    sock.send(wire).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // A datagram with another id is not our answer (late or spoofed): keep waiting.
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.metadata.id == id => return Ok(m),
            _ => continue,
        }
    }
}

async fn tcp_exchange(server: SocketAddr, wire: &[u8], id: u16) -> Result<Message, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    framed.extend_from_slice(wire);
    tcp.write_all(&framed).await.map_err(|e| e.to_string())?;
    let len = tcp.read_u16().await.map_err(|e| e.to_string())? as usize;
    let mut buf = vec![0u8; len];
    tcp.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    let m = Message::from_vec(&buf).map_err(|e| e.to_string())?;
    if m.metadata.id != id {
        return Err("answer with a different id".into());
    }
    Ok(m)
}
