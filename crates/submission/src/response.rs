//! SMTP replies: a basic code (RFC 5321), an enhanced status code (RFC 3463, RFC 2034)
//! and a human reason, and their wire form. Every reply the server sends is built here,
//! so the catalogue of codes can be read in one place.

use std::fmt;

/// An enhanced status code, `class.subject.detail` (RFC 3463).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply, possibly of several lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Absent only on the greeting and the EHLO/HELO reply (RFC 2034 section 3).
    pub enhanced: Option<Enhanced>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: Enhanced, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    fn plain(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines,
        }
    }

    /// 4xx or 5xx.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the wire form (CRLF-terminated lines, `-` on all but the last).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let text = sanitize(line);
            match self.enhanced {
                Some(e) => {
                    out.extend_from_slice(format!("{}{sep}{e} {text}\r\n", self.code).as_bytes())
                }
                None => out.extend_from_slice(format!("{}{sep}{text}\r\n", self.code).as_bytes()),
            }
        }
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{}\r\n", self.code).as_bytes());
        }
    }

    /// The wire form as a string; for logs and tests.
    pub fn to_wire(&self) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        write!(f, " {}", self.lines.join(" / "))
    }
}

/// Reply text must never carry a line break of its own (reply injection).
fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n') {
        s.replace(['\r', '\n'], " ").into()
    } else {
        s.into()
    }
}

// The catalogue. Basic codes per RFC 5321 section 4.2, enhanced per RFC 3463 and the
// IANA registry; texts close to Postfix's, which mail clients and operators know.

pub fn greeting(hostname: &str) -> Reply {
    Reply::plain(220, vec![format!("{hostname} ESMTP portcullis")])
}

pub fn helo(hostname: &str) -> Reply {
    Reply::plain(250, vec![hostname.to_string()])
}

/// The EHLO reply: `capabilities` after the greeting line.
pub fn ehlo(hostname: &str, capabilities: Vec<String>) -> Reply {
    let mut lines = vec![hostname.to_string()];
    lines.extend(capabilities);
    Reply::plain(250, lines)
}

