//! The flow collector on loopback: hand-built NetFlow v5, v9 and IPFIX datagrams,
//! garbage and truncated ones, and softflowd exporting flows from a pcap the test
//! writes. Port-25 fan-out re-instates an opted-out subscriber and sends a blocked
//! one an infection notice.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use abuse::collector::{Collector, CollectorStats};
use abuse::flow::build;
use common::*;
use policy::Port25State;

async fn collector(env: &Env, threshold: u32) -> (SocketAddr, Arc<CollectorStats>) {
    let mut config = env.config.clone();
    config.abuse.thresholds.flow_destinations = threshold;
    let engine = abuse::Engine::new(&config, env.store.clone());
    let c = Collector::bind("127.0.0.1:0".parse().unwrap(), engine)
        .await
        .unwrap();
    let addr = c.local_addr().unwrap();
    let stats = c.stats.clone();
    tokio::spawn(c.run());
    (addr, stats)
}

fn fan(src: [u8; 4], from: u8, n: u8) -> Vec<(Ipv4Addr, Ipv4Addr, u16)> {
    (from..from + n)
        .map(|i| (Ipv4Addr::from(src), Ipv4Addr::new(203, 0, 113, i), 25))
        .collect()
}

async fn wait_for(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn hand_built_datagrams(env: Env) {
    let store = env.store.clone();
    dynamic_with_lease(&store, "alice", "100.64.1.5").await;
    opt_out(&store, "alice").await;
    dynamic_with_lease(&store, "bob", "100.64.1.6").await;
    dynamic_with_lease(&store, "carol", "100.64.1.7").await;
    opt_out(&store, "carol").await;
    let (addr, stats) = collector(&env, 20).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // Garbage and truncated datagrams are skipped and counted.
    sock.send_to(b"\x00\x07hello", addr).await.unwrap();
    let v5 = build::v5(&fan([100, 64, 1, 5], 0, 10));
    sock.send_to(&v5[..v5.len() - 7], addr).await.unwrap();
    sock.send_to(b"", addr).await.unwrap();

    // NetFlow v5: alice, opted out, reaches 20 destinations.
    sock.send_to(&build::v5(&fan([100, 64, 1, 5], 0, 10)), addr)
        .await
        .unwrap();
    sock.send_to(&build::v5(&fan([100, 64, 1, 5], 10, 10)), addr)
        .await
        .unwrap();
    // Other traffic does not count: port 80, and sources outside the pools.
    let web: Vec<_> = fan([100, 64, 1, 7], 0, 30)
        .into_iter()
        .map(|(s, d, _)| (s, d, 80))
        .collect();
    sock.send_to(&build::v5(&web[..25]), addr).await.unwrap();
    sock.send_to(&build::v5(&fan([192, 0, 2, 9], 0, 25)), addr)
        .await
        .unwrap();

    // NetFlow v9 for bob (blocked): data before the template is skipped.
    sock.send_to(&build::v9(1, false, &fan([100, 64, 1, 6], 0, 10)), addr)
        .await
        .unwrap();
    sock.send_to(&build::v9(1, true, &fan([100, 64, 1, 6], 0, 15)), addr)
        .await
        .unwrap();
    sock.send_to(&build::v9(1, false, &fan([100, 64, 1, 6], 15, 10)), addr)
        .await
        .unwrap();

    // IPFIX for carol.
    sock.send_to(&build::ipfix(5, true, &fan([100, 64, 1, 7], 0, 12)), addr)
        .await
        .unwrap();
    sock.send_to(&build::ipfix(5, false, &fan([100, 64, 1, 7], 12, 12)), addr)
        .await
        .unwrap();

    let s2 = store.clone();
    assert!(
        wait_for(async || {
            s2.subscriber("alice").await.unwrap().port25 == Port25State::Reinstated
                && s2.subscriber("carol").await.unwrap().port25 == Port25State::Reinstated
                && !s2.notices(Some("bob"), 5).await.unwrap().is_empty()
        })
        .await,
        "stats {:?}",
        stats.snapshot()
    );
    let snap = stats.snapshot();
    assert_eq!(snap.datagrams, 12, "{snap:?}");
    assert_eq!(snap.refused, 3, "{snap:?}");
    assert_eq!(snap.fan_outs, 3, "{snap:?}");
    assert_eq!(
        store.subscriber("bob").await.unwrap().port25,
        Port25State::Blocked
    );
    let bob = store.notices(Some("bob"), 5).await.unwrap();
    assert_eq!(bob[0].kind, "infection");
    assert!(
        bob[0]
            .body
            .contains("port-25 connections to 20 distinct mail servers"),
        "{}",
        bob[0].body
    );
    let ev = store.evidence_of(Some("alice"), 5).await.unwrap();
    assert_eq!(ev[0].kind, "flow");
    assert_eq!(ev[0].detail["destinations"], 20);
}
both_backends!(hand_built, hand_built_datagrams);

/// A pcap of TCP SYNs from `src` to `n` destinations on port 25.
fn write_pcap(path: &Path, src: Ipv4Addr, n: u32) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..n {
        let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i * 7);
        let mut pkt = Vec::new();
        pkt.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip[4..6].copy_from_slice(&(i as u16).to_be_bytes());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        pkt.extend_from_slice(&ip);
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&(40000 + i as u16).to_be_bytes());
        tcp.extend_from_slice(&25u16.to_be_bytes());
        tcp.extend_from_slice(&(1000 + i).to_be_bytes());
        tcp.extend_from_slice(&0u32.to_be_bytes());
        tcp.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        pkt.extend_from_slice(&tcp);
        let ts = 1_800_000_000u32 + i / 10;
        out.extend_from_slice(&ts.to_le_bytes());
        out.extend_from_slice(&((i % 10) * 1000).to_le_bytes());
        out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        out.extend_from_slice(&pkt);
    }
    std::fs::write(path, out).unwrap();
}

