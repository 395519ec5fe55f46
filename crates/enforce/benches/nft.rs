//! nftables enforcement benchmark (DESIGN.md targets: 1,000,000 subscribers rendered
//! and loaded in under 5 s; a state change enforced within 1 s, p99).
//!
//! ```text
//! cargo bench -p enforce --bench nft                        # 100000 and 1000000
//! cargo bench -p enforce --bench nft -- 100000 --transitions 200
//! cargo bench -p enforce --bench nft -- --quick             # 100000, one run
//! cargo bench -p enforce --bench nft -- --transports        # also compare update transports
//! ```
//!
//! Needs root, `ip` and `nft`; everything happens in a network namespace it creates
//! and removes. For each size it fills a store through the store's import API (every
//! subscriber dynamic with one IPv4 lease), on SQLite and, when reachable, on the test
//! PostgreSQL; then for 100 % and 5 % opted-out (set with one SQL statement; 100 % is
//! the worst case, a million-element set) it times `Enforcer::full_load` — store read,
//! render, `nft -f` — onto a router without the table and over an equal table. On the
//! largest size it measures state change → set updated through the live sync loop.
//! Figures are medians of `PORTCULLIS_BENCH_REPEATS` runs (default 3); with
//! `PORTCULLIS_BENCH_REPORT_DIR` set the section goes to `05-enforcement.md` there.

#[path = "../../../bench/report.rs"]
mod report;

#[path = "../../portcullis/src/allocator.rs"]
mod allocator;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enforce::nftables::{self, sync::LoadTimes, NftRunner};
use policy::{Actor, IpNet, LeaseSource, Plan, Port25Action};
use store::{NewLease, NewSubscriber, Store};

const TABLE: &str = "portcullis";
const LOAD_TARGET: Duration = Duration::from_secs(5);
const CHANGE_TARGET: Duration = Duration::from_secs(1);

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// CPU time of this process (all threads) and of its waited-for children (nft), from
/// /proc/self/stat: the machine is shared, so wall time alone says little.
fn cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').map(|f| f.parse().unwrap_or(0)).collect())
        .unwrap_or_default();
    // utime, stime, cutime, cstime are fields 14-17 (11-14 after the command name).
    let tick = |i: usize| Duration::from_millis(fields.get(i).copied().unwrap_or(0) * 10);
    (tick(11) + tick(12), tick(13) + tick(14))
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

/// Where a benchmark store lives, and how to set port-25 states in bulk there.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "SQLite",
            Backend::Postgres { .. } => "PostgreSQL",
        }
    }

    fn url(&self) -> String {
        match self {
            Backend::Sqlite(dir) => format!("sqlite://{}", dir.path().join("bench.db").display()),
            Backend::Postgres { url, .. } => url.clone(),
        }
    }

    /// Subscriber `i` opted-out when `i % 100 < percent`, blocked otherwise. A bulk
    /// shortcut for the benchmark only: a million transitions would measure the audit
    /// log, not enforcement.
    async fn set_opted_out(&self, percent: usize) {
        let sql = "UPDATE subscribers SET port25 = CASE WHEN CAST(substr(login, 4) AS INTEGER) % 100 < {p} THEN 'opted-out' ELSE 'blocked' END";
        let sql = sql.replace("{p}", &percent.to_string());
        match self {
            Backend::Sqlite(dir) => {
                let db = rusqlite::Connection::open(dir.path().join("bench.db")).expect("sqlite");
                db.execute(&sql, []).expect("set states");
            }
            Backend::Postgres { url, schema } => {
                let client = pg(url).await;
                client
                    .batch_execute(&format!(
                        "SET search_path TO {schema}; {sql}; ANALYZE subscribers; ANALYZE leases"
                    ))
                    .await
                    .expect("set states");
            }
        }
    }

    async fn drop_schema(&self) {
        if let Backend::Postgres { schema, .. } = self {
            let client = pg(store::testing::TEST_POSTGRES).await;
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await;
        }
    }
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let url = url.replace("options=-csearch_path%3D", "options=-csearch_path=");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("postgres");
    tokio::spawn(conn);
    client
}

