//! nftables enforcement benchmark (DESIGN.md targets: 1,000,000 subscribers rendered
//! and loaded in under 5 s; a state change enforced within 1 s, p99).
//!
//! ```text
//! cargo bench -p enforce --bench nft                      # 100000 and 1000000
//! cargo bench -p enforce --bench nft -- 100000 --transitions 200
//! cargo bench -p enforce --bench nft -- 1000000 --opted-out 5   # a realistic mix
//! ```
//!
//! Needs root, `ip` and `nft`; everything happens in a network namespace it creates
//! and removes. For each size it fills a temporary SQLite store through the store's
//! import API (every subscriber dynamic with one IPv4 lease, then `--opted-out` percent
//! of them, default all, set to `opted-out` with one SQL statement — all is the worst
//! case: a million-element set), and times the store query, rendering, and `nft -f`
//! of the whole table. On the largest size it then compares ways of sending an
//! update (`nft -f` text, `nft -j` JSON, and the fixed cost of starting `nft`, which
//! is all a netlink library could save), times a reconcile, and measures state change
//! → set updated through the live sync loop.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enforce::nftables::{self, NftRunner};
use policy::{Actor, IpNet, LeaseSource, Plan, Port25Action};
use store::{NewLease, NewSubscriber, Store};

const TABLE: &str = "portcullis";

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn lease_addr(i: usize) -> IpNet {
    // 100.64.0.0/10 holds 4M addresses: subscriber i gets 100.64.0.0 + i + 1.
    let a = u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0)) + i as u32 + 1;
    IpNet::host(std::net::IpAddr::V4(a.into()))
}

fn config() -> config::Config {
    let mut c = config::Config::default();
    c.enforce.nftables = true;
    c.enforce.table = TABLE.into();
    c.network.dynamic_pools = vec![
        "100.64.0.0/10".parse().expect("pool"),
        "2001:db8:8000::/33".parse().expect("pool"),
    ];
    c
}

/// A store with `n` dynamic subscribers, one open IPv4 lease each; subscriber `i` is
/// opted-out when `i % 100 < percent`.
async fn fill_store(path: &std::path::Path, n: usize, percent: usize) -> Store {
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.expect("open store");
    let actor = Actor::Operator("bench".into());
    let started = Instant::now();
    let subs: Vec<NewSubscriber> = (0..n)
        .map(|i| NewSubscriber {
            login: format!("sub{i:07}"),
            display_name: None,
            email: None,
            plan: Plan::Dynamic,
            static_ips: vec![],
            password_hash: None,
        })
        .collect();
    store
        .import_subscribers(&subs, &actor)
        .await
        .map_err(|(_, e)| e)
        .expect("import subscribers");
    let t_subs = started.elapsed();
    let started = Instant::now();
    let leases: Vec<NewLease> = (0..n)
        .map(|i| NewLease {
            login: format!("sub{i:07}"),
            net: lease_addr(i),
            start: policy::Timestamp(0),
            end: None,
            source: LeaseSource::Import,
            session_id: None,
            nas: None,
        })
        .collect();
    store
        .import_leases(&leases, &actor)
        .await
        .expect("import leases");
    let t_leases = started.elapsed();
    let started = Instant::now();
    // Bulk shortcut for the benchmark only: a million transitions would measure the
    // audit log, not enforcement.
    let db = rusqlite::Connection::open(path).expect("open sqlite");
    db.execute(
        "UPDATE subscribers SET port25 = 'opted-out' WHERE CAST(substr(login, 4) AS INTEGER) % 100 < ?1",
        [percent as i64],
    )
    .expect("set states");
    println!(
        "  store: import_subscribers {}, import_leases {}, set opted-out {}",
        ms(t_subs),
        ms(t_leases),
        ms(started.elapsed())
    );
    store
}

async fn time_nft(runner: &NftRunner, text: &str, rounds: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..rounds {
        runner.load(text).await.expect("nft load");
    }
    started.elapsed() / rounds
}

/// Update transports on the loaded table: `k` elements added then deleted.
async fn compare_transports(runner: &NftRunner) {
    println!("  update transports (add + delete of k elements into the loaded set, mean of 10):");
    let baseline = time_nft(runner, "\n", 10).await;
    println!(
        "    nft -f with empty input (process start + netlink setup): {}",
        ms(baseline)
    );
    for k in [1usize, 100, 1000] {
        // Addresses outside the loaded range, in the same pool.
        let addrs: Vec<String> = (0..k)
            .map(|i| lease_addr(3_000_000 + i).to_string())
            .collect();
        let list = addrs.join(", ");
        let add = format!("add element inet {TABLE} allowed4_32 {{ {list} }}\n");
        let del = format!("delete element inet {TABLE} allowed4_32 {{ {list} }}\n");
        let started = Instant::now();
        for _ in 0..10 {
            runner.load(&add).await.expect("add");
            runner.load(&del).await.expect("delete");
        }
        let text = started.elapsed() / 20;
        let elems = serde_json::json!(addrs);
        let jadd = serde_json::json!({"nftables": [{"add": {"element": {"family": "inet", "table": TABLE, "name": "allowed4_32", "elem": elems}}}]}).to_string();
        let jdel = serde_json::json!({"nftables": [{"delete": {"element": {"family": "inet", "table": TABLE, "name": "allowed4_32", "elem": elems}}}]}).to_string();
        let started = Instant::now();
        for _ in 0..10 {
            runner
                .run(&["-j", "-f", "-"], Some(&jadd))
                .await
                .expect("json add");
            runner
                .run(&["-j", "-f", "-"], Some(&jdel))
                .await
                .expect("json delete");
        }
        let json = started.elapsed() / 20;
        println!(
            "    k = {k:>4}: nft text {:>9}   nft -j {:>9}   per call",
            ms(text),
            ms(json)
        );
    }
}

