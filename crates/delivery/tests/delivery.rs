//! End-to-end delivery on loopback: a DNS server in the test, receivers (Postfix's
//! `smtp-sink` and a scripted one), and a real queue in SQLite.

mod support;

use mail_parser::MimeHeaders;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use policy::{FixedClock, Timestamp};
use support::*;

fn lo(n: u8) -> Rr {
    Rr::A(Ipv4Addr::new(127, 0, 0, n))
}

async fn start(config: config::Config, store: &store::Store, port: u16) -> delivery::DeliveryNode {
    delivery::start_with(Arc::new(config), store.clone(), tunables(port))
        .await
        .unwrap()
}

async fn drained(store: &store::Store) -> bool {
    store.queue_len().await.unwrap() == 0
}

/// `smtp-sink` on a free port as example.test's only MX, and an empty queue.
struct Sink {
    port: u16,
    dump: std::path::PathBuf,
    _child: tokio::process::Child,
    dns: std::net::SocketAddr,
    store: store::Store,
}

async fn sink_for_example_test(dir: &std::path::Path) -> Sink {
    let port = free_port();
    let dump = dir.join("sink.dump");
    let child = smtp_sink(port, &dump).await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(1)),
    ])
    .await;
    Sink {
        port,
        dump,
        _child: child,
        dns,
        store: sqlite_store(dir).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_smtp_sink_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let Sink {
        port,
        dump,
        _child,
        dns,
        store,
    } = sink_for_example_test(dir.path()).await;
    store
        .enqueue(&message(
            "ann@isp.test",
            &["bob@example.test"],
            "From: ann@isp.test\r\nSubject: sink test\r\n\r\n.leading dot\r\nhello\r\n",
        ))
        .await
        .unwrap();
    let node = start(config(dns), &store, port).await;
    assert!(wait_until(20, || drained(&store)).await, "queue drained");
    node.kill();
    let text = String::from_utf8_lossy(&std::fs::read(&dump).unwrap()).into_owned();
    assert!(text.contains("Subject: sink test"), "{text}");
    assert!(text.contains("bob@example.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_used_and_recorded_and_connections_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(
        "127.0.0.1",
        0,
        Behaviour {
            starttls: true,
            ..Behaviour::default()
        },
    )
    .await;
    rx.set(|b| {
        b.rcpt_replies
            .insert("later@example.test".into(), "450 4.2.1 try later".into());
    });
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(1)),
    ])
    .await;
    let store = sqlite_store(dir.path()).await;
    let first = message(
        "ann@isp.test",
        &["bob@example.test", "later@example.test"],
        "Subject: tls\r\n\r\nx\r\n",
    );
    store.enqueue(&first).await.unwrap();
    for i in 0..4 {
        store
            .enqueue(&message(
                "ann@isp.test",
                &["bob@example.test"],
                &format!("Subject: {i}\r\n\r\nx\r\n"),
            ))
            .await
            .unwrap();
    }
    let mut cfg = config(dns);
    cfg.delivery.connections_per_destination = 1;
    let node = start(cfg, &store, rx.addr.port()).await;
    assert!(wait_until(20, || async { rx.count() == 5 }).await);
    assert!(wait_until(10, || async { store.queue_len().await.unwrap() == 1 }).await);
    node.kill();
    assert!(rx.received().iter().all(|r| r.tls));
    assert_eq!(
        *rx.connections.lock().unwrap(),
        1,
        "one connection carried all five"
    );
    let entry = delivery::queue_show(&store, &first.id).await.unwrap();
    let ok = entry
        .attempts
        .iter()
        .find(|a| a.recipient == "bob@example.test")
        .unwrap();
    assert_eq!(ok.outcome, "delivered");
    assert_eq!(ok.tls.as_deref(), Some("TLSv1.3"));
    assert!(ok.host.as_deref().unwrap().starts_with("127.0.0.1:"));
    let later = entry
        .attempts
        .iter()
        .find(|a| a.recipient == "later@example.test")
        .unwrap();
    assert_eq!(later.outcome, "deferred");
    assert!(later.reply.contains("450 4.2.1 try later"));
    let shown = entry.to_string();
    assert!(shown.contains("next attempt"), "{shown}");
    assert!(shown.contains("450 4.2.1 try later"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_preference_fallback_and_implicit_mx() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mx1 = Receiver::start("127.0.0.2", port, Behaviour::default()).await;
    let mx2 = Receiver::start("127.0.0.3", port, Behaviour::default()).await;
    let plain = Receiver::start("127.0.0.5", port, Behaviour::default()).await;
    let dns = dns_server(vec![
        // Preference order: mx1 (10) before mx2 (20), whatever the answer order.
        ("pref.test", Rr::Mx(20, "mx2.pref.test")),
        ("pref.test", Rr::Mx(10, "mx1.pref.test")),
        ("mx1.pref.test", lo(2)),
        ("mx2.pref.test", lo(3)),
        // The best MX does not answer: the next one gets it.
        ("down.test", Rr::Mx(10, "dead.down.test")),
        ("down.test", Rr::Mx(20, "mx2.pref.test")),
        ("dead.down.test", lo(4)),
        // No MX at all: the domain's own address (RFC 5321 5.1).
        ("nomx.test", lo(5)),
    ])
    .await;
    let store = sqlite_store(dir.path()).await;
    store
        .enqueue(&message(
            "ann@isp.test",
            &["a@pref.test"],
            "Subject: pref\r\n\r\nx\r\n",
        ))
        .await
        .unwrap();
    store
        .enqueue(&message(
            "ann@isp.test",
            &["b@down.test"],
            "Subject: down\r\n\r\nx\r\n",
        ))
        .await
        .unwrap();
    store
        .enqueue(&message(
            "ann@isp.test",
            &["c@nomx.test"],
            "Subject: nomx\r\n\r\nx\r\n",
        ))
        .await
        .unwrap();
    let node = start(config(dns), &store, port).await;
    assert!(wait_until(20, || drained(&store)).await);
    node.kill();
    assert_eq!(
        mx1.received()
            .iter()
            .map(|r| r.rcpts[0].clone())
            .collect::<Vec<_>>(),
        vec!["a@pref.test"]
    );
    assert_eq!(
        mx2.received()
            .iter()
            .map(|r| r.rcpts[0].clone())
            .collect::<Vec<_>>(),
        vec!["b@down.test"]
    );
    assert_eq!(
        plain
            .received()
            .iter()
            .map(|r| r.rcpts[0].clone())
            .collect::<Vec<_>>(),
        vec!["c@nomx.test"]
    );
}

async fn fixed_store(dir: &std::path::Path) -> (store::Store, FixedClock) {
    let clock = FixedClock::at(Timestamp(1_800_000_000));
    let store = store::Store::open_with_clock(
        &format!("sqlite://{}", dir.join("q.db").display()),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    (store, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_then_success() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(
        "127.0.0.1",
        0,
        Behaviour {
            rcpt: "451 4.7.1 greylisted".into(),
            ..Behaviour::default()
        },
    )
    .await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(1)),
    ])
    .await;
    let (store, clock) = fixed_store(dir.path()).await;
    let m = message(
        "ann@isp.test",
        &["bob@example.test"],
        "Subject: grey\r\n\r\nx\r\n",
    );
    store.enqueue(&m).await.unwrap();
    let node = start(config(dns), &store, rx.addr.port()).await;
    let deferred = wait_until(20, || async {
        let e = delivery::queue_show(&store, &m.id).await.unwrap();
        e.message.recipients[0].status == store::RecipientStatus::Deferred
    })
    .await;
    assert!(deferred);
    let e = delivery::queue_show(&store, &m.id).await.unwrap();
    assert_eq!(e.attempts.len(), 1);
    assert!(e.attempts[0].reply.contains("451 4.7.1 greylisted"));
    // retry_schedule = ["60s"]: next attempt a minute later.
    assert_eq!(
        e.message.recipients[0].next_attempt,
        Timestamp(1_800_000_060)
    );
    assert_eq!(e.message.recipients[0].attempts, 1);
    rx.set(|b| b.rcpt = "250 2.1.5 ok".into());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 0, "not retried before its time");
    clock.advance(Duration::from_secs(61));
    assert!(wait_until(20, || drained(&store)).await);
    node.kill();
    assert_eq!(rx.count(), 1);
}

