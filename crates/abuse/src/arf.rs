//! The complaint parser: Abuse Reporting Format (RFC 5965, with the RFC 6650
//! conventions large mailbox providers follow) and plain-text complaints.
//!
//! Pure: bytes in, a [`Complaint`] or an [`ArfError`] out. No store, no files, no
//! clock. MIME structure comes from `mail-parser`; the `message/feedback-report` fields
//! and embedded header blocks are read here with a small, forgiving field parser, so a
//! broken report yields a clear refusal or a partial complaint, never a panic.
//!
//! This module does not decide who sent the spam (see `ingest`), and it does not
//! dedupe by itself: it computes the [`Complaint::fingerprint`] the store dedupes on.

use std::net::IpAddr;

use mail_parser::{MessageParser, MimeHeaders};
use policy::{Pools, Timestamp};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Reports larger than this are refused: no ARF report needs more, and a huge one is
/// usually a forwarded mailbox or an attack on the parser.
pub const MAX_REPORT_BYTES: usize = 32 * 1024 * 1024;

/// How much of the embedded original's headers a complaint keeps.
const MAX_KEPT_HEADERS: usize = 16 * 1024;

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArfError {
    /// Nothing to parse.
    #[error("the report is empty")]
    Empty,
    /// Larger than [`MAX_REPORT_BYTES`].
    #[error(
        "the report is {size} bytes, more than the {limit} bytes accepted; send the ARF part alone"
    )]
    TooLarge { size: usize, limit: usize },
    /// The bytes are not an Internet message (no header section).
    #[error("not an email message: no header fields found (expected an RFC 5322 message, ARF or plain text)")]
    NotAMessage,
}

/// Whether the complaint was a structured feedback report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComplaintFormat {
    /// RFC 5965 `multipart/report; report-type=feedback-report`.
    Arf,
    /// A plain complaint: the addresses and times found in its text.
    Unstructured,
}

/// Where [`Complaint::source_ip`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceIpOrigin {
    /// The report's `Source-IP` field.
    SourceIpField,
    /// The first `Received` hop of the embedded original that lies in our pools.
    ReceivedHop,
    /// An address found in the text of a plain complaint.
    Text,
}

/// How much of the original message the report embedded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddedKind {
    /// `message/rfc822` (or `message/global`): the whole message.
    Message,
    /// `text/rfc822-headers`: its header section only.
    Headers,
}

/// The reported original message, as far as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EmbeddedMessage {
    pub kind: EmbeddedKind,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub date: Option<Timestamp>,
    /// The `Received` fields, newest first.
    pub received: Vec<String>,
    /// The header section, truncated to 16 KiB.
    #[serde(skip)]
    pub headers: String,
}

/// One parsed complaint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Complaint {
    pub format: ComplaintFormat,
    /// `abuse`, `fraud`, `virus`, `other`, `not-spam`, `auth-failure`; `unstructured`
    /// for plain complaints.
    pub feedback_type: String,
    pub source_ip: Option<IpAddr>,
    pub source_ip_origin: Option<SourceIpOrigin>,
    /// When the reporter received the original (`Arrival-Date`, else `Received-Date`,
    /// else the original's `Date`, else a time found in a plain complaint).
    pub arrival_date: Option<Timestamp>,
    pub reported_domains: Vec<String>,
    pub original_mail_from: Option<String>,
    pub original_rcpt_to: Vec<String>,
    pub user_agent: Option<String>,
    /// Who sent the report. Kept for the abuse desk; never shown to the customer.
    pub reporter: Option<String>,
    pub original: Option<EmbeddedMessage>,
    /// Every address found (plain complaints), in order of appearance.
    pub ips_found: Vec<IpAddr>,
    /// Every time found (plain complaints), in order of appearance.
    pub times_found: Vec<Timestamp>,
    /// Problems that did not stop the parse (e.g. "Source-IP 'x' is not an address").
    pub warnings: Vec<String>,
    /// The dedup key: the same report twice has the same fingerprint.
    pub fingerprint: String,
}

