//! The nftables ruleset: the whole table for one atomic load, as text (`nft -f`) and
//! as JSON (`nft -j -f`, what the full load sends), and the `add element` /
//! `delete element` batches that keep it in step. Pure functions, no I/O.
//!
//! Layout of table `inet <enforce.table>`:
//!
//! - `dynamic4`, `dynamic6`: interval sets of the dynamic pools (static config).
//! - `destinations4`, `destinations6`: interval sets of `enforce.allowed_destinations`.
//! - `allowed*`: sources allowed out on port 25 (open leases inside the dynamic pools
//!   whose holder is `opted-out`); `blocked*`: static addresses of `reinstated`
//!   subscribers (DESIGN.md, "Network meaning of the states").
//! - `generation`: one `mark` element that names the load, so reconcile can tell
//!   cheaply whether the table is still the one this process loaded.
//!
//! Why the `allowed*`/`blocked*` groups are split by prefix length: they change all
//! the time, and an element update in an interval set costs O(set size) (nft reads
//! the whole set to check overlaps), so they must be hash sets. A hash set matches
//! exact keys only, so each common prefix length gets its own hash set, looked up
//! with the source address masked to that length: `/32` for IPv4 and `/128`, `/64`,
//! `/60`, `/56`, `/48` for IPv6 (Framed-IPv6-Prefix and Delegated-IPv6-Prefix are
//! almost always one of these). Any other length goes to a small interval set
//! (`allowed4_other`, `allowed6_other`), correct but slower to update, which real
//! deployments hardly ever touch. Each extra set costs one lookup per port-25 packet,
//! not per packet.

use std::fmt::Write;
use std::net::IpAddr;

use policy::IpNet;

/// Why an address is in the table: it deviates from its pool's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// A dynamic-pool lease of an `opted-out` subscriber: port 25 open.
    Allowed,
    /// A static address of a `reinstated` subscriber: port 25 blocked.
    Blocked,
}

impl Purpose {
    fn set_prefix(self) -> &'static str {
        match self {
            Purpose::Allowed => "allowed",
            Purpose::Blocked => "blocked",
        }
    }
}

/// One set element: an address or prefix with its purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Element {
    pub purpose: Purpose,
    pub net: IpNet,
}

/// Prefix lengths that get a hash set of their own, per family.
const V4_HASHED: [u8; 1] = [32];
const V6_HASHED: [u8; 5] = [128, 64, 60, 56, 48];

/// The set an element lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    purpose: Purpose,
    v4: bool,
    /// `Some(len)`: the hash set of that prefix length; `None`: the interval set.
    hashed: Option<u8>,
}

impl Slot {
    pub fn of(e: &Element) -> Slot {
        let len = e.net.prefix_len();
        let hashed = if e.net.is_ipv4() {
            V4_HASHED.contains(&len)
        } else {
            V6_HASHED.contains(&len)
        };
        Slot {
            purpose: e.purpose,
            v4: e.net.is_ipv4(),
            hashed: hashed.then_some(len),
        }
    }

    /// Every slot, in rule order (blocked before allowed).
    fn all() -> Vec<Slot> {
        let mut out = Vec::new();
        for purpose in [Purpose::Blocked, Purpose::Allowed] {
            for (v4, lens) in [(true, &V4_HASHED[..]), (false, &V6_HASHED[..])] {
                out.extend(lens.iter().map(|&l| Slot {
                    purpose,
                    v4,
                    hashed: Some(l),
                }));
                out.push(Slot {
                    purpose,
                    v4,
                    hashed: None,
                });
            }
        }
        out
    }

    pub fn set_name(&self) -> String {
        let fam = if self.v4 { '4' } else { '6' };
        match self.hashed {
            Some(len) => format!("{}{fam}_{len}", self.purpose.set_prefix()),
            None => format!("{}{fam}_other", self.purpose.set_prefix()),
        }
    }

