//! The RADIUS server for the BRAS (RFC 2865 authentication, RFC 2866 accounting).
//!
//! Access-Request: PAP against the subscriber's argon2id hash; the Access-Accept
//! carries Filter-Id `radius.filter_open` or `radius.filter_blocked` per port-25 state,
//! and Framed-IP-Address for a static subscriber. CHAP needs the cleartext password,
//! which portcullis never stores, so CHAP requests get an Access-Reject whose
//! Reply-Message says so (the codec can verify CHAP, see `radius::chap_verify`; a NAS
//! talking to portcullis must use PAP). Accounting Start, Interim-Update and Stop keep
//! the leases `whois` answers from; Accounting-On/Off closes all of a NAS's sessions; a
//! sweeper closes sessions whose interim updates stopped.
//!
//! Hardening: only configured clients (by address) are served; Access-Request must
//! carry a valid Message-Authenticator (Blast-RADIUS) and every reply carries one;
//! retransmissions (same client, identifier and authenticator within
//! [`DEDUP_WINDOW`]) get the cached reply; anything malformed, unknown or unsigned is
//! dropped and counted in [`COUNTERS`]. An accounting reply is sent only once the
//! store write is on disk, so a NAS retransmits what we failed to record.
//!
//! Speed: accounting packets that arrive together share one store transaction
//! ([`group_commit`]); an Access-Request whose subscriber profile and password check
//! are cached (see `radius/profiles.rs`) is answered in the receive loop itself; each
//! listener is one SO_REUSEPORT socket per core.
//!
//! The wire format lives in the `radius` crate; this module only decides and moves bytes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use policy::{IpNet, Timestamp};
use radius::{AcctStatusType, Attribute, Code, Packet};
use store::{RadiusProfile, SessionEvent, SessionReport, Store};
use tokio::net::UdpSocket;

#[path = "radius/profiles.rs"]
mod profiles;
use profiles::Profiles;

/// How long a reply is kept to answer a retransmission of its request.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(5);
/// A session with interim updates is closed when none came for this long (four
/// missed updates at the common 15-minute interval).
pub const STALE_SESSION_AFTER: Duration = Duration::from_secs(3600);
/// How often the stale-session sweeper runs.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long a successful PAP check is remembered, so a BRAS re-authenticating many
/// sessions does not pay an argon2id verification for each.
const PASSWORD_CACHE_TTL: Duration = Duration::from_secs(300);
const PASSWORD_CACHE_MAX: usize = 100_000;
/// Password verifications allowed to wait per core before requests are shed.
const HASH_QUEUE_PER_CORE: usize = 16;

/// What the server has seen, for `/metrics`. All counters only grow.
#[derive(Debug, Default)]
pub struct RadiusCounters {
    /// Access-Requests admitted (known client, valid signature).
    pub access_requests: AtomicU64,
    pub access_accepts: AtomicU64,
    pub access_rejects: AtomicU64,
    /// Accounting-Requests admitted.
    pub accounting_requests: AtomicU64,
    pub accounting_responses: AtomicU64,
    /// Store transactions of the accounting group commit, and the microseconds their
    /// writing took (not their flush, which overlaps the next): packets per
    /// transaction and the time the one committing task spends on each.
    pub accounting_transactions: AtomicU64,
    pub accounting_transaction_micros: AtomicU64,
    /// Datagrams from an address that is not in `radius.clients`.
    pub unknown_client: AtomicU64,
    /// Datagrams that do not decode, or requests of the wrong code for the port.
    pub malformed: AtomicU64,
    /// Requests whose authenticator or Message-Authenticator does not verify.
    pub bad_authenticator: AtomicU64,
    /// Access-Requests without Message-Authenticator.
    pub missing_message_authenticator: AtomicU64,
    /// Retransmissions answered from the duplicate cache (or dropped while the
    /// original is still being handled).
    pub duplicates: AtomicU64,
    /// Requests left unanswered because the store failed.
    pub store_errors: AtomicU64,
    /// Access-Requests left unanswered because too many password checks were queued.
    pub shed: AtomicU64,
    pub coa_acks: AtomicU64,
    pub coa_naks: AtomicU64,
    pub coa_timeouts: AtomicU64,
    pub disconnect_acks: AtomicU64,
    pub disconnect_failures: AtomicU64,
}

