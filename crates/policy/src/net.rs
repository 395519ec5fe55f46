//! Addresses and prefixes (CIDR), IPv4 and IPv6, in one comparable space.
//!
//! Every address maps to a `u128` key: IPv6 as itself, IPv4 as the IPv4-mapped
//! address `::ffff:a.b.c.d`. A prefix is then a closed key range, which is how the
//! store indexes leases and how lookups match an address inside a leased IPv6 prefix.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address or a prefix, e.g. `100.64.0.0/10`, `2001:db8:1200::/56`, `192.0.2.7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The text is not an address or an address/length pair.
    #[error("'{0}' is not an IP address or CIDR prefix")]
    Malformed(String),
    /// The prefix length is beyond the address family's width.
    #[error("'{0}': prefix length must be at most {1}")]
    PrefixTooLong(String, u8),
    /// Bits are set beyond the prefix length, e.g. `10.0.0.1/8`.
    #[error("'{0}' has host bits set; did you mean {1}?")]
    HostBits(String, IpNet),
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpNet, NetError> {
        let max = max_prefix(&addr);
        if prefix > max {
            return Err(NetError::PrefixTooLong(format!("{addr}/{prefix}"), max));
        }
        let net = IpNet { addr, prefix };
        let masked = net.network();
        if masked.addr != addr {
            return Err(NetError::HostBits(format!("{addr}/{prefix}"), masked));
        }
        Ok(net)
    }

    /// A single address as a /32 or /128.
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet {
            addr,
            prefix: max_prefix(&addr),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    pub fn is_host(&self) -> bool {
        self.prefix == max_prefix(&self.addr)
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The same prefix with host bits cleared.
    fn network(&self) -> IpNet {
        let (lo, _) = range_of(self.addr, self.prefix);
        IpNet {
            addr: key_to_addr(lo, self.addr.is_ipv4()),
            prefix: self.prefix,
        }
    }

    /// First and last key covered, inclusive.
    pub fn key_range(&self) -> (u128, u128) {
        range_of(self.addr, self.prefix)
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        if addr.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let (lo, hi) = self.key_range();
        let k = addr_key(addr);
        lo <= k && k <= hi
    }

    pub fn overlaps(&self, other: &IpNet) -> bool {
        let (a, b) = self.key_range();
        let (c, d) = other.key_range();
        a <= d && c <= b
    }

    /// Number of addresses covered (saturating for huge IPv6 prefixes).
    pub fn size(&self) -> u128 {
        let (lo, hi) = self.key_range();
        (hi - lo).saturating_add(1)
    }
}

fn max_prefix(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// The comparable key of an address (IPv4 mapped into `::ffff:0:0/96`).
pub fn addr_key(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Inverse of [`addr_key`].
pub fn key_to_addr(key: u128, v4: bool) -> IpAddr {
    let v6 = Ipv6Addr::from(key);
    match (v4, v6.to_ipv4_mapped()) {
        (true, Some(a)) => IpAddr::V4(a),
        (true, None) => IpAddr::V4(Ipv4Addr::from(key as u32)),
        _ => IpAddr::V6(v6),
    }
}

fn range_of(addr: IpAddr, prefix: u8) -> (u128, u128) {
    let width = u32::from(max_prefix(&addr));
    let host_bits = width - u32::from(prefix);
    let k = addr_key(addr);
    let mask: u128 = if host_bits == 0 {
        0
    } else {
        (1u128 << host_bits) - 1
    };
    (k & !mask, k | mask)
}

impl FromStr for IpNet {
    type Err = NetError;
    fn from_str(s: &str) -> Result<IpNet, NetError> {
        let s = s.trim();
        match s.split_once('/') {
            None => s
                .parse::<IpAddr>()
                .map(IpNet::host)
                .map_err(|_| NetError::Malformed(s.to_string())),
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| NetError::Malformed(s.to_string()))?;
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                    return Err(NetError::Malformed(s.to_string()));
                }
                let prefix: u8 = p.parse().map_err(|_| NetError::Malformed(s.to_string()))?;
                IpNet::new(addr, prefix)
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_hosts_and_prefixes() {
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7");
        assert_eq!(net("100.64.0.0/10").to_string(), "100.64.0.0/10");
        assert_eq!(net("2001:db8:1200::/56").to_string(), "2001:db8:1200::/56");
        assert!(net("2001:db8::1").is_host());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "300.1.1.1",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0.0/33",
            "::/129",
            "abc",
            "10.0.0.0/+8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad} should fail");
        }
        let e = "10.0.0.1/8".parse::<IpNet>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "'10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"
        );
    }

    #[test]
    fn containment_respects_family() {
        let pool = net("100.64.0.0/10");
        assert!(pool.contains("100.64.0.1".parse().unwrap()));
        assert!(pool.contains("100.127.255.255".parse().unwrap()));
        assert!(!pool.contains("100.128.0.0".parse().unwrap()));
        assert!(
            !pool.contains("::ffff:100.64.0.1".parse().unwrap()),
            "IPv6 never matches an IPv4 prefix"
        );
        let p6 = net("2001:db8:1200::/56");
        assert!(p6.contains("2001:db8:1200:ff::1".parse().unwrap()));
        assert!(!p6.contains("2001:db8:1201::1".parse().unwrap()));
    }

    #[test]
    fn overlap() {
        assert!(net("10.0.0.0/8").overlaps(&net("10.1.0.0/16")));
        assert!(!net("10.0.0.0/8").overlaps(&net("11.0.0.0/8")));
        assert!(net("0.0.0.0/0").overlaps(&net("1.2.3.4")));
        assert_eq!(net("10.0.0.0/30").size(), 4);
    }

    #[test]
    fn keys_round_trip() {
        for a in ["1.2.3.4", "2001:db8::5"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(key_to_addr(addr_key(ip), ip.is_ipv4()), ip);
        }
    }
}
