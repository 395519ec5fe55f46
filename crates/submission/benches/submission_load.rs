//! Load generator for the submission server, on a client nobody here wrote (lettre).
//!
//! ```text
//! cargo bench -p submission --bench submission_load -- [--sessions N] [--messages M]
//!     [--size BYTES] [--idle K] [--no-idle]
//! ```
//!
//! The server runs in a child process (this binary re-executed with
//! `SUBMISSION_BENCH_SERVE` set) on a temporary SQLite store and data directory, so
//! its memory is measured alone. Then:
//! 1. N concurrent STARTTLS+AUTH PLAIN sessions (lettre over TCP_NODELAY) send M messages
//!    of BYTES each, every one durably accepted (a grouped store commit);
//!    prints messages/s and p50/p99 latency of a whole MAIL..DATA transaction.
//! 2. K idle sessions (plaintext after EHLO, then TLS after STARTTLS+EHLO) and the
//!    server's resident memory from `/proc/PID/status`.
//!
//! Needs `ulimit -n` above K + a few hundred in both processes.

#[path = "../../portcullis/src/allocator.rs"]
mod allocator;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVE_ENV: &str = "SUBMISSION_BENCH_SERVE";

struct Args {
    sessions: usize,
    messages: usize,
    size: usize,
    idle: usize,
}

