//! The nftables table against the real kernel, inside network namespaces this test
//! creates (and removes, also on failure), so the host's ruleset is never touched.
//!
//! - the rendered ruleset passes `nft -c -f` and loads with `nft -f`, twice;
//! - on a small real network (a dynamic and a static subscriber host, a router running
//!   the table with live sync, an "internet" host listening on 25 and 587), port 25
//!   opens and closes as the port-25 state changes, over IPv4 and IPv6, and the table
//!   comes back after someone deletes it or flushes a set.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and `socat`; skipped without them.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enforce::nftables::{self, NftRunner};
use policy::{Actor, IpNet, LeaseSource, Plan, Port25Action};
use store::{NewLease, NewSubscriber, Store};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Network namespaces and the processes running in them; Drop kills the processes
/// and deletes the namespaces, whether the test passed or not.
struct Lab {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            namespaces: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Creates namespace `pc<role><pid>-<n>` with loopback up; returns its name.
    fn netns(&mut self, role: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "pc{role}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    fn spawn(&mut self, ns: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn in namespace");
        self.children.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Namespaces need root and the tools; say so and skip instead of failing elsewhere.
fn lab_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let ok = root && ["ip", "nft", "socat"].iter().all(|t| have(t));
    if !ok {
        eprintln!("skipped: needs root, ip, nft and socat");
    }
    ok
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Reach {
    Open,
    /// Refused by a TCP reset.
    Refused,
    /// No answer (dropped).
    Silent,
}

/// Tries a TCP connection from namespace `ns`.
fn connect(ns: &str, addr: IpAddr, port: u16) -> Reach {
    let target = match addr {
        IpAddr::V4(a) => format!("TCP4:{a}:{port},connect-timeout=1"),
        IpAddr::V6(a) => format!("TCP6:[{a}]:{port},connect-timeout=1"),
    };
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "socat",
            "-u",
            "OPEN:/dev/null",
            &target,
        ])
        .output()
        .expect("run socat");
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Reach::Open
    } else if err.contains("refused") {
        Reach::Refused
    } else {
        Reach::Silent
    }
}

