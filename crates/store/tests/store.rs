//! The store test suite, run against both backends: every test exists once for
//! SQLite (a temp file) and once for PostgreSQL (127.0.0.1:5432, a schema of its own
//! per test so parallel tests never collide).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use policy::{Actor, FixedClock, IpNet, LeaseSource, Plan, Port25Action, Port25State, Timestamp};
use store::{NewLease, NewSubscriber, Store, StoreError};

const T0: i64 = 1_800_000_000;

struct Env {
    store: Store,
    clock: FixedClock,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let clock = FixedClock::at(Timestamp(T0));
    let store = Store::open_with_clock(&url, Arc::new(clock.clone()))
        .await
        .unwrap();
    Env {
        store,
        clock,
        url,
        _dir: Some(dir),
    }
}

async fn postgres() -> Env {
    let url = store::testing::fresh_postgres_schema("t")
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (see .ci/run)");
    let clock = FixedClock::at(Timestamp(T0));
    let store = Store::open_with_clock(&url, Arc::new(clock.clone()))
        .await
        .unwrap();
    Env {
        store,
        clock,
        url,
        _dir: None,
    }
}

/// Defines `mod $name { sqlite, postgres }`, both running `$body(env)`.
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(super::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(super::postgres().await).await;
            }
        }
    };
}

fn op() -> Actor {
    Actor::Operator("ann".into())
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn dynamic(login: &str) -> NewSubscriber {
    NewSubscriber {
        login: login.into(),
        display_name: None,
        email: Some(format!("{login}@example.net")),
        plan: Plan::Dynamic,
        static_ips: vec![],
        password_hash: None,
    }
}

fn static_sub(login: &str, addr: &str) -> NewSubscriber {
    NewSubscriber {
        plan: Plan::Static,
        static_ips: vec![net(addr)],
        ..dynamic(login)
    }
}

async fn migrations_are_idempotent(env: Env) {
    env.store
        .add_subscriber(&dynamic("alice"), &op())
        .await
        .unwrap();
    // A second node (or a CLI command) opening the same store migrates nothing and sees the data.
    let again = Store::open(&env.url).await.unwrap();
    assert_eq!(
        again.subscriber("alice").await.unwrap().port25,
        Port25State::Blocked
    );
}
both_backends!(migrations, migrations_are_idempotent);

async fn subscribers_and_uniqueness(env: Env) {
    let s = env
        .store
        .add_subscriber(&static_sub("bob", "198.51.100.8/29"), &op())
        .await
        .unwrap();
    assert_eq!(s.port25, Port25State::Exempt);
    assert_eq!(s.static_ips, vec![net("198.51.100.8/29")]);
    let e = env
        .store
        .add_subscriber(&dynamic("bob"), &op())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::DuplicateLogin(ref l) if l == "bob"),
        "{e}"
    );
    // An address inside bob's /29 is taken, even written differently.
    let e = env
        .store
        .add_subscriber(&static_sub("carol", "198.51.100.12"), &op())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "address 198.51.100.12 is already assigned to 'bob'"
    );
    assert!(
        env.store.find_subscriber("carol").await.unwrap().is_none(),
        "a refused add changes nothing"
    );
    assert_eq!(env.store.list_subscribers().await.unwrap().len(), 1);
    let e = env.store.subscriber("nobody").await.unwrap_err();
    assert_eq!(e.to_string(), "no subscriber with login 'nobody'");
}
both_backends!(subscribers, subscribers_and_uniqueness);

