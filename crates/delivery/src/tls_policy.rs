//! Which TLS a connection to one MX host must have, and the check of an open
//! connection against it. DANE (RFC 7672) comes first, when the resolver vouches
//! for the MX and TLSA answers; then MTA-STS (RFC 8461 2: DANE takes precedence);
//! else opportunistic TLS (RFC 7435). A host that fails its requirement is skipped
//! with a reason that ends up in the recipient's last error, so `queue show` says
//! why the mail waits; the recipient is deferred, never bounced, for it.

use std::sync::Arc;

use rustls::pki_types::UnixTime;
use tracing::warn;

use crate::client::SmtpConnection;
use crate::dane::{self, Tlsa};
use crate::dns::Dns;
use crate::mta_sts::{Mode, Policy};

/// The port in TLSA owner names: SMTP's, whatever port tests connect to.
const TLSA_PORT: u16 = 25;

/// What a connection to one MX host must satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// STARTTLS when offered, any certificate; plaintext otherwise.
    Opportunistic,
    /// An MTA-STS policy in `testing` mode: delivered as opportunistic, but what
    /// `enforce` would have refused is logged.
    StsTesting(Policy),
    /// TLS without authentication: TLSA records exist but none is usable (RFC 7672
    /// 2.2), and no MTA-STS policy applies.
    Encrypted,
    /// MTA-STS `enforce`: TLS with a certificate valid (WebPKI) for the MX name.
    Sts,
    /// DANE: TLS with a chain matched by one of these usable TLSA records.
    Dane(Vec<Tlsa>),
}

impl Requirement {
    /// Whether the connection must use TLS.
    pub fn tls_required(&self) -> bool {
        matches!(
            self,
            Requirement::Encrypted | Requirement::Sts | Requirement::Dane(_)
        )
    }

    /// The prefix of errors caused by this requirement.
    pub fn label(&self) -> &'static str {
        match self {
            Requirement::Sts => "MTA-STS",
            Requirement::Dane(_) | Requirement::Encrypted => "DANE",
            Requirement::Opportunistic | Requirement::StsTesting(_) => "TLS",
        }
    }
}

/// Decides the requirement for `host`, an MX of a domain whose MX answer was
/// authenticated (`mx_authentic`) or not, under `sts` (a policy of mode enforce or
/// testing). `Err`: this host must not be used now, with the reason.
pub async fn requirement(
    dns: &Dns,
    host: &str,
    mx_authentic: bool,
    sts: Option<&Policy>,
) -> Result<Requirement, String> {
    let mut tlsa_exists = false;
    if mx_authentic {
        match dns.tlsa(host, TLSA_PORT).await {
            Ok(Some(records)) => {
                tlsa_exists = !records.is_empty();
                let usable: Vec<Tlsa> = records.into_iter().filter(Tlsa::usable).collect();
                if !usable.is_empty() {
                    return Ok(Requirement::Dane(usable));
                }
            }
            Ok(None) => {}
            // RFC 7672 2.2: a failed TLSA lookup under a signed MX may be an attack.
            Err(e) => return Err(format!("DANE: TLSA lookup for {host} failed: {e}")),
        }
    }
    match sts {
        Some(p) if p.mode == Mode::Enforce => {
            if p.allows_mx(host) {
                Ok(Requirement::Sts)
            } else {
                Err(format!(
                    "MTA-STS: {host} does not match policy (mx: {})",
                    p.mx.join(", ")
                ))
            }
        }
        _ if tlsa_exists => Ok(Requirement::Encrypted),
        Some(p) if p.mode == Mode::Testing => Ok(Requirement::StsTesting(p.clone())),
        _ => Ok(Requirement::Opportunistic),
    }
}

/// Checks an open connection to `host` against the requirement. `roots`: the
/// WebPKI roots for MTA-STS.
pub fn check(
    req: &Requirement,
    conn: &SmtpConnection,
    host: &str,
    roots: &Arc<rustls::RootCertStore>,
) -> Result<(), String> {
    let chain = conn.peer_certificates();
    let webpki = || match chain.split_first() {
        Some((leaf, rest)) => dane::verify_webpki(roots.clone(), leaf, rest, host, UnixTime::now()),
        None => Err("no certificate".to_string()),
    };
    match req {
        Requirement::Opportunistic => Ok(()),
        Requirement::StsTesting(p) => {
            let problem = if !p.allows_mx(host) {
                Some(format!("{host} does not match policy"))
            } else if conn.tls_version().is_none() {
                Some("no TLS".to_string())
            } else {
                webpki()
                    .err()
                    .map(|e| format!("certificate not valid for {host}: {e}"))
            };
            if let Some(problem) = problem {
                warn!(
                    host,
                    "MTA-STS testing policy violated, delivering anyway: {problem}"
                );
            }
            Ok(())
        }
        _ if conn.tls_version().is_none() => Err(format!(
            "{}: no TLS with {host}, and policy requires it",
            req.label()
        )),
        Requirement::Encrypted => Ok(()),
        Requirement::Sts => {
            webpki().map_err(|e| format!("MTA-STS: certificate not valid for {host}: {e}"))
        }
        Requirement::Dane(records) => {
            dane::verify(records, chain, host, UnixTime::now()).map_err(|e| format!("DANE: {e}"))
        }
    }
}
