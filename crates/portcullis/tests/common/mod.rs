//! Shared harness for tests that drive the real `portcullis` binary: a temp
//! directory with a config, CLI runs, and a `portcullis serve` child that is waited
//! on until it logs "ready" and killed when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A UDP loopback port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind udp")
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// Every listener off: tests turn on what they exercise.
pub const QUIET: &str = r#"
[submission]
listen_starttls = []
listen_tls = []
[radius]
listen_auth = []
listen_acct = []
[portal]
listen = []
"#;

impl Env {
    /// A directory with `portcullis.toml`: a SQLite store inside it, all listeners
    /// off, plus `extra` TOML (later sections override nothing: write whole sections).
    pub fn new(extra: &str) -> Env {
        Env::with_store(None, extra)
    }

    pub fn with_store(url: Option<&str>, extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = url
            .map(str::to_string)
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("p.db").display()));
        let text = format!(
            "[store]\nurl = \"{url}\"\ndata_dir = \"{}\"\n{}\n",
            dir.path().join("data").display(),
            merge(QUIET, extra)
        );
        let config = dir.path().join("portcullis.toml");
        std::fs::write(&config, text).expect("write config");
        Env { dir, config }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path());
        c.env_remove("PORTCULLIS_CONFIG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run portcullis")
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "portcullis {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects failure with exactly one line on stderr; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "portcullis {args:?} should fail, printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        one_line(&out)
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }

    pub fn serve(&self) -> Serve {
        Serve::start(self.cmd())
    }
}

pub fn one_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line on stderr, got {err:?}"
    );
    err.trim_end().to_string()
}

/// Joins two TOML fragments, letting `extra` replace whole `[sections]` of `base`.
fn merge(base: &str, extra: &str) -> String {
    let sections = |t: &str| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = vec![(String::new(), String::new())];
        for line in t.lines() {
            let l = line.trim();
            if l.starts_with('[') && !l.starts_with("[[") {
                out.push((l.to_string(), String::new()));
            }
            let last = out.last_mut().expect("non-empty");
            last.1.push_str(line);
            last.1.push('\n');
        }
        out
    };
    let extra_s = sections(extra);
    let mut text = String::new();
    for (name, body) in sections(base) {
        if name.is_empty() || !extra_s.iter().any(|(n, _)| *n == name) {
            text.push_str(&body);
        }
    }
    for (_, body) in extra_s {
        text.push_str(&body);
    }
    text
}

/// A running `portcullis serve`.
pub struct Serve {
    pub child: Child,
    log: Arc<Mutex<String>>,
}

impl Serve {
    pub fn start(mut cmd: Command) -> Serve {
        let mut child = cmd
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().expect("log lock");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut s = Serve { child, log };
        if let Err(e) = s.wait_for("ready", Duration::from_secs(60)) {
            panic!("serve did not become ready: {e}");
        }
        s
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until the log contains `needle`; Err with the log on timeout or exit.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if self.log().contains(needle) {
                return Ok(start.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "serve exited ({status}) before logging {needle:?}: {}",
                    self.log()
                ));
            }
            if start.elapsed() > timeout {
                return Err(format!("no {needle:?} after {timeout:?}: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
