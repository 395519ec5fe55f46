//! DANE for SMTP (RFC 7672): matching a server's certificate chain against the
//! TLSA records of `_25._tcp.MXHOST` (`3 x x` DANE-EE and `2 x x` DANE-TA;
//! selectors full certificate and SubjectPublicKeyInfo; matching exact, SHA-256,
//! SHA-512).
//!
//! DNSSEC is not validated here: the worker looks TLSA records up only when the
//! configured resolver marks the MX answer and the TLSA answer authentic (AD bit,
//! see `dns`), as Postfix does with `smtp_dns_support_level = dnssec`. With usable
//! records TLS is mandatory and [`verify`] must pass, else the recipient is
//! deferred. DANE-EE pins the server's key: no name, expiry or chain checks (RFC
//! 7672 3.1.1). DANE-TA makes the matched certificate of the chain the only trust
//! anchor: the chain is verified up to it, including the MX host name (3.1.2).
//! Not done: following CNAMEs of the MX host for TLSA base names (RFC 7672 2.2.3).

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256, Sha512};

/// One TLSA record (RFC 6698 2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlsa {
    /// 2: DANE-TA, 3: DANE-EE (0 and 1, the PKIX usages, are unusable for SMTP).
    pub usage: u8,
    /// 0: the whole certificate, 1: its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0: exact, 1: SHA-256, 2: SHA-512.
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Whether a DANE SMTP client can use the record (RFC 7672 3.1).
    pub fn usable(&self) -> bool {
        matches!(self.usage, 2 | 3) && self.selector <= 1 && self.matching <= 2
    }

    fn matches(&self, cert: &[u8]) -> bool {
        let selected = match self.selector {
            0 => Some(cert),
            1 => spki(cert),
            _ => None,
        };
        let Some(selected) = selected else {
            return false;
        };
        match self.matching {
            0 => selected == self.data.as_slice(),
            1 => Sha256::digest(selected).as_slice() == self.data.as_slice(),
            2 => Sha512::digest(selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// Whether any usable record matches the chain (leaf first), without the chain
/// verification that DANE-TA also needs (see [`verify`]).
pub fn tlsa_matches(records: &[Tlsa], chain: &[&[u8]]) -> bool {
    records.iter().any(|r| {
        let certs: &[&[u8]] = match r.usage {
            3 => chain.get(..1).unwrap_or(&[]),
            2 => chain.get(1..).unwrap_or(&[]),
            _ => &[],
        };
        certs.iter().any(|cert| r.matches(cert))
    })
}

/// Checks the server's chain (leaf first) against the usable TLSA records of
/// `host`; the error says why nothing matched.
pub fn verify(
    records: &[Tlsa],
    chain: &[CertificateDer<'_>],
    host: &str,
    now: UnixTime,
) -> Result<(), String> {
    let Some(leaf) = chain.first() else {
        return Err("the server sent no certificate".into());
    };
    let mut ta_failure = None;
    for r in records.iter().filter(|r| r.usable()) {
        match r.usage {
            3 if r.matches(leaf) => return Ok(()),
            2 => {
                for (i, ta) in chain.iter().enumerate().skip(1) {
                    if !r.matches(ta) {
                        continue;
                    }
                    match verify_to_anchor(leaf, &chain[1..i], ta, host, now) {
                        Ok(()) => return Ok(()),
                        Err(e) => ta_failure = Some(e),
                    }
                }
            }
            _ => {}
        }
    }
    Err(match ta_failure {
        Some(e) => {
            format!("the chain does not verify up to the DANE-TA trust anchor for {host}: {e}")
        }
        None => format!("no TLSA record of {host} matches the certificate chain"),
    })
}

/// WebPKI verification of `leaf` for `host` with `anchor` as the only root.
fn verify_to_anchor(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchor: &CertificateDer<'_>,
    host: &str,
    now: UnixTime,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(anchor.clone().into_owned())
        .map_err(|e| format!("unusable trust anchor: {e}"))?;
    verify_webpki(Arc::new(roots), leaf, intermediates, host, now)
}

/// WebPKI verification of a server chain for `host` against `roots` (MTA-STS uses
/// it with the WebPKI roots, DANE-TA with the matched anchor).
pub fn verify_webpki(
    roots: Arc<rustls::RootCertStore>,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    host: &str,
    now: UnixTime,
) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.trim_end_matches('.').to_string())
        .map_err(|e| format!("'{host}' is not a host name: {e}"))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One DER element at the start of `der`: (tag, header length, total length).
fn element(der: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *der.first()?;
    let first = *der.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *der.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let total = header.checked_add(len)?;
    (total <= der.len()).then_some((tag, header, total))
}

/// The SubjectPublicKeyInfo (whole DER element) of an X.509 certificate.
pub fn spki(cert: &[u8]) -> Option<&[u8]> {
    let (tag, h, total) = element(cert)?;
    if tag != 0x30 {
        return None;
    }
    let inner = &cert[h..total];
    // tbsCertificate
    let (tag, h, total) = element(inner)?;
    if tag != 0x30 {
        return None;
    }
    let mut tbs = &inner[h..total];
    // [0] version (optional), serial, signature, issuer, validity, subject, SPKI
    if tbs.first() == Some(&0xa0) {
        let (_, _, t) = element(tbs)?;
        tbs = &tbs[t..];
    }
    for _ in 0..5 {
        let (_, _, t) = element(tbs)?;
        tbs = &tbs[t..];
    }
    let (tag, _, t) = element(tbs)?;
    (tag == 0x30).then(|| &tbs[..t])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_leaf_spki_and_certificate_hashes() {
        let cert = rcgen::generate_simple_self_signed(vec!["mx.example".to_string()]).unwrap();
        let der = cert.cert.der().to_vec();
        let spki_der = cert.key_pair.public_key_der();
        assert_eq!(spki(&der), Some(spki_der.as_slice()));
        let chain: [&[u8]; 1] = [&der];
        let rec = |usage, selector, matching, data: Vec<u8>| Tlsa {
            usage,
            selector,
            matching,
            data,
        };
        assert!(tlsa_matches(
            &[rec(3, 1, 1, Sha256::digest(&spki_der).to_vec())],
            &chain
        ));
        assert!(tlsa_matches(
            &[rec(3, 0, 2, Sha512::digest(&der).to_vec())],
            &chain
        ));
        assert!(tlsa_matches(&[rec(3, 0, 0, der.clone())], &chain));
        assert!(!tlsa_matches(&[rec(3, 1, 1, vec![0; 32])], &chain));
        // DANE-TA needs an issuer in the chain; PKIX usages are not used for SMTP.
        assert!(!tlsa_matches(
            &[rec(2, 1, 1, Sha256::digest(&spki_der).to_vec())],
            &chain
        ));
        assert!(!tlsa_matches(
            &[rec(1, 1, 1, Sha256::digest(&spki_der).to_vec())],
            &chain
        ));
        assert_eq!(spki(b"\x30\x03\x02\x01"), None);
    }

    #[test]
    fn dane_ta_verifies_the_chain_and_the_name() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["mx.a.test".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let ta = Tlsa {
            usage: 2,
            selector: 0,
            matching: 1,
            data: Sha256::digest(ca.der()).to_vec(),
        };
        let chain = [leaf.der().clone(), ca.der().clone()];
        let now = UnixTime::now();
        assert_eq!(
            verify(std::slice::from_ref(&ta), &chain, "mx.a.test", now),
            Ok(())
        );
        let e = verify(std::slice::from_ref(&ta), &chain, "mx.b.test", now).unwrap_err();
        assert!(e.contains("DANE-TA"), "the name is checked: {e}");
        // A leaf the anchor never signed, with the anchor appended to the chain: the
        // record matches, the chain does not verify.
        let forged = rcgen::generate_simple_self_signed(vec!["mx.a.test".to_string()]).unwrap();
        let chain = [forged.cert.der().clone(), ca.der().clone()];
        let e = verify(std::slice::from_ref(&ta), &chain, "mx.a.test", now).unwrap_err();
        assert!(e.contains("DANE-TA"), "{e}");
        // DANE-EE ignores names (RFC 7672 3.1.1).
        let ee = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: Sha256::digest(forged.key_pair.public_key_der()).to_vec(),
        };
        assert_eq!(verify(&[ee], &chain, "anything.test", now), Ok(()));
        assert!(verify(&[ta], &[], "mx.a.test", now).is_err());
    }
}
