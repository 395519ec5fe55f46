//! `cargo bench -p portcullis --bench compare [-- --quick]`: portcullis' submission
//! server against Postfix's on the same machine, with the same client, in one run.
//!
//! Both servers listen on loopback, require STARTTLS and AUTH PLAIN, and relay every
//! accepted message to Postfix's `smtp-sink`, whose running counter (`-c`) tells how
//! many arrived. The client is lettre (nobody here wrote it) over TCP with NODELAY,
//! each session doing STARTTLS and AUTH once. Three measurements, each cell the median
//! of `PORTCULLIS_BENCH_REPEATS` runs (default 3; 1 with `--quick` unless set), the
//! servers taking turns within a repeat:
//! 1. **Submission** (`01-submission.md`): for every message size and concurrency,
//!    accepted messages/s, p50/p99 latency of a whole MAIL..DATA transaction, the
//!    server's CPU seconds per 1,000 messages (its whole process tree, exited children
//!    included) and its peak resident memory during the cell; then fsyncs per message
//!    under `strace -c`. Each cell starts once the sink has every earlier message and
//!    Postfix is back at rest (reloaded, its idle processes gone), so no cell pays
//!    for another.
//! 2. **Sessions** (`02-sessions.md`): 10,000 sessions (1,000 with `--quick`) opened,
//!    through STARTTLS and AUTH, and held; each server's resident and proportional
//!    memory summed over its processes.
//! 3. **Relay** (`03-relay.md`): messages submitted and counted on arrival at the sink:
//!    end-to-end messages/s, submission and delivery together.
//!
//! The one-session cells also run against the floor (`floor_smtp.rs`), a server that
//! does only what every server here must (a durable accept, then relaying to the
//! sink), to show how far each server is from what this client, disk and machine allow;
//! and against the same floor keeping each message in portcullis' queue instead of a
//! file, to show what the queue costs and what portcullis' other work does.
//!
//! For profiling, `COMPARE_BENCH_SESSIONS=1,10` keeps some concurrencies,
//! `COMPARE_BENCH_SIZES=1024,102400` some message sizes, and
//! `COMPARE_BENCH_ONLY_SUBMISSION=1` stops after the submission section.
//!
//! With `PORTCULLIS_BENCH_REPORT_DIR` set, each section is written there as markdown;
//! otherwise printed. The plot of throughput against concurrency goes to
//! `bench/submission-throughput.svg`, unless a profiling filter narrowed the grid.
//!
//! Needs root (Postfix and smtp-sink drop privileges), Debian's postfix, sasl2-bin and
//! strace; `bench/run.sh` installs them.

#[path = "../../../bench/report.rs"]
mod report;

mod floor_smtp;

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
/// Clock ticks per second in /proc/PID/stat on Linux.
const USER_HZ: f64 = 100.0;
const USER: &str = "bench";
const PASSWORD: &str = "bench-password-1";
/// Sessions per client address: portcullis admits at most 100 from one IP, so many
/// sessions come from many loopback addresses (127.1.0.0/16), for both servers alike.
const SESSIONS_PER_ADDRESS: usize = 50;
/// Postfix's `default_process_limit` as `bench/postfix-submission.sh` sets it.
const POSTFIX_PROCESS_LIMIT: &str = "10100";

struct Server {
    name: &'static str,
    port: u16,
    login: String,
    /// The process whose tree is measured (portcullis, or Postfix's master).
    pid: u32,
}

#[derive(Clone, Debug, Default)]
struct Run {
    messages: usize,
    failed: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_per_1000: f64,
    peak_rss_mb: f64,
}

/// The sink's count of messages received, read from `smtp-sink -c`'s stdout.
struct Sink {
    port: u16,
    received: Arc<AtomicU64>,
    _child: KillOnDrop,
}

struct Settings {
    quick: bool,
    repeats: usize,
    command: String,
    /// The submission grid: message sizes and concurrencies.
    sizes: Vec<usize>,
    concurrency: Vec<usize>,
    /// A profiling filter left out part of the grid.
    narrowed: bool,
}

/// `all`, or those of it the comma-separated list in `var` names (for profiling), and
/// whether the list left any out.
fn keep(all: &[usize], var: &str) -> (Vec<usize>, bool) {
    let only = std::env::var(var).ok();
    let kept: Vec<usize> = all
        .iter()
        .copied()
        .filter(|v| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|k| k == v.to_string()))
        })
        .collect();
    let narrowed = kept.len() < all.len();
    (kept, narrowed)
}