    fn addr_type(&self) -> &'static str {
        if self.v4 {
            "ipv4_addr"
        } else {
            "ipv6_addr"
        }
    }

    /// The mask applied to the source address before the lookup, for a hash slot
    /// shorter than the family's width.
    fn mask(&self) -> Option<IpAddr> {
        let width = if self.v4 { 32 } else { 128 };
        match self.hashed {
            Some(len) if len < width => Some(mask(self.v4, len)),
            _ => None,
        }
    }
}

/// The netmask of `len` bits, written as an address.
fn mask(v4: bool, len: u8) -> IpAddr {
    // `len` comes from the hash-slot tables, never beyond the family's width.
    let bits: u128 = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from((bits >> 96) as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(bits))
    }
}

/// How the element is written inside its set: the bare network address in a hash
/// set (the rule masks the source), the prefix in an interval set.
fn element_text(out: &mut String, slot: &Slot, net: &IpNet) {
    match (slot.hashed, net.addr()) {
        // A million of these go into a full load; std's formatter is the slow part.
        (Some(_), IpAddr::V4(a)) => write_ipv4(out, a),
        // Writing into a String cannot fail.
        (Some(_), a) => drop(write!(out, "{a}")),
        (None, _) => drop(write!(out, "{net}")),
    }
}

fn write_ipv4(out: &mut String, a: std::net::Ipv4Addr) {
    for (i, octet) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// Everything the table is made of besides the subscriber elements.
#[derive(Clone, Debug)]
pub struct TableSpec<'a> {
    pub table: &'a str,
    pub dynamic_pools: &'a [IpNet],
    pub allowed_destinations: &'a [IpNet],
    /// Reset (true) or drop (false).
    pub reject: bool,
    /// Marks this load, see the module docs.
    pub generation: u32,
}