fn report_of(r: &Received) -> String {
    String::from_utf8_lossy(&r.data).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_returns_a_multipart_report() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Receiver::start("127.0.0.2", 0, Behaviour::default()).await;
    remote.set(|b| {
        b.rcpt_replies.insert(
            "nobody@example.test".into(),
            "550 5.1.1 no such user".into(),
        );
    });
    let port = remote.addr.port();
    let home = Receiver::start("127.0.0.3", port, Behaviour::default()).await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(2)),
        ("isp.test", Rr::Mx(10, "mx.isp.test")),
        ("mx.isp.test", lo(3)),
    ])
    .await;
    let store = sqlite_store(dir.path()).await;
    let mut m = message(
        "ann@isp.test",
        &["nobody@example.test", "bob@example.test"],
        "From: ann@isp.test\r\nSubject: bounce me\r\n\r\nsecret body\r\n",
    );
    m.envid = Some("ENV42".into());
    m.ret = Some("HDRS".into());
    store.enqueue(&m).await.unwrap();
    let bounced: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = bounced.clone();
    let t = delivery::DeliveryTunables {
        on_bounce: Some(delivery::BounceHook(Arc::new(
            move |login: &str, rcpt: &str| {
                seen.lock().unwrap().push((login.into(), rcpt.into()));
            },
        ))),
        ..tunables(port)
    };
    let node = delivery::start_with(Arc::new(config(dns)), store.clone(), t)
        .await
        .unwrap();
    assert!(
        wait_until(20, || async { home.count() == 1 }).await,
        "the report arrives"
    );
    assert!(wait_until(10, || drained(&store)).await);
    node.kill();
    assert_eq!(
        *bounced.lock().unwrap(),
        vec![("ann".to_string(), "nobody@example.test".to_string())],
        "the abuse hook hears of the 5xx recipient only: not of the delivered one, nor of the report"
    );
    assert_eq!(remote.count(), 1);
    assert_eq!(remote.received()[0].rcpts, vec!["bob@example.test"]);
    let dsn = &home.received()[0];
    assert_eq!(dsn.mail_from, "", "reports come from the null sender");
    assert_eq!(dsn.rcpts, vec!["ann@isp.test"]);
    let parsed = mail_parser::MessageParser::default()
        .parse(&dsn.data)
        .unwrap();
    let ct = parsed.content_type().unwrap();
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(
        parsed.parts.len(),
        4,
        "multipart + text + delivery-status + headers"
    );
    let text = report_of(dsn);
    assert!(text.contains("Original-Envelope-Id: ENV42"));
    assert!(
        text.contains(
            "Final-Recipient: rfc822; nobody@example.test\r\nAction: failed\r\nStatus: 5.1.1"
        ),
        "{text}"
    );
    assert!(text.contains("Original-Recipient: rfc822; nobody@example.test"));
    assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"));
    assert!(text.contains("Content-Type: text/rfc822-headers"));
    assert!(text.contains("Subject: bounce me"));
    assert!(!text.contains("secret body"), "RET=HDRS");
    assert!(
        !text.contains("bob@example.test"),
        "only the failed recipient is reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_null_mx_nxdomain_and_smtputf8_bounce() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Receiver::start(
        "127.0.0.2",
        0,
        Behaviour {
            rcpt: "421 4.3.2 shutting down".into(),
            smtputf8: false,
            ..Behaviour::default()
        },
    )
    .await;
    let port = remote.addr.port();
    let home = Receiver::start("127.0.0.3", port, Behaviour::default()).await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(2)),
        ("nullmx.test", Rr::Mx(0, ".")),
        ("isp.test", Rr::Mx(10, "mx.isp.test")),
        ("mx.isp.test", lo(3)),
    ])
    .await;
    let (store, clock) = fixed_store(dir.path()).await;
    let mut cfg = config(dns);
    cfg.delivery.max_queue_time = config::Duration::secs(3600);
    store
        .enqueue(&message(
            "ann@isp.test",
            &["slow@example.test"],
            "Subject: expire\r\n\r\nx\r\n",
        ))
        .await
        .unwrap();
    store
        .enqueue(&message(
            "ann@isp.test",
            &["x@nullmx.test"],
            "Subject: nullmx\r\n\r\nx\r\n",
        ))
        .await
        .unwrap();
    store
        .enqueue(&message(
            "ann@isp.test",
            &["x@nxdomain.test"],
            "Subject: nx\r\n\r\nx\r\n",
        ))
        .await
        .unwrap();
    store
        .enqueue(&message(
            "ann@isp.test",
            &["j\u{f6}rg@example.test"],
            "Subject: utf8\r\n\r\nx\r\n",
        ))
        .await
        .unwrap();
    let node = start(cfg, &store, port).await;
    assert!(
        wait_until(20, || async { home.count() == 3 }).await,
        "three immediate reports"
    );
    let texts: Vec<String> = home.received().iter().map(report_of).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Status: 5.1.10") && t.contains("null MX")),
        "{texts:?}"
    );
    assert!(texts
        .iter()
        .any(|t| t.contains("Status: 5.1.2") && t.contains("does not exist")));
    assert!(texts
        .iter()
        .any(|t| t.contains("Status: 5.6.7") && t.contains("SMTPUTF8")));
    assert!(
        wait_until(10, || async { store.queue_len().await.unwrap() == 1 }).await,
        "the 4xx one waits"
    );
    clock.advance(Duration::from_secs(3601));
    assert!(
        wait_until(20, || async { home.count() == 4 }).await,
        "expiry report"
    );
    assert!(wait_until(10, || drained(&store)).await);
    node.kill();
    let expired = report_of(&home.received()[3]);
    assert!(
        expired.contains("Action: failed\r\nStatus: 4.3.2"),
        "{expired}"
    );
    assert!(expired.contains("gave up after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_server_defers() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(
        "127.0.0.1",
        0,
        Behaviour {
            hang_at: Some("DATA-END"),
            ..Behaviour::default()
        },
    )
    .await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(1)),
    ])
    .await;
    let store = sqlite_store(dir.path()).await;
    let m = message(
        "ann@isp.test",
        &["bob@example.test"],
        "Subject: hang\r\n\r\nx\r\n",
    );
    store.enqueue(&m).await.unwrap();
    let mut t = tunables(rx.addr.port());
    t.timeouts = delivery::protocol::Timeouts::all(Duration::from_secs(1));
    let node = delivery::start_with(Arc::new(config(dns)), store.clone(), t)
        .await
        .unwrap();
    assert!(
        wait_until(20, || async {
            let e = delivery::queue_show(&store, &m.id).await.unwrap();
            e.message.recipients[0].status == store::RecipientStatus::Deferred
        })
        .await
    );
    node.kill();
    let e = delivery::queue_show(&store, &m.id).await.unwrap();
    assert!(
        e.attempts[0]
            .reply
            .contains("timed out waiting for the reply to the end of data"),
        "{:?}",
        e.attempts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_signatures_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (ed_path, ed_txt) = delivery::dkim_keygen(dir.path(), "isp.test", "ed", "ed25519").unwrap();
    let (rsa_path, rsa_txt) = delivery::dkim_keygen(dir.path(), "rsa.test", "r1", "rsa").unwrap();
    let rx = Receiver::start("127.0.0.1", 0, Behaviour::default()).await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(1)),
        ("ed._domainkey.isp.test", Rr::Txt(ed_txt)),
        ("r1._domainkey.rsa.test", Rr::Txt(rsa_txt)),
    ])
    .await;
    let store = sqlite_store(dir.path()).await;
    let mut cfg = config(dns);
    cfg.delivery.dkim = vec![
        config::DkimKey {
            domain: "isp.test".into(),
            selector: "ed".into(),
            key_file: ed_path,
        },
        config::DkimKey {
            domain: "rsa.test".into(),
            selector: "r1".into(),
            key_file: rsa_path,
        },
    ];
    for from in ["ann@isp.test", "carl@rsa.test"] {
        store
            .enqueue(&message(from, &["bob@example.test"], &format!("From: {from}\r\nTo: bob@example.test\r\nSubject: signed\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nHello,  world \r\n\r\n")))
            .await
            .unwrap();
    }
    let node = start(cfg, &store, rx.addr.port()).await;
    assert!(wait_until(20, || drained(&store)).await);
    node.kill();
    let mut opts = mail_auth::hickory_resolver::config::ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    let mut udp = mail_auth::hickory_resolver::config::ConnectionConfig::udp();
    udp.port = dns.port();
    let ns = mail_auth::hickory_resolver::config::NameServerConfig::new(dns.ip(), true, vec![udp]);
    let auth = mail_auth::MessageAuthenticator::new(
        mail_auth::hickory_resolver::config::ResolverConfig::from_name_servers(vec![ns]),
        opts,
    )
    .unwrap();
    let received = rx.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        let text = report_of(r);
        assert!(text.starts_with("DKIM-Signature:"), "{text}");
        let msg = mail_auth::AuthenticatedMessage::parse(&r.data).unwrap();
        let results = auth.verify_dkim(&msg).await;
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].result(), &mail_auth::DkimResult::Pass, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_queue_commands() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(
        "127.0.0.1",
        0,
        Behaviour {
            rcpt: "452 4.2.2 full".into(),
            ..Behaviour::default()
        },
    )
    .await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(1)),
        ("isp.test", Rr::Mx(10, "mx.example.test")),
    ])
    .await;
    let (store, _clock) = fixed_store(dir.path()).await;
    let cfg = Arc::new(config(dns));
    let a = message(
        "ann@isp.test",
        &["bob@example.test"],
        "Subject: a\r\n\r\nx\r\n",
    );
    let b = message(
        "ann@isp.test",
        &["bob@example.test"],
        "Subject: b\r\n\r\nx\r\n",
    );
    store.enqueue(&a).await.unwrap();
    store.enqueue(&b).await.unwrap();
    let node = delivery::start_with(cfg.clone(), store.clone(), tunables(rx.addr.port()))
        .await
        .unwrap();
    assert!(
        wait_until(20, || async {
            delivery::queue_list(&store, 10)
                .await
                .unwrap()
                .iter()
                .all(|m| m.recipients[0].attempts == 1)
        })
        .await
    );
    assert_eq!(delivery::queue_retry(&store, &a.id).await.unwrap(), 1);
    assert!(
        wait_until(20, || async {
            delivery::queue_show(&store, &a.id)
                .await
                .unwrap()
                .attempts
                .len()
                == 2
        })
        .await
    );
    assert!(delivery::queue_flush(&store).await.unwrap() >= 1);
    assert!(matches!(
        delivery::queue_retry(&store, "nope").await,
        Err(delivery::DeliveryError::UnknownMessage(_))
    ));
    node.kill();
    assert_eq!(
        delivery::queue_delete(&cfg, &store, &a.id, false)
            .await
            .unwrap(),
        None
    );
    let report = delivery::queue_delete(&cfg, &store, &b.id, true)
        .await
        .unwrap()
        .expect("a report");
    let queued = delivery::queue_list(&store, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].id, report);
    assert_eq!(queued[0].mail_from, "");
    let body = String::from_utf8(store.queue_body(&report).await.unwrap().unwrap()).unwrap();
    assert!(
        body.contains("Status: 5.0.0") && body.contains("deleted from the queue by the operator"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_warning_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Receiver::start(
        "127.0.0.2",
        0,
        Behaviour {
            rcpt: "451 4.4.5 try later".into(),
            ..Behaviour::default()
        },
    )
    .await;
    let port = remote.addr.port();
    let home = Receiver::start("127.0.0.3", port, Behaviour::default()).await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(2)),
        ("isp.test", Rr::Mx(10, "mx.isp.test")),
        ("mx.isp.test", lo(3)),
    ])
    .await;
    let (store, clock) = fixed_store(dir.path()).await;
    store
        .enqueue(&message(
            "ann@isp.test",
            &["slow@example.test"],
            "Subject: slow\r\n\r\nx\r\n",
        ))
        .await
        .unwrap();
    let mut t = tunables(port);
    t.delay_warning_after = Some(Duration::from_secs(100));
    let node = delivery::start_with(Arc::new(config(dns)), store.clone(), t)
        .await
        .unwrap();
    let attempts = || async {
        let list = delivery::queue_list(&store, 10).await.unwrap();
        list.iter()
            .find(|m| m.mail_from == "ann@isp.test")
            .map_or(0, |m| m.recipients[0].attempts)
    };
    assert!(wait_until(20, || async { attempts().await == 1 }).await);
    assert_eq!(home.count(), 0, "no warning before the threshold");
    for n in 2..=3 {
        clock.advance(Duration::from_secs(61));
        assert!(wait_until(20, || async { attempts().await == n }).await);
    }
    assert!(wait_until(10, || async { home.count() == 1 }).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.kill();
    assert_eq!(home.count(), 1, "warned once");
    let text = report_of(&home.received()[0]);
    assert!(text.contains("Action: delayed\r\nStatus: 4.4.5"), "{text}");
    assert!(text.contains("Will-Retry-Until:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_host_takes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Receiver::start("127.0.0.1", 0, Behaviour::default()).await;
    // No records at all: the smart host needs no MX lookup.
    let dns = dns_server(vec![]).await;
    let store = sqlite_store(dir.path()).await;
    store
        .enqueue(&message(
            "ann@isp.test",
            &["a@one.test", "b@two.test"],
            "Subject: relay\r\n\r\nx\r\n",
        ))
        .await
        .unwrap();
    let mut cfg = config(dns);
    cfg.delivery.smart_host = Some(format!("127.0.0.1:{}", relay.addr.port()));
    let node = start(cfg, &store, 1).await;
    assert!(wait_until(20, || drained(&store)).await);
    node.kill();
    let got = relay.received();
    assert_eq!(got.len(), 1, "one transaction for both domains");
    assert_eq!(got[0].rcpts, vec!["a@one.test", "b@two.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_keeps_its_claims_through_a_slow_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(
        "127.0.0.1",
        0,
        Behaviour {
            hang_at: Some("DATA-END"),
            ..Behaviour::default()
        },
    )
    .await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(1)),
    ])
    .await;
    let a = sqlite_store(dir.path()).await;
    let b = sqlite_store(dir.path()).await;
    a.enqueue(&message(
        "ann@isp.test",
        &["bob@example.test"],
        "Subject: slow\r\n\r\nx\r\n",
    ))
    .await
    .unwrap();
    let node = |name: &str| {
        let mut t = tunables(rx.addr.port());
        t.node_id = name.into();
        t.lease = Duration::from_secs(2);
        t.timeouts = delivery::protocol::Timeouts::all(Duration::from_secs(8));
        t
    };
    let cfg = Arc::new(config(dns));
    let na = delivery::start_with(cfg.clone(), a.clone(), node("a"))
        .await
        .unwrap();
    assert!(wait_until(10, || async { *rx.connections.lock().unwrap() == 1 }).await);
    let nb = delivery::start_with(cfg.clone(), b.clone(), node("b"))
        .await
        .unwrap();
    // Three leases long: node a renews, so node b never starts a second delivery.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(*rx.connections.lock().unwrap(), 1);
    na.kill();
    // Once a is dead its lease runs out and b takes over.
    assert!(wait_until(10, || async { *rx.connections.lock().unwrap() == 2 }).await);
    nb.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_rates_space_out_one_domain_only() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start("127.0.0.1", 0, Behaviour::default()).await;
    let dns = dns_server(vec![
        ("slow.test", Rr::Mx(10, "mx.slow.test")),
        ("mx.slow.test", lo(1)),
        ("fast.test", Rr::Mx(10, "mx.fast.test")),
        ("mx.fast.test", lo(1)),
    ])
    .await;
    let store = sqlite_store(dir.path()).await;
    for domain in ["slow.test", "fast.test"] {
        for i in 0..4 {
            store
                .enqueue(&message(
                    "ann@isp.test",
                    &[&format!("r{i}@{domain}")],
                    &format!("Subject: {i}\r\n\r\nx\r\n"),
                ))
                .await
                .unwrap();
        }
    }
    let mut cfg = config(dns);
    cfg.delivery.domain_rates = vec![config::DomainRate {
        domain: "slow.test".into(),
        per_minute: 120,
        burst: Some(1),
    }];
    let node = start(cfg, &store, rx.addr.port()).await;
    assert!(wait_until(30, || async { rx.count() == 8 }).await);
    node.kill();
    let times = |domain: &str| -> Vec<std::time::Instant> {
        let mut t: Vec<_> = rx
            .received()
            .iter()
            .filter(|r| r.rcpts[0].ends_with(domain))
            .map(|r| r.at)
            .collect();
        t.sort();
        t
    };
    // 2 per second with a burst of one: four messages span at least 1.5 s.
    let slow = times("@slow.test");
    assert_eq!(slow.len(), 4);
    for pair in slow.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(450), "slow.test gap {gap:?}");
    }
    // fast.test has no rate (and no "*" line): its four went while slow.test waited.
    let fast = times("@fast.test");
    assert!(
        fast[3] < slow[3],
        "fast.test is not held back by slow.test's rate"
    );
}