async fn transitions_write_audit_and_events(env: Env) {
    let st = &env.store;
    st.add_subscriber(&dynamic("alice"), &op()).await.unwrap();
    let cursor = st.last_event_id().await.unwrap();
    let cust = Actor::Customer("alice".into());
    let r = st
        .transition(
            "alice",
            Port25Action::RequestOptOut { aup_accepted: true },
            &cust,
            "run my own MX",
        )
        .await
        .unwrap();
    assert_eq!(r, (Port25State::Blocked, Port25State::OptoutPending));
    assert_eq!(st.optout_requests(None).await.unwrap().len(), 1);
    env.clock.advance(Duration::from_secs(60));
    st.transition("alice", Port25Action::ApproveOptOut, &op(), "ok")
        .await
        .unwrap();
    assert!(st.optout_requests(None).await.unwrap().is_empty());
    let req = &st.optout_requests(Some("alice")).await.unwrap()[0];
    assert_eq!(
        (req.status.as_str(), req.decided_by.as_deref()),
        ("approved", Some("operator:ann"))
    );

    // A refused step changes nothing and writes no audit entry.
    let before = st.audit(Some("alice"), 100).await.unwrap().len();
    let e = st
        .transition("alice", Port25Action::ApproveOptOut, &op(), "again")
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "alice: there is no pending opt-out request (state opted-out)"
    );
    assert_eq!(st.audit(Some("alice"), 100).await.unwrap().len(), before);

    let audit = st.audit(Some("alice"), 100).await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (
            last.action.as_str(),
            last.from.as_deref(),
            last.to.as_deref()
        ),
        ("optout-approve", Some("optout-pending"), Some("opted-out"))
    );
    assert_eq!(last.actor, op());
    assert_eq!(last.at, Timestamp(T0 + 60));
    assert_eq!(audit[1].actor, cust);

    let events = st.events_after(cursor, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["port25.changed", "port25.changed"]);
    assert!(events[0].id < events[1].id);
    assert_eq!(events[1].payload["to"], "opted-out");
    assert_eq!(events[1].login.as_deref(), Some("alice"));
}
both_backends!(transitions, transitions_write_audit_and_events);