impl<'a> TableSpec<'a> {
    pub fn from_config(config: &'a config::Config, generation: u32) -> TableSpec<'a> {
        TableSpec {
            table: &config.enforce.table,
            dynamic_pools: &config.network.dynamic_pools,
            allowed_destinations: &config.enforce.allowed_destinations,
            reject: config.enforce.reject,
            generation,
        }
    }
}

/// Names of the counters in the table, in the order of their rules.
pub const COUNTERS: [&str; 4] = [
    "to_allowed_destination",
    "blocked_static",
    "allowed_opted_out",
    "blocked_dynamic",
];

/// What the table holds, shared by the text and JSON renderings: every set with its
/// elements (sorted, deduplicated, outermost prefixes for interval sets) and the
/// rules of chain `port25` in order.
struct Layout {
    /// (name, slot, elements): the static sets first, then one per subscriber slot.
    sets: Vec<(String, Slot, Vec<IpNet>)>,
    rules: Vec<Rule>,
}

/// One rule of chain `port25`: `<proto> <field> [& mask] @set counter name C verdict`.
struct Rule {
    v4: bool,
    daddr: bool,
    mask: Option<IpAddr>,
    set: String,
    counter: &'static str,
    verdict: Verdict,
}

#[derive(Clone, Copy)]
enum Verdict {
    Accept,
    Drop,
    Reset,
}

fn layout<'e>(spec: &TableSpec<'_>, elements: impl IntoIterator<Item = &'e Element>) -> Layout {
    let mut by_slot: std::collections::BTreeMap<Slot, Vec<IpNet>> =
        Slot::all().into_iter().map(|s| (s, Vec::new())).collect();
    for e in elements {
        by_slot.entry(Slot::of(e)).or_default().push(e.net);
    }
    for (slot, nets) in by_slot.iter_mut() {
        // Sorted for a stable, readable file; deduplicated because a hash set would
        // take a repeat but an interval set refuses overlaps.
        // One family per slot, so IpNet's order is numeric order.
        nets.sort_unstable();
        nets.dedup();
        if slot.hashed.is_none() {
            *nets = outermost(std::mem::take(nets));
        }
    }
    let blocking = if spec.reject {
        Verdict::Reset
    } else {
        Verdict::Drop
    };
    let mut sets = Vec::new();
    for (name, v4, nets) in [
        ("dynamic4", true, spec.dynamic_pools),
        ("dynamic6", false, spec.dynamic_pools),
        ("destinations4", true, spec.allowed_destinations),
        ("destinations6", false, spec.allowed_destinations),
    ] {
        let nets: Vec<IpNet> = nets.iter().filter(|n| n.is_ipv4() == v4).copied().collect();
        let slot = Slot {
            purpose: Purpose::Allowed,
            v4,
            hashed: None,
        };
        sets.push((name.to_string(), slot, outermost(nets)));
    }
    let rule = |v4: bool, daddr: bool, mask, set: String, counter, verdict| Rule {
        v4,
        daddr,
        mask,
        set,
        counter,
        verdict,
    };
    let mut rules = vec![
        rule(
            true,
            true,
            None,
            "destinations4".into(),
            COUNTERS[0],
            Verdict::Accept,
        ),
        rule(
            false,
            true,
            None,
            "destinations6".into(),
            COUNTERS[0],
            Verdict::Accept,
        ),
    ];
    // Blocked statics before allowed sources, both before the pool rules.
    for purpose in [Purpose::Blocked, Purpose::Allowed] {
        for slot in by_slot.keys().filter(|s| s.purpose == purpose) {
            let (counter, verdict) = match purpose {
                Purpose::Blocked => (COUNTERS[1], blocking),
                Purpose::Allowed => (COUNTERS[2], Verdict::Accept),
            };
            rules.push(rule(
                slot.v4,
                false,
                slot.mask(),
                slot.set_name(),
                counter,
                verdict,
            ));
        }
    }
    rules.push(rule(
        true,
        false,
        None,
        "dynamic4".into(),
        COUNTERS[3],
        blocking,
    ));
    rules.push(rule(
        false,
        false,
        None,
        "dynamic6".into(),
        COUNTERS[3],
        blocking,
    ));
    sets.extend(
        by_slot
            .into_iter()
            .map(|(slot, nets)| (slot.set_name(), slot, nets)),
    );
    Layout { sets, rules }
}

/// The complete ruleset: creates the table if absent, deletes it and defines it anew,
/// so `nft -f` replaces it in one transaction and the router never runs without it.
pub fn render_table<'e>(
    spec: &TableSpec<'_>,
    elements: impl IntoIterator<Item = &'e Element>,
) -> String {
    let layout = layout(spec, elements);
    let size: usize = layout.sets.iter().map(|s| s.2.len()).sum();
    let mut out = String::with_capacity(4096 + size * 20);
    let t = spec.table;
    let _ = writeln!(
        out,
        "# portcullis port-25 enforcement; load with `nft -f` (one transaction)."
    );
    let _ = writeln!(
        out,
        "table inet {t} {{}}\ndelete table inet {t}\ntable inet {t} {{"
    );
    for c in COUNTERS {
        let _ = writeln!(out, "\tcounter {c} {{\n\t}}");
    }
    let _ = writeln!(
        out,
        "\tset generation {{\n\t\ttype mark\n\t\telements = {{ {:#010x} }}\n\t}}",
        spec.generation
    );
    for (name, slot, nets) in &layout.sets {
        write_set(&mut out, name, slot, nets);
    }
    let _ = writeln!(
        out,
        "\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\t\ttcp dport 25 jump port25\n\t}}"
    );
    let _ = writeln!(out, "\tchain port25 {{");
    for r in &layout.rules {
        let proto = if r.v4 { "ip" } else { "ip6" };
        let field = if r.daddr { "daddr" } else { "saddr" };
        let mask = r.mask.map(|m| format!(" & {m}")).unwrap_or_default();
        let verdict = match r.verdict {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Reset => "reject with tcp reset",
        };
        let _ = writeln!(
            out,
            "\t\t{proto} {field}{mask} @{} counter name \"{}\" {verdict}",
            r.set, r.counter
        );
    }
    let _ = writeln!(out, "\t}}\n}}");
    out
}

