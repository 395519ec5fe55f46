//! A minimal DNS message codec (RFC 1035) for DNSBL lookups: A and TXT queries out,
//! their answers in. Pure: bytes to typed values; the UDP exchange lives in `dnsbl`.
//!
//! Not a resolver: no recursion, no caching, no EDNS, no TCP fallback (DNSBL answers
//! are a few bytes). Compression pointers are followed with a hop limit, so a hostile
//! answer cannot loop.

use std::net::Ipv4Addr;

/// Record types we ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    A,
    Txt,
}

impl QType {
    fn code(self) -> u16 {
        match self {
            QType::A => 1,
            QType::Txt => 16,
        }
    }
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The query name is not a valid DNS name.
    #[error("'{0}' is not a valid DNS name (labels of 1-63 bytes, 255 in all)")]
    BadName(String),
    /// The answer ended early or points outside itself.
    #[error("truncated or malformed DNS answer")]
    Malformed,
    /// The answer is for another query.
    #[error("DNS answer id {got} does not match query id {want}")]
    WrongId { want: u16, got: u16 },
    /// The server answered with an error code other than NXDOMAIN.
    #[error("DNS server answered rcode {0} (2 = server failure, 5 = refused)")]
    Rcode(u8),
    /// The answer had the TC bit: too large for UDP.
    #[error("DNS answer truncated (TC bit set)")]
    Truncated,
}

/// What an answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// NXDOMAIN, or no records of the asked type: not listed.
    NotFound,
    A(Vec<Ipv4Addr>),
    Txt(Vec<String>),
}

/// The DNSBL name of `ip` in `zone`: `4.3.2.1.zone`.
pub fn dnsbl_name(ip: Ipv4Addr, zone: &str) -> String {
    let o = ip.octets();
    format!(
        "{}.{}.{}.{}.{}",
        o[3],
        o[2],
        o[1],
        o[0],
        zone.trim_end_matches('.')
    )
}

/// A query with recursion desired.
pub fn encode_query(id: u16, name: &str, qtype: QType) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(name.len() + 18);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let name = name.trim_end_matches('.');
    if name.len() > 253 {
        return Err(DnsError::BadName(name.into()));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DnsError::BadName(name.into()));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.code().to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    Ok(out)
}

/// The id of a message (to match answers to queries).
pub fn message_id(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]))
}

/// Reads an answer to query `id` of type `qtype`.
pub fn decode_answer(msg: &[u8], id: u16, qtype: QType) -> Result<Answer, DnsError> {
    let r = Reader { msg };
    let got = r.u16(0)?;
    if got != id {
        return Err(DnsError::WrongId { want: id, got });
    }
    let flags = r.u16(2)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::Malformed);
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    match (flags & 0x000f) as u8 {
        0 => {}
        3 => return Ok(Answer::NotFound),
        rc => return Err(DnsError::Rcode(rc)),
    }
    let qd = r.u16(4)?;
    let an = r.u16(6)?;
    let mut pos = 12;
    for _ in 0..qd {
        pos = r.skip_name(pos)? + 4;
    }
    let mut addrs = Vec::new();
    let mut texts = Vec::new();
    for _ in 0..an {
        pos = r.skip_name(pos)?;
        let rtype = r.u16(pos)?;
        let rdlen = usize::from(r.u16(pos + 8)?);
        let start = pos + 10;
        let rdata = r.slice(start, rdlen)?;
        pos = start + rdlen;
        match (rtype, qtype) {
            (1, QType::A) if rdlen == 4 => {
                addrs.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]))
            }
            (16, QType::Txt) => {
                let mut text = Vec::new();
                let mut i = 0;
                while i < rdata.len() {
                    let n = usize::from(rdata[i]);
                    let s = rdata.get(i + 1..i + 1 + n).ok_or(DnsError::Malformed)?;
                    text.extend_from_slice(s);
                    i += 1 + n;
                }
                texts.push(String::from_utf8_lossy(&text).into_owned());
            }
            _ => {}
        }
    }
    Ok(match qtype {
        QType::A if !addrs.is_empty() => Answer::A(addrs),
        QType::Txt if !texts.is_empty() => Answer::Txt(texts),
        _ => Answer::NotFound,
    })
}

struct Reader<'a> {
    msg: &'a [u8],
}