fn checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

async fn softflowd_exports(env: Env) {
    let store = env.store.clone();
    dynamic_with_lease(&store, "dave", "100.64.2.7").await;
    opt_out(&store, "dave").await;
    dynamic_with_lease(&store, "erin", "100.64.2.8").await;
    dynamic_with_lease(&store, "fred", "100.64.2.9").await;
    opt_out(&store, "fred").await;
    let dir = tempfile::tempdir().unwrap();
    for (version, login, src) in [
        ("5", "dave", [100, 64, 2, 7]),
        ("9", "erin", [100, 64, 2, 8]),
        ("10", "fred", [100, 64, 2, 9]),
    ] {
        let pcap = dir.path().join(format!("syn-{version}.pcap"));
        write_pcap(&pcap, Ipv4Addr::from(src), 150);
        let (addr, stats) = collector(&env, 100).await;
        let out = tokio::process::Command::new("softflowd")
            .arg("-r")
            .arg(&pcap)
            .args(["-n", &addr.to_string(), "-v", version])
            .output()
            .await
            .expect("softflowd (apt-get install softflowd)");
        assert!(
            out.status.success(),
            "softflowd -v {version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s2 = store.clone();
        // Done when the decision is applied: re-instated, or notified (erin, blocked).
        let ok = wait_for(async || {
            s2.subscriber(login).await.unwrap().port25 == Port25State::Reinstated
                || !s2.notices(Some(login), 5).await.unwrap().is_empty()
        })
        .await;
        let snap = stats.snapshot();
        assert!(
            ok,
            "softflowd -v {version}: no fan-out recorded; {snap:?}; {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(snap.smtp_records >= 150, "{snap:?}");
        assert_eq!(snap.refused, 0, "{snap:?}");
    }
    assert_eq!(
        store.subscriber("dave").await.unwrap().port25,
        Port25State::Reinstated
    );
    assert_eq!(
        store.subscriber("fred").await.unwrap().port25,
        Port25State::Reinstated
    );
    let erin = store.notices(Some("erin"), 5).await.unwrap();
    assert_eq!(erin[0].kind, "infection");
}
both_backends!(softflowd, softflowd_exports);
