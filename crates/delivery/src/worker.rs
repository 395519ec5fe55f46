//! The queue workers of one node: claim due recipients with a lease, deliver them
//! through per-destination lanes that reuse connections, and write every outcome
//! (delivered, deferred with the back-off schedule, bounced with an RFC 3464 report
//! enqueued to the sender through the same queue).
//!
//! Shape: one *dispatcher* claims recipients (never more than `max_in_flight`
//! outstanding) and splits each message into *jobs*, one per recipient domain (or
//! one for the smart host). Each destination has a queue of jobs and up to
//! `delivery.connections_per_destination` *lanes*; a lane holds one SMTP connection
//! and carries job after job on it until it has been idle for `idle_connection`. A
//! token bucket per destination spaces out messages when `delivery.domain_rates`
//! gives the domain (or "*") a rate.
//!
//! Each new MX connection is opened under the TLS requirement of its host (DANE,
//! MTA-STS or opportunistic: `tls_policy`); the smart host gets AUTH over TLS when
//! credentials are configured. Every 5xx bounce of a subscriber's message is told
//! to [`DeliveryTunables::on_bounce`] (the abuse watch).
//!
//! Time for queue decisions (retries, expiry, leases) comes from the store's clock,
//! so tests can move it; network timeouts are real time.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use policy::Timestamp;
use store::{
    ClaimedMessage, ClaimedRecipient, NewQueuedMessage, NewQueuedRecipient, RecipientOutcome,
    RecipientStatus, Store,
};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn, Instrument};

use crate::client::{SessionError, SmtpConnection, TlsMode, TransactionResult};
use crate::dkim::DkimSigners;
use crate::dns::Dns;
use crate::dsn::{build_report, wants_report, DsnInput, DsnKind, DsnRecipient};
use crate::error::DeliveryError;
use crate::mta_sts::Fetcher;
use crate::protocol::{EnhancedCode, MessageTraits, Reply, Timeouts};
use crate::routing::{address_literal, recipient_domain, route, split_host_port, Route};
use crate::schedule::{after_transient_failure, delay_warning_due, DomainRate, NextStep};
use crate::tls_policy::{check, requirement, Requirement};
use hickory_resolver::proto::rr::RecordType;
use rustls::pki_types::CertificateDer;

/// Knobs that are not (yet) configuration keys, with production defaults. Tests use
/// them to reach receivers on loopback: MX lookups there return 127.0.0.x, where
/// port 25 is privileged or taken, so `smtp_port` moves every MX connection to
/// another port (the smart host keeps the port written in `delivery.smart_host`).
#[derive(Clone, Debug)]
pub struct DeliveryTunables {
    /// Port of MX and implicit-MX hosts (25).
    pub smtp_port: u16,
    /// This node's name in leases and attempt records (default: host name, pid and
    /// a random suffix, unique per start).
    pub node_id: String,
    /// Name given in EHLO and in DSNs (default: `submission.hostname`).
    pub helo_name: Option<String>,
    /// Most recipients claimed per query.
    pub claim_batch: i64,
    /// Most recipients claimed and not yet settled by this node.
    pub max_in_flight: usize,
    /// How long a claim holds without renewal; a live node renews its claims every
    /// third of it, so only a dead node's claims run out and are taken over.
    pub lease: Duration,
    /// How often an idle dispatcher looks for due recipients.
    pub poll_interval: Duration,
    pub timeouts: Timeouts,
    /// How long a lane keeps an idle connection open for the next message.
    pub idle_connection: Duration,
    /// Messages per connection before it is closed and a new one opened.
    pub max_messages_per_connection: u64,
    /// Send one delay warning (RFC 3464 `Action: delayed`) after this long.
    pub delay_warning_after: Option<Duration>,
    /// Opportunistic STARTTLS (true) or never TLS (false). MTA-STS, DANE and
    /// smart-host AUTH require TLS whatever this says.
    pub starttls: bool,
    /// Port of `mta-sts.DOMAIN` for MTA-STS policy fetches (443).
    pub mta_sts_port: u16,
    /// How long one MTA-STS policy fetch may take.
    pub mta_sts_timeout: Duration,
    /// Root certificates trusted besides the WebPKI roots (webpki-roots), for
    /// MTA-STS policy hosts and MX certificates under an `enforce` policy.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Told of every recipient bounced with a 5xx (not expiry) of a message a
    /// subscriber sent: the abuse watch counts them.
    pub on_bounce: Option<BounceHook>,
    /// Notified when a message is queued on this node (the submission server's
    /// accept hook), so it leaves within `claim_linger` instead of the next poll.
    pub wake: Arc<Notify>,
    /// After a wake, how long the dispatcher waits for more messages to claim them
    /// together (one claim transaction for many messages).
    pub claim_linger: Duration,
}

/// Called with the submitting login and the recipient, once per recipient that
/// bounced with a permanent failure. Must be cheap: spawn for slow work.
pub type BounceFn = dyn Fn(&str, &str) + Send + Sync;

/// A shareable [`BounceFn`].
#[derive(Clone)]
pub struct BounceHook(pub Arc<BounceFn>);

impl std::fmt::Debug for BounceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BounceHook")
    }
}