/// State change → element added or deleted: from the transition's commit to nft
/// having committed the batch, reported by the live sync loop itself. (`nft monitor`
/// and `get element` both read the whole million-element set first, for seconds.)
async fn measure_latency(
    config: Arc<config::Config>,
    store: &Store,
    ns: &str,
    n: usize,
    percent: usize,
    transitions: usize,
) {
    let runner = NftRunner::in_netns(ns);
    let cursor = store.last_event_id().await.expect("cursor");
    let mut enforcer = nftables::Enforcer::new(config.clone(), store.clone(), runner);
    enforcer.full_load().await.expect("load");
    // Reconcile with nothing drifted: the marker, and probes of the small sets.
    let started = Instant::now();
    let reloaded = enforcer.reconcile().await.expect("reconcile");
    println!(
        "  reconcile without drift: {} (reloaded: {reloaded})",
        ms(started.elapsed())
    );
    let mut applied = enforcer.observe();
    let every = config.enforce.reconcile_interval.get();
    let task = tokio::spawn(nftables::sync::run(enforcer, store.follow(cursor), every));
    let op = Actor::Operator("bench".into());
    let mut samples = Vec::with_capacity(transitions * 2);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..transitions {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = (seed % n as u64) as usize;
        // An opted-out subscriber (see `fill_store`).
        let i = (i - i % 100 + (i % 100) % percent.max(1)).min(n - 1);
        let login = format!("sub{i:07}");
        let addr = lease_addr(i);
        for (action, added) in [(Port25Action::Block, false), (Port25Action::Unblock, true)] {
            // Changes arrive at random times, not in step with the sync's polling.
            tokio::time::sleep(Duration::from_millis(seed % 250)).await;
            seed = seed.rotate_left(9);
            let started = Instant::now();
            store
                .transition(&login, action, &op, "bench")
                .await
                .expect("transition");
            loop {
                let changes = tokio::time::timeout(Duration::from_secs(10), applied.recv())
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| panic!("{login}: set not updated within 10 s"));
                let list = if added { &changes.add } else { &changes.delete };
                if list.iter().any(|e| e.net == addr) {
                    break;
                }
            }
            samples.push(started.elapsed());
        }
    }
    task.abort();
    samples.sort();
    let pct =
        |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "  state change -> set updated ({} changes): p50 {}, p90 {}, p99 {}, max {}",
        samples.len(),
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(pct(1.0))
    );
}

fn main() {
    let mut sizes = Vec::new();
    let mut transitions = 100usize;
    let mut percent = 100usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--transitions" => {
                transitions = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(transitions)
            }
            "--opted-out" => {
                percent = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(percent)
                    .clamp(1, 100)
            }
            "--bench" => {}
            other => {
                if let Ok(n) = other.parse::<usize>() {
                    sizes.push(n);
                }
            }
        }
    }
    if sizes.is_empty() {
        sizes = vec![100_000, 1_000_000];
    }
    if std::env::var_os("NFT_BENCH_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .init();
    }
    let ns = Netns(format!("pcbench{}", std::process::id()));
    let status = Command::new("ip").args(["netns", "add", &ns.0]).status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("nft bench needs root and iproute2 (ip netns add failed)");
        return;
    }
    let runner = NftRunner::in_netns(&ns.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = Arc::new(config());
        let largest = sizes.iter().copied().max().unwrap_or(0);
        for &n in &sizes {
            println!("{n} dynamic subscribers with one IPv4 lease each, {percent}% opted-out:");
            let dir = tempfile::tempdir().expect("tempdir");
            let store = fill_store(&dir.path().join("bench.db"), n, percent).await;

            let started = Instant::now();
            let rows = store.opted_out_open_leases().await.expect("query");
            println!("  store.opted_out_open_leases alone: {} ({} rows)", ms(started.elapsed()), rows.len());
            drop(rows);
            let started = Instant::now();
            let elements = nftables::sync::load_elements(&store, &config.network.dynamic_pools).await.expect("query");
            let t_query = started.elapsed();
            let started = Instant::now();
            let text = nftables::ruleset::render_table(&nftables::TableSpec::from_config(&config, 1), elements.elements());
            let t_render = started.elapsed();
            if let Some(path) = std::env::var_os("NFT_BENCH_DUMP") {
                std::fs::write(&path, &text).expect("dump ruleset");
            }
            let started = Instant::now();
            runner.load(&text).await.expect("load");
            let t_load = started.elapsed();
            let started = Instant::now();
            runner.load(&text).await.expect("reload");
            let t_reload = started.elapsed();
            println!(
                "  store query {}, render {} ({} elements, {:.1} MB), nft -f load {} (replacing an equal table: {})",
                ms(t_query),
                ms(t_render),
                elements.len(),
                text.len() as f64 / 1e6,
                ms(t_load),
                ms(t_reload)
            );
            println!("  => from the store: {}; from memory (render + load): {}", ms(t_query + t_render + t_load), ms(t_render + t_load));
            let started = Instant::now();
            let via_api = nftables::render(&config, &store).await.expect("render");
            println!("  nftables::render (the CLI's call): {} for {:.1} MB", ms(started.elapsed()), via_api.len() as f64 / 1e6);
            drop(elements);
            if n == largest {
                compare_transports(&runner).await;
                measure_latency(config.clone(), &store, &ns.0, n, percent, transitions).await;
            }
        }
    });
}
