//! The SMTP client's I/O layer: a tokio TCP connection, opportunistic STARTTLS with
//! rustls (ring), and the transactions that `protocol` plans and judges. One
//! [`SmtpConnection`] carries several messages in turn (connection reuse); the worker
//! decides which. Every read and write has its RFC 5321 section 4.5.3.2 timeout.
//!
//! Opportunistic TLS (RFC 7435) accepts any certificate, since a verified-or-nothing
//! policy would only push mail to plaintext; the version used is recorded with
//! every attempt. [`TlsMode::Required`] is what MTA-STS `enforce` and DANE ask for;
//! their certificate checks run on [`SmtpConnection::peer_certificates`] after the
//! handshake (`tls_policy`), before any mail is sent. [`SmtpConnection::authenticate`]
//! speaks AUTH PLAIN or LOGIN (RFC 4954) to a smart host, and only over TLS.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::protocol::{
    data_payload, envelope_groups, judge_envelope, plan_mail, Capabilities, EnvelopeCommand,
    EnvelopeVerdict, MessageTraits, Refusal, Reply, ReplyError, ReplyParser, Timeouts,
};

/// The message data is written this much at a time, each write under the data-block
/// timeout (RFC 5321 4.5.3.2.5).
const DATA_BLOCK: usize = 64 * 1024;

/// Whether to use TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS when offered, any certificate; plaintext otherwise.
    Opportunistic,
    /// Never (the retry after a failed opportunistic handshake).
    Disabled,
    /// STARTTLS must be offered and succeed (MTA-STS enforce, DANE); the certificate
    /// is checked by the caller from [`SmtpConnection::peer_certificates`].
    Required,
}

/// A connection-level failure: every recipient of the transaction is deferred.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("timed out waiting for {stage} from {addr}")]
    Timeout {
        addr: SocketAddr,
        stage: &'static str,
    },
    #[error("connection to {addr} failed during {stage}: {source}")]
    Io {
        addr: SocketAddr,
        stage: &'static str,
        source: io::Error,
    },
    #[error("{addr} closed the connection during {stage}")]
    Closed {
        addr: SocketAddr,
        stage: &'static str,
    },
    #[error("{addr} sent a malformed reply: {source}")]
    Protocol {
        addr: SocketAddr,
        source: ReplyError,
    },
    /// The server refused the greeting, EHLO/HELO or STARTTLS.
    #[error("{addr} refused {stage}: {reply}")]
    Refused {
        addr: SocketAddr,
        stage: &'static str,
        reply: Reply,
    },
    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: SocketAddr, reason: String },
    /// AUTH was not attempted: the credentials would have gone out unprotected, or
    /// the server offers no mechanism we speak.
    #[error("{addr}: not sending AUTH: {reason}")]
    AuthUnavailable { addr: SocketAddr, reason: String },
    /// The server refused the credentials (535 and the like).
    #[error("{addr} refused AUTH {mechanism}: {reply}")]
    AuthRefused {
        addr: SocketAddr,
        mechanism: &'static str,
        reply: Reply,
    },
}

impl SessionError {
    /// Whether the failure happened before any message data was sent, so that the
    /// transaction can be repeated on another connection without duplicating.
    pub fn before_data(&self) -> bool {
        match self {
            SessionError::Connect { .. }
            | SessionError::Tls { .. }
            | SessionError::AuthUnavailable { .. }
            | SessionError::AuthRefused { .. } => true,
            SessionError::Timeout { stage, .. }
            | SessionError::Io { stage, .. }
            | SessionError::Closed { stage, .. }
            | SessionError::Refused { stage, .. } => {
                matches!(*stage, "RSET" | "the envelope" | "the reply to MAIL FROM")
            }
            SessionError::Protocol { .. } => false,
        }
    }

    /// A refusal with a 5xx reply at greeting or EHLO: the host will not take mail.
    pub fn permanent_reply(&self) -> Option<&Reply> {
        match self {
            SessionError::Refused { reply, .. } if reply.is_permanent() => Some(reply),
            _ => None,
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only during the STARTTLS swap.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection closed after a failed TLS handshake",
    )
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, b),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// The outcome of one message's transaction on an open connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionResult {
    /// The message cannot go to this server at all (nothing was sent).
    Refused(Refusal),
    /// One reply per recipient, in order: the RCPT reply when refused there, else
    /// the reply to DATA or to the final dot.
    Replies(Vec<Reply>),
}

