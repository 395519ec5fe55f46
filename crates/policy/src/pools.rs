//! The ISP's address pools: dynamic (port 25 blocked by default) and static (open).

use std::net::IpAddr;

use serde::Serialize;

use crate::net::IpNet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    Dynamic,
    Static,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pools {
    pub dynamic: Vec<IpNet>,
    pub statics: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolsError {
    /// A dynamic pool and a static pool share addresses.
    #[error("dynamic pool {0} overlaps static pool {1}")]
    Overlap(IpNet, IpNet),
}

impl Pools {
    pub fn new(dynamic: Vec<IpNet>, statics: Vec<IpNet>) -> Result<Pools, PoolsError> {
        for d in &dynamic {
            if let Some(s) = statics.iter().find(|s| s.overlaps(d)) {
                return Err(PoolsError::Overlap(*d, *s));
            }
        }
        Ok(Pools { dynamic, statics })
    }

    pub fn classify(&self, addr: IpAddr) -> Option<PoolKind> {
        if self.dynamic.iter().any(|n| n.contains(addr)) {
            Some(PoolKind::Dynamic)
        } else if self.statics.iter().any(|n| n.contains(addr)) {
            Some(PoolKind::Static)
        } else {
            None
        }
    }

    /// True when every address of `net` lies inside one static pool.
    pub fn is_static(&self, net: &IpNet) -> bool {
        let (lo, hi) = net.key_range();
        self.statics.iter().any(|p| {
            let (a, b) = p.key_range();
            p.is_ipv4() == net.is_ipv4() && a <= lo && hi <= b
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_refused() {
        let e = Pools::new(
            vec!["10.0.0.0/8".parse().unwrap()],
            vec!["10.1.0.0/24".parse().unwrap()],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "dynamic pool 10.0.0.0/8 overlaps static pool 10.1.0.0/24"
        );
    }

    #[test]
    fn classifies() {
        let p = Pools::new(
            vec![
                "100.64.0.0/10".parse().unwrap(),
                "2001:db8:8000::/33".parse().unwrap(),
            ],
            vec!["198.51.100.0/24".parse().unwrap()],
        )
        .unwrap();
        assert_eq!(
            p.classify("100.64.1.1".parse().unwrap()),
            Some(PoolKind::Dynamic)
        );
        assert_eq!(
            p.classify("2001:db8:8000::1".parse().unwrap()),
            Some(PoolKind::Dynamic)
        );
        assert_eq!(
            p.classify("198.51.100.9".parse().unwrap()),
            Some(PoolKind::Static)
        );
        assert_eq!(p.classify("8.8.8.8".parse().unwrap()), None);
        assert!(p.is_static(&"198.51.100.16/28".parse().unwrap()));
        assert!(!p.is_static(&"198.51.100.0/23".parse().unwrap()));
    }
}