impl RadiusCounters {
    const fn new() -> RadiusCounters {
        RadiusCounters {
            access_requests: AtomicU64::new(0),
            access_accepts: AtomicU64::new(0),
            access_rejects: AtomicU64::new(0),
            accounting_requests: AtomicU64::new(0),
            accounting_responses: AtomicU64::new(0),
            accounting_transactions: AtomicU64::new(0),
            accounting_transaction_micros: AtomicU64::new(0),
            unknown_client: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            bad_authenticator: AtomicU64::new(0),
            missing_message_authenticator: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            coa_acks: AtomicU64::new(0),
            coa_naks: AtomicU64::new(0),
            coa_timeouts: AtomicU64::new(0),
            disconnect_acks: AtomicU64::new(0),
            disconnect_failures: AtomicU64::new(0),
        }
    }

    /// Every counter with its name, for exposition.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("access_requests", c(&self.access_requests)),
            ("access_accepts", c(&self.access_accepts)),
            ("access_rejects", c(&self.access_rejects)),
            ("accounting_requests", c(&self.accounting_requests)),
            ("accounting_responses", c(&self.accounting_responses)),
            ("accounting_transactions", c(&self.accounting_transactions)),
            (
                "accounting_transaction_micros",
                c(&self.accounting_transaction_micros),
            ),
            ("unknown_client", c(&self.unknown_client)),
            ("malformed", c(&self.malformed)),
            ("bad_authenticator", c(&self.bad_authenticator)),
            (
                "missing_message_authenticator",
                c(&self.missing_message_authenticator),
            ),
            ("duplicates", c(&self.duplicates)),
            ("store_errors", c(&self.store_errors)),
            ("shed", c(&self.shed)),
            ("coa_acks", c(&self.coa_acks)),
            ("coa_naks", c(&self.coa_naks)),
            ("coa_timeouts", c(&self.coa_timeouts)),
            ("disconnect_acks", c(&self.disconnect_acks)),
            ("disconnect_failures", c(&self.disconnect_failures)),
        ]
    }
}

/// The process-wide counters of the RADIUS server and CoA sender.
pub static COUNTERS: RadiusCounters = RadiusCounters::new();

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The shared secret of the client at `ip`: the most specific `radius.clients` entry.
pub(crate) fn client_secret(config: &config::Config, ip: IpAddr) -> Option<&str> {
    let ip = ip.to_canonical();
    config
        .radius
        .clients
        .iter()
        .filter(|c| c.address.contains(ip))
        .max_by_key(|c| c.address.prefix_len())
        .map(|c| c.secret.as_str())
}

/// Which listener a datagram arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Port {
    Auth,
    Acct,
}

type DedupKey = (SocketAddr, u8, [u8; 16]);

struct DedupEntry {
    at: Instant,
    /// None while the original is being handled.
    reply: Option<Arc<Vec<u8>>>,
}

#[derive(Default)]
struct Dedup {
    entries: HashMap<DedupKey, DedupEntry>,
    pruned: Option<Instant>,
}

/// What to do with an arriving datagram.
enum Admission {
    Drop,
    Resend(Arc<Vec<u8>>),
    Handle {
        packet: Packet,
        secret: Vec<u8>,
        key: DedupKey,
    },
}

struct CachedPassword {
    phc: String,
    digest: [u8; 16],
    at: Instant,
}

struct Server {
    config: Arc<config::Config>,
    store: Store,
    dedup: Arc<Mutex<Dedup>>,
    passwords: Mutex<HashMap<String, CachedPassword>>,
    profiles: Arc<Profiles>,
    /// Process-random salt for the in-memory password digests.
    salt: [u8; 16],
    /// One argon2id verification per core at a time.
    hashers: tokio::sync::Semaphore,
    /// Verifications running or waiting, and the most allowed.
    hash_queue: std::sync::atomic::AtomicUsize,
    hash_queue_max: usize,
    /// Accounting reports on their way to [`group_commit`].
    accounting: tokio::sync::mpsc::Sender<AccountingJob>,
}