/// An open SMTP session, greeted and EHLO'd (and TLS'd when possible).
pub struct SmtpConnection {
    stream: Stream,
    parser: ReplyParser,
    addr: SocketAddr,
    timeouts: Timeouts,
    caps: Capabilities,
    tls_version: Option<String>,
    peer_certs: Vec<CertificateDer<'static>>,
    /// A transaction ended without its final reply; RSET before the next.
    dirty: bool,
    /// Messages sent on this connection.
    pub messages: u64,
}

impl SmtpConnection {
    /// Connects to `addr`, reads the greeting, says EHLO as `helo_name` (HELO when
    /// EHLO is refused), and upgrades with STARTTLS per `tls` (SNI: `server_name`).
    pub async fn open(
        addr: SocketAddr,
        server_name: &str,
        helo_name: &str,
        tls: TlsMode,
        tls_config: Arc<rustls::ClientConfig>,
        timeouts: Timeouts,
    ) -> Result<SmtpConnection, SessionError> {
        let tcp = match tokio::time::timeout(timeouts.connect, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(SessionError::Connect { addr, source }),
            Err(_) => {
                return Err(SessionError::Timeout {
                    addr,
                    stage: "connect",
                })
            }
        };
        let _ = tcp.set_nodelay(true);
        let mut c = SmtpConnection {
            stream: Stream::Plain(tcp),
            parser: ReplyParser::new(),
            addr,
            timeouts,
            caps: Capabilities::default(),
            tls_version: None,
            peer_certs: Vec::new(),
            dirty: false,
            messages: 0,
        };
        let greeting = c.read_reply("greeting", timeouts.greeting).await?;
        if greeting.code != 220 {
            return Err(SessionError::Refused {
                addr,
                stage: "the connection (greeting)",
                reply: greeting,
            });
        }
        c.ehlo(helo_name).await?;
        if tls != TlsMode::Disabled && c.caps.starttls {
            c.command("STARTTLS\r\n", "STARTTLS", timeouts.command)
                .await
                .and_then(|r| {
                    if r.code == 220 {
                        Ok(())
                    } else {
                        Err(SessionError::Refused {
                            addr,
                            stage: "STARTTLS",
                            reply: r,
                        })
                    }
                })?;
            c.start_tls(server_name, tls_config).await?;
            c.ehlo(helo_name).await?;
        } else if tls == TlsMode::Required {
            return Err(SessionError::Tls {
                addr,
                reason: "the server does not offer STARTTLS and policy requires TLS".into(),
            });
        }
        Ok(c)
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// `Some("TLSv1.3")` after a successful STARTTLS.
    pub fn tls_version(&self) -> Option<&str> {
        self.tls_version.as_deref()
    }

    /// The server's certificate chain (leaf first), after STARTTLS.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.peer_certs
    }

    pub fn peer(&self) -> SocketAddr {
        self.addr
    }

    async fn ehlo(&mut self, helo_name: &str) -> Result<(), SessionError> {
        let r = self
            .command(
                &format!("EHLO {helo_name}\r\n"),
                "EHLO",
                self.timeouts.command,
            )
            .await?;
        if r.code == 250 {
            self.caps = Capabilities::from_ehlo(&r);
            return Ok(());
        }
        let r = self
            .command(
                &format!("HELO {helo_name}\r\n"),
                "HELO",
                self.timeouts.command,
            )
            .await?;
        if r.code == 250 {
            self.caps = Capabilities::default();
            Ok(())
        } else {
            Err(SessionError::Refused {
                addr: self.addr,
                stage: "EHLO and HELO",
                reply: r,
            })
        }
    }

