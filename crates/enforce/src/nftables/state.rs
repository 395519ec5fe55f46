//! What is in the table, per subscriber: the elements each login put there, and a
//! reference count per element (two logins can hold one address while a stale lease
//! awaits its Stop). An element is added when its count goes 0→1 and deleted when it
//! goes 1→0, so an incremental batch only ever deletes what is known to be present.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use policy::{IpNet, Port25State};

use super::ruleset::{Changes, Element, Purpose, Slot};

/// The elements a subscriber puts in the table (DESIGN.md, "Network meaning of the
/// states"): an `opted-out` subscriber's open leases inside the dynamic pools are
/// allowed; a `reinstated` subscriber's static addresses are blocked. Every other
/// state matches its pool's default and needs no element.
pub fn elements_of(
    dynamic_pools: &[IpNet],
    port25: Port25State,
    open_leases: &[IpNet],
    static_ips: &[IpNet],
) -> Vec<Element> {
    let mut out: Vec<Element> = match port25 {
        Port25State::OptedOut => open_leases
            .iter()
            .filter(|l| in_dynamic_pool(dynamic_pools, l))
            .map(|&net| Element {
                purpose: Purpose::Allowed,
                net,
            })
            .collect(),
        Port25State::Reinstated => static_ips
            .iter()
            .map(|&net| Element {
                purpose: Purpose::Blocked,
                net,
            })
            .collect(),
        Port25State::Exempt | Port25State::Blocked | Port25State::OptoutPending => Vec::new(),
    };
    out.sort();
    out.dedup();
    out
}

/// Whether a lease lies in (overlaps) a dynamic pool, where an opt-out opens it.
pub fn in_dynamic_pool(dynamic_pools: &[IpNet], lease: &IpNet) -> bool {
    dynamic_pools.iter().any(|p| p.overlaps(lease))
}

/// rustc's FxHash: the maps below hold a million entries rebuilt on every full load,
/// and their keys come from our own store, so SipHash's flooding resistance buys
/// nothing and costs a good part of the load.
#[derive(Clone, Copy, Default)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        // The multiply mixes low input bits upward only, and hashbrown picks buckets
        // by the low bits: without this rotation (rustc-hash 2 does the same) a
        // million sequential addresses share a few buckets and the full load spends
        // its time probing.
        self.0.rotate_left(26)
    }
}

/// A map with [`FxHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The table's subscriber elements as this process last loaded them.
#[derive(Debug, Default)]
pub struct Enforced {
    by_login: FastMap<String, Vec<Element>>,
    refs: FastMap<Element, u32>,
}

impl Enforced {
    /// Adds one element `login` needs, while reading the store for a full load.
    /// Call [`Enforced::finish`] after the last one.
    pub fn add(&mut self, login: String, e: Element) {
        // Nearly every login holds one element: room for exactly that (a default
        // Vec would allocate four, 70 MB more for a million logins).
        let wanted = self
            .by_login
            .entry(login)
            .or_insert_with(|| Vec::with_capacity(1));
        if !wanted.contains(&e) {
            wanted.push(e);
            *self.refs.entry(e).or_insert(0) += 1;
        }
    }

    /// Restores the order [`Enforced::replace`] relies on after [`Enforced::add`]s.
    pub fn finish(&mut self) {
        for wanted in self.by_login.values_mut().filter(|w| w.len() > 1) {
            wanted.sort_unstable();
        }
    }

    /// Records that `login` now needs exactly `wanted` (sorted, deduplicated, as
    /// [`elements_of`] returns) and says which table elements that adds or deletes.
    /// Collect several logins' changes with [`Enforced::replace_into`].
    pub fn replace(&mut self, login: &str, wanted: Vec<Element>) -> Changes {
        let mut changes = Changes::default();
        self.replace_into(login, wanted, &mut changes);
        changes
    }

    /// Like [`Enforced::replace`], accumulating into `changes`: an element deleted
    /// for one login and added for another in the same batch cancels out.
    pub fn replace_into(&mut self, login: &str, wanted: Vec<Element>, changes: &mut Changes) {
        let old = if wanted.is_empty() {
            self.by_login.remove(login).unwrap_or_default()
        } else {
            self.by_login
                .insert(login.to_string(), wanted.clone())
                .unwrap_or_default()
        };
        for e in old.iter().filter(|e| wanted.binary_search(e).is_err()) {
            if let Some(n) = self.refs.get_mut(e) {
                *n -= 1;
                if *n == 0 {
                    self.refs.remove(e);
                    match changes.add.iter().position(|a| a == e) {
                        Some(i) => drop(changes.add.swap_remove(i)),
                        None => changes.delete.push(*e),
                    }
                }
            }
        }
        for e in wanted.iter().filter(|e| old.binary_search(e).is_err()) {
            let n = self.refs.entry(*e).or_insert(0);
            *n += 1;
            if *n == 1 {
                match changes.delete.iter().position(|d| d == e) {
                    Some(i) => drop(changes.delete.swap_remove(i)),
                    None => changes.add.push(*e),
                }
            }
        }
    }

