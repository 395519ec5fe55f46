//! Leases: who held which address (or IPv6 prefix) when.
//!
//! Intervals are half-open, `[start, end)`; an open lease has no end yet. Static
//! addresses are leases that never end.

use std::net::IpAddr;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::net::IpNet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseSource {
    /// A static address assignment.
    Static,
    /// RADIUS accounting from the BRAS.
    Radius,
    /// `portcullis lease import`.
    Import,
}

impl LeaseSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseSource::Static => "static",
            LeaseSource::Radius => "radius",
            LeaseSource::Import => "import",
        }
    }

    pub fn parse(s: &str) -> Option<LeaseSource> {
        match s {
            "static" => Some(LeaseSource::Static),
            "radius" => Some(LeaseSource::Radius),
            "import" => Some(LeaseSource::Import),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub login: String,
    pub net: IpNet,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub source: LeaseSource,
}

impl Lease {
    pub fn covers(&self, addr: IpAddr, at: Timestamp) -> bool {
        self.net.contains(addr) && self.start <= at && self.end.is_none_or(|e| at < e)
    }
}

/// The lease that held `addr` at `at`: the most specific prefix wins, then the latest
/// start (a newer session supersedes a stale one that was never closed).
pub fn who_held(leases: &[Lease], addr: IpAddr, at: Timestamp) -> Option<&Lease> {
    leases
        .iter()
        .filter(|l| l.covers(addr, at))
        .max_by_key(|l| (l.net.prefix_len(), l.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(login: &str, net: &str, start: i64, end: Option<i64>) -> Lease {
        Lease {
            login: login.into(),
            net: net.parse().unwrap(),
            start: Timestamp(start),
            end: end.map(Timestamp),
            source: LeaseSource::Import,
        }
    }

    #[test]
    fn half_open_intervals() {
        let ls = vec![
            lease("ann", "100.64.0.5", 100, Some(200)),
            lease("bob", "100.64.0.5", 200, None),
        ];
        let ip = "100.64.0.5".parse().unwrap();
        assert_eq!(who_held(&ls, ip, Timestamp(99)), None);
        assert_eq!(who_held(&ls, ip, Timestamp(100)).unwrap().login, "ann");
        assert_eq!(who_held(&ls, ip, Timestamp(199)).unwrap().login, "ann");
        assert_eq!(who_held(&ls, ip, Timestamp(200)).unwrap().login, "bob");
        assert_eq!(who_held(&ls, ip, Timestamp(10_000)).unwrap().login, "bob");
    }

    #[test]
    fn ipv6_prefix_matches_any_address_inside() {
        let ls = vec![lease("cat", "2001:db8:1200::/56", 0, None)];
        assert_eq!(
            who_held(&ls, "2001:db8:1200:42::9".parse().unwrap(), Timestamp(5))
                .unwrap()
                .login,
            "cat"
        );
        assert!(who_held(&ls, "2001:db8:1300::1".parse().unwrap(), Timestamp(5)).is_none());
    }
}