/// An accounting packet's report on its way to [`group_commit`], and where its
/// answer goes once the transaction holding it is on disk.
type AccountingJob = (SessionEvent, SessionReport, Answer);

/// Where an accounting packet's answer goes. The group commit sends it once the
/// packet's transaction is on disk: no task and no wake-up per packet.
struct Answer {
    socket: Arc<UdpSocket>,
    from: SocketAddr,
    key: DedupKey,
    request: Packet,
    secret: Vec<u8>,
    dedup: Arc<Mutex<Dedup>>,
}

impl Answer {
    /// An Accounting-Response once the report is recorded; none when the store failed,
    /// so the NAS retries.
    async fn send(self, recorded: Result<usize, store::StoreError>) {
        let reply = match recorded {
            Ok(leases) => {
                count(&COUNTERS.accounting_responses);
                tracing::debug!(from = %self.from, leases, "accounting recorded");
                let response = Packet::new(Code::AccountingResponse, self.request.identifier);
                sign(response, &self.request, &self.secret, self.from).map(Arc::new)
            }
            Err(e) => {
                count(&COUNTERS.store_errors);
                tracing::error!(from = %self.from, "store failed during accounting, no response so the NAS retries: {e}");
                None
            }
        };
        settle(&self.dedup, self.key, reply.clone());
        if let Some(r) = reply {
            if let Err(e) = self.socket.send_to(&r, self.from).await {
                tracing::warn!(from = %self.from, "cannot send RADIUS reply: {e}");
            }
        }
    }
}

/// Most accounting packets written in one transaction.
const ACCOUNTING_BATCH: usize = 1024;

/// Transactions that may wait for their flush at once while the next are written.
const FLUSHES_IN_FLIGHT: usize = 4;

/// Group commit for accounting Start, Interim-Update and Stop: what queued while the
/// previous transaction was written goes into the next one, and each packet is
/// answered only once its transaction is on disk. Writing and flushing overlap: a
/// batch's flush is waited for on its own task while the next batch is written (one
/// flush then often covers several), so the flush latency does not bound the rate.
/// A batch is written only after the one before it committed, so it reads what that
/// one wrote. The store retries a failed batch packet by packet, so one bad packet
/// does not fail the others.
async fn group_commit(store: Store, mut jobs: tokio::sync::mpsc::Receiver<AccountingJob>) {
    let flushes = Arc::new(tokio::sync::Semaphore::new(FLUSHES_IN_FLIGHT));
    let mut batch = Vec::with_capacity(ACCOUNTING_BATCH);
    while let Some((event, report, answer)) = jobs.recv().await {
        let mut answers = Vec::with_capacity(ACCOUNTING_BATCH);
        batch.push((event, report));
        answers.push(answer);
        while batch.len() < ACCOUNTING_BATCH {
            match jobs.try_recv() {
                Ok((event, report, answer)) => {
                    batch.push((event, report));
                    answers.push(answer);
                }
                Err(_) => break,
            }
        }
        let Ok(permit) = flushes.clone().acquire_owned().await else {
            return;
        };
        let started = Instant::now();
        let (results, unflushed) = store.sessions_written(&batch).await;
        count(&COUNTERS.accounting_transactions);
        COUNTERS.accounting_transaction_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        tokio::spawn(async move {
            for (answer, result) in answers.into_iter().zip(unflushed.settle(results).await) {
                answer.send(result).await;
            }
            drop(permit);
        });
        batch.clear();
    }
}

