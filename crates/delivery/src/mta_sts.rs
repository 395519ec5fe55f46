//! MTA-STS (RFC 8461): the `_mta-sts` TXT record, fetching the policy file over
//! HTTPS, its syntax, the policy cache, and matching MX host names.
//!
//! The policy is fetched from `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`
//! (the policy host resolved through the same [`Dns`]) with WebPKI certificate
//! validation, no redirects, at most 64 KiB, `Content-Type: text/plain`, within a
//! time limit. Policies are cached in the store, shared by every node and kept
//! across restarts, until `max_age` runs out; a changed TXT `id` triggers a
//! refetch, and a failed fetch keeps the cached unexpired policy (RFC 8461 5.1),
//! so blocking the policy host does not downgrade a domain. Enforcement (MX
//! filtering, TLS with a valid certificate) is in the worker: [`Policy::allows_mx`]
//! and [`Policy::requires_tls`] are what it asks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use policy::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns::{Dns, DnsFailure};

/// A domain's `_mta-sts` TXT record: `v=STSv1; id=...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsRecord {
    pub id: String,
}

/// Parses the TXT strings found at `_mta-sts.DOMAIN`: exactly one must start with
/// `v=STSv1` (RFC 8461 3.1), else the domain has no (usable) record.
pub fn parse_record(txts: &[String]) -> Option<StsRecord> {
    let mut candidates = txts
        .iter()
        .filter(|t| t.trim_start().starts_with("v=STSv1"));
    let record = candidates.next()?;
    if candidates.next().is_some() {
        return None;
    }
    let mut id = None;
    for field in record.split(';') {
        let Some((k, v)) = field.trim().split_once('=') else {
            continue;
        };
        if k.trim() == "id" {
            let v = v.trim();
            if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
            id = Some(v.to_string());
        }
    }
    id.map(|id| StsRecord { id })
}

/// Looks up and parses `_mta-sts.DOMAIN`.
pub async fn lookup_record(dns: &Dns, domain: &str) -> Result<Option<StsRecord>, DnsFailure> {
    let txts = dns
        .txt(&format!("_mta-sts.{}", domain.trim_end_matches('.')))
        .await?;
    Ok(parse_record(&txts))
}

/// The policy's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

/// A parsed policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// `mx:` patterns, lower case; `*.example.net` matches one label.
    pub mx: Vec<String>,
    pub max_age: u64,
}

/// Why a policy file is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("MTA-STS policy lacks 'version: STSv1'")]
    Version,
    #[error("MTA-STS policy has no valid mode")]
    Mode,
    #[error("MTA-STS policy has no valid max_age")]
    MaxAge,
    #[error("MTA-STS policy in mode {0:?} lists no mx")]
    NoMx(Mode),
}

/// The policy URL of a domain.
pub fn policy_url(domain: &str) -> String {
    format!(
        "https://mta-sts.{}/.well-known/mta-sts.txt",
        domain.trim_end_matches('.')
    )
}

/// Parses a policy file (RFC 8461 3.2): `key: value` lines, LF or CRLF; unknown
/// keys are ignored.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    let mut version = false;
    let mut mode = None;
    let mut mx = Vec::new();
    let mut max_age = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "version" => version = v == "STSv1",
            "mode" => {
                mode = match v {
                    "enforce" => Some(Mode::Enforce),
                    "testing" => Some(Mode::Testing),
                    "none" => Some(Mode::None),
                    _ => return Err(PolicyError::Mode),
                }
            }
            "mx" => mx.push(v.trim_end_matches('.').to_ascii_lowercase()),
            "max_age" => {
                max_age = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|a| *a <= 31_557_600)
                        .ok_or(PolicyError::MaxAge)?,
                )
            }
            _ => {}
        }
    }
    if !version {
        return Err(PolicyError::Version);
    }
    let mode = mode.ok_or(PolicyError::Mode)?;
    let max_age = max_age.ok_or(PolicyError::MaxAge)?;
    if mode != Mode::None && mx.is_empty() {
        return Err(PolicyError::NoMx(mode));
    }
    Ok(Policy { mode, mx, max_age })
}

