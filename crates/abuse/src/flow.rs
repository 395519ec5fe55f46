//! Flow export decoders — NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) —
//! and the port-25 fan-out counter.
//!
//! Pure: a datagram and the exporter's address in, [`FlowRecord`]s out; no sockets
//! (the UDP layer is `collector`). Templates (v9, IPFIX) are kept per exporter address
//! and source id / observation domain. Garbage and truncated datagrams are refused
//! with a [`FlowError`] and counted in [`DecoderStats`]; data sets whose template has
//! not arrived yet are skipped and counted.
//!
//! [`FanOutCounter`] counts, per source address and tumbling window, the flows and
//! distinct destinations on TCP port 25, and reports a [`FanOut`] once per source and
//! window when the destinations reach the threshold.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use policy::Timestamp;
use serde::Serialize;

/// One flow as the exporters describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol (6 = TCP).
    pub proto: u8,
    pub packets: u64,
    pub octets: u64,
}

impl FlowRecord {
    /// TCP to port 25: an attempt to deliver mail directly.
    pub fn is_smtp(&self) -> bool {
        self.proto == 6 && self.dst_port == 25
    }
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// Shorter than its header or its declared contents.
    #[error("truncated {0} datagram")]
    Truncated(&'static str),
    /// Not NetFlow v5/v9 or IPFIX.
    #[error("unknown flow export version {0} (expected 5, 9 or 10)")]
    UnknownVersion(u16),
    /// A set or template that makes no sense (zero length, too many fields).
    #[error("malformed {0} datagram: {1}")]
    Malformed(&'static str, &'static str),
}

/// Counters of the decoder, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecoderStats {
    pub datagrams: u64,
    pub records: u64,
    /// Datagrams refused (garbage, truncated, unknown version).
    pub refused: u64,
    pub templates: u64,
    /// Data sets skipped because their template is unknown (yet).
    pub missing_template: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TemplateKey {
    exporter: SocketAddr,
    domain: u32,
    id: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SrcV4,
    DstV4,
    SrcV6,
    DstV6,
    SrcPort,
    DstPort,
    Proto,
    Packets,
    Octets,
    Other,
}

fn kind_of(id: u16) -> Kind {
    match id {
        8 => Kind::SrcV4,
        12 => Kind::DstV4,
        27 => Kind::SrcV6,
        28 => Kind::DstV6,
        7 => Kind::SrcPort,
        11 => Kind::DstPort,
        4 => Kind::Proto,
        2 => Kind::Packets,
        1 => Kind::Octets,
        _ => Kind::Other,
    }
}

/// A template compiled for decoding: field kinds and lengths (65535 = variable).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Template {
    fields: Vec<(Kind, u16)>,
    /// Record length when every field has a fixed length.
    fixed_len: Option<usize>,
}

const MAX_FIELDS: usize = 512;

/// The decoder and its templates.
#[derive(Debug, Default)]
pub struct Decoder {
    templates: HashMap<TemplateKey, Template>,
    pub stats: DecoderStats,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// How many templates are known.
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    /// Decodes one datagram from `exporter`, calling `each` per flow record. On an
    /// error, records decoded before the bad part have been passed on.
    pub fn decode<F: FnMut(&FlowRecord)>(
        &mut self,
        exporter: SocketAddr,
        data: &[u8],
        mut each: F,
    ) -> Result<usize, FlowError> {
        self.stats.datagrams += 1;
        let result = match be16(data, 0) {
            Some(5) => decode_v5(data, &mut each),
            Some(9) => self.decode_v9(exporter, data, &mut each),
            Some(10) => self.decode_ipfix(exporter, data, &mut each),
            Some(v) => Err(FlowError::UnknownVersion(v)),
            None => Err(FlowError::Truncated("flow")),
        };
        match &result {
            Ok(n) => self.stats.records += *n as u64,
            Err(_) => self.stats.refused += 1,
        }
        result
    }

    fn decode_v9<F: FnMut(&FlowRecord)>(
        &mut self,
        exporter: SocketAddr,
        data: &[u8],
        each: &mut F,
    ) -> Result<usize, FlowError> {
        const W: &str = "NetFlow v9";
        let domain = be32(data, 16).ok_or(FlowError::Truncated(W))?;
        self.sets(exporter, domain, &data[20..], false, each)
    }

