//! Counters of the submission server, for `/metrics` (the portal renders them with
//! [`SubmissionMetrics::render`]). One process-wide set, [`metrics()`]: lock-free
//! atomics bumped on the hot path, read at any time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::response::Reply;

/// Why a command or message was refused, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// MAIL or AUTH without TLS or AUTH (530 5.7.0).
    NoAuth,
    /// Sender not owned by the login (553 5.7.1).
    Sender,
    /// Message too big (552 5.3.4).
    Size,
    /// Too many recipients in one message (452 4.5.3).
    Recipients,
    /// Hourly or daily quota (450 4.7.1).
    Quota,
    /// Bare CR or LF in DATA (550 5.5.2).
    BareNewline,
    /// Unknown commands, syntax and sequencing errors, over-long lines.
    Protocol,
    /// Too many errors in one session, or a timeout (421).
    Dropped,
    /// The per-address or total connection limit.
    Connections,
    /// Could not make the message durable (451 4.3.0).
    QueueError,
    Other,
}

impl Rejection {
    const ALL: [Rejection; 11] = [
        Rejection::NoAuth,
        Rejection::Sender,
        Rejection::Size,
        Rejection::Recipients,
        Rejection::Quota,
        Rejection::BareNewline,
        Rejection::Protocol,
        Rejection::Dropped,
        Rejection::Connections,
        Rejection::QueueError,
        Rejection::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::NoAuth => "no_auth",
            Rejection::Sender => "sender_not_owned",
            Rejection::Size => "size",
            Rejection::Recipients => "too_many_recipients",
            Rejection::Quota => "quota",
            Rejection::BareNewline => "bare_newline",
            Rejection::Protocol => "protocol",
            Rejection::Dropped => "dropped",
            Rejection::Connections => "connections",
            Rejection::QueueError => "queue_error",
            Rejection::Other => "other",
        }
    }

    /// Classifies an error reply; authentication failures are counted apart.
    pub fn of(reply: &Reply) -> Option<Rejection> {
        let e = reply.enhanced.map(|e| (e.0, e.1, e.2));
        Some(match (reply.code, e) {
            (535, _) | (454, _) | (334, _) => return None,
            (530, _) => Rejection::NoAuth,
            (553, Some((5, 7, 1))) => Rejection::Sender,
            (552, _) => Rejection::Size,
            (452, Some((4, 5, 3))) => Rejection::Recipients,
            (450, Some((4, 7, 1))) => Rejection::Quota,
            (550, Some((5, 5, 2))) => Rejection::BareNewline,
            (421, _) => Rejection::Dropped,
            (451, _) => Rejection::QueueError,
            (500..=504, _) | (555, _) | (553, _) => Rejection::Protocol,
            (c, _) if c < 400 => return None,
            _ => Rejection::Other,
        })
    }
}

/// The counters. Every field is monotonic except `sessions_active`.
#[derive(Debug)]
pub struct SubmissionMetrics {
    pub sessions: AtomicU64,
    pub sessions_active: AtomicU64,
    pub tls_handshakes_ok: AtomicU64,
    pub tls_handshakes_failed: AtomicU64,
    pub auth_ok: AtomicU64,
    pub auth_failed: AtomicU64,
    pub auth_locked: AtomicU64,
    pub messages_accepted: AtomicU64,
    pub bytes_accepted: AtomicU64,
    pub recipients_accepted: AtomicU64,
    rejected: [AtomicU64; 11],
}

static METRICS: SubmissionMetrics = SubmissionMetrics::new();

/// The process-wide counters of the submission server.
pub fn metrics() -> &'static SubmissionMetrics {
    &METRICS
}

impl Default for SubmissionMetrics {
    fn default() -> Self {
        SubmissionMetrics::new()
    }
}

impl SubmissionMetrics {
    pub const fn new() -> SubmissionMetrics {
        SubmissionMetrics {
            sessions: AtomicU64::new(0),
            sessions_active: AtomicU64::new(0),
            tls_handshakes_ok: AtomicU64::new(0),
            tls_handshakes_failed: AtomicU64::new(0),
            auth_ok: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
            auth_locked: AtomicU64::new(0),
            messages_accepted: AtomicU64::new(0),
            bytes_accepted: AtomicU64::new(0),
            recipients_accepted: AtomicU64::new(0),
            rejected: [const { AtomicU64::new(0) }; 11],
        }
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reject(&self, why: Rejection) {
        Self::inc(&self.rejected[why as usize]);
    }

    pub fn rejected(&self, why: Rejection) -> u64 {
        self.rejected[why as usize].load(Ordering::Relaxed)
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP portcullis_submission_{name} {help}");
            let _ = writeln!(out, "# TYPE portcullis_submission_{name} {kind}");
            let _ = writeln!(
                out,
                "portcullis_submission_{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        one(
            "sessions_total",
            "counter",
            "SMTP sessions accepted.",
            &self.sessions,
        );
        one(
            "sessions_active",
            "gauge",
            "SMTP sessions open now.",
            &self.sessions_active,
        );
        one(
            "tls_handshakes_ok_total",
            "counter",
            "TLS handshakes completed.",
            &self.tls_handshakes_ok,
        );
        one(
            "tls_handshakes_failed_total",
            "counter",
            "TLS handshakes failed.",
            &self.tls_handshakes_failed,
        );
        one(
            "auth_ok_total",
            "counter",
            "Successful logins.",
            &self.auth_ok,
        );
        one(
            "auth_failed_total",
            "counter",
            "Failed logins.",
            &self.auth_failed,
        );
        one(
            "auth_locked_total",
            "counter",
            "Logins refused by the failed-login lock.",
            &self.auth_locked,
        );
        one(
            "messages_accepted_total",
            "counter",
            "Messages queued.",
            &self.messages_accepted,
        );
        one(
            "bytes_accepted_total",
            "counter",
            "Bytes of queued messages.",
            &self.bytes_accepted,
        );
        one(
            "recipients_accepted_total",
            "counter",
            "Recipients of queued messages.",
            &self.recipients_accepted,
        );
        let _ = writeln!(
            out,
            "# HELP portcullis_submission_rejected_total Refused commands and messages, by reason."
        );
        let _ = writeln!(out, "# TYPE portcullis_submission_rejected_total counter");
        for r in Rejection::ALL {
            let _ = writeln!(
                out,
                "portcullis_submission_rejected_total{{reason=\"{}\"}} {}",
                r.label(),
                self.rejected(r)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response;

    #[test]
    fn classifies_replies() {
        assert_eq!(
            Rejection::of(&response::tls_required()),
            Some(Rejection::NoAuth)
        );
        assert_eq!(
            Rejection::of(&response::sender_not_owned("a@b", "l")),
            Some(Rejection::Sender)
        );
        assert_eq!(
            Rejection::of(&response::bare_lf()),
            Some(Rejection::BareNewline)
        );
        assert_eq!(
            Rejection::of(&response::unknown_command()),
            Some(Rejection::Protocol)
        );
        assert_eq!(Rejection::of(&response::auth_failed()), None);
        assert_eq!(Rejection::of(&response::ok()), None);
    }

    #[test]
    fn renders_prometheus_text() {
        let m = SubmissionMetrics::new();
        SubmissionMetrics::inc(&m.auth_ok);
        m.reject(Rejection::Size);
        let text = m.render();
        assert!(
            text.contains("portcullis_submission_auth_ok_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_submission_rejected_total{reason=\"size\"} 1\n"),
            "{text}"
        );
    }
}
