//! The customer notices: what happened, what evidence (never who complained), how to
//! clean a PC, how to get port 25 back. Plain words, plain text.
//!
//! Pure text composition; `engine` stores the notice and hands it to the mail queue.

use policy::Timestamp;

/// Which notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// Port 25 was closed again after abuse.
    Reinstated,
    /// Port 25 is blocked, yet a device keeps trying it.
    Infection,
    /// Sending through the submission server is suspended.
    Suspended,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Reinstated => "reinstated",
            NoticeKind::Infection => "infection",
            NoticeKind::Suspended => "suspended",
        }
    }
}

/// One line of evidence as the customer may see it: what, from which of their
/// addresses, when. Built from our own records, without the complainant's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceLine {
    pub what: String,
    pub ip: Option<String>,
    pub at: Timestamp,
}

const CLEAN_PC: &str = "\
How to clean your computers:
  1. Update the operating system and every program, then restart.
  2. Run a full scan with an up-to-date antivirus program on every computer,
     phone and tablet on your connection; remove what it finds.
  3. Change the passwords of your email accounts and of your router, from a
     computer you have cleaned.
  4. If you run a mail server, make sure it is not an open relay and that its
     accounts have strong passwords.";

/// The subject and body of a notice to `login`.
pub fn compose(
    kind: NoticeKind,
    login: &str,
    reason: &str,
    evidence: &[EvidenceLine],
) -> (String, String) {
    let mut ev = String::new();
    for e in evidence.iter().take(20) {
        let ip =
            e.ip.as_deref()
                .map(|i| format!(" from {i}"))
                .unwrap_or_default();
        ev.push_str(&format!("  - {}: {}{}\n", e.at, e.what, ip));
    }
    if evidence.len() > 20 {
        ev.push_str(&format!("  - and {} more\n", evidence.len() - 20));
    }
    if ev.is_empty() {
        ev.push_str("  - see your account in the customer portal\n");
    }
    let (subject, what, back) = match kind {
        NoticeKind::Reinstated => (
            "Outgoing port 25 blocked again on your connection",
            format!(
                "We have blocked outgoing connections to port 25 (direct mail delivery) from your \
connection again, because we detected spam or abuse from it: {reason}."
            ),
            "How to get port 25 back: once your computers are clean, contact our abuse desk and \
tell us what you found and fixed; an operator re-opens the port. Until then, send your mail \
through our submission server (port 587 or 465, with your usual login): it keeps working."
                .to_string(),
        ),
        NoticeKind::Infection => (
            "A device on your connection seems infected",
            format!(
                "Outgoing port 25 is blocked on your connection, yet a device on it keeps trying to \
send mail directly to many mail servers: {reason}. This is what infected computers do."
            ),
            "Port 25 stays blocked; your normal mail through our submission server (port 587 or 465) \
is not affected. If you need port 25 for your own mail server, clean your computers first, then \
request an opt-out in the customer portal."
                .to_string(),
        ),
        NoticeKind::Suspended => (
            "Sending mail from your account is suspended",
            format!(
                "We suspended sending mail through our submission server with your login, because \
it was used in a way that looks like someone else has your password: {reason}."
            ),
            "How to send again: change your password in the customer portal from a clean computer \
(this lifts the suspension), or contact our abuse desk."
                .to_string(),
        ),
    };
    let body = format!(
        "Hello {login},\n\n{what}\n\nWhat we saw:\n{ev}\n{CLEAN_PC}\n\n{back}\n\n\
This is an automatic message from your Internet provider's abuse desk.\n"
    );
    (subject.to_string(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reinstated_notice_says_what_why_how() {
        let (subject, body) = compose(
            NoticeKind::Reinstated,
            "alice",
            "1 complaint(s) within 7d",
            &[EvidenceLine {
                what: "spam complaint (abuse)".into(),
                ip: Some("100.64.1.5".into()),
                at: Timestamp(1_795_000_000),
            }],
        );
        assert!(subject.contains("port 25"));
        assert!(body.contains("Hello alice"));
        assert!(body.contains("from 100.64.1.5"));
        assert!(body.contains("antivirus"));
        assert!(body.contains("get port 25 back"));
    }
}