async fn concurrent_requests_one_wins(env: Env) {
    env.store
        .add_subscriber(&dynamic("alice"), &op())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let st = env.store.clone();
        tasks.push(tokio::spawn(async move {
            st.transition(
                "alice",
                Port25Action::RequestOptOut { aup_accepted: true },
                &op(),
                "x",
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Transition { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(ok, 1, "exactly one request moves blocked -> optout-pending");
    assert_eq!(env.store.optout_requests(None).await.unwrap().len(), 1);
}
both_backends!(concurrency, concurrent_requests_one_wins);

async fn customer_requests_get_their_own_ids(env: Env) {
    let st = &env.store;
    for login in ["alice", "bob"] {
        st.add_subscriber(&dynamic(login), &op()).await.unwrap();
    }
    // Concurrent requests by one login: every id returned is that request's own row.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let st = st.clone();
        let login = if i % 2 == 0 { "alice" } else { "bob" };
        tasks.push(tokio::spawn(async move {
            let id = st
                .create_support_request(login, &format!("subject {i}"), "body")
                .await
                .unwrap();
            (id, login, format!("subject {i}"))
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let (id, login, subject) = t.await.unwrap();
        let mine = st.support_requests(Some(login)).await.unwrap();
        let row = mine
            .iter()
            .find(|r| r.id == id)
            .expect("id is one of the login's rows");
        assert_eq!(row.subject, subject);
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "every request got a distinct id");

    // Static-address requests racing past the pending check: one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let st = st.clone();
        tasks.push(tokio::spawn(async move {
            st.request_static("alice", "please").await
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        if let Ok(id) = t.await.unwrap() {
            won.push(id);
        }
    }
    assert_eq!(won.len(), 1, "exactly one pending static request");
    let pending = st.static_requests(Some("alice")).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, won[0]);
    assert!(st.request_static("alice", "again").await.is_err());
}
both_backends!(customer_requests, customer_requests_get_their_own_ids);

async fn plan_changes_move_static_leases(env: Env) {
    let st = &env.store;
    st.add_subscriber(&static_sub("bob", "198.51.100.7"), &op())
        .await
        .unwrap();
    st.transition("bob", Port25Action::Block, &op(), "spam")
        .await
        .unwrap();
    env.clock.advance(Duration::from_secs(100));
    let s = st.set_plan("bob", Plan::Dynamic, &[], &op()).await.unwrap();
    assert_eq!(
        s.port25,
        Port25State::Reinstated,
        "an operator block survives a plan change"
    );
    assert!(s.static_ips.is_empty());
    let held = st
        .whois(ip("198.51.100.7"), Timestamp(T0 + 50))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.lease.login, "bob");
    assert!(
        st.whois(ip("198.51.100.7"), Timestamp(T0 + 100))
            .await
            .unwrap()
            .is_none(),
        "released at the change"
    );
    // The address is free again.
    st.add_subscriber(&static_sub("carol", "198.51.100.7"), &op())
        .await
        .unwrap();
    let e = st
        .set_plan("bob", Plan::Static, &[], &op())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("static address"), "{e}");
    let e = st
        .set_plan("bob", Plan::Static, &[net("198.51.100.7")], &op())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "address 198.51.100.7 is already assigned to 'carol'"
    );
    st.transition("bob", Port25Action::Unblock, &op(), "cleaned")
        .await
        .unwrap();
    let s = st
        .set_plan("bob", Plan::Static, &[net("198.51.100.9")], &op())
        .await
        .unwrap();
    assert_eq!(s.port25, Port25State::Exempt);
}
both_backends!(plan_changes, plan_changes_move_static_leases);

async fn whois_follows_half_open_leases(env: Env) {
    let st = &env.store;
    for l in ["ann", "bea", "cat"] {
        st.add_subscriber(&dynamic(l), &op()).await.unwrap();
    }
    let lease = |login: &str, n: &str, s: i64, e: Option<i64>| NewLease {
        login: login.into(),
        net: net(n),
        start: Timestamp(s),
        end: e.map(Timestamp),
        source: LeaseSource::Import,
        session_id: None,
        nas: None,
    };
    st.import_leases(
        &[
            lease("ann", "100.64.0.5", 1000, Some(2000)),
            lease("bea", "100.64.0.5", 2000, None),
            lease("cat", "2001:db8:1200::/56", 1000, None),
        ],
        &op(),
    )
    .await
    .unwrap();
    let who = |addr: &'static str, t: i64| {
        let st = st.clone();
        async move {
            st.whois(ip(addr), Timestamp(t))
                .await
                .unwrap()
                .map(|l| l.lease.login)
        }
    };
    assert_eq!(who("100.64.0.5", 999).await, None);
    assert_eq!(who("100.64.0.5", 1000).await.as_deref(), Some("ann"));
    assert_eq!(who("100.64.0.5", 1999).await.as_deref(), Some("ann"));
    assert_eq!(who("100.64.0.5", 2000).await.as_deref(), Some("bea"));
    assert_eq!(who("100.64.0.6", 2000).await, None);
    assert_eq!(
        who("2001:db8:1200:ab::1", 5000).await.as_deref(),
        Some("cat")
    );
    assert_eq!(who("2001:db8:1201::1", 5000).await, None);
    assert_eq!(st.leases_covering(ip("100.64.0.5")).await.unwrap().len(), 2);
    assert_eq!(st.leases_of("ann", 10).await.unwrap().len(), 1);
    assert_eq!(
        st.unknown_logins(&["ann", "zed"]).await.unwrap(),
        vec!["zed".to_string()]
    );

    // RADIUS-style sessions: open, then close by NAS and session id.
    let nas = ip("10.0.0.1");
    st.open_lease(&NewLease {
        session_id: Some("s1".into()),
        nas: Some(nas),
        source: LeaseSource::Radius,
        ..lease("ann", "100.64.9.9", 3000, None)
    })
    .await
    .unwrap();
    assert_eq!(who("100.64.9.9", 3500).await.as_deref(), Some("ann"));
    assert!(st.close_lease(nas, "s1", Timestamp(4000)).await.unwrap());
    assert!(
        !st.close_lease(nas, "s1", Timestamp(4001)).await.unwrap(),
        "already closed"
    );
    assert_eq!(who("100.64.9.9", 4000).await, None);
}
both_backends!(whois, whois_follows_half_open_leases);

async fn bulk_import_is_all_or_nothing(env: Env) {
    let st = &env.store;
    st.add_subscriber(&dynamic("u01500"), &op()).await.unwrap();
    let rows: Vec<NewSubscriber> = (0..3000).map(|i| dynamic(&format!("u{i:05}"))).collect();
    let (idx, e) = st.import_subscribers(&rows, &op()).await.unwrap_err();
    assert_eq!(idx, Some(1500));
    assert!(matches!(e, StoreError::DuplicateLogin(_)));
    assert_eq!(
        st.list_subscribers().await.unwrap().len(),
        1,
        "nothing imported"
    );
    let mut rows: Vec<NewSubscriber> = (0..3000).map(|i| dynamic(&format!("v{i:05}"))).collect();
    rows[7].display_name = Some("tab\there, back\\slash,\nnew line, ümlaut".into());
    rows[8].email = None;
    assert_eq!(st.import_subscribers(&rows, &op()).await.unwrap(), 3000);
    let odd = st.subscriber("v00007").await.unwrap();
    assert_eq!(
        odd.display_name, rows[7].display_name,
        "text survives the bulk path byte for byte"
    );
    assert_eq!(st.subscriber("v00008").await.unwrap().email, None);
    assert_eq!(st.audit(Some("v02999"), 10).await.unwrap().len(), 1);
    let counts = st.count_by_state().await.unwrap();
    assert_eq!(counts, vec![(Port25State::Blocked, 3001)]);
}
both_backends!(bulk_import, bulk_import_is_all_or_nothing);

async fn senders(env: Env) {
    env.store
        .add_subscriber(&dynamic("alice"), &op())
        .await
        .unwrap();
    assert!(env
        .store
        .allow_sender("alice", "@shop.example", &op())
        .await
        .unwrap());
    assert!(!env
        .store
        .allow_sender("alice", "@shop.example", &op())
        .await
        .unwrap());
    let s = env.store.subscriber("alice").await.unwrap();
    assert!(s.owns_sender("orders@shop.example"));
    assert!(env
        .store
        .allow_sender("nobody", "@x.example", &op())
        .await
        .is_err());
}
both_backends!(allowed_senders, senders);

async fn follower_wakes_on_another_handles_write(env: Env) {
    let reader = Store::open(&env.url).await.unwrap();
    let mut follower = reader.follow(reader.last_event_id().await.unwrap());
    let writer = env.store.clone();
    let started = Instant::now();
    let wait = tokio::spawn(async move { follower.next_batch().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer
        .add_subscriber(&dynamic("late"), &op())
        .await
        .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(2), wait)
        .await
        .expect("woke within 2 s")
        .unwrap()
        .unwrap();
    assert_eq!(batch[0].kind, "subscriber.added");
    assert_eq!(batch[0].login.as_deref(), Some("late"));
    assert!(started.elapsed() < Duration::from_millis(1500));
}
both_backends!(follower, follower_wakes_on_another_handles_write);

#[tokio::test]
async fn bad_urls_are_refused() {
    let e = Store::open("mysql://x").await.err().unwrap();
    assert_eq!(
        e.to_string(),
        "store url 'mysql://x' must start with sqlite:// or postgres://"
    );
    let e = Store::open("sqlite:///nonexistent-dir/x/y.db")
        .await
        .err()
        .unwrap();
    assert!(e.to_string().starts_with("cannot open store"), "{e}");
}

/// Under steady writing the WAL must still start over: each commit waits for its
/// flush and the next follows at once, for well over a few checkpoint intervals. A
/// checkpointer that only ever copies in the background never finds a moment with
/// every frame copied, and the WAL keeps every frame ever written (over 1.5 times
/// the bytes committed, with the index pages); one that starts over keeps what a few
/// checkpoint intervals wrote (a third of it here on a loaded machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_starts_over_under_steady_writing() {
    let env = sqlite().await;
    let body = std::sync::Arc::new(vec![b'x'; 64 * 1024]);
    let started = Instant::now();
    let mut written = 0u64;
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(2) {
        n += 1;
        let m = store::NewQueuedMessage {
            id: format!("wal-{n}"),
            login: "ann".into(),
            mail_from: "ann@example.net".into(),
            recipients: vec![store::NewQueuedRecipient {
                address: "bob@example.org".into(),
                notify: None,
                orcpt: None,
            }],
            body: body.clone(),
            ..Default::default()
        };
        env.store.enqueue(&m).await.unwrap();
        written += body.len() as u64;
    }
    let wal = std::fs::metadata(wal_file(&env)).unwrap().len();
    assert!(
        wal * 3 < written * 2,
        "WAL of {wal} bytes after {n} commits of {written} bytes: it never started over"
    );
}

/// The WAL file of a SQLite test store.
fn wal_file(env: &Env) -> String {
    format!("{}-wal", env.url.trim_start_matches("sqlite://"))
}

/// A closed store leaves nothing in its WAL: the next process to open it (the next
/// CLI command after an import) does not have to read and copy what this one wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_empties_its_wal() {
    let env = sqlite().await;
    let subs: Vec<NewSubscriber> = (0..50_000)
        .map(|i| dynamic(&format!("wal{i:05}")))
        .collect();
    env.store
        .import_subscribers(&subs, &Actor::Operator("op".into()))
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    let wal = wal_file(&env);
    let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(wal_len() > 0, "the import went to the WAL first");
    drop(env.store);
    assert_eq!(wal_len(), 0, "the WAL was left for the next process");
    // Everything is in the database file: a fresh open finds it.
    let reopened = Store::open(&env.url).await.unwrap();
    assert!(reopened
        .find_subscriber("wal49999")
        .await
        .unwrap()
        .is_some());
}

/// A process that only read (a CLI query beside the running server) leaves the WAL
/// to the process that wrote it: emptying it would stall the server's commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_store_that_only_read_leaves_the_wal() {
    let env = sqlite().await;
    env.store
        .import_subscribers(&[dynamic("ann")], &Actor::Operator("op".into()))
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    let wal = wal_file(&env);
    let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let written = wal_len();
    assert!(written > 0, "the server's write is in the WAL");
    let reader = Store::open(&env.url).await.unwrap();
    assert!(reader.find_subscriber("ann").await.unwrap().is_some());
    drop(reader);
    assert_eq!(wal_len(), written, "a reader emptied the writer's WAL");
}

fn queued(id: &str, rcpts: &[&str], claim: Option<store::Claim>) -> store::NewQueuedMessage {
    store::NewQueuedMessage {
        id: id.into(),
        login: "ann".into(),
        mail_from: "ann@example.net".into(),
        recipients: rcpts
            .iter()
            .map(|r| store::NewQueuedRecipient {
                address: r.to_string(),
                notify: Some("FAILURE".into()),
                orcpt: None,
            })
            .collect(),
        body: Arc::new(b"Subject: x\r\n\r\nhi\r\n".to_vec()),
        claim,
        ..Default::default()
    }
}

/// A message enqueued with a claim is born leased to the accepting node: it comes
/// back as that node would have claimed it, no other node claims it while the lease
/// holds, the node settles it with the ids it got, and once a lease runs out (the
/// node died before delivering) any node claims the recipients.
async fn enqueued_with_a_claim(env: Env) {
    let st = &env.store;
    let claim = store::Claim {
        owner: "node-a".into(),
        until: Timestamp(T0 + 120),
    };
    let got = st
        .enqueue_many(&[
            queued(
                "m-claimed",
                &["b@example.org", "c@example.org"],
                Some(claim.clone()),
            ),
            queued("m-open", &["d@example.org"], None),
            queued("m-dies", &["e@example.org"], Some(claim.clone())),
        ])
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    assert!(got[1].is_none(), "an unclaimed message is the dispatcher's");
    let m = got[0].clone().expect("claimed");
    assert_eq!(
        (m.id.as_str(), m.login.as_str(), m.size),
        ("m-claimed", "ann", 18)
    );
    assert_eq!(m.received_at, Timestamp(T0));
    let addrs: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addrs, ["b@example.org", "c@example.org"]);
    assert_eq!(m.recipients[0].notify.as_deref(), Some("FAILURE"));
    assert_ne!(m.recipients[0].id, m.recipients[1].id);

    // Committed on the caller's thread (one session's message), it is the same, and
    // in the queue before the flush the caller then waits for (on a runtime worker,
    // which hands its other tasks to another thread meanwhile).
    let (alone, flush) = st
        .enqueue_on_caller(&queued("m-alone", &["f@example.org"], Some(claim.clone())))
        .await
        .unwrap();
    let alone = alone.expect("claimed");
    assert_eq!((alone.id.as_str(), alone.size), ("m-alone", 18));
    let queued_alone = st.queue_message("m-alone").await.unwrap().expect("queued");
    assert_eq!(queued_alone.recipients[0].id, alone.recipients[0].id);
    flush.flushed_here().expect("flushed");

    // Another node finds only the unclaimed message.
    let other = st
        .claim_due_recipients("node-b", Timestamp(T0 + 300), 100)
        .await
        .unwrap();
    let ids: Vec<&str> = other.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m-open"]);

    // The ids returned are the rows' own, leased to node-a: its outcomes are taken.
    let outcomes: Vec<store::RecipientOutcome> = m
        .recipients
        .iter()
        .map(|r| store::RecipientOutcome {
            recipient_id: r.id,
            address: r.address.clone(),
            status: store::RecipientStatus::Delivered,
            next_attempt: Timestamp(T0),
            reply: "250 ok".into(),
            host: None,
            tls: None,
            attempted: true,
            delay_warned: false,
        })
        .collect();
    assert!(matches!(
        st.record_outcomes("node-b", "m-claimed", &outcomes).await,
        Err(StoreError::Conflict)
    ));
    st.record_outcomes("node-a", "m-claimed", &outcomes)
        .await
        .unwrap();
    assert!(st.queue_message("m-claimed").await.unwrap().is_none());

    // node-a died holding m-dies: after its lease, node-b claims it.
    env.clock.set(Timestamp(T0 + 121));
    let taken = st
        .claim_due_recipients("node-b", Timestamp(T0 + 240), 100)
        .await
        .unwrap();
    let mut ids: Vec<&str> = taken.iter().map(|m| m.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["m-alone", "m-dies"]);
}
both_backends!(claimed_enqueue, enqueued_with_a_claim);

/// The attempt log keeps every attempt of a queued message and leaves with it. On
/// SQLite an attempt that ends its message is not written at all (its pages would be
/// frames of the next flush): the attempt ids, which are never reused, show it.
async fn attempt_log_leaves_with_its_message(env: Env) {
    let st = &env.store;
    let claim = store::Claim {
        owner: "node-a".into(),
        until: Timestamp(T0 + 120),
    };
    let attempt = |r: &store::ClaimedRecipient, status| store::RecipientOutcome {
        recipient_id: r.id,
        address: r.address.clone(),
        status,
        next_attempt: Timestamp(T0 + 60),
        reply: match status {
            store::RecipientStatus::Delivered => "250 ok".into(),
            _ => "451 try later".into(),
        },
        host: Some("mx.example.org".into()),
        tls: None,
        attempted: true,
        delay_warned: false,
    };
    use store::RecipientStatus::{Deferred, Delivered};
    let claimed = |m: &store::NewQueuedMessage| {
        let m = m.clone();
        async move { st.enqueue(&m).await.unwrap().expect("claimed") }
    };

    let two = claimed(&queued(
        "m-two",
        &["b@example.org", "c@example.org"],
        Some(claim.clone()),
    ))
    .await;
    let (b, c) = (&two.recipients[0], &two.recipients[1]);
    st.record_outcomes(
        "node-a",
        "m-two",
        &[attempt(b, Delivered), attempt(c, Deferred)],
    )
    .await
    .unwrap();
    let log = st.delivery_attempts("m-two").await.unwrap();
    let seen: Vec<(&str, &str)> = log
        .iter()
        .map(|a| (a.recipient.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("b@example.org", "delivered"),
            ("c@example.org", "deferred")
        ]
    );
    assert_eq!(log[1].reply, "451 try later");
    assert!(
        st.queue_message("m-two").await.unwrap().is_some(),
        "c is pending"
    );

    // c's second attempt delivers it: the message and its log leave together.
    env.clock.set(Timestamp(T0 + 60));
    let again = st
        .claim_due_recipients("node-a", Timestamp(T0 + 180), 100)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    st.record_outcomes(
        "node-a",
        "m-two",
        &[attempt(&again[0].recipients[0], Delivered)],
    )
    .await
    .unwrap();
    assert!(st.queue_message("m-two").await.unwrap().is_none());
    assert!(st.delivery_attempts("m-two").await.unwrap().is_empty());

    // Delivered at once, then one deferred.
    let one = claimed(&queued("m-one", &["d@example.org"], Some(claim.clone()))).await;
    st.record_outcomes("node-a", "m-one", &[attempt(&one.recipients[0], Delivered)])
        .await
        .unwrap();
    assert!(st.queue_message("m-one").await.unwrap().is_none());
    let three = claimed(&queued("m-three", &["e@example.org"], Some(claim))).await;
    st.record_outcomes(
        "node-a",
        "m-three",
        &[attempt(&three.recipients[0], Deferred)],
    )
    .await
    .unwrap();
    let log = st.delivery_attempts("m-three").await.unwrap();
    assert_eq!(log.len(), 1);
    // Written before: m-two's first two. PostgreSQL writes all five (one COPY per
    // batch) and deletes those of the messages that leave.
    let expected_id = if env.url.starts_with("sqlite") { 3 } else { 5 };
    assert_eq!(log[0].id, expected_id);
}
both_backends!(attempt_log, attempt_log_leaves_with_its_message);

/// One accounting batch from two NASes that reuse a session id: each lease and event
/// names its own NAS, the Stop closes only its own session, and a repeated Stop (the
/// lost-Start path) records nothing twice.
async fn accounting_keeps_sessions_of_two_nases_apart(env: Env) {
    let s = &env.store;
    s.import_subscribers(&[dynamic("ann"), dynamic("bob")], &op())
        .await
        .unwrap();
    let report = |nas: &str, login: &str, nets: &[&str]| store::SessionReport {
        nas: ip(nas),
        session_id: "s1".into(),
        login: login.into(),
        nets: nets.iter().map(|n| net(n)).collect(),
        at: Timestamp(T0),
        session_time: None,
    };
    let ann = report("192.0.2.1", "ann", &["100.64.0.1/32", "2001:db8:1::/56"]);
    let bob = report("192.0.2.2", "bob", &["100.64.0.2/32"]);
    let cursor = s.last_event_id().await.unwrap();
    let batch = [
        (store::SessionEvent::Start, ann.clone()),
        (store::SessionEvent::Start, bob.clone()),
        (store::SessionEvent::Stop, ann.clone()),
    ];
    let counts: Vec<usize> = s
        .sessions_accounted(&batch)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(counts, [2, 1, 2]);
    let events = s.events_after(cursor, 100).await.unwrap();
    let payloads: Vec<(&str, Option<&str>, serde_json::Value)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.login.as_deref(), e.payload.clone()))
        .collect();
    let opened =
        |nas: &str, net: &str| serde_json::json!({ "nas": nas, "net": net, "session_id": "s1" });
    let closed = |net: &str| serde_json::json!({ "net": net, "session_id": "s1" });
    assert_eq!(
        payloads,
        [
            (
                "lease.opened",
                Some("ann"),
                opened("192.0.2.1", "100.64.0.1")
            ),
            (
                "lease.opened",
                Some("ann"),
                opened("192.0.2.1", "2001:db8:1::/56")
            ),
            (
                "lease.opened",
                Some("bob"),
                opened("192.0.2.2", "100.64.0.2")
            ),
            ("lease.closed", Some("ann"), closed("100.64.0.1")),
            ("lease.closed", Some("ann"), closed("2001:db8:1::/56")),
        ]
    );
    let bobs = s.leases_of("bob", 10).await.unwrap();
    assert_eq!((bobs.len(), bobs[0].lease.end), (1, None));
    assert_eq!(bobs[0].nas.as_deref(), Some("192.0.2.2"));
    // The Stop again: its session has no open lease and both nets are recorded.
    let again = s
        .sessions_accounted(&[(store::SessionEvent::Stop, ann)])
        .await;
    assert_eq!(
        again.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(s.leases_of("ann", 10).await.unwrap().len(), 2);
}
both_backends!(two_nases, accounting_keeps_sessions_of_two_nases_apart);