fn main() {
    // The same binary, started again, is the floor server (see `floor_smtp`).
    if let Ok(args) = std::env::var(floor_smtp::ENV) {
        let mut args = args.split(' ');
        let mut next = || args.next().expect("port, directory, sink port and storage");
        let (port, dir, sink, storage) = (next(), next(), next(), next());
        floor_smtp::serve(
            port.parse().expect("port"),
            Path::new(dir),
            sink.parse().expect("sink port"),
            floor_smtp::Storage::parse(storage).expect("floor or floor+queue"),
        );
    }
    let (quick, repeats) = (report::quick(), report::repeats());
    // COMPARE_BENCH_SIZES=102400 and COMPARE_BENCH_SESSIONS=1,10 keep part of the grid.
    let (sizes, fewer_sizes) = keep(
        if quick {
            &[1024, 100 * 1024]
        } else {
            &[1024, 10 * 1024, 100 * 1024]
        },
        "COMPARE_BENCH_SIZES",
    );
    let (concurrency, fewer_sessions) = keep(
        if quick { &[1, 10] } else { &[1, 10, 100] },
        "COMPARE_BENCH_SESSIONS",
    );
    let settings = Settings {
        sizes,
        concurrency,
        narrowed: fewer_sizes || fewer_sessions,
        quick,
        repeats,
        command: format!(
            "PORTCULLIS_BENCH_REPEATS={repeats} cargo bench -p portcullis --bench compare{}",
            if quick { " -- --quick" } else { "" }
        ),
    };
    raise_fd_limit();
    let root = workspace_root();
    // Postfix refuses a queue under /tmp here (it is mounted with restrictions), so
    // /var/tmp; its daemons run as the postfix user and must reach the queue.
    let dir = tempfile::Builder::new()
        .prefix("portcullis-bench")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    let sink = start_sink();

    let postfix_dir = dir.path().join("postfix");
    let postfix_port = free_port();
    let ok = Command::new(root.join("bench/postfix-submission.sh"))
        .args([
            "start",
            path(&postfix_dir),
            &postfix_port.to_string(),
            &sink.port.to_string(),
            USER,
            PASSWORD,
        ])
        .env("POSTFIX_PROCESS_LIMIT", POSTFIX_PROCESS_LIMIT)
        .status()
        .is_ok_and(|s| s.success());
    // Stops Postfix however this run ends, panics included.
    let postfix = Postfix {
        script: root.join("bench/postfix-submission.sh"),
        dir: postfix_dir.clone(),
    };
    assert!(ok, "could not start the Postfix peer");
    let master_pid = postfix.master().expect("postfix master.pid");

    let (portcullis, portcullis_port) = start_portcullis(dir.path(), sink.port);
    let portcullis = KillOnDrop(portcullis);
    let servers = [
        Server {
            name: "portcullis",
            port: portcullis_port,
            login: USER.into(),
            pid: portcullis.0.id(),
        },
        Server {
            name: "postfix",
            port: postfix_port,
            login: format!("{USER}@bench.portcullis.test"),
            pid: master_pid,
        },
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Every message accepted so far; the sink must have them all before a cell starts,
    // so no cell pays for an earlier one's relaying.
    let mut accepted = 0u64;

    let (cells, fsyncs) = submission(
        &runtime,
        &servers,
        &postfix,
        dir.path(),
        &sink,
        &settings,
        &mut accepted,
    );
    // A narrowed grid (profiling) would replace the full plot with a part of it.
    if !settings.narrowed {
        std::fs::write(root.join("bench/submission-throughput.svg"), plot(&cells))
            .expect("write plot");
    }
    report::write_section(
        "01-submission.md",
        &submission_report(&cells, &fsyncs, &settings),
    );

    // COMPARE_BENCH_ONLY_SUBMISSION=1 stops after the first section (for profiling).
    if std::env::var_os("COMPARE_BENCH_ONLY_SUBMISSION").is_some() {
        return;
    }
    // The fsync counts' messages are relayed before Postfix is reloaded; the relay
    // section waits for every message it sent, so the sessions need no such wait.
    sink.wait_for(accepted, Duration::from_secs(120));
    postfix.settle();
    let relay = relay(&runtime, &servers, &sink, &settings, &mut accepted);
    report::write_section("03-relay.md", &relay_report(&relay, &settings));

    postfix.settle();
    let held = sessions(&runtime, &servers, &settings);
    report::write_section("02-sessions.md", &sessions_report(&held, &settings));
    drop(portcullis);
}

// ---------------------------------------------------------------- submission

struct Cell {
    server: &'static str,
    size: usize,
    sessions: usize,
    /// Medians over the repeats.
    median: Run,
    sent: usize,
    failed: usize,
}

/// Every size and concurrency for `servers`, and the floors (started in `dir`, when
/// a one-session cell runs) at one session.
fn submission(
    rt: &tokio::runtime::Runtime,
    servers: &[Server],
    postfix: &Postfix,
    dir: &Path,
    sink: &Sink,
    s: &Settings,
    accepted: &mut u64,
) -> (Vec<Cell>, Vec<(&'static str, f64)>) {
    let (sizes, concurrency) = (&s.sizes, &s.concurrency);
    let floors: Vec<(KillOnDrop, Server)> = if concurrency.contains(&1) {
        [floor_smtp::Storage::File, floor_smtp::Storage::Queue]
            .into_iter()
            .map(|storage| start_floor(dir, sink.port, storage))
            .collect()
    } else {
        Vec::new()
    };
    let mut cells = Vec::new();
    for &size in sizes {
        for &sessions in concurrency {
            let messages = (if s.quick { 200 } else { 2000 }).max(sessions * 10)
                / if size > 50_000 { 2 } else { 1 };
            // The floors bound one session only: they flush each message on their own.
            let turn: Vec<&Server> = servers
                .iter()
                .chain(floors.iter().map(|(_, f)| f).filter(|_| sessions == 1))
                .collect();
            let mut runs: Vec<Vec<Run>> = vec![Vec::new(); turn.len()];
            sink.wait_for(*accepted, Duration::from_secs(120));
            postfix.settle();
            for _ in 0..s.repeats {
                for (k, server) in turn.iter().enumerate() {
                    sink.wait_for(*accepted, Duration::from_secs(120));
                    let run = measured_load(rt, server, size, sessions, messages);
                    *accepted += run.messages as u64;
                    println!(
                        "{:>10} {:>6} B x{:>3}: {:>7.0} msg/s  p50 {:>6.2} ms  p99 {:>7.2} ms  cpu {:>5.2} s/1000  peak {:>6.1} MB  ({} sent, {} failed)",
                        server.name, size, sessions, run.per_sec, run.p50_ms, run.p99_ms, run.cpu_per_1000, run.peak_rss_mb, run.messages, run.failed
                    );
                    runs[k].push(run);
                }
            }
            for (k, server) in turn.iter().enumerate() {
                let r = &runs[k];
                cells.push(Cell {
                    server: server.name,
                    size,
                    sessions,
                    median: Run {
                        per_sec: report::median(r.iter().map(|x| x.per_sec).collect()),
                        p50_ms: report::median(r.iter().map(|x| x.p50_ms).collect()),
                        p99_ms: report::median(r.iter().map(|x| x.p99_ms).collect()),
                        cpu_per_1000: report::median(r.iter().map(|x| x.cpu_per_1000).collect()),
                        peak_rss_mb: report::median(r.iter().map(|x| x.peak_rss_mb).collect()),
                        ..Run::default()
                    },
                    sent: r.iter().map(|x| x.messages).sum(),
                    failed: r.iter().map(|x| x.failed).sum(),
                });
            }
        }
    }
    let mut fsyncs = Vec::new();
    for server in servers {
        sink.wait_for(*accepted, Duration::from_secs(120));
        let n = if s.quick { 100 } else { 300 };
        if let Some((per, sent)) = fsyncs_per_message(rt, server, n) {
            *accepted += sent as u64;
            println!("{:>10}: {per:.2} fsync+fdatasync per message", server.name);
            fsyncs.push((server.name, per));
        }
    }
    (cells, fsyncs)
}

/// One load with the server's CPU time and peak memory (sampled every 50 ms). The
/// CPU is counted over the clock's window, from the first message on: setting the
/// sessions up (TLS handshakes, and for portcullis an argon2id check per login) is
/// left out of both.
fn measured_load(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    size: usize,
    sessions: usize,
    messages: usize,
) -> Run {
    let conns = rt.block_on(set_up_sessions(server, sessions));
    let before = cpu_ticks(server.pid);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, pid) = (stop.clone(), server.pid);
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(memory_kb(pid).rss_kb);
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let r = rt.block_on(send_all(conns, size, messages));
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    let cpu = (cpu_ticks(server.pid) - before) as f64 / USER_HZ;
    Run {
        cpu_per_1000: cpu * 1000.0 / r.messages.max(1) as f64,
        peak_rss_mb: peak as f64 / 1024.0,
        ..r
    }
}

/// fsync and fdatasync calls per message over one session of `n` 1 KB messages, the
/// server's whole process tree traced (accepting and relaying both count).
fn fsyncs_per_message(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    n: usize,
) -> Option<(f64, usize)> {
    let out = tempfile::NamedTempFile::new().ok()?;
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(out.path());
    for pid in tree(server.pid) {
        cmd.arg("-p").arg(pid.to_string());
    }
    let mut strace = cmd.stderr(Stdio::null()).spawn().ok()?;
    std::thread::sleep(Duration::from_millis(500)); // attached
    let r = rt.block_on(load(server, 1024, 1, n));
    // Relaying is part of each server's work per message: let it finish.
    std::thread::sleep(Duration::from_secs(2));
    // SIGINT makes strace detach and write its summary.
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();
    let summary = std::fs::read_to_string(out.path()).ok()?;
    let calls: u64 = summary
        .lines()
        .filter(|l| l.ends_with(" fsync") || l.ends_with(" fdatasync"))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    Some((calls as f64 / r.messages.max(1) as f64, r.messages))
}

// ---------------------------------------------------------------- relay

struct Relay {
    server: &'static str,
    messages: usize,
    sessions: usize,
    /// Medians: end to end (first submission to last arrival at the sink), and the
    /// submission alone.
    end_to_end: f64,
    submitted: f64,
}

fn relay(
    rt: &tokio::runtime::Runtime,
    servers: &[Server],
    sink: &Sink,
    s: &Settings,
    accepted: &mut u64,
) -> Vec<Relay> {
    let (messages, sessions) = if s.quick { (500, 10) } else { (5000, 10) };
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); servers.len()];
    for _ in 0..s.repeats {
        for (k, server) in servers.iter().enumerate() {
            sink.wait_for(*accepted, Duration::from_secs(120));
            let base = sink.received.load(Ordering::SeqCst);
            let started = Instant::now();
            let r = rt.block_on(load(server, 1024, sessions, messages));
            let submitted = started.elapsed().as_secs_f64();
            *accepted += r.messages as u64;
            let arrived = sink.wait_for(base + r.messages as u64, Duration::from_secs(300));
            let secs = started.elapsed().as_secs_f64();
            let got = arrived.saturating_sub(base) as f64;
            let (e2e, sub) = (got / secs, r.messages as f64 / submitted);
            println!(
                "{:>10} relay 1 KB x{sessions}: {e2e:>7.0} msg/s at the sink ({got} of {} in {secs:.2} s; submission alone {sub:.0} msg/s)",
                server.name, r.messages
            );
            runs[k].push((e2e, sub));
        }
    }
    servers
        .iter()
        .zip(runs)
        .map(|(server, r)| Relay {
            server: server.name,
            messages,
            sessions,
            end_to_end: report::median(r.iter().map(|x| x.0).collect()),
            submitted: report::median(r.iter().map(|x| x.1).collect()),
        })
        .collect()
}

