//! The DNSBL monitor against a real rbldnsd on loopback: listings (A code and TXT
//! reason), 127.255.255.x refusals that are not listings, and delisting.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use abuse::dnsbl::Monitor;
use common::*;
use policy::Port25State;

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// rbldnsd drops root for `nobody`, who must read the zone.
async fn rbldnsd(dir: &Path, port: u16) -> tokio::process::Child {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("zone"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = tokio::process::Command::new("rbldnsd")
        .args(["-n", "-q", "-u", "nobody", "-b"])
        .arg(format!("127.0.0.1/{port}"))
        .arg("-r")
        .arg(dir)
        .arg("bl.test:ip4set:zone")
        .kill_on_drop(true)
        .spawn()
        .expect("rbldnsd (apt-get install rbldnsd)");
    // Wait until it answers.
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = abuse::dnsbl::Client::bind("127.0.0.1:0".parse().unwrap(), server)
        .await
        .unwrap();
    for _ in 0..50 {
        if client
            .query("2.0.0.127.bl.test", abuse::dns::QType::A)
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

const ZONE: &str = ":127.0.0.2:Listed for sending spam, see http://bl.test/lookup?$\n\
100.64.1.5\n\
100.64.1.6 :127.0.0.3:Botnet command and control\n\
100.64.1.7 :127.255.255.254:Query refused: use your own resolver\n";

async fn dnsbl_listing_reinstates_refusal_ignored_delisting_seen(env: Env) {
    let store = &env.store;
    dynamic_with_lease(store, "alice", "100.64.1.5").await;
    opt_out(store, "alice").await;
    dynamic_with_lease(store, "bob", "100.64.1.6").await;
    dynamic_with_lease(store, "carol", "100.64.1.7").await;
    opt_out(store, "carol").await;
    dynamic_with_lease(store, "dan", "100.64.1.8").await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zone"), ZONE).unwrap();
    let port = free_udp_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = rbldnsd(dir.path(), port).await;

    let engine = abuse::Engine::new(&env.config, store.clone());
    let mut monitor = Monitor::new(
        engine,
        vec!["bl.test".into()],
        server,
        Duration::from_secs(3600),
    );
    monitor.gap = Duration::from_millis(2);
    let r = monitor.sweep().await.unwrap();
    assert_eq!(r.addresses, 4);
    assert_eq!(
        (r.listed, r.newly_listed, r.refused, r.delisted, r.errors),
        (2, 2, 1, 0, 0),
        "{r:?}"
    );

    assert_eq!(
        store.subscriber("alice").await.unwrap().port25,
        Port25State::Reinstated
    );
    assert_eq!(
        store.subscriber("bob").await.unwrap().port25,
        Port25State::Blocked
    );
    assert_eq!(
        store.subscriber("carol").await.unwrap().port25,
        Port25State::OptedOut
    );
    let st = store
        .dnsbl_state(ip("100.64.1.5"), "bl.test")
        .await
        .unwrap()
        .unwrap();
    assert!(st.listed);
    assert_eq!(st.code.as_deref(), Some("127.0.0.2"));
    assert!(
        st.reason
            .as_deref()
            .unwrap()
            .contains("Listed for sending spam"),
        "{st:?}"
    );
    let bob = store
        .dnsbl_state(ip("100.64.1.6"), "bl.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.code.as_deref(), Some("127.0.0.3"));
    assert_eq!(bob.reason.as_deref(), Some("Botnet command and control"));
    assert!(store
        .dnsbl_state(ip("100.64.1.7"), "bl.test")
        .await
        .unwrap()
        .is_none());
    let cases = store.abuse_cases(Some("bob")).await.unwrap();
    assert_eq!(cases[0].by_kind.get("listing"), Some(&1));
    let notices = store.notices(Some("alice"), 5).await.unwrap();
    assert_eq!(notices.len(), 1);
    assert!(notices[0].body.contains("listed on the bl.test blocklist"));

    // Nothing new on a second sweep.
    let r = monitor.sweep().await.unwrap();
    assert_eq!((r.listed, r.newly_listed, r.delisted), (2, 0, 0));

    // Alice's address is delisted.
    drop(child);
    std::fs::write(dir.path().join("zone"), ZONE.replace("100.64.1.5\n", "")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _child = rbldnsd(dir.path(), port).await;
    let r = monitor.sweep().await.unwrap();
    assert_eq!((r.listed, r.newly_listed, r.delisted), (1, 0, 1), "{r:?}");
    let st = store
        .dnsbl_state(ip("100.64.1.5"), "bl.test")
        .await
        .unwrap()
        .unwrap();
    assert!(!st.listed);
    assert!(st.delisted_at.is_some());
    let ev = store.evidence_of(Some("alice"), 10).await.unwrap();
    assert_eq!(ev[0].kind, "delisting");
    assert_eq!(store.dnsbl_listed().await.unwrap().len(), 1);
}
both_backends!(
    dnsbl,
    dnsbl_listing_reinstates_refusal_ignored_delisting_seen
);