/// Parses one complaint. `pools` are the ISP's address pools, used to pick the
/// `Received` hop when the report has no `Source-IP`.
pub fn parse(raw: &[u8], pools: &Pools) -> Result<Complaint, ArfError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ArfError::Empty);
    }
    if raw.len() > MAX_REPORT_BYTES {
        return Err(ArfError::TooLarge {
            size: raw.len(),
            limit: MAX_REPORT_BYTES,
        });
    }
    let raw = strip_mbox_from_line(raw);
    if !has_header_section(raw) {
        return Err(ArfError::NotAMessage);
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(ArfError::NotAMessage)?;

    let mut report_fields: Option<Vec<(String, String)>> = None;
    let mut original: Option<EmbeddedMessage> = None;
    let mut original_raw: &[u8] = b"";
    for part in message.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
        match (ctype.as_str(), sub.as_str()) {
            ("message", "feedback-report") if report_fields.is_none() => {
                report_fields = Some(header_fields(&String::from_utf8_lossy(part.contents())));
            }
            ("message", "rfc822") | ("message", "global") if original.is_none() => {
                let bytes = part.contents();
                original = Some(embedded(bytes, EmbeddedKind::Message));
                original_raw = bytes;
            }
            ("text", "rfc822-headers") if original.is_none() => {
                let bytes = part.contents();
                original = Some(embedded(bytes, EmbeddedKind::Headers));
                original_raw = bytes;
            }
            _ => {}
        }
    }
    let outer_date = message.date().map(|d| Timestamp(d.to_timestamp()));
    let outer_from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_string);

    match report_fields {
        Some(fields) => Ok(arf_complaint(
            fields,
            original,
            original_raw,
            outer_from,
            pools,
        )),
        None => {
            let text = message
                .body_text(0)
                .map(|t| t.into_owned())
                .unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned());
            Ok(unstructured(
                &text,
                original,
                original_raw,
                outer_date,
                outer_from,
                pools,
            ))
        }
    }
}

fn arf_complaint(
    fields: Vec<(String, String)>,
    original: Option<EmbeddedMessage>,
    original_raw: &[u8],
    reporter: Option<String>,
    pools: &Pools,
) -> Complaint {
    let mut warnings = Vec::new();
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let all = |name: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| strip_angle(v.trim()).to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let feedback_type = match get("Feedback-Type") {
        Some(t) => t.to_ascii_lowercase(),
        None => {
            warnings.push("no Feedback-Type field; taken as 'abuse'".to_string());
            "abuse".to_string()
        }
    };
    let mut source_ip = None;
    let mut origin = None;
    if let Some(text) = get("Source-IP") {
        match parse_ip(&text) {
            Some(ip) => {
                source_ip = Some(ip);
                origin = Some(SourceIpOrigin::SourceIpField);
            }
            None => warnings.push(format!("Source-IP '{text}' is not an IP address")),
        }
    }
    if source_ip.is_none() {
        if let Some(ip) = original.as_ref().and_then(|o| pool_hop(&o.received, pools)) {
            source_ip = Some(ip);
            origin = Some(SourceIpOrigin::ReceivedHop);
        }
    }
    let mut arrival_date = None;
    for name in ["Arrival-Date", "Received-Date"] {
        if arrival_date.is_some() {
            break;
        }
        if let Some(text) = get(name) {
            match parse_date(&text) {
                Some(t) => arrival_date = Some(t),
                None => warnings.push(format!("{name} '{text}' is not a date")),
            }
        }
    }
    if arrival_date.is_none() {
        arrival_date = original.as_ref().and_then(|o| o.date);
    }
    let original_mail_from = get("Original-Mail-From").map(|v| strip_angle(&v).to_string());
    let fingerprint = fingerprint(
        "arf",
        original.as_ref(),
        original_raw,
        source_ip,
        arrival_date,
    );
    Complaint {
        format: ComplaintFormat::Arf,
        feedback_type,
        source_ip,
        source_ip_origin: origin,
        arrival_date,
        reported_domains: all("Reported-Domain"),
        original_mail_from,
        original_rcpt_to: all("Original-Rcpt-To"),
        user_agent: get("User-Agent"),
        reporter,
        original,
        ips_found: Vec::new(),
        times_found: Vec::new(),
        warnings,
        fingerprint,
    }
}