impl Reader<'_> {
    fn u16(&self, at: usize) -> Result<u16, DnsError> {
        let b = self.slice(at, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn slice(&self, at: usize, len: usize) -> Result<&[u8], DnsError> {
        self.msg
            .get(at..at.checked_add(len).ok_or(DnsError::Malformed)?)
            .ok_or(DnsError::Malformed)
    }

    /// The offset after the name at `pos` (a pointer ends the name in place).
    fn skip_name(&self, mut pos: usize) -> Result<usize, DnsError> {
        for _ in 0..128 {
            let len = *self.msg.get(pos).ok_or(DnsError::Malformed)?;
            match len {
                0 => return Ok(pos + 1),
                l if l & 0xc0 == 0xc0 => {
                    self.slice(pos, 2)?;
                    return Ok(pos + 2);
                }
                l if l & 0xc0 == 0 => pos += 1 + usize::from(l),
                _ => return Err(DnsError::Malformed),
            }
        }
        Err(DnsError::Malformed)
    }
}

/// What a DNSBL A answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListingCode {
    /// 127.0.0.2 – 127.0.0.254: listed, with this return code.
    Listed(Ipv4Addr),
    /// 127.255.255.x: the blocklist refused the query (public resolver, rate
    /// limit, unregistered user): says nothing about the address.
    Refused(Ipv4Addr),
    /// Anything else: a misconfigured or hijacked zone.
    Unexpected(Ipv4Addr),
}

/// Classifies one A answer of a DNSBL.
pub fn listing_code(a: Ipv4Addr) -> ListingCode {
    let o = a.octets();
    match o {
        [127, 255, 255, _] => ListingCode::Refused(a),
        [127, 0, 0, 2..=254] => ListingCode::Listed(a),
        _ => ListingCode::Unexpected(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built answer: the question, then records with a pointer to it.
    fn answer(id: u16, rcode: u8, records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let q = encode_query(id, "5.1.64.100.bl.test", QType::A).unwrap();
        let mut m = q.clone();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (t, data) in records {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn query_encoding() {
        let q = encode_query(0x1234, "5.1.64.100.bl.test.", QType::Txt).unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..14], &[1, b'5']);
        assert_eq!(&q[q.len() - 4..], &[0, 16, 0, 1]);
        assert!(encode_query(1, "a..b", QType::A).is_err());
        assert!(encode_query(1, &"x".repeat(64), QType::A).is_err());
        assert_eq!(
            dnsbl_name(Ipv4Addr::new(100, 64, 1, 5), "bl.test."),
            "5.1.64.100.bl.test"
        );
    }

    #[test]
    fn decodes_a_txt_and_nxdomain() {
        let m = answer(7, 0, &[(1, vec![127, 0, 0, 2])]);
        assert_eq!(
            decode_answer(&m, 7, QType::A),
            Ok(Answer::A(vec![Ipv4Addr::new(127, 0, 0, 2)]))
        );
        let m = answer(8, 0, &[(16, b"\x05Spam \x06source".to_vec())]);
        assert_eq!(
            decode_answer(&m, 8, QType::Txt),
            Ok(Answer::Txt(vec!["Spam source".into()]))
        );
        assert_eq!(
            decode_answer(&answer(9, 3, &[]), 9, QType::A),
            Ok(Answer::NotFound)
        );
        assert_eq!(
            decode_answer(&answer(9, 0, &[]), 9, QType::A),
            Ok(Answer::NotFound)
        );
        assert_eq!(
            decode_answer(&answer(9, 5, &[]), 9, QType::A),
            Err(DnsError::Rcode(5))
        );
        assert_eq!(
            decode_answer(&answer(9, 0, &[]), 10, QType::A),
            Err(DnsError::WrongId { want: 10, got: 9 })
        );
    }

    #[test]
    fn truncated_and_garbage_answers_are_errors_not_panics() {
        let m = answer(7, 0, &[(1, vec![127, 0, 0, 2]), (16, b"\x03abc".to_vec())]);
        for cut in 0..m.len() {
            let _ = decode_answer(&m[..cut], 7, QType::A);
            let _ = decode_answer(&m[..cut], 7, QType::Txt);
        }
        let mut looped = answer(7, 0, &[(1, vec![127, 0, 0, 2])]);
        looped[12] = 0xc0;
        looped[13] = 12;
        let _ = decode_answer(&looped, 7, QType::A);
        let bad_txt = answer(8, 0, &[(16, b"\x09short".to_vec())]);
        assert_eq!(
            decode_answer(&bad_txt, 8, QType::Txt),
            Err(DnsError::Malformed)
        );
    }

    #[test]
    fn listing_codes() {
        assert_eq!(
            listing_code(Ipv4Addr::new(127, 0, 0, 2)),
            ListingCode::Listed(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert!(matches!(
            listing_code(Ipv4Addr::new(127, 255, 255, 254)),
            ListingCode::Refused(_)
        ));
        assert!(matches!(
            listing_code(Ipv4Addr::new(127, 0, 0, 1)),
            ListingCode::Unexpected(_)
        ));
        assert!(matches!(
            listing_code(Ipv4Addr::new(10, 0, 0, 2)),
            ListingCode::Unexpected(_)
        ));
    }
}
