//! A submission server on loopback ports chosen at run time, backed by a temporary
//! SQLite store, and drivers for real clients: swaks, curl, Python's smtplib and raw
//! sockets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use policy::{Actor, Plan};
use submission::{Server, Tunables};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub store: store::Store,
    pub server: Server,
    pub db: PathBuf,
}

impl TestServer {
    pub fn starttls(&self) -> u16 {
        self.server.starttls_addrs[0].port()
    }
    pub fn tls(&self) -> u16 {
        self.server.tls_addrs[0].port()
    }
    pub fn starttls_v6(&self) -> Option<SocketAddr> {
        self.server
            .starttls_addrs
            .iter()
            .find(|a| a.is_ipv6())
            .copied()
    }
}

pub fn test_config(dir: &std::path::Path) -> config::Config {
    let mut c = config::Config::default();
    c.store.url = format!("sqlite://{}", dir.join("x.db").display());
    c.store.data_dir = dir.join("data");
    c.submission.hostname = "mail.test.example".into();
    c.submission.listen_starttls = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    c.submission.listen_tls = vec!["127.0.0.1:0".parse().unwrap()];
    c.submission.max_message_size = 64 * 1024;
    c.submission.limits.recipients_per_message = 5;
    c
}

pub fn test_tunables() -> Tunables {
    Tunables {
        auth_failure_delay: Duration::from_millis(10),
        ..Tunables::default()
    }
}

/// Starts a server with subscribers `ann` (password `pw`, ann@example.net) and `bob`
/// (password `pw2`, owns @bob.example).
pub async fn start(tweak: impl FnOnce(&mut config::Config, &mut Tunables)) -> TestServer {
    // Server logs show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    let mut tunables = test_tunables();
    tweak(&mut config, &mut tunables);
    let store = store::Store::open(&config.store.url).await.unwrap();
    add(&store, "ann", "pw", "ann@example.net").await;
    add(&store, "bob", "pw2", "bob@bob.example").await;
    store
        .allow_sender("bob", "@bob.example", &Actor::Operator("t".into()))
        .await
        .unwrap();
    let server = submission::start_with(Arc::new(config), store.clone(), tunables)
        .await
        .unwrap();
    let db = dir.path().join("x.db");
    TestServer {
        dir,
        store,
        server,
        db,
    }
}

pub async fn add(store: &store::Store, login: &str, pw: &str, email: &str) {
    let new = store::NewSubscriber {
        login: login.into(),
        display_name: None,
        email: Some(email.into()),
        plan: Plan::Dynamic,
        static_ips: vec![],
        password_hash: Some(store::password::hash_password(pw)),
    };
    store
        .add_subscriber(&new, &Actor::Operator("t".into()))
        .await
        .unwrap();
}

/// Runs a program; returns (success, stdout + stderr).
pub async fn run(program: &str, args: &[String], stdin: Option<&[u8]>) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("client timed out")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub async fn swaks(args: &[&str]) -> (bool, String) {
    let mut all: Vec<String> = vec![
        "--timeout".into(),
        "20".into(),
        "--helo".into(),
        "client.test".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    run("swaks", &all, None).await
}

/// The queue id from a `250 2.0.0 Ok: queued as ID` in a transcript.
pub fn queue_id(transcript: &str) -> Option<String> {
    let i = transcript.find("queued as ")? + "queued as ".len();
    Some(
        transcript[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect(),
    )
}

const PY_DRIVER: &str = r#"
import base64, json, smtplib, ssl, sys
port, mode, steps = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
ctx = ssl._create_unverified_context()
out = []
def rec(code, msg):
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    out.append("%d %s" % (code, msg.replace("\n", " / ")))
try:
    if mode == "tls":
        s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=30)
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    for step in steps:
        kind, arg = step[0], (step[1] if len(step) > 1 else None)
        if kind == "ehlo":
            rec(*s.ehlo("client.test"))
        elif kind == "starttls":
            rec(*s.starttls(context=ctx))
        elif kind == "auth_plain":
            ir = base64.b64encode(("\0%s\0%s" % (arg[0], arg[1])).encode()).decode()
            rec(*s.docmd("AUTH PLAIN " + ir))
        elif kind == "login":
            try:
                rec(*s.login(arg[0], arg[1]))
            except smtplib.SMTPAuthenticationError as e:
                rec(e.smtp_code, e.smtp_error)
        elif kind == "cmd":
            rec(*s.docmd(arg))
        elif kind == "raw":
            s.send(arg.encode("latin-1"))
            rec(*s.getreply())
        elif kind == "sendmail":
            try:
                s.sendmail(arg[0], arg[1], arg[2].encode("utf-8"))
                out.append("SENT")
            except smtplib.SMTPException as e:
                out.append("ERROR %r" % (e,))
except smtplib.SMTPServerDisconnected as e:
    out.append("DISCONNECTED")
except Exception as e:
    out.append("EXCEPTION %r" % (e,))
print(json.dumps(out))
"#;

/// Drives one session with Python's smtplib; each step's reply as "CODE TEXT".
pub async fn py(port: u16, mode: &str, steps: serde_json::Value) -> Vec<String> {
    let args = vec![
        "-c".to_string(),
        PY_DRIVER.to_string(),
        port.to_string(),
        mode.to_string(),
        steps.to_string(),
    ];
    let (_, out) = run("python3", &args, None).await;
    let line = out.lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("python said {out:?}: {e}"))
}

/// A plaintext connection that reads replies line by line.
pub struct Raw {
    pub stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(port: u16) -> Raw {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// One reply line (without CRLF), or None at EOF/error, within `wait`.
    pub async fn line(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&l).trim_end().to_string());
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The last line of the next (possibly multi-line) reply.
    pub async fn reply(&mut self) -> Option<String> {
        loop {
            let l = self.line(Duration::from_secs(20)).await?;
            if l.as_bytes().get(3) != Some(&b'-') {
                return Some(l);
            }
        }
    }
}