impl Default for DeliveryTunables {
    fn default() -> Self {
        DeliveryTunables {
            smtp_port: 25,
            node_id: default_node_id(),
            helo_name: None,
            claim_batch: 200,
            max_in_flight: 1000,
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            timeouts: Timeouts::default(),
            idle_connection: Duration::from_secs(5),
            max_messages_per_connection: 1000,
            delay_warning_after: None,
            starttls: true,
            mta_sts_port: 443,
            mta_sts_timeout: Duration::from_secs(20),
            extra_roots: Vec::new(),
            on_bounce: None,
            wake: Arc::new(Notify::new()),
            claim_linger: Duration::from_millis(20),
        }
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let mut r = [0u8; 4];
    let _ = getrandom::getrandom(&mut r);
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        u32::from_be_bytes(r)
    )
}

/// A running delivery node.
pub struct DeliveryNode {
    handles: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    engine: Arc<Engine>,
}

impl DeliveryNode {
    /// Stops every task of this node at once, as `kill -9` would: claims stay in
    /// the store until their lease runs out.
    pub fn kill(&self) {
        let _ = self.stop.send(true);
        for h in &self.handles {
            h.abort();
        }
    }

    /// Recipients this node has claimed and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.engine.tunables.max_in_flight - self.engine.capacity.available_permits()
    }

    pub fn node_id(&self) -> &str {
        &self.engine.tunables.node_id
    }

    /// Where submission on this node hands over the messages it commits.
    pub fn intake(&self) -> Intake {
        Intake(self.engine.clone())
    }

    pub fn into_handles(self) -> Vec<tokio::task::JoinHandle<()>> {
        // The stop sender must outlive the tasks that watch it.
        std::mem::forget(self.stop);
        self.handles
    }
}

/// Takes messages from submission on this node the moment they are committed, so
/// they leave from memory: no claim query, no reading the body back from the store.
/// The message is inserted already claimed by this node ([`store::NewQueuedMessage::claim`]),
/// so the lease, its renewal and its expiry after a crash work as for a claim.
#[derive(Clone)]
pub struct Intake(Arc<Engine>);

/// Room held in delivery for one message's recipients, and the claim to insert them
/// under. Dropped unused (the commit failed), it gives the room back.
pub struct Reservation {
    engine: Arc<Engine>,
    claim: store::Claim,
    permits: OwnedSemaphorePermit,
}

impl Intake {
    /// Before the commit: room for `recipients` recipients, or `None` when this node
    /// has none or is stopping (the message is then queued unclaimed, for any node).
    pub fn reserve(&self, recipients: usize) -> Option<Reservation> {
        let engine = &self.0;
        if *engine.stop.borrow() || recipients == 0 {
            return None;
        }
        let permits = engine
            .capacity
            .clone()
            .try_acquire_many_owned(u32::try_from(recipients).ok()?)
            .ok()?;
        Some(Reservation {
            engine: engine.clone(),
            claim: store::Claim {
                owner: engine.tunables.node_id.clone(),
                until: engine.store.now().plus(engine.tunables.lease),
            },
            permits,
        })
    }

    /// A message was queued without a reservation: claim it now, not at the next poll.
    pub fn wake(&self) {
        self.0.tunables.wake.notify_one();
    }
}

impl Reservation {
    pub fn claim(&self) -> &store::Claim {
        &self.claim
    }

    /// After the commit: `message` as [`Store::enqueue`] returned it under this
    /// reservation's claim, and its body.
    pub fn deliver(self, message: ClaimedMessage, body: Arc<Vec<u8>>) {
        enqueue_jobs(&self.engine, message, Some((self.permits, body)));
    }
}

struct MessageCtx {
    meta: ClaimedMessage,
    /// The body as submission committed it, when it handed the message over.
    committed: Mutex<Option<Arc<Vec<u8>>>>,
    /// Body with the DKIM signature prepended, loaded once per message.
    body: tokio::sync::OnceCell<Result<Arc<Vec<u8>>, String>>,
}

struct Job {
    message: Arc<MessageCtx>,
    recipients: Vec<ClaimedRecipient>,
    _permits: OwnedSemaphorePermit,
}

struct Destination {
    key: String,
    jobs: Mutex<VecDeque<Job>>,
    lanes: AtomicUsize,
    wake: Notify,
    rate: tokio::sync::Mutex<Option<DomainRate>>,
}

struct Engine {
    config: Arc<config::Config>,
    store: Store,
    dns: Dns,
    tls: Arc<rustls::ClientConfig>,
    /// WebPKI roots (plus `extra_roots`) for MTA-STS certificate checks.
    roots: Arc<rustls::RootCertStore>,
    sts: Fetcher,
    /// `(user, password)` for AUTH at the smart host.
    smart_host_auth: Option<(String, String)>,
    dkim: DkimSigners,
    tunables: DeliveryTunables,
    helo: String,
    smart_host: Option<(String, u16)>,
    capacity: Arc<Semaphore>,
    destinations: Mutex<HashMap<String, Arc<Destination>>>,
    stop: watch::Receiver<bool>,
    outcomes: tokio::sync::mpsc::Sender<Settled>,
}

impl Engine {
    /// Most lanes (connections) per destination.
    fn max_lanes(&self) -> usize {
        self.config.delivery.connections_per_destination.max(1) as usize
    }
}

