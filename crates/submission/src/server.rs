//! The tokio layer: listeners on `submission.listen_starttls` (587) and
//! `submission.listen_tls` (465), connection limits, timeouts, TLS handshakes, and
//! the loop that moves bytes between a socket and a [`Session`] and carries out the
//! session's [`Step`]s (authentication, durable accept). No protocol rules here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::error::SubmissionError;
use crate::metrics::{metrics, Rejection, SubmissionMetrics};
use crate::response::{self, Reply};
use crate::session::{Envelope, Session, SessionConfig, Step, TlsInfo};
use crate::throttle::{AuthThrottle, Quota};
use crate::tls::TlsSource;

/// A session's read buffer between messages, and while a large body arrives.
const IDLE_BUFFER: usize = 8 * 1024;
const BODY_BUFFER: usize = 64 * 1024;

/// Called after each message is durably queued, with the login and the recipients;
/// `serve` hangs the abuse crate's sending-anomaly watch here. Must not block.
#[derive(Clone)]
pub struct AcceptHook(pub Arc<AcceptFn>);

/// The hook's signature: login, recipient addresses.
pub type AcceptFn = dyn Fn(&str, &[String]) + Send + Sync;

impl std::fmt::Debug for AcceptHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptHook")
    }
}

/// Delivery on this node, taking each message as it is committed (`serve` wires
/// it to the delivery crate): the message leaves from memory instead of being
/// claimed and read back from the queue.
#[derive(Clone)]
pub struct Handoff {
    /// Before the commit: room for this many recipients, or `None` (delivery is
    /// full or stopping; the message is queued for whichever node claims it).
    pub reserve: Arc<dyn Fn(usize) -> Option<Reservation> + Send + Sync>,
    /// After a commit without a reservation: delivery should look at the queue now.
    pub queued: Arc<dyn Fn() + Send + Sync>,
}

/// Room in delivery for one message, and the claim its recipients are inserted under.
pub struct Reservation {
    pub claim: store::Claim,
    /// Hands the committed message and its body over; dropped instead (the commit
    /// failed), it gives the room back.
    pub deliver: Box<dyn FnOnce(store::ClaimedMessage, Arc<Vec<u8>>) + Send>,
}

/// What tells delivery about a committed message: the hand-over of a reservation, or
/// a wake-up to look at the queue.
type HandOver = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handoff")
    }
}

/// Limits and timeouts that have no config key (yet); the defaults suit an ISP.
#[derive(Clone, Debug)]
pub struct Tunables {
    /// Longest wait for the next command line (and for each read inside a body).
    pub idle_timeout: Duration,
    /// Longest session, whatever the client does.
    pub session_timeout: Duration,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Sessions at once, all addresses.
    pub max_connections: usize,
    /// Sessions at once from one address: high, because of CGNAT and office NAT.
    pub max_connections_per_ip: usize,
    /// Error replies before the session is ended.
    pub max_errors: u32,
    /// Longest command line.
    pub max_line: usize,
    /// First delay after a failed login; doubles up to 16 times this.
    pub auth_failure_delay: Duration,
    /// An address tolerates this many times `auth.max_failures` before it is locked.
    pub address_failure_factor: u32,
    /// Password checks (argon2) at once.
    pub parallel_password_checks: usize,
    pub radius_timeout: Duration,
    pub radius_retries: u32,
    pub on_accept: Option<AcceptHook>,
    pub handoff: Option<Handoff>,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            idle_timeout: Duration::from_secs(300),
            session_timeout: Duration::from_secs(3600),
            handshake_timeout: Duration::from_secs(30),
            max_connections: 20_000,
            max_connections_per_ip: 100,
            max_errors: 20,
            max_line: 4096,
            auth_failure_delay: Duration::from_secs(1),
            address_failure_factor: 10,
            parallel_password_checks: std::thread::available_parallelism().map_or(2, |n| n.get()),
            radius_timeout: Duration::from_secs(3),
            radius_retries: 2,
            on_accept: None,
            handoff: None,
        }
    }
}

/// A running server: its bound addresses (a configured port 0 is resolved) and tasks.
pub struct Server {
    pub starttls_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    pub tasks: Vec<JoinHandle<()>>,
    pub metrics: &'static SubmissionMetrics,
}

struct Shared {
    session: Arc<SessionConfig>,
    tunables: Tunables,
    tls: TlsSource,
    auth: Authenticator,
    quota: Arc<Quota>,
    queue: crate::committer::QueueCommitter,
    hostname: String,
    connections: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
    next_id: AtomicU64,
}