    fn decode_ipfix<F: FnMut(&FlowRecord)>(
        &mut self,
        exporter: SocketAddr,
        data: &[u8],
        each: &mut F,
    ) -> Result<usize, FlowError> {
        const W: &str = "IPFIX";
        let len = usize::from(be16(data, 2).ok_or(FlowError::Truncated(W))?);
        let domain = be32(data, 12).ok_or(FlowError::Truncated(W))?;
        if len < 16 {
            return Err(FlowError::Malformed(W, "message length below header size"));
        }
        let body = data.get(16..len).ok_or(FlowError::Truncated(W))?;
        self.sets(exporter, domain, body, true, each)
    }

    /// The sets of a v9 or IPFIX message.
    fn sets<F: FnMut(&FlowRecord)>(
        &mut self,
        exporter: SocketAddr,
        domain: u32,
        mut body: &[u8],
        ipfix: bool,
        each: &mut F,
    ) -> Result<usize, FlowError> {
        let w = if ipfix { "IPFIX" } else { "NetFlow v9" };
        let (template_set, options_set) = if ipfix { (2, 3) } else { (0, 1) };
        let mut n = 0;
        while body.len() >= 4 {
            let (Some(id), Some(len)) = (be16(body, 0), be16(body, 2)) else {
                break;
            };
            let len = usize::from(len);
            if len < 4 {
                return Err(FlowError::Malformed(w, "set shorter than its header"));
            }
            let set = body.get(4..len).ok_or(FlowError::Truncated(w))?;
            body = &body[len..];
            if id == template_set {
                self.templates_in(exporter, domain, set, ipfix)?;
            } else if id == options_set {
                // Options templates describe exporter metadata: not flows.
            } else if id >= 256 {
                let key = TemplateKey {
                    exporter,
                    domain,
                    id,
                };
                match self.templates.get(&key) {
                    Some(t) => n += data_set(t, set, each),
                    None => self.stats.missing_template += 1,
                }
            }
        }
        Ok(n)
    }

    fn templates_in(
        &mut self,
        exporter: SocketAddr,
        domain: u32,
        mut set: &[u8],
        ipfix: bool,
    ) -> Result<(), FlowError> {
        let w = if ipfix { "IPFIX" } else { "NetFlow v9" };
        while set.len() >= 4 {
            let (Some(id), Some(count)) = (be16(set, 0), be16(set, 2)) else {
                break;
            };
            let count = usize::from(count);
            if id < 256 {
                // Padding at the end of the set, or garbage: stop here.
                break;
            }
            if count > MAX_FIELDS {
                return Err(FlowError::Malformed(w, "template with too many fields"));
            }
            let mut pos = 4;
            let mut fields = Vec::with_capacity(count);
            for _ in 0..count {
                let ty = be16(set, pos).ok_or(FlowError::Truncated(w))?;
                let len = be16(set, pos + 2).ok_or(FlowError::Truncated(w))?;
                pos += 4;
                let enterprise = ipfix && ty & 0x8000 != 0;
                if enterprise {
                    pos += 4;
                    if set.len() < pos {
                        return Err(FlowError::Truncated(w));
                    }
                }
                let kind = if enterprise { Kind::Other } else { kind_of(ty) };
                if !ipfix && len == 65535 {
                    return Err(FlowError::Malformed(w, "variable-length field in v9"));
                }
                fields.push((kind, len));
            }
            let fixed_len = if fields.iter().any(|(_, l)| *l == 65535) {
                None
            } else {
                Some(fields.iter().map(|(_, l)| usize::from(*l)).sum())
            };
            if fixed_len == Some(0) {
                return Err(FlowError::Malformed(w, "template of zero-length records"));
            }
            self.templates.insert(
                TemplateKey {
                    exporter,
                    domain,
                    id,
                },
                Template { fields, fixed_len },
            );
            self.stats.templates += 1;
            set = &set[pos.min(set.len())..];
        }
        Ok(())
    }
}

