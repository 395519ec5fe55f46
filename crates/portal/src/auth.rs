//! Checking who someone is: customers by PPPoE login and password (the store's
//! argon2id hash, or PAP against the ISP's RADIUS servers, as `auth.backend` says),
//! operators by name and argon2id password. Failed logins are throttled per login
//! and per client address (`auth.max_failures`, `auth.lockout`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use config::AuthBackend;
use store::Operator;

use crate::error::PortalError;
use crate::Shared;

/// A client address may fail this many times more often than one login, since many
/// customers can share an address behind NAT.
const PER_ADDRESS_FACTOR: u32 = 4;

/// Failed-login counters, in memory (per node).
pub(crate) struct Throttle {
    max_failures: u32,
    lockout: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    /// Start of the current counting window, or of the lock once locked.
    since: Instant,
}

impl Throttle {
    pub fn new(max_failures: u32, lockout: Duration) -> Throttle {
        Throttle {
            max_failures: max_failures.max(1),
            lockout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn limit(&self, key: &str) -> u32 {
        if key.starts_with("addr:") {
            self.max_failures.saturating_mul(PER_ADDRESS_FACTOR)
        } else {
            self.max_failures
        }
    }

    /// Refuses while any of `keys` is locked; says for how long.
    pub fn check(&self, keys: &[String]) -> Result<(), PortalError> {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = 0;
        for k in keys {
            if let Some(e) = map.get(k).copied() {
                let elapsed = now.duration_since(e.since);
                if elapsed >= self.lockout {
                    map.remove(k);
                } else if e.failures >= self.limit(k) {
                    wait = wait.max((self.lockout - elapsed).as_secs().max(1));
                }
            }
        }
        if wait > 0 {
            Err(PortalError::Throttled(wait))
        } else {
            Ok(())
        }
    }

    pub fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            let lockout = self.lockout;
            map.retain(|_, e| now.duration_since(e.since) < lockout);
        }
        for k in keys {
            let limit = self.limit(k);
            let e = map.entry(k.clone()).or_insert(Entry {
                failures: 0,
                since: now,
            });
            e.failures += 1;
            if e.failures == limit {
                // The lock runs from the failure that reached the limit.
                e.since = now;
                tracing::warn!(key = %k, "login locked after repeated failures");
            }
        }
    }

    pub fn succeeded(&self, login_key: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(login_key);
    }
}

fn keys(kind: &str, name: &str, client: Option<IpAddr>) -> Vec<String> {
    let mut k = vec![format!("{kind}:{name}")];
    if let Some(ip) = client {
        k.push(format!("addr:{ip}"));
    }
    k
}

/// A hash to verify against when the account does not exist, so that a wrong login
/// takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| store::password::hash_password("decoy password, never valid"))
}

async fn verify_blocking(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => store::password::verify_password(&password, &h),
        None => {
            store::password::verify_password(&password, decoy_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// Checks a customer's PPPoE credentials; returns the login on success.
pub(crate) async fn customer_login(
    state: &Shared,
    login: &str,
    password: &str,
    client: Option<IpAddr>,
) -> Result<String, PortalError> {
    let login = login.trim();
    let keys = keys("customer", login, client);
    state.throttle.check(&keys)?;
    if policy::validate_login(login).is_err() || password.is_empty() || password.len() > 1024 {
        state.throttle.failed(&keys);
        return Err(PortalError::BadCredentials);
    }
    let sub = state.store.find_subscriber(login).await?;
    let ok = match state.config.auth.backend {
        AuthBackend::Local => {
            verify_blocking(
                password.to_string(),
                sub.as_ref().and_then(|s| s.password_hash.clone()),
            )
            .await
        }
        AuthBackend::Radius => {
            let a = &state.config.auth;
            let secret = a.radius_secret.clone().unwrap_or_default();
            let accepted = radius::pap_authenticate(
                &a.radius_servers,
                secret.as_bytes(),
                login,
                password,
                Duration::from_secs(3),
                2,
            )
            .await
            .map_err(|e| PortalError::AuthUnavailable(e.to_string()))?;
            accepted && sub.is_some()
        }
    };
    if ok {
        state.throttle.succeeded(&keys[0]);
        tracing::info!(login, "customer logged in");
        Ok(login.to_string())
    } else {
        state.throttle.failed(&keys);
        tracing::info!(login, client = ?client, "customer login failed");
        Err(PortalError::BadCredentials)
    }
}

/// Checks an operator's name and password.
pub(crate) async fn operator_login(
    state: &Shared,
    name: &str,
    password: &str,
    client: Option<IpAddr>,
) -> Result<Operator, PortalError> {
    let name = name.trim();
    let keys = keys("operator", name, client);
    state.throttle.check(&keys)?;
    if name.is_empty() || name.len() > 64 || password.is_empty() || password.len() > 1024 {
        state.throttle.failed(&keys);
        return Err(PortalError::BadCredentials);
    }
    let creds = state.store.operator_credentials(name).await?;
    let ok = verify_blocking(password.to_string(), creds.as_ref().map(|c| c.1.clone())).await;
    match creds {
        Some((op, _)) if ok => {
            state.throttle.succeeded(&keys[0]);
            tracing::info!(operator = %op.name, role = %op.role, "operator logged in");
            Ok(op)
        }
        _ => {
            state.throttle.failed(&keys);
            tracing::warn!(operator = name, client = ?client, "operator login failed");
            Err(PortalError::BadCredentials)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_per_address_later() {
        let t = Throttle::new(2, Duration::from_secs(60));
        let k = keys("customer", "ann", Some("192.0.2.1".parse().unwrap()));
        assert!(t.check(&k).is_ok());
        t.failed(&k);
        assert!(t.check(&k).is_ok());
        t.failed(&k);
        assert!(matches!(t.check(&k), Err(PortalError::Throttled(_))));
        // Another login from the same address is not locked yet (4 x 2 allowed).
        let other = keys("customer", "bob", Some("192.0.2.1".parse().unwrap()));
        assert!(t.check(&other).is_ok());
    }

    #[test]
    fn lock_expires() {
        let t = Throttle::new(1, Duration::from_millis(0));
        let k = keys("operator", "root", None);
        t.failed(&k);
        assert!(t.check(&k).is_ok());
    }
}