/// Binds every listener, then serves them; see [`crate::start`].
pub async fn start_with(
    config: Arc<config::Config>,
    store: store::Store,
    tunables: Tunables,
) -> Result<Server, SubmissionError> {
    let tls = TlsSource::load(&config)?;
    let clock: Arc<dyn policy::Clock> = Arc::new(policy::SystemClock);
    let throttle = AuthThrottle::new(
        clock.clone(),
        config.auth.max_failures,
        tunables.address_failure_factor,
        config.auth.lockout.get(),
        tunables.auth_failure_delay,
    );
    let backend =
        crate::auth::backend_from(&config, tunables.radius_timeout, tunables.radius_retries);
    let auth = Authenticator::new(
        backend,
        store.clone(),
        throttle,
        tunables.parallel_password_checks,
    );
    let session = Arc::new(SessionConfig {
        hostname: config.submission.hostname.clone(),
        max_message_size: config.submission.max_message_size,
        sender_policy: config.submission.sender_policy,
        recipients_per_message: config.submission.limits.recipients_per_message,
        max_errors: tunables.max_errors,
        max_line: tunables.max_line,
    });
    let mut starttls = Vec::new();
    for addr in &config.submission.listen_starttls {
        starttls.push((*addr, bind(*addr)?));
    }
    let mut implicit = Vec::new();
    for addr in &config.submission.listen_tls {
        implicit.push((*addr, bind(*addr)?));
    }
    let writers = if store.backend() == "postgres" { 4 } else { 1 };
    let (queue, committers) = crate::committer::QueueCommitter::start(store.clone(), writers);
    let shared = Arc::new(Shared {
        session,
        tunables,
        tls,
        auth,
        quota: Arc::new(Quota::new(clock, &config.submission.limits)),
        queue,
        hostname: config.submission.hostname.clone(),
        connections: Mutex::new(HashMap::new()),
        total: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
    });
    let mut server = Server {
        starttls_addrs: vec![],
        tls_addrs: vec![],
        tasks: committers,
        metrics: metrics(),
    };
    for (listeners, is_implicit) in [(starttls, false), (implicit, true)] {
        for (configured, l) in listeners {
            let addr = l.local_addr().map_err(|source| SubmissionError::Bind {
                addr: configured,
                source,
            })?;
            tracing::info!(%addr, tls = if is_implicit { "implicit" } else { "starttls" }, "submission listening");
            if is_implicit {
                server.tls_addrs.push(addr);
            } else {
                server.starttls_addrs.push(addr);
            }
            server
                .tasks
                .push(tokio::spawn(accept_loop(l, shared.clone(), is_implicit)));
        }
    }
    if !(server.starttls_addrs.is_empty() && server.tls_addrs.is_empty()) {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(SubmissionError::Signal)?;
        let s = shared.clone();
        server.tasks.push(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if let Err(e) = s.tls.reload() {
                    tracing::error!("SIGHUP: keeping the old TLS certificate: {e}");
                }
            }
        }));
    }
    Ok(server)
}

/// A listening socket; IPv6 ones are IPv6-only so `[::]:587` and `0.0.0.0:587` can
/// both be configured.
fn bind(addr: SocketAddr) -> Result<TcpListener, SubmissionError> {
    let err = |source| SubmissionError::Bind { addr, source };
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, implicit: bool) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move { shared.serve(tcp, peer, implicit).await });
            }
            Err(e) => {
                // Out of file descriptors, typically: wait instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Releases a connection slot when the session ends, however it ends.
struct Slot<'a> {
    shared: &'a Shared,
    ip: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.shared.total.fetch_sub(1, Ordering::Relaxed);
        metrics().sessions_active.fetch_sub(1, Ordering::Relaxed);
        let mut map = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(bytes).await,
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
        };
    }
}

/// Why a session loop stopped early.
enum End {
    Closed,
    Io(std::io::Error),
    Timeout,
}