/// A PostgreSQL schema for the benchmark, or None when the test server is not there.
async fn postgres_backend() -> Option<Backend> {
    let url = store::testing::fresh_postgres_schema("nftbench")
        .await
        .ok()?;
    let schema = url.rsplit("%3D").next()?.to_string();
    Some(Backend::Postgres { url, schema })
}

/// A store with `n` dynamic subscribers, one open IPv4 lease each.
async fn fill_store(backend: &Backend, n: usize) -> Store {
    let store = Store::open(&backend.url()).await.expect("open store");
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
    println!(
        "  {}: {n} subscribers and leases imported in {}",
        backend.name(),
        ms(started.elapsed())
    );
    store
}

/// Medians of `repeats` full loads, onto no table and over an equal table.
struct LoadRow {
    backend: &'static str,
    n: usize,
    percent: usize,
    /// Median phases of the fresh loads, and the median of their totals.
    fresh: LoadTimes,
    total: Duration,
    reload: Duration,
    /// CPU of portcullis and of nft during a fresh load.
    cpu: (Duration, Duration),
    /// The store query alone (rows read in place, no state built): wall and CPU.
    rows_alone: (Duration, Duration),
    loadavg: String,
}

struct Measured {
    fresh: LoadTimes,
    total: Duration,
    reload: Duration,
    cpu: (Duration, Duration),
    rows_alone: (Duration, Duration),
}

async fn measure_loads(
    enforcer: &mut nftables::Enforcer,
    store: &Store,
    runner: &NftRunner,
    repeats: usize,
) -> Measured {
    let (started, before) = (Instant::now(), cpu());
    let rows = store.opted_out_open_leases().await.expect("query");
    let rows_alone = (started.elapsed(), cpu().0.saturating_sub(before.0));
    println!(
        "    store rows alone: {} rows in {} (CPU {})",
        rows.len(),
        ms(rows_alone.0),
        ms(rows_alone.1)
    );
    drop(rows);
    let mut fresh = Vec::new();
    let mut reload = Vec::new();
    let (mut own, mut nft) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let _ = runner.run(&["delete", "table", "inet", TABLE], None).await;
        let before = cpu();
        enforcer.full_load().await.expect("load");
        let after = cpu();
        own.push(after.0.saturating_sub(before.0));
        nft.push(after.1.saturating_sub(before.1));
        fresh.push(enforcer.last_load());
        enforcer.full_load().await.expect("reload");
        reload.push(enforcer.last_load().total());
    }
    let pick = |f: fn(&LoadTimes) -> Duration| median(fresh.iter().map(f).collect());
    let times = LoadTimes {
        read: pick(|t| t.read),
        render: pick(|t| t.render),
        nft: pick(|t| t.nft),
        elements: fresh[0].elements,
        bytes: fresh[0].bytes,
    };
    let mut totals: Vec<Duration> = fresh.iter().map(LoadTimes::total).collect();
    totals.sort();
    let cpu = (median(own), median(nft));
    println!(
        "    total {} (runs {}), read {}, render {}, nft {}; CPU portcullis {}, nft {}; over an equal table {} (load average {})",
        ms(totals[totals.len() / 2]),
        totals.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "),
        ms(times.read),
        ms(times.render),
        ms(times.nft),
        ms(cpu.0),
        ms(cpu.1),
        ms(median(reload.clone())),
        report::loadavg()
    );
    Measured {
        fresh: times,
        total: totals[totals.len() / 2],
        reload: median(reload),
        cpu,
        rows_alone,
    }
}