/// Outcomes of one job, waiting for the group commit; the permits keep the job
/// counted in flight until its outcome is durable.
struct Settled {
    message_id: String,
    outcomes: Vec<RecipientOutcome>,
    _permits: OwnedSemaphorePermit,
    /// Told when the outcome is written (or failed to be).
    written: tokio::sync::oneshot::Sender<()>,
}

/// Starts the delivery node with explicit tunables.
pub async fn start_with(
    config: Arc<config::Config>,
    store: Store,
    tunables: DeliveryTunables,
) -> Result<DeliveryNode, DeliveryError> {
    let dns = Dns::new(config.delivery.dns_server)?;
    let tls = crate::client::opportunistic_tls_config().map_err(DeliveryError::Tls)?;
    let dkim = DkimSigners::load(&config.delivery.dkim)?;
    let smart_host = match &config.delivery.smart_host {
        Some(s) => Some(split_host_port(s, 25).ok_or_else(|| {
            DeliveryError::Config(format!("delivery.smart_host '{s}' is not host:port"))
        })?),
        None => None,
    };
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in &tunables.extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| DeliveryError::Tls(format!("an extra root certificate: {e}")))?;
    }
    let roots = Arc::new(roots);
    let https = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| DeliveryError::Tls(e.to_string()))?
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    let sts = Fetcher {
        dns: dns.clone(),
        port: tunables.mta_sts_port,
        tls: Arc::new(https),
        timeout: tunables.mta_sts_timeout,
    };
    let smart_host_auth = smart_host_credentials(&config.delivery)?;
    let helo = tunables
        .helo_name
        .clone()
        .unwrap_or_else(|| config.submission.hostname.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (outcomes_tx, outcomes_rx) = tokio::sync::mpsc::channel(tunables.max_in_flight.max(1));
    let engine = Arc::new(Engine {
        outcomes: outcomes_tx,
        capacity: Arc::new(Semaphore::new(tunables.max_in_flight.max(1))),
        config,
        store,
        dns,
        tls,
        roots,
        sts,
        smart_host_auth,
        dkim,
        helo,
        smart_host,
        tunables,
        destinations: Mutex::new(HashMap::new()),
        stop: stop_rx,
    });
    info!(node = %engine.tunables.node_id, dkim = ?engine.dkim, "delivery started");
    let dispatcher = tokio::spawn(dispatch(engine.clone()));
    let sweeper = tokio::spawn(sweep(engine.clone()));
    let writer = tokio::spawn(write_outcomes(engine.clone(), outcomes_rx));
    let renewer = tokio::spawn(renew(engine.clone()));
    Ok(DeliveryNode {
        handles: vec![dispatcher, sweeper, writer, renewer],
        stop: stop_tx,
        engine,
    })
}

/// Reads the smart host password file named in the configuration.
fn smart_host_credentials(
    d: &config::DeliveryConfig,
) -> Result<Option<(String, String)>, DeliveryError> {
    let (Some(user), Some(path)) = (&d.smart_host_user, &d.smart_host_password_file) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        DeliveryError::Config(format!(
            "delivery.smart_host_password_file '{}': {e}",
            path.display()
        ))
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                warn!(
                    path = %path.display(),
                    "delivery.smart_host_password_file is readable by others than its owner; chmod 600 it"
                );
            }
        }
    }
    let password = text.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(DeliveryError::Config(format!(
            "delivery.smart_host_password_file '{}' is empty",
            path.display()
        )));
    }
    Ok(Some((user.clone(), password)))
}

/// Writes outcomes in batches: whatever has arrived while the previous transaction
/// committed goes into the next one.
async fn write_outcomes(engine: Arc<Engine>, mut rx: tokio::sync::mpsc::Receiver<Settled>) {
    const MAX_BATCH: usize = 256;
    let owner = engine.tunables.node_id.clone();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let items: Vec<(String, Vec<RecipientOutcome>)> = batch
            .iter()
            .map(|s| (s.message_id.clone(), s.outcomes.clone()))
            .collect();
        let t = Instant::now();
        let r = engine.store.record_outcomes_batch(&owner, &items).await;
        debug!(batch = items.len(), took = ?t.elapsed(), "outcomes written");
        match r {
            Ok(()) => {}
            Err(_) if items.len() > 1 => {
                // One lost lease (or a bad row) must not sink the others.
                for (id, outcomes) in &items {
                    if let Err(e) = engine.store.record_outcomes(&owner, id, outcomes).await {
                        report_write_error(id, &e);
                    }
                }
            }
            Err(e) => report_write_error(&items[0].0, &e),
        }
        for s in batch {
            let _ = s.written.send(());
        }
    }
}

fn report_write_error(message_id: &str, e: &store::StoreError) {
    match e {
        store::StoreError::Conflict => {
            warn!(queue_id = %message_id, "lease lost before the outcome was written; another node owns these recipients now")
        }
        e => warn!(queue_id = %message_id, "recording the outcome failed: {e}"),
    }
}

/// The heartbeat: extends this node's leases every third of the lease.
async fn renew(engine: Arc<Engine>) {
    let mut stop = engine.stop.clone();
    let every = (engine.tunables.lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let until = engine.store.now().plus(engine.tunables.lease);
        if let Err(e) = engine
            .store
            .renew_claims(&engine.tunables.node_id, until)
            .await
        {
            warn!("renewing claims failed: {e}");
        }
    }
}