// ---------------------------------------------------------------- sessions

struct Held {
    server: &'static str,
    wanted: usize,
    /// ESTABLISHED connections to the server's port when memory was read.
    held: usize,
    setup_secs: f64,
    processes: usize,
    rss_mb: f64,
    pss_mb: f64,
    idle_rss_mb: f64,
    stopped: Option<String>,
}

/// Opens `wanted` authenticated sessions to each server in turn (200 setting up at a
/// time), holds them, reads the server's memory, closes them. Stops early, and says
/// so, when the machine runs short of memory.
fn sessions(rt: &tokio::runtime::Runtime, servers: &[Server], s: &Settings) -> Vec<Held> {
    let wanted = if s.quick { 1000 } else { 10_000 };
    let mut out = Vec::new();
    for server in servers {
        // At rest: the earlier cells' idle processes are gone (see `Postfix::settle`).
        let idle = memory_kb(server.pid);
        let started = Instant::now();
        let (conns, stopped) = rt.block_on(open_sessions(server, wanted));
        let setup_secs = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(1));
        let held = established(server.port);
        let mem = memory_kb(server.pid);
        let h = Held {
            server: server.name,
            wanted,
            held,
            setup_secs,
            processes: mem.processes,
            rss_mb: mem.rss_kb as f64 / 1024.0,
            pss_mb: mem.pss_kb as f64 / 1024.0,
            idle_rss_mb: idle.rss_kb as f64 / 1024.0,
            stopped,
        };
        println!(
            "{:>10}: {} of {wanted} sessions held ({} opened in {setup_secs:.0} s): RSS {:.0} MB, PSS {:.0} MB over {} processes{}",
            h.server,
            h.held,
            conns.len(),
            h.rss_mb,
            h.pss_mb,
            h.processes,
            h.stopped.as_deref().map(|s| format!(" (stopped: {s})")).unwrap_or_default()
        );
        rt.block_on(async move {
            // Dropping closes the sockets; no QUIT round trips for thousands of sessions.
            drop(conns);
        });
        out.push(h);
        // Let the server reap before the next one is measured.
        std::thread::sleep(Duration::from_secs(3));
    }
    out
}

