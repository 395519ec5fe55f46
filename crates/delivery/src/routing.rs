//! Where a recipient domain's mail goes, from its MX answer (RFC 5321 section 5.1,
//! RFC 7505), without I/O: the `dns` module asks, this module decides.
//!
//! MX hosts are tried in preference order (ties keep the order the server gave);
//! a domain without MX records but with an address is its own implicit MX; a
//! domain that does not exist, or that publishes the null MX (`0 .`), bounces at once.

/// The answer to a recipient domain's MX query, as far as routing cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// `(preference, exchange)` pairs; exchange `""` or `"."` is the root.
    Records(Vec<(u16, String)>),
    /// The name exists but has no MX records (NOERROR, empty answer).
    NoRecords,
    /// The name does not exist (NXDOMAIN).
    NoSuchDomain,
}

/// What to do with mail for a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Host names to try, in order. Their addresses are looked up next.
    Hosts(Vec<String>),
    /// RFC 7505: the domain accepts no mail; bounce with 5.1.10.
    NullMx,
    /// NXDOMAIN: bounce with 5.1.2.
    NoSuchDomain,
}

/// Turns an MX answer for `domain` into the hosts to try.
pub fn route(domain: &str, answer: &MxAnswer) -> Route {
    match answer {
        MxAnswer::NoSuchDomain => Route::NoSuchDomain,
        // RFC 5321 5.1: no MX, so the domain itself is the implicit MX.
        MxAnswer::NoRecords => Route::Hosts(vec![domain.trim_end_matches('.').to_string()]),
        MxAnswer::Records(records) => {
            let is_root = |h: &str| h.is_empty() || h == ".";
            if records.is_empty() {
                return Route::Hosts(vec![domain.trim_end_matches('.').to_string()]);
            }
            // RFC 7505 3: a null MX is the only MX; if someone mixes it with real
            // ones, the real ones win.
            if records.iter().all(|(_, h)| is_root(h)) {
                return Route::NullMx;
            }
            let mut hosts: Vec<(u16, String)> = records
                .iter()
                .filter(|(_, h)| !is_root(h))
                .map(|(p, h)| (*p, h.trim_end_matches('.').to_ascii_lowercase()))
                .collect();
            hosts.sort_by_key(|(p, _)| *p);
            let mut out: Vec<String> = Vec::with_capacity(hosts.len());
            for (_, h) in hosts {
                if !out.contains(&h) {
                    out.push(h);
                }
            }
            Route::Hosts(out)
        }
    }
}

/// The domain part of an address, lower case; an address literal keeps its brackets.
pub fn recipient_domain(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`: an address literal, delivered to directly.
pub fn address_literal(domain: &str) -> Option<std::net::IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

/// Splits `host:port` (or `[v6]:port`, or a bare host with `default_port`).
pub fn split_host_port(text: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => Some((text.to_string(), default_port)),
        None => Some((text.to_string(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_preference_order() {
        let a = MxAnswer::Records(vec![
            (20, "b.example.".into()),
            (10, "A.example.".into()),
            (20, "c.example".into()),
            (10, "a.example".into()),
        ]);
        assert_eq!(
            route("example", &a),
            Route::Hosts(vec![
                "a.example".into(),
                "b.example".into(),
                "c.example".into()
            ])
        );
    }

    #[test]
    fn implicit_mx_null_mx_and_nxdomain() {
        assert_eq!(
            route("example.org.", &MxAnswer::NoRecords),
            Route::Hosts(vec!["example.org".into()])
        );
        assert_eq!(
            route("x", &MxAnswer::Records(vec![(0, ".".into())])),
            Route::NullMx
        );
        assert_eq!(
            route("x", &MxAnswer::Records(vec![(0, "".into())])),
            Route::NullMx
        );
        assert_eq!(
            route(
                "x",
                &MxAnswer::Records(vec![(0, ".".into()), (10, "mx.x".into())])
            ),
            Route::Hosts(vec!["mx.x".into()])
        );
        assert_eq!(route("x", &MxAnswer::NoSuchDomain), Route::NoSuchDomain);
    }

    #[test]
    fn domains_and_literals() {
        assert_eq!(recipient_domain("Bob@Example.ORG"), "example.org");
        assert_eq!(recipient_domain("\"a@b\"@c.d"), "c.d");
        assert_eq!(
            address_literal("[127.0.0.1]"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(address_literal("[IPv6:::1]"), Some("::1".parse().unwrap()));
        assert_eq!(address_literal("example.org"), None);
        assert_eq!(
            split_host_port("relay.example:2525", 25),
            Some(("relay.example".into(), 2525))
        );
        assert_eq!(
            split_host_port("relay.example", 25),
            Some(("relay.example".into(), 25))
        );
        assert_eq!(split_host_port("[::1]:26", 25), Some(("::1".into(), 26)));
        assert_eq!(split_host_port("relay:x", 25), None);
    }
}