/// Update transports on the loaded table: `k` elements added then deleted.
async fn compare_transports(runner: &NftRunner) {
    async fn time_nft(runner: &NftRunner, text: &str, rounds: u32) -> Duration {
        let started = Instant::now();
        for _ in 0..rounds {
            runner.load(text).await.expect("nft load");
        }
        started.elapsed() / rounds
    }
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

/// State change → element added or deleted, `transitions` Block/Unblock pairs: from
/// the transition's commit to nft having committed the batch, reported by the live
/// sync loop itself. (`nft monitor` and `get element` both read the whole
/// million-element set first, for seconds.) Returns the sorted samples.
async fn measure_latency(
    enforcer: nftables::Enforcer,
    config: &config::Config,
    store: &Store,
    n: usize,
    transitions: usize,
    seed: u64,
) -> Vec<Duration> {
    let mut enforcer = enforcer;
    let cursor = store.last_event_id().await.expect("cursor");
    let mut applied = enforcer.observe();
    let every = config.enforce.reconcile_interval.get();
    let task = tokio::spawn(nftables::sync::run(enforcer, store.follow(cursor), every));
    let op = Actor::Operator("bench".into());
    let mut samples = Vec::with_capacity(transitions * 2);
    let mut seed = seed;
    for _ in 0..transitions {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Every subscriber is opted-out in this run.
        let i = (seed % n as u64) as usize;
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
    samples
}

struct Settings {
    sizes: Vec<usize>,
    transitions: usize,
    repeats: usize,
    quick: bool,
    transports: bool,
    postgres: bool,
}

fn settings() -> Settings {
    let quick = report::quick();
    let mut s = Settings {
        sizes: Vec::new(),
        transitions: if quick { 20 } else { 50 },
        repeats: report::repeats(),
        quick,
        transports: false,
        postgres: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--transitions" => {
                s.transitions = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(s.transitions)
            }
            "--transports" => s.transports = true,
            "--no-postgres" => s.postgres = false,
            other => {
                if let Ok(n) = other.parse::<usize>() {
                    s.sizes.push(n);
                }
            }
        }
    }
    if s.sizes.is_empty() {
        s.sizes = if quick {
            vec![100_000]
        } else {
            vec![100_000, 1_000_000]
        };
    }
    s
}

fn markdown(
    s: &Settings,
    loads: &[LoadRow],
    latency: Option<(usize, Vec<Vec<Duration>>)>,
) -> String {
    use std::fmt::Write;
    let mut out = String::from("## Enforcement: nftables load and state changes\n\n");
    let _ = writeln!(
        out,
        "Load average when the section was written: {} (two cores, shared).\n",
        report::loadavg()
    );
    let _ = writeln!(
        out,
        "Command: `cargo bench -p enforce --bench nft{}` (root; a network namespace of its own; medians of {} run{}).\n",
        if s.quick { " -- --quick" } else { "" },
        s.repeats,
        if s.repeats == 1 { "" } else { "s" }
    );
    out.push_str(
        "Full load = `Enforcer::full_load` as at start: store read (subscribers in state \
         `opted-out` joined to their open leases), render, `nft -f` of the whole table in \
         one transaction, onto a router without the table. Every subscriber has one IPv4 \
         lease; target: 1,000,000 subscribers in under 5 s.\n\n",
    );
    out.push_str("| store | subscribers | opted-out | set elements | store read (rows alone, CPU) | render | `nft -j -f` | full load | CPU portcullis + nft | over an equal table | full load / target | load average |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in loads {
        let _ = writeln!(
            out,
            "| {} | {} | {} % | {} | {} ({}, {}) | {} | {} | **{}** | {} + {} | {} | {:.2} | {} |",
            r.backend,
            r.n,
            r.percent,
            r.fresh.elements,
            ms(r.fresh.read),
            ms(r.rows_alone.0),
            ms(r.rows_alone.1),
            ms(r.fresh.render),
            ms(r.fresh.nft),
            ms(r.total),
            ms(r.cpu.0),
            ms(r.cpu.1),
            ms(r.reload),
            r.total.as_secs_f64() / LOAD_TARGET.as_secs_f64(),
            r.loadavg
        );
    }
    if let Some((n, runs)) = latency {
        let p = |q: f64| median(runs.iter().map(|r| percentile(r, q)).collect());
        let all: Vec<Duration> = {
            let mut v: Vec<Duration> = runs.iter().flatten().copied().collect();
            v.sort();
            v
        };
        let _ = writeln!(
            out,
            "\nState change → set updated, at {n} subscribers all opted-out (a {n}-element set), \
             SQLite: `store.transition` (Block, then Unblock, at random intervals) until the live \
             sync loop reports nft's commit of the element delete/add. {} changes per run; \
             medians over runs. Target: 1 s at p99.\n",
            runs.first().map_or(0, Vec::len)
        );
        out.push_str(
            "| p50 | p90 | p99 | max (all runs) | p99 / target |\n|---:|---:|---:|---:|---:|\n",
        );
        let _ = writeln!(
            out,
            "| {} | {} | **{}** | {} | {:.2} |",
            ms(p(0.5)),
            ms(p(0.9)),
            ms(p(0.99)),
            ms(all[all.len() - 1]),
            p(0.99).as_secs_f64() / CHANGE_TARGET.as_secs_f64()
        );
    }
    out.push_str(
        "\nWhat limits it: the machine is shared (see the load average), so wall times \
         here are inflated and the CPU columns say more. At a million elements `nft` needs \
         about 3-3.5 CPU seconds for the JSON form (the text form costs about a third \
         more): user-space evaluation plus the kernel inserting each element in one \
         netlink transaction. nft 1.0.6 reads all of its input before parsing, so that \
         time cannot overlap the store read; the read (one covering-index probe per \
         subscriber) and building the per-login state run on two threads meanwhile, and \
         the rest is rendering. A state change waits for the event log poll (200 ms), \
         the subscriber's read-back and one `nft -f` of a few elements (nft start about \
         10 ms).\n",
    );
    out
}

