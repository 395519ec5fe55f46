//! DNS for delivery: MX, A/AAAA, TXT and TLSA lookups through hickory-resolver,
//! using `delivery.dns_server` when set (tests run a server on loopback), else the
//! system's resolver (`/etc/resolv.conf`). Plain UDP/TCP only: no DNSSEC validation
//! and no encrypted transports are compiled in (see `dane` for what that means).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

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
        Ok(Dns { resolver })
    }

    async fn lookup<T>(
        &self,
        name: &str,
        kind: hickory_resolver::proto::rr::RecordType,
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
        use hickory_resolver::proto::rr::RecordType;
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
        use hickory_resolver::proto::rr::RecordType;
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
        use hickory_resolver::proto::rr::RecordType;
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
