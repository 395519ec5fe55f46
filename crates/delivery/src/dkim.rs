//! DKIM (RFC 6376) signing of outbound mail with mail-auth, for the domains in
//! `delivery.dkim` (RSA-SHA256 and Ed25519-SHA256, RFC 8463, keys in PEM files), and
//! [`dkim_keygen`], which makes a key and the DNS TXT record to publish.
//!
//! A message is signed when its `From:` domain is a configured domain or one of its
//! subdomains (so DMARC alignment holds), relaxed/relaxed, with the usual headers.

use std::path::{Path, PathBuf};

use base64::Engine;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::error::DeliveryError;

/// Headers signed when present.
const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

struct DomainSigner {
    domain: String,
    signer: DkimSigner<DkimKey, Done>,
}

/// The configured DKIM keys, loaded once at start.
#[derive(Default)]
pub struct DkimSigners {
    signers: Vec<DomainSigner>,
}

impl std::fmt::Debug for DkimSigners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.signers.iter().map(|s| &s.domain))
            .finish()
    }
}

/// Reads a PEM private key (PKCS#8 RSA or Ed25519, or PKCS#1 RSA).
pub fn load_key(path: &Path) -> Result<DkimKey, DeliveryError> {
    let key_err = |reason: String| DeliveryError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| key_err(e.to_string()))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| key_err(format!("not a PEM private key ({e})")))?;
    match &der {
        PrivateKeyDer::Pkcs8(p8) => {
            if let Ok(k) = Ed25519Key::from_pkcs8_der(p8.secret_pkcs8_der()) {
                return Ok(DkimKey::from(k));
            }
            RsaKey::<Sha256>::from_key_der(der.clone_key())
                .map(DkimKey::from)
                .map_err(|e| key_err(format!("neither an RSA nor an Ed25519 key ({e})")))
        }
        PrivateKeyDer::Pkcs1(_) => RsaKey::<Sha256>::from_key_der(der.clone_key())
            .map(DkimKey::from)
            .map_err(|e| key_err(e.to_string())),
        _ => Err(key_err("unsupported key type (use RSA or Ed25519)".into())),
    }
}

impl DkimSigners {
    /// Loads every configured key; a bad key file is an error naming the file.
    pub fn load(keys: &[config::DkimKey]) -> Result<DkimSigners, DeliveryError> {
        let mut signers = Vec::new();
        for k in keys {
            let key = load_key(&k.key_file)?;
            signers.push(DomainSigner {
                domain: k.domain.trim_end_matches('.').to_ascii_lowercase(),
                signer: DkimSigner::from_key(key)
                    .domain(k.domain.trim_end_matches('.'))
                    .selector(&k.selector)
                    .headers(SIGNED_HEADERS)
                    .header_canonicalization(Canonicalization::Relaxed)
                    .body_canonicalization(Canonicalization::Relaxed),
            });
        }
        Ok(DkimSigners { signers })
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// The `DKIM-Signature:` header (with CRLF) for `message`, when its From domain
    /// has a key; `None` otherwise.
    pub fn sign(&self, message: &[u8]) -> Result<Option<String>, DeliveryError> {
        let Some(from) = from_domain(message) else {
            return Ok(None);
        };
        let Some(s) = self
            .signers
            .iter()
            .filter(|s| from == s.domain || from.ends_with(&format!(".{}", s.domain)))
            .max_by_key(|s| s.domain.len())
        else {
            return Ok(None);
        };
        let sig = s
            .signer
            .sign(message)
            .map_err(|e| DeliveryError::Dkim(format!("signing for {}: {e}", s.domain)))?;
        Ok(Some(sig.to_header()))
    }
}

/// The domain of the first address in the `From:` header, lower case.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let headers = crate::dsn::header_section(message);
    let text = String::from_utf8_lossy(headers);
    let mut value: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push_str(line);
                continue;
            }
            break;
        }
        if line.len() >= 5 && line[..5].eq_ignore_ascii_case("from:") {
            value = Some(line[5..].to_string());
        }
    }
    let v = value?;
    let addr = match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].to_string(),
        _ => v.trim().to_string(),
    };
    let (_, domain) = addr.rsplit_once('@')?;
    let domain = domain
        .trim()
        .trim_end_matches([',', ';', ')'])
        .to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Makes a DKIM key (`algorithm`: `rsa` (2048 bits) or `ed25519`), writes it as PEM