/// A message queued while the dispatcher sleeps leaves when the accept hook wakes
/// it, not at the next poll (here a minute away, past the test's patience).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_sends_a_new_message_before_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let Sink {
        port,
        dump,
        _child,
        dns,
        store,
    } = sink_for_example_test(dir.path()).await;
    let wake = Arc::new(tokio::sync::Notify::new());
    let node = delivery::start_with(
        Arc::new(config(dns)),
        store.clone(),
        delivery::DeliveryTunables {
            poll_interval: Duration::from_secs(60),
            wake: wake.clone(),
            ..tunables(port)
        },
    )
    .await
    .unwrap();
    // Let the dispatcher find the queue empty and go to sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store
        .enqueue(&message(
            "ann@isp.test",
            &["bob@example.test"],
            "Subject: woken\r\n\r\nhi\r\n",
        ))
        .await
        .unwrap();
    assert!(
        !wait_until(1, || drained(&store)).await,
        "sent without a wake"
    );
    wake.notify_one();
    assert!(
        wait_until(10, || drained(&store)).await,
        "sent after the wake"
    );
    node.kill();
    let text = String::from_utf8_lossy(&std::fs::read(&dump).unwrap()).into_owned();
    assert!(text.contains("Subject: woken"), "{text}");
}

/// A message submission hands over as it commits it: inserted already claimed by
/// the node, sent from memory while the dispatcher sleeps (an hour's poll, never
/// woken), settled under that claim. Room is reserved before the commit and given
/// back when unused; a handed-over message whose node dies before sending it is
/// taken over by another node once the lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_over_messages_leave_from_memory_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let receiver = Receiver::start("127.0.0.1", port, Behaviour::default()).await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", lo(1)),
    ])
    .await;
    let store = sqlite_store(dir.path()).await;
    let sleepy = delivery::DeliveryTunables {
        poll_interval: Duration::from_secs(3600),
        max_in_flight: 2,
        lease: Duration::from_secs(1),
        ..tunables(port)
    };
    let a = delivery::start_with(Arc::new(config(dns)), store.clone(), sleepy)
        .await
        .unwrap();
    let intake = a.intake();
    assert!(intake.reserve(3).is_none(), "more than the node's room");
    let r = intake.reserve(2).expect("room for two");
    assert!(intake.reserve(1).is_none(), "the room is held");
    assert_eq!(r.claim().owner, a.node_id());

    let mut m = message(
        "ann@isp.test",
        &["bob@example.test", "carol@example.test"],
        "Subject: handed over\r\n\r\nfrom memory\r\n",
    );
    m.claim = Some(r.claim().clone());
    let claimed = store.enqueue(&m).await.unwrap().expect("claimed");
    r.deliver(claimed, m.body.clone());
    assert!(
        wait_until(10, || drained(&store)).await,
        "delivered and settled"
    );
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, ["bob@example.test", "carol@example.test"]);
    assert!(String::from_utf8_lossy(&got[0].data).contains("from memory"));
    assert!(wait_until(5, || async { a.in_flight() == 0 }).await);

    // Reserved and committed, then the node dies before handing it over.
    let r = intake.reserve(1).expect("room again");
    let mut m = message(
        "ann@isp.test",
        &["dave@example.test"],
        "Subject: orphan\r\n\r\nx\r\n",
    );
    m.claim = Some(r.claim().clone());
    store.enqueue(&m).await.unwrap().expect("claimed");
    drop(r);
    assert_eq!(
        a.in_flight(),
        0,
        "an unused reservation gives its room back"
    );
    a.kill();
    let b = start(config(dns), &store, port).await;
    assert!(
        wait_until(15, || drained(&store)).await,
        "taken over after the lease"
    );
    assert_eq!(receiver.count(), 2);
    assert!(String::from_utf8_lossy(&receiver.received()[1].data).contains("Subject: orphan"));
    b.kill();
}