async fn sweep(engine: Arc<Engine>) {
    let mut stop = engine.stop.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = engine.store.sweep_finished_messages().await {
            warn!("queue sweep failed: {e}");
        }
    }
}

async fn dispatch(engine: Arc<Engine>) {
    let mut stop = engine.stop.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        let available = engine.capacity.available_permits();
        let want = (available as i64).min(engine.tunables.claim_batch);
        let mut claimed = 0usize;
        if want > 0 {
            let lease_until = engine.store.now().plus(engine.tunables.lease);
            match engine
                .store
                .claim_due_recipients(&engine.tunables.node_id, lease_until, want)
                .await
            {
                Ok(messages) => {
                    for m in messages {
                        claimed += m.recipients.len();
                        enqueue_jobs(&engine, m, None);
                    }
                }
                Err(e) => warn!("claiming due recipients failed: {e}"),
            }
        }
        if claimed == 0 || claimed < want as usize {
            tokio::select! {
                _ = tokio::time::sleep(engine.tunables.poll_interval) => {}
                _ = engine.tunables.wake.notified() => {
                    tokio::time::sleep(engine.tunables.claim_linger).await;
                }
                _ = stop.changed() => return,
            }
        }
    }
}

/// Queues a claimed message's recipients on their destinations' lanes: with `held`,
/// the room reserved for them and the body in memory.
fn enqueue_jobs(
    engine: &Arc<Engine>,
    m: ClaimedMessage,
    held: Option<(OwnedSemaphorePermit, Arc<Vec<u8>>)>,
) {
    let mut by_domain: Vec<(String, Vec<ClaimedRecipient>)> = Vec::new();
    for r in &m.recipients {
        let key = match engine.smart_host {
            Some(_) => "[smart host]".to_string(),
            None => recipient_domain(&r.address),
        };
        match by_domain.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(r.clone()),
            None => by_domain.push((key, vec![r.clone()])),
        }
    }
    let (mut reserved, committed) = match held {
        Some((permits, body)) => (Some(permits), Some(body)),
        None => (None, None),
    };
    let ctx = Arc::new(MessageCtx {
        meta: m,
        committed: Mutex::new(committed),
        body: tokio::sync::OnceCell::new(),
    });
    for (key, recipients) in by_domain {
        let n = recipients.len();
        let permits = match reserved.as_mut() {
            // The last group takes what is left.
            Some(r) if r.num_permits() > n => r.split(n).ok_or(()),
            Some(_) => reserved.take().ok_or(()),
            None => engine
                .capacity
                .clone()
                .try_acquire_many_owned(n as u32)
                .map_err(|_| ()),
        };
        let permits = match permits {
            Ok(p) => p,
            Err(()) => {
                // More claimed than capacity (cannot happen: claims are sized by it);
                // hand them back.
                let ids: Vec<i64> = recipients.iter().map(|r| r.id).collect();
                let engine = engine.clone();
                tokio::spawn(async move {
                    let _ = engine
                        .store
                        .release_claims(&engine.tunables.node_id, &ids)
                        .await;
                });
                continue;
            }
        };
        let dest = destination(engine, &key);
        if let Ok(mut q) = dest.jobs.lock() {
            q.push_back(Job {
                message: ctx.clone(),
                recipients,
                _permits: permits,
            });
        }
        dest.wake.notify_one();
        let lanes = dest.lanes.load(Ordering::SeqCst);
        if lanes < engine.max_lanes()
            && dest
                .lanes
                .compare_exchange(lanes, lanes + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            tokio::spawn(lane(engine.clone(), dest));
        }
    }
}

fn destination(engine: &Arc<Engine>, key: &str) -> Arc<Destination> {
    let mut map = match engine.destinations.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(key.to_string())
        .or_insert_with(|| {
            Arc::new(Destination {
                key: key.to_string(),
                jobs: Mutex::new(VecDeque::new()),
                lanes: AtomicUsize::new(0),
                wake: Notify::new(),
                rate: tokio::sync::Mutex::new(engine.config.delivery.rate_for(key).map(|r| {
                    DomainRate::new(f64::from(r.per_minute) / 60.0, r.burst(), Instant::now())
                })),
            })
        })
        .clone()
}

fn pop(dest: &Destination) -> Option<Job> {
    dest.jobs.lock().ok().and_then(|mut q| q.pop_front())
}

