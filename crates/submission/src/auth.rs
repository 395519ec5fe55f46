//! Checking credentials: the `local` backend (argon2id hashes in the store) and the
//! `radius` backend (PAP to the ISP's RADIUS servers), behind the failed-login
//! throttle. A suspended subscriber cannot log in; unknown login, wrong password and
//! suspension all give the same answer, after the same work.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::metrics::{metrics, SubmissionMetrics};
use crate::session::{AuthOutcome, Credentials};
use crate::throttle::{Admission, AuthThrottle};

pub enum Backend {
    Local,
    Radius {
        servers: Vec<SocketAddr>,
        secret: Vec<u8>,
        timeout: Duration,
        retries: u32,
    },
}

pub struct Authenticator {
    backend: Backend,
    store: store::Store,
    throttle: AuthThrottle,
    /// argon2 is CPU-heavy by design: at most this many run at once, so a login
    /// flood cannot starve the blocking pool that the store and spool also use.
    verifiers: tokio::sync::Semaphore,
}

/// A hash to verify against when the login is unknown, so that answer takes as long.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| store::password::hash_password("portcullis-timing-equaliser"))
}

impl Authenticator {
    pub fn new(
        backend: Backend,
        store: store::Store,
        throttle: AuthThrottle,
        parallel: usize,
    ) -> Authenticator {
        Authenticator {
            backend,
            store,
            throttle,
            verifiers: tokio::sync::Semaphore::new(parallel.max(1)),
        }
    }

    /// Checks `creds` from `client`; returns the outcome and how long to wait before
    /// answering (growing with repeated failures).
    pub async fn authenticate(
        &self,
        creds: &Credentials,
        client: IpAddr,
    ) -> (AuthOutcome, Duration) {
        if self.throttle.check(&creds.login, client) == Admission::Locked {
            SubmissionMetrics::inc(&metrics().auth_locked);
            tracing::warn!(login = %creds.login, %client, "login refused: locked after repeated failures");
            return (AuthOutcome::Locked, Duration::ZERO);
        }
        let verdict = match &self.backend {
            Backend::Local => self.local(creds).await,
            Backend::Radius {
                servers,
                secret,
                timeout,
                retries,
            } => {
                self.radius(creds, servers, secret, *timeout, *retries)
                    .await
            }
        };
        match verdict {
            Ok(Some(subscriber)) => {
                self.throttle.succeeded(&creds.login, client);
                SubmissionMetrics::inc(&metrics().auth_ok);
                tracing::info!(login = %creds.login, %client, "authenticated");
                (
                    AuthOutcome::Success {
                        login: creds.login.clone(),
                        subscriber: subscriber.map(Box::new),
                    },
                    Duration::ZERO,
                )
            }
            Ok(None) => {
                let delay = self.throttle.failed(&creds.login, client);
                SubmissionMetrics::inc(&metrics().auth_failed);
                tracing::warn!(login = %creds.login, %client, "authentication failed");
                (AuthOutcome::Failed, delay)
            }
            Err(reason) => {
                tracing::error!(login = %creds.login, "authentication backend unavailable: {reason}");
                (AuthOutcome::Unavailable, Duration::ZERO)
            }
        }
    }

    async fn verify(&self, password: &str, hash: &str) -> Result<bool, String> {
        let _permit = self.verifiers.acquire().await.map_err(|e| e.to_string())?;
        let (password, hash) = (password.to_string(), hash.to_string());
        tokio::task::spawn_blocking(move || store::password::verify_password(&password, &hash))
            .await
            .map_err(|e| format!("password check failed: {e}"))
    }

    /// Ok(Some(subscriber)) on success, Ok(None) on failure, Err when the store fails.
    async fn local(
        &self,
        creds: &Credentials,
    ) -> Result<Option<Option<policy::Subscriber>>, String> {
        let sub = self
            .store
            .find_subscriber(&creds.login)
            .await
            .map_err(|e| e.to_string())?;
        let hash = sub.as_ref().and_then(|s| s.password_hash.clone());
        let ok = self
            .verify(&creds.password, hash.as_deref().unwrap_or(dummy_hash()))
            .await?;
        match sub {
            Some(s) if ok && hash.is_some() && !s.suspended => Ok(Some(Some(s))),
            Some(s) if ok && s.suspended => {
                tracing::warn!(login = %creds.login, "suspended subscriber tried to log in");
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    async fn radius(
        &self,
        creds: &Credentials,
        servers: &[SocketAddr],
        secret: &[u8],
        timeout: Duration,
        retries: u32,
    ) -> Result<Option<Option<policy::Subscriber>>, String> {
        let accepted = radius::client::pap_authenticate(
            servers,
            secret,
            &creds.login,
            &creds.password,
            timeout,
            retries,
        )
        .await
        .map_err(|e| e.to_string())?;
        if !accepted {
            return Ok(None);
        }
        // RADIUS knows the password; the store knows the owned senders and suspension.
        match self
            .store
            .find_subscriber(&creds.login)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(s) if s.suspended => {
                tracing::warn!(login = %creds.login, "suspended subscriber tried to log in");
                Ok(None)
            }
            Some(s) => Ok(Some(Some(s))),
            None => {
                tracing::warn!(login = %creds.login, "RADIUS accepted a login the store does not know: no owned senders");
                Ok(Some(None))
            }
        }
    }
}

/// The backend named by `auth.backend`.
pub fn backend_from(config: &config::Config, timeout: Duration, retries: u32) -> Backend {
    match config.auth.backend {
        config::AuthBackend::Local => Backend::Local,
        config::AuthBackend::Radius => Backend::Radius {
            servers: config.auth.radius_servers.clone(),
            secret: config
                .auth
                .radius_secret
                .clone()
                .unwrap_or_default()
                .into_bytes(),
            timeout,
            retries,
        },
    }
}

pub type SharedAuthenticator = Arc<Authenticator>;
