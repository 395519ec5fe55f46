//! Test doubles on loopback: a tiny authoritative DNS server (hand-encoded answers
//! for MX, A, AAAA, TXT; NXDOMAIN for unknown names), a scripted SMTP receiver that
//! can accept, answer 4xx/5xx, hang, and offer STARTTLS, and helpers to run
//! Postfix's `smtp-sink`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

// ---------------------------------------------------------------- DNS

#[derive(Clone, Debug)]
pub enum Rr {
    Mx(u16, &'static str),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Txt(String),
    /// usage, selector, matching, data.
    Tlsa(u8, u8, u8, Vec<u8>),
}

impl Rr {
    fn qtype(&self) -> u16 {
        match self {
            Rr::A(_) => 1,
            Rr::Mx(..) => 15,
            Rr::Txt(_) => 16,
            Rr::Aaaa(_) => 28,
            Rr::Tlsa(..) => 52,
        }
    }
}

fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// Starts the DNS server; records are `(name, record)`. Only 127.0.0.x / ::1
/// addresses belong in it.
pub async fn dns_server(records: Vec<(&'static str, Rr)>) -> SocketAddr {
    dns_server_signed(records, vec![]).await
}

/// Like [`dns_server`], but answers about the names in `signed` carry the AD bit,
/// as a validating resolver's would for a DNSSEC-signed zone.
pub async fn dns_server_signed(
    records: Vec<(&'static str, Rr)>,
    signed: Vec<&'static str>,
) -> SocketAddr {
    let signed: std::collections::HashSet<String> =
        signed.into_iter().map(|n| n.to_ascii_lowercase()).collect();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let mut zone: HashMap<String, Vec<Rr>> = HashMap::new();
    for (n, r) in records {
        zone.entry(n.trim_end_matches('.').to_ascii_lowercase())
            .or_default()
            .push(r);
    }
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            if let Some(resp) = answer(&buf[..n], &zone, &signed) {
                let _ = sock.send_to(&resp, peer).await;
            }
        }
    });
    addr
}

fn answer(
    q: &[u8],
    zone: &HashMap<String, Vec<Rr>>,
    signed: &std::collections::HashSet<String>,
) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question_end = i + 4;
    let name = labels.join(".");
    let records = zone.get(&name);
    let rcode: u16 = if records.is_none() { 3 } else { 0 };
    let answers: Vec<&Rr> = records
        .map(|r| r.iter().filter(|r| r.qtype() == qtype).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    out.extend_from_slice(&q[0..2]);
    let rd = u16::from(q[2] & 1) << 8;
    let ad: u16 = if signed.contains(&name) { 0x0020 } else { 0 };
    out.extend_from_slice(&(0x8400 | rd | 0x0080 | ad | rcode).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&q[12..question_end]);
    for rr in answers {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&rr.qtype().to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        let mut rdata = Vec::new();
        match rr {
            Rr::A(a) => rdata.extend_from_slice(&a.octets()),
            Rr::Aaaa(a) => rdata.extend_from_slice(&a.octets()),
            Rr::Mx(p, h) => {
                rdata.extend_from_slice(&p.to_be_bytes());
                encode_name(h, &mut rdata);
            }
            Rr::Tlsa(u, sel, m, data) => {
                rdata.extend_from_slice(&[*u, *sel, *m]);
                rdata.extend_from_slice(data);
            }
            Rr::Txt(t) => {
                for chunk in t.as_bytes().chunks(255) {
                    rdata.push(chunk.len() as u8);
                    rdata.extend_from_slice(chunk);
                }
            }
        }
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

// ---------------------------------------------------------------- SMTP receiver

/// How the receiver answers.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub greeting: String,
    /// Reply to every RCPT, unless `rcpt_replies` has one for the address.
    pub rcpt: String,
    pub rcpt_replies: HashMap<String, String>,
    /// Reply after the final dot.
    pub data_end: String,
    /// Never answer after this command (e.g. "DATA-END", "RCPT").
    pub hang_at: Option<&'static str>,
    pub starttls: bool,
    pub pipelining: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    /// Offer `AUTH PLAIN LOGIN` (and refuse every attempt).
    pub auth: bool,
    /// Offer only `AUTH LOGIN` (after STARTTLS) and accept these credentials.
    pub auth_login: Option<(String, String)>,
    /// The TLS identity; default: a self-signed certificate for `mx.test`.
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            greeting: "220 test.receiver ESMTP".into(),
            rcpt: "250 2.1.5 ok".into(),
            rcpt_replies: HashMap::new(),
            data_end: "250 2.0.0 queued".into(),
            hang_at: None,
            starttls: false,
            pipelining: true,
            eightbitmime: true,
            smtputf8: true,
            auth: false,
            auth_login: None,
            tls_config: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    pub tls: bool,
    pub connection: u64,
    /// The client's EHLO/HELO name.
    pub helo: String,
    /// When the final dot arrived.
    pub at: std::time::Instant,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<Mutex<u64>>,
    /// The verb of every command received, in order.
    pub commands: Arc<Mutex<Vec<String>>>,
    /// The login of a successful AUTH LOGIN.
    pub authenticated: Arc<Mutex<Option<String>>>,
}

impl Receiver {
    pub async fn start(ip: &str, port: u16, behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind((ip, port)).await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            behaviour: Arc::new(Mutex::new(behaviour)),
            received: Arc::new(Mutex::new(Vec::new())),
            connections: Arc::new(Mutex::new(0)),
            commands: Arc::new(Mutex::new(Vec::new())),
            authenticated: Arc::new(Mutex::new(None)),
        };
        let acceptor = match &r.behaviour.lock().unwrap().tls_config {
            Some(c) => tokio_rustls::TlsAcceptor::from(c.clone()),
            None => tls_acceptor(),
        };
        let rr = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let rr = rr.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let conn = {
                        let mut c = rr.connections.lock().unwrap();
                        *c += 1;
                        *c
                    };
                    if let Some(tcp) = session(tcp, &rr, false, conn).await {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            session(tls, &rr, true, conn).await;
                        }
                    }
                });
            }
        });
        r
    }

    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// A server TLS configuration with this chain and key.