impl Server {
    /// The server and its accounting group-commit task.
    fn new(config: Arc<config::Config>, store: Store) -> (Server, tokio::task::JoinHandle<()>) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (accounting, jobs) = tokio::sync::mpsc::channel(ACCOUNTING_BATCH * 4);
        let batcher = tokio::spawn(group_commit(store.clone(), jobs));
        let server = Server {
            config,
            store,
            dedup: Arc::new(Mutex::new(Dedup::default())),
            passwords: Mutex::new(HashMap::new()),
            profiles: Arc::new(Profiles::default()),
            salt: radius::crypto::random_authenticator(),
            hashers: tokio::sync::Semaphore::new(cores),
            hash_queue: std::sync::atomic::AtomicUsize::new(0),
            hash_queue_max: cores * HASH_QUEUE_PER_CORE,
            accounting,
        };
        (server, batcher)
    }

    /// Client check, signature check, decoding and duplicate detection: everything
    /// that needs no store, so a flood of junk costs little.
    fn admit(&self, datagram: &[u8], from: SocketAddr, port: Port) -> Admission {
        let Some(secret) = client_secret(&self.config, from.ip()) else {
            count(&COUNTERS.unknown_client);
            tracing::debug!(%from, "RADIUS datagram from unknown client dropped");
            return Admission::Drop;
        };
        let expected = match port {
            Port::Auth => Code::AccessRequest.as_u8(),
            Port::Acct => Code::AccountingRequest.as_u8(),
        };
        if datagram.first() != Some(&expected) {
            count(&COUNTERS.malformed);
            return Admission::Drop;
        }
        if let Err(e) = radius::verify_request(datagram, secret.as_bytes()) {
            match e {
                radius::Error::MissingMessageAuthenticator => {
                    count(&COUNTERS.missing_message_authenticator)
                }
                radius::Error::BadAuthenticator | radius::Error::BadMessageAuthenticator => {
                    count(&COUNTERS.bad_authenticator)
                }
                _ => count(&COUNTERS.malformed),
            }
            tracing::debug!(%from, "RADIUS request dropped: {e}");
            return Admission::Drop;
        }
        let packet = match Packet::decode(datagram) {
            Ok(p) => p,
            Err(e) => {
                count(&COUNTERS.malformed);
                tracing::debug!(%from, "RADIUS request dropped: {e}");
                return Admission::Drop;
            }
        };
        let key = (from, packet.identifier, packet.authenticator);
        let now = Instant::now();
        let Ok(mut dedup) = self.dedup.lock() else {
            return Admission::Drop;
        };
        if dedup
            .pruned
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            dedup
                .entries
                .retain(|_, e| now.duration_since(e.at) < DEDUP_WINDOW);
            dedup.pruned = Some(now);
        }
        if let Some(e) = dedup.entries.get(&key) {
            if now.duration_since(e.at) < DEDUP_WINDOW {
                count(&COUNTERS.duplicates);
                return match &e.reply {
                    Some(r) => Admission::Resend(r.clone()),
                    None => Admission::Drop,
                };
            }
        }
        dedup.entries.insert(
            key,
            DedupEntry {
                at: now,
                reply: None,
            },
        );
        Admission::Handle {
            packet,
            secret: secret.as_bytes().to_vec(),
            key,
        }
    }

    /// The reply to an admitted request, when everything the decision needs is in
    /// memory (an Access-Request whose profile and password check are cached, or one
    /// rejected on its face); None when it needs [`Server::handle`].
    fn answer_now(&self, req: &Packet, secret: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        if req.code != Code::AccessRequest {
            return None;
        }
        let reply = match self.credentials(req, secret) {
            Ok((login, password)) => {
                let profile = self.profiles.get(login)?;
                let phc = profile.password_hash.as_deref()?;
                if !self.password_cached(login, &password, phc) {
                    return None;
                }
                self.accepted(login, &profile)
            }
            Err(reject) => reject,
        };
        sign(reply, req, secret, from)
    }

    async fn handle(&self, req: &Packet, secret: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let reply = match req.code {
            Code::AccessRequest => self.access(req, secret).await,
            Code::AccountingRequest => self.accounting(req, from.ip().to_canonical()).await,
            _ => None,
        }?;
        sign(reply, req, secret, from)
    }

    fn reject(&self, login: &str, why: &str) -> Packet {
        count(&COUNTERS.access_rejects);
        tracing::info!(login, "Access-Reject: {why}");
        Packet::new(Code::AccessReject, 0).with(Attribute::ReplyMessage(why.to_string()))
    }

    /// The login and cleartext password of a PAP Access-Request, or the reject for
    /// one that has none.
    fn credentials<'a>(&self, req: &'a Packet, secret: &[u8]) -> Result<(&'a str, String), Packet> {
        let reject = |login, why| Err(self.reject(login, why));
        let Some(login) = req.user_name() else {
            return reject("", "no User-Name in the request");
        };
        let hidden = req.attributes.iter().find_map(|a| match a {
            Attribute::UserPassword(h) => Some(h),
            _ => None,
        });
        let Some(hidden) = hidden else {
            if req
                .attributes
                .iter()
                .any(|a| matches!(a, Attribute::ChapPassword { .. }))
            {
                tracing::warn!(
                    login,
                    "CHAP Access-Request rejected: configure the NAS for PAP"
                );
                return reject(
                    login,
                    "CHAP is not supported: this server keeps only one-way password hashes; use PAP",
                );
            }
            return reject(
                login,
                "no User-Password in the request (only PAP is supported)",
            );
        };
        match radius::unhide_password(hidden, secret, &req.authenticator)
            .ok()
            .and_then(|p| String::from_utf8(p).ok())
        {
            Some(password) => Ok((login, password)),
            None => reject(login, "User-Password could not be decoded"),
        }
    }

    async fn access(&self, req: &Packet, secret: &[u8]) -> Option<Packet> {
        let (login, password) = match self.credentials(req, secret) {
            Ok(c) => c,
            Err(reject) => return Some(reject),
        };
        let profile = match self.profile(login).await {
            Ok(Some(s)) => s,
            Ok(None) => return Some(self.reject(login, "unknown login")),
            Err(e) => {
                count(&COUNTERS.store_errors);
                tracing::error!(login, "store failed during Access-Request: {e}");
                return None;
            }
        };
        let Some(phc) = profile.password_hash.as_deref() else {
            return Some(self.reject(login, "the subscriber has no password set"));
        };
        match self.password_matches(login, &password, phc).await {
            Some(true) => Some(self.accepted(login, &profile)),
            Some(false) => Some(self.reject(login, "wrong password")),
            None => {
                count(&COUNTERS.shed);
                tracing::debug!(
                    login,
                    "Access-Request shed: too many password checks queued"
                );
                None
            }
        }
    }

    fn accepted(&self, login: &str, s: &RadiusProfile) -> Packet {
        count(&COUNTERS.access_accepts);
        self.accept(login, s)
    }

    fn accept(&self, login: &str, s: &RadiusProfile) -> Packet {
        let filter = if s.port25.is_open() {
            &self.config.radius.filter_open
        } else {
            &self.config.radius.filter_blocked
        };
        let mut p = Packet::new(Code::AccessAccept, 0).with(Attribute::FilterId(filter.clone()));
        if let Some(ip) = s.framed_ipv4 {
            p.attributes.push(Attribute::FramedIpAddress(ip));
        }
        tracing::debug!(login, filter = %filter, framed_ip = ?s.framed_ipv4, "Access-Accept");
        p
    }

    /// The subscriber's Access-Request view, from the cache or the store.
    async fn profile(&self, login: &str) -> Result<Option<Arc<RadiusProfile>>, store::StoreError> {
        if let Some(p) = self.profiles.get(login) {
            return Ok(Some(p));
        }
        let generation = self.profiles.generation();
        let Some(p) = self.store.radius_profile(login).await? else {
            return Ok(None);
        };
        let p = Arc::new(p);
        self.profiles.insert(generation, login, p.clone());
        Ok(Some(p))
    }

    fn digest(&self, password: &str) -> [u8; 16] {
        radius::crypto::chap_response(0, &self.salt, password.as_bytes())
    }

    /// Whether `password` matched `phc` for `login` within [`PASSWORD_CACHE_TTL`].
    fn password_cached(&self, login: &str, password: &str, phc: &str) -> bool {
        let digest = self.digest(password);
        let Ok(cache) = self.passwords.lock() else {
            return false;
        };
        cache.get(login).is_some_and(|c| {
            c.phc == phc
                && c.at.elapsed() < PASSWORD_CACHE_TTL
                && radius::crypto::ct_eq(&c.digest, &digest)
        })
    }

    /// Whether `password` matches `phc`; None when the server is too busy to check.
    async fn password_matches(&self, login: &str, password: &str, phc: &str) -> Option<bool> {
        if self.password_cached(login, password, phc) {
            return Some(true);
        }
        let digest = self.digest(password);
        // argon2id takes tens of milliseconds and 19 MiB: at most one per core runs,
        // off the async workers, and beyond a short queue requests are shed unanswered
        // (the NAS retransmits) instead of piling up work nobody waits for any more.
        if self.hash_queue.fetch_add(1, Ordering::Relaxed) >= self.hash_queue_max {
            self.hash_queue.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let permit = self.hashers.acquire().await;
        let pw = password.to_string();
        let hash = phc.to_string();
        let ok = tokio::task::spawn_blocking(move || store::password::verify_password(&pw, &hash))
            .await
            .unwrap_or(false);
        drop(permit);
        self.hash_queue.fetch_sub(1, Ordering::Relaxed);
        if ok {
            if let Ok(mut cache) = self.passwords.lock() {
                if cache.len() >= PASSWORD_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(
                    login.to_string(),
                    CachedPassword {
                        phc: phc.to_string(),
                        digest,
                        at: Instant::now(),
                    },
                );
            }
        }
        Some(ok)
    }

    /// When the event an accounting packet reports happened: Event-Timestamp, else
    /// arrival minus Acct-Delay-Time.
    fn event_time(&self, req: &Packet) -> Timestamp {
        let delay = req.find(|a| match a {
            Attribute::AcctDelayTime(d) => Some(i64::from(*d)),
            _ => None,
        });
        req.find(|a| match a {
            Attribute::EventTimestamp(t) => Some(Timestamp(i64::from(*t))),
            _ => None,
        })
        .unwrap_or(Timestamp(self.store.now().0 - delay.unwrap_or(0)))
    }

    /// A well-formed Start, Interim-Update or Stop: what goes to the group commit.
    /// Anything else (Accounting-On/Off, malformed) is for [`Server::accounting`].
    fn session_event(&self, req: &Packet, nas: IpAddr) -> Option<(SessionEvent, SessionReport)> {
        let event = match req.acct_status_type()? {
            AcctStatusType::Start => SessionEvent::Start,
            AcctStatusType::InterimUpdate => SessionEvent::Interim,
            AcctStatusType::Stop => SessionEvent::Stop,
            _ => return None,
        };
        Some((event, session_report(req, nas, self.event_time(req))?))
    }

    /// Queues a session event for the group commit, which answers it.
    fn record(&self, event: SessionEvent, report: SessionReport, answer: Answer) {
        use tokio::sync::mpsc::error::TrySendError;
        match self.accounting.try_send((event, report, answer)) {
            Ok(()) => {}
            // A burst beyond the queue: this packet waits for room on a task of its own.
            Err(TrySendError::Full(job)) => {
                let queue = self.accounting.clone();
                tokio::spawn(async move {
                    if let Err(e) = queue.send(job).await {
                        let (_, _, answer) = e.0;
                        answer.send(Err(stopped())).await;
                    }
                });
            }
            Err(TrySendError::Closed((_, _, answer))) => {
                tokio::spawn(answer.send(Err(stopped())));
            }
        }
    }

    /// Accounting-Requests other than a well-formed session event.
    async fn accounting(&self, req: &Packet, nas: IpAddr) -> Option<Packet> {
        let Some(status) = req.acct_status_type() else {
            count(&COUNTERS.malformed);
            tracing::info!(%nas, "Accounting-Request without Acct-Status-Type dropped");
            return None;
        };
        match status {
            AcctStatusType::AccountingOn | AcctStatusType::AccountingOff => {
                let at = self.event_time(req);
                match self.store.close_nas_sessions(nas, at).await {
                    Ok(n) => {
                        tracing::info!(%nas, closed = n, "Accounting-{:?}: closed the NAS's sessions", status)
                    }
                    Err(e) => {
                        count(&COUNTERS.store_errors);
                        tracing::error!(%nas, "store failed during accounting, no response so the NAS retries: {e}");
                        return None;
                    }
                }
            }
            AcctStatusType::Start | AcctStatusType::InterimUpdate | AcctStatusType::Stop => {
                count(&COUNTERS.malformed);
                tracing::info!(%nas, "Accounting-Request without User-Name or Acct-Session-Id dropped");
                return None;
            }
            AcctStatusType::Other(_) => {}
        }
        count(&COUNTERS.accounting_responses);
        Some(Packet::new(Code::AccountingResponse, req.identifier))
    }
}

