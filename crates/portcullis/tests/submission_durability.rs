//! Nothing answered `250` is lost: a real `portcullis serve` is killed with SIGKILL
//! while several smtplib clients are sending over STARTTLS+AUTH, restarted, and every
//! message that got `250 ... queued as ID` must be in the queue, whole (the store row
//! is its one durable copy).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A `portcullis serve` child, killed when dropped (also when a test fails).
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let text = format!(
        r#"[store]
url = "sqlite://{db}"
data_dir = "{data}"
[submission]
hostname = "mail.test.example"
listen_starttls = ["127.0.0.1:{port}"]
listen_tls = []
[radius]
listen_auth = []
listen_acct = []
[portal]
listen = []
[delivery]
# Nothing listens there: delivery defers, so accepted messages stay in the queue.
smart_host = "127.0.0.1:{relay}"
"#,
        db = dir.join("p.db").display(),
        data = dir.join("data").display(),
        relay = free_port(),
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts `portcullis serve` and waits for its "ready" line.
fn serve(config: &Path) -> Serve {
    let mut child = Command::new(BIN)
        .args(["--config", &config.display().to_string(), "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis serve");
    let (tx, rx) = mpsc::channel();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as _),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("ready") => return serve,
            Ok(line) => seen.push(line),
            Err(_) => panic!("portcullis serve did not log ready:\n{}", seen.join("\n")),
        }
    }
}

/// The exact message client `c` sends as its `i`th (CRLF lines, no leading dots).
fn message(c: usize, i: usize) -> String {
    let mut m =
        format!("From: ann@example.net\r\nTo: r{c}@example.org\r\nSubject: c{c} m{i}\r\n\r\n");
    for k in 0..150 {
        m.push_str(&format!(
            "{c}:{i}:{k} the quick brown fox jumps over the lazy dog\r\n"
        ));
    }
    m
}

const CLIENT: &str = r#"
import smtplib, ssl, sys
port, c = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl._create_unverified_context()
def message(i):
    m = "From: ann@example.net\r\nTo: r%d@example.org\r\nSubject: c%d m%d\r\n\r\n" % (c, c, i)
    for k in range(150):
        m += "%d:%d:%d the quick brown fox jumps over the lazy dog\r\n" % (c, i, k)
    return m
try:
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    s.starttls(context=ctx)
    s.login("ann", "pw")
    for i in range(100000):
        s.mail("ann@example.net")
        s.rcpt("r%d@example.org" % c)
        code, msg = s.data(message(i).encode())
        if code == 250:
            print("QUEUED %d %s" % (i, msg.decode().rsplit(" ", 1)[-1]), flush=True)
except Exception as e:
    print("STOPPED %r" % (e,), flush=True)
"#;

#[test]
fn every_message_answered_250_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), port);
    let add = Command::new(BIN)
        .args([
            "--config",
            &config.display().to_string(),
            "subscriber",
            "add",
            "ann",
            "--password",
            "pw",
            "--email",
            "ann@example.net",
        ])
        .output()
        .expect("run subscriber add");
    assert!(
        add.status.success(),
        "subscriber add: {}",
        String::from_utf8_lossy(&add.stderr)
    );

    let mut server = serve(&config);
    const CLIENTS: usize = 6;
    let mut clients: Vec<Child> = (0..CLIENTS)
        .map(|c| {
            Command::new("python3")
                .args(["-c", CLIENT, &port.to_string(), &c.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    // SIGKILL in the middle of the traffic.
    server.0.kill().expect("kill -9");
    let _ = server.0.wait();
    let mut queued: Vec<(usize, usize, String)> = Vec::new();
    for (c, child) in clients.iter_mut().enumerate() {
        let stdout = child.stdout.take().expect("client stdout");
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut words = line.split_whitespace();
            if words.next() == Some("QUEUED") {
                let i: usize = words.next().and_then(|w| w.parse().ok()).expect("index");
                let id = words.next().expect("queue id").to_string();
                queued.push((c, i, id));
            }
        }
        let _ = child.wait();
    }
    assert!(
        queued.len() >= CLIENTS,
        "the clients got too few messages through before the kill: {}",
        queued.len()
    );

    // Restart on the same store; it must come up and see everything.
    let _server = serve(&config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = store::Store::open(&format!("sqlite://{}", dir.path().join("p.db").display()))
            .await
            .expect("open store");
        for (c, i, id) in &queued {
            let m = store
                .queue_message(id)
                .await
                .expect("read queue")
                .unwrap_or_else(|| {
                    panic!("{id} (client {c}, message {i}) answered 250 but is not queued")
                });
            assert_eq!(m.login, "ann");
            assert_eq!(m.recipients.len(), 1);
            assert_eq!(m.recipients[0].address, format!("r{c}@example.org"));
            let body = store
                .queue_body(id)
                .await
                .expect("read body")
                .expect("body");
            let sent = message(*c, *i);
            assert!(
                body.ends_with(sent.as_bytes()),
                "{id}: the queued body is not the message sent"
            );
            assert_eq!(body.len() as i64, m.size);
        }
        eprintln!(
            "{} messages answered 250 before SIGKILL, all queued whole after restart",
            queued.len()
        );
    });
}
