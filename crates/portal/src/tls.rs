//! HTTPS for the portal: the certificate and key configured for submission
//! (`submission.tls_cert`, `submission.tls_key`), served with rustls and the ring
//! provider. Without them the portal speaks plain HTTP.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::PortalError;

pub(crate) fn acceptor(config: &config::Config) -> Result<Option<TlsAcceptor>, PortalError> {
    let (Some(cert), Some(key)) = (&config.submission.tls_cert, &config.submission.tls_key) else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| PortalError::Tls {
            key: "submission.tls_cert",
            reason: format!("cannot read certificates from {}: {e}", cert.display()),
        })?;
    if certs.is_empty() {
        return Err(PortalError::Tls {
            key: "submission.tls_cert",
            reason: format!("{} holds no PEM certificate", cert.display()),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| PortalError::Tls {
        key: "submission.tls_key",
        reason: format!("cannot read a private key from {}: {e}", key.display()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|e| PortalError::Tls {
            key: "submission.tls_key",
            reason: format!("certificate and key do not make a TLS configuration: {e}"),
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}
