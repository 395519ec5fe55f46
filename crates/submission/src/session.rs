//! The SMTP submission session as a state machine without I/O: bytes in
//! ([`Session::receive`]), replies out ([`Session::take_output`]), and [`Step`]s for what
//! only the outside world can do (a TLS handshake, checking a password, queueing a
//! message), whose results are fed back. The tokio layer in `server` only moves bytes,
//! so every rule here is tested without a socket.
//!
//! The session never buffers more than one command line (`max_line`) plus one read: a
//! longer line is discarded as it arrives and answered `500 5.5.2`; DATA and BDAT
//! bodies stream into the message, bounded by the size limit.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use config::SenderPolicy;
use policy::Subscriber;

use crate::data::{DataOutcome, DataReader};
use crate::metrics::{metrics, Rejection};
use crate::request::{self, Command, MailFrom, Mechanism, RcptTo};
use crate::response::{self, Reply};
use crate::throttle::Quota;

/// What a session needs to know about the server.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_size: u64,
    pub sender_policy: SenderPolicy,
    pub recipients_per_message: u32,
    /// Errors (4xx/5xx replies) before the session is ended with `421`.
    pub max_errors: u32,
    /// Longest command line accepted, without CRLF.
    pub max_line: usize,
}

/// The negotiated TLS parameters, for the Received header and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`
    pub cipher: String,
}

/// Credentials from AUTH, for the backend to check.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: Mechanism,
    pub login: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// The backend's verdict on [`Credentials`].
#[derive(Clone, Debug)]
pub enum AuthOutcome {
    /// Logged in; `subscriber` is the store's record (absent for a RADIUS-only user).
    Success {
        login: String,
        subscriber: Option<Box<Subscriber>>,
    },
    /// Unknown login, wrong password or suspended: `535 5.7.8`.
    Failed,
    /// Too many failures: `454 4.7.0`.
    Locked,
    /// The backend could not answer: `454 4.7.0`.
    Unavailable,
}

/// A message ready to be queued: who sent it, to whom, and how it arrived.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub login: String,
    pub mail_from: MailFrom,
    pub recipients: Vec<RcptTo>,
    pub helo: String,
    pub tls: Option<TlsInfo>,
}

/// What the session needs from the outside world before it can go on.
#[derive(Debug)]
pub enum Step {
    /// Flush the output and read more input.
    NeedInput,
    /// Flush the output (`220 2.0.0 Ready to start TLS`), then do the handshake and
    /// call [`Session::tls_started`]; close if it fails.
    StartTls,
    /// Check the credentials and call [`Session::auth_done`].
    Authenticate(Credentials),
    /// Make the message durable and call [`Session::queued`].
    Queue(Box<Envelope>, Vec<u8>),
    /// Flush the output and close the connection.
    Close,
}

struct Authenticated {
    login: String,
    subscriber: Option<Box<Subscriber>>,
}

struct Transaction {
    mail: MailFrom,
    recipients: Vec<RcptTo>,
    /// BDAT chunks so far; `Some` once the first BDAT came.
    chunks: Option<Vec<u8>>,
}

enum Phase {
    Command,
    Data(DataReader),
    /// Inside a BDAT chunk: `remaining` octets still to read; `refusal` is the reply
    /// owed when the chunk cannot be accepted (its octets are read all the same).
    Bdat {
        size: u64,
        remaining: u64,
        last: bool,
        refusal: Option<Reply>,
    },
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword {
        login: String,
    },
    /// Waiting for the outside world ([`Step`]); input stays buffered.
    Waiting,
}

