//! MTA-STS (RFC 8461), the parts that need no HTTPS: the `_mta-sts` TXT record,
//! the policy file's syntax, and matching MX host names against a policy.
//!
//! **Not done:** fetching `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (it
//! needs HTTPS on port 443 of the policy host, which tests on loopback cannot
//! reach), caching policies for `max_age`, and enforcing them in the worker (MX
//! filtering plus WebPKI certificate validation). [`Policy::allows_mx`] and
//! [`Policy::requires_tls`] are what that enforcement would call; the worker
//! currently delivers with opportunistic TLS whatever the domain publishes.

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
}
