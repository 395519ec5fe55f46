//! TLS for the submission server: rustls with the ring provider, TLS 1.2 and 1.3 only.
//! The certificate chain and key come from `submission.tls_cert` / `tls_key` (PEM);
//! without them a self-signed pair is generated once into `data_dir/tls/` and its
//! SHA-256 fingerprint logged, so the embedded default works out of the box.
//! [`TlsSource::reload`] (on SIGHUP) swaps the configuration for new connections;
//! sessions already running keep theirs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::SubmissionError;
use crate::session::TlsInfo;

/// Where the certificate comes from, and the configuration currently served.
pub struct TlsSource {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsSource {
    /// Loads the configured pair, or the self-signed one (made on first use).
    pub fn load(config: &config::Config) -> Result<TlsSource, SubmissionError> {
        let (cert, key) = match (&config.submission.tls_cert, &config.submission.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => self_signed(&config.store.data_dir, &config.submission.hostname)?,
        };
        let server = server_config(&cert, &key)?;
        Ok(TlsSource {
            cert,
            key,
            current: RwLock::new(Arc::new(server)),
        })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the files; on error the old configuration stays.
    pub fn reload(&self) -> Result<(), SubmissionError> {
        let server = Arc::new(server_config(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = server;
        tracing::info!(cert = %self.cert.display(), fingerprint = %fingerprint_of_file(&self.cert), "TLS certificate reloaded");
        Ok(())
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, SubmissionError> {
    let bad = |what: &'static str, path: &Path, reason: String| SubmissionError::Certificate {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(
            "certificate",
            cert,
            "no CERTIFICATE block in the file".into(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    // Mail clients do not resume often; a small cache is enough.
    server.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(server)
}

/// The self-signed pair in `data_dir/tls/`, generated when missing.
fn self_signed(data_dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), SubmissionError> {
    let dir = data_dir.join("tls");
    let cert = dir.join("submission-selfsigned.crt");
    let key = dir.join("submission-selfsigned.key");
    if cert.exists() && key.exists() {
        tracing::info!(cert = %cert.display(), fingerprint = %fingerprint_of_file(&cert), "using the self-signed TLS certificate");
        return Ok((cert, key));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SubmissionError::DataDir { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let generated = (|| {
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, hostname);
        let key_pair = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key_pair)?;
        Ok::<_, rcgen::Error>((cert, key_pair))
    })();
    let (certificate, key_pair) =
        generated.map_err(|e| SubmissionError::SelfSigned(e.to_string()))?;
    write_private(&key, key_pair.serialize_pem().as_bytes()).map_err(io(&key))?;
    std::fs::write(&cert, certificate.pem()).map_err(io(&cert))?;
    tracing::warn!(
        cert = %cert.display(),
        fingerprint = %fingerprint(certificate.der()),
        "no submission.tls_cert configured: generated a self-signed certificate; mail clients will warn until a real one is set"
    );
    Ok((cert, key))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// SHA-256 of a DER certificate, as colon-separated hex (what `openssl x509 -fingerprint -sha256` prints).
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn fingerprint_of_file(cert: &Path) -> String {
    match CertificateDer::pem_file_iter(cert)
        .ok()
        .and_then(|mut it| it.next())
        .and_then(Result::ok)
    {
        Some(der) => fingerprint(&der),
        None => "unreadable".into(),
    }
}

/// The negotiated version and cipher of a finished handshake.
pub fn info(conn: &rustls::ServerConnection) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "unknown".into(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map_or_else(|| "unknown".into(), |s| format!("{:?}", s.suite()));
    TlsInfo { version, cipher }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config::Config::default();
        config.store.data_dir = dir.path().to_path_buf();
        let a = TlsSource::load(&config).unwrap();
        let first = std::fs::read(&a.cert).unwrap();
        let b = TlsSource::load(&config).unwrap();
        assert_eq!(
            std::fs::read(&b.cert).unwrap(),
            first,
            "kept, not regenerated"
        );
        let before = b.current();
        b.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &b.current()), "swapped");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&a.key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not pem").unwrap();
        let mut config = config::Config::default();
        config.submission.tls_cert = Some(cert.clone());
        config.submission.tls_key = Some(dir.path().join("missing.pem"));
        let e = TlsSource::load(&config).err().unwrap().to_string();
        assert!(e.contains("c.pem"), "{e}");
        assert_eq!(fingerprint(b"x").len(), 32 * 3 - 1);
    }
}