impl Policy {
    /// Whether `host` matches one of the `mx` patterns (RFC 8461 4.1).
    pub fn allows_mx(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => *p == host,
        })
    }

    /// In `enforce` mode, delivery must use TLS with a certificate valid for the
    /// MX host name, to an MX host the policy allows.
    pub fn requires_tls(&self) -> bool {
        self.mode == Mode::Enforce
    }
}

/// Largest policy file accepted.
pub const MAX_POLICY: usize = 64 * 1024;
/// Room for the status line and headers on top of the body.
const MAX_HEADERS: usize = 16 * 1024;

/// Why a policy could not be fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Dns(#[from] DnsFailure),
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("cannot reach {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("no complete answer from {host} within {secs} s")]
    Timeout { host: String, secs: u64 },
    #[error("{host} answered {status}; redirects are not followed (RFC 8461 3.3)")]
    Redirect { host: String, status: u16 },
    #[error("{host} answered HTTP status {status}")]
    Status { host: String, status: u16 },
    #[error("the policy is not text/plain (Content-Type: {0})")]
    ContentType(String),
    #[error("the policy is larger than {MAX_POLICY} bytes")]
    TooLarge,
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
}

/// Where and how policies are fetched (tests move the port and add a root).
#[derive(Clone)]
pub struct Fetcher {
    pub dns: Dns,
    /// 443, except in tests.
    pub port: u16,
    /// Verifies the policy host's certificate against the WebPKI roots.
    pub tls: Arc<rustls::ClientConfig>,
    pub timeout: Duration,
}

impl Fetcher {
    /// Fetches the policy text of `domain`.
    pub async fn fetch(&self, domain: &str) -> Result<String, FetchError> {
        let host = format!("mta-sts.{}", domain.trim_end_matches('.'));
        let secs = self.timeout.as_secs();
        match tokio::time::timeout(self.timeout, self.fetch_inner(&host)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout { host, secs }),
        }
    }

    async fn fetch_inner(&self, host: &str) -> Result<String, FetchError> {
        let addrs = self.dns.addresses(host).await?;
        let Some(ip) = addrs.first() else {
            return Err(FetchError::NoAddress {
                host: host.to_string(),
            });
        };
        let addr = SocketAddr::new(*ip, self.port);
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| FetchError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let tls_err = |reason: String| FetchError::Tls {
            host: host.to_string(),
            reason,
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| tls_err(e.to_string()))?;
        let mut tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| tls_err(e.to_string()))?;
        // HTTP/1.0: the answer cannot be chunked and ends when the server closes.
        let request = format!(
            "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\nUser-Agent: portcullis\r\nAccept: text/plain\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| tls_err(e.to_string()))?;
        tls.flush().await.map_err(|e| tls_err(e.to_string()))?;
        let mut response = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if response.len() > MAX_POLICY + MAX_HEADERS {
                        return Err(FetchError::TooLarge);
                    }
                }
                // A server that closes without close_notify: the length check below
                // still catches a truncated body when Content-Length was sent.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(tls_err(e.to_string())),
            }
        }
        parse_response(host, &response)
    }
}