/// (PKCS#8) to `data_dir/dkim/DOMAIN.SELECTOR.key` (mode 0600; an existing file is
/// never overwritten), and returns the path and the TXT record to publish at
/// `SELECTOR._domainkey.DOMAIN`.
pub fn dkim_keygen(
    data_dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: &str,
) -> Result<(PathBuf, String), DeliveryError> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if !valid(domain) {
        return Err(DeliveryError::Invalid(format!(
            "'{domain}' is not a domain name"
        )));
    }
    if !valid(selector) {
        return Err(DeliveryError::Invalid(format!(
            "'{selector}' is not a DKIM selector"
        )));
    }
    let (pem, record) = match algorithm.to_ascii_lowercase().as_str() {
        "rsa" => {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| DeliveryError::Dkim(format!("RSA key generation: {e}")))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| DeliveryError::Dkim(e.to_string()))?
                .to_string();
            let public = key
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| DeliveryError::Dkim(e.to_string()))?;
            let p = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
            (pem, format!("v=DKIM1; k=rsa; p={p}"))
        }
        "ed25519" => {
            let der =
                Ed25519Key::generate_pkcs8().map_err(|e| DeliveryError::Dkim(e.to_string()))?;
            let key =
                Ed25519Key::from_pkcs8_der(&der).map_err(|e| DeliveryError::Dkim(e.to_string()))?;
            let p = base64::engine::general_purpose::STANDARD.encode(key.public_key());
            (
                pem_encode("PRIVATE KEY", &der),
                format!("v=DKIM1; k=ed25519; p={p}"),
            )
        }
        other => {
            return Err(DeliveryError::Invalid(format!(
                "unknown DKIM algorithm '{other}' (use rsa or ed25519)"
            )))
        }
    };
    let dir = data_dir.join("dkim");
    let key_err = |path: &Path, e: std::io::Error| DeliveryError::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| key_err(&dir, e))?;
    let path = dir.join(format!("{}.{}.key", domain.to_ascii_lowercase(), selector));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(|e| key_err(&path, e))?;
    std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(|e| key_err(&path, e))?;
    file.sync_all().map_err(|e| key_err(&path, e))?;
    Ok((path, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_from_domain() {
        assert_eq!(
            from_domain(b"Subject: x\r\nFrom: Ann <ann@Mail.ISP.example>\r\n\r\nFrom: no@x\r\n")
                .as_deref(),
            Some("mail.isp.example")
        );
        assert_eq!(
            from_domain(b"from: ann@isp.example\n\n").as_deref(),
            Some("isp.example")
        );
        assert_eq!(
            from_domain(b"From:\r\n \"A\" <a@b.example>\r\n\r\n").as_deref(),
            Some("b.example")
        );
        assert_eq!(from_domain(b"To: a@b\r\n\r\n"), None);
    }

    #[test]
    fn keygen_writes_loadable_keys_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        for alg in ["ed25519", "rsa"] {
            let (path, record) = dkim_keygen(dir.path(), "isp.example", alg, alg).unwrap();
            assert!(path.ends_with(format!("dkim/isp.example.{alg}.key")));
            assert!(record.starts_with(&format!("v=DKIM1; k={alg}; p=")));
            load_key(&path).unwrap();
            let signers = DkimSigners::load(&[config::DkimKey {
                domain: "isp.example".into(),
                selector: alg.into(),
                key_file: path.clone(),
            }])
            .unwrap();
            let header = signers
                .sign(b"From: ann@sub.isp.example\r\nSubject: hi\r\n\r\nbody\r\n")
                .unwrap()
                .unwrap();
            assert!(header.starts_with("DKIM-Signature:"), "{header}");
            assert!(header.contains("d=isp.example"));
            assert!(signers
                .sign(b"From: a@other.example\r\n\r\nx\r\n")
                .unwrap()
                .is_none());
            assert!(
                dkim_keygen(dir.path(), "isp.example", alg, alg).is_err(),
                "no overwrite"
            );
        }
        assert!(dkim_keygen(dir.path(), "isp.example", "s", "dsa").is_err());
        assert!(dkim_keygen(dir.path(), "bad domain", "s", "rsa").is_err());
    }
}
