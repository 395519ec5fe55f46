//! Subscribers and their plans.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::net::IpNet;
use crate::port25::Port25State;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Dynamic,
    Static,
}

impl Plan {
    /// A static plan needs at least one static address; a dynamic plan has none.
    pub fn check_addresses(self, static_ips: &[IpNet]) -> Result<(), SubscriberError> {
        match (self, static_ips.is_empty()) {
            (Plan::Static, true) => Err(SubscriberError::StaticWithoutAddress),
            (Plan::Dynamic, false) => Err(SubscriberError::DynamicWithAddress),
            _ => Ok(()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Dynamic => "dynamic",
            Plan::Static => "static",
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Plan {
    type Err = SubscriberError;
    fn from_str(s: &str) -> Result<Plan, SubscriberError> {
        match s.trim() {
            "dynamic" => Ok(Plan::Dynamic),
            "static" => Ok(Plan::Static),
            other => Err(SubscriberError::BadPlan(other.to_string())),
        }
    }
}

/// A customer of the ISP, known by the PPPoE login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subscriber {
    pub login: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub plan: Plan,
    pub port25: Port25State,
    pub static_ips: Vec<IpNet>,
    /// Sender addresses or `@domain`s the subscriber may use besides `email`.
    pub allowed_senders: Vec<String>,
    /// Sending suspended (e.g. stolen credentials) until lifted.
    pub suspended: bool,
    pub created: Timestamp,
    #[serde(skip)]
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriberError {
    #[error("login '{0}' is invalid: use 1-128 characters from letters, digits and . _ - @ +")]
    BadLogin(String),
    #[error("plan '{0}' is invalid: use dynamic or static")]
    BadPlan(String),
    #[error("'{0}' is not an email address")]
    BadEmail(String),
    #[error("'{0}' is neither an address (user@domain) nor a domain (@domain)")]
    BadSender(String),
    #[error("a static subscriber needs at least one static address (--static-ip)")]
    StaticWithoutAddress,
    #[error("a dynamic subscriber has no static address; drop --static-ip or use --plan static")]
    DynamicWithAddress,
}

pub fn validate_login(login: &str) -> Result<(), SubscriberError> {
    let ok = !login.is_empty()
        && login.len() <= 128
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SubscriberError::BadLogin(login.to_string()))
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        })
}

pub fn validate_email(addr: &str) -> Result<(), SubscriberError> {
    match addr.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !local.contains(char::is_whitespace)
                && valid_domain(domain) =>
        {
            Ok(())
        }
        _ => Err(SubscriberError::BadEmail(addr.to_string())),
    }
}

/// An owned sender: a full address or `@domain`. Returned lower-cased.
pub fn validate_sender(s: &str) -> Result<String, SubscriberError> {
    let s = s.trim().to_ascii_lowercase();
    let ok = match s.strip_prefix('@') {
        Some(domain) => valid_domain(domain),
        None => validate_email(&s).is_ok(),
    };
    if ok {
        Ok(s)
    } else {
        Err(SubscriberError::BadSender(s))
    }
}

impl Subscriber {
    /// Whether MAIL FROM `addr` is one of this subscriber's own addresses or domains.
    pub fn owns_sender(&self, addr: &str) -> bool {
        let addr = addr.to_ascii_lowercase();
        let domain = addr.rsplit_once('@').map(|(_, d)| d);
        self.email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(&addr))
            || self
                .allowed_senders
                .iter()
                .any(|s| match s.strip_prefix('@') {
                    Some(d) => domain == Some(d),
                    None => *s == addr,
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        assert!(validate_login("alice.smith@pppoe").is_ok());
        assert!(validate_login("").is_err());
        assert!(validate_login("bad login").is_err());
        assert!(validate_login(&"x".repeat(129)).is_err());
    }

    #[test]
    fn senders() {
        assert_eq!(validate_sender("@Example.NET").unwrap(), "@example.net");
        assert!(validate_sender("@").is_err());
        assert!(validate_sender("no-at-sign").is_err());
        let s = Subscriber {
            login: "a".into(),
            display_name: None,
            email: Some("Ann@Example.net".into()),
            plan: Plan::Dynamic,
            port25: Port25State::Blocked,
            static_ips: vec![],
            allowed_senders: vec!["@shop.example".into(), "sales@other.example".into()],
            suspended: false,
            created: Timestamp(0),
            password_hash: None,
        };
        assert!(s.owns_sender("ann@example.net"));
        assert!(s.owns_sender("anyone@SHOP.example"));
        assert!(s.owns_sender("sales@other.example"));
        assert!(!s.owns_sender("ceo@other.example"));
        assert!(!s.owns_sender("ann@example.net.evil"));
    }
}