    async fn start_tls(
        &mut self,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<(), SessionError> {
        let addr = self.addr;
        if self.parser.buffered() > 0 {
            // RFC 3207 5: anything pipelined after the STARTTLS reply is an injection.
            return Err(SessionError::Tls {
                addr,
                reason: "the server sent data after its STARTTLS reply".into(),
            });
        }
        let tcp = match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(tcp) => tcp,
            other => {
                self.stream = other;
                return Ok(());
            }
        };
        let name = ServerName::try_from(server_name.to_string())
            .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
        let connector = TlsConnector::from(config);
        let tls =
            match tokio::time::timeout(self.timeouts.command, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    return Err(SessionError::Tls {
                        addr,
                        reason: e.to_string(),
                    })
                }
                Err(_) => {
                    return Err(SessionError::Timeout {
                        addr,
                        stage: "the TLS handshake",
                    })
                }
            };
        let session = tls.get_ref().1;
        self.tls_version = session.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        });
        self.peer_certs = session
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    async fn write(
        &mut self,
        data: &[u8],
        stage: &'static str,
        limit: Duration,
    ) -> Result<(), SessionError> {
        let addr = self.addr;
        match tokio::time::timeout(limit, self.stream.write_all(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(SessionError::Io {
                addr,
                stage,
                source,
            }),
            Err(_) => Err(SessionError::Timeout { addr, stage }),
        }
    }

    async fn flush(&mut self, stage: &'static str, limit: Duration) -> Result<(), SessionError> {
        let addr = self.addr;
        match tokio::time::timeout(limit, self.stream.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(SessionError::Io {
                addr,
                stage,
                source,
            }),
            Err(_) => Err(SessionError::Timeout { addr, stage }),
        }
    }

    async fn read_reply(
        &mut self,
        stage: &'static str,
        limit: Duration,
    ) -> Result<Reply, SessionError> {
        let addr = self.addr;
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0u8; 8192];
        loop {
            match self.parser.next_reply() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(source) => return Err(SessionError::Protocol { addr, source }),
            }
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) => return Err(SessionError::Closed { addr, stage }),
                Ok(Ok(n)) => n,
                Ok(Err(source)) => {
                    return Err(SessionError::Io {
                        addr,
                        stage,
                        source,
                    })
                }
                Err(_) => return Err(SessionError::Timeout { addr, stage }),
            };
            self.parser.feed(&buf[..n]);
        }
    }

    async fn command(
        &mut self,
        line: &str,
        stage: &'static str,
        limit: Duration,
    ) -> Result<Reply, SessionError> {
        self.write(line.as_bytes(), stage, limit).await?;
        self.flush(stage, limit).await?;
        self.read_reply(stage, limit).await
    }

    /// Authenticates with AUTH PLAIN (or LOGIN when only that is offered, RFC 4954).
    /// Refuses to send credentials on a connection without TLS.
    pub async fn authenticate(&mut self, user: &str, password: &str) -> Result<(), SessionError> {
        let addr = self.addr;
        if self.tls_version.is_none() {
            return Err(SessionError::AuthUnavailable {
                addr,
                reason: "the connection is not encrypted (the server offered no STARTTLS); credentials are never sent in clear".into(),
            });
        }
        let offers = |m: &str| self.caps.auth.iter().any(|a| a == m);
        let limit = self.timeouts.command;
        let (mechanism, reply) = if offers("PLAIN") {
            let token = B64.encode(format!("\0{user}\0{password}"));
            let r = self
                .command(&format!("AUTH PLAIN {token}\r\n"), "AUTH", limit)
                .await?;
            ("PLAIN", r)
        } else if offers("LOGIN") {
            let mut r = self.command("AUTH LOGIN\r\n", "AUTH", limit).await?;
            for secret in [user, password] {
                if r.code != 334 {
                    break;
                }
                r = self
                    .command(&format!("{}\r\n", B64.encode(secret)), "AUTH", limit)
                    .await?;
            }
            ("LOGIN", r)
        } else {
            return Err(SessionError::AuthUnavailable {
                addr,
                reason: format!(
                    "the server offers neither AUTH PLAIN nor LOGIN (offers: {})",
                    if self.caps.auth.is_empty() {
                        "none".to_string()
                    } else {
                        self.caps.auth.join(" ")
                    }
                ),
            });
        };
        if reply.code == 235 {
            Ok(())
        } else {
            Err(SessionError::AuthRefused {
                addr,
                mechanism,
                reply,
            })
        }
    }

    /// Sends one message to `rcpts`. Connection-level failures are errors (the
    /// connection must then be dropped); everything the server said is in the result.
    pub async fn send(
        &mut self,
        mail_from: &str,
        rcpts: &[String],
        traits: &MessageTraits,
        body: &[u8],
    ) -> Result<TransactionResult, SessionError> {
        let params = match plan_mail(&self.caps, traits) {
            Ok(p) => p,
            Err(refusal) => return Ok(TransactionResult::Refused(refusal)),
        };
        if self.dirty {
            let r = self
                .command("RSET\r\n", "RSET", self.timeouts.command)
                .await?;
            if !r.is_positive() {
                return Err(SessionError::Refused {
                    addr: self.addr,
                    stage: "RSET",
                    reply: r,
                });
            }
            self.dirty = false;
        }
        self.dirty = true;
        let groups = envelope_groups(mail_from, &params, rcpts, self.caps.pipelining);
        let mut replies: Vec<Reply> = Vec::with_capacity(rcpts.len() + 2);
        let mut accepted = 0usize;
        'groups: for group in &groups {
            let mut wire = String::new();
            for c in group {
                wire.push_str(&c.to_line());
            }
            self.write(wire.as_bytes(), "the envelope", self.timeouts.mail)
                .await?;
            self.flush("the envelope", self.timeouts.mail).await?;
            for c in group {
                let (stage, limit) = match c {
                    EnvelopeCommand::Mail(_) => ("the reply to MAIL FROM", self.timeouts.mail),
                    EnvelopeCommand::Rcpt(_) => ("the reply to RCPT TO", self.timeouts.rcpt),
                    EnvelopeCommand::Data => ("the reply to DATA", self.timeouts.data_init),
                };
                let r = self.read_reply(stage, limit).await?;
                let positive = r.is_positive();
                if matches!(c, EnvelopeCommand::Rcpt(_)) && positive {
                    accepted += 1;
                }
                let is_mail = matches!(c, EnvelopeCommand::Mail(_));
                replies.push(r);
                if !self.caps.pipelining && is_mail && !positive {
                    break 'groups;
                }
                // Without pipelining, DATA is only sent if some RCPT was accepted.
                if !self.caps.pipelining
                    && matches!(c, EnvelopeCommand::Rcpt(_))
                    && replies.len() == 1 + rcpts.len()
                    && accepted == 0
                {
                    break 'groups;
                }
            }
        }
        let verdict = judge_envelope(&replies, rcpts.len());
        let (rcpt_replies, data) = match verdict {
            EnvelopeVerdict::MailRefused(r) => {
                return Ok(TransactionResult::Replies(vec![r; rcpts.len()]));
            }
            EnvelopeVerdict::Recipients { replies, data } => (replies, data),
        };
        let data_ok = data.as_ref().is_some_and(|d| d.code == 354);
        if accepted == 0 || !data_ok {
            if data_ok {
                // A server that said 354 with no recipient: end the empty message.
                self.write(b".\r\n", "the end of data", self.timeouts.data_end)
                    .await?;
                self.flush("the end of data", self.timeouts.data_end)
                    .await?;
                let _ = self
                    .read_reply("the reply to the end of data", self.timeouts.data_end)
                    .await?;
            }
            let fallback = data.unwrap_or_else(|| {
                rcpt_replies.last().cloned().unwrap_or(Reply {
                    code: 451,
                    enhanced: None,
                    lines: vec!["no reply".into()],
                })
            });
            let out = rcpt_replies
                .into_iter()
                .map(|r| if r.is_positive() { fallback.clone() } else { r })
                .collect();
            return Ok(TransactionResult::Replies(out));
        }
        let (as_is, rest) = data_payload(body, DATA_BLOCK);
        for chunk in as_is.chunks(DATA_BLOCK).chain(rest.chunks(DATA_BLOCK)) {
            self.write(chunk, "the message data", self.timeouts.data_block)
                .await?;
        }
        self.flush("the message data", self.timeouts.data_block)
            .await?;
        let end = self
            .read_reply("the reply to the end of data", self.timeouts.data_end)
            .await?;
        self.dirty = false;
        self.messages += 1;
        let out = rcpt_replies
            .into_iter()
            .map(|r| if r.is_positive() { end.clone() } else { r })
            .collect();
        Ok(TransactionResult::Replies(out))
    }

    /// Says QUIT and closes, ignoring errors (the mail is already delivered).
    pub async fn quit(mut self) {
        let limit = Duration::from_secs(5).min(self.timeouts.command);
        let _ = self.command("QUIT\r\n", "QUIT", limit).await;
        let _ = self.stream.shutdown().await;
    }
}

/// The rustls client configuration of opportunistic TLS: any certificate is taken
/// (the handshake signature is still checked), TLS 1.2 and 1.3.
pub fn opportunistic_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    config.map(Arc::new).map_err(|e| e.to_string())
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