/// [`render_table`] as nftables JSON, for `nft -j -f`: the same table, commands
/// and transaction. The full load uses this form because nft 1.0.6 takes it in
/// about a third less time than the text form for a million elements (its JSON
/// reader skips the scanner and grammar), measured in `benches/nft.rs`.
pub fn render_table_json<'e>(
    spec: &TableSpec<'_>,
    elements: impl IntoIterator<Item = &'e Element>,
) -> String {
    let layout = layout(spec, elements);
    let size: usize = layout.sets.iter().map(|s| s.2.len()).sum();
    let mut out = String::with_capacity(4096 + size * 20);
    // Table names are validated identifiers ([a-z0-9_]), so they need no escaping.
    let t = spec.table;
    let obj = |kind: &str, body: &str| {
        format!("{{\"add\":{{\"{kind}\":{{\"family\":\"inet\",\"table\":\"{t}\"{body}}}}}}}")
    };
    out.push_str("{\"nftables\":[");
    let _ = write!(
        out,
        "{{\"add\":{{\"table\":{{\"family\":\"inet\",\"name\":\"{t}\"}}}}}},\
         {{\"delete\":{{\"table\":{{\"family\":\"inet\",\"name\":\"{t}\"}}}}}},\
         {{\"add\":{{\"table\":{{\"family\":\"inet\",\"name\":\"{t}\"}}}}}}"
    );
    for c in COUNTERS {
        out.push(',');
        out.push_str(&obj("counter", &format!(",\"name\":\"{c}\"")));
    }
    out.push(',');
    out.push_str(&obj(
        "set",
        &format!(
            ",\"name\":\"generation\",\"type\":\"mark\",\"elem\":[{}]",
            spec.generation
        ),
    ));
    for (name, slot, nets) in &layout.sets {
        let _ = write!(
            out,
            ",{{\"add\":{{\"set\":{{\"family\":\"inet\",\"table\":\"{t}\",\"name\":\"{name}\",\"type\":\"{}\"",
            slot.addr_type()
        );
        match slot.hashed {
            None => out.push_str(",\"flags\":[\"interval\"]"),
            Some(_) => drop(write!(out, ",\"size\":{}", hash_size(nets.len()))),
        }
        if !nets.is_empty() {
            out.push_str(",\"elem\":[");
            for (i, net) in nets.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let full = net.prefix_len() == if net.is_ipv4() { 32 } else { 128 };
                if slot.hashed.is_some() || full {
                    out.push('"');
                    element_text(&mut out, slot, net);
                    out.push('"');
                } else {
                    let _ = write!(
                        out,
                        "{{\"prefix\":{{\"addr\":\"{}\",\"len\":{}}}}}",
                        net.addr(),
                        net.prefix_len()
                    );
                }
            }
            out.push(']');
        }
        out.push_str("}}}");
    }
    out.push(',');
    out.push_str(&obj(
        "chain",
        ",\"name\":\"forward\",\"type\":\"filter\",\"hook\":\"forward\",\"prio\":0,\"policy\":\"accept\"",
    ));
    out.push(',');
    out.push_str(&obj("chain", ",\"name\":\"port25\""));
    out.push(',');
    out.push_str(&obj(
        "rule",
        ",\"chain\":\"forward\",\"expr\":[{\"match\":{\"op\":\"==\",\"left\":{\"payload\":{\"protocol\":\"tcp\",\"field\":\"dport\"}},\"right\":25}},{\"jump\":{\"target\":\"port25\"}}]",
    ));
    for r in &layout.rules {
        let payload = format!(
            "{{\"payload\":{{\"protocol\":\"{}\",\"field\":\"{}\"}}}}",
            if r.v4 { "ip" } else { "ip6" },
            if r.daddr { "daddr" } else { "saddr" }
        );
        let left = match r.mask {
            Some(m) => format!("{{\"&\":[{payload},\"{m}\"]}}"),
            None => payload,
        };
        let verdict = match r.verdict {
            Verdict::Accept => "{\"accept\":null}",
            Verdict::Drop => "{\"drop\":null}",
            Verdict::Reset => "{\"reject\":{\"type\":\"tcp reset\"}}",
        };
        out.push(',');
        out.push_str(&obj(
            "rule",
            &format!(
                ",\"chain\":\"port25\",\"expr\":[{{\"match\":{{\"op\":\"==\",\"left\":{left},\"right\":\"@{}\"}}}},{{\"counter\":\"{}\"}},{verdict}]",
                r.set, r.counter
            ),
        ));
    }
    out.push_str("]}\n");
    out
}

