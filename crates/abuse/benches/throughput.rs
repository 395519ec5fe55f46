//! Throughput of the abuse loop's hot paths, printed as figures:
//!
//! - ARF reports parsed per second (one core), and parsed *and attributed*
//!   (`whois` against a SQLite store with 10,000 leases) per second; the full
//!   ingest (parse, attribute, record with dedup, fsync'd) for reference.
//! - Flow records decoded and counted (port-25 fan-out) per second on one core,
//!   for NetFlow v5, v9 and IPFIX.
//!
//! Run: `cargo bench -p abuse --bench throughput` (targets: 10,000 reports/s,
//! 1,000,000 flow records/s per core).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abuse::flow::{build, Decoder, FanOutCounter};
use policy::{Actor, FixedClock, IpNet, LeaseSource, Plan, Timestamp};
use store::{NewLease, NewSubscriber, Store};

const T0: i64 = 1_800_000_000;
const SUBSCRIBERS: u32 = 10_000;

fn sub_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i)
}

fn report(i: u32) -> Vec<u8> {
    let ip = sub_ip(i % SUBSCRIBERS);
    format!(
        "From: fbl@bigmail.example\r\n\
Date: Thu, 26 Nov 2026 10:05:00 +0000\r\n\
Subject: complaint\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"b{i}\"\r\n\
\r\n\
--b{i}\r\n\
Content-Type: text/plain\r\n\
\r\n\
This is an email abuse report for a message from {ip}.\r\n\
--b{i}\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: BigMail-FBL/2.1\r\n\
Version: 1\r\n\
Original-Mail-From: <x@spam.example>\r\n\
Arrival-Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
Source-IP: {ip}\r\n\
Reported-Domain: spam.example\r\n\
\r\n\
--b{i}\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Received: from pc ([{ip}]) by mx.bigmail.example; Thu, 26 Nov 2026 10:00:00 +0000\r\n\
From: <x@spam.example>\r\n\
To: <victim{i}@bigmail.example>\r\n\
Message-ID: <{i}.spam@pc>\r\n\
Subject: cheap pills\r\n\
Date: Thu, 26 Nov 2026 09:59:59 +0000\r\n\
\r\n\
buy now, buy now, buy now\r\n\
--b{i}--\r\n"
    )
    .into_bytes()
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn store_with_leases(dir: &std::path::Path) -> Store {
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let clock = FixedClock::at(Timestamp(T0));
    let store = Store::open_with_clock(&url, Arc::new(clock)).await.unwrap();
    let actor = Actor::System("bench".into());
    let subs: Vec<NewSubscriber> = (0..SUBSCRIBERS)
        .map(|i| NewSubscriber {
            login: format!("u{i}"),
            display_name: None,
            email: None,
            plan: Plan::Dynamic,
            static_ips: vec![],
            password_hash: None,
        })
        .collect();
    store.import_subscribers(&subs, &actor).await.unwrap();
    let leases: Vec<NewLease> = (0..SUBSCRIBERS)
        .map(|i| NewLease {
            login: format!("u{i}"),
            net: IpNet::host(sub_ip(i).into()),
            start: Timestamp(T0 - 86_400 * 365),
            end: None,
            source: LeaseSource::Import,
            session_id: None,
            nas: None,
        })
        .collect();
    store.import_leases(&leases, &actor).await.unwrap();
    store
}

fn bench_arf() {
    let config = config::Config::default();
    let pools = config.network.pools();
    let n = 20_000u32;
    let reports: Vec<Vec<u8>> = (0..n).map(report).collect();

    let start = Instant::now();
    let mut with_ip = 0;
    for r in &reports {
        if abuse::arf::parse(r, &pools).unwrap().source_ip.is_some() {
            with_ip += 1;
        }
    }
    let parse = start.elapsed();
    assert_eq!(with_ip, n);
    println!(
        "arf: {n} reports parsed in {:.3}s: {:.0} reports/s (one core)",
        parse.as_secs_f64(),
        rate(n.into(), parse)
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let store = store_with_leases(dir.path()).await;
        let engine = abuse::Engine::new(&config, store.clone());
        let start = Instant::now();
        let mut attributed = 0;
        for r in reports.iter().take(2_000) {
            let c = abuse::arf::parse(r, engine.pools()).unwrap();
            let at = c.arrival_date.unwrap_or(Timestamp(T0));
            if engine.attribute(c.source_ip, at).await.unwrap().login.is_some() {
                attributed += 1;
            }
        }
        let d = start.elapsed();
        assert_eq!(attributed, 2_000);
        println!(
            "arf: 2000 reports parsed and attributed one by one (whois, SQLite, {SUBSCRIBERS} leases) in {:.3}s: {:.0} reports/s",
            d.as_secs_f64(),
            rate(2_000, d)
        );

        // As `abuse ingest` does it: batches of 256 parsed on both cores, attributed
        // with one batched lookup.
        let start = Instant::now();
        let mut attributed = 0;
        for batch in reports.chunks(256) {
            let (a, b) = batch.split_at(batch.len() / 2);
            let pools = engine.pools();
            let (ca, cb) = std::thread::scope(|s| {
                let ha = s.spawn(|| {
                    a.iter()
                        .map(|r| abuse::arf::parse(r, pools).unwrap())
                        .collect::<Vec<_>>()
                });
                let cb: Vec<_> = b
                    .iter()
                    .map(|r| abuse::arf::parse(r, pools).unwrap())
                    .collect();
                (ha.join().unwrap(), cb)
            });
            let keys: Vec<_> = ca
                .iter()
                .chain(cb.iter())
                .map(|c| (c.source_ip, c.arrival_date.unwrap_or(Timestamp(T0))))
                .collect();
            attributed += engine
                .attribute_many(&keys)
                .await
                .unwrap()
                .iter()
                .filter(|a| a.login.is_some())
                .count() as u32;
        }
        let d = start.elapsed();
        assert_eq!(attributed, n);
        println!(
            "arf: {n} reports parsed and attributed in batches of 256 (two cores, SQLite, {SUBSCRIBERS} leases) in {:.3}s: {:.0} reports/s",
            d.as_secs_f64(),
            rate(n.into(), d)
        );

        let m = 2_000u32;
        let start = Instant::now();
        for r in reports.iter().take(m as usize) {
            abuse::ingest::ingest_with(&engine, r).await.unwrap();
        }
        let d = start.elapsed();
        println!(
            "arf: {m} reports fully ingested (parse, attribute, dedup, record; SQLite synchronous=FULL) in {:.3}s: {:.0} reports/s",
            d.as_secs_f64(),
            rate(m.into(), d)
        );
    });
}

