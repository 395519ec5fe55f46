//! DANE for SMTP (RFC 7672), the part that needs no DNSSEC: matching a server's
//! certificate chain against TLSA records (`3 x x` DANE-EE and `2 x x` DANE-TA;
//! selectors full certificate and SubjectPublicKeyInfo; matching exact, SHA-256,
//! SHA-512).
//!
//! **What is not validated:** TLSA records are only meaningful when their DNSSEC
//! signatures have been validated (RFC 7672 2.1). The resolver here does no
//! DNSSEC validation and does not trust the AD bit of a remote resolver, so the
//! worker does not look TLSA records up or enforce DANE; [`tlsa_matches`] is the
//! check it would apply, after a validated lookup, to
//! `SmtpConnection::peer_certificates` with `TlsMode::Required`. For DANE-TA the
//! chain's signatures up to the matched trust anchor are not verified here.

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

/// Whether any usable record matches the chain (leaf first).
pub fn tlsa_matches(records: &[Tlsa], chain: &[&[u8]]) -> bool {
    records.iter().any(|r| {
        let certs: &[&[u8]] = match r.usage {
            3 => chain.get(..1).unwrap_or(&[]),
            2 => chain.get(1..).unwrap_or(&[]),
            _ => &[],
        };
        certs.iter().any(|cert| {
            let selected = match r.selector {
                0 => Some(*cert),
                1 => spki(cert),
                _ => None,
            };
            let Some(selected) = selected else {
                return false;
            };
            match r.matching {
                0 => selected == r.data.as_slice(),
                1 => Sha256::digest(selected).as_slice() == r.data.as_slice(),
                2 => Sha512::digest(selected).as_slice() == r.data.as_slice(),
                _ => false,
            }
        })
    })
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
}