/// The records of one data set; trailing padding is ignored.
fn data_set<F: FnMut(&FlowRecord)>(t: &Template, mut set: &[u8], each: &mut F) -> usize {
    let mut n = 0;
    loop {
        let used = match t.fixed_len {
            Some(len) if set.len() >= len => {
                each(&record(&t.fields, &set[..len]).0);
                len
            }
            Some(_) => break,
            None => match variable_record(&t.fields, set) {
                Some((r, used)) => {
                    each(&r);
                    used
                }
                None => break,
            },
        };
        n += 1;
        set = &set[used..];
    }
    n
}

fn empty_record() -> FlowRecord {
    FlowRecord {
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        src_port: 0,
        dst_port: 0,
        proto: 0,
        packets: 0,
        octets: 0,
    }
}

/// A fixed-length record (the caller checked the length).
fn record(fields: &[(Kind, u16)], data: &[u8]) -> (FlowRecord, usize) {
    let mut r = empty_record();
    let mut pos = 0;
    for (kind, len) in fields {
        let len = usize::from(*len);
        if let Some(v) = data.get(pos..pos + len) {
            apply(&mut r, *kind, v);
        }
        pos += len;
    }
    (r, pos)
}

/// An IPFIX record with variable-length fields (RFC 7011 section 7).
fn variable_record(fields: &[(Kind, u16)], data: &[u8]) -> Option<(FlowRecord, usize)> {
    let mut r = empty_record();
    let mut pos = 0;
    for (kind, len) in fields {
        let len = if *len == 65535 {
            let first = *data.get(pos)?;
            pos += 1;
            if first == 255 {
                let l = be16(data, pos)?;
                pos += 2;
                usize::from(l)
            } else {
                usize::from(first)
            }
        } else {
            usize::from(*len)
        };
        let v = data.get(pos..pos + len)?;
        apply(&mut r, *kind, v);
        pos += len;
    }
    (pos > 0).then_some((r, pos))
}

#[inline]
fn apply(r: &mut FlowRecord, kind: Kind, v: &[u8]) {
    match kind {
        Kind::SrcV4 if v.len() == 4 => r.src = IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
        Kind::DstV4 if v.len() == 4 => r.dst = IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
        Kind::SrcV6 if v.len() == 16 => r.src = IpAddr::V6(v6(v)),
        Kind::DstV6 if v.len() == 16 => r.dst = IpAddr::V6(v6(v)),
        Kind::SrcPort => r.src_port = uint(v) as u16,
        Kind::DstPort => r.dst_port = uint(v) as u16,
        Kind::Proto => r.proto = uint(v) as u8,
        Kind::Packets => r.packets = uint(v),
        Kind::Octets => r.octets = uint(v),
        _ => {}
    }
}

fn v6(v: &[u8]) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b.copy_from_slice(v);
    Ipv6Addr::from(b)
}

/// Big-endian unsigned of 1 to 8 bytes (reduced-size encoding); longer: the low 8.
#[inline]
fn uint(v: &[u8]) -> u64 {
    let v = if v.len() > 8 { &v[v.len() - 8..] } else { v };
    v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

/// NetFlow v5: a 24-byte header and `count` records of 48 bytes.
fn decode_v5<F: FnMut(&FlowRecord)>(data: &[u8], each: &mut F) -> Result<usize, FlowError> {
    const W: &str = "NetFlow v5";
    let count = usize::from(be16(data, 2).ok_or(FlowError::Truncated(W))?);
    if count == 0 || count > 30 {
        return Err(FlowError::Malformed(W, "record count outside 1-30"));
    }
    if data.len() < 24 + count * 48 {
        return Err(FlowError::Truncated(W));
    }
    for i in 0..count {
        let r = &data[24 + i * 48..24 + (i + 1) * 48];
        each(&FlowRecord {
            src: IpAddr::V4(Ipv4Addr::new(r[0], r[1], r[2], r[3])),
            dst: IpAddr::V4(Ipv4Addr::new(r[4], r[5], r[6], r[7])),
            packets: uint(&r[16..20]),
            octets: uint(&r[20..24]),
            src_port: u16::from_be_bytes([r[32], r[33]]),
            dst_port: u16::from_be_bytes([r[34], r[35]]),
            proto: r[38],
        });
    }
    Ok(count)
}

/// A source that reached the fan-out threshold in a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FanOut {
    pub src: IpAddr,
    /// Distinct port-25 destinations so far in the window.
    pub destinations: u32,
    /// Port-25 flows so far in the window.
    pub flows: u64,
    pub window_start: Timestamp,
}