fn stopped() -> store::StoreError {
    store::StoreError::Backend("accounting group commit stopped".into())
}

/// Remembers the reply for retransmissions, or forgets the request when there is
/// none (a store failure), so a retransmission is handled afresh.
fn settle(dedup: &Mutex<Dedup>, key: DedupKey, reply: Option<Arc<Vec<u8>>>) {
    if let Ok(mut dedup) = dedup.lock() {
        match reply {
            Some(r) => {
                if let Some(e) = dedup.entries.get_mut(&key) {
                    e.reply = Some(r);
                }
            }
            None => {
                dedup.entries.remove(&key);
            }
        }
    }
}

/// Signs `reply` to `req`, echoing its identifier and Proxy-State.
fn sign(mut reply: Packet, req: &Packet, secret: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    reply.identifier = req.identifier;
    // Proxy-State goes back unchanged, in order (RFC 2865 section 5.33).
    reply.attributes.extend(
        req.attributes
            .iter()
            .filter(|a| matches!(a, Attribute::ProxyState(_)))
            .cloned(),
    );
    match reply.encode_response(secret, &req.authenticator) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::error!(%from, "cannot encode RADIUS reply: {e}");
            None
        }
    }
}

/// The session an accounting packet describes; None without User-Name or Acct-Session-Id.
fn session_report(req: &Packet, nas: IpAddr, at: Timestamp) -> Option<SessionReport> {
    let mut nets = Vec::new();
    if let Some(ip) = req.framed_ip_address() {
        nets.push(IpNet::host(IpAddr::V4(ip)));
    }
    for p in req.ipv6_prefixes() {
        if let Ok(net) = IpNet::new(IpAddr::V6(p.addr), p.len) {
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
    }
    Some(SessionReport {
        nas,
        session_id: req.acct_session_id()?.to_string(),
        login: req.user_name()?.to_string(),
        nets,
        at,
        session_time: req.find(|a| match a {
            Attribute::AcctSessionTime(t) => Some(*t),
            _ => None,
        }),
    })
}

async fn serve(socket: Arc<UdpSocket>, server: Arc<Server>, port: Port) {
    let mut buf = vec![0u8; radius::packet::MAX_LEN + 1];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems; the
                // socket itself is fine.
                tracing::debug!("RADIUS socket receive error: {e}");
                continue;
            }
        };
        match server.admit(&buf[..n], from, port) {
            Admission::Drop => {}
            Admission::Resend(reply) => {
                let _ = socket.send_to(&reply, from).await;
            }
            Admission::Handle {
                packet,
                secret,
                key,
            } => {
                count(match port {
                    Port::Auth => &COUNTERS.access_requests,
                    Port::Acct => &COUNTERS.accounting_requests,
                });
                // Answered from memory right here when possible: no task, no wake-up.
                if let Some(reply) = server.answer_now(&packet, &secret, from) {
                    let reply = Arc::new(reply);
                    settle(&server.dedup, key, Some(reply.clone()));
                    if let Err(e) = socket.send_to(&reply, from).await {
                        tracing::warn!(%from, "cannot send RADIUS reply: {e}");
                    }
                    continue;
                }
                if port == Port::Acct {
                    if let Some((event, report)) =
                        server.session_event(&packet, from.ip().to_canonical())
                    {
                        let answer = Answer {
                            socket: socket.clone(),
                            from,
                            key,
                            request: packet,
                            secret,
                            dedup: server.dedup.clone(),
                        };
                        server.record(event, report, answer);
                        continue;
                    }
                }
                let socket = socket.clone();
                let server = server.clone();
                tokio::spawn(async move {
                    let reply = server.handle(&packet, &secret, from).await.map(Arc::new);
                    // Cache before sending, so a retransmission racing the reply finds it.
                    settle(&server.dedup, key, reply.clone());
                    if let Some(r) = &reply {
                        if let Err(e) = socket.send_to(r, from).await {
                            tracing::warn!(%from, "cannot send RADIUS reply: {e}");
                        }
                    }
                });
            }
        }
    }
}