fn unstructured(
    text: &str,
    original: Option<EmbeddedMessage>,
    original_raw: &[u8],
    outer_date: Option<Timestamp>,
    reporter: Option<String>,
    pools: &Pools,
) -> Complaint {
    let mut ips_found = find_ips(text);
    if let Some(o) = &original {
        for ip in o.received.iter().flat_map(|r| find_ips(r)) {
            if !ips_found.contains(&ip) {
                ips_found.push(ip);
            }
        }
    }
    let times_found = find_times(text);
    let (source_ip, origin) = match ips_found
        .iter()
        .find(|ip| pools.classify(**ip).is_some())
        .or(ips_found.first())
    {
        Some(ip) => (Some(*ip), Some(SourceIpOrigin::Text)),
        None => (None, None),
    };
    let arrival_date = times_found
        .first()
        .copied()
        .or(original.as_ref().and_then(|o| o.date))
        .or(outer_date);
    let fingerprint = if original.is_some() {
        fingerprint(
            "unstructured",
            original.as_ref(),
            original_raw,
            source_ip,
            arrival_date,
        )
    } else {
        let normalized: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        hex(&Sha256::digest(
            format!("unstructured\0{normalized}").as_bytes(),
        ))
    };
    Complaint {
        format: ComplaintFormat::Unstructured,
        feedback_type: "unstructured".to_string(),
        source_ip,
        source_ip_origin: origin,
        arrival_date,
        reported_domains: Vec::new(),
        original_mail_from: None,
        original_rcpt_to: Vec::new(),
        user_agent: None,
        reporter,
        original,
        ips_found,
        times_found,
        warnings: Vec::new(),
        fingerprint,
    }
}

/// Message-ID of the original (or a hash of its headers), Source-IP and arrival time.
fn fingerprint(
    tag: &str,
    original: Option<&EmbeddedMessage>,
    original_raw: &[u8],
    ip: Option<IpAddr>,
    at: Option<Timestamp>,
) -> String {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    h.update(b"\0");
    match original.and_then(|o| o.message_id.as_deref()) {
        Some(id) => h.update(id.as_bytes()),
        None => {
            let end = header_end(original_raw).unwrap_or(original_raw.len());
            h.update(&original_raw[..end]);
        }
    }
    h.update(b"\0");
    h.update(ip.map(|i| i.to_string()).unwrap_or_default().as_bytes());
    h.update(b"\0");
    h.update(at.map(|t| t.0.to_string()).unwrap_or_default().as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn embedded(bytes: &[u8], kind: EmbeddedKind) -> EmbeddedMessage {
    let end = header_end(bytes).unwrap_or(bytes.len());
    let block = String::from_utf8_lossy(&bytes[..end]);
    let fields = header_fields(&block);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut headers = block.into_owned();
    if headers.len() > MAX_KEPT_HEADERS {
        let mut cut = MAX_KEPT_HEADERS;
        while !headers.is_char_boundary(cut) {
            cut -= 1;
        }
        headers.truncate(cut);
    }
    EmbeddedMessage {
        kind,
        message_id: get("Message-ID").map(|v| strip_angle(&v).to_string()),
        subject: get("Subject"),
        from: get("From"),
        date: get("Date").and_then(|d| parse_date(&d)),
        received: fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Received"))
            .map(|(_, v)| v.trim().to_string())
            .collect(),
        headers,
    }
}

/// The first `Received` hop (newest first, as they appear) naming an address in our pools.
pub fn pool_hop(received: &[String], pools: &Pools) -> Option<IpAddr> {
    received
        .iter()
        .flat_map(|r| find_ips(r))
        .find(|ip| pools.classify(*ip).is_some())
}

/// Header fields of a header block, unfolded, in order. Lines without a colon end
/// the block (as a blank line does); nothing here fails.
pub fn header_fields(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if !name.is_empty() && !name.contains(' ') && name.is_ascii() => {
                out.push((name.to_string(), value.trim().to_string()))
            }
            _ => break,
        }
    }
    out
}

/// Offset of the blank line ending the header section.
fn header_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An mbox message may start with its `From ` separator line.
fn strip_mbox_from_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|b| *b == b'\n') {
            Some(i) => &raw[i + 1..],
            None => &raw[raw.len()..],
        }
    } else {
        raw
    }
}

fn has_header_section(raw: &[u8]) -> bool {
    let first = raw.split(|b| *b == b'\n').next().unwrap_or(b"");
    match first.iter().position(|b| *b == b':') {
        Some(i) => {
            i > 0
                && first[..i]
                    .iter()
                    .all(|b| b.is_ascii_graphic() && *b != b':')
        }
        None => false,
    }
}

fn strip_angle(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(v)
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    let t = t.strip_prefix("IPv6:").unwrap_or(t);
    t.parse().ok()
}

/// RFC 5322 dates (as ARF uses) and RFC 3339 times.
pub fn parse_date(text: &str) -> Option<Timestamp> {
    let t = text.trim();
    if let Ok(ts) = Timestamp::parse_rfc3339(t) {
        return Some(ts);
    }
    let d = mail_parser::DateTime::parse_rfc822(t)?;
    d.is_valid().then(|| Timestamp(d.to_timestamp()))
}