/// Polls until `connect` gives `want`; returns how long that took.
fn wait_for(ns: &str, addr: IpAddr, port: u16, want: Reach, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = connect(ns, addr, port);
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{ns} -> {addr}:{port}: still {got:?} after {limit:?}, wanted {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn test_config(table: &str) -> config::Config {
    let mut c = config::Config::default();
    c.network.dynamic_pools = vec![net("100.64.0.0/10"), net("2001:db8:8000::/33")];
    c.network.static_pools = vec![net("198.51.100.0/24"), net("2001:db8:5000::/48")];
    c.enforce.nftables = true;
    c.enforce.table = table.into();
    c.enforce.reject = true;
    c.enforce.allowed_destinations = vec![net("203.0.113.25"), net("2001:db8:ffff::25")];
    c.enforce.reconcile_interval = config::Duration::secs(1);
    c
}

fn operator() -> Actor {
    Actor::Operator("t".into())
}

async fn add(store: &Store, login: &str, plan: Plan, statics: &[&str]) {
    let new = NewSubscriber {
        login: login.into(),
        display_name: None,
        email: None,
        plan,
        static_ips: statics.iter().map(|s| net(s)).collect(),
        password_hash: None,
    };
    store.add_subscriber(&new, &operator()).await.unwrap();
}

async fn lease(store: &Store, login: &str, prefix: &str) {
    let l = NewLease {
        login: login.into(),
        net: net(prefix),
        start: store.now(),
        end: None,
        source: LeaseSource::Radius,
        session_id: Some(format!("{login}-{prefix}")),
        nas: Some("192.0.2.1".parse().unwrap()),
    };
    store.open_lease(&l).await.unwrap();
}

async fn opt_out(store: &Store, login: &str) {
    store
        .transition(
            login,
            Port25Action::RequestOptOut { aup_accepted: true },
            &Actor::Customer(login.into()),
            "mail server",
        )
        .await
        .unwrap();
    store
        .transition(login, Port25Action::ApproveOptOut, &operator(), "ok")
        .await
        .unwrap();
}

#[tokio::test]
async fn rendered_ruleset_loads_with_nft() {
    if !lab_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("x.db").display()))
        .await
        .unwrap();
    // Every kind of element: v4 host and prefix, each hashed IPv6 length, odd and
    // nested IPv6 lengths (interval fallback), blocked statics of both families.
    add(&store, "open", Plan::Dynamic, &[]).await;
    for p in [
        "100.64.0.9",
        "100.64.1.0/29",
        "2001:db8:8000:100::/56",
        "2001:db8:8000:200::/64",
        "2001:db8:8000:300::/62",
        "2001:db8:8000:300::/63",
        "2001:db8:8000:400::1",
        "2001:db8:8001::/48",
        "2001:db8:8002::/60",
    ] {
        lease(&store, "open", p).await;
    }
    opt_out(&store, "open").await;
    add(&store, "closed", Plan::Dynamic, &[]).await;
    lease(&store, "closed", "100.64.0.10").await;
    add(
        &store,
        "abuser",
        Plan::Static,
        &["198.51.100.7", "2001:db8:5000:7::/64"],
    )
    .await;
    store
        .transition("abuser", Port25Action::Block, &operator(), "spam")
        .await
        .unwrap();

    let mut lab = Lab::new();
    let ns = lab.netns("r");
    let nft = NftRunner::in_netns(&ns);
    for reject in [true, false] {
        let mut config = test_config("portcullis");
        config.enforce.reject = reject;
        let text = nftables::render(&config, &store).await.unwrap();
        nft.check(&text)
            .await
            .unwrap_or_else(|e| panic!("nft -c: {e}\n{text}"));
        nft.load(&text).await.unwrap();
        // A second load replaces the existing table in one transaction.
        nft.load(&text).await.unwrap();
        let from_text = nft
            .run(&["list", "table", "inet", "portcullis"], None)
            .await
            .unwrap();
        // The JSON form the full load sends is the same table.
        let enforced = nftables::sync::load_elements(&store, &config.network.dynamic_pools)
            .await
            .unwrap();
        let json = nftables::ruleset::render_table_json(
            &nftables::TableSpec::from_config(&config, 0),
            enforced.elements(),
        );
        nft.load_json(&json)
            .await
            .unwrap_or_else(|e| panic!("nft -j -f: {e}\n{json}"));
        let from_json = nft
            .run(&["list", "table", "inet", "portcullis"], None)
            .await
            .unwrap();
        assert_eq!(from_text, from_json, "text and JSON renderings differ");
    }
    let listed = nft
        .run(&["list", "table", "inet", "portcullis"], None)
        .await
        .unwrap();
    for want in [
        "100.64.0.9",
        "100.64.1.0/29",
        "2001:db8:8000:100::",
        "2001:db8:8000:300::/62",
        "2001:db8:8000:400::1",
        "198.51.100.7",
        "2001:db8:5000:7::",
        "counter name \"blocked_dynamic\" drop",
    ] {
        assert!(listed.contains(want), "{want} missing:\n{listed}");
    }
    assert!(
        !listed.contains("100.64.0.10"),
        "a blocked subscriber is not allowed:\n{listed}"
    );
    assert!(
        !listed.contains("2001:db8:8000:300::/63"),
        "nested prefix folded:\n{listed}"
    );
    let pbl = nftables::render_pbl(&test_config("portcullis"));
    assert!(pbl.contains("\n100.64.0.0/10\n"), "{pbl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port25_follows_the_policy_on_a_real_network() {
    if !lab_available() {
        return;
    }
    let mut lab = Lab::new();
    let router = lab.netns("r");
    let dynamic = lab.netns("d");
    let fixed = lab.netns("s");
    let internet = lab.netns("i");
    // Links: router <-> each host; hosts route everything through the router.
    let links = [
        (
            &dynamic,
            "vd",
            ["100.64.0.1/24", "2001:db8:8000::1/64"],
            ["100.64.0.2/24", "2001:db8:8000::2/64"],
        ),
        (
            &fixed,
            "vs",
            ["198.51.100.1/24", "2001:db8:5000::1/64"],
            ["198.51.100.2/24", "2001:db8:5000::2/64"],
        ),
        (
            &internet,
            "vi",
            ["203.0.113.1/24", "2001:db8:ffff::1/64"],
            ["203.0.113.2/24", "2001:db8:ffff::2/64"],
        ),
    ];
    for (host, rif, raddrs, haddrs) in &links {
        run(&[
            "ip", "-n", &router, "link", "add", rif, "type", "veth", "peer", "name", "eth0",
            "netns", host,
        ]);
        for a in raddrs {
            run(&["ip", "-n", &router, "addr", "add", a, "dev", rif, "nodad"]);
        }
        for a in haddrs {
            run(&["ip", "-n", host, "addr", "add", a, "dev", "eth0", "nodad"]);
        }
        run(&["ip", "-n", &router, "link", "set", rif, "up"]);
        run(&["ip", "-n", host, "link", "set", "eth0", "up"]);
        let gw4 = raddrs[0].split('/').next().unwrap();
        let gw6 = raddrs[1].split('/').next().unwrap();
        run(&["ip", "-n", host, "route", "add", "default", "via", gw4]);
        run(&[
            "ip", "-n", host, "-6", "route", "add", "default", "via", gw6,
        ]);
    }
    // The ISP's own mail server, always reachable on 25.
    run(&[
        "ip",
        "-n",
        &internet,
        "addr",
        "add",
        "203.0.113.25/24",
        "dev",
        "eth0",
        "nodad",
    ]);
    run(&[
        "ip",
        "-n",
        &internet,
        "addr",
        "add",
        "2001:db8:ffff::25/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    run(&[
        "ip",
        "netns",
        "exec",
        &router,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
    ]);
    for port in ["25", "587"] {
        lab.spawn(
            &internet,
            &[
                "socat",
                &format!("TCP4-LISTEN:{port},fork,reuseaddr"),
                "OPEN:/dev/null",
            ],
        );
        lab.spawn(
            &internet,
            &[
                "socat",
                &format!("TCP6-LISTEN:{port},fork,reuseaddr,ipv6only=1"),
                "OPEN:/dev/null",
            ],
        );
    }
    let mx4: IpAddr = "203.0.113.2".parse().unwrap();
    let mx6: IpAddr = "2001:db8:ffff::2".parse().unwrap();
    let isp4: IpAddr = "203.0.113.25".parse().unwrap();
    let isp6: IpAddr = "2001:db8:ffff::25".parse().unwrap();
    let all = [mx4, mx6];
    // Before any table: everything is reachable (and the listeners are up).
    for a in all {
        wait_for(&dynamic, a, 25, Reach::Open, Duration::from_secs(5));
        wait_for(&fixed, a, 587, Reach::Open, Duration::from_secs(5));
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("x.db").display()))
        .await
        .unwrap();
    add(&store, "dyn1", Plan::Dynamic, &[]).await;
    lease(&store, "dyn1", "100.64.0.2").await;
    lease(&store, "dyn1", "2001:db8:8000::/56").await;
    add(
        &store,
        "stat1",
        Plan::Static,
        &["198.51.100.2", "2001:db8:5000::/64"],
    )
    .await;
    let config = Arc::new(test_config("portcullis_test"));
    let tasks =
        nftables::start_with_runner(config.clone(), store.clone(), NftRunner::in_netns(&router))
            .await
            .unwrap();
    assert_eq!(tasks.len(), 1);

    let step = Duration::from_secs(3);
    // Blocked dynamic subscriber: 25 reset, 587 open, the ISP's server open; static open.
    for a in all {
        assert_eq!(
            connect(&dynamic, a, 25),
            Reach::Refused,
            "dynamic -> {a}:25"
        );
        assert_eq!(connect(&dynamic, a, 587), Reach::Open, "dynamic -> {a}:587");
        assert_eq!(connect(&fixed, a, 25), Reach::Open, "static -> {a}:25");
    }
    for a in [isp4, isp6] {
        assert_eq!(
            connect(&dynamic, a, 25),
            Reach::Open,
            "dynamic -> ISP server {a}:25"
        );
    }

    // Opt-out approved: port 25 opens, over both families.
    opt_out(&store, "dyn1").await;
    for a in all {
        let took = wait_for(&dynamic, a, 25, Reach::Open, step);
        eprintln!("opt-out enforced for {a} after {took:?}");
    }

    // Someone flushes the allowed set: the reconcile probe notices and reloads.
    run(&[
        "ip",
        "netns",
        "exec",
        &router,
        "nft",
        "flush",
        "set",
        "inet",
        "portcullis_test",
        "allowed4_32",
    ]);
    assert_eq!(
        connect(&dynamic, mx4, 25),
        Reach::Refused,
        "the flush took effect"
    );
    wait_for(&dynamic, mx4, 25, Reach::Open, Duration::from_secs(5));

    // Operator block: closed again (reinstated).
    store
        .transition("dyn1", Port25Action::Block, &operator(), "spam")
        .await
        .unwrap();
    for a in all {
        let took = wait_for(&dynamic, a, 25, Reach::Refused, step);
        eprintln!("block enforced for {a} after {took:?}");
        assert_eq!(connect(&dynamic, a, 587), Reach::Open);
    }

    // The static subscriber is open until reinstated, then blocked, then open again.
    store
        .transition("stat1", Port25Action::Block, &operator(), "spam")
        .await
        .unwrap();
    for a in all {
        wait_for(&fixed, a, 25, Reach::Refused, step);
        assert_eq!(connect(&fixed, a, 587), Reach::Open);
    }
    // Someone deletes the table: reconcile puts it back, statics still blocked.
    run(&[
        "ip",
        "netns",
        "exec",
        &router,
        "nft",
        "delete",
        "table",
        "inet",
        "portcullis_test",
    ]);
    assert_eq!(
        connect(&dynamic, mx4, 25),
        Reach::Open,
        "without the table nothing is enforced"
    );
    wait_for(&dynamic, mx4, 25, Reach::Refused, Duration::from_secs(5));
    wait_for(&fixed, mx6, 25, Reach::Refused, Duration::from_secs(5));
    store
        .transition("stat1", Port25Action::Unblock, &operator(), "cleaned")
        .await
        .unwrap();
    for a in all {
        wait_for(&fixed, a, 25, Reach::Open, step);
    }

    // A new session of an opted-out subscriber is allowed as soon as it opens.
    store
        .transition("dyn1", Port25Action::Unblock, &operator(), "cleaned")
        .await
        .unwrap();
    wait_for(&dynamic, mx4, 25, Reach::Open, step);
    run(&[
        "ip",
        "-n",
        &dynamic,
        "addr",
        "add",
        "100.64.0.3/24",
        "dev",
        "eth0",
    ]);
    let from_new = |port| {
        let out = Command::new("ip")
            .args(["netns", "exec", &dynamic, "socat", "-u", "OPEN:/dev/null"])
            .arg(format!(
                "TCP4:{mx4}:{port},bind=100.64.0.3,connect-timeout=1"
            ))
            .output()
            .unwrap();
        out.status.success()
    };
    assert!(!from_new(25), "an address without a lease is blocked");
    lease(&store, "dyn1", "100.64.0.3").await;
    let started = Instant::now();
    while !from_new(25) {
        assert!(
            started.elapsed() < step,
            "new lease not allowed after {step:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The counters saw it all.
    let counters = run(&[
        "ip",
        "netns",
        "exec",
        &router,
        "nft",
        "list",
        "counters",
        "table",
        "inet",
        "portcullis_test",
    ]);
    assert!(counters.contains("counter blocked_dynamic"), "{counters}");
    for t in tasks {
        t.abort();
    }
}

/// A batch that nft refuses (here: deleting an element someone already removed by
/// hand) is answered with a full atomic reload, never a missing table.
#[tokio::test]
async fn failed_batch_falls_back_to_a_full_reload() {
    if !lab_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("x.db").display()))
        .await
        .unwrap();
    add(&store, "dyn1", Plan::Dynamic, &[]).await;
    lease(&store, "dyn1", "100.64.0.2").await;
    add(&store, "dyn2", Plan::Dynamic, &[]).await;
    lease(&store, "dyn2", "100.64.0.3").await;
    opt_out(&store, "dyn1").await;
    opt_out(&store, "dyn2").await;

    let mut lab = Lab::new();
    let ns = lab.netns("f");
    let nft = NftRunner::in_netns(&ns);
    let config = Arc::new(test_config("portcullis"));
    let mut enforcer = nftables::Enforcer::new(config, store.clone(), nft.clone());
    enforcer.full_load().await.unwrap();
    let first = enforcer.generation();
    assert!(
        !enforcer.reconcile().await.unwrap(),
        "a fresh table is intact"
    );
    let present = |addr: &str| {
        let nft = nft.clone();
        let probe = format!("get element inet portcullis allowed4_32 {{ {addr} }}\n");
        async move { nft.load(&probe).await.is_ok() }
    };
    assert!(present("100.64.0.2").await && present("100.64.0.3").await);

    run(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "nft",
        "delete",
        "element",
        "inet",
        "portcullis",
        "allowed4_32",
        "{ 100.64.0.2 }",
    ]);
    let cursor = store.last_event_id().await.unwrap();
    store
        .transition("dyn1", Port25Action::Block, &operator(), "spam")
        .await
        .unwrap();
    let events = store.events_after(cursor, 100).await.unwrap();
    enforcer.apply(&events).await.unwrap();
    assert_ne!(
        enforcer.generation(),
        first,
        "the refused batch caused a reload"
    );
    assert!(!present("100.64.0.2").await && present("100.64.0.3").await);

    // Drift that leaves the marker in place is found by the element probe.
    run(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "nft",
        "flush",
        "set",
        "inet",
        "portcullis",
        "allowed4_32",
    ]);
    assert!(
        enforcer.reconcile().await.unwrap(),
        "a flushed set is noticed"
    );
    assert!(present("100.64.0.3").await);

    // Without nft at all, a load fails and says so.
    let broken = NftRunner::new(vec!["/nonexistent/nft".into()]);
    let mut e = nftables::Enforcer::new(Arc::new(test_config("portcullis")), store, broken);
    let err = e.full_load().await.unwrap_err().to_string();
    assert!(err.contains("cannot run"), "{err}");
}