fn write_set(out: &mut String, name: &str, slot: &Slot, nets: &[IpNet]) {
    let _ = write!(out, "\tset {name} {{\n\t\ttype {}\n", slot.addr_type());
    match slot.hashed {
        None => out.push_str("\t\tflags interval\n"),
        // A declared size lets the kernel allocate the hash once: a million-element
        // load takes about half the time of a set that grows as it goes. Headroom
        // for the live updates; an add beyond it fails the batch, and the full
        // reload that follows sizes the set anew.
        Some(_) => drop(writeln!(out, "\t\tsize {}", hash_size(nets.len()))),
    }
    if !nets.is_empty() {
        out.push_str("\t\telements = {");
        for (i, net) in nets.iter().enumerate() {
            out.push_str(if i == 0 {
                " "
            } else if i % 8 == 0 {
                ",\n\t\t\t"
            } else {
                ", "
            });
            element_text(out, slot, net);
        }
        out.push_str(" }\n");
    }
    out.push_str("\t}\n");
}

/// Room for twice the elements loaded, at least 65536, as a power of two.
fn hash_size(elements: usize) -> usize {
    elements.saturating_mul(2).max(65_536).next_power_of_two()
}

/// Drops prefixes contained in another: an interval set refuses overlapping elements,
/// and the outer prefix already matches everything the inner one would.
fn outermost(nets: Vec<IpNet>) -> Vec<IpNet> {
    let mut ranges: Vec<(u128, u128, IpNet)> = nets
        .iter()
        .map(|n| (n.key_range().0, n.key_range().1, *n))
        .collect();
    // By start, widest first, so a contained prefix always follows its container.
    ranges.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = Vec::with_capacity(ranges.len());
    let mut reach: Option<u128> = None;
    for (_, hi, net) in ranges {
        if reach.is_some_and(|r| hi <= r) {
            continue;
        }
        reach = Some(hi);
        out.push(net);
    }
    out
}

/// What one incremental update changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub add: Vec<Element>,
    pub delete: Vec<Element>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.delete.is_empty()
    }
}

/// Elements per `add element` line: keeps lines short without many statements.
const ELEMENTS_PER_LINE: usize = 1000;

/// The `nft -f` input for `changes`: one transaction, deletes first.
pub fn render_changes(table: &str, changes: &Changes) -> String {
    let mut out = String::with_capacity(64 + (changes.add.len() + changes.delete.len()) * 24);
    for (verb, elements) in [("delete", &changes.delete), ("add", &changes.add)] {
        let mut by_slot: std::collections::BTreeMap<Slot, Vec<IpNet>> =
            std::collections::BTreeMap::new();
        for e in elements.iter() {
            by_slot.entry(Slot::of(e)).or_default().push(e.net);
        }
        for (slot, nets) in by_slot {
            for chunk in nets.chunks(ELEMENTS_PER_LINE) {
                let _ = write!(out, "{verb} element inet {table} {} {{ ", slot.set_name());
                for (i, net) in chunk.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    element_text(&mut out, &slot, net);
                }
                out.push_str(" }\n");
            }
        }
    }
    out
}

