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
    verifier: PasswordVerifier,
}

type VerifyJob = (String, String, tokio::sync::oneshot::Sender<bool>);

/// argon2 is CPU- and memory-heavy by design (19 MiB a check): checks run on a few
/// dedicated threads, each keeping its argon2 memory from one check to the next, so a
/// login flood cannot starve tokio's blocking pool (which the store uses) and memory
/// stays one argon2 buffer per thread (allocated per check, it was 1 GiB after a few
/// dozen logins, then 900 MiB after 1,000 concurrent ones).
struct PasswordVerifier {
    jobs: std::sync::mpsc::Sender<VerifyJob>,
}

impl PasswordVerifier {
    fn new(threads: usize) -> PasswordVerifier {
        let (tx, rx) = std::sync::mpsc::channel::<VerifyJob>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || {
                    // argon2's working memory, kept by this thread (see verify_password_with).
                    let mut memory = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok((password, hash, reply)) = job else {
                            return;
                        };
                        let ok =
                            store::password::verify_password_with(&mut memory, &password, &hash);
                        let _ = reply.send(ok);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password-check thread: {e}");
            }
        }
        PasswordVerifier { jobs: tx }
    }

    async fn verify(&self, password: &str, hash: &str) -> Result<bool, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send((password.to_string(), hash.to_string(), tx))
            .map_err(|_| "password-check threads are gone".to_string())?;
        rx.await.map_err(|_| "password check failed".to_string())
    }
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
        // Made now rather than on the first unknown login, which would wait for it.
        let _ = dummy_hash();
        Authenticator {
            backend,
            store,
            throttle,
            verifier: PasswordVerifier::new(parallel),
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
        self.verifier.verify(password, hash).await
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