/// Reads an HTTP/1.x response carrying a policy: status 200, `text/plain`, at most
/// [`MAX_POLICY`] bytes of UTF-8.
pub fn parse_response(host: &str, bytes: &[u8]) -> Result<String, FetchError> {
    let malformed = |m: &str| FetchError::Malformed(m.to_string());
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head =
        std::str::from_utf8(&bytes[..split]).map_err(|_| malformed("headers are not text"))?;
    let body = &bytes[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_ascii_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(malformed("no HTTP/1.x status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| malformed("no status code"))?;
    let host = host.to_string();
    if (300..400).contains(&status) {
        return Err(FetchError::Redirect { host, status });
    }
    if status != 200 {
        return Err(FetchError::Status { host, status });
    }
    let mut content_type = None;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Err(malformed("header line without ':'"));
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(v.to_string()),
            "content-length" => {
                length = Some(
                    v.parse::<usize>()
                        .map_err(|_| malformed("bad Content-Length"))?,
                )
            }
            "transfer-encoding" => {
                return Err(malformed("Transfer-Encoding in an HTTP/1.0 answer"))
            }
            _ => {}
        }
    }
    let ct = content_type.unwrap_or_default();
    if !ct
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"))
    {
        return Err(FetchError::ContentType(ct));
    }
    let body = match length {
        Some(n) if n > MAX_POLICY => return Err(FetchError::TooLarge),
        Some(n) if body.len() < n => return Err(malformed("body shorter than Content-Length")),
        Some(n) => &body[..n],
        None => body,
    };
    if body.len() > MAX_POLICY {
        return Err(FetchError::TooLarge);
    }
    String::from_utf8(body.to_vec()).map_err(|_| malformed("the policy is not UTF-8"))
}

/// What the cache decides for a domain, given the TXT record found (if the lookup
/// worked), the cached policy and the clock (RFC 8461 5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStep {
    /// Use the cached policy as it is.
    UseCached,
    /// Fetch; on failure fall back to the cached policy if it is unexpired.
    Fetch { id: String },
    /// No policy applies.
    NoPolicy,
}

/// Decides between the cache and a fetch. `record`: `Ok(None)` when the domain
/// publishes no record, `Err(())` when the lookup failed.
pub fn cache_step(
    record: Result<Option<&StsRecord>, ()>,
    cached: Option<&store::CachedStsPolicy>,
    now: Timestamp,
) -> CacheStep {
    let fresh = cached.filter(|c| c.expires_at > now);
    match record {
        Ok(Some(r)) => match fresh {
            Some(c) if c.policy_id == r.id => CacheStep::UseCached,
            _ => CacheStep::Fetch { id: r.id.clone() },
        },
        // No record (or no answer): an unexpired policy still applies, else none.
        Ok(None) | Err(()) => match fresh {
            Some(_) => CacheStep::UseCached,
            None => CacheStep::NoPolicy,
        },
    }
}