/// `get element` statements, one per set, that fail unless every one of `elements`
/// is in the table. nft 1.0 reads the whole set to answer one, so callers keep the
/// probed sets small (see `sync`).
pub fn render_probe(table: &str, elements: &[Element]) -> String {
    let mut by_slot: std::collections::BTreeMap<Slot, Vec<IpNet>> =
        std::collections::BTreeMap::new();
    for e in elements {
        by_slot.entry(Slot::of(e)).or_default().push(e.net);
    }
    let mut out = String::new();
    for (slot, nets) in by_slot {
        let _ = write!(out, "get element inet {table} {} {{ ", slot.set_name());
        for (i, net) in nets.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            element_text(&mut out, &slot, net);
        }
        out.push_str(" }\n");
    }
    out
}

/// The dynamic pools as an rbldnsd `ip4set` zone file (a policy block list), so mail
/// receivers can refuse direct-to-MX mail from them. `ip4set` holds IPv4 only; the
/// IPv6 pools are listed as comments here and served from [`render_pbl_ip6trie`].
pub fn render_pbl(dynamic_pools: &[IpNet]) -> String {
    let mut out = String::from(
        "# portcullis policy block list (rbldnsd ip4set): the ISP's dynamic address pools.\n\
         # Direct-to-MX mail from these addresses should be refused; subscribers send\n\
         # through the ISP's authenticated submission server (587/465).\n",
    );
    for p in dynamic_pools.iter().filter(|p| !p.is_ipv4()) {
        let _ = writeln!(
            out,
            "# IPv6 pool {p}: not representable in ip4set, see `render_pbl_ip6trie`"
        );
    }
    out.push_str(PBL_REASON);
    for p in dynamic_pools.iter().filter(|p| p.is_ipv4()) {
        let _ = writeln!(out, "{p}");
    }
    out
}

/// The IPv6 dynamic pools as an rbldnsd `ip6trie` zone file (same reason line).
pub fn render_pbl_ip6trie(dynamic_pools: &[IpNet]) -> String {
    let mut out = String::from(
        "# portcullis policy block list (rbldnsd ip6trie): the ISP's dynamic IPv6 pools.\n",
    );
    out.push_str(PBL_REASON);
    for p in dynamic_pools.iter().filter(|p| !p.is_ipv4()) {
        // ip6trie wants a prefix length even for a single address.
        let _ = writeln!(out, "{}/{}", p.addr(), p.prefix_len());
    }
    out
}