fn args() -> Args {
    let mut a = Args {
        sessions: 32,
        messages: 4000,
        size: 4096,
        idle: 10_000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = || argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match argv[i].as_str() {
            "--sessions" => a.sessions = val().unwrap_or(a.sessions),
            "--messages" => a.messages = val().unwrap_or(a.messages),
            "--size" => a.size = val().unwrap_or(a.size),
            "--idle" => a.idle = val().unwrap_or(a.idle),
            "--no-idle" => {
                a.idle = 0;
                i -= 1;
            }
            // `cargo bench` passes --bench; ignore what we do not know.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// The server side, in the child process.
fn serve(dir: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = std::path::Path::new(dir);
        let mut config = config::Config::default();
        config.store.url = format!("sqlite://{}", dir.join("bench.db").display());
        config.store.data_dir = dir.join("data");
        config.submission.listen_starttls = vec!["127.0.0.1:0".parse().expect("addr")];
        config.submission.listen_tls = vec![];
        config.submission.limits.messages_per_hour = 1_000_000_000;
        config.submission.limits.recipients_per_day = 1_000_000_000;
        let store = store::Store::open(&config.store.url).await.expect("store");
        let new = store::NewSubscriber {
            login: "bench".into(),
            display_name: None,
            email: Some("bench@example.net".into()),
            plan: policy::Plan::Dynamic,
            static_ips: vec![],
            password_hash: Some(store::password::hash_password("pw")),
        };
        store
            .add_subscriber(&new, &policy::Actor::Operator("bench".into()))
            .await
            .expect("subscriber");
        let tunables = submission::Tunables {
            max_connections: 100_000,
            max_connections_per_ip: 100_000,
            ..Default::default()
        };
        let server = submission::start_with(Arc::new(config), store, tunables)
            .await
            .expect("start");
        println!("READY {}", server.starttls_addrs[0].port());
        std::future::pending::<()>().await;
    });
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn raw_message(size: usize) -> Vec<u8> {
    let mut m =
        b"From: bench@example.net\r\nTo: sink@example.org\r\nSubject: load\r\n\r\n".to_vec();
    let line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

/// One session over TCP with NODELAY: lettre's own transport leaves Nagle on, so the
/// final "." of every message would wait ~40 ms for the server's delayed ACK.
async fn session(port: u16, tls: &TlsParameters) -> AsyncSmtpConnection {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let hello = ClientId::Domain("bench.client".into());
    let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
        .await
        .expect("EHLO");
    conn.starttls(tls.clone(), &hello).await.expect("STARTTLS");
    conn.auth(
        &[Mechanism::Plain],
        &Credentials::new("bench".into(), "pw".into()),
    )
    .await
    .expect("AUTH");
    conn
}

async fn load(port: u16, a: &Args) {
    let tls = TlsParameters::builder("localhost".into())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .expect("tls params");
    let envelope = Envelope::new(
        Some("bench@example.net".parse().expect("from")),
        vec!["sink@example.org".parse().expect("to")],
    )
    .expect("envelope");
    let body = Arc::new(raw_message(a.size));
    // Every session does STARTTLS and AUTH once before the clock starts.
    let mut conns = Vec::with_capacity(a.sessions);
    for _ in 0..a.sessions {
        conns.push(session(port, &tls).await);
    }
    let per = a.messages / a.sessions.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (e, b) = (envelope.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            let mut failed = 0usize;
            for _ in 0..per {
                let t0 = Instant::now();
                match conn.send(&e, &b).await {
                    Ok(_) => lat.push(t0.elapsed()),
                    Err(_) => failed += 1,
                }
            }
            let _ = conn.quit().await;
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.expect("task");
        lat.extend(l);
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "load: {} sessions, {} messages of {} bytes in {:.2}s: {:.0} messages/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
        a.sessions,
        lat.len(),
        body.len(),
        secs,
        lat.len() as f64 / secs,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        failed
    );
}

/// Accepts any certificate: the server's is self-signed.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads until a final reply line (`NNN `).
async fn reply<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> std::io::Result<String> {
    let mut all = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        let n = s.read(&mut b).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        all.extend_from_slice(&b[..n]);
        let text = String::from_utf8_lossy(&all);
        if text.ends_with("\r\n")
            && text
                .trim_end()
                .lines()
                .last()
                .is_some_and(|l| l.as_bytes().get(3) == Some(&b' '))
        {
            return Ok(text.into_owned());
        }
    }
}

/// An open session, held only to keep its connection open.
type Idle = Box<dyn std::any::Any + Send>;

async fn idle_session(port: u16, tls: Option<tokio_rustls::TlsConnector>) -> std::io::Result<Idle> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    reply(&mut s).await?;
    s.write_all(b"EHLO idle.test\r\n").await?;
    reply(&mut s).await?;
    let Some(connector) = tls else {
        return Ok(Box::new(s));
    };
    s.write_all(b"STARTTLS\r\n").await?;
    reply(&mut s).await?;
    let name =
        rustls_pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let mut t = connector.connect(name, s).await?;
    t.write_all(b"EHLO idle.test\r\n").await?;
    reply(&mut t).await?;
    Ok(Box::new(t))
}

async fn idle(port: u16, pid: u32, count: usize) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let (base, _) = rss_kib(pid);
    println!("idle: server RSS before: {:.1} MiB", base as f64 / 1024.0);
    for tls in [false, true] {
        let started = Instant::now();
        let mut held = Vec::with_capacity(count);
        let mut failed = 0;
        for batch in (0..count).collect::<Vec<_>>().chunks(250) {
            let mut tasks = Vec::new();
            for _ in batch {
                let c = tls.then(|| connector.clone());
                tasks.push(tokio::spawn(idle_session(port, c)));
            }
            for t in tasks {
                match t.await {
                    Ok(Ok(s)) => held.push(s),
                    _ => failed += 1,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss, hwm) = rss_kib(pid);
        println!(
            "idle: {} {} sessions open ({} failed) in {:.1}s: server RSS {:.1} MiB (peak {:.1} MiB), {:.1} KiB per session",
            held.len(),
            if tls { "TLS (after STARTTLS+EHLO)" } else { "plaintext (after EHLO)" },
            failed,
            started.elapsed().as_secs_f64(),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            (rss.saturating_sub(base)) as f64 / held.len().max(1) as f64
        );
        drop(held);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct ServerChild(Child);

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    allocator::set_up();
    if let Ok(dir) = std::env::var(SERVE_ENV) {
        serve(&dir);
        return;
    }
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .env(SERVE_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let stdout = child.stdout.take().expect("stdout");
    let child = ServerChild(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("server output");
    let port: u16 = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .expect("READY line");
    let pid = child.0.id();
    let (rss, _) = rss_kib(pid);
    println!("server RSS after start: {:.1} MiB", rss as f64 / 1024.0);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        load(port, &a).await;
        if a.idle > 0 {
            idle(port, pid, a.idle).await;
        }
    });
    let (rss, hwm) = rss_kib(pid);
    println!(
        "server RSS at the end: {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}
