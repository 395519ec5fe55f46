//! Transport security of delivery on loopback: MTA-STS (a real HTTPS policy host,
//! certificates from a CA made in the test), DANE (TLSA records from a resolver
//! that sets the AD bit for signed names), and AUTH at a smart host (our own
//! submission server, a real AUTH-after-STARTTLS server).

mod support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use support::*;

fn lo(n: u8) -> Rr {
    Rr::A(Ipv4Addr::new(127, 0, 0, n))
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
}

fn policy_text(mode: &str, mx: &[&str]) -> String {
    let mut t = format!("version: STSv1\r\nmode: {mode}\r\n");
    for m in mx {
        t.push_str(&format!("mx: {m}\r\n"));
    }
    t.push_str("max_age: 86400\r\n");
    t
}

fn tls_receiver(tls: Arc<rustls::ServerConfig>) -> Behaviour {
    Behaviour {
        starttls: true,
        tls_config: Some(tls),
        ..Behaviour::default()
    }
}

/// The first attempt of a message once there is one; `None` when the message has
/// left the queue (all its recipients delivered: attempts go with the message).
async fn first_attempt(store: &store::Store, id: &str) -> Option<store::DeliveryAttempt> {
    for _ in 0..400 {
        match delivery::queue_show(store, id).await {
            Err(delivery::DeliveryError::UnknownMessage(_)) => return None,
            Ok(e) if !e.attempts.is_empty() => return Some(e.attempts[0].clone()),
            Ok(_) => {}
            Err(e) => panic!("queue show {id}: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{id} was not attempted within 20 s");
}

/// Asserts the message was delivered (left the queue, or its attempt says so).
async fn delivered(store: &store::Store, id: &str) {
    if let Some(a) = first_attempt(store, id).await {
        assert_eq!(a.outcome, "delivered", "{a:?}");
    }
}

/// The deferral of a message: its attempt.
async fn deferred(store: &store::Store, id: &str) -> store::DeliveryAttempt {
    let a = first_attempt(store, id)
        .await
        .unwrap_or_else(|| panic!("{id} left the queue instead of being deferred"));
    assert_eq!(a.outcome, "deferred", "{a:?}");
    a
}

async fn enqueue(store: &store::Store, to: &str) -> String {
    let m = message(
        "ann@isp.test",
        &[to],
        &format!("Subject: to {to}\r\n\r\nx\r\n"),
    );
    store.enqueue(&m).await.unwrap();
    m.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_enforce_testing_and_the_cache() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("portcullis test root");
    let port = free_port();
    let (chain, key) = ca.issue(&["mx.good.test"]);
    let good = Receiver::start("127.0.0.2", port, tls_receiver(server_tls(chain, key))).await;
    let plain = Receiver::start("127.0.0.3", port, Behaviour::default()).await;
    let (chain, key) = ca.issue(&["other.test"]);
    let wrong = Receiver::start("127.0.0.4", port, tls_receiver(server_tls(chain, key))).await;

    let domains = ["good", "rogue", "plain", "wrongname", "testing"];
    let hosts: Vec<String> = domains
        .iter()
        .map(|d| format!("mta-sts.{d}.test"))
        .collect();
    let (chain, key) = ca.issue(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
    let policies: HashMap<String, String> = [
        ("good", policy_text("enforce", &["mx.good.test"])),
        ("rogue", policy_text("enforce", &["mx.elsewhere.test"])),
        ("plain", policy_text("enforce", &["*.plain.test"])),
        ("wrongname", policy_text("enforce", &["mx.wrongname.test"])),
        ("testing", policy_text("testing", &["mx.testing.test"])),
    ]
    .into_iter()
    .map(|(d, p)| (format!("mta-sts.{d}.test"), p))
    .collect();
    let https = PolicyServer::start(server_tls(chain, key), policies).await;

    let zone = |id: &str| {
        let mut records = vec![
            ("none.test", Rr::Mx(10, "mx.none.test")),
            ("mx.none.test", lo(3)),
            ("mx.good.test", lo(2)),
            ("mx.rogue.test", lo(2)),
            ("mx.plain.test", lo(3)),
            ("mx.wrongname.test", lo(4)),
            ("mx.testing.test", lo(4)),
        ];
        for d in domains {
            let name = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            records.push((
                name(format!("{d}.test")),
                Rr::Mx(10, name(format!("mx.{d}.test"))),
            ));
            records.push((
                name(format!("_mta-sts.{d}.test")),
                Rr::Txt(format!("v=STSv1; id={id};")),
            ));
            records.push((name(format!("mta-sts.{d}.test")), lo(1)));
        }
        records
    };
    let dns = dns_server(zone("20261127")).await;
    let store = sqlite_store(dir.path()).await;
    let ids: HashMap<&str, String> = {
        let mut m = HashMap::new();
        for d in domains.iter().chain(["none"].iter()) {
            m.insert(*d, enqueue(&store, &format!("u@{d}.test")).await);
        }
        m
    };
    let t = delivery::DeliveryTunables {
        mta_sts_port: https.addr.port(),
        extra_roots: vec![ca.der()],
        ..tunables(port)
    };
    let node = delivery::start_with(Arc::new(config(dns)), store.clone(), t.clone())
        .await
        .unwrap();

    // enforce, matching MX, certificate valid for it: delivered over TLS.
    delivered(&store, &ids["good"]).await;
    assert_eq!(good.count(), 1);
    assert!(good.received()[0].tls);
    // enforce, MX not in the policy: deferred, never connected.
    let a = deferred(&store, &ids["rogue"]).await;
    assert!(
        a.reply
            .contains("MTA-STS: mx.rogue.test does not match policy"),
        "{a:?}"
    );
    // enforce, receiver without STARTTLS: deferred.
    let a = deferred(&store, &ids["plain"]).await;
    assert!(
        a.reply.starts_with("MTA-STS:") && a.reply.contains("STARTTLS"),
        "{a:?}"
    );
    // enforce, certificate for another name: deferred.
    let a = deferred(&store, &ids["wrongname"]).await;
    assert!(
        a.reply
            .contains("MTA-STS: certificate not valid for mx.wrongname.test"),
        "{a:?}"
    );
    // testing: the same bad certificate, delivered anyway.
    delivered(&store, &ids["testing"]).await;
    // No TXT record: opportunistic as before (plaintext to a server without TLS).
    delivered(&store, &ids["none"]).await;
    assert_eq!(wrong.count(), 1);
    assert_eq!(
        plain.count(),
        1,
        "only the domain without a policy reached it"
    );
    assert_eq!(plain.received()[0].rcpts, vec!["u@none.test"]);
    assert!(!plain.received()[0].tls);
    node.kill();

    // The policy host goes away, the TXT ids change (so a refetch is due, and
    // fails) and the node restarts: the cached unexpired policies (in the store)
    // still hold (RFC 8461 5.1), so plaintext is still refused for plain.test.
    https.stop();
    let dns = dns_server(zone("20261128")).await;
    let fetched = https.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetched, domains.len(), "one fetch per domain");
    let again_plain = enqueue(&store, "v@plain.test").await;
    let again_good = enqueue(&store, "v@good.test").await;
    let node = delivery::start_with(Arc::new(config(dns)), store.clone(), t)
        .await
        .unwrap();
    let a = deferred(&store, &again_plain).await;
    assert!(a.reply.starts_with("MTA-STS:"), "{a:?}");
    delivered(&store, &again_good).await;
    node.kill();
    assert_eq!(plain.count(), 1);
    assert_eq!(good.count(), 2);
    let cached = store.mta_sts_policy("plain.test").await.unwrap().unwrap();
    assert_eq!(cached.policy_id, "20261127");
    assert!(cached.policy.contains("mode: enforce"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_is_enforced_only_for_authenticated_answers() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // DANE-EE: a self-signed certificate whose name matters to nobody.
    let ee = rcgen::generate_simple_self_signed(vec!["whatever.invalid".to_string()]).unwrap();
    let ee_spki = Sha256::digest(ee.key_pair.public_key_der()).to_vec();
    let ee_tls = server_tls(
        vec![ee.cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(ee.key_pair.serialize_der().into()),
    );
    let mx = Receiver::start("127.0.0.5", port, tls_receiver(ee_tls)).await;
    // DANE-TA: a chain up to a private CA, valid for the MX name.
    let ca = TestCa::new("dane trust anchor");
    let (chain, key) = ca.issue(&["mx.ta.test"]);
    let ta_mx = Receiver::start("127.0.0.6", port, tls_receiver(server_tls(chain, key))).await;
    let ca_hash = Sha256::digest(ca.der().as_ref()).to_vec();
    let dns = dns_server_signed(
        vec![
            ("dane.test", Rr::Mx(10, "mx.dane.test")),
            ("mx.dane.test", lo(5)),
            ("_25._tcp.mx.dane.test", Rr::Tlsa(3, 1, 1, ee_spki.clone())),
            ("bad.test", Rr::Mx(10, "mx.bad.test")),
            ("mx.bad.test", lo(5)),
            ("_25._tcp.mx.bad.test", Rr::Tlsa(3, 1, 1, vec![0; 32])),
            ("unsigned.test", Rr::Mx(10, "mx.unsigned.test")),
            ("mx.unsigned.test", lo(5)),
            ("_25._tcp.mx.unsigned.test", Rr::Tlsa(3, 1, 1, vec![0; 32])),
            ("ta.test", Rr::Mx(10, "mx.ta.test")),
            ("mx.ta.test", lo(6)),
            ("_25._tcp.mx.ta.test", Rr::Tlsa(2, 0, 1, ca_hash)),
        ],
        vec![
            "dane.test",
            "_25._tcp.mx.dane.test",
            "bad.test",
            "_25._tcp.mx.bad.test",
            "ta.test",
            "_25._tcp.mx.ta.test",
        ],
    )
    .await;
    let store = sqlite_store(dir.path()).await;
    let dane = enqueue(&store, "u@dane.test").await;
    let bad = enqueue(&store, "u@bad.test").await;
    let unsigned = enqueue(&store, "u@unsigned.test").await;
    let ta = enqueue(&store, "u@ta.test").await;
    let node = delivery::start_with(Arc::new(config(dns)), store.clone(), tunables(port))
        .await
        .unwrap();
    delivered(&store, &dane).await;
    let a = deferred(&store, &bad).await;
    assert!(
        a.reply
            .contains("DANE: no TLSA record of mx.bad.test matches the certificate chain"),
        "{a:?}"
    );
    // Without AD the (mismatching) TLSA records are ignored.
    delivered(&store, &unsigned).await;
    // 2 0 1 anchors the chain at the private CA.
    delivered(&store, &ta).await;
    node.kill();
    assert!(mx.received().iter().all(|r| r.tls));
    let to: Vec<String> = mx.received().iter().flat_map(|r| r.rcpts.clone()).collect();
    assert_eq!(to.len(), 2, "{to:?}");
    assert!(to.contains(&"u@dane.test".to_string()) && to.contains(&"u@unsigned.test".to_string()));
    assert_eq!(ta_mx.count(), 1);
}

/// The submission server of this workspace as the smart host: AUTH only after
/// STARTTLS, subscribers in its own SQLite store.
async fn submission_relay(dir: &std::path::Path) -> (store::Store, submission::Server) {
    let mut c = config::Config::default();
    c.store.url = format!("sqlite://{}", dir.join("relay.db").display());
    c.store.data_dir = dir.join("relay-data");
    c.submission.hostname = "relay.isp.test".into();
    c.submission.listen_starttls = vec!["127.0.0.1:0".parse().unwrap()];
    c.submission.listen_tls = vec![];
    let store = store::Store::open(&c.store.url).await.unwrap();
    store
        .add_subscriber(
            &store::NewSubscriber {
                login: "ann".into(),
                display_name: None,
                email: Some("ann@isp.test".into()),
                plan: policy::Plan::Dynamic,
                static_ips: vec![],
                password_hash: Some(store::password::hash_password("s3cret")),
            },
            &policy::Actor::Operator("test".into()),
        )
        .await
        .unwrap();
    let tunables = submission::Tunables {
        auth_failure_delay: std::time::Duration::from_millis(10),
        ..Default::default()
    };
    let server = submission::start_with(Arc::new(c), store.clone(), tunables)
        .await
        .unwrap();
    (store, server)
}

fn with_auth(
    dns: std::net::SocketAddr,
    relay: std::net::SocketAddr,
    dir: &std::path::Path,
    password: &str,
) -> config::Config {
    let file = dir.join(format!("pw-{password}"));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut c = config(dns);
    c.delivery.smart_host = Some(relay.to_string());
    c.delivery.smart_host_user = Some("ann".into());
    c.delivery.smart_host_password_file = Some(file);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_host_auth_over_tls_only() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let (relay_store, relay) = submission_relay(dir.path()).await;
    let relay_addr = relay.starttls_addrs[0];
    let dns = dns_server(vec![]).await;

    // Right credentials: the relay queues the message under ann's login.
    let store = store::Store::open(&format!("sqlite://{}", dir.path().join("a.db").display()))
        .await
        .unwrap();
    let id = enqueue(&store, "bob@far.test").await;
    let node = delivery::start_with(
        Arc::new(with_auth(dns, relay_addr, dir.path(), "s3cret")),
        store.clone(),
        tunables(1),
    )
    .await
    .unwrap();
    delivered(&store, &id).await;
    node.kill();
    let queued = relay_store.list_queue(10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].login, "ann");
    assert_eq!(queued[0].mail_from, "ann@isp.test");

    // Wrong password: deferred (never bounced), with the 535 in `queue show`.
    let store = store::Store::open(&format!("sqlite://{}", dir.path().join("b.db").display()))
        .await
        .unwrap();
    let id = enqueue(&store, "bob@far.test").await;
    let node = delivery::start_with(
        Arc::new(with_auth(dns, relay_addr, dir.path(), "wrong")),
        store.clone(),
        tunables(1),
    )
    .await
    .unwrap();
    let a = deferred(&store, &id).await;
    node.kill();
    assert!(a.reply.contains("535"), "{a:?}");
    let shown = delivery::queue_show(&store, &id).await.unwrap().to_string();
    assert!(shown.contains("535"), "{shown}");
    assert_eq!(relay_store.list_queue(10).await.unwrap().len(), 1);

    // A relay without STARTTLS: deferred, and the credentials never left.
    let bare = Receiver::start(
        "127.0.0.1",
        0,
        Behaviour {
            auth: true,
            ..Behaviour::default()
        },
    )
    .await;
    let store = store::Store::open(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let id = enqueue(&store, "bob@far.test").await;
    let node = delivery::start_with(
        Arc::new(with_auth(dns, bare.addr, dir.path(), "s3cret")),
        store.clone(),
        tunables(1),
    )
    .await
    .unwrap();
    let a = deferred(&store, &id).await;
    node.kill();
    assert!(a.reply.contains("not sending AUTH"), "{a:?}");
    assert!(a.reply.contains("never sent in clear"), "{a:?}");
    let commands = bare.commands.lock().unwrap().clone();
    assert!(!commands.iter().any(|c| c == "AUTH"), "{commands:?}");
    assert!(!commands.iter().any(|c| c == "MAIL"), "{commands:?}");
    assert_eq!(bare.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_host_auth_login_when_only_login_is_offered() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let relay = Receiver::start(
        "127.0.0.1",
        0,
        Behaviour {
            starttls: true,
            auth_login: Some(("ann".into(), "s3cret".into())),
            ..Behaviour::default()
        },
    )
    .await;
    let dns = dns_server(vec![]).await;
    let store = sqlite_store(dir.path()).await;
    let id = enqueue(&store, "bob@far.test").await;
    let node = delivery::start_with(
        Arc::new(with_auth(dns, relay.addr, dir.path(), "s3cret")),
        store.clone(),
        tunables(1),
    )
    .await
    .unwrap();
    delivered(&store, &id).await;
    node.kill();
    assert_eq!(relay.authenticated.lock().unwrap().as_deref(), Some("ann"));
    assert_eq!(relay.count(), 1);
    assert!(relay.received()[0].tls);
}
