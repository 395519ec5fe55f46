//! `cargo bench -p portcullis --bench compare [-- --quick]`: portcullis' submission
//! server against Postfix's on the same machine, with the same client, in one run.
//!
//! Both servers listen on loopback, require STARTTLS and AUTH PLAIN, and relay every
//! accepted message to Postfix's `smtp-sink`. The client is lettre (nobody here wrote
//! it): N sessions over TCP with NODELAY, each doing STARTTLS and AUTH once, then
//! sending messages back to back. For every message size and concurrency it measures accepted
//! messages/s, p50/p99 latency of a whole MAIL..DATA transaction, the server's CPU
//! seconds per 1,000 messages (the whole process tree, exited children included) and
//! its peak resident memory. Results go to stdout and to `BENCHMARKS.md` and
//! `bench/submission-throughput.svg` at the workspace root.
//!
//! Needs root (Postfix and smtp-sink drop privileges), Debian's postfix and sasl2-bin;
//! `bench/run.sh` installs them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

struct Server {
    name: &'static str,
    port: u16,
    login: String,
    /// The process whose tree is measured (portcullis, or Postfix's master).
    pid: u32,
}

#[derive(Clone, Debug)]
struct Run {
    server: &'static str,
    size: usize,
    sessions: usize,
    messages: usize,
    failed: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_per_1000: f64,
    peak_rss_mb: f64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let root = workspace_root();
    // Postfix refuses a queue under /tmp here (it is mounted with restrictions), so
    // /var/tmp; its daemons run as the postfix user and must reach the queue.
    let dir = tempfile::Builder::new()
        .prefix("portcullis-bench")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    let sink_port = free_port();
    let _sink = KillOnDrop(
        Command::new("smtp-sink")
            .args([
                "-u",
                "nobody",
                "-c",
                &format!("127.0.0.1:{sink_port}"),
                "1000",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("smtp-sink (Debian package postfix) must be installed"),
    );

    let postfix_dir = dir.path().join("postfix");
    let postfix_port = free_port();
    let ok = Command::new(root.join("bench/postfix-submission.sh"))
        .args([
            "start",
            path(&postfix_dir),
            &postfix_port.to_string(),
            &sink_port.to_string(),
            USER,
            PASSWORD,
        ])
        .status()
        .is_ok_and(|s| s.success());
    // Stops Postfix however this run ends, panics included.
    let _postfix = StopPostfix(
        root.join("bench/postfix-submission.sh"),
        postfix_dir.clone(),
    );
    assert!(ok, "could not start the Postfix peer");
    let master_pid = std::fs::read_to_string(postfix_dir.join("queue/pid/master.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("postfix master.pid");

    let (portcullis, portcullis_port) = start_portcullis(dir.path(), sink_port);
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

    let sizes: &[usize] = if quick {
        &[1024]
    } else {
        &[1024, 10 * 1024, 100 * 1024]
    };
    let concurrency: &[usize] = if quick { &[1, 10] } else { &[1, 10, 100] };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut runs = Vec::new();
    for &size in sizes {
        for &sessions in concurrency {
            let messages = (if quick { 200 } else { 2000 }).max(sessions * 10)
                / if size > 50_000 { 2 } else { 1 };
            for server in &servers {
                let before = cpu_ticks(server.pid);
                let r = runtime.block_on(load(server, size, sessions, messages));
                let cpu = (cpu_ticks(server.pid) - before) as f64 / USER_HZ;
                let run = Run {
                    cpu_per_1000: cpu * 1000.0 / r.messages.max(1) as f64,
                    peak_rss_mb: peak_rss_kb(server.pid) as f64 / 1024.0,
                    ..r
                };
                println!(
                    "{:>10} {:>6} B x{:>3}: {:>7.0} msg/s  p50 {:>6.2} ms  p99 {:>7.2} ms  cpu {:>5.2} s/1000  peak {:>6.1} MB  ({} sent, {} failed)",
                    run.server, run.size, run.sessions, run.per_sec, run.p50_ms, run.p99_ms, run.cpu_per_1000, run.peak_rss_mb, run.messages, run.failed
                );
                runs.push(run);
            }
        }
    }

    drop(portcullis);

    std::fs::write(root.join("bench/submission-throughput.svg"), plot(&runs)).expect("write plot");
    std::fs::write(root.join("BENCHMARKS.md"), report(&runs, quick)).expect("write BENCHMARKS.md");
    println!("wrote BENCHMARKS.md and bench/submission-throughput.svg");
}

/// Kills and reaps a child however the run ends, panics included.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct StopPostfix(PathBuf, PathBuf);

impl Drop for StopPostfix {
    fn drop(&mut self) {
        let _ = Command::new(&self.0).arg("stop").arg(&self.1).status();
    }
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

/// One SMTP session: TCP with NODELAY (lettre's own transport leaves Nagle on, which
/// holds the final "." for the server's delayed ACK, ~40 ms, and would make any server
/// look the same), then STARTTLS and AUTH PLAIN through lettre.
async fn session(server: &Server, tls: &TlsParameters) -> Result<AsyncSmtpConnection, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
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
        &Credentials::new(server.login.clone(), PASSWORD.into()),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(conn)
}

async fn load(server: &Server, size: usize, sessions: usize, messages: usize) -> Run {
    let tls = TlsParameters::builder("bench.portcullis.test".into())
        .dangerous_accept_invalid_certs(true)
        .dangerous_accept_invalid_hostnames(true)
        .build_rustls()
        .expect("tls parameters");
    let envelope = Envelope::new(
        Some("bench@portcullis.test".parse().expect("from")),
        vec!["sink@example.org".parse().expect("to")],
    )
    .expect("envelope");
    let body = Arc::new(message(size));
    // Every session connects, does STARTTLS and AUTH before the clock starts.
    let mut conns = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        match session(server, &tls).await {
            Ok(c) => conns.push(c),
            Err(e) => panic!("{}: session set-up failed: {e}", server.name),
        }
    }
    let per = messages.div_ceil(sessions);
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
        server: server.name,
        size,
        sessions,
        messages: lat.len(),
        failed,
        per_sec: lat.len() as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        cpu_per_1000: 0.0,
        peak_rss_mb: 0.0,
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

/// Sum of the tree's peak resident sizes (VmHWM), in kB.
fn peak_rss_kb(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

fn report(runs: &[Run], quick: bool) -> String {
    let mut md = String::from("# Benchmarks\n\n");
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
    let _ = writeln!(
        md,
        "Machine: {} cores, {cpu}. Postfix {postfix}. Made by `bench/run.sh`{}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if quick { " --quick" } else { "" }
    );
    md.push_str("## Submission: STARTTLS + AUTH PLAIN, relayed to smtp-sink\n\n");
    md.push_str("Same client (lettre over TCP_NODELAY, N sessions that authenticate once), same machine, same run. CPU is the server's whole process tree.\n\n");
    md.push_str("| size | sessions | portcullis msg/s | Postfix msg/s | ratio | p50 ms (pc / pf) | p99 ms (pc / pf) | CPU s per 1000 (pc / pf) | peak MB (pc / pf) |\n|---|---|---|---|---|---|---|---|---|\n");
    for pc in runs.iter().filter(|r| r.server == "portcullis") {
        let Some(pf) = runs
            .iter()
            .find(|r| r.server == "postfix" && r.size == pc.size && r.sessions == pc.sessions)
        else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {} KB | {} | {:.0} | {:.0} | **{:.2}** | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} / {:.2} | {:.0} / {:.0} |",
            pc.size / 1024, pc.sessions, pc.per_sec, pf.per_sec, pc.per_sec / pf.per_sec.max(f64::MIN_POSITIVE), pc.p50_ms, pf.p50_ms, pc.p99_ms, pf.p99_ms, pc.cpu_per_1000, pf.cpu_per_1000, pc.peak_rss_mb, pf.peak_rss_mb
        );
    }
    md.push_str("\n![throughput against concurrency](bench/submission-throughput.svg)\n");
    md.push_str(NOTES);
    md
}

const NOTES: &str = "
Notes: one run per cell (not yet medians over repeats). Peak MB is the sum of VmHWM
over the server's processes since it started: portcullis is one process, so its figure
only grows across the table; Postfix runs a process per session, and shared pages count
once per process, so its sum overstates what it really holds. Both servers durably
accept (Postfix: queue file fsync; portcullis: spool fsync and a store commit) and relay
to the same smtp-sink while the load runs.
";

/// Messages/s against concurrency, one line per server and size, as SVG.
fn plot(runs: &[Run]) -> String {
    let (w, h, left, bottom) = (640.0, 360.0, 60.0, 40.0);
    let max = runs.iter().map(|r| r.per_sec).fold(1.0, f64::max) * 1.1;
    let levels: Vec<usize> = {
        let mut l: Vec<usize> = runs.iter().map(|r| r.sessions).collect();
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
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{l} sessions</text>"#,
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
    let mut sizes: Vec<usize> = runs.iter().map(|r| r.size).collect();
    sizes.sort();
    sizes.dedup();
    let mut legend = 0;
    for server in ["portcullis", "postfix"] {
        for (k, &size) in sizes.iter().enumerate() {
            let points: Vec<String> = runs
                .iter()
                .filter(|r| r.server == server && r.size == size)
                .map(|r| format!("{:.1},{:.1}", x(r.sessions), y(r.per_sec)))
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
    svg.push_str(r#"<text x="12" y="14">accepted messages/s</text></svg>"#);
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