/// One connection's worth of work for a destination.
async fn lane(engine: Arc<Engine>, dest: Arc<Destination>) {
    let mut stop = engine.stop.clone();
    let mut conn: Option<SmtpConnection> = None;
    loop {
        let job = match pop(&dest) {
            Some(j) => j,
            None => {
                let idle = tokio::select! {
                    _ = dest.wake.notified() => false,
                    _ = tokio::time::sleep(engine.tunables.idle_connection) => true,
                    _ = stop.changed() => return,
                };
                if idle {
                    dest.lanes.fetch_sub(1, Ordering::SeqCst);
                    // A job may have arrived between the pop and the decrement.
                    let has_work = dest.jobs.lock().map(|q| !q.is_empty()).unwrap_or(false);
                    if has_work && dest.lanes.fetch_add(1, Ordering::SeqCst) < engine.max_lanes() {
                        continue;
                    } else if has_work {
                        dest.lanes.fetch_sub(1, Ordering::SeqCst);
                    }
                    if let Some(c) = conn.take() {
                        c.quit().await;
                    }
                    return;
                }
                continue;
            }
        };
        if let Some(rate) = dest.rate.lock().await.as_mut() {
            loop {
                match rate.take(Instant::now()) {
                    Ok(()) => break,
                    Err(wait) => tokio::time::sleep(wait).await,
                }
            }
        }
        let span = tracing::info_span!("delivery", queue_id = %job.message.meta.id, destination = %dest.key);
        tokio::select! {
            _ = process(&engine, &dest, job, &mut conn).instrument(span) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What happened to one recipient in one attempt.
#[derive(Clone, Debug)]
enum Verdict {
    Delivered {
        reply: String,
    },
    Transient {
        status: EnhancedCode,
        reply: String,
        smtp: bool,
    },
    Permanent {
        status: EnhancedCode,
        reply: String,
        smtp: bool,
    },
}

struct AttemptReport {
    verdicts: Vec<Verdict>,
    host: Option<String>,
    tls: Option<String>,
}

fn all(n: usize, v: Verdict) -> Vec<Verdict> {
    vec![v; n]
}

fn verdict_of(reply: &Reply) -> Verdict {
    let text = reply.summary();
    if reply.is_positive() {
        Verdict::Delivered { reply: text }
    } else if reply.is_transient() {
        Verdict::Transient {
            status: reply.status(),
            reply: text,
            smtp: true,
        }
    } else {
        Verdict::Permanent {
            status: reply.status(),
            reply: text,
            smtp: true,
        }
    }
}

async fn load_body(engine: &Engine, ctx: &MessageCtx) -> Result<Arc<Vec<u8>>, String> {
    ctx.body
        .get_or_init(|| async {
            let committed = ctx.committed.lock().ok().and_then(|mut b| b.take());
            let body = match committed {
                Some(b) => b,
                None => match engine.store.queue_body(&ctx.meta.id).await {
                    Ok(Some(b)) => Arc::new(b),
                    Ok(None) => return Err("the message left the queue".to_string()),
                    Err(e) => return Err(format!("reading the body: {e}")),
                },
            };
            if engine.dkim.is_empty() {
                return Ok(body);
            }
            match engine.dkim.sign(&body) {
                Ok(Some(header)) => {
                    let mut signed = Vec::with_capacity(header.len() + body.len());
                    signed.extend_from_slice(header.as_bytes());
                    signed.extend_from_slice(&body);
                    Ok(Arc::new(signed))
                }
                Ok(None) => Ok(body),
                Err(e) => {
                    warn!("DKIM signing failed, sending unsigned: {e}");
                    Ok(body)
                }
            }
        })
        .await
        .clone()
}

async fn process(
    engine: &Arc<Engine>,
    dest: &Destination,
    job: Job,
    conn: &mut Option<SmtpConnection>,
) {
    let body = match load_body(engine, &job.message).await {
        Ok(b) => b,
        Err(reason) => {
            warn!("cannot deliver: {reason}");
            let ids: Vec<i64> = job.recipients.iter().map(|r| r.id).collect();
            let _ = engine
                .store
                .release_claims(&engine.tunables.node_id, &ids)
                .await;
            return;
        }
    };
    let report = attempt(engine, dest, &job, &body, conn).await;
    let outcomes = settle(engine, &job, report, &body).await;
    let Job {
        message, _permits, ..
    } = job;
    let (written, done) = tokio::sync::oneshot::channel();
    let settled = Settled {
        message_id: message.meta.id.clone(),
        outcomes,
        _permits,
        written,
    };
    // The lane waits for the commit before its next message, so a crash leaves at
    // most one delivered-but-unrecorded message per connection; lanes share commits.
    if engine.outcomes.send(settled).await.is_err() || done.await.is_err() {
        warn!("outcome writer stopped; the claims will expire and be retried");
    }
}

async fn attempt(
    engine: &Arc<Engine>,
    dest: &Destination,
    job: &Job,
    body: &[u8],
    conn: &mut Option<SmtpConnection>,
) -> AttemptReport {
    let meta = &job.message.meta;
    let rcpts: Vec<String> = job.recipients.iter().map(|r| r.address.clone()).collect();
    let mut addresses: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    addresses.push(&meta.mail_from);
    let traits = MessageTraits::of(
        body,
        meta.body_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("8BITMIME")),
        meta.smtputf8,
        &addresses,
    );
    let n = rcpts.len();
    for fresh in [false, true] {
        if fresh || conn.is_none() {
            if let Some(c) = conn.take() {
                c.quit().await;
            }
            match connect(engine, dest, n).await {
                Ok(c) => *conn = Some(c),
                Err(report) => return report,
            }
        }
        let Some(c) = conn.as_mut() else {
            break;
        };
        let host = Some(c.peer().to_string());
        let tls = c.tls_version().map(str::to_string);
        let reused = c.messages > 0;
        match c.send(&meta.mail_from, &rcpts, &traits, body).await {
            Ok(TransactionResult::Refused(refusal)) => {
                return AttemptReport {
                    verdicts: all(
                        n,
                        Verdict::Permanent {
                            status: refusal.status(),
                            reply: refusal.to_string(),
                            smtp: false,
                        },
                    ),
                    host,
                    tls,
                }
            }
            Ok(TransactionResult::Replies(replies)) => {
                if c.messages >= engine.tunables.max_messages_per_connection {
                    if let Some(c) = conn.take() {
                        c.quit().await;
                    }
                }
                return AttemptReport {
                    verdicts: replies.iter().map(verdict_of).collect(),
                    host,
                    tls,
                };
            }
            Err(e) => {
                *conn = None;
                // A reused connection the server had quietly closed: try once more
                // on a new one, unless the message may already have gone out.
                if reused && !fresh && e.before_data() {
                    debug!("reused connection failed ({e}); reconnecting");
                    continue;
                }
                return AttemptReport {
                    verdicts: all(
                        n,
                        Verdict::Transient {
                            status: EnhancedCode(4, 4, 2),
                            reply: e.to_string(),
                            smtp: false,
                        },
                    ),
                    host,
                    tls,
                };
            }
        }
    }
    AttemptReport {
        verdicts: all(
            n,
            Verdict::Transient {
                status: EnhancedCode(4, 4, 1),
                reply: "no connection".into(),
                smtp: false,
            },
        ),
        host: None,
        tls: None,
    }
}

/// Opens a connection for `dest`: the smart host, or the MX hosts in order, each
/// under its TLS requirement (DANE, MTA-STS or opportunistic).
async fn connect(
    engine: &Arc<Engine>,
    dest: &Destination,
    n: usize,
) -> Result<SmtpConnection, AttemptReport> {
    let fail = |v: Verdict| AttemptReport {
        verdicts: all(n, v),
        host: None,
        tls: None,
    };
    let transient = |status: EnhancedCode, reply: String| Verdict::Transient {
        status,
        reply,
        smtp: false,
    };
    if let Some((host, port)) = &engine.smart_host {
        return connect_smart_host(engine, host, *port).await.map_err(fail);
    }
    let domain = dest.key.as_str();
    let literal = address_literal(domain);
    let hosts: Vec<String> = if let Some(ip) = literal {
        vec![ip.to_string()]
    } else {
        let answer = engine
            .dns
            .mx(domain)
            .await
            .map_err(|e| fail(transient(EnhancedCode(4, 4, 3), e.to_string())))?;
        match route(domain, &answer) {
            Route::Hosts(h) => h,
            Route::NullMx => {
                return Err(fail(Verdict::Permanent {
                    status: EnhancedCode(5, 1, 10),
                    reply: format!("the domain {domain} accepts no mail (null MX, RFC 7505)"),
                    smtp: false,
                }))
            }
            Route::NoSuchDomain => {
                return Err(fail(Verdict::Permanent {
                    status: EnhancedCode(5, 1, 2),
                    reply: format!("the domain {domain} does not exist (NXDOMAIN)"),
                    smtp: false,
                }))
            }
        }
    };
    let port = engine.tunables.smtp_port;
    // Address literals name no domain a policy could belong to.
    let (sts, mx_authentic) = match literal {
        Some(_) => (None, false),
        None => {
            let (sts, mx_authentic) = tokio::join!(
                crate::mta_sts::policy_for(&engine.sts, &engine.store, domain),
                engine.dns.authenticated(domain, RecordType::MX)
            );
            (sts, mx_authentic.unwrap_or(false))
        }
    };
    let mut last: Option<Verdict> = None;
    let mut dns_failed = false;
    for host in &hosts {
        let req = if literal.is_some() {
            Requirement::Opportunistic
        } else {
            match requirement(&engine.dns, host, mx_authentic, sts.as_ref()).await {
                Ok(r) => r,
                Err(reason) => {
                    debug!(host, "skipped: {reason}");
                    last = Some(transient(EnhancedCode(4, 7, 5), reason));
                    continue;
                }
            }
        };
        let addrs = match engine.dns.addresses(host).await {
            Ok(a) => a,
            Err(e) => {
                dns_failed = true;
                last = Some(transient(EnhancedCode(4, 4, 3), e.to_string()));
                continue;
            }
        };
        for ip in addrs {
            let addr = SocketAddr::new(ip, port);
            match open_mx(engine, addr, host, &req).await {
                Ok(c) => {
                    debug!(%addr, host, tls = ?c.tls_version(), requirement = req.label(), "connected");
                    return Ok(c);
                }
                Err(v) => {
                    debug!(%addr, host, "connection failed: {v:?}");
                    last = Some(v);
                }
            }
        }
    }
    Err(fail(match last {
        Some(v) => v,
        None if !dns_failed => Verdict::Permanent {
            status: EnhancedCode(5, 4, 4),
            reply: format!(
                "no address for any mail host of {} ({})",
                dest.key,
                hosts.join(", ")
            ),
            smtp: false,
        },
        None => transient(EnhancedCode(4, 4, 3), "DNS failure".into()),
    }))
}

/// Opens a connection to one address of an MX host and checks it against `req`.
async fn open_mx(
    engine: &Arc<Engine>,
    addr: SocketAddr,
    host: &str,
    req: &Requirement,
) -> Result<SmtpConnection, Verdict> {
    let mode = if req.tls_required() {
        TlsMode::Required
    } else if engine.tunables.starttls {
        TlsMode::Opportunistic
    } else {
        TlsMode::Disabled
    };
    let conn = open_with_fallback(engine, addr, host, mode)
        .await
        .map_err(|e| Verdict::Transient {
            status: EnhancedCode(4, 4, 1),
            reply: if req.tls_required() {
                format!("{}: {e}", req.label())
            } else {
                e.to_string()
            },
            smtp: false,
        })?;
    match check(req, &conn, host, &engine.roots) {
        Ok(()) => Ok(conn),
        Err(reason) => {
            conn.quit().await;
            Err(Verdict::Transient {
                status: EnhancedCode(4, 7, 5),
                reply: reason,
                smtp: false,
            })
        }
    }
}

/// Opens an SMTP connection in `mode`; a failed opportunistic handshake retries in
/// plaintext (RFC 7435).
async fn open_with_fallback(
    engine: &Engine,
    addr: SocketAddr,
    host: &str,
    mode: TlsMode,
) -> Result<SmtpConnection, SessionError> {
    let open = |mode: TlsMode| {
        SmtpConnection::open(
            addr,
            host,
            &engine.helo,
            mode,
            engine.tls.clone(),
            engine.tunables.timeouts,
        )
    };
    match open(mode).await {
        Err(SessionError::Tls { .. }) if mode == TlsMode::Opportunistic => {
            open(TlsMode::Disabled).await
        }
        other => other,
    }
}

/// Opens a connection to the smart host and authenticates when credentials are
/// configured (only ever over TLS).
async fn connect_smart_host(
    engine: &Arc<Engine>,
    host: &str,
    port: u16,
) -> Result<SmtpConnection, Verdict> {
    let transient = |status: EnhancedCode, reply: String, smtp: bool| Verdict::Transient {
        status,
        reply,
        smtp,
    };
    let addrs = engine
        .dns
        .addresses(host)
        .await
        .map_err(|e| transient(EnhancedCode(4, 4, 3), e.to_string(), false))?;
    let mut last = transient(
        EnhancedCode(4, 4, 3),
        format!("the smart host {host} has no address"),
        false,
    );
    for ip in addrs {
        let addr = SocketAddr::new(ip, port);
        let mode = if engine.tunables.starttls || engine.smart_host_auth.is_some() {
            TlsMode::Opportunistic
        } else {
            TlsMode::Disabled
        };
        let mut conn = match open_with_fallback(engine, addr, host, mode).await {
            Ok(c) => c,
            Err(e) => {
                last = transient(EnhancedCode(4, 4, 1), e.to_string(), false);
                continue;
            }
        };
        let Some((user, password)) = &engine.smart_host_auth else {
            return Ok(conn);
        };
        match conn.authenticate(user, password).await {
            Ok(()) => return Ok(conn),
            // Wrong credentials are the operator's to fix: defer, never bounce.
            Err(SessionError::AuthRefused { reply, .. }) => {
                warn!(host, user, %reply, "the smart host refused our credentials");
                conn.quit().await;
                return Err(transient(
                    EnhancedCode(4, 7, 8),
                    format!("smart host {host} refused AUTH as {user}: {reply}"),
                    false,
                ));
            }
            Err(e) => {
                warn!(host, "not authenticating: {e}");
                conn.quit().await;
                return Err(transient(EnhancedCode(4, 7, 10), e.to_string(), false));
            }
        }
    }
    Err(last)
}

async fn settle(
    engine: &Arc<Engine>,
    job: &Job,
    report: AttemptReport,
    body: &[u8],
) -> Vec<RecipientOutcome> {
    let meta = &job.message.meta;
    let now = engine.store.now();
    let mut outcomes = Vec::with_capacity(job.recipients.len());
    let mut failed: Vec<DsnRecipient> = Vec::new();
    let mut delayed: Vec<DsnRecipient> = Vec::new();
    let mut delay_until = now;
    let remote = report.host.clone();
    for (r, v) in job.recipients.iter().zip(report.verdicts.iter().cycle()) {
        let dsn_rcpt = |status: EnhancedCode, reply: &str, smtp: bool, reason: &str| DsnRecipient {
            address: r.address.clone(),
            orcpt: r.orcpt.clone(),
            status,
            smtp_reply: smtp.then(|| reply.to_string()),
            remote_mta: if smtp { remote.clone() } else { None },
            reason: if smtp {
                reason.to_string()
            } else {
                reply.to_string()
            },
            last_attempt: Some(now),
        };
        let (status, next, reply) = match v {
            Verdict::Delivered { reply } => {
                info!(rcpt = %r.address, host = ?report.host, tls = ?report.tls, %reply, "delivered");
                (RecipientStatus::Delivered, now, reply.clone())
            }
            Verdict::Permanent {
                status,
                reply,
                smtp,
            } => {
                info!(rcpt = %r.address, host = ?report.host, %reply, "bounced");
                // Reports (null sender) are not the subscriber's own mail.
                if let Some(hook) = &engine.tunables.on_bounce {
                    if !meta.mail_from.is_empty() && !meta.login.is_empty() {
                        (hook.0)(&meta.login, &r.address);
                    }
                }
                if wants_report(&meta.mail_from, r.notify.as_deref(), DsnKind::Failure) {
                    failed.push(dsn_rcpt(
                        *status,
                        reply,
                        *smtp,
                        "the receiving server refused it permanently",
                    ));
                }
                (RecipientStatus::Bounced, now, reply.clone())
            }
            Verdict::Transient {
                status,
                reply,
                smtp,
            } => {
                match after_transient_failure(
                    meta.received_at,
                    r.attempts + 1,
                    now,
                    &engine
                        .config
                        .delivery
                        .retry_schedule
                        .iter()
                        .map(|d| d.get())
                        .collect::<Vec<_>>(),
                    engine.config.delivery.max_queue_time.get(),
                ) {
                    NextStep::RetryAt(at) => {
                        info!(rcpt = %r.address, host = ?report.host, %reply, next_attempt = %at, "deferred");
                        let warn = delay_warning_due(
                            meta.received_at,
                            now,
                            engine.tunables.delay_warning_after,
                            r.delay_warned,
                        ) && wants_report(
                            &meta.mail_from,
                            r.notify.as_deref(),
                            DsnKind::Delay { until: at },
                        );
                        if warn {
                            delay_until = meta
                                .received_at
                                .plus(engine.config.delivery.max_queue_time.get());
                            delayed.push(dsn_rcpt(
                                *status,
                                reply,
                                *smtp,
                                "delivery is being retried",
                            ));
                        }
                        outcomes.push(outcome(
                            r,
                            RecipientStatus::Deferred,
                            at,
                            reply.clone(),
                            &report,
                            r.delay_warned || warn,
                        ));
                        continue;
                    }
                    NextStep::Expire => {
                        let days =
                            engine.config.delivery.max_queue_time.as_secs() as f64 / 86_400.0;
                        let why = format!(
                            "gave up after {days:.1} days in the queue; last error: {reply}"
                        );
                        info!(rcpt = %r.address, %reply, "expired");
                        if wants_report(&meta.mail_from, r.notify.as_deref(), DsnKind::Failure) {
                            let mut d = dsn_rcpt(*status, reply, *smtp, &why);
                            d.reason = why.clone();
                            failed.push(d);
                        }
                        (RecipientStatus::Bounced, now, why)
                    }
                }
            }
        };
        outcomes.push(outcome(r, status, next, reply, &report, r.delay_warned));
    }
    for (kind, list) in [
        (DsnKind::Failure, &failed),
        (DsnKind::Delay { until: delay_until }, &delayed),
    ] {
        if list.is_empty() {
            continue;
        }
        if let Err(e) = enqueue_report(engine, meta, kind, list, body, now).await {
            warn!("could not enqueue the delivery report: {e}");
        }
    }
    outcomes
}

fn outcome(
    r: &ClaimedRecipient,
    status: RecipientStatus,
    next: Timestamp,
    reply: String,
    report: &AttemptReport,
    warned: bool,
) -> RecipientOutcome {
    RecipientOutcome {
        recipient_id: r.id,
        address: r.address.clone(),
        status,
        next_attempt: next,
        reply,
        host: report.host.clone(),
        tls: report.tls.clone(),
        attempted: true,
        delay_warned: warned,
    }
}

/// Builds an RFC 3464 report for `recipients` of `meta` and enqueues it from the
/// null sender to the original sender.
pub(crate) async fn enqueue_report(
    engine_or_cfg: &impl ReportContext,
    meta: &ClaimedMessage,
    kind: DsnKind,
    recipients: &[DsnRecipient],
    original: &[u8],
    now: Timestamp,
) -> Result<String, DeliveryError> {
    let id = store::new_queue_id();
    let report = build_report(&DsnInput {
        reporting_mta: engine_or_cfg.reporting_mta(),
        sender: &meta.mail_from,
        queue_id: &meta.id,
        envid: meta.envid.as_deref(),
        ret: meta.ret.as_deref(),
        arrival: meta.received_at,
        now,
        kind,
        recipients,
        original,
        unique: &id,
    });
    let eight_bit = !report.is_ascii();
    engine_or_cfg
        .store()
        .enqueue(&NewQueuedMessage {
            id: id.clone(),
            login: meta.login.clone(),
            mail_from: String::new(),
            client_ip: None,
            ret: None,
            envid: None,
            smtputf8: !meta.mail_from.is_ascii(),
            body_type: eight_bit.then(|| "8BITMIME".to_string()),
            spool_path: None,
            recipients: vec![NewQueuedRecipient {
                address: meta.mail_from.clone(),
                notify: Some("NEVER".into()),
                orcpt: None,
            }],
            body: Arc::new(report),
            claim: None,
        })
        .await?;
    info!(queue_id = %meta.id, report_id = %id, "delivery report enqueued for {}", meta.mail_from);
    Ok(id)
}

/// Where reports come from and go: the engine, or the CLI's `queue delete --bounce`.
pub(crate) trait ReportContext {
    fn reporting_mta(&self) -> &str;
    fn store(&self) -> &Store;
}

impl ReportContext for Arc<Engine> {
    fn reporting_mta(&self) -> &str {
        &self.helo
    }
    fn store(&self) -> &Store {
        &self.store
    }
}