async fn open_sessions(
    server: &Server,
    wanted: usize,
) -> (Vec<AsyncSmtpConnection>, Option<String>) {
    let tls = tls_parameters();
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let target = Arc::new((server.port, server.login.clone()));
    let mut conns: Vec<AsyncSmtpConnection> = Vec::with_capacity(wanted);
    let mut stopped = None;
    let batch = 500;
    let mut i = 0;
    let mut keepalive = Instant::now();
    while i < wanted {
        // Both servers drop a session idle for 300 s; opening 10,000 takes longer.
        if keepalive.elapsed() > Duration::from_secs(120) {
            for c in &mut conns {
                c.test_connected().await;
            }
            keepalive = Instant::now();
        }
        // Opening thousands of sessions costs the server memory: keep this machine
        // (shared with builds) from running out.
        let available = mem_available_mb();
        if available < 6 * 1024 {
            stopped = Some(format!(
                "{available} MB of memory left on the machine after {i} sessions"
            ));
            break;
        }
        let mut set = tokio::task::JoinSet::new();
        for j in i..(i + batch).min(wanted) {
            let (gate, target, tls) = (gate.clone(), target.clone(), tls.clone());
            set.spawn(async move {
                let _permit = gate.acquire().await;
                connect(target.0, &target.1, &tls, j).await
            });
        }
        let mut errors = 0;
        let mut last_error = String::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(c)) => conns.push(c),
                Ok(Err(e)) => {
                    errors += 1;
                    last_error = e;
                }
                Err(e) => {
                    errors += 1;
                    last_error = e.to_string();
                }
            }
        }
        if errors > 0 {
            stopped = Some(format!(
                "{errors} session set-ups failed after {i} sessions: {last_error}"
            ));
            break;
        }
        i += batch;
    }
    (conns, stopped)
}

/// ESTABLISHED TCP connections whose local port is `port` (the server's side).
fn established(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "01"
        })
        .count()
}

fn mem_available_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

// ---------------------------------------------------------------- load

fn tls_parameters() -> TlsParameters {
    TlsParameters::builder("bench.portcullis.test".into())
        .dangerous_accept_invalid_certs(true)
        .dangerous_accept_invalid_hostnames(true)
        .build_rustls()
        .expect("tls parameters")
}

/// One SMTP session from loopback address number `n / SESSIONS_PER_ADDRESS` in
/// 127.1.0.0/16: TCP with NODELAY (lettre's own transport leaves Nagle on, which holds
/// the final "." for the server's delayed ACK, ~40 ms, and would make any server look
/// the same), then STARTTLS and AUTH PLAIN through lettre.
async fn connect(
    port: u16,
    login: &str,
    tls: &TlsParameters,
    n: usize,
) -> Result<AsyncSmtpConnection, String> {
    let source =
        Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 1)) + (n / SESSIONS_PER_ADDRESS) as u32);
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind((IpAddr::V4(source), 0).into())
        .map_err(|e| format!("bind {source}: {e}"))?;
    let tcp = socket
        .connect((Ipv4Addr::LOCALHOST, port).into())
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let hello = ClientId::Domain("client.portcullis.test".into());
    let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
        .await
        .map_err(|e| e.to_string())?;
    conn.starttls(tls.clone(), &hello)
        .await
        .map_err(|e| e.to_string())?;
    conn.auth(
        &[Mechanism::Plain],
        &Credentials::new(login.to_string(), PASSWORD.into()),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(conn)
}

async fn load(server: &Server, size: usize, sessions: usize, messages: usize) -> Run {
    send_all(set_up_sessions(server, sessions).await, size, messages).await
}

/// `sessions` connections through STARTTLS and AUTH, before any clock starts.
async fn set_up_sessions(server: &Server, sessions: usize) -> Vec<AsyncSmtpConnection> {
    let tls = tls_parameters();
    let mut conns = Vec::with_capacity(sessions);
    for n in 0..sessions {
        match connect(server.port, &server.login, &tls, n).await {
            Ok(c) => conns.push(c),
            Err(e) => panic!("{}: session set-up failed: {e}", server.name),
        }
    }
    conns
}