/// One SMTP session.
pub struct Session {
    cfg: Arc<SessionConfig>,
    quota: Arc<Quota>,
    input: Vec<u8>,
    output: Vec<u8>,
    phase: Phase,
    /// Inside an over-long command line: drop input until its end.
    discarding: bool,
    helo: Option<String>,
    tls: Option<TlsInfo>,
    auth: Option<Authenticated>,
    tx: Option<Transaction>,
    errors: u32,
    closing: bool,
    /// Recipients of the message handed out for queueing, counted when it is queued.
    queued_recipients: u32,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl Session {
    /// A new session; the greeting is already in the output. `tls` is set for
    /// implicit TLS (port 465).
    pub fn new(cfg: Arc<SessionConfig>, quota: Arc<Quota>, tls: Option<TlsInfo>) -> Session {
        let mut s = Session {
            cfg,
            quota,
            input: Vec::new(),
            output: Vec::new(),
            phase: Phase::Command,
            discarding: false,
            helo: None,
            tls,
            auth: None,
            tx: None,
            errors: 0,
            closing: false,
            queued_recipients: 0,
        };
        s.reply(response::greeting(&s.cfg.hostname));
        s
    }

    /// Adds bytes read from the client.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.discarding && !matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. }) {
            // Keep only what follows the end of the over-long line.
            if let Some(i) = bytes.iter().position(|&b| b == b'\n') {
                self.input.push(b'\n');
                self.input.extend_from_slice(&bytes[i + 1..]);
            }
            return;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Replies to send, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The authenticated login, if any.
    pub fn login(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.login.as_str())
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Inside a DATA or BDAT body, where bytes flow without replies.
    pub fn in_body(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. })
    }

    fn reply(&mut self, r: Reply) {
        r.write_to(&mut self.output);
    }

    /// An error reply; too many end the session.
    fn error(&mut self, r: Reply) {
        tracing::debug!(reply = %r, "refused");
        if let Some(why) = Rejection::of(&r) {
            metrics().reject(why);
        }
        self.reply(r);
        self.errors += 1;
        if self.errors >= self.cfg.max_errors && !self.closing {
            metrics().reject(Rejection::Dropped);
            self.reply(response::too_many_errors());
            self.closing = true;
        }
    }

    /// The idle or session timeout expired.
    pub fn timed_out(&mut self) {
        self.reply(response::timeout(&self.cfg.hostname));
        self.closing = true;
    }

    /// The TLS handshake after STARTTLS succeeded: the session starts over (RFC 3207
    /// section 4.2), the client must EHLO again.
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = None;
        self.tx = None;
        self.input.clear();
        self.phase = Phase::Command;
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The verdict on the credentials handed out with [`Step::Authenticate`].
    pub fn auth_done(&mut self, outcome: AuthOutcome) {
        self.phase = Phase::Command;
        match outcome {
            AuthOutcome::Success { login, subscriber } => {
                self.auth = Some(Authenticated { login, subscriber });
                self.reply(response::auth_ok());
            }
            AuthOutcome::Failed => self.error(response::auth_failed()),
            AuthOutcome::Locked => self.error(response::auth_locked()),
            AuthOutcome::Unavailable => self.error(response::auth_unavailable()),
        }
    }

    /// The result of queueing the message handed out with [`Step::Queue`].
    pub fn queued(&mut self, result: Result<String, Reply>) {
        self.phase = Phase::Command;
        match result {
            Ok(id) => {
                if let Some(a) = &self.auth {
                    self.quota.record(&a.login, self.queued_recipients);
                }
                self.errors = 0;
                self.reply(response::queued(&id));
            }
            Err(r) => self.error(r),
        }
    }

    /// Runs the protocol over the buffered input until it needs more input or the
    /// outside world.
    pub fn advance(&mut self) -> Step {
        loop {
            if self.closing {
                return Step::Close;
            }
            match &mut self.phase {
                Phase::Waiting => return Step::NeedInput,
                Phase::Data(reader) => {
                    let (n, end) = reader.feed(&self.input);
                    self.input.drain(..n);
                    let Some(outcome) = end else {
                        return Step::NeedInput;
                    };
                    let Phase::Data(reader) = std::mem::replace(&mut self.phase, Phase::Command)
                    else {
                        unreachable!("phase checked above")
                    };
                    match outcome {
                        DataOutcome::Complete => {
                            if let Some(step) = self.finish(reader.into_body()) {
                                return step;
                            }
                        }
                        DataOutcome::TooBig => self.abort(response::message_too_big()),
                        DataOutcome::BareLf => self.abort(response::bare_lf()),
                        DataOutcome::BareCr => self.abort(response::bare_cr()),
                    }
                }
                Phase::Bdat { remaining, .. } => {
                    let take = (*remaining).min(self.input.len() as u64) as usize;
                    *remaining -= take as u64;
                    let done = *remaining == 0;
                    let max = self.cfg.max_message_size as usize;
                    let mut too_big = false;
                    if let Some(chunks) = self.tx.as_mut().and_then(|t| t.chunks.as_mut()) {
                        if chunks.len() + take > max {
                            too_big = true;
                        } else {
                            chunks.extend_from_slice(&self.input[..take]);
                        }
                    }
                    self.input.drain(..take);
                    if too_big {
                        if let Phase::Bdat { refusal, .. } = &mut self.phase {
                            refusal.get_or_insert_with(response::message_too_big);
                        }
                        // Nothing more is kept of this message.
                        self.tx = None;
                    }
                    if !done {
                        return Step::NeedInput;
                    }
                    let Phase::Bdat {
                        size,
                        last,
                        refusal,
                        ..
                    } = std::mem::replace(&mut self.phase, Phase::Command)
                    else {
                        unreachable!("phase checked above")
                    };
                    match refusal {
                        Some(r) => self.abort(r),
                        None if last => {
                            let body = self
                                .tx
                                .as_mut()
                                .and_then(|t| t.chunks.take())
                                .unwrap_or_default();
                            if let Some(step) = self.finish(body) {
                                return step;
                            }
                        }
                        None => self.reply(response::chunk_ok(size)),
                    }
                }
                Phase::Command
                | Phase::AuthPlain
                | Phase::AuthLoginUser
                | Phase::AuthLoginPassword { .. } => {
                    let Some(line) = self.next_line() else {
                        return Step::NeedInput;
                    };
                    let step = match std::mem::replace(&mut self.phase, Phase::Command) {
                        Phase::Command => self.command(&line),
                        Phase::AuthPlain => self.auth_plain(&line),
                        Phase::AuthLoginUser => self.auth_login_user(&line),
                        Phase::AuthLoginPassword { login } => {
                            self.auth_login_password(login, &line)
                        }
                        _ => None,
                    };
                    if let Some(step) = step {
                        return step;
                    }
                }
            }
        }
    }

    /// The next complete line without its ending; over-long lines are answered here.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let Some(pos) = self.input.iter().position(|&b| b == b'\n') else {
                if self.input.len() > self.cfg.max_line {
                    self.discarding = true;
                    self.input.clear();
                }
                return None;
            };
            let mut line: Vec<u8> = self.input.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if self.discarding || line.len() > self.cfg.max_line {
                self.discarding = false;
                self.error(response::line_too_long());
                if self.closing {
                    return None;
                }
                continue;
            }
            return Some(line);
        }
    }

    /// Ends the transaction with an error reply.
    fn abort(&mut self, r: Reply) {
        self.tx = None;
        self.error(r);
    }

    /// A complete body: hand the message out for queueing.
    fn finish(&mut self, body: Vec<u8>) -> Option<Step> {
        let tx = self.tx.take()?;
        let auth = self.auth.as_ref()?;
        self.queued_recipients = tx.recipients.len() as u32;
        self.phase = Phase::Waiting;
        Some(Step::Queue(
            Box::new(Envelope {
                login: auth.login.clone(),
                mail_from: tx.mail,
                recipients: tx.recipients,
                helo: self.helo.clone().unwrap_or_default(),
                tls: self.tls.clone(),
            }),
            body,
        ))
    }

    fn capabilities(&self) -> Vec<String> {
        let mut caps = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.cfg.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if self.tls.is_none() {
            caps.push("STARTTLS".into());
        } else {
            // Only over TLS: never invite a password in the clear.
            caps.push("AUTH PLAIN LOGIN".into());
        }
        caps
    }

    fn command(&mut self, line: &[u8]) -> Option<Step> {
        let cmd = match request::parse(line) {
            Ok(c) => c,
            Err(e) => {
                self.error(e.reply());
                return None;
            }
        };
        match cmd {
            Command::Ehlo(name) => {
                self.helo = Some(name);
                self.tx = None;
                let caps = self.capabilities();
                self.reply(response::ehlo(&self.cfg.hostname, caps));
            }
            Command::Helo(name) => {
                self.helo = Some(name);
                self.tx = None;
                self.reply(response::helo(&self.cfg.hostname));
            }
            Command::StartTls => {
                if self.tls.is_some() {
                    self.error(response::bad_sequence("TLS already active"));
                } else {
                    self.reply(response::ready_tls());
                    // Plaintext pipelined after STARTTLS must not run inside TLS
                    // (the 2011 STARTTLS command injection).
                    self.input.clear();
                    self.phase = Phase::Waiting;
                    return Some(Step::StartTls);
                }
            }
            Command::Auth { mechanism, initial } => {
                if self.tls.is_none() {
                    self.error(response::tls_required());
                } else if self.auth.is_some() {
                    self.error(response::bad_sequence("already authenticated"));
                } else if self.helo.is_none() {
                    self.error(response::bad_sequence("send EHLO first"));
                } else if self.tx.is_some() {
                    self.error(response::bad_sequence("MAIL transaction in progress"));
                } else {
                    return match (mechanism, initial) {
                        (Mechanism::Plain, None) => {
                            self.phase = Phase::AuthPlain;
                            self.reply(response::auth_challenge(""));
                            None
                        }
                        (Mechanism::Plain, Some(ir)) => self.auth_plain(ir.as_bytes()),
                        (Mechanism::Login, None) => {
                            self.phase = Phase::AuthLoginUser;
                            self.reply(response::auth_challenge("VXNlcm5hbWU6"));
                            None
                        }
                        (Mechanism::Login, Some(ir)) => self.auth_login_user(ir.as_bytes()),
                    };
                }
            }
            Command::Mail(mail) => self.mail(mail),
            Command::Rcpt(rcpt) => self.rcpt(rcpt),
            Command::Data => match &self.tx {
                None => self.error(response::bad_sequence("need MAIL command")),
                Some(t) if t.chunks.is_some() => {
                    self.error(response::bad_sequence("DATA after BDAT"))
                }
                Some(t) if t.recipients.is_empty() => self.error(response::no_valid_recipients()),
                Some(_) => {
                    self.phase = Phase::Data(DataReader::new(self.cfg.max_message_size as usize));
                    self.reply(response::start_data());
                }
            },
            Command::Bdat { size, last } => {
                // The chunk's octets follow whatever we answer; they are read either way.
                let refusal = match &mut self.tx {
                    None => Some(response::bad_sequence("need MAIL command")),
                    Some(t) if t.recipients.is_empty() => Some(response::no_valid_recipients()),
                    Some(t) => {
                        t.chunks.get_or_insert_with(Vec::new);
                        None
                    }
                };
                self.phase = Phase::Bdat {
                    size,
                    remaining: size,
                    last,
                    refusal,
                };
            }
            Command::Rset => {
                self.tx = None;
                self.reply(response::ok());
            }
            Command::Noop => self.reply(response::ok()),
            Command::Quit => {
                self.reply(response::bye());
                self.closing = true;
            }
            Command::Vrfy => self.reply(response::vrfy()),
            Command::Expn => self.error(response::not_implemented()),
            Command::Help => self.reply(response::help()),
        }
        None
    }

    fn mail(&mut self, mail: MailFrom) {
        if self.helo.is_none() {
            return self.error(response::bad_sequence("send HELO/EHLO first"));
        }
        if self.tls.is_none() {
            return self.error(response::tls_required());
        }
        let Some(auth) = &self.auth else {
            return self.error(response::auth_required());
        };
        if self.tx.is_some() {
            return self.error(response::bad_sequence("nested MAIL command"));
        }
        if mail.size.is_some_and(|s| s > self.cfg.max_message_size) {
            return self.error(response::message_too_big());
        }
        if !mail.smtputf8 && !mail.address.is_ascii() {
            return self.error(response::utf8_undeclared());
        }
        let owned = match self.cfg.sender_policy {
            SenderPolicy::Any => true,
            SenderPolicy::Owned => {
                !mail.address.is_empty()
                    && auth
                        .subscriber
                        .as_ref()
                        .is_some_and(|s| s.owns_sender(&mail.address))
            }
        };
        if !owned {
            let r = response::sender_not_owned(&mail.address, &auth.login);
            return self.error(r);
        }
        if !self.quota.message_allowed(&auth.login) {
            let r = response::hourly_limit(&auth.login);
            return self.error(r);
        }
        self.tx = Some(Transaction {
            mail,
            recipients: Vec::new(),
            chunks: None,
        });
        self.reply(response::sender_ok());
    }

    fn rcpt(&mut self, rcpt: RcptTo) {
        let (Some(tx), Some(auth)) = (&self.tx, &self.auth) else {
            return self.error(response::bad_sequence("need MAIL command"));
        };
        if !tx.mail.smtputf8 && !rcpt.address.is_ascii() {
            return self.error(response::utf8_undeclared());
        }
        if tx.recipients.len() >= self.cfg.recipients_per_message as usize {
            return self.error(response::too_many_recipients());
        }
        if !self
            .quota
            .recipients_allowed(&auth.login, tx.recipients.len() as u32 + 1)
        {
            let r = response::daily_limit(&auth.login);
            return self.error(r);
        }
        if let Some(tx) = &mut self.tx {
            tx.recipients.push(rcpt);
        }
        self.reply(response::recipient_ok());
    }

    fn decode(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        if line == b"*" {
            self.error(response::auth_cancelled());
            return None;
        }
        if line == b"=" {
            return Some(Vec::new());
        }
        match B64.decode(line) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(response::auth_bad_encoding());
                None
            }
        }
    }

    /// `authzid \0 authcid \0 password` (RFC 4616).
    fn auth_plain(&mut self, line: &[u8]) -> Option<Step> {
        let raw = self.decode(line)?;
        let mut parts = raw.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.error(response::auth_bad_encoding());
            return None;
        };
        let (Ok(authz), Ok(login), Ok(password)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(authc),
            std::str::from_utf8(pass),
        ) else {
            self.error(response::auth_bad_encoding());
            return None;
        };
        if login.is_empty() || !authz.is_empty() && authz != login {
            // Acting as another user is not offered.
            self.error(response::auth_failed());
            return None;
        }
        self.phase = Phase::Waiting;
        Some(Step::Authenticate(Credentials {
            mechanism: Mechanism::Plain,
            login: login.into(),
            password: password.into(),
        }))
    }

    fn auth_login_user(&mut self, line: &[u8]) -> Option<Step> {
        let raw = self.decode(line)?;
        match String::from_utf8(raw) {
            Ok(login) if !login.is_empty() => {
                self.phase = Phase::AuthLoginPassword { login };
                self.reply(response::auth_challenge("UGFzc3dvcmQ6"));
            }
            _ => self.error(response::auth_bad_encoding()),
        }
        None
    }

    fn auth_login_password(&mut self, login: String, line: &[u8]) -> Option<Step> {
        let raw = self.decode(line)?;
        let Ok(password) = String::from_utf8(raw) else {
            self.error(response::auth_bad_encoding());
            return None;
        };
        self.phase = Phase::Waiting;
        Some(Step::Authenticate(Credentials {
            mechanism: Mechanism::Login,
            login,
            password,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{FixedClock, Plan, Port25State, Timestamp};

    fn cfg() -> Arc<SessionConfig> {
        Arc::new(SessionConfig {
            hostname: "mail.isp.example".into(),
            max_message_size: 1000,
            sender_policy: SenderPolicy::Owned,
            recipients_per_message: 3,
            max_errors: 10,
            max_line: 100,
        })
    }

    fn quota(per_hour: u32) -> Arc<Quota> {
        let limits = config::SubmissionLimits {
            recipients_per_message: 3,
            messages_per_hour: per_hour,
            recipients_per_day: 5,
        };
        Arc::new(Quota::new(
            Arc::new(FixedClock::at(Timestamp(1_000))),
            &limits,
        ))
    }

    fn subscriber() -> Box<Subscriber> {
        Box::new(Subscriber {
            login: "ann".into(),
            display_name: None,
            email: Some("ann@example.net".into()),
            plan: Plan::Dynamic,
            port25: Port25State::Blocked,
            static_ips: vec![],
            allowed_senders: vec![],
            suspended: false,
            created: Timestamp(0),
            password_hash: None,
        })
    }

    fn tls() -> Option<TlsInfo> {
        Some(TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        })
    }

    /// Feeds `input`, resolving steps like a server whose only password is "pw" and
    /// whose queue numbers messages; returns the output and the queued messages.
    struct Driver {
        s: Session,
        queued: Vec<(Envelope, Vec<u8>)>,
        closed: bool,
        starttls: u32,
    }

    impl Driver {
        fn new(tls: Option<TlsInfo>) -> Driver {
            Driver::with(Session::new(cfg(), quota(100), tls))
        }
        fn with(s: Session) -> Driver {
            Driver {
                s,
                queued: vec![],
                closed: false,
                starttls: 0,
            }
        }
        fn send(&mut self, input: &[u8]) -> String {
            self.s.receive(input);
            self.run()
        }
        fn run(&mut self) -> String {
            loop {
                match self.s.advance() {
                    Step::NeedInput => break,
                    Step::Close => {
                        self.closed = true;
                        break;
                    }
                    Step::StartTls => {
                        self.starttls += 1;
                        self.s.tls_started(tls().unwrap());
                    }
                    Step::Authenticate(c) => {
                        let ok = c.password == "pw";
                        self.s.auth_done(if ok {
                            AuthOutcome::Success {
                                login: c.login,
                                subscriber: Some(subscriber()),
                            }
                        } else {
                            AuthOutcome::Failed
                        });
                    }
                    Step::Queue(env, body) => {
                        self.queued.push((*env, body));
                        let id = format!("Q{}", self.queued.len());
                        self.s.queued(Ok(id));
                    }
                }
            }
            String::from_utf8(self.s.take_output()).unwrap()
        }
        fn logged_in() -> Driver {
            let mut d = Driver::new(tls());
            d.send(b"EHLO c\r\nAUTH PLAIN AGFubgBwdw==\r\n");
            d
        }
    }

    fn codes(out: &str) -> Vec<&str> {
        out.lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| &l[..9.min(l.len())])
            .collect()
    }

    #[test]
    fn greeting_and_ehlo_before_tls() {
        let mut d = Driver::new(None);
        let out = d.send(b"EHLO client.example\r\n");
        assert!(out.starts_with("220 mail.isp.example ESMTP"), "{out}");
        for cap in [
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "DSN",
            "STARTTLS",
        ] {
            assert!(
                out.contains(&format!("250-{cap}\r\n")) || out.contains(&format!("250 {cap}\r\n")),
                "{cap}: {out}"
            );
        }
        assert!(!out.contains("AUTH"), "no AUTH before TLS: {out}");
    }

    #[test]
    fn auth_and_mail_need_tls_first() {
        let mut d = Driver::new(None);
        d.send(b"EHLO c\r\n");
        assert_eq!(
            d.send(b"AUTH PLAIN AGFubgBwdw==\r\n"),
            "530 5.7.0 Must issue a STARTTLS command first\r\n"
        );
        assert_eq!(
            d.send(b"MAIL FROM:<ann@example.net>\r\n"),
            "530 5.7.0 Must issue a STARTTLS command first\r\n"
        );
    }

    #[test]
    fn starttls_restarts_the_session_and_drops_injected_commands() {
        let mut d = Driver::new(None);
        d.send(b"EHLO c\r\n");
        let out = d.send(b"STARTTLS\r\nRSET\r\n");
        assert_eq!(
            out, "220 2.0.0 Ready to start TLS\r\n",
            "the pipelined RSET is dropped"
        );
        assert_eq!(d.starttls, 1);
        assert_eq!(
            d.send(b"MAIL FROM:<ann@example.net>\r\n"),
            "503 5.5.1 Error: send HELO/EHLO first\r\n"
        );
        let out = d.send(b"EHLO c\r\n");
        assert!(
            out.contains("250 AUTH PLAIN LOGIN\r\n") && !out.contains("STARTTLS"),
            "{out}"
        );
        assert_eq!(
            d.send(b"STARTTLS\r\n"),
            "503 5.5.1 Error: TLS already active\r\n"
        );
    }

    #[test]
    fn mail_before_auth_is_refused() {
        let mut d = Driver::new(tls());
        d.send(b"EHLO c\r\n");
        assert_eq!(
            d.send(b"MAIL FROM:<ann@example.net>\r\n"),
            "530 5.7.0 Authentication required\r\n"
        );
    }

    #[test]
    fn auth_plain_login_and_failures() {
        let mut d = Driver::new(tls());
        d.send(b"EHLO c\r\n");
        assert_eq!(
            d.send(b"AUTH PLAIN AGFubgB3cm9uZw==\r\n"),
            "535 5.7.8 Error: authentication failed\r\n"
        );
        assert_eq!(d.send(b"AUTH PLAIN\r\n"), "334 \r\n");
        assert_eq!(d.send(b"*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
        assert_eq!(
            d.send(b"AUTH PLAIN !!!\r\n"),
            "501 5.5.2 Error: invalid base64 or credentials format\r\n"
        );
        assert_eq!(d.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
        assert_eq!(d.send(b"YW5u\r\n"), "334 UGFzc3dvcmQ6\r\n");
        assert_eq!(
            d.send(b"cHc=\r\n"),
            "235 2.7.0 Authentication successful\r\n"
        );
        assert_eq!(d.s.login(), Some("ann"));
        assert_eq!(
            d.send(b"AUTH LOGIN YW5u\r\n"),
            "503 5.5.1 Error: already authenticated\r\n"
        );
        // Another identity (authzid) is refused.
        let mut d = Driver::new(tls());
        d.send(b"EHLO c\r\n");
        let ir = B64.encode(b"bob\0ann\0pw");
        assert_eq!(
            d.send(format!("AUTH PLAIN {ir}\r\n").as_bytes()),
            "535 5.7.8 Error: authentication failed\r\n"
        );
        // LOGIN with an initial response (the user name).
        assert_eq!(d.send(b"AUTH LOGIN YW5u\r\n"), "334 UGFzc3dvcmQ6\r\n");
        assert_eq!(
            d.send(b"cHc=\r\n"),
            "235 2.7.0 Authentication successful\r\n"
        );
    }

    #[test]
    fn a_pipelined_message_is_queued_with_its_envelope() {
        let mut d = Driver::logged_in();
        let out = d.send(
            b"MAIL FROM:<ann@example.net> RET=HDRS ENVID=e1\r\nRCPT TO:<bob@example.org> NOTIFY=FAILURE ORCPT=rfc822;bob@example.org\r\nRCPT TO:<carol@example.org>\r\nDATA\r\nSubject: hi\r\n\r\n..x\r\n.\r\nQUIT\r\n",
        );
        assert_eq!(
            codes(&out),
            [
                "250 2.1.0",
                "250 2.1.5",
                "250 2.1.5",
                "354 2.0.0",
                "250 2.0.0",
                "221 2.0.0"
            ],
            "{out}"
        );
        assert!(out.contains("queued as Q1"));
        assert!(d.closed);
        let (env, body) = &d.queued[0];
        assert_eq!(env.login, "ann");
        assert_eq!(env.mail_from.envid.as_deref(), Some("e1"));
        assert_eq!(env.recipients.len(), 2);
        assert_eq!(env.recipients[0].notify.as_deref(), Some("FAILURE"));
        assert_eq!(env.helo, "c");
        assert_eq!(body, b"Subject: hi\r\n\r\n.x\r\n");
    }

    #[test]
    fn bdat_chunks_make_one_message() {
        let mut d = Driver::logged_in();
        let out = d.send(b"MAIL FROM:<ann@example.net>\r\nRCPT TO:<b@x.example>\r\nBDAT 5\r\nHel\r\nBDAT 3 LAST\r\nlo!NOOP\r\n");
        assert_eq!(
            codes(&out),
            [
                "250 2.1.0",
                "250 2.1.5",
                "250 2.0.0",
                "250 2.0.0",
                "250 2.0.0"
            ],
            "{out}"
        );
        assert!(out.contains("5 octets received"));
        assert_eq!(d.queued[0].1, b"Hel\r\nlo!");
        // BDAT without a transaction: the chunk is still consumed.
        let out = d.send(b"BDAT 4 LAST\r\nRSETNOOP\r\n");
        assert_eq!(codes(&out), ["503 5.5.1", "250 2.0.0"], "{out}");
        // BDAT byte by byte.
        d.send(b"MAIL FROM:<ann@example.net>\r\nRCPT TO:<b@x.example>\r\nBDAT 4 LAST\r\n");
        for b in b"ab\r\n" {
            d.send(std::slice::from_ref(b));
        }
        assert_eq!(d.queued[1].1, b"ab\r\n");
    }

    #[test]
    fn size_limits() {
        let mut d = Driver::logged_in();
        assert_eq!(
            d.send(b"MAIL FROM:<ann@example.net> SIZE=1001\r\n"),
            "552 5.3.4 Error: message size exceeds fixed limit\r\n"
        );
        d.send(b"MAIL FROM:<ann@example.net>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n");
        let mut big = vec![b'x'; 2000];
        big.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(
            d.send(&big),
            "552 5.3.4 Error: message size exceeds fixed limit\r\n"
        );
        d.send(b"MAIL FROM:<ann@example.net>\r\nRCPT TO:<b@x.example>\r\n");
        let out = d.send(&[b"BDAT 2000 LAST\r\n".as_slice(), &[b'y'; 2000], b"NOOP\r\n"].concat());
        assert_eq!(codes(&out), ["552 5.3.4", "250 2.0.0"], "{out}");
        assert!(d.queued.is_empty());
    }

    #[test]
    fn bare_lf_smuggling_is_refused_and_swallowed() {
        let mut d = Driver::logged_in();
        d.send(b"MAIL FROM:<ann@example.net>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n");
        let out = d.send(b"Subject: a\r\n\r\nhi\n.\nMAIL FROM:<ann@example.net>\r\nRCPT TO:<victim@x.example>\r\nDATA\r\nspoofed\r\n.\r\nNOOP\r\n");
        assert_eq!(
            out,
            "550 5.5.2 Error: bare <LF> received\r\n250 2.0.0 Ok\r\n"
        );
        assert!(d.queued.is_empty());
    }

    #[test]
    fn sender_policy_and_recipient_limits() {
        let mut d = Driver::logged_in();
        assert_eq!(
            d.send(b"MAIL FROM:<ceo@bank.example>\r\n"),
            "553 5.7.1 <ceo@bank.example>: Sender address rejected: not owned by user ann\r\n"
        );
        assert_eq!(codes(&d.send(b"MAIL FROM:<>\r\n")), ["553 5.7.1"]);
        d.send(b"MAIL FROM:<Ann@Example.NET>\r\n");
        let out = d.send(b"RCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nRCPT TO:<d@x.example>\r\n");
        assert_eq!(
            codes(&out),
            ["250 2.1.5", "250 2.1.5", "250 2.1.5", "452 4.5.3"],
            "{out}"
        );
        assert_eq!(
            codes(&d.send(b"RCPT TO:<jos\xc3\xa9@x.example>\r\n")),
            ["553 5.6.7"]
        );
    }

    #[test]
    fn hourly_and_daily_quotas() {
        let mut d = Driver::with(Session::new(cfg(), quota(1), tls()));
        d.send(b"EHLO c\r\nAUTH PLAIN AGFubgBwdw==\r\n");
        let out =
            d.send(b"MAIL FROM:<ann@example.net>\r\nRCPT TO:<a@x.example>\r\nDATA\r\nx\r\n.\r\n");
        assert!(out.ends_with("queued as Q1\r\n"), "{out}");
        assert_eq!(
            d.send(b"MAIL FROM:<ann@example.net>\r\n"),
            "450 4.7.1 Error: hourly message limit reached for ann, try again later\r\n"
        );
        // 5 recipients a day: 1 used, so the fifth in this message exceeds it.
        let mut d = Driver::with(Session::new(cfg(), quota(100), tls()));
        d.send(b"EHLO c\r\nAUTH PLAIN AGFubgBwdw==\r\n");
        d.send(b"MAIL FROM:<ann@example.net>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nDATA\r\nx\r\n.\r\n");
        let out = d.send(b"MAIL FROM:<ann@example.net>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n");
        assert_eq!(
            codes(&out),
            ["250 2.1.0", "250 2.1.5", "250 2.1.5", "450 4.7.1"],
            "{out}"
        );
    }

    #[test]
    fn over_long_lines_are_discarded_without_buffering() {
        let mut d = Driver::new(tls());
        d.send(b"EHLO c\r\n");
        for _ in 0..1000 {
            assert_eq!(d.send(&[b'A'; 1024]), "");
            assert!(d.s.input.len() <= 100 + 1024, "bounded buffer");
        }
        assert_eq!(
            d.send(b"\r\nNOOP\r\n"),
            "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"
        );
        // A long line within one read.
        let mut one = vec![b'B'; 500];
        one.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(
            d.send(&one),
            "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"
        );
    }

    #[test]
    fn too_many_errors_end_the_session() {
        let mut d = Driver::new(tls());
        let out = d.send(&b"FOO\r\n".repeat(12));
        assert_eq!(out.matches("500 5.5.2").count(), 10, "{out}");
        assert!(
            out.ends_with("421 4.7.0 Error: too many errors, closing connection\r\n"),
            "{out}"
        );
        assert!(d.closed);
    }

    #[test]
    fn sequencing_errors() {
        let mut d = Driver::logged_in();
        assert_eq!(codes(&d.send(b"RCPT TO:<a@x.example>\r\n")), ["503 5.5.1"]);
        assert_eq!(codes(&d.send(b"DATA\r\n")), ["503 5.5.1"]);
        d.send(b"MAIL FROM:<ann@example.net>\r\n");
        assert_eq!(
            codes(&d.send(b"MAIL FROM:<ann@example.net>\r\n")),
            ["503 5.5.1"]
        );
        assert_eq!(codes(&d.send(b"DATA\r\n")), ["554 5.5.1"]);
        assert_eq!(
            codes(&d.send(b"RSET\r\nVRFY x\r\nEXPN y\r\nHELP\r\n")),
            ["250 2.0.0", "252 2.0.0", "502 5.5.1", "214 2.0.0"]
        );
    }

    #[test]
    fn timeout_says_so_and_closes() {
        let mut d = Driver::new(None);
        d.s.take_output();
        d.s.timed_out();
        assert!(matches!(d.s.advance(), Step::Close));
        assert_eq!(
            String::from_utf8(d.s.take_output()).unwrap(),
            "421 4.4.2 mail.isp.example Error: timeout exceeded\r\n"
        );
    }
}
