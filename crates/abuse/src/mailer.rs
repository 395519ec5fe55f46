//! Renders a customer notice as an RFC 5322 message for the mail queue.
//!
//! Pure; the engine enqueues the bytes.

use policy::Timestamp;

/// The notice as a message: `From: abuse@HOST`, auto-generated (RFC 3834), plain
/// UTF-8 text with CRLF line ends.
pub fn render(from: &str, to: &str, subject: &str, body: &str, id: &str, at: Timestamp) -> Vec<u8> {
    let date = time::OffsetDateTime::from_unix_timestamp(at.0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into());
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut out = String::new();
    out.push_str(&format!("From: Abuse desk <{from}>\r\n"));
    out.push_str(&format!("To: <{to}>\r\n"));
    out.push_str(&format!(
        "Subject: {}\r\n",
        subject.replace(['\r', '\n'], " ")
    ));
    out.push_str(&format!("Date: {date}\r\n"));
    out.push_str(&format!("Message-ID: <{id}.abuse@{domain}>\r\n"));
    out.push_str("Auto-Submitted: auto-generated\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    for line in body.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_headers_and_crlf_body() {
        let m = render(
            "abuse@isp.example",
            "a@b.example",
            "Hi",
            "line1\nline2",
            "ID1",
            Timestamp(0),
        );
        let s = String::from_utf8(m).unwrap();
        assert!(s.starts_with("From: Abuse desk <abuse@isp.example>\r\n"));
        assert!(s.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
        assert!(s.ends_with("\r\n\r\nline1\r\nline2\r\n"));
    }
}
