//! The RADIUS server and CoA sender against real clients: `radclient` (Debian
//! `freeradius-utils`) plays the BRAS, a UDP socket in the test plays the NAS's CoA
//! port, and results are read back through the store (`whois`, audit log).
//!
//! Also the session methods of the store (`store::sessions`) on SQLite and, when one
//! is reachable at 127.0.0.1:5432 (user postgres, db test), on PostgreSQL.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use enforce::radius_server::COUNTERS;
use policy::{Actor, Clock, FixedClock, IpNet, Plan, Port25Action, Timestamp};
use radius::{Attribute, Code, Packet};
use store::{LiveSession, NewSubscriber, SessionEvent, SessionReport, Store, StoreError};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

const SECRET: &str = "nas-secret";

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn have_radclient() -> bool {
    let found = std::process::Command::new("radclient")
        .arg("-v")
        .output()
        .is_ok();
    if !found {
        eprintln!("radclient not installed (apt-get install freeradius-utils): test skipped");
    }
    found
}

/// A running RADIUS server and CoA sender on loopback, a store, and the NAS's CoA socket.
struct Bras {
    _dir: tempfile::TempDir,
    store: Store,
    auth: SocketAddr,
    acct: SocketAddr,
    coa: UdpSocket,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Bras {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn add(store: &Store, login: &str, password: &str, plan: Plan, static_ips: &[&str]) {
    let new = NewSubscriber {
        login: login.into(),
        display_name: None,
        email: None,
        plan,
        static_ips: static_ips.iter().map(|s| s.parse().unwrap()).collect(),
        password_hash: Some(store::password::hash_password(password)),
    };
    store
        .add_subscriber(&new, &Actor::Operator("test".into()))
        .await
        .unwrap();
}

async fn bras() -> Bras {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/x.db", dir.path().display()))
        .await
        .unwrap();
    let op = Actor::Operator("test".into());
    add(&store, "dyn", "dyn-pass", Plan::Dynamic, &[]).await;
    add(&store, "open", "open-pass", Plan::Dynamic, &[]).await;
    store
        .transition(
            "open",
            Port25Action::RequestOptOut { aup_accepted: true },
            &op,
            "r",
        )
        .await
        .unwrap();
    store
        .transition("open", Port25Action::ApproveOptOut, &op, "r")
        .await
        .unwrap();
    add(
        &store,
        "stat",
        "stat-pass",
        Plan::Static,
        &["198.51.100.7", "2001:db8:77::/48"],
    )
    .await;

    let coa = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut config = config::Config::default();
    let auth: SocketAddr = ([127, 0, 0, 1], free_udp_port()).into();
    let acct: SocketAddr = ([127, 0, 0, 1], free_udp_port()).into();
    config.radius.listen_auth = vec![auth];
    config.radius.listen_acct = vec![acct];
    config.radius.clients = vec![config::RadiusClient {
        address: "127.0.0.1/32".parse().unwrap(),
        secret: SECRET.into(),
    }];
    config.radius.coa_port = coa.local_addr().unwrap().port();
    let config = Arc::new(config);
    let mut tasks = enforce::radius_server::start(config.clone(), store.clone())
        .await
        .unwrap();
    tasks.extend(enforce::coa::start(config, store.clone()).await.unwrap());
    Bras {
        _dir: dir,
        store,
        auth,
        acct,
        coa,
        tasks,
    }
}

/// Runs radclient; returns whether it got a reply (its exit status is also non-zero
/// for an Access-Reject), and its output.
async fn radclient(server: SocketAddr, command: &str, secret: &str, attrs: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new("radclient")
        .args([
            "-x",
            "-r",
            "1",
            "-t",
            "2",
            &server.to_string(),
            command,
            secret,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(attrs.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("Received"), text)
}

fn pap(login: &str, password: &str) -> String {
    format!("User-Name = \"{login}\", User-Password = \"{password}\", NAS-IP-Address = 127.0.0.1, Message-Authenticator = 0x00\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_accept_carries_filter_and_static_address() {
    if !have_radclient() {
        return;
    }
    let b = bras().await;
    let (ok, out) = radclient(b.auth, "auth", SECRET, &pap("dyn", "dyn-pass")).await;
    assert!(ok && out.contains("Access-Accept"), "{out}");
    assert!(out.contains("Filter-Id = \"port25-block\""), "{out}");
    assert!(!out.contains("Framed-IP-Address"), "{out}");

    let (ok, out) = radclient(b.auth, "auth", SECRET, &pap("open", "open-pass")).await;
    assert!(ok && out.contains("Filter-Id = \"port25-open\""), "{out}");

    let (ok, out) = radclient(b.auth, "auth", SECRET, &pap("stat", "stat-pass")).await;
    assert!(ok && out.contains("Filter-Id = \"port25-open\""), "{out}");
    assert!(out.contains("Framed-IP-Address = 198.51.100.7"), "{out}");

    let (ok, out) = radclient(b.auth, "auth", SECRET, &pap("dyn", "wrong")).await;
    assert!(
        ok && out.contains("Access-Reject") && out.contains("wrong password"),
        "{out}"
    );
    let (ok, out) = radclient(b.auth, "auth", SECRET, &pap("nobody", "x")).await;
    assert!(ok && out.contains("Access-Reject"), "{out}");

    // CHAP cannot be checked against a one-way hash: rejected with the reason.
    let chap = "User-Name = \"dyn\", CHAP-Password = \"dyn-pass\", Message-Authenticator = 0x00\n";
    let (ok, out) = radclient(b.auth, "auth", SECRET, chap).await;
    assert!(
        ok && out.contains("Access-Reject") && out.contains("CHAP is not supported"),
        "{out}"
    );
}

/// Authenticates `login` until the output satisfies `done`, for at most 3 s: the
/// cached profile is dropped within the event follower's poll interval.
async fn auth_until(b: &Bras, login: &str, password: &str, done: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for _ in 0..15 {
        out = radclient(b.auth, "auth", SECRET, &pap(login, password))
            .await
            .1;
        if done(&out) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_password_changes_reach_the_next_access_request() {
    if !have_radclient() {
        return;
    }
    let b = bras().await;
    let op = Actor::Operator("test".into());
    // Twice, so the second answer comes from the profile and password caches.
    for _ in 0..2 {
        let (ok, out) = radclient(b.auth, "auth", SECRET, &pap("dyn", "dyn-pass")).await;
        assert!(ok && out.contains("Filter-Id = \"port25-block\""), "{out}");
    }
    b.store
        .transition(
            "dyn",
            Port25Action::RequestOptOut { aup_accepted: true },
            &op,
            "r",
        )
        .await
        .unwrap();
    b.store
        .transition("dyn", Port25Action::ApproveOptOut, &op, "r")
        .await
        .unwrap();
    let out = auth_until(&b, "dyn", "dyn-pass", |o| o.contains("port25-open")).await;
    assert!(out.contains("Filter-Id = \"port25-open\""), "{out}");

    b.store
        .set_subscriber_password("dyn", &store::password::hash_password("new-pass"), &op)
        .await
        .unwrap();
    let out = auth_until(&b, "dyn", "dyn-pass", |o| o.contains("Access-Reject")).await;
    assert!(
        out.contains("wrong password"),
        "the old password stops working: {out}"
    );
    let (ok, out) = radclient(b.auth, "auth", SECRET, &pap("dyn", "new-pass")).await;
    assert!(ok && out.contains("Access-Accept"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_missing_message_authenticator_and_garbage_are_dropped() {
    if !have_radclient() {
        return;
    }
    let b = bras().await;
    let bad_before = COUNTERS.bad_authenticator.load(Ordering::Relaxed);
    let missing_before = COUNTERS
        .missing_message_authenticator
        .load(Ordering::Relaxed);
    let unknown_before = COUNTERS.unknown_client.load(Ordering::Relaxed);

    let (ok, out) = radclient(b.auth, "auth", "not-the-secret", &pap("dyn", "dyn-pass")).await;
    assert!(!ok, "wrong secret must get no answer: {out}");
    let no_ma = "User-Name = \"dyn\", User-Password = \"dyn-pass\"\n";
    let (ok, out) = radclient(b.auth, "auth", SECRET, no_ma).await;
    assert!(
        !ok,
        "a request without Message-Authenticator must get no answer: {out}"
    );
    let acct = "Acct-Status-Type = Start, User-Name = \"dyn\", Acct-Session-Id = \"x1\", Framed-IP-Address = 100.64.9.9\n";
    let (ok, out) = radclient(b.acct, "acct", "not-the-secret", acct).await;
    assert!(
        !ok,
        "accounting with a wrong secret must get no answer: {out}"
    );
    assert!(COUNTERS.bad_authenticator.load(Ordering::Relaxed) >= bad_before + 2);
    assert!(
        COUNTERS
            .missing_message_authenticator
            .load(Ordering::Relaxed)
            > missing_before
    );
    assert!(b
        .store
        .whois("100.64.9.9".parse().unwrap(), b.store.now())
        .await
        .unwrap()
        .is_none());

    // Garbage from a known client, and anything from an unknown one (127.0.0.2).
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 120) as usize;
        let mut d: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8 ^ j as u8).collect();
        if d.len() >= 4 {
            d[0] = if i % 2 == 0 { 1 } else { 4 };
            let n = d.len() as u16;
            d[2..4].copy_from_slice(&n.to_be_bytes());
        }
        let to = if i % 2 == 0 { b.auth } else { b.acct };
        sock.send_to(&d, to).await.unwrap();
        stranger.send_to(&d, to).await.unwrap();
        if i % 50 == 0 {
            // Pace a little so the kernel's receive buffer does not drop most of it.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let (ok, out) = radclient(b.auth, "auth", SECRET, &pap("dyn", "dyn-pass")).await;
    assert!(
        ok && out.contains("Access-Accept"),
        "server must survive garbage: {out}"
    );
    assert!(COUNTERS.unknown_client.load(Ordering::Relaxed) > unknown_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmission_gets_the_cached_reply() {
    let b = bras().await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let auth = radius::crypto::random_authenticator();
    let mut req = Packet::new(Code::AccessRequest, 77).with(Attribute::UserName("dyn".into()));
    req.attributes.push(Attribute::UserPassword(
        radius::hide_password(b"dyn-pass", SECRET.as_bytes(), &auth).unwrap(),
    ));
    req.authenticator = auth;
    let bytes = req.encode_request(SECRET.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let dups = COUNTERS.duplicates.load(Ordering::Relaxed);
    sock.send_to(&bytes, b.auth).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let first = buf[..n].to_vec();
    radius::verify_response(&first, SECRET.as_bytes(), &auth).unwrap();
    assert_eq!(Packet::decode(&first).unwrap().code, Code::AccessAccept);
    sock.send_to(&bytes, b.auth).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], &first[..], "the same reply, byte for byte");
    assert!(COUNTERS.duplicates.load(Ordering::Relaxed) > dups);

    // An accounting Start is answered by the group commit once it is on disk, with
    // its Proxy-State echoed; its retransmission gets those bytes again and is not
    // recorded twice.
    let start = Packet::new(Code::AccountingRequest, 78)
        .with(Attribute::AcctStatusType(radius::AcctStatusType::Start))
        .with(Attribute::UserName("dyn".into()))
        .with(Attribute::AcctSessionId("retransmitted".into()))
        .with(Attribute::FramedIpAddress([100, 64, 7, 7].into()))
        .with(Attribute::ProxyState(b"px-1".to_vec()));
    let bytes = start.encode_request(SECRET.as_bytes()).unwrap();
    let sent = Packet::decode(&bytes).unwrap();
    let dups = COUNTERS.duplicates.load(Ordering::Relaxed);
    let mut replies = Vec::new();
    for _ in 0..2 {
        sock.send_to(&bytes, b.acct).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        replies.push(buf[..n].to_vec());
    }
    radius::verify_response(&replies[0], SECRET.as_bytes(), &sent.authenticator).unwrap();
    let reply = Packet::decode(&replies[0]).unwrap();
    assert_eq!(
        (reply.code, reply.identifier),
        (Code::AccountingResponse, 78)
    );
    assert!(reply
        .attributes
        .contains(&Attribute::ProxyState(b"px-1".to_vec())));
    assert_eq!(replies[0], replies[1], "the same reply, byte for byte");
    assert!(COUNTERS.duplicates.load(Ordering::Relaxed) > dups);
    let opened = b.store.events_after(0, 10_000).await.unwrap();
    assert_eq!(
        opened.iter().filter(|e| e.kind == "lease.opened").count(),
        1,
        "recorded once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_start_and_stop_change_whois() {
    if !have_radclient() {
        return;
    }
    let b = bras().await;
    let now = b.store.now().0;
    let ip: IpAddr = "100.64.3.4".parse().unwrap();
    let inside_v6: IpAddr = "2001:db8:4400:ab::1".parse().unwrap();
    let start = format!(
        "Acct-Status-Type = Start, User-Name = \"dyn\", Acct-Session-Id = \"sess-1\", Framed-IP-Address = {ip}, \
         Framed-IPv6-Prefix = 2001:db8:9::/64, Delegated-IPv6-Prefix = 2001:db8:4400::/56, Event-Timestamp = {}\n",
        now - 100
    );
    let (ok, out) = radclient(b.acct, "acct", SECRET, &start).await;
    assert!(ok && out.contains("Accounting-Response"), "{out}");
    let at = |t: i64| Timestamp(t);
    assert_eq!(
        b.store
            .whois(ip, at(now - 50))
            .await
            .unwrap()
            .unwrap()
            .lease
            .login,
        "dyn"
    );
    assert_eq!(
        b.store
            .whois(inside_v6, at(now - 50))
            .await
            .unwrap()
            .unwrap()
            .lease
            .login,
        "dyn"
    );
    assert_eq!(
        b.store
            .whois("2001:db8:9::99".parse().unwrap(), at(now))
            .await
            .unwrap()
            .unwrap()
            .lease
            .login,
        "dyn"
    );
    assert!(b.store.whois(ip, at(now - 101)).await.unwrap().is_none());

    let interim = format!(
        "Acct-Status-Type = Interim-Update, User-Name = \"dyn\", Acct-Session-Id = \"sess-1\", \
         Framed-IP-Address = {ip}, Acct-Session-Time = 30, Event-Timestamp = {}\n",
        now - 70
    );
    let (ok, out) = radclient(b.acct, "acct", SECRET, &interim).await;
    assert!(ok && out.contains("Accounting-Response"), "{out}");
    let stop = format!(
        "Acct-Status-Type = Stop, User-Name = \"dyn\", Acct-Session-Id = \"sess-1\", Framed-IP-Address = {ip}, \
         Acct-Session-Time = 60, Event-Timestamp = {}\n",
        now - 40
    );
    let (ok, out) = radclient(b.acct, "acct", SECRET, &stop).await;
    assert!(ok && out.contains("Accounting-Response"), "{out}");
    assert_eq!(
        b.store
            .whois(ip, at(now - 41))
            .await
            .unwrap()
            .unwrap()
            .lease
            .login,
        "dyn"
    );
    assert!(b.store.whois(ip, at(now - 40)).await.unwrap().is_none());
    assert!(b.store.whois(inside_v6, at(now)).await.unwrap().is_none());

    // Accounting-On from the NAS closes whatever it still had open.
    let start2 = "Acct-Status-Type = Start, User-Name = \"open\", Acct-Session-Id = \"sess-2\", Framed-IP-Address = 100.64.3.5\n";
    assert!(radclient(b.acct, "acct", SECRET, start2).await.0);
    assert_eq!(b.store.live_sessions("open").await.unwrap().len(), 1);
    assert!(
        radclient(
            b.acct,
            "acct",
            SECRET,
            "Acct-Status-Type = Accounting-On, NAS-IP-Address = 127.0.0.1\n"
        )
        .await
        .0
    );
    assert!(b.store.live_sessions("open").await.unwrap().is_empty());
}

/// Sends one signed request from its own socket, retransmitting the same bytes every
/// second like a NAS, until the server's reply verifies; returns the reply.
async fn exchange(server: SocketAddr, request: &Packet) -> Packet {
    let bytes = request.encode_request(SECRET.as_bytes()).unwrap();
    let authenticator: [u8; 16] = bytes[4..20].try_into().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 4096];
    for _ in 0..10 {
        sock.send_to(&bytes, server).await.unwrap();
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await
        {
            radius::verify_response(&buf[..n], SECRET.as_bytes(), &authenticator).unwrap();
            return Packet::decode(&buf[..n]).unwrap();
        }
    }
    panic!("no reply to {request:?} after 10 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_starts_and_stops_are_all_answered_and_recorded() {
    let b = bras().await;
    let now = b.store.now().0;
    let (started, stopped) = (now - 100, now - 40);
    const SESSIONS: u32 = 500;
    let accounting = move |status, i: u32| {
        let p = Packet::new(Code::AccountingRequest, (i % 256) as u8)
            .with(Attribute::AcctStatusType(status))
            .with(Attribute::UserName(format!("user{i}")))
            .with(Attribute::AcctSessionId(format!("many-{i}")))
            .with(Attribute::FramedIpAddress((0x6441_0000 + i).into()));
        match status {
            radius::AcctStatusType::Start => p.with(Attribute::EventTimestamp(started as u32)),
            _ => p
                .with(Attribute::EventTimestamp(stopped as u32))
                .with(Attribute::AcctSessionTime((stopped - started) as u32)),
        }
    };
    // Every session starts and stops concurrently with the others, so batches mix
    // Starts and Stops of different sessions.
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let acct = b.acct;
            tokio::spawn(async move {
                for status in [radius::AcctStatusType::Start, radius::AcctStatusType::Stop] {
                    let reply = exchange(acct, &accounting(status, i)).await;
                    assert_eq!(reply.code, Code::AccountingResponse);
                }
            })
        })
        .collect();
    for s in sessions {
        s.await.unwrap();
    }
    let leases: Vec<_> = b
        .store
        .all_leases(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| {
            l.session_id
                .as_deref()
                .is_some_and(|s| s.starts_with("many-"))
        })
        .collect();
    assert_eq!(leases.len(), SESSIONS as usize, "one lease per session");
    for l in &leases {
        let i: u32 = l.session_id.as_deref().unwrap()[5..].parse().unwrap();
        assert_eq!(l.lease.login, format!("user{i}"));
        assert_eq!(
            l.lease.net,
            IpNet::host(IpAddr::V4((0x6441_0000 + i).into()))
        );
        assert_eq!(
            (l.lease.start, l.lease.end),
            (Timestamp(started), Some(Timestamp(stopped))),
            "{l:?}"
        );
    }
    let events = b.store.events_after(0, 10_000).await.unwrap();
    let count = |kind: &str| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(
        (count("lease.opened"), count("lease.closed")),
        (SESSIONS as usize, SESSIONS as usize)
    );
}

/// Receives one request on the NAS's CoA port, checks its signature, answers it.
async fn nas_answer(nas: &UdpSocket, expect: Code, reply: Code) -> Packet {
    let mut buf = [0u8; 4096];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), nas.recv_from(&mut buf))
        .await
        .expect("the NAS receives a request within 5 s")
        .unwrap();
    radius::verify_request(&buf[..n], SECRET.as_bytes()).unwrap();
    let req = Packet::decode(&buf[..n]).unwrap();
    assert_eq!(req.code, expect);
    assert!(req
        .attributes
        .iter()
        .any(|a| matches!(a, Attribute::MessageAuthenticator(_))));
    let mut answer = Packet::new(reply, req.identifier);
    if reply == Code::CoaNak {
        answer.attributes.push(Attribute::ErrorCause(
            radius::attribute::error_cause::UNSUPPORTED_ATTRIBUTE,
        ));
    }
    nas.send_to(
        &answer
            .encode_response(SECRET.as_bytes(), &req.authenticator)
            .unwrap(),
        from,
    )
    .await
    .unwrap();
    req
}

async fn wait_for_audit(store: &Store, login: &str, action: &str) -> policy::AuditEntry {
    for _ in 0..50 {
        if let Some(e) = store
            .audit(Some(login), 100)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.action == action)
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no '{action}' audit entry for {login}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_change_sends_coa_then_disconnect_on_nak() {
    if !have_radclient() {
        return;
    }
    let b = bras().await;
    let start = "Acct-Status-Type = Start, User-Name = \"dyn\", Acct-Session-Id = \"coa-1\", Framed-IP-Address = 100.64.7.7\n";
    assert!(radclient(b.acct, "acct", SECRET, start).await.0);
    let op = Actor::Operator("test".into());
    // blocked -> optout-pending keeps the same filter: no CoA. Then approve opens it.
    b.store
        .transition(
            "dyn",
            Port25Action::RequestOptOut { aup_accepted: true },
            &op,
            "r",
        )
        .await
        .unwrap();
    b.store
        .transition("dyn", Port25Action::ApproveOptOut, &op, "ok")
        .await
        .unwrap();
    let coa = nas_answer(&b.coa, Code::CoaRequest, Code::CoaAck).await;
    assert_eq!(coa.filter_id(), Some("port25-open"));
    assert_eq!(coa.user_name(), Some("dyn"));
    assert_eq!(coa.acct_session_id(), Some("coa-1"));
    let e = wait_for_audit(&b.store, "dyn", "coa").await;
    assert_eq!(e.actor.to_string(), "system:coa");
    assert_eq!(
        (e.from.as_deref(), e.to.as_deref()),
        (Some("optout-pending"), Some("opted-out"))
    );
    assert!(e.reason.contains("CoA-ACK"), "{}", e.reason);

    // Re-instated after abuse: the NAS refuses the CoA, so the session is disconnected.
    b.store
        .transition(
            "dyn",
            Port25Action::Reinstate,
            &Actor::System("abuse".into()),
            "spam",
        )
        .await
        .unwrap();
    let coa = nas_answer(&b.coa, Code::CoaRequest, Code::CoaNak).await;
    assert_eq!(coa.filter_id(), Some("port25-block"));
    let dis = nas_answer(&b.coa, Code::DisconnectRequest, Code::DisconnectAck).await;
    assert_eq!(dis.acct_session_id(), Some("coa-1"));
    assert_eq!(dis.filter_id(), None);
    let e = wait_for_audit(&b.store, "dyn", "disconnect").await;
    assert!(
        e.reason.contains("CoA-NAK") && e.reason.contains("Disconnect-ACK"),
        "{}",
        e.reason
    );
}

fn report(
    nas: &str,
    session: &str,
    login: &str,
    nets: &[&str],
    at: i64,
    session_time: Option<u32>,
) -> SessionReport {
    SessionReport {
        nas: nas.parse().unwrap(),
        session_id: session.into(),
        login: login.into(),
        nets: nets.iter().map(|n| n.parse::<IpNet>().unwrap()).collect(),
        at: Timestamp(at),
        session_time,
    }
}

/// The session methods of the store, the same on both backends.
async fn exercise_sessions(store: &Store, clock: &FixedClock) {
    let who = |ip: &'static str, t: i64| {
        let store = store.clone();
        async move {
            store
                .whois(ip.parse().unwrap(), Timestamp(t))
                .await
                .unwrap()
                .map(|l| l.lease.login)
        }
    };
    let s1 = report(
        "10.0.0.1",
        "s1",
        "ann",
        &["100.64.0.9", "2001:db8:100::/56"],
        1000,
        None,
    );
    assert_eq!(store.session_started(&s1).await.unwrap(), 2);
    assert_eq!(
        store.session_started(&s1).await.unwrap(),
        0,
        "a retransmitted Start changes nothing"
    );
    assert_eq!(
        store.live_sessions("ann").await.unwrap(),
        vec![LiveSession {
            nas: "10.0.0.1".parse().unwrap(),
            session_id: "s1".into(),
            login: "ann".into()
        }]
    );
    assert_eq!(who("100.64.0.9", 1500).await.as_deref(), Some("ann"));
    assert_eq!(
        who("2001:db8:100:ff::1", 1500).await.as_deref(),
        Some("ann")
    );

    // Packets arriving together are written together (group commit), each seeing what
    // the packets before it in the batch did.
    let seen =
        |nets: &[&str], session: &str| report("10.0.0.1", session, "ann", nets, 1500, Some(500));
    let fay = |at: i64, session_time: Option<u32>| {
        report("10.0.0.4", "s6", "fay", &["100.64.0.14"], at, session_time)
    };
    let batch = [
        (SessionEvent::Start, fay(1200, None)),
        (
            SessionEvent::Interim,
            seen(&["100.64.0.9", "2001:db8:100::/56"], "s1"),
        ),
        (SessionEvent::Interim, fay(1300, Some(100))),
        (SessionEvent::Start, fay(1200, None)),
        (SessionEvent::Stop, fay(1400, Some(200))),
        (SessionEvent::Stop, fay(1400, Some(200))),
    ];
    let results: Vec<usize> = store
        .sessions_accounted(&batch)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        results,
        vec![1, 0, 0, 0, 1, 0],
        "opened, refreshed, refreshed, retransmission, closed, retransmission"
    );
    assert_eq!(who("100.64.0.14", 1199).await, None);
    assert_eq!(who("100.64.0.14", 1399).await.as_deref(), Some("fay"));
    assert_eq!(who("100.64.0.14", 1400).await, None);

    // The next batch is written while the one before it still waits for its flush,
    // and sees what that one wrote: the Stop closes the lease the Start opened (it
    // would record a second, closed lease for a Stop whose Start it did not see).
    let gil = |at: i64| report("10.0.0.5", "s8", "gil", &["100.64.0.15"], at, None);
    let (started, start_flushed) = store
        .sessions_written(&[(SessionEvent::Start, gil(1200))])
        .await;
    let (stopped, stop_flushed) = store
        .sessions_written(&[(SessionEvent::Stop, gil(1300))])
        .await;
    let settled = |r: Vec<Result<usize, StoreError>>| -> Vec<usize> {
        r.into_iter().map(Result::unwrap).collect()
    };
    assert_eq!(settled(stop_flushed.settle(stopped).await), vec![1]);
    assert_eq!(settled(start_flushed.settle(started).await), vec![1]);
    assert_eq!(who("100.64.0.15", 1299).await.as_deref(), Some("gil"));
    assert_eq!(who("100.64.0.15", 1300).await, None);
    assert_eq!(store.leases_of("gil", 10).await.unwrap().len(), 1);

    // Interim updates, then silence: the sweeper closes at the last sign of life.
    let interim = report("10.0.0.1", "s1", "ann", &["100.64.0.9"], 2000, Some(1000));
    assert_eq!(store.session_interim(&interim).await.unwrap(), 0);
    assert_eq!(
        store.close_stale_sessions(Timestamp(1999)).await.unwrap(),
        0
    );
    assert_eq!(
        store.close_stale_sessions(Timestamp(2001)).await.unwrap(),
        2
    );
    assert_eq!(who("100.64.0.9", 1999).await.as_deref(), Some("ann"));
    assert_eq!(who("100.64.0.9", 2000).await, None);
    assert!(store.live_sessions("ann").await.unwrap().is_empty());

    // A session that never sent an interim update is not stale.
    let s2 = report("10.0.0.2", "s2", "bob", &["100.64.0.10"], 3000, None);
    store.session_started(&s2).await.unwrap();
    assert_eq!(
        store
            .close_stale_sessions(Timestamp(100_000))
            .await
            .unwrap(),
        0
    );
    // Accounting-On/Off of its NAS closes it; another NAS's sessions stay.
    let s5 = report("10.0.0.3", "s5", "dan", &["100.64.0.12"], 3000, None);
    store.session_started(&s5).await.unwrap();
    assert_eq!(
        store
            .close_nas_sessions("10.0.0.2".parse().unwrap(), Timestamp(3500))
            .await
            .unwrap(),
        1
    );
    assert_eq!(who("100.64.0.10", 3499).await.as_deref(), Some("bob"));
    assert_eq!(who("100.64.0.10", 3500).await, None);
    assert_eq!(store.live_sessions("dan").await.unwrap().len(), 1);

    // A Stop for a session whose Start was lost still records who held the address.
    let s3 = report("10.0.0.1", "s3", "carl", &["100.64.0.11"], 5000, Some(100));
    assert_eq!(store.session_stopped(&s3).await.unwrap(), 1);
    assert_eq!(who("100.64.0.11", 4900).await.as_deref(), Some("carl"));
    assert_eq!(who("100.64.0.11", 5000).await, None);
    assert_eq!(
        store.session_stopped(&s3).await.unwrap(),
        0,
        "a retransmitted Stop changes nothing"
    );

    // An interim update for a session we never saw opens it from its session time.
    let s4 = report("10.0.0.1", "s4", "eve", &["100.64.0.13"], 6000, Some(600));
    assert_eq!(store.session_interim(&s4).await.unwrap(), 1);
    assert_eq!(who("100.64.0.13", 5400).await.as_deref(), Some("eve"));
    assert_eq!(who("100.64.0.13", 5399).await, None);
    assert_eq!(
        store
            .session_stopped(&report("10.0.0.1", "s4", "eve", &[], 6100, None))
            .await
            .unwrap(),
        1
    );
    assert_eq!(who("100.64.0.13", 6100).await, None);

    // Every lease change is in the event log.
    let events = store.events_after(0, 1000).await.unwrap();
    let opened = events.iter().filter(|e| e.kind == "lease.opened").count();
    let closed = events.iter().filter(|e| e.kind == "lease.closed").count();
    assert_eq!((opened, closed), (8, 7), "dan's session is still open");

    // One bad packet in a batch fails only itself: PostgreSQL refuses NUL in text.
    let good = |event, at| {
        (
            event,
            report("10.0.0.5", "s7", "gus", &["100.64.0.15"], at, None),
        )
    };
    let bad = report("10.0.0.5", "s\0", "gus", &["100.64.0.16"], 8000, None);
    let results = store
        .sessions_accounted(&[
            good(SessionEvent::Start, 8000),
            (SessionEvent::Start, bad),
            good(SessionEvent::Stop, 8100),
        ])
        .await;
    assert_eq!(results[0].as_ref().ok(), Some(&1));
    assert_eq!(
        results[1].is_err(),
        store.backend() == "postgres",
        "{results:?}"
    );
    assert_eq!(results[2].as_ref().ok(), Some(&1));
    assert_eq!(who("100.64.0.15", 8099).await.as_deref(), Some("gus"));
    assert_eq!(who("100.64.0.15", 8100).await, None);

    clock.set(Timestamp(7000));
    store
        .record_audit(
            &Actor::System("coa".into()),
            "ann",
            "coa",
            Some("blocked"),
            Some("opted-out"),
            "CoA-ACK",
        )
        .await
        .unwrap();
    let audit = store.audit(Some("ann"), 10).await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (last.at, last.actor.to_string(), last.action.as_str()),
        (Timestamp(7000), "system:coa".into(), "coa")
    );
}

#[tokio::test]
async fn sessions_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FixedClock::at(Timestamp(10_000));
    let store = Store::open_with_clock(
        &format!("sqlite://{}/s.db", dir.path().display()),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    assert_eq!(clock.now(), Timestamp(10_000));
    exercise_sessions(&store, &clock).await;
}

#[tokio::test]
async fn sessions_on_postgres() {
    let Ok((client, conn)) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    else {
        eprintln!("no PostgreSQL at 127.0.0.1:5432: test skipped");
        return;
    };
    tokio::spawn(conn);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("radius_sessions_{}_{nanos}", std::process::id());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let clock = FixedClock::at(Timestamp(10_000));
    let url = format!("postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}");
    let store = Store::open_with_clock(&url, Arc::new(clock.clone()))
        .await
        .unwrap();
    exercise_sessions(&store, &clock).await;
    drop(store);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