fn main() {
    allocator::set_up();
    let s = settings();
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
    let md = rt.block_on(async {
        let config = Arc::new(config());
        let largest = s.sizes.iter().copied().max().unwrap_or(0);
        let mut loads = Vec::new();
        let mut latency = None;
        for &n in &s.sizes {
            let mut backends = vec![Backend::Sqlite(tempfile::tempdir().expect("tempdir"))];
            if s.postgres {
                match postgres_backend().await {
                    Some(b) => backends.push(b),
                    None => println!("  PostgreSQL not reachable: SQLite only"),
                }
            }
            for backend in &backends {
                println!("{n} dynamic subscribers with one IPv4 lease each, {}:", backend.name());
                let store = fill_store(backend, n).await;
                for percent in [100, 5] {
                    backend.set_opted_out(percent).await;
                    println!("  {percent} % opted-out:");
                    let mut enforcer =
                        nftables::Enforcer::new(config.clone(), store.clone(), runner.clone());
                    let m = measure_loads(&mut enforcer, &store, &runner, s.repeats).await;
                    loads.push(LoadRow {
                        backend: backend.name(),
                        n,
                        percent,
                        fresh: m.fresh,
                        total: m.total,
                        reload: m.reload,
                        cpu: m.cpu,
                        rows_alone: m.rows_alone,
                        loadavg: report::loadavg(),
                    });
                }
                if n == largest && matches!(backend, Backend::Sqlite(_)) {
                    backend.set_opted_out(100).await;
                    let mut runs = Vec::new();
                    for run in 0..s.repeats {
                        let mut enforcer =
                            nftables::Enforcer::new(config.clone(), store.clone(), runner.clone());
                        enforcer.full_load().await.expect("load");
                        if run == 0 {
                            // Reconcile with nothing drifted: the marker, and probes of the small sets.
                            let started = Instant::now();
                            let reloaded = enforcer.reconcile().await.expect("reconcile");
                            println!("  reconcile without drift: {} (reloaded: {reloaded})", ms(started.elapsed()));
                            if s.transports {
                                compare_transports(&runner).await;
                            }
                        }
                        let samples = measure_latency(enforcer, &config, &store, n, s.transitions, 0x2545_f491_4f6c_dd1d + run as u64).await;
                        println!(
                            "  state change -> set updated ({} changes): p50 {}, p90 {}, p99 {}, max {}",
                            samples.len(),
                            ms(percentile(&samples, 0.5)),
                            ms(percentile(&samples, 0.9)),
                            ms(percentile(&samples, 0.99)),
                            ms(percentile(&samples, 1.0))
                        );
                        runs.push(samples);
                    }
                    latency = Some((n, runs));
                }
                drop(store);
                backend.drop_schema().await;
            }
        }
        markdown(&s, &loads, latency)
    });
    report::write_section("05-enforcement.md", &md);
}