pub fn server_tls(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    )
}

/// A certificate authority made in the test, for MTA-STS and DANE-TA cases.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    pub fn der(&self) -> rustls_pki_types::CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A server certificate for `names`, signed by this CA: (leaf + CA chain, key).
    pub fn issue(
        &self,
        names: &[&str],
    ) -> (
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    ) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (
            vec![cert.der().clone(), self.der()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }
}

// ---------------------------------------------------------------- MTA-STS policy host

/// An HTTPS server (hyper over rustls) answering `/.well-known/mta-sts.txt` with
/// the policy registered for the request's Host.
pub struct PolicyServer {
    pub addr: SocketAddr,
    /// Requests answered.
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl PolicyServer {
    pub async fn start(
        tls: Arc<rustls::ServerConfig>,
        policies: HashMap<String, String>,
    ) -> PolicyServer {
        use hyper::service::service_fn;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let policies = Arc::new(policies);
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, policies, counter) =
                    (acceptor.clone(), policies.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let policies = policies.clone();
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let host = req
                                .headers()
                                .get("host")
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let found = policies
                                .get(&host)
                                .filter(|_| req.uri().path() == "/.well-known/mta-sts.txt");
                            let resp = match found {
                                Some(p) => hyper::Response::builder()
                                    .header("content-type", "text/plain")
                                    .body(p.clone()),
                                None => hyper::Response::builder().status(404).body(String::new()),
                            };
                            Ok::<_, std::convert::Infallible>(resp.unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        PolicyServer { addr, hits, task }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let cert = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Runs one session; returns the stream when the client asked for STARTTLS.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    r: &Receiver,
    tls: bool,
    conn: u64,
) -> Option<S> {
    let mut io = BufReader::new(stream);
    let b = r.behaviour.lock().unwrap().clone();
    let hang = |stage: &str| {
        b.hang_at == Some(stage) || (stage == "GREETING" && b.hang_at == Some("GREETING"))
    };
    if !tls {
        if hang("GREETING") {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        io.write_all(format!("{}\r\n", b.greeting).as_bytes())
            .await
            .ok()?;
        if !b.greeting.starts_with('2') {
            return None;
        }
    }
    let mut mail_from = String::new();
    let mut helo = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let verb = upper.split([' ', ':']).next().unwrap_or("").to_string();
        let b = r.behaviour.lock().unwrap().clone();
        r.commands.lock().unwrap().push(verb.clone());
        if b.hang_at == Some(verb.as_str()) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let reply = match verb.as_str() {
            "EHLO" => {
                helo = cmd[4..].trim().to_string();
                let mut caps = vec!["test.receiver".to_string()];
                if b.pipelining {
                    caps.push("PIPELINING".into());
                }
                if b.eightbitmime {
                    caps.push("8BITMIME".into());
                }
                if b.smtputf8 {
                    caps.push("SMTPUTF8".into());
                }
                if b.starttls && !tls {
                    caps.push("STARTTLS".into());
                }
                if b.auth {
                    caps.push("AUTH PLAIN LOGIN".into());
                } else if b.auth_login.is_some() && tls {
                    caps.push("AUTH LOGIN".into());
                }
                caps.push("SIZE 10000000".into());
                caps.push("ENHANCEDSTATUSCODES".into());
                let n = caps.len();
                caps.iter()
                    .enumerate()
                    .map(|(i, c)| format!("250{}{}\r\n", if i + 1 == n { ' ' } else { '-' }, c))
                    .collect::<String>()
            }
            "HELO" => "250 test.receiver\r\n".into(),
            "STARTTLS" if b.starttls && !tls => {
                io.write_all(b"220 2.0.0 go ahead\r\n").await.ok()?;
                io.flush().await.ok()?;
                return Some(io.into_inner());
            }
            "MAIL" => {
                mail_from = between(&cmd);
                rcpts.clear();
                "250 2.1.0 ok\r\n".into()
            }
            "RCPT" => {
                let a = between(&cmd);
                let reply = b.rcpt_replies.get(&a).cloned().unwrap_or(b.rcpt.clone());
                if reply.starts_with('2') {
                    rcpts.push(a);
                }
                format!("{reply}\r\n")
            }
            "DATA" => {
                if rcpts.is_empty() {
                    "554 5.5.1 no valid recipients\r\n".to_string()
                } else {
                    io.write_all(b"354 go\r\n").await.ok()?;
                    io.flush().await.ok()?;
                    let mut data = Vec::new();
                    loop {
                        let mut l = Vec::new();
                        if io.read_until(b'\n', &mut l).await.ok()? == 0 {
                            return None;
                        }
                        if l == b".\r\n" {
                            break;
                        }
                        let l = if l.starts_with(b"..") {
                            l[1..].to_vec()
                        } else {
                            l
                        };
                        data.extend_from_slice(&l);
                    }
                    if b.hang_at == Some("DATA-END") {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    if b.data_end.starts_with('2') {
                        r.received.lock().unwrap().push(Received {
                            mail_from: mail_from.clone(),
                            rcpts: rcpts.clone(),
                            data,
                            tls,
                            connection: conn,
                            helo: helo.clone(),
                            at: std::time::Instant::now(),
                        });
                    }
                    format!("{}\r\n", b.data_end)
                }
            }
            "RSET" => {
                rcpts.clear();
                "250 2.0.0 ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 ok\r\n".into(),
            "AUTH" if upper == "AUTH LOGIN" && b.auth_login.is_some() => {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD;
                let mut given = Vec::new();
                for prompt in ["334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n"] {
                    io.write_all(prompt.as_bytes()).await.ok()?;
                    io.flush().await.ok()?;
                    line.clear();
                    io.read_line(&mut line).await.ok()?;
                    let decoded = b64.decode(line.trim_end()).unwrap_or_default();
                    given.push(String::from_utf8_lossy(&decoded).into_owned());
                }
                let (user, password) = b.auth_login.clone().unwrap_or_default();
                if given == [user.clone(), password] {
                    *r.authenticated.lock().unwrap() = Some(user);
                    "235 2.7.0 ok\r\n".into()
                } else {
                    "535 5.7.8 authentication failed\r\n".into()
                }
            }
            "AUTH" => "535 5.7.8 authentication failed\r\n".into(),
            "QUIT" => {
                let _ = io.write_all(b"221 2.0.0 bye\r\n").await;
                return None;
            }
            _ => "500 5.5.2 unknown command\r\n".into(),
        };
        io.write_all(reply.as_bytes()).await.ok()?;
        io.flush().await.ok()?;
    }
}

fn between(cmd: &str) -> String {
    match (cmd.find('<'), cmd.find('>')) {
        (Some(a), Some(b)) if a < b => cmd[a + 1..b].to_string(),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------- smtp-sink

pub fn smtp_sink_path() -> Option<&'static str> {
    ["/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `smtp-sink` on 127.0.0.1:port, appending transactions to `dump`.
pub async fn smtp_sink(port: u16, dump: &std::path::Path) -> tokio::process::Child {
    let path = smtp_sink_path().expect("smtp-sink (Debian package postfix) is installed");
    // smtp-sink drops to `nobody`, who must be able to write the dump.
    if let Some(parent) = dump.parent() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777));
    }
    let child = tokio::process::Command::new(path)
        .arg("-u")
        .arg("nobody")
        .arg("-D")
        .arg(dump)
        .arg(format!("127.0.0.1:{port}"))
        .arg("256")
        .kill_on_drop(true)
        .spawn()
        .expect("smtp-sink starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

// ---------------------------------------------------------------- store and config

pub async fn sqlite_store(dir: &std::path::Path) -> store::Store {
    store::Store::open(&format!("sqlite://{}", dir.join("q.db").display()))
        .await
        .unwrap()
}

pub fn config(dns: SocketAddr) -> config::Config {
    let mut c = config::Config::default();
    c.submission.hostname = "mail.isp.test".into();
    c.delivery.dns_server = Some(dns);
    c.delivery.retry_schedule = vec![config::Duration::secs(60)];
    c
}

pub fn tunables(port: u16) -> delivery::DeliveryTunables {
    delivery::DeliveryTunables {
        smtp_port: port,
        poll_interval: Duration::from_millis(100),
        timeouts: delivery::protocol::Timeouts::all(Duration::from_secs(3)),
        idle_connection: Duration::from_millis(500),
        ..delivery::DeliveryTunables::default()
    }
}

pub fn message(from: &str, to: &[&str], body: &str) -> store::NewQueuedMessage {
    store::NewQueuedMessage {
        id: store::new_queue_id(),
        login: "ann".into(),
        mail_from: from.into(),
        recipients: to
            .iter()
            .map(|a| store::NewQueuedRecipient {
                address: a.to_string(),
                notify: None,
                orcpt: Some(format!("rfc822;{a}")),
            })
            .collect(),
        body: Arc::new(body.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// Polls `f` until true or `secs` pass.
pub async fn wait_until<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