fn bench_flows() {
    let exporter: SocketAddr = "192.0.2.1:2055".parse().unwrap();
    // 10,000 sources, half the flows to port 25, destinations spread wide.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut flows = Vec::new();
    for _ in 0..30_000 {
        let x = next();
        // One flow in a hundred comes from one of two infected PCs.
        let src = if x % 100 == 0 {
            sub_ip(20_000 + ((x >> 8) % 2) as u32)
        } else {
            sub_ip((x % 10_000) as u32)
        };
        let dst = Ipv4Addr::from((x >> 16) as u32);
        let port = if x % 100 == 0 || x & 2 == 0 { 25 } else { 443 };
        flows.push((src, dst, port));
    }
    for (name, packets) in [
        (
            "NetFlow v5",
            flows.chunks(30).map(build::v5).collect::<Vec<_>>(),
        ),
        (
            "NetFlow v9",
            std::iter::once(build::v9(1, true, &[]))
                .chain(flows.chunks(50).map(|c| build::v9(1, false, c)))
                .collect(),
        ),
        (
            "IPFIX",
            std::iter::once(build::ipfix(1, true, &[]))
                .chain(flows.chunks(50).map(|c| build::ipfix(1, false, c)))
                .collect(),
        ),
    ] {
        let mut decoder = Decoder::new();
        let mut counter = FanOutCounter::new(Duration::from_secs(600), 100);
        let rounds = 100u64;
        let start = Instant::now();
        let mut alerts = 0u64;
        let mut records = 0u64;
        for round in 0..rounds {
            let now = Timestamp(T0 + (round as i64 / 20) * 600);
            for p in &packets {
                records += decoder
                    .decode(exporter, p, |r| {
                        if counter.observe(r, now).is_some() {
                            alerts += 1;
                        }
                    })
                    .unwrap() as u64;
            }
        }
        let d = start.elapsed();
        println!(
            "flows: {name}: {records} records decoded and counted in {:.3}s: {:.0} records/s (one core; {alerts} fan-outs)",
            d.as_secs_f64(),
            rate(records, d)
        );
    }
}

fn main() {
    bench_flows();
    bench_arf();
}