/// The policy of `domain` (mode `none` counts as no policy): from the store's
/// cache or freshly fetched and cached.
pub async fn policy_for(fetcher: &Fetcher, store: &store::Store, domain: &str) -> Option<Policy> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let record = lookup_record(&fetcher.dns, &domain).await;
    if let Err(e) = &record {
        tracing::debug!(%domain, "MTA-STS record lookup failed: {e}");
    }
    let cached = match store.mta_sts_policy(&domain).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%domain, "reading the MTA-STS cache failed: {e}");
            None
        }
    };
    let now = store.now();
    let usable = |text: &str| parse_policy(text).ok().filter(|p| p.mode != Mode::None);
    let cached_policy = || {
        cached
            .as_ref()
            .filter(|c| c.expires_at > now)
            .and_then(|c| usable(&c.policy))
    };
    match cache_step(
        record.as_ref().map(Option::as_ref).map_err(|_| ()),
        cached.as_ref(),
        now,
    ) {
        CacheStep::UseCached => cached_policy(),
        CacheStep::NoPolicy => None,
        CacheStep::Fetch { id } => {
            let fetched = fetcher.fetch(&domain).await.and_then(|text| {
                parse_policy(&text)
                    .map(|p| (text, p))
                    .map_err(|e| FetchError::Malformed(e.to_string()))
            });
            match fetched {
                Ok((text, p)) => {
                    let entry = store::CachedStsPolicy {
                        domain: domain.clone(),
                        policy_id: id,
                        policy: text,
                        fetched_at: now,
                        expires_at: now.plus(Duration::from_secs(p.max_age)),
                    };
                    if let Err(e) = store.put_mta_sts_policy(&entry).await {
                        tracing::warn!(%domain, "caching the MTA-STS policy failed: {e}");
                    }
                    tracing::info!(%domain, mode = ?p.mode, "MTA-STS policy fetched");
                    (p.mode != Mode::None).then_some(p)
                }
                Err(e) => {
                    let fallback = cached_policy();
                    tracing::warn!(%domain, using_cached = fallback.is_some(), "MTA-STS policy fetch failed: {e}");
                    fallback
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_record() {
        assert_eq!(
            parse_record(&["v=STSv1; id=20160831085700Z;".into()]),
            Some(StsRecord {
                id: "20160831085700Z".into()
            })
        );
        assert_eq!(parse_record(&["v=spf1 -all".into()]), None);
        assert_eq!(
            parse_record(&["v=STSv1; id=a".into(), "v=STSv1; id=b".into()]),
            None
        );
        assert_eq!(parse_record(&["v=STSv1; id=bad-id".into()]), None);
    }

    #[test]
    fn policy_file_and_matching() {
        let p = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert!(p.requires_tls());
        assert!(p.allows_mx("MAIL.example.com."));
        assert!(p.allows_mx("mx1.example.net"));
        assert!(
            !p.allows_mx("a.b.example.net"),
            "a wildcard matches one label"
        );
        assert!(!p.allows_mx("example.net"));
        assert!(!p.allows_mx("evil.example.org"));
        assert_eq!(
            parse_policy("mode: enforce\nmx: a\nmax_age: 1\n"),
            Err(PolicyError::Version)
        );
        assert_eq!(
            parse_policy("version: STSv1\nmode: enforce\nmax_age: 1\n"),
            Err(PolicyError::NoMx(Mode::Enforce))
        );
        assert_eq!(
            parse_policy("version: STSv1\nmode: strict\n"),
            Err(PolicyError::Mode)
        );
        assert_eq!(
            parse_policy("version: STSv1\nmode: none\nmax_age: 99999999999\n"),
            Err(PolicyError::MaxAge)
        );
        assert!(
            !parse_policy("version: STSv1\nmode: testing\nmx: a\nmax_age: 86400\n")
                .unwrap()
                .requires_tls()
        );
        assert_eq!(
            policy_url("example.com."),
            "https://mta-sts.example.com/.well-known/mta-sts.txt"
        );
    }

    #[test]
    fn http_responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response("h", ok).unwrap(), "hello");
        let html = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nx";
        assert_eq!(
            parse_response("h", html),
            Err(FetchError::ContentType("text/html".into()))
        );
        let moved = b"HTTP/1.1 301 Moved\r\nLocation: https://evil/\r\n\r\n";
        assert!(matches!(
            parse_response("h", moved),
            Err(FetchError::Redirect { status: 301, .. })
        ));
        let short = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nabc";
        assert!(matches!(
            parse_response("h", short),
            Err(FetchError::Malformed(_))
        ));
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            MAX_POLICY + 1
        );
        assert_eq!(
            parse_response("h", big.as_bytes()),
            Err(FetchError::TooLarge)
        );
    }

    #[test]
    fn cache_decisions() {
        let rec = StsRecord { id: "a".into() };
        let cached = store::CachedStsPolicy {
            domain: "d".into(),
            policy_id: "a".into(),
            policy: String::new(),
            fetched_at: Timestamp(0),
            expires_at: Timestamp(100),
        };
        let now = Timestamp(50);
        let later = Timestamp(100);
        assert_eq!(
            cache_step(Ok(Some(&rec)), Some(&cached), now),
            CacheStep::UseCached
        );
        assert_eq!(
            cache_step(Ok(Some(&StsRecord { id: "b".into() })), Some(&cached), now),
            CacheStep::Fetch { id: "b".into() },
            "a new id refetches"
        );
        assert_eq!(
            cache_step(Ok(Some(&rec)), Some(&cached), later),
            CacheStep::Fetch { id: "a".into() },
            "an expired policy refetches"
        );
        assert_eq!(
            cache_step(Err(()), Some(&cached), now),
            CacheStep::UseCached
        );
        assert_eq!(
            cache_step(Ok(None), Some(&cached), now),
            CacheStep::UseCached
        );
        assert_eq!(
            cache_step(Ok(None), Some(&cached), later),
            CacheStep::NoPolicy
        );
        assert_eq!(cache_step(Ok(None), None, now), CacheStep::NoPolicy);
    }
}