#[derive(Debug, Default)]
struct SourceWindow {
    flows: u64,
    destinations: HashSet<IpAddr>,
    alerted: bool,
}

/// Counts port-25 flows and distinct destinations per source in tumbling windows.
#[derive(Debug)]
pub struct FanOutCounter {
    window: i64,
    threshold: u32,
    window_start: i64,
    sources: HashMap<IpAddr, SourceWindow>,
}

impl FanOutCounter {
    pub fn new(window: std::time::Duration, threshold: u32) -> FanOutCounter {
        FanOutCounter {
            window: (window.as_secs() as i64).max(1),
            threshold: threshold.max(1),
            window_start: i64::MIN,
            sources: HashMap::new(),
        }
    }

    /// Counts `r` (if it is TCP to port 25) at time `now`; returns a [`FanOut`]
    /// the first time its source reaches the threshold in this window.
    #[inline]
    pub fn observe(&mut self, r: &FlowRecord, now: Timestamp) -> Option<FanOut> {
        if !r.is_smtp() {
            return None;
        }
        let start = now.0 - now.0.rem_euclid(self.window);
        if start != self.window_start {
            self.window_start = start;
            self.sources.clear();
        }
        let w = self.sources.entry(r.src).or_default();
        w.flows += 1;
        if w.alerted {
            return None;
        }
        w.destinations.insert(r.dst);
        let n = w.destinations.len() as u32;
        if n >= self.threshold {
            w.alerted = true;
            // The set is no longer needed: the alert carries the count.
            w.destinations = HashSet::new();
            return Some(FanOut {
                src: r.src,
                destinations: n,
                flows: w.flows,
                window_start: Timestamp(start),
            });
        }
        None
    }

    /// Port-25 flows and distinct destinations (until the alert) of `src` in the
    /// current window.
    pub fn counts(&self, src: IpAddr) -> (u64, usize) {
        self.sources
            .get(&src)
            .map_or((0, 0), |w| (w.flows, w.destinations.len()))
    }

    /// Sources seen in the current window.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

/// Hand-built export datagrams, for tests, benchmarks and fuzzing seeds.
pub mod build {
    use std::net::Ipv4Addr;

    /// A NetFlow v5 datagram: TCP flows `src -> dst:dport`.
    pub fn v5(flows: &[(Ipv4Addr, Ipv4Addr, u16)]) -> Vec<u8> {
        let mut p = Vec::with_capacity(24 + flows.len() * 48);
        p.extend_from_slice(&5u16.to_be_bytes());
        p.extend_from_slice(&(flows.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0; 20]);
        for (src, dst, dport) in flows {
            let mut r = [0u8; 48];
            r[0..4].copy_from_slice(&src.octets());
            r[4..8].copy_from_slice(&dst.octets());
            r[16..20].copy_from_slice(&3u32.to_be_bytes());
            r[20..24].copy_from_slice(&180u32.to_be_bytes());
            r[32..34].copy_from_slice(&40000u16.to_be_bytes());
            r[34..36].copy_from_slice(&dport.to_be_bytes());
            r[38] = 6;
            p.extend_from_slice(&r);
        }
        p
    }

