//! Delivery status notifications (RFC 3464, with the DSN parameters of RFC 3461),
//! built without I/O: a `multipart/report; report-type=delivery-status` with a human
//! explanation, one `message/delivery-status` part (per-message fields, then one
//! block per recipient) and the original message (RET=FULL) or its headers
//! (RET=HDRS). The worker enqueues the result, from the null sender, into the same
//! queue as any other message.
//!
//! Not handled: RFC 6533 internationalised DSNs (`message/global-delivery-status`);
//! an SMTPUTF8 message's report is sent as the classic type with raw UTF-8.

use policy::Timestamp;

use crate::protocol::EnhancedCode;

/// Failure (`Action: failed`) or delay warning (`Action: delayed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnKind {
    Failure,
    /// The message is still queued and will be retried until the given time.
    Delay {
        until: Timestamp,
    },
}

/// One recipient's block of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsnRecipient {
    pub address: String,
    /// ORCPT as received (`rfc822;bob@example.org`, xtext).
    pub orcpt: Option<String>,
    pub status: EnhancedCode,
    /// The remote server's reply, as `Diagnostic-Code: smtp; ...`.
    pub smtp_reply: Option<String>,
    /// The host that gave the reply (`Remote-MTA: dns; ...`).
    pub remote_mta: Option<String>,
    /// A sentence for the human part, e.g. "the domain publishes a null MX".
    pub reason: String,
    pub last_attempt: Option<Timestamp>,
}

/// What a report is about.
#[derive(Clone, Debug)]
pub struct DsnInput<'a> {
    /// Our host name (`Reporting-MTA: dns; ...`, `From: MAILER-DAEMON@...`).
    pub reporting_mta: &'a str,
    /// MAIL FROM of the original message: the report goes there.
    pub sender: &'a str,
    /// The original's queue id, quoted in the human part.
    pub queue_id: &'a str,
    pub envid: Option<&'a str>,
    /// `FULL`, `HDRS` or absent (then: full message up to [`FULL_RETURN_LIMIT`]).
    pub ret: Option<&'a str>,
    pub arrival: Timestamp,
    pub now: Timestamp,
    pub kind: DsnKind,
    pub recipients: &'a [DsnRecipient],
    pub original: &'a [u8],
    /// A unique token for the MIME boundary and the Message-ID.
    pub unique: &'a str,
}

/// Without RET, messages up to this size come back whole, larger ones as headers.
pub const FULL_RETURN_LIMIT: usize = 1024 * 1024;

/// Whether a report of `kind` goes to `sender` for a recipient with `notify`
/// (RFC 3461 4.1: NEVER, or a list of SUCCESS/FAILURE/DELAY; absent means failures
/// and delays). Never for the null sender (RFC 5321 section 4.5.5).
pub fn wants_report(sender: &str, notify: Option<&str>, kind: DsnKind) -> bool {
    if sender.is_empty() || sender == "<>" {
        return false;
    }
    let word = match kind {
        DsnKind::Failure => "FAILURE",
        DsnKind::Delay { .. } => "DELAY",
    };
    match notify {
        None => true,
        Some(n) => n.split(',').any(|w| w.trim().eq_ignore_ascii_case(word)),
    }
}

/// Decodes RFC 3461 xtext (`+2B` is `+`); undecodable input is returned as is.
pub fn xtext_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' && i + 2 < b.len() && text.is_char_boundary(i + 3) {
            if let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// RFC 5322 date, always in UTC: `Fri, 27 Nov 2026 21:19:30 +0000`.