/// Asks `server` for `name` (type `qtype`); returns the response code and the answer.
fn dns_query(server: std::net::SocketAddr, name: &str, qtype: u16) -> Option<(u8, Vec<u8>)> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    sock.send_to(&q, server).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    (n >= 12 && buf[..2] == [0x12, 0x34]).then(|| (buf[3] & 0x0f, buf[..n].to_vec()))
}

/// The exported policy block list is a zone rbldnsd serves: a dynamic address is
/// listed with the reason, a static one is not.
#[test]
fn pbl_is_served_by_rbldnsd() {
    if !have("rbldnsd") {
        eprintln!("skipped: needs rbldnsd");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pbl.zone");
    std::fs::write(&file, nftables::render_pbl(&test_config("portcullis"))).unwrap();
    // rbldnsd drops root and must still read the zone.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut lab = Lab::new();
    let child = Command::new("rbldnsd")
        .args(["-n", "-b", &format!("127.0.0.1/{port}")])
        .arg(format!("pbl.example:ip4set:{}", file.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("start rbldnsd");
    lab.children.push(child);
    let started = Instant::now();
    let (rcode, answer) = loop {
        if let Some(r) = dns_query(server, "5.0.64.100.pbl.example", 1) {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "rbldnsd did not answer"
        );
    };
    assert_eq!(rcode, 0, "100.64.0.5 is listed");
    assert!(
        answer.ends_with(&[127, 0, 0, 10]),
        "A 127.0.0.10: {answer:?}"
    );
    let (_, txt) = dns_query(server, "5.0.64.100.pbl.example", 16).expect("TXT answer");
    let reason = b"Dynamic address; send via the ISP's submission server";
    assert!(
        txt.windows(reason.len()).any(|w| w == reason),
        "TXT reason: {txt:?}"
    );
    let (rcode, _) = dns_query(server, "7.100.51.198.pbl.example", 1).expect("answer");
    assert_eq!(rcode, 3, "a static address is not listed (NXDOMAIN)");
}
