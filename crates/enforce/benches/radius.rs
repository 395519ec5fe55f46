//! RADIUS server throughput over loopback: Access-Request/s and Accounting-Request/s.
//!
//! `cargo bench -p enforce --bench radius` starts the real server (SQLite store in a
//! temporary directory, like `portcullis serve` with defaults) and a load generator
//! built on the `radius` codec in the same process: `RADIUS_BENCH_CONCURRENCY`
//! requests in flight (default 64), each phase running `RADIUS_BENCH_SECS` (default 5).
//! The generator shares the machine's cores with the server, so the figures are a
//! lower bound of what a dedicated server does. Phases:
//!
//! - Access-Request, cold: every login's first PAP check pays one argon2id verification;
//! - Access-Request, warm: logins repeat, answered from the verified-password cache;
//! - Accounting Interim-Update of started sessions: group-committed (last_seen);
//! - Accounting Start + Stop: a lease opened and closed, with their events.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use policy::{Actor, Plan};
use radius::{AcctStatusType, Attribute, Code, Packet};
use store::{NewSubscriber, Store};
use tokio::net::UdpSocket;

const SECRET: &[u8] = b"bench-secret";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

#[derive(Clone, Copy)]
enum Kind {
    Access,
    Start,
    Interim,
    StartStop,
}

fn request(kind: Kind, id: u8, n: u64, logins: u64, start: bool) -> Vec<u8> {
    let login = format!("sub{}", n % logins);
    let result = match kind {
        Kind::Access => {
            let auth = radius::crypto::random_authenticator();
            let mut p = Packet::new(Code::AccessRequest, id).with(Attribute::UserName(login));
            let hidden =
                radius::hide_password(b"bench-password", SECRET, &auth).unwrap_or_default();
            p.attributes.push(Attribute::UserPassword(hidden));
            p.attributes
                .push(Attribute::NasIpAddress([127, 0, 0, 1].into()));
            p.authenticator = auth;
            p.encode_request(SECRET)
        }
        Kind::Start | Kind::Interim | Kind::StartStop => {
            let status = match (kind, start) {
                (Kind::Interim, _) => AcctStatusType::InterimUpdate,
                (Kind::Start, _) => AcctStatusType::Start,
                (_, true) => AcctStatusType::Start,
                (_, false) => AcctStatusType::Stop,
            };
            let ip = 0x6440_0000u32 + (n % logins) as u32;
            Packet::new(Code::AccountingRequest, id)
                .with(Attribute::AcctStatusType(status))
                .with(Attribute::UserName(login))
                .with(Attribute::AcctSessionId(format!("s{}", n % logins)))
                .with(Attribute::FramedIpAddress(ip.into()))
                // A distinct Acct-Session-Time keeps retransmission detection out of the way.
                .with(Attribute::AcctSessionTime(n as u32))
                .encode_request(SECRET)
        }
    };
    result.unwrap_or_default()
}

/// Runs `concurrency` clients for `secs` seconds; returns (answered, lost).
async fn run(
    server: SocketAddr,
    kind: Kind,
    concurrency: u64,
    secs: u64,
    logins: u64,
) -> (u64, u64) {
    let answered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (answered, lost) = (answered.clone(), lost.clone());
        workers.push(tokio::spawn(async move {
            let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else {
                return;
            };
            if sock.connect(server).await.is_err() {
                return;
            }
            let mut buf = [0u8; 4096];
            let mut i: u64 = 0;
            while Instant::now() < deadline {
                // Worker w owns logins w, w + concurrency, ...: no two in flight share a session.
                let n = w + (i / 2) * concurrency;
                let bytes = request(kind, i as u8, n, logins, i.is_multiple_of(2));
                i += 1;
                if sock.send(&bytes).await.is_err() {
                    lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
                    Ok(Ok(_)) => answered.fetch_add(1, Ordering::Relaxed),
                    _ => lost.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    (
        answered.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
    )
}

/// Sends one request per login in `0..logins` until each is answered: Access-Requests
/// fill the verified-password cache, Accounting Starts open the sessions.
async fn prime(server: SocketAddr, kind: Kind, logins: u64, concurrency: u64) {
    let mut workers = Vec::new();
    for w in 0..concurrency {
        workers.push(tokio::spawn(async move {
            let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else {
                return;
            };
            if sock.connect(server).await.is_err() {
                return;
            }
            let mut buf = [0u8; 4096];
            let mut id: u8 = 0;
            for n in (w..logins).step_by(concurrency as usize) {
                for _ in 0..5 {
                    id = id.wrapping_add(1);
                    if sock
                        .send(&request(kind, id, n, logins, true))
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf)).await
                    {
                        break;
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let secs = env("RADIUS_BENCH_SECS", 5);
    let concurrency = env("RADIUS_BENCH_CONCURRENCY", 64);
    let logins = env("RADIUS_BENCH_LOGINS", 10_000).max(concurrency);
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(&format!("sqlite://{}/bench.db", dir.path().display()))
        .await
        .expect("store");
    let hash = store::password::hash_password("bench-password");
    let subs: Vec<NewSubscriber> = (0..logins)
        .map(|i| NewSubscriber {
            login: format!("sub{i}"),
            display_name: None,
            email: None,
            plan: Plan::Dynamic,
            static_ips: vec![],
            password_hash: Some(hash.clone()),
        })
        .collect();
    store
        .import_subscribers(&subs, &Actor::Operator("bench".into()))
        .await
        .map_err(|(_, e)| e)
        .expect("import");

    let mut config = config::Config::default();
    let auth: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let acct: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    config.radius.listen_auth = vec![auth];
    config.radius.listen_acct = vec![acct];
    config.radius.clients = vec![config::RadiusClient {
        address: "127.0.0.0/8".parse().expect("net"),
        secret: String::from_utf8_lossy(SECRET).into_owned(),
    }];
    let _tasks = enforce::radius_server::start(Arc::new(config), store.clone())
        .await
        .expect("server starts");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("RADIUS over loopback: {concurrency} requests in flight, {secs} s per phase, {logins} subscribers, {cores} cores shared with the load generator");

    let cold_secs = secs.min(3);
    let phases: [(&str, SocketAddr, Kind, u64, u64); 4] = [
        (
            "Access-Request (cold: argon2id per login)",
            auth,
            Kind::Access,
            cold_secs,
            logins,
        ),
        (
            "Access-Request (warm: verified-password cache)",
            auth,
            Kind::Access,
            secs,
            concurrency * 4,
        ),
        (
            "Accounting-Request Interim-Update (of started sessions)",
            acct,
            Kind::Interim,
            secs,
            logins,
        ),
        (
            "Accounting-Request Start/Stop pairs",
            acct,
            Kind::StartStop,
            secs,
            logins,
        ),
    ];
    for (name, server, kind, secs, logins) in phases {
        let prime_with = match kind {
            Kind::Access if logins == concurrency * 4 => Some(Kind::Access),
            Kind::Interim => Some(Kind::Start),
            _ => None,
        };
        if let Some(with) = prime_with {
            let started = Instant::now();
            prime(server, with, logins, concurrency).await;
            println!(
                "  (primed {logins} logins in {:.1} s)",
                started.elapsed().as_secs_f64()
            );
        }
        let started = Instant::now();
        let (answered, lost) = run(server, kind, concurrency, secs, logins).await;
        let rate = answered as f64 / started.elapsed().as_secs_f64();
        println!("  {name}: {rate:.0} requests/s ({answered} answered, {lost} unanswered)");
    }
}
