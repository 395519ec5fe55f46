//! What the submission server adds to a message before queueing it: a Received
//! header (RFC 5321 section 4.4, with `ESMTPSA` per RFC 3848, the TLS version and
//! cipher and the authenticated login) and, when the client left them out, Date and
//! Message-ID (RFC 6409 section 8.2 and 8.3). Pure functions of their inputs.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::session::Envelope;

/// An RFC 5322 date, e.g. `Fri, 27 Nov 2026 21:06:01 +0000`.
pub fn rfc5322_date(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[u8::from(t.month()) as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Client-chosen text in a header comment: printable ASCII without parentheses or
/// backslashes, bounded, so it cannot break the header's syntax.
fn comment_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')' | '\\' | '[' | ']'))
        .take(100)
        .collect()
}

/// The Received header line, folded, with CRLF.
pub fn received(
    env: &Envelope,
    client: IpAddr,
    hostname: &str,
    queue_id: &str,
    now: OffsetDateTime,
) -> String {
    let helo = comment_safe(&env.helo);
    let protocol = if env.tls.is_some() {
        "ESMTPSA"
    } else {
        "ESMTPA"
    };
    let mut h = format!("Received: from {helo} ([{client}])\r\n\tby {hostname} (portcullis) with {protocol} id {queue_id}\r\n");
    if let Some(tls) = &env.tls {
        h.push_str(&format!(
            "\t(using {} with cipher {})\r\n",
            comment_safe(&tls.version),
            comment_safe(&tls.cipher)
        ));
    }
    h.push_str(&format!(
        "\t(authenticated as {})\r\n",
        comment_safe(&env.login)
    ));
    // Name the recipient only when there is one: a list would disclose Bcc.
    if let [only] = env.recipients.as_slice() {
        if only.address.is_ascii() && !only.address.contains(['\r', '\n', '>']) {
            h.push_str(&format!("\tfor <{}>", only.address));
            h.push_str(&format!("; {}\r\n", rfc5322_date(now)));
            return h;
        }
    }
    h.push_str(&format!("\t; {}\r\n", rfc5322_date(now)));
    h
}

/// Which of Date and Message-ID the header section already has, and where it ends.
fn scan_headers(body: &[u8]) -> (bool, bool, usize) {
    let (mut date, mut id) = (false, false);
    let mut pos = 0;
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i + 1);
        let line = &body[pos..end];
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            break;
        }
        let continuation = text[0] == b' ' || text[0] == b'\t';
        let field = text
            .iter()
            .position(|&b| b == b':')
            .filter(|&i| i > 0 && text[..i].iter().all(|&b| b.is_ascii_graphic()));
        match (continuation, field) {
            (true, _) if pos > 0 => {}
            (false, Some(i)) => {
                let name = &text[..i];
                date |= name.eq_ignore_ascii_case(b"date");
                id |= name.eq_ignore_ascii_case(b"message-id");
            }
            _ => break, // not a header line: the header section ended without a blank line
        }
        pos = end;
    }
    (date, id, pos)
}

/// The message as queued: the Received header, any missing Date or Message-ID, then
/// the client's message.
pub fn finalize(
    env: &Envelope,
    body: Vec<u8>,
    client: IpAddr,
    hostname: &str,
    queue_id: &str,
    now: OffsetDateTime,
) -> Vec<u8> {
    let (has_date, has_id, header_end) = scan_headers(&body);
    let mut head = received(env, client, hostname, queue_id, now);
    if !has_date {
        head.push_str(&format!("Date: {}\r\n", rfc5322_date(now)));
    }
    if !has_id {
        head.push_str(&format!(
            "Message-ID: <{queue_id}.{}@{hostname}>\r\n",
            now.unix_timestamp()
        ));
    }
    // A message without any header field gets the blank line that separates ours from its text.
    if header_end == 0 && !body.starts_with(b"\r\n") {
        head.push_str("\r\n");
    }
    // In place: the client's bytes move up within their buffer (which the DATA reader
    // grew with room to spare) instead of being copied into a second one. The message
    // may wait in memory for delivery, so it keeps no more than it holds: a large one
    // shrinks where it is, a small one leaves the reader's 64 KB behind.
    let mut out = body;
    out.splice(0..0, head.into_bytes());
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{MailFrom, RcptTo};
    use crate::session::TlsInfo;

    fn env(rcpts: &[&str]) -> Envelope {
        Envelope {
            login: "ann".into(),
            mail_from: MailFrom {
                address: "ann@example.net".into(),
                ..MailFrom::default()
            },
            recipients: rcpts
                .iter()
                .map(|a| RcptTo {
                    address: a.to_string(),
                    ..RcptTo::default()
                })
                .collect(),
            helo: "laptop (evil)\r\nX-Injected: 1".into(),
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into(),
            }),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_813_561).unwrap()
    }

    #[test]
    fn date_format() {
        assert_eq!(
            rfc5322_date(OffsetDateTime::from_unix_timestamp(0).unwrap()),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
    }

    #[test]
    fn received_names_tls_login_and_single_recipient() {
        let h = received(
            &env(&["bob@example.org"]),
            "192.0.2.7".parse().unwrap(),
            "mail.isp.example",
            "Q1",
            now(),
        );
        assert!(h.starts_with("Received: from laptopevilX-Injected:1 ([192.0.2.7])\r\n\tby mail.isp.example (portcullis) with ESMTPSA id Q1\r\n"), "{h}");
        assert!(
            h.contains("(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)"),
            "{h}"
        );
        assert!(h.contains("(authenticated as ann)"), "{h}");
        assert!(h.contains("for <bob@example.org>; "), "{h}");
        assert_eq!(h.matches("\r\n").count(), h.lines().count());
        let h = received(
            &env(&["a@x.example", "b@x.example"]),
            "2001:db8::1".parse().unwrap(),
            "m",
            "Q2",
            now(),
        );
        assert!(!h.contains("for <"), "Bcc stays private: {h}");
    }

    #[test]
    fn adds_missing_date_and_message_id_only() {
        let e = env(&["b@x.example"]);
        let ip = "192.0.2.7".parse().unwrap();
        let out = finalize(
            &e,
            b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
            ip,
            "m.example",
            "Q1",
            now(),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\r\nDate: ") && text.contains("\r\nMessage-ID: <Q1."),
            "{text}"
        );
        assert!(text.ends_with("Subject: hi\r\n\r\nbody\r\n"));
        let out = finalize(
            &e,
            b"DATE: x\r\nmessage-id: <a@b>\r\n\r\nbody\r\n".to_vec(),
            ip,
            "m",
            "Q1",
            now(),
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.matches("Date: ").count() + text.matches("DATE: ").count(),
            1,
            "{text}"
        );
        assert!(!text.contains("Message-ID: <Q1"), "{text}");
        // Headers after the body separator do not count.
        let out = finalize(
            &e,
            b"Subject: a\r\n\r\nDate: in body\r\n".to_vec(),
            ip,
            "m",
            "Q1",
            now(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap().matches("Date: ").count(),
            2,
            "ours and the body's"
        );
    }

    #[test]
    fn headerless_text_gets_a_separator() {
        let out = finalize(
            &env(&["b@x.example"]),
            b"just text\r\n".to_vec(),
            "192.0.2.7".parse().unwrap(),
            "m",
            "Q1",
            now(),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(">\r\n\r\njust text\r\n"), "{text}");
    }
}