pub fn ok() -> Reply {
    Reply::new(250, Enhanced(2, 0, 0), "Ok")
}
pub fn sender_ok() -> Reply {
    Reply::new(250, Enhanced(2, 1, 0), "Ok")
}
pub fn recipient_ok() -> Reply {
    Reply::new(250, Enhanced(2, 1, 5), "Ok")
}
pub fn start_data() -> Reply {
    Reply::new(354, Enhanced(2, 0, 0), "End data with <CR><LF>.<CR><LF>")
}
pub fn chunk_ok(octets: u64) -> Reply {
    Reply::new(
        250,
        Enhanced(2, 0, 0),
        format!("Ok: {octets} octets received"),
    )
}
pub fn queued(id: &str) -> Reply {
    Reply::new(250, Enhanced(2, 0, 0), format!("Ok: queued as {id}"))
}
pub fn bye() -> Reply {
    Reply::new(221, Enhanced(2, 0, 0), "Bye")
}
pub fn ready_tls() -> Reply {
    Reply::new(220, Enhanced(2, 0, 0), "Ready to start TLS")
}
pub fn vrfy() -> Reply {
    Reply::new(
        252,
        Enhanced(2, 0, 0),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}
pub fn help() -> Reply {
    Reply::new(214, Enhanced(2, 0, 0), "See RFC 6409 (mail submission)")
}
pub fn auth_challenge(b64: &str) -> Reply {
    Reply::plain(334, vec![b64.to_string()])
}
pub fn auth_ok() -> Reply {
    Reply::new(235, Enhanced(2, 7, 0), "Authentication successful")
}

/// Unknown login and wrong password look the same (no account probing).
pub fn auth_failed() -> Reply {
    Reply::new(535, Enhanced(5, 7, 8), "Error: authentication failed")
}
pub fn auth_locked() -> Reply {
    Reply::new(
        454,
        Enhanced(4, 7, 0),
        "Error: too many failed logins, try again later",
    )
}
pub fn auth_unavailable() -> Reply {
    Reply::new(454, Enhanced(4, 7, 0), "Temporary authentication failure")
}
pub fn auth_cancelled() -> Reply {
    Reply::new(501, Enhanced(5, 0, 0), "Authentication cancelled")
}
pub fn auth_bad_encoding() -> Reply {
    Reply::new(
        501,
        Enhanced(5, 5, 2),
        "Error: invalid base64 or credentials format",
    )
}
pub fn auth_mechanism() -> Reply {
    Reply::new(
        504,
        Enhanced(5, 5, 4),
        "Error: unsupported authentication mechanism (use PLAIN or LOGIN)",
    )
}
pub fn tls_required() -> Reply {
    Reply::new(
        530,
        Enhanced(5, 7, 0),
        "Must issue a STARTTLS command first",
    )
}
pub fn auth_required() -> Reply {
    Reply::new(530, Enhanced(5, 7, 0), "Authentication required")
}
pub fn sender_not_owned(sender: &str, login: &str) -> Reply {
    Reply::new(
        553,
        Enhanced(5, 7, 1),
        format!("<{sender}>: Sender address rejected: not owned by user {login}"),
    )
}
pub fn utf8_undeclared() -> Reply {
    Reply::new(
        553,
        Enhanced(5, 6, 7),
        "Error: a UTF-8 address needs the SMTPUTF8 parameter",
    )
}
pub fn too_many_recipients() -> Reply {
    Reply::new(452, Enhanced(4, 5, 3), "Error: too many recipients")
}
pub fn hourly_limit(login: &str) -> Reply {
    Reply::new(
        450,
        Enhanced(4, 7, 1),
        format!("Error: hourly message limit reached for {login}, try again later"),
    )
}
pub fn daily_limit(login: &str) -> Reply {
    Reply::new(
        450,
        Enhanced(4, 7, 1),
        format!("Error: daily recipient limit reached for {login}, try again later"),
    )
}
pub fn message_too_big() -> Reply {
    Reply::new(
        552,
        Enhanced(5, 3, 4),
        "Error: message size exceeds fixed limit",
    )
}
/// The SMTP-smuggling defence (CVE-2023-51764): Postfix's wording and codes
/// (`smtpd_forbid_bare_newline`, reject code 550, status 5.5.2).
pub fn bare_lf() -> Reply {
    Reply::new(550, Enhanced(5, 5, 2), "Error: bare <LF> received")
}
pub fn bare_cr() -> Reply {
    Reply::new(550, Enhanced(5, 5, 2), "Error: bare <CR> received")
}
pub fn line_too_long() -> Reply {
    Reply::new(500, Enhanced(5, 5, 2), "Error: line too long")
}
pub fn unknown_command() -> Reply {
    Reply::new(500, Enhanced(5, 5, 2), "Error: command not recognized")
}
pub fn not_implemented() -> Reply {
    Reply::new(502, Enhanced(5, 5, 1), "Error: command not implemented")
}
pub fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, Enhanced(5, 5, 1), format!("Error: {text}"))
}
pub fn no_valid_recipients() -> Reply {
    Reply::new(554, Enhanced(5, 5, 1), "Error: no valid recipients")
}
pub fn too_many_errors() -> Reply {
    Reply::new(
        421,
        Enhanced(4, 7, 0),
        "Error: too many errors, closing connection",
    )
}
pub fn timeout(hostname: &str) -> Reply {
    Reply::new(
        421,
        Enhanced(4, 4, 2),
        format!("{hostname} Error: timeout exceeded"),
    )
}
pub fn too_many_connections(hostname: &str) -> Reply {
    Reply::new(
        421,
        Enhanced(4, 7, 0),
        format!("{hostname} Error: too many connections from your address"),
    )
}
pub fn queue_failed() -> Reply {
    Reply::new(
        451,
        Enhanced(4, 3, 0),
        "Error: queue file write error, try again later",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_wire_forms() {
        assert_eq!(
            auth_failed().to_wire(),
            "535 5.7.8 Error: authentication failed\r\n"
        );
        let r = ehlo("mx.example", vec!["PIPELINING".into(), "SIZE 100".into()]);
        assert_eq!(
            r.to_wire(),
            "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
        );
        assert_eq!(greeting("h").to_wire(), "220 h ESMTP portcullis\r\n");
    }

    #[test]
    fn reply_text_cannot_inject_lines() {
        let r = sender_not_owned("a\r\n250 ok@x", "l");
        assert_eq!(r.to_wire().matches("\r\n").count(), 1);
    }

    #[test]
    fn classes_match_basic_codes() {
        for r in [
            auth_failed(),
            auth_locked(),
            tls_required(),
            message_too_big(),
            bare_lf(),
            too_many_recipients(),
            queued("X"),
        ] {
            let e = r.enhanced.unwrap();
            assert_eq!(u16::from(e.0), r.code / 100, "{r}");
        }
    }
}