async fn sweep(store: Store) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        match store
            .close_stale_sessions(store.now().minus(STALE_SESSION_AFTER))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                closed = n,
                "closed RADIUS sessions whose interim updates stopped"
            ),
            Err(e) => tracing::error!("stale-session sweep failed: {e}"),
        }
    }
}

/// Receive buffer asked for each RADIUS socket.
const RECEIVE_BUFFER: usize = 4 << 20;

/// One socket per core on `addr` (SO_REUSEPORT: the kernel spreads clients over them
/// by address and port, so each NAS's packets, retransmissions included, keep to one
/// socket), each with its own receive loop. Linux lets only processes of the same
/// user join the group.
fn bind_per_core(addr: SocketAddr) -> std::io::Result<Vec<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sockets = Vec::with_capacity(cores);
    let mut at = addr;
    for _ in 0..cores {
        let s = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_port(true)?;
        // Room for a burst (a BRAS rebooting sends thousands of Starts at once); the
        // kernel caps it at net.core.rmem_max.
        s.set_recv_buffer_size(RECEIVE_BUFFER).ok();
        s.set_nonblocking(true)?;
        s.bind(&at.into())?;
        let s = UdpSocket::from_std(s.into())?;
        // Port 0 asks for any port: the others join the first one's.
        at = s.local_addr()?;
        sockets.push(s);
    }
    Ok(sockets)
}