    /// The fields of the template used by [`v9`] and [`ipfix`]: src, dst, sport,
    /// dport, proto, packets (4 bytes), octets (8 bytes).
    const FIELDS: [(u16, u16); 7] = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 8)];

    fn template_set(set_id: u16, template_id: u16) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&set_id.to_be_bytes());
        s.extend_from_slice(&((4 + 4 + FIELDS.len() * 4) as u16).to_be_bytes());
        s.extend_from_slice(&template_id.to_be_bytes());
        s.extend_from_slice(&(FIELDS.len() as u16).to_be_bytes());
        for (t, l) in FIELDS {
            s.extend_from_slice(&t.to_be_bytes());
            s.extend_from_slice(&l.to_be_bytes());
        }
        s
    }

    fn data_set(template_id: u16, flows: &[(Ipv4Addr, Ipv4Addr, u16)]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&template_id.to_be_bytes());
        let len = 4 + flows.len() * 25;
        let pad = (4 - len % 4) % 4;
        s.extend_from_slice(&((len + pad) as u16).to_be_bytes());
        for (src, dst, dport) in flows {
            s.extend_from_slice(&src.octets());
            s.extend_from_slice(&dst.octets());
            s.extend_from_slice(&40000u16.to_be_bytes());
            s.extend_from_slice(&dport.to_be_bytes());
            s.push(6);
            s.extend_from_slice(&3u32.to_be_bytes());
            s.extend_from_slice(&180u64.to_be_bytes());
        }
        s.extend(std::iter::repeat_n(0u8, pad));
        s
    }

    /// A NetFlow v9 datagram with (optionally) the template and a data set.
    pub fn v9(source_id: u32, with_template: bool, flows: &[(Ipv4Addr, Ipv4Addr, u16)]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&9u16.to_be_bytes());
        p.extend_from_slice(&((flows.len() + usize::from(with_template)) as u16).to_be_bytes());
        p.extend_from_slice(&[0; 12]);
        p.extend_from_slice(&source_id.to_be_bytes());
        if with_template {
            p.extend(template_set(0, 256));
        }
        if !flows.is_empty() {
            p.extend(data_set(256, flows));
        }
        p
    }

    /// An IPFIX message with (optionally) the template and a data set.
    pub fn ipfix(domain: u32, with_template: bool, flows: &[(Ipv4Addr, Ipv4Addr, u16)]) -> Vec<u8> {
        let mut body = Vec::new();
        if with_template {
            body.extend(template_set(2, 300));
        }
        if !flows.is_empty() {
            body.extend(data_set(300, flows));
        }
        let mut p = Vec::new();
        p.extend_from_slice(&10u16.to_be_bytes());
        p.extend_from_slice(&((16 + body.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&domain.to_be_bytes());
        p.extend(body);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn exporter() -> SocketAddr {
        "192.0.2.1:2055".parse().unwrap()
    }

    fn flows(n: u8) -> Vec<(Ipv4Addr, Ipv4Addr, u16)> {
        (0..n)
            .map(|i| {
                (
                    Ipv4Addr::new(100, 64, 1, 5),
                    Ipv4Addr::new(203, 0, 113, i),
                    25,
                )
            })
            .collect()
    }

    fn collect(d: &mut Decoder, from: SocketAddr, p: &[u8]) -> Result<Vec<FlowRecord>, FlowError> {
        let mut out = Vec::new();
        d.decode(from, p, |r| out.push(*r))?;
        Ok(out)
    }

    #[test]
    fn v5_records() {
        let mut d = Decoder::new();
        let out = collect(&mut d, exporter(), &build::v5(&flows(3))).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].dst, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)));
        assert!(out[0].is_smtp());
        assert_eq!(
            (out[0].packets, out[0].octets, out[0].src_port),
            (3, 180, 40000)
        );
    }

    #[test]
    fn v9_templates_are_per_exporter_and_source_id() {
        let mut d = Decoder::new();
        // Data before its template: skipped and counted.
        assert_eq!(
            collect(&mut d, exporter(), &build::v9(1, false, &flows(2)))
                .unwrap()
                .len(),
            0
        );
        assert_eq!(d.stats.missing_template, 1);
        let out = collect(&mut d, exporter(), &build::v9(1, true, &flows(4))).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[3].octets, 180);
        assert_eq!(
            collect(&mut d, exporter(), &build::v9(1, false, &flows(2)))
                .unwrap()
                .len(),
            2
        );
        // Another source id or exporter does not share the template.
        assert_eq!(
            collect(&mut d, exporter(), &build::v9(2, false, &flows(2)))
                .unwrap()
                .len(),
            0
        );
        let other: SocketAddr = "192.0.2.2:2055".parse().unwrap();
        assert_eq!(
            collect(&mut d, other, &build::v9(1, false, &flows(2)))
                .unwrap()
                .len(),
            0
        );
        assert_eq!(d.template_count(), 1);
    }

    #[test]
    fn ipfix_records_and_variable_length_fields() {
        let mut d = Decoder::new();
        let out = collect(&mut d, exporter(), &build::ipfix(7, true, &flows(5))).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[4].dst_port, 25);
        // A template with an enterprise field and a variable-length field.
        let mut set = Vec::new();
        set.extend_from_slice(&2u16.to_be_bytes());
        set.extend_from_slice(&(4u16 + 4 + 4 * 4 + 4).to_be_bytes());
        set.extend_from_slice(&400u16.to_be_bytes());
        set.extend_from_slice(&4u16.to_be_bytes());
        for (t, l) in [(8u16, 4u16), (12, 4), (0x8000 | 99, 65535), (11, 2)] {
            set.extend_from_slice(&t.to_be_bytes());
            set.extend_from_slice(&l.to_be_bytes());
            if t & 0x8000 != 0 {
                set.extend_from_slice(&9u32.to_be_bytes());
            }
        }
        let mut data = vec![1, 144, 0, 0];
        data.extend_from_slice(&[100, 64, 0, 9, 198, 51, 100, 1, 3, b'a', b'b', b'c', 0, 25]);
        let dl = data.len() as u16;
        data[2..4].copy_from_slice(&dl.to_be_bytes());
        let mut msg = vec![0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        msg.extend(set);
        msg.extend(data);
        let l = msg.len() as u16;
        msg[2..4].copy_from_slice(&l.to_be_bytes());
        let out = collect(&mut d, exporter(), &msg).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].src, IpAddr::V4(Ipv4Addr::new(100, 64, 0, 9)));
        assert_eq!(out[0].dst_port, 25);
    }

    #[test]
    fn garbage_and_truncated_datagrams_are_refused_and_counted() {
        let mut d = Decoder::new();
        assert_eq!(
            collect(&mut d, exporter(), b""),
            Err(FlowError::Truncated("flow"))
        );
        assert_eq!(
            collect(&mut d, exporter(), b"\x00\x07abc"),
            Err(FlowError::UnknownVersion(7))
        );
        let v5 = build::v5(&flows(3));
        assert_eq!(
            collect(&mut d, exporter(), &v5[..v5.len() - 1]),
            Err(FlowError::Truncated("NetFlow v5"))
        );
        let mut zero = build::v9(1, true, &[]);
        zero[22..24].copy_from_slice(&0u16.to_be_bytes());
        assert!(collect(&mut d, exporter(), &zero).is_err());
        assert_eq!(d.stats.refused, 4);
        for p in [
            build::v5(&flows(2)),
            build::v9(3, true, &flows(3)),
            build::ipfix(3, true, &flows(3)),
        ] {
            for cut in 0..p.len() {
                let _ = collect(&mut d, exporter(), &p[..cut]);
            }
            let mut x = p.clone();
            for i in 0..x.len() {
                x[i] ^= 0xa5;
                let _ = collect(&mut d, exporter(), &x);
            }
        }
    }

    #[test]
    fn fan_out_counted_per_source_and_window() {
        let mut c = FanOutCounter::new(Duration::from_secs(600), 3);
        let rec = |src: u8, dst: u8, port: u16| FlowRecord {
            src: IpAddr::V4(Ipv4Addr::new(100, 64, 0, src)),
            dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, dst)),
            src_port: 1000,
            dst_port: port,
            proto: 6,
            packets: 1,
            octets: 60,
        };
        let t = Timestamp(1_800_000_000);
        assert_eq!(c.observe(&rec(1, 1, 25), t), None);
        assert_eq!(c.observe(&rec(1, 1, 25), t), None);
        assert_eq!(c.observe(&rec(1, 2, 80), t), None);
        assert_eq!(c.observe(&rec(2, 2, 25), t), None);
        assert_eq!(c.counts(IpAddr::V4(Ipv4Addr::new(100, 64, 0, 1))), (2, 1));
        assert_eq!(c.observe(&rec(1, 2, 25), t), None);
        let a = c.observe(&rec(1, 3, 25), t).unwrap();
        assert_eq!((a.destinations, a.flows), (3, 4));
        assert_eq!(
            a.window_start,
            Timestamp(1_800_000_000) // a 10-minute boundary
        );
        // Once per window.
        assert_eq!(c.observe(&rec(1, 4, 25), t), None);
        // A new window starts from zero.
        let later = Timestamp(t.0 + 600);
        assert_eq!(c.observe(&rec(1, 5, 25), later), None);
        assert_eq!(c.sources(), 1);
    }
}