/// Sends `messages` of `size` bytes spread over `conns`, each session back to back.
async fn send_all(conns: Vec<AsyncSmtpConnection>, size: usize, messages: usize) -> Run {
    let envelope = Envelope::new(
        Some("bench@portcullis.test".parse().expect("from")),
        vec!["sink@example.org".parse().expect("to")],
    )
    .expect("envelope");
    let body = Arc::new(message(size));
    let per = messages.div_ceil(conns.len());
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (e, b) = (envelope.clone(), body.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                let mut failed = 0;
                for _ in 0..per {
                    let t0 = Instant::now();
                    match conn.send(&e, &b).await {
                        Ok(_) => lat.push(t0.elapsed()),
                        Err(_) => failed += 1,
                    }
                }
                let _ = conn.quit().await;
                (lat, failed)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        if let Ok((l, f)) = t.await {
            lat.extend(l);
            failed += f;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Run {
        messages: lat.len(),
        failed,
        per_sec: lat.len() as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        ..Run::default()
    }
}

fn message(size: usize) -> Vec<u8> {
    let mut m =
        b"From: bench@portcullis.test\r\nTo: sink@example.org\r\nSubject: benchmark\r\n\r\n"
            .to_vec();
    while m.len() < size {
        m.extend_from_slice(
            b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n",
        );
    }
    m
}

// ---------------------------------------------------------------- processes

/// Kills and reaps a child however the run ends, panics included.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Postfix peer, stopped however the run ends, panics included.
struct Postfix {
    script: PathBuf,
    dir: PathBuf,
}

impl Postfix {
    fn master(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Starts a cell from Postfix's resting state: a cell of 100 sessions leaves 100
    /// idle `smtpd` processes (and its relaying `smtp` ones) for up to `max_idle`, and
    /// every server measured beside them ran slower, so the cells after it were not
    /// measured alike. A reload makes the idle ones exit; this waits until they have.
    fn settle(&self) {
        let _ = Command::new(&self.script)
            .arg("reload")
            .arg(&self.dir)
            .status();
        let Some(master) = self.master() else { return };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let busy = tree(master).iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| matches!(c.trim(), "smtpd" | "smtp" | "cleanup"))
            });
            if !busy {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("postfix: idle processes still running 30 s after a reload");
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// `smtp-sink -c` prints `sess=N quit=N mesg=N` and a CR after every event.
fn start_sink() -> Sink {
    let port = free_port();
    let mut child = Command::new("smtp-sink")
        .args(["-u", "nobody", "-c", &format!("127.0.0.1:{port}"), "1000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("smtp-sink (Debian package postfix) must be installed");
    let mut out = child.stdout.take().expect("sink stdout");
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut line = Vec::new();
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                return;
            }
            for &b in &buf[..n] {
                if b == b'\r' || b == b'\n' {
                    let text = String::from_utf8_lossy(&line);
                    if let Some(m) = text
                        .split_whitespace()
                        .find_map(|f| f.strip_prefix("mesg=")?.parse::<u64>().ok())
                    {
                        counter.store(m, Ordering::SeqCst);
                    }
                    line.clear();
                } else {
                    line.push(b);
                }
            }
        }
    });
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Sink {
        port,
        received,
        _child: KillOnDrop(child),
    }
}

impl Sink {
    /// Waits until the sink has received `count` messages (or `timeout` passes);
    /// returns what it has received.
    fn wait_for(&self, count: u64, timeout: Duration) -> u64 {
        let until = Instant::now() + timeout;
        loop {
            let got = self.received.load(Ordering::SeqCst);
            if got >= count || Instant::now() >= until {
                if got < count {
                    eprintln!("the sink has {got} of {count} messages after {timeout:?}");
                }
                return got;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The floor servers' names in cells and tables.
const FLOOR: &str = floor_smtp::Storage::File.name();
const FLOOR_QUEUE: &str = floor_smtp::Storage::Queue.name();

fn is_floor(server: &str) -> bool {
    floor_smtp::Storage::parse(server).is_some()
}

/// Starts this binary again as a floor server (`floor_smtp`) keeping bodies in
/// `storage`, on a free port, relaying to the sink on `sink_port`.
fn start_floor(dir: &Path, sink_port: u16, storage: floor_smtp::Storage) -> (KillOnDrop, Server) {
    let port = free_port();
    let name = storage.name();
    let floor_dir = dir.join(name);
    std::fs::create_dir_all(&floor_dir).expect("floor directory");
    let log = std::fs::File::create(floor_dir.join("floor.log")).expect("log file");
    let child = Command::new(std::env::current_exe().expect("own path"))
        .env(
            floor_smtp::ENV,
            format!("{port} {} {sink_port} {name}", floor_dir.display()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("floor server");
    let server = Server {
        name,
        port,
        login: USER.into(),
        pid: child.id(),
    };
    let child = KillOnDrop(child);
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the floor server did not listen on {port}");
}

fn start_portcullis(dir: &Path, sink_port: u16) -> (Child, u16) {
    let port = free_port();
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[store]
url = "sqlite://{db}"
data_dir = "{data}"
[submission]
hostname = "bench.portcullis.test"
listen_starttls = ["127.0.0.1:{port}"]
listen_tls = []
sender_policy = "any"
[submission.limits]
recipients_per_message = 1000
messages_per_hour = 100000000
recipients_per_day = 100000000
[delivery]
smart_host = "127.0.0.1:{sink_port}"
[radius]
listen_auth = []
listen_acct = []
[portal]
listen = []
"#,
            db = dir.join("bench.db").display(),
            data = dir.join("data").display(),
        ),
    )
    .expect("write config");
    let add = Command::new(BIN)
        .args([
            "--config",
            path(&config),
            "subscriber",
            "add",
            USER,
            "--password",
            PASSWORD,
        ])
        .output()
        .expect("portcullis subscriber add");
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let log = std::fs::File::create(dir.join("serve.log")).expect("log file");
    let mut child = Command::new(BIN)
        .args(["--config", path(&config), "serve"])
        .env("PORTCULLIS_LOG", "warn")
        .stderr(log)
        .spawn()
        .expect("portcullis serve");
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "portcullis did not listen on {port}; see {}",
        dir.join("serve.log").display()
    );
}

/// Thousands of sessions need thousands of descriptors, here and in the servers
/// (children inherit the limit).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The process and its descendants, from /proc.
fn tree(root: u32) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
            {
                all.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Fields of /proc/PID/stat after the command name (state is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime+stime of the tree, plus cutime+cstime of reaped children.
fn cpu_ticks(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            (11..15)
                .filter_map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
                .sum::<u64>()
        })
        .sum()
}

#[derive(Default)]
struct Memory {
    processes: usize,
    /// Sum of resident sizes: pages shared between processes count once per process.
    rss_kb: u64,
    /// Sum of proportional set sizes: shared pages split between their sharers.
    pss_kb: u64,
}

fn memory_kb(root: u32) -> Memory {
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut m = Memory::default();
    for p in tree(root) {
        let Ok(smaps) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        m.processes += 1;
        m.rss_kb += field(&smaps, "Rss:");
        m.pss_kb += field(&smaps, "Pss:");
    }
    m
}

// ---------------------------------------------------------------- reports

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let postfix = Command::new("postconf")
        .arg("-h")
        .arg("mail_version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{} cores, {cpu}; Postfix {postfix}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(f64::MIN_POSITIVE)
}

fn submission_report(cells: &[Cell], fsyncs: &[(&str, f64)], s: &Settings) -> String {
    let mut md =
        String::from("## Submission: STARTTLS + AUTH PLAIN, portcullis against Postfix\n\n");
    let _ = writeln!(
        md,
        "`{}` ({}). Same client (lettre over TCP_NODELAY, N sessions that authenticate once, then send back to back), same machine, same run; both servers relay to the same `smtp-sink`, and each cell starts once the sink has every earlier message and Postfix is back at rest (reloaded, the idle processes of the cell before gone). Medians of {} runs per cell, the servers taking turns. CPU is the server's whole process tree while the messages are sent (the sessions' set-up, with its TLS handshakes and AUTH, is left out as it is from the clock); peak RSS is sampled during the cell and summed over the tree.\n",
        s.command,
        machine(),
        s.repeats
    );
    md.push_str("| size | sessions | portcullis msg/s | Postfix msg/s | ratio | p50 ms (pc / pf) | p99 ms (pc / pf) | CPU s per 1000 (pc / pf) | peak RSS MB (pc / pf) |\n|---|---|---|---|---|---|---|---|---|\n");
    let mut failed = 0;
    for pc in cells.iter().filter(|r| r.server == "portcullis") {
        let Some(pf) = cells
            .iter()
            .find(|r| r.server == "postfix" && r.size == pc.size && r.sessions == pc.sessions)
        else {
            continue;
        };
        failed += pc.failed + pf.failed;
        let (a, b) = (&pc.median, &pf.median);
        let _ = writeln!(
            md,
            "| {} KB | {} | {:.0} | {:.0} | **{:.2}** | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} / {:.2} | {:.0} / {:.0} |",
            pc.size / 1024, pc.sessions, a.per_sec, b.per_sec, ratio(a.per_sec, b.per_sec), a.p50_ms, b.p50_ms, a.p99_ms, b.p99_ms, a.cpu_per_1000, b.cpu_per_1000, a.peak_rss_mb, b.peak_rss_mb
        );
    }
    let sent: usize = cells.iter().map(|c| c.sent).sum();
    failed += cells
        .iter()
        .filter(|c| is_floor(c.server))
        .map(|c| c.failed)
        .sum::<usize>();
    let _ = writeln!(
        md,
        "\n{sent} messages sent in all, {failed} failed.\n\n![throughput against concurrency](bench/submission-throughput.svg)\n"
    );
    md.push_str(&floor_report(cells));
    if !fsyncs.is_empty() {
        md.push_str("fsync + fdatasync calls per message, one session of 1 KB messages, the whole process tree under `strace -f -c` (accepting and relaying): ");
        let list: Vec<String> = fsyncs
            .iter()
            .map(|(name, per)| format!("{name} {per:.2}"))
            .collect();
        md.push_str(&list.join(", "));
        md.push_str(".\n\n");
    }
    md.push_str(SUBMISSION_NOTES);
    md
}

/// One session against the floors: the most any server that flushes each message
/// before `250` and relays it could reach with this client here, and the most one
/// keeping messages in portcullis' queue could, as ratios to Postfix.
fn floor_report(cells: &[Cell]) -> String {
    let mut md = String::from(
        "One session against the floor (`floor_smtp.rs`: a server that does only what every server here must: \
         STARTTLS with the same rustls configuration, SMTP without checks, the body read, one `pwrite` and \
         `fdatasync` on the thread that read it before `250`, then the body relayed to the same `smtp-sink` \
         over one connection kept open, MAIL, RCPT and DATA pipelined). Its ratio to Postfix bounds what any \
         server can reach with this client, disk and machine. The queue floor (floor+queue) is the same server \
         keeping each message in portcullis' store instead, as portcullis does when a message is committed \
         alone: the message and its recipient inserted in one SQLite transaction on the session's thread, the \
         WAL flushed before `250`, the message recorded delivered after the relay. Between the two floors is \
         what the queue costs; between the queue floor and portcullis, everything else portcullis does \
         (checks, headers, delivery's scheduling, the hand-offs between its tasks):\n\n\
         | size | floor msg/s | floor+queue msg/s | portcullis msg/s | Postfix msg/s | floor / Postfix | floor+queue / Postfix | portcullis / floor | portcullis / floor+queue | p50 ms (floor / floor+queue / pc / pf) | CPU s per 1000 (floor / floor+queue / pc) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let find = |server: &str, size: usize| {
        cells
            .iter()
            .find(|c| c.server == server && c.size == size && c.sessions == 1)
            .map(|c| &c.median)
    };
    let mut rows = 0;
    for floor in cells.iter().filter(|c| c.server == FLOOR) {
        let size = floor.size;
        let (Some(q), Some(pc), Some(pf)) = (
            find(FLOOR_QUEUE, size),
            find("portcullis", size),
            find("postfix", size),
        ) else {
            continue;
        };
        let f = &floor.median;
        let _ = writeln!(
            md,
            "| {} KB | {:.0} | {:.0} | {:.0} | {:.0} | **{:.2}** | **{:.2}** | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} |",
            size / 1024, f.per_sec, q.per_sec, pc.per_sec, pf.per_sec,
            ratio(f.per_sec, pf.per_sec), ratio(q.per_sec, pf.per_sec),
            ratio(pc.per_sec, f.per_sec), ratio(pc.per_sec, q.per_sec),
            f.p50_ms, q.p50_ms, pc.p50_ms, pf.p50_ms, f.cpu_per_1000, q.cpu_per_1000, pc.cpu_per_1000
        );
        rows += 1;
    }
    if rows == 0 {
        return String::new();
    }
    md.push('\n');
    md
}

const SUBMISSION_NOTES: &str = "What limits the figures: both servers make a message durable before `250` \
(Postfix: `cleanup` writes and fsyncs a queue file; portcullis: one store commit, the body in the \
row, a group of concurrent messages sharing one commit and its WAL fsync). With one session each \
message waits for its own flush, and for everything else the server does in turn. The floor, which \
flushes and relays too, shows what is left for a server's own work per message (table above): at 100 \
KB its lead over Postfix is smallest, because relaying to `smtp-sink`, which reads line by line, \
costs every server a good part of the second core. Where portcullis' extra time per message goes at \
one session, split by `bench/phases.sh` (medians, 100 KB, when this was written, on a 2-core AMD \
EPYC host): from one flush to the next 1812 µs against the floor's 1009. The flush takes 430 µs \
against 262: the WAL write it carries is about 1.7 times the bare body (the body's 25 overflow \
pages, the pages of the row, its indexes and the freelist, and the outcome of the message before), \
and more of these flushes also write the inode block, which a write in a new clock tick of the WAL \
or the database file costs on a filesystem without a journal (a full `stat` of the WAL before each \
flush once made nearly every flush do so). The store's transaction, between the body's last bytes \
and the flush, takes 187 µs against 34. The rest, 1195 µs against 713, is the same round trips with \
the client, which wait longer while the two cores also carry portcullis' relaying of the message \
before, its outcome transaction and the hand-offs between its tasks (13 context switches per message \
against the floor's 9). Two experiments bound what changing the storage would give: the body written \
to a preallocated file of its own and flushed, and the row without it flushed later (the most a \
spool file beside the queue could save) raised one session of 100 KB by about 8% (1.91 against 1.77 \
times Postfix, three interleaved runs each); committing delivery's outcome on its task instead of a \
blocking thread cut context switches to 10 per message but not the time per message. On a 2-core \
Intel Xeon host, a Firecracker VM whose idle cores halt without polling (so waking one is slow), the \
scheduler's wake-ups (`perf record -e sched:sched_wakeup`) count per message 2.3 wake-ups among \
portcullis' own threads, one of them across cores, against the floor's 0.6 and 0.1; there the same \
build ran in two modes, about 0.66 ms of CPU per message at 800 msg/s and 0.8 ms at 650, which is \
most of portcullis' own run-to-run spread. Neither delivery on a runtime of its own (twenty \
interleaved rounds) nor delivery's outcome committed on its own task when the writer is free (ten \
rounds; CPU 0.78 against 0.84 ms per message) moved the median. On that host again (kernel 6.18, \
guest halt polling off), one session of 100 KB alone reached about 1.6 times Postfix (1.74 in a full \
run); `bench/phases.sh` split a message into 1324 µs from flush to flush against the floor's 947 \
(the flush 272 against 200, the store's transaction 168 against 32, the rest 884 against 715). \
Waking a thread on the other core took 34 µs there (two threads pinned to the two cores answering \
each other over pipes: 69 µs a round trip, 2 µs on one core). Turning guest halt polling on, as a \
diagnostic only (`/sys/module/haltpoll/parameters/guest_halt_poll_ns` at 200 µs; 7 µs a round trip), \
raised over four interleaved rounds the floor by 17%, portcullis by 11% and Postfix by 6%: the ratio \
went from 1.62 to 1.67 (medians), so on that host what keeps portcullis under twice Postfix is its \
own work per message (0.8 ms of CPU against the floor's 0.4), not its wake-ups. On the AMD EPYC host \
again, `perf record -g` of that cell found a seventh of portcullis' CPU zeroing 2 MB pages: mimalloc \
marks its arenas for transparent huge pages and hands idle memory back to the kernel, so the next \
touch faulted in and cleared a whole huge page. The server now turns transparent huge pages off for \
its process (`PR_SET_THP_DISABLE`, what `MIMALLOC_ALLOW_THP=0` does): over ten interleaved rounds \
CPU per message fell from 0.76 to 0.67 ms, the median rate rose from 750 to 810 msg/s (ratio 1.88 to \
2.08) and peak RSS from 80 to 48 MB. On a later AMD EPYC host (2026-12-06; floor about 2.2 times \
Postfix, one session of 100 KB about 1.7), a trace of the server's reads and writes on the client's \
socket (`bench/replies.sh`) showed where the rest of the cycle went: from the `250` to the \
next command's arrival 160 µs against the floor's 51, and 75 against 42 after the next reply, while \
the server's own time per reply was under 15 µs. Delivery, handed the message after the `250`, \
relayed it exactly while the client and the server traded those commands. Now a message committed \
on its own is handed to delivery right after its commit: the WAL's writeback is started \
(`sync_file_range`), delivery is woken, and the flush is waited for in `block_in_place`, so the \
worker's other tasks (the relaying) move to another thread while the disk writes; the `250` still \
waits for the flush. The two gaps fell to 40 and 27 µs, `bench/phases.sh` went from 1195 µs per \
message to 1063-1112 (its flush-to-flush cycle), and over four interleaved rounds the median rate \
rose from 775 to 850 msg/s (1.71 to 1.92 times Postfix), at 0.06 ms more CPU per message for the \
thread hand-offs. What is left between portcullis and the floor is the store: each flush carries 43 \
WAL frames (the 25 of the body, 8 pages of the row, its indexes, the freelist and page 1, and 10 of \
the message before's outcome: 178 KB against the floor's 105, counted by `block:block_rq_issue`), \
and a flush here takes about 110 µs plus 0.9 µs per KB; the transaction before it costs 140-200 µs \
against the floor's 30. Since then a delivered message's outcome no longer writes its attempt to \
the log it is deleted from in the same transaction, which spares that outcome 3 of its 10 frames \
(the attempt log, its index and `sqlite_sequence`; the server's bytes written fell by 13.5 KB per \
message over a 100 KB cell). On another AMD EPYC host (2026-12-07) a flush cost about 160 µs \
whatever its size (4 KB 157 µs, 180 KB 185), and Postfix was slower: one session of 100 KB gave \
2.03 to 2.38 times Postfix over eight single runs (four before that change and four after, \
interleaved; the floor 2.1 to 2.6), and 1.5 to 1.7 \
while a release build ran alongside (the floor 1.8 to 1.9), so on two cores these figures are only \
comparable within one quiet run; the host also had a slower mode, in which portcullis' CPU per \
message rose from about 0.9 to 1.1 ms and the floor slowed too, and runs in it gave 1.69 to 2.05. \
The queue floor (since 2026-12-07, on a 2-core Intel Xeon host) splits portcullis' distance to the \
floor in every run. In the single run that introduced it, one session of 100 KB gave the floor 1299 \
msg/s, the queue floor 1030 and portcullis 1004, against Postfix's 521: the store's commit and flush \
of each message, made as portcullis makes them, take the ratio from 2.49 to 1.98, and all the rest \
portcullis does costs another 2%; at 1 KB the three gave 3760, 1917 and 1788. In the host's slower \
mode (Postfix at 434-459 msg/s, portcullis' CPU per message 0.85 ms against 0.68) the queue floor \
stayed at 2.0 times Postfix and portcullis fell to 0.93 of it. So at one session the \
limit is the queue in SQLite (a transaction writing about 40 WAL frames for a 100 KB message, its \
flush, and the outcome's transaction), not portcullis' sessions or delivery. A profile of the queue \
floor at 1 KB put a fifth of its CPU in blocking threads waking and parking, one of them the thread \
that committed each delivery's outcome; such a commit, small and waiting for no flush, now runs on the caller's thread \
when the writer is free. Over four interleaved rounds portcullis' CPU per message fell from \
0.48-0.52 to 0.42-0.47 ms at 1 KB (median rate 1584 to 1676 msg/s) and from 0.76-0.87 to 0.73-0.79 \
ms at 100 KB (rate 844 to 851, unchanged). \
On a 2-core AMD EPYC host (later on 2026-12-07) the full run at d83ad94 gave the floor 3.35, the \
queue floor 2.72 and portcullis 2.37 times Postfix at one session of 100 KB (its runs 2.91, 2.22 and \
2.38): portcullis was 0.86-0.91 of the queue floor in those runs, and level with it (1204 against \
1223 msg/s) under `bench/phases.sh` right after; a second run of the section at d71cf38 gave 2.33 \
(runs 2.12, 2.55 and 2.28). \
With more sessions portcullis shares each flush among the \
messages that arrived meanwhile, while Postfix pays a queue file and process hand-offs (smtpd → \
cleanup → qmgr) per message. Postfix runs a process per session, and RSS counts shared pages once \
per process, so its peak RSS overstates what it holds (see the sessions section for PSS).\n";

fn relay_report(relay: &[Relay], s: &Settings) -> String {
    let mut md = String::from("## End-to-end relay: submission → delivery → smtp-sink\n\n");
    let (messages, sessions) = relay.first().map_or((0, 0), |r| (r.messages, r.sessions));
    let _ = writeln!(
        md,
        "`{}` ({}). {messages} messages of 1 KB over {sessions} STARTTLS + AUTH sessions; the clock runs from the first submission until `smtp-sink -c` has counted them all. Medians of {} runs.\n",
        s.command,
        machine(),
        s.repeats
    );
    md.push_str(
        "| server | end-to-end msg/s (at the sink) | submission alone msg/s |\n|---|---|---|\n",
    );
    for r in relay {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} |",
            r.server, r.end_to_end, r.submitted
        );
    }
    if let [pc, pf] = relay {
        let _ = writeln!(
            md,
            "\nRatio portcullis/Postfix, end to end: **{:.2}**.\n",
            ratio(pc.end_to_end, pf.end_to_end)
        );
    }
    md.push_str(RELAY_NOTES);
    md
}

const RELAY_NOTES: &str = "What limits the figure: the slower of accepting and relaying. \
Postfix's qmgr hands each message to an `smtp` process (up to 100 concurrent to one \
destination here); portcullis' submission hands each message it commits to the delivery \
engine on its node (inserted already leased to it, relayed from memory over pooled \
connections), which records each outcome in the store; the store's one SQLite writer is \
shared by accepting and recording outcomes.\n";

fn sessions_report(held: &[Held], s: &Settings) -> String {
    let wanted = held.first().map_or(0, |h| h.wanted);
    let mut md = format!("## {wanted} concurrent authenticated sessions\n\n");
    let _ = writeln!(
        md,
        "`{}` ({}). {wanted} sessions opened (200 setting up at a time, {SESSIONS_PER_ADDRESS} per loopback client address), each through STARTTLS and AUTH PLAIN, then held idle while the server's memory is read: RSS and PSS summed over its processes (`/proc/PID/smaps_rollup`). Held counts the ESTABLISHED connections on the server's port at that moment. One run: opening the sessions is the slow part.\n",
        s.command,
        machine(),
    );
    md.push_str("| server | held | set-up s | processes | RSS MB (sum) | PSS MB (sum) | PSS KB per session | RSS MB before |\n|---|---|---|---|---|---|---|---|\n");
    for h in held {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            h.server,
            h.held,
            h.setup_secs,
            h.processes,
            h.rss_mb,
            h.pss_mb,
            h.pss_mb * 1024.0 / h.held.max(1) as f64,
            h.idle_rss_mb
        );
    }
    for h in held {
        if let Some(why) = &h.stopped {
            let _ = writeln!(md, "\n{} stopped early: {why}.", h.server);
        }
    }
    if let [pc, pf] = held {
        let _ = writeln!(
            md,
            "\nRatio portcullis/Postfix, PSS per session held: **{:.3}**. Target: under 1 GiB for 10,000 sessions (portcullis: {:.0} MB RSS for {}).\n",
            ratio(
                pc.pss_mb / pc.held.max(1) as f64,
                pf.pss_mb / pf.held.max(1) as f64
            ),
            pc.rss_mb,
            pc.held
        );
    }
    let _ = writeln!(
        md,
        "Postfix runs one `smtpd` process per session; its `default_process_limit` (100 by default) is raised to {POSTFIX_PROCESS_LIMIT} by `bench/postfix-submission.sh` so it accepts them all. portcullis holds every session as a task in one process (its own limit: 20,000 connections, 100 per client address). portcullis' set-up time is mostly AUTH: each first login checks an argon2id hash (19 MiB, by design slow), while Postfix's sasldb compares a stored plaintext password."
    );
    md
}

/// Messages/s against concurrency, one line per server and size, as SVG.
fn plot(cells: &[Cell]) -> String {
    let cells: Vec<&Cell> = cells.iter().filter(|c| !is_floor(c.server)).collect();
    let (w, h, left, bottom) = (640.0, 360.0, 60.0, 40.0);
    let max = cells.iter().map(|r| r.median.per_sec).fold(1.0, f64::max) * 1.1;
    let levels: Vec<usize> = {
        let mut l: Vec<usize> = cells.iter().map(|r| r.sessions).collect();
        l.sort();
        l.dedup();
        l
    };
    let x = |s: usize| {
        left + (levels.iter().position(|&l| l == s).unwrap_or(0) as f64 + 0.5) * (w - left - 20.0)
            / levels.len().max(1) as f64
    };
    let y = |v: f64| h - bottom - v / max * (h - bottom - 20.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        svg,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="20" x2="{left}" y2="{}" stroke="black"/>"#,
        h - bottom,
        w - 20.0,
        h - bottom,
        h - bottom
    );
    for &l in &levels {
        let noun = if l == 1 { "session" } else { "sessions" };
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{l} {noun}</text>"#,
            x(l),
            h - bottom + 16.0
        );
    }
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{v:.0}</text>"#,
            left - 4.0,
            y(v) + 4.0
        );
    }
    let mut sizes: Vec<usize> = cells.iter().map(|r| r.size).collect();
    sizes.sort();
    sizes.dedup();
    let mut legend = 0;
    for server in ["portcullis", "postfix"] {
        for (k, &size) in sizes.iter().enumerate() {
            let points: Vec<String> = cells
                .iter()
                .filter(|r| r.server == server && r.size == size)
                .map(|r| format!("{:.1},{:.1}", x(r.sessions), y(r.median.per_sec)))
                .collect();
            let color = if server == "portcullis" {
                ["#1f77b4", "#2ca02c", "#17becf"][k % 3]
            } else {
                ["#d62728", "#ff7f0e", "#9467bd"][k % 3]
            };
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" fill="{color}">{server} {} KB</text>"#,
                left + 10.0,
                32.0 + 13.0 * legend as f64,
                size / 1024
            );
            legend += 1;
        }
    }
    svg.push_str(r#"<text x="12" y="14">accepted messages/s (median)</text></svg>"#);
    svg
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}