    /// Every element in the table, once.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.refs.keys()
    }

    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Up to `per_set` known elements of each set holding at most `max_set`
    /// elements, picked from a rotating start, for a presence probe.
    pub fn sample(&self, per_set: usize, max_set: usize, seed: u64) -> Vec<Element> {
        let mut sizes: HashMap<Slot, usize> = HashMap::new();
        for e in self.refs.keys() {
            *sizes.entry(Slot::of(e)).or_insert(0) += 1;
        }
        let len = self.refs.len();
        if len == 0 {
            return Vec::new();
        }
        let mut taken: HashMap<Slot, usize> = HashMap::new();
        let mut out = Vec::new();
        let skip = (seed % len as u64) as usize;
        for e in self.refs.keys().cycle().skip(skip).take(len) {
            let slot = Slot::of(e);
            let n = taken.entry(slot).or_insert(0);
            if *n < per_set && sizes.get(&slot).is_some_and(|&s| s <= max_set) {
                *n += 1;
                out.push(*e);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn allowed(s: &str) -> Element {
        Element {
            purpose: Purpose::Allowed,
            net: net(s),
        }
    }

    #[test]
    fn only_opted_out_and_reinstated_need_elements() {
        let pools = [net("100.64.0.0/10")];
        let leases = [net("100.64.0.9"), net("203.0.113.9")];
        let statics = [net("198.51.100.7")];
        assert_eq!(
            elements_of(&pools, Port25State::OptedOut, &leases, &statics),
            vec![allowed("100.64.0.9")]
        );
        assert_eq!(
            elements_of(&pools, Port25State::Reinstated, &leases, &statics),
            vec![Element {
                purpose: Purpose::Blocked,
                net: net("198.51.100.7")
            }]
        );
        for s in [
            Port25State::Blocked,
            Port25State::OptoutPending,
            Port25State::Exempt,
        ] {
            assert!(elements_of(&pools, s, &leases, &statics).is_empty());
        }
    }

    #[test]
    fn sequential_addresses_spread_over_buckets() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<FxHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..65_536u32)
            .map(|i| {
                let a =
                    std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0)) + i);
                let e = Element {
                    purpose: Purpose::Allowed,
                    net: IpNet::host(a.into()),
                };
                build.hash_one(e) & 0xffff
            })
            .collect();
        // Random hashes would fill about 63 % of the 65,536 buckets.
        assert!(buckets.len() > 30_000, "{} buckets used", buckets.len());
    }

    #[test]
    fn shared_addresses_are_counted() {
        let mut e = Enforced::default();
        let c = e.replace("a", vec![allowed("100.64.0.9")]);
        assert_eq!(c.add, vec![allowed("100.64.0.9")]);
        assert!(
            e.replace("b", vec![allowed("100.64.0.9")]).is_empty(),
            "already present"
        );
        assert!(e.replace("a", vec![]).is_empty(), "b still needs it");
        assert_eq!(e.replace("b", vec![]).delete, vec![allowed("100.64.0.9")]);
        assert!(
            e.replace("b", vec![]).is_empty(),
            "never deletes what is not there"
        );
        assert!(e.is_empty());
    }

    #[test]
    fn moves_within_a_batch_cancel_out() {
        let mut e = Enforced::default();
        e.replace("a", vec![allowed("100.64.0.9")]);
        let mut c = Changes::default();
        e.replace_into("a", vec![allowed("100.64.0.10")], &mut c);
        e.replace_into("b", vec![allowed("100.64.0.9")], &mut c);
        assert_eq!(c.add, vec![allowed("100.64.0.10")]);
        assert!(c.delete.is_empty());
        let mut c = Changes::default();
        e.replace_into("b", vec![], &mut c);
        e.replace_into("c", vec![allowed("100.64.0.9")], &mut c);
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(e.len(), 2);
        assert_eq!(e.sample(5, 100, 7).len(), 2);
        assert!(
            e.sample(5, 1, 7).is_empty(),
            "sets above the limit are not probed"
        );
    }
}