const PBL_REASON: &str = ":127.0.0.10:Dynamic address; send via the ISP's submission server\n";

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

    fn spec<'a>(pools: &'a [IpNet], dest: &'a [IpNet], reject: bool) -> TableSpec<'a> {
        TableSpec {
            table: "portcullis",
            dynamic_pools: pools,
            allowed_destinations: dest,
            reject,
            generation: 0xabc,
        }
    }

    #[test]
    fn slots_by_family_and_length() {
        assert_eq!(Slot::of(&allowed("100.64.0.9")).set_name(), "allowed4_32");
        assert_eq!(
            Slot::of(&allowed("100.64.0.8/29")).set_name(),
            "allowed4_other"
        );
        assert_eq!(
            Slot::of(&allowed("2001:db8:100::/56")).set_name(),
            "allowed6_56"
        );
        assert_eq!(
            Slot::of(&allowed("2001:db8:100::/62")).set_name(),
            "allowed6_other"
        );
        let b = Element {
            purpose: Purpose::Blocked,
            net: net("198.51.100.7"),
        };
        assert_eq!(Slot::of(&b).set_name(), "blocked4_32");
    }

    #[test]
    fn masked_lookup_for_shorter_hash_slots() {
        let text = render_table(&spec(&[], &[], true), &[]);
        assert!(
            text.contains("\t\tip6 saddr & ffff:ffff:ffff:ff00:: @allowed6_56 counter name \"allowed_opted_out\" accept\n"),
            "{text}"
        );
        assert!(
            text.contains("\t\tip saddr @allowed4_32 counter name \"allowed_opted_out\" accept\n"),
            "{text}"
        );
        assert_eq!(Slot::of(&allowed("100.64.0.9")).mask(), None);
        assert_eq!(mask(true, 24).to_string(), "255.255.255.0");
    }

    #[test]
    fn table_is_replaced_in_one_file() {
        let pools = [net("100.64.0.0/10"), net("2001:db8:8000::/33")];
        let dest = [net("192.0.2.25")];
        let els = [
            allowed("100.64.0.9"),
            allowed("2001:db8:8000:100::/56"),
            allowed("100.64.0.9"),
        ];
        let text = render_table(&spec(&pools, &dest, true), &els);
        let create = text.find("table inet portcullis {}").unwrap();
        let delete = text.find("delete table inet portcullis").unwrap();
        let define = text.find("table inet portcullis {\n").unwrap();
        assert!(create < delete && delete < define, "{text}");
        assert!(text.contains("elements = { 0x00000abc }"), "{text}");
        assert!(text.contains("set dynamic4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 100.64.0.0/10 }"), "{text}");
        assert!(text.contains("elements = { 2001:db8:8000::/33 }"), "{text}");
        assert!(
            text.contains("set allowed4_32 {\n\t\ttype ipv4_addr\n\t\tsize 65536\n\t\telements = { 100.64.0.9 }\n"),
            "duplicates merged: {text}"
        );
        assert!(
            text.contains("elements = { 2001:db8:8000:100:: }"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr @destinations4 counter name \"to_allowed_destination\" accept")
        );
        assert!(text
            .contains("ip saddr @dynamic4 counter name \"blocked_dynamic\" reject with tcp reset"));
        assert!(text.contains(
            "ip6 saddr @dynamic6 counter name \"blocked_dynamic\" reject with tcp reset"
        ));
        // Blocked statics come before allowed sources, and both before the pool rule.
        let blocked = text.find("@blocked4_32 counter").unwrap();
        let allowed_at = text.find("@allowed4_32 counter").unwrap();
        let pool = text.find("@dynamic4 counter").unwrap();
        assert!(blocked < allowed_at && allowed_at < pool);
    }

    #[test]
    fn json_rendering_is_the_same_table() {
        let pools = [net("100.64.0.0/10"), net("2001:db8:8000::/33")];
        let dest = [net("192.0.2.25"), net("192.0.2.0/28")];
        let els = [
            allowed("100.64.0.9"),
            allowed("100.64.0.9"),
            allowed("100.64.1.0/29"),
            allowed("2001:db8:8000:100::/56"),
        ];
        let json = render_table_json(&spec(&pools, &dest, true), &els);
        let doc: serde_json::Value = serde_json::from_str(&json).expect(&json);
        let cmds = doc["nftables"].as_array().unwrap();
        assert_eq!(cmds[0]["add"]["table"]["name"], "portcullis");
        assert_eq!(cmds[1]["delete"]["table"]["name"], "portcullis");
        let set = |name: &str| {
            cmds.iter()
                .find(|c| c["add"]["set"]["name"] == name)
                .map(|c| c["add"]["set"].clone())
                .unwrap_or_else(|| panic!("no set {name}: {json}"))
        };
        assert_eq!(set("generation")["elem"], serde_json::json!([0xabc]));
        assert_eq!(
            set("allowed4_32")["elem"],
            serde_json::json!(["100.64.0.9"])
        );
        assert_eq!(set("allowed4_32")["size"], 65536);
        assert_eq!(
            set("allowed4_other")["elem"],
            serde_json::json!([{"prefix": {"addr": "100.64.1.0", "len": 29}}])
        );
        assert_eq!(
            set("allowed4_other")["flags"],
            serde_json::json!(["interval"])
        );
        assert_eq!(
            set("destinations4")["elem"],
            serde_json::json!([{"prefix": {"addr": "192.0.2.0", "len": 28}}, "192.0.2.25"])
        );
        assert_eq!(
            set("allowed6_56")["elem"],
            serde_json::json!(["2001:db8:8000:100::"])
        );
        let rules: Vec<&serde_json::Value> = cmds
            .iter()
            .filter(|c| c["add"]["rule"]["chain"] == "port25")
            .map(|c| &c["add"]["rule"]["expr"])
            .collect();
        let text = render_table(&spec(&pools, &dest, true), &els);
        assert_eq!(rules.len(), text.matches(" counter name ").count());
        let masked = rules
            .iter()
            .find(|r| r[0]["match"]["right"] == "@allowed6_56")
            .unwrap();
        assert_eq!(masked[0]["match"]["left"]["&"][1], "ffff:ffff:ffff:ff00::");
        assert_eq!(masked[1]["counter"], "allowed_opted_out");
        let last = rules.last().unwrap();
        assert_eq!(last[0]["match"]["right"], "@dynamic6");
        assert_eq!(last[2]["reject"]["type"], "tcp reset");
    }

    #[test]
    fn drop_instead_of_reset() {
        let text = render_table(&spec(&[], &[], false), &[]);
        assert!(!text.contains("reject"), "{text}");
        assert!(text.contains("ip saddr @dynamic4 counter name \"blocked_dynamic\" drop"));
    }

    #[test]
    fn interval_sets_keep_only_outermost_prefixes() {
        let els = [
            allowed("2001:db8::/62"),
            allowed("2001:db8::/63"),
            allowed("2001:db8:0:8::/62"),
        ];
        let text = render_table(&spec(&[], &[], true), &els);
        assert!(
            text.contains("elements = { 2001:db8::/62, 2001:db8:0:8::/62 }"),
            "{text}"
        );
    }

    #[test]
    fn changes_delete_before_add() {
        let c = Changes {
            add: vec![allowed("100.64.0.1"), allowed("2001:db8::/64")],
            delete: vec![allowed("100.64.0.2")],
        };
        assert_eq!(
            render_changes("t", &c),
            "delete element inet t allowed4_32 { 100.64.0.2 }\n\
             add element inet t allowed6_64 { 2001:db8:: }\n\
             add element inet t allowed4_32 { 100.64.0.1 }\n"
        );
        assert_eq!(
            render_probe(
                "t",
                &[
                    allowed("100.64.0.8/30"),
                    allowed("100.64.0.1"),
                    allowed("100.64.0.2")
                ]
            ),
            "get element inet t allowed4_other { 100.64.0.8/30 }\n\
             get element inet t allowed4_32 { 100.64.0.1, 100.64.0.2 }\n"
        );
    }

    #[test]
    fn ipv4_text_matches_std() {
        for a in ["0.0.0.0", "100.64.0.9", "10.200.30.255", "1.20.100.9"] {
            let mut out = String::new();
            write_ipv4(&mut out, a.parse().unwrap());
            assert_eq!(out, a);
        }
    }

    #[test]
    fn pbl_lists_dynamic_pools() {
        let pools = [net("100.64.0.0/10"), net("2001:db8:8000::/33")];
        let text = render_pbl(&pools);
        assert!(text.starts_with("# "));
        assert!(text.contains("\n:127.0.0.10:Dynamic address; send via the ISP's submission server\n100.64.0.0/10\n"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("2001")), "{text}");
        assert!(render_pbl_ip6trie(&pools).ends_with("\n2001:db8:8000::/33\n"));
    }
}