/// Binds `radius.listen_auth` and `radius.listen_acct` and serves them; also starts
/// the stale-session sweeper when accounting is served. Fails (naming the address)
/// if a listener cannot be bound.
pub async fn start(
    config: Arc<config::Config>,
    store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut sockets = Vec::new();
    for (addrs, port) in [
        (&config.radius.listen_auth, Port::Auth),
        (&config.radius.listen_acct, Port::Acct),
    ] {
        for addr in addrs {
            let bound = bind_per_core(*addr)
                .map_err(|e| format!("cannot bind RADIUS listener {addr}: {e}"))?;
            tracing::info!(%addr, ?port, sockets = bound.len(), "RADIUS listening");
            sockets.extend(bound.into_iter().map(|s| (Arc::new(s), port)));
        }
    }
    if !sockets.is_empty() && config.radius.clients.is_empty() {
        tracing::warn!("radius.clients is empty: every RADIUS request will be dropped");
    }
    let (server, batcher) = Server::new(config.clone(), store.clone());
    let server = Arc::new(server);
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = sockets
        .into_iter()
        .map(|(s, port)| tokio::spawn(serve(s, server.clone(), port)))
        .collect();
    if !config.radius.listen_auth.is_empty() {
        tasks.push(tokio::spawn(profiles::follow(
            server.profiles.clone(),
            store.clone(),
        )));
    }
    if !config.radius.listen_acct.is_empty() {
        // The batcher lives as long as the listeners (it ends when they drop the server).
        tasks.push(batcher);
        tasks.push(tokio::spawn(sweep(store)));
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_client_wins() {
        let mut c = config::Config::default();
        c.radius.clients = vec![
            config::RadiusClient {
                address: "10.0.0.0/8".parse().unwrap(),
                secret: "wide".into(),
            },
            config::RadiusClient {
                address: "10.1.0.0/16".parse().unwrap(),
                secret: "narrow".into(),
            },
        ];
        assert_eq!(
            client_secret(&c, "10.1.2.3".parse().unwrap()),
            Some("narrow")
        );
        assert_eq!(client_secret(&c, "10.2.2.3".parse().unwrap()), Some("wide"));
        assert_eq!(
            client_secret(&c, "::ffff:10.2.2.3".parse().unwrap()),
            Some("wide")
        );
        assert_eq!(client_secret(&c, "192.0.2.1".parse().unwrap()), None);
    }
}