/// IP addresses in free text: tokens of hex digits, dots and colons that parse.
pub fn find_ips(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for token in text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
        let token = token.trim_matches(|c| c == '.' || c == ':');
        if token.len() < 7 {
            continue;
        }
        let Ok(ip) = token.parse::<IpAddr>() else {
            continue;
        };
        let interesting = match ip {
            IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_loopback() || v4.is_broadcast()),
            // "2026:11:27::" style false positives are rare; require a real-looking one.
            IpAddr::V6(v6) => {
                !(v6.is_unspecified() || v6.is_loopback())
                    && (token.contains("::") || token.matches(':').count() == 7)
            }
        };
        if interesting && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// RFC 3339-like times (`2026-11-27T10:00:00Z`, `2026-11-27 10:00:00 +0100`) and
/// lines that hold an RFC 5322 date after a label (`Date: Fri, 27 Nov 2026 ...`).
pub fn find_times(text: &str) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 16 <= bytes.len() {
        if is_iso_start(&bytes[i..]) {
            let end = bytes[i..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || b"-:+. ".contains(b)))
                .map_or(bytes.len(), |p| i + p);
            if let Some(t) = text.get(i..end).and_then(parse_iso_prefix) {
                if !out.contains(&t) {
                    out.push(t);
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    for line in text.lines() {
        if let Some((_, rest)) = line.split_once(':') {
            if let Some(d) = mail_parser::DateTime::parse_rfc822(rest.trim()) {
                if d.is_valid() && d.year > 1990 {
                    let t = Timestamp(d.to_timestamp());
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
    }
    out
}

fn is_iso_start(b: &[u8]) -> bool {
    b.len() >= 16
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && (b[10] == b'T' || b[10] == b' ')
        && b[11..13].iter().all(u8::is_ascii_digit)
        && b[13] == b':'
}

/// Parses the longest RFC 3339 time at the start of `s` (a space for `T` and a
/// missing zone, read as UTC, are accepted).
fn parse_iso_prefix(s: &str) -> Option<Timestamp> {
    let s = s.trim_end();
    let mut candidate: String = s.chars().take(40).collect();
    if candidate.len() > 10 && candidate.as_bytes()[10] == b' ' {
        candidate.replace_range(10..11, "T");
    }
    while candidate.len() >= 16 {
        let c = candidate.trim_end();
        for variant in [
            c.to_string(),
            format!("{c}Z"),
            format!("{c}:00Z"),
            c.replace(" +", "+").replace(" -", "-"),
        ] {
            if let Ok(t) = Timestamp::parse_rfc3339(&fix_zone(&variant)) {
                return Some(t);
            }
        }
        candidate.pop();
    }
    None
}

/// `+0100` → `+01:00`.
fn fix_zone(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() > 5 {
        let z = &s[s.len() - 5..];
        let zb = z.as_bytes();
        if (zb[0] == b'+' || zb[0] == b'-') && zb[1..].iter().all(u8::is_ascii_digit) {
            return format!("{}{}:{}", &s[..s.len() - 5], &z[..3], &z[3..]);
        }
    }
    s.to_string()
}

/// Splits an mbox into messages at `From ` lines (mboxrd `>From ` quoting undone).
pub fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut prev_blank = true;
    for line in data.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"From ") && prev_blank {
            if let Some(m) = current.take() {
                out.push(m);
            }
            current = Some(Vec::new());
            prev_blank = false;
            continue;
        }
        let body = current.get_or_insert_with(Vec::new);
        let unquoted = if line.starts_with(b">") {
            let n = line.iter().take_while(|b| **b == b'>').count();
            if line[n..].starts_with(b"From ") {
                &line[1..]
            } else {
                line
            }
        } else {
            line
        };
        body.extend_from_slice(unquoted);
        prev_blank = line == b"\n" || line == b"\r\n";
    }
    if let Some(m) = current {
        out.push(m);
    }
    out.retain(|m| !m.iter().all(u8::is_ascii_whitespace));
    out
}

/// True when `data` looks like an mbox (starts with a `From ` separator line).
pub fn is_mbox(data: &[u8]) -> bool {
    data.starts_with(b"From ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Pools {
        Pools::new(
            vec!["100.64.0.0/10".parse().unwrap()],
            vec!["198.51.100.0/24".parse().unwrap()],
        )
        .unwrap()
    }

    pub(crate) fn arf(source_ip: Option<&str>, original_type: &str, msgid: &str) -> String {
        let src = source_ip
            .map(|ip| format!("Source-IP: {ip}\r\n"))
            .unwrap_or_default();
        format!(
            "From: <staff@hotmail.example>\r\n\
Date: Thu, 26 Nov 2026 10:05:00 +0000\r\n\
Subject: FW: Earn money\r\n\
To: <abuse@isp.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report;\r\n\
\tboundary=\"part1_13d.2e68ed54_boundary\"\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
\r\n\
This is an email abuse report for an email message received from IP\r\n\
100.64.1.5 on Thu, 26 Nov 2026 10:00:00 +0000.\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: SomeGenerator/1.0\r\n\
Version: 1\r\n\
Original-Mail-From: <somespammer@example.net>\r\n\
Original-Rcpt-To: <user@example.com>\r\n\
Arrival-Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
Reporting-MTA: dns; mail.example.com\r\n\
{src}Reported-Domain: example.net\r\n\
Reported-Domain: other.example\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: {original_type}\r\n\
Content-Disposition: inline\r\n\
\r\n\
Received: from mx.example.com (mx.example.com [192.0.2.1])\r\n\
\tby mail.example.com; Thu, 26 Nov 2026 10:00:00 +0000\r\n\
Received: from pc (dyn-1-5.isp.example [100.64.1.5])\r\n\
\tby mx.example.com; Thu, 26 Nov 2026 09:59:59 +0000\r\n\
From: <somespammer@example.net>\r\n\
Message-ID: <{msgid}>\r\n\
Date: Thu, 26 Nov 2026 09:59:58 +0000\r\n\
Subject: Earn money\r\n\
To: <user@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-type: text/plain\r\n\
\r\n\
Spam spam spam.\r\n\
\r\n\
--part1_13d.2e68ed54_boundary--\r\n"
        )
    }

    #[test]
    fn arf_with_source_ip_and_rfc822_original() {
        let c = parse(
            arf(Some("100.64.1.5"), "message/rfc822", "a@b").as_bytes(),
            &pools(),
        )
        .unwrap();
        assert_eq!(c.format, ComplaintFormat::Arf);
        assert_eq!(c.feedback_type, "abuse");
        assert_eq!(c.source_ip, Some("100.64.1.5".parse().unwrap()));
        assert_eq!(c.source_ip_origin, Some(SourceIpOrigin::SourceIpField));
        assert_eq!(
            c.arrival_date,
            Some(Timestamp::parse_rfc3339("2026-11-26T10:00:00Z").unwrap())
        );
        assert_eq!(c.reported_domains, vec!["example.net", "other.example"]);
        assert_eq!(
            c.original_mail_from.as_deref(),
            Some("somespammer@example.net")
        );
        assert_eq!(c.user_agent.as_deref(), Some("SomeGenerator/1.0"));
        assert_eq!(c.reporter.as_deref(), Some("staff@hotmail.example"));
        let o = c.original.unwrap();
        assert_eq!(o.kind, EmbeddedKind::Message);
        assert_eq!(o.message_id.as_deref(), Some("a@b"));
        assert_eq!(o.received.len(), 2);
    }

    #[test]
    fn arf_without_source_ip_uses_first_pool_hop_of_headers_only_original() {
        let c = parse(arf(None, "text/rfc822-headers", "x@y").as_bytes(), &pools()).unwrap();
        assert_eq!(c.source_ip, Some("100.64.1.5".parse().unwrap()));
        assert_eq!(c.source_ip_origin, Some(SourceIpOrigin::ReceivedHop));
        assert_eq!(c.original.unwrap().kind, EmbeddedKind::Headers);
    }

    #[test]
    fn same_report_same_fingerprint_other_report_other() {
        let a = parse(
            arf(Some("100.64.1.5"), "message/rfc822", "a@b").as_bytes(),
            &pools(),
        )
        .unwrap();
        let b = parse(
            arf(Some("100.64.1.5"), "message/rfc822", "a@b").as_bytes(),
            &pools(),
        )
        .unwrap();
        let c = parse(
            arf(Some("100.64.1.5"), "message/rfc822", "c@d").as_bytes(),
            &pools(),
        )
        .unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn plain_complaint_is_unstructured_with_ips_and_times() {
        let raw = "From: angry@example.org\r\nSubject: spam from your network\r\n\r\n\
I got spam from 100.64.7.9 at 2026-11-25 14:03:00 +0100 and from 203.0.113.4.\r\n\
Please stop it. Version 1.2.3 of my client.\r\n";
        let c = parse(raw.as_bytes(), &pools()).unwrap();
        assert_eq!(c.format, ComplaintFormat::Unstructured);
        assert_eq!(c.source_ip, Some("100.64.7.9".parse().unwrap()));
        assert_eq!(c.ips_found.len(), 2);
        assert_eq!(
            c.arrival_date,
            Some(Timestamp::parse_rfc3339("2026-11-25T13:03:00Z").unwrap())
        );
    }

    #[test]
    fn refusals_name_the_reason() {
        assert_eq!(parse(b"", &pools()), Err(ArfError::Empty));
        assert_eq!(parse(b"   \r\n", &pools()), Err(ArfError::Empty));
        assert_eq!(
            parse(b"just some words, no headers\n", &pools()),
            Err(ArfError::NotAMessage)
        );
        let big = vec![b'a'; MAX_REPORT_BYTES + 1];
        assert!(matches!(
            parse(&big, &pools()),
            Err(ArfError::TooLarge { .. })
        ));
        assert!(ArfError::NotAMessage
            .to_string()
            .contains("no header fields"));
    }

    #[test]
    fn missing_fields_and_bad_values_are_warnings() {
        let raw = arf(Some("not-an-ip"), "message/rfc822", "q@r")
            .replace("Feedback-Type: abuse\r\n", "")
            .replace(
                "Arrival-Date: Thu, 26 Nov 2026 10:00:00 +0000",
                "Arrival-Date: someday",
            );
        let c = parse(raw.as_bytes(), &pools()).unwrap();
        assert_eq!(c.feedback_type, "abuse");
        // Falls back to the Received hop and the original's Date.
        assert_eq!(c.source_ip_origin, Some(SourceIpOrigin::ReceivedHop));
        assert_eq!(
            c.arrival_date,
            Some(Timestamp::parse_rfc3339("2026-11-26T09:59:58Z").unwrap())
        );
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    }

    #[test]
    fn broken_mime_and_non_utf8_do_not_panic() {
        let mut raw = arf(Some("100.64.1.5"), "message/rfc822", "z@z").into_bytes();
        raw.truncate(raw.len() / 2);
        let _ = parse(&raw, &pools());
        let mut raw = arf(None, "message/rfc822", "z@z").into_bytes();
        raw.extend_from_slice(&[0xff, 0xfe, 0x80, b'\n', 0xc3]);
        let _ = parse(&raw, &pools()).unwrap();
        let latin1 = b"From: a@b\r\nSubject: r\xe9clamation\r\n\r\nspam de 100.64.0.9 \xe0 10h\r\n";
        let c = parse(latin1, &pools()).unwrap();
        assert_eq!(c.source_ip, Some("100.64.0.9".parse().unwrap()));
        let no_boundary = "Content-Type: multipart/report; report-type=feedback-report\r\n\r\n--x\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n";
        let _ = parse(no_boundary.as_bytes(), &pools()).unwrap();
        for cut in 0..200 {
            let raw = arf(Some("100.64.1.5"), "message/rfc822", "a@b");
            let _ = parse(&raw.as_bytes()[..cut.min(raw.len())], &pools());
        }
    }

    #[test]
    fn huge_attachment_under_the_limit_parses() {
        let raw = arf(Some("100.64.1.5"), "message/rfc822", "big@x")
            .replace("Spam spam spam.", &"A".repeat(8 * 1024 * 1024));
        let c = parse(raw.as_bytes(), &pools()).unwrap();
        assert_eq!(c.source_ip, Some("100.64.1.5".parse().unwrap()));
    }

    #[test]
    fn mbox_splits_and_unquotes() {
        let mbox = b"From a@b Thu Nov 26 10:00:00 2026\nSubject: one\n\nbody\n>From here\n\nFrom c@d Thu Nov 26 10:00:00 2026\nSubject: two\n\nbody2\n";
        let msgs = split_mbox(mbox);
        assert_eq!(msgs.len(), 2);
        assert!(String::from_utf8_lossy(&msgs[0]).contains("\nFrom here"));
        assert!(is_mbox(mbox));
    }

    #[test]
    fn ip_and_time_scanners() {
        assert_eq!(
            find_ips("from [100.64.1.5] and 1.2.3 and 10:30:00"),
            vec!["100.64.1.5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(find_ips("v6 2001:db8::1 here").len(), 1);
        assert_eq!(find_times("at 2026-11-25T14:03:00Z.").len(), 1);
    }
}