pub fn rfc5322_date(t: Timestamp) -> String {
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(t.0) else {
        return "Thu, 01 Jan 1970 00:00:00 +0000".into();
    };
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[dt.weekday().number_days_from_monday() as usize],
        dt.day(),
        MONTHS[dt.month() as usize - 1],
        dt.year(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// The header section of a message (up to, not including, the empty line).
pub fn header_section(message: &[u8]) -> &[u8] {
    for (i, w) in message.windows(4).enumerate() {
        if w == b"\r\n\r\n" {
            return &message[..i + 2];
        }
    }
    for (i, w) in message.windows(2).enumerate() {
        if w == b"\n\n" {
            return &message[..i + 1];
        }
    }
    message
}

/// Builds the whole report message, headers included, CRLF line endings.
pub fn build_report(d: &DsnInput<'_>) -> Vec<u8> {
    let boundary = format!("=_dsn_{}", d.unique);
    let (subject, action, intro) = match d.kind {
        DsnKind::Failure => (
            "Undelivered Mail Returned to Sender",
            "failed",
            "Your message could not be delivered to one or more recipients.\r\nIt has been removed from the queue; the recipients and reasons follow.",
        ),
        DsnKind::Delay { .. } => (
            "Delayed Mail (still being retried)",
            "delayed",
            "Your message has not been delivered yet to one or more recipients.\r\nNo action is needed: delivery will be retried; the recipients and reasons follow.",
        ),
    };
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{}>\r\n",
        d.reporting_mta
    ));
    m.push_str(&format!("To: <{}>\r\n", d.sender));
    m.push_str(&format!("Subject: {subject}\r\n"));
    m.push_str(&format!("Date: {}\r\n", rfc5322_date(d.now)));
    m.push_str(&format!(
        "Message-ID: <{}@{}>\r\n",
        d.unique, d.reporting_mta
    ));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str("This is a MIME-encapsulated delivery status notification.\r\n\r\n");

    // Part 1: for people.
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
    );
    m.push_str(&format!(
        "This is the mail system at host {}.\r\n\r\n{intro}\r\n\r\n",
        d.reporting_mta
    ));
    m.push_str(&format!("Queue id: {}\r\n", d.queue_id));
    if let DsnKind::Delay { until } = d.kind {
        m.push_str(&format!("Delivery will be retried until {until}.\r\n"));
    }
    m.push_str("\r\n");
    for r in d.recipients {
        m.push_str(&format!("<{}>: {}\r\n", r.address, r.reason));
        if let Some(reply) = &r.smtp_reply {
            let host = r.remote_mta.as_deref().unwrap_or("the remote server");
            m.push_str(&format!("    {host} said: {reply}\r\n"));
        }
    }
    m.push_str("\r\n");

    // Part 2: for programs (RFC 3464 section 2).
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Type: message/delivery-status\r\n\r\n");
    m.push_str(&format!("Reporting-MTA: dns; {}\r\n", d.reporting_mta));
    if let Some(envid) = d.envid {
        m.push_str(&format!(
            "Original-Envelope-Id: {}\r\n",
            xtext_decode(envid)
        ));
    }
    m.push_str(&format!("Arrival-Date: {}\r\n", rfc5322_date(d.arrival)));
    for r in d.recipients {
        m.push_str("\r\n");
        if let Some(orcpt) = &r.orcpt {
            let (kind, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            m.push_str(&format!(
                "Original-Recipient: {}; {}\r\n",
                kind.trim(),
                xtext_decode(addr.trim())
            ));
        }
        m.push_str(&format!("Final-Recipient: rfc822; {}\r\n", r.address));
        m.push_str(&format!("Action: {action}\r\n"));
        m.push_str(&format!("Status: {}\r\n", r.status));
        if let Some(host) = &r.remote_mta {
            m.push_str(&format!("Remote-MTA: dns; {host}\r\n"));
        }
        if let Some(reply) = &r.smtp_reply {
            m.push_str(&format!("Diagnostic-Code: smtp; {reply}\r\n"));
        }
        if let Some(at) = r.last_attempt {
            m.push_str(&format!("Last-Attempt-Date: {}\r\n", rfc5322_date(at)));
        }
        if let DsnKind::Delay { until } = d.kind {
            m.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(until)));
        }
    }
    m.push_str("\r\n");

    // Part 3: the original, whole or its headers (RFC 3461 4.3).
    let full = match (d.kind, d.ret.map(str::to_ascii_uppercase).as_deref()) {
        (DsnKind::Delay { .. }, _) => false,
        (_, Some("HDRS")) => false,
        (_, Some("FULL")) => true,
        _ => d.original.len() <= FULL_RETURN_LIMIT,
    };
    let mut out = m.into_bytes();
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    if full {
        out.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        out.extend_from_slice(d.original);
    } else {
        out.extend_from_slice(b"Content-Type: text/rfc822-headers\r\n\r\n");
        out.extend_from_slice(header_section(d.original));
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] =
        b"From: ann@isp.example\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nbody line\r\n";

    fn rcpt() -> DsnRecipient {
        DsnRecipient {
            address: "bob@example.org".into(),
            orcpt: Some("rfc822;bob+2Bx@example.org".into()),
            status: EnhancedCode(5, 1, 1),
            smtp_reply: Some("550 5.1.1 no such user".into()),
            remote_mta: Some("mx.example.org".into()),
            reason: "the recipient's server refused it".into(),
            last_attempt: Some(Timestamp(1_800_000_000)),
        }
    }

    fn input<'a>(r: &'a [DsnRecipient], ret: Option<&'a str>, kind: DsnKind) -> DsnInput<'a> {
        DsnInput {
            reporting_mta: "mail.isp.example",
            sender: "ann@isp.example",
            queue_id: "Q1",
            envid: Some("env+2B1"),
            ret,
            arrival: Timestamp(1_799_999_000),
            now: Timestamp(1_800_000_000),
            kind,
            recipients: r,
            original: ORIGINAL,
            unique: "u1",
        }
    }

    #[test]
    fn failure_report_has_the_rfc_3464_shape() {
        let r = [rcpt()];
        let text =
            String::from_utf8(build_report(&input(&r, Some("FULL"), DsnKind::Failure))).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.isp.example\r\nOriginal-Envelope-Id: env+1\r\n"));
        assert!(text.contains("Original-Recipient: rfc822; bob+x@example.org\r\nFinal-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.org\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nFrom: ann@isp.example"));
        assert!(text.contains("body line"));
        assert!(text.ends_with("--=_dsn_u1--\r\n"));
        assert!(text.contains("To: <ann@isp.example>"));
        assert!(text.contains("Date: Fri, 15 Jan 2027 08:00:00 +0000"));
    }

    #[test]
    fn ret_hdrs_and_delay_return_only_headers() {
        let r = [rcpt()];
        let text =
            String::from_utf8(build_report(&input(&r, Some("HDRS"), DsnKind::Failure))).unwrap();
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nFrom: ann"));
        assert!(!text.contains("body line"));
        let until = Timestamp(1_800_400_000);
        let text =
            String::from_utf8(build_report(&input(&r, None, DsnKind::Delay { until }))).unwrap();
        assert!(text.contains("Action: delayed"));
        assert!(text.contains("Will-Retry-Until: "));
        assert!(!text.contains("body line"));
    }

    #[test]
    fn notify_and_null_sender_decide_who_gets_a_report() {
        let f = DsnKind::Failure;
        let d = DsnKind::Delay {
            until: Timestamp(0),
        };
        assert!(wants_report("a@b", None, f));
        assert!(wants_report("a@b", None, d));
        assert!(!wants_report("", None, f));
        assert!(!wants_report("a@b", Some("NEVER"), f));
        assert!(wants_report("a@b", Some("SUCCESS,FAILURE"), f));
        assert!(!wants_report("a@b", Some("SUCCESS,FAILURE"), d));
        assert!(wants_report("a@b", Some("delay"), d));
    }

    #[test]
    fn xtext_and_headers() {
        assert_eq!(xtext_decode("a+2Bb+3D"), "a+b=");
        assert_eq!(xtext_decode("a+zz"), "a+zz");
        assert_eq!(xtext_decode("a+2"), "a+2");
        assert_eq!(header_section(b"A: b\n\nbody"), b"A: b\n");
        assert_eq!(header_section(b"A: b"), b"A: b");
    }
}