impl Shared {
    fn take_slot(&self, ip: IpAddr) -> Option<Slot<'_>> {
        let mut map = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.tunables.max_connections_per_ip
            || self.total.load(Ordering::Relaxed) >= self.tunables.max_connections
        {
            if *n == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        metrics().sessions_active.fetch_add(1, Ordering::Relaxed);
        Some(Slot { shared: self, ip })
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<(Conn, TlsInfo), String> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.current());
        match tokio::time::timeout(self.tunables.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => {
                SubmissionMetrics::inc(&metrics().tls_handshakes_ok);
                let info = crate::tls::info(stream.get_ref().1);
                Ok((Conn::Tls(Box::new(stream)), info))
            }
            Ok(Err(e)) => {
                SubmissionMetrics::inc(&metrics().tls_handshakes_failed);
                Err(e.to_string())
            }
            Err(_) => {
                SubmissionMetrics::inc(&metrics().tls_handshakes_failed);
                Err("handshake timed out".into())
            }
        }
    }

    async fn serve(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr, implicit: bool) {
        let id = format!("{:X}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let span = tracing::info_span!("session", session = %id, client = %peer, login = tracing::field::Empty);
        self.serve_in_span(tcp, peer, implicit)
            .instrument(span)
            .await
    }

    async fn serve_in_span(&self, mut tcp: TcpStream, peer: SocketAddr, implicit: bool) {
        SubmissionMetrics::inc(&metrics().sessions);
        let Some(_slot) = self.take_slot(peer.ip()) else {
            metrics().reject(Rejection::Connections);
            tracing::warn!("connection refused: too many connections");
            if !implicit {
                let mut out = Vec::new();
                response::too_many_connections(&self.hostname).write_to(&mut out);
                let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&out)).await;
            }
            return;
        };
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + self.tunables.session_timeout;
        let (conn, tls) = if implicit {
            match self.handshake(tcp).await {
                Ok((c, info)) => (c, Some(info)),
                Err(e) => {
                    tracing::info!("TLS handshake failed: {e}");
                    return;
                }
            }
        } else {
            (Conn::Plain(tcp), None)
        };
        let session = Session::new(self.session.clone(), self.quota.clone(), tls);
        match self.run(conn, session, peer, deadline).await {
            End::Closed => tracing::debug!("session ended"),
            End::Io(e) => tracing::debug!("session ended: {e}"),
            End::Timeout => tracing::info!("session timed out"),
        }
    }

    async fn run(
        &self,
        mut conn: Conn,
        mut session: Session,
        peer: SocketAddr,
        deadline: Instant,
    ) -> End {
        // A small buffer between messages: it is held by every idle session. A body
        // is read in larger pieces (fewer reads, fewer wake-ups).
        let mut buf = vec![0u8; IDLE_BUFFER];
        let mut filled = false;
        // When we started waiting for the current command: a command must be complete
        // within the idle timeout however slowly its bytes trickle in.
        let mut waiting_since = Instant::now();
        loop {
            match session.advance() {
                Step::NeedInput => {
                    if session.has_output() {
                        if let Err(e) = self.flush(&mut conn, &mut session, deadline).await {
                            return e;
                        }
                        waiting_since = Instant::now();
                    }
                    // Grown when a body fills the small buffer, shrunk after it.
                    let want = match (session.in_body(), filled) {
                        (true, true) => BODY_BUFFER,
                        (true, false) => buf.len(),
                        (false, _) => IDLE_BUFFER,
                    };
                    if buf.len() != want {
                        buf = vec![0u8; want];
                    }
                    let idle = self.tunables.idle_timeout;
                    let mut until = (Instant::now() + idle).min(deadline);
                    if !session.in_body() {
                        until = until.min(waiting_since + idle);
                    }
                    match tokio::time::timeout_at(until, conn.read(&mut buf)).await {
                        Ok(Ok(0)) => return End::Closed,
                        Ok(Ok(n)) => {
                            filled = n == buf.len();
                            session.receive(&buf[..n]);
                        }
                        Ok(Err(e)) => return End::Io(e),
                        Err(_) => {
                            metrics().reject(Rejection::Dropped);
                            session.timed_out();
                            let _ = self
                                .flush(
                                    &mut conn,
                                    &mut session,
                                    Instant::now() + Duration::from_secs(5),
                                )
                                .await;
                            conn.shutdown().await;
                            return End::Timeout;
                        }
                    }
                }
                Step::StartTls => {
                    if let Err(e) = self.flush(&mut conn, &mut session, deadline).await {
                        return e;
                    }
                    let Conn::Plain(tcp) = conn else {
                        return End::Closed;
                    };
                    match self.handshake(tcp).await {
                        Ok((c, info)) => {
                            tracing::debug!(version = %info.version, cipher = %info.cipher, "STARTTLS");
                            conn = c;
                            session.tls_started(info);
                            waiting_since = Instant::now();
                        }
                        Err(e) => {
                            tracing::info!("STARTTLS handshake failed: {e}");
                            return End::Closed;
                        }
                    }
                }
                Step::Authenticate(creds) => {
                    if let Err(e) = self.flush(&mut conn, &mut session, deadline).await {
                        return e;
                    }
                    let (outcome, delay) = self.auth.authenticate(&creds, peer.ip()).await;
                    if let crate::session::AuthOutcome::Success { login, .. } = &outcome {
                        tracing::Span::current().record("login", login.as_str());
                    }
                    // Growing delays slow down password guessing.
                    tokio::time::sleep(delay).await;
                    session.auth_done(outcome);
                }
                Step::Queue(envelope, body) => {
                    let (result, hand_over) = match self.accept(*envelope, body, peer).await {
                        Ok((id, hand_over)) => (Ok(id), hand_over),
                        Err(reply) => (Err(reply), None),
                    };
                    session.queued(result);
                    // The 250 first: handing the message over wakes delivery, whose
                    // work would otherwise compete with the reply the client waits for.
                    if let Some(hand_over) = hand_over {
                        let flushed = self.flush(&mut conn, &mut session, deadline).await;
                        hand_over();
                        if let Err(e) = flushed {
                            return e;
                        }
                    }
                }
                Step::Close => {
                    let _ = self.flush(&mut conn, &mut session, deadline).await;
                    conn.shutdown().await;
                    return End::Closed;
                }
            }
        }
    }

    async fn flush(
        &self,
        conn: &mut Conn,
        session: &mut Session,
        deadline: Instant,
    ) -> Result<(), End> {
        let out = session.take_output();
        if out.is_empty() {
            return Ok(());
        }
        let until = (Instant::now() + self.tunables.idle_timeout).min(deadline);
        match tokio::time::timeout_at(until, conn.write_all(&out)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Io(e)),
            Err(_) => Err(End::Timeout),
        }
    }

    /// Durable accept: the message is committed to the store's queue (its one durable
    /// copy, see `store::queue`), then `250`. Returns the queue id and what tells
    /// delivery about the message, to run once the reply is written (none when
    /// delivery got it during the flush).
    async fn accept(
        &self,
        env: Envelope,
        body: Vec<u8>,
        peer: SocketAddr,
    ) -> Result<(String, Option<HandOver>), Reply> {
        let id = store::new_queue_id();
        let span = tracing::info_span!("message", queue_id = %id);
        async {
            let now = time::OffsetDateTime::now_utc();
            let message = Arc::new(crate::message::finalize(
                &env,
                body,
                peer.ip(),
                &self.hostname,
                &id,
                now,
            ));
            let size = message.len() as u64;
            let rcpts = env.recipients.len() as u64;
            let reservation = self
                .tunables
                .handoff
                .as_ref()
                .and_then(|h| (h.reserve)(env.recipients.len()));
            let record = store::NewQueuedMessage {
                id: id.clone(),
                login: env.login.clone(),
                mail_from: env.mail_from.address.clone(),
                client_ip: Some(peer.ip().to_string()),
                ret: env.mail_from.ret.map(|r| r.as_str().to_string()),
                envid: env.mail_from.envid.clone(),
                smtputf8: env.mail_from.smtputf8,
                body_type: env.mail_from.body.map(|b| match b {
                    crate::request::BodyType::SevenBit => "7BIT".to_string(),
                    crate::request::BodyType::EightBitMime => "8BITMIME".to_string(),
                }),
                spool_path: None,
                claim: reservation.as_ref().map(|r| r.claim.clone()),
                recipients: env
                    .recipients
                    .iter()
                    .map(|r| store::NewQueuedRecipient {
                        address: r.address.clone(),
                        notify: r.notify.clone(),
                        orcpt: r.orcpt.clone(),
                    })
                    .collect(),
                body: message.clone(),
            };
            let (claimed, flush) = match self.queue.enqueue(record).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("cannot record the message in the queue: {e}");
                    metrics().reject(Rejection::QueueError);
                    return Err(response::queue_failed());
                }
            };
            let mut hand_over: Option<HandOver> =
                match (reservation, claimed, &self.tunables.handoff) {
                    (Some(r), Some(claimed), _) => {
                        Some(Box::new(move || (r.deliver)(claimed, message)))
                    }
                    (_, _, Some(handoff)) => Some(Box::new({
                        let queued = handoff.queued.clone();
                        move || queued()
                    })),
                    _ => None,
                };
            // Committed alone, its flush still to come: delivery gets the message now
            // and relays it while the disk flushes, when the client only waits for
            // our 250 and nothing competes with the relaying. Should the flush fail,
            // the client is told to try again and may send a copy: the committed row
            // is delivered either way, as one is after a crash just before its 250.
            if flush.is_pending() {
                if let Some(hand_over) = hand_over.take() {
                    hand_over();
                }
            }
            if let Err(e) = flush.wait() {
                tracing::error!("cannot flush the queue: {e}");
                metrics().reject(Rejection::QueueError);
                return Err(response::queue_failed());
            }
            let m = metrics();
            SubmissionMetrics::inc(&m.messages_accepted);
            m.bytes_accepted.fetch_add(size, Ordering::Relaxed);
            m.recipients_accepted.fetch_add(rcpts, Ordering::Relaxed);
            tracing::info!(from = %env.mail_from.address, recipients = rcpts, size, "queued");
            if let Some(hook) = &self.tunables.on_accept {
                let to: Vec<String> = env.recipients.iter().map(|r| r.address.clone()).collect();
                (hook.0)(&env.login, &to);
            }
            Ok((id.clone(), hand_over))
        }
        .instrument(span)
        .await
    }
}
