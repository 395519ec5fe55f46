//! The `radius` auth backend against a real FreeRADIUS (Debian package `freeradius`),
//! configured by the test in a temporary directory and listening on a loopback port
//! chosen at run time. The client must send Message-Authenticator (the server is told
//! to require it); servers are tried in order; none answering is a temporary failure.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::py;
use serde_json::json;

struct Radiusd(Child, std::sync::mpsc::Receiver<String>);

impl Drop for Radiusd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Starts `freeradius -X` with users ann/radpw and carl/carlpw; None when FreeRADIUS
/// is not installed.
fn freeradius(dir: &std::path::Path, port: u16) -> Option<Radiusd> {
    if Command::new("freeradius").arg("-v").output().is_err() {
        eprintln!("freeradius is not installed (apt-get install freeradius): skipping");
        return None;
    }
    let d = dir.display();
    std::fs::create_dir_all(dir.join("log")).unwrap();
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::write(dir.join("dictionary"), "").unwrap();
    std::fs::write(
        dir.join("users"),
        "ann Cleartext-Password := \"radpw\"\ncarl Cleartext-Password := \"carlpw\"\n",
    )
    .unwrap();
    let conf = format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {d}/log
raddbdir = {d}
radacctdir = {d}/log
name = freeradius
confdir = {d}
modconfdir = {d}
run_dir = {d}/run
db_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/run/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
    destination = stdout
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 2
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 3
    max_requests_per_server = 0
}}
client loop {{
    ipaddr = 127.0.0.1
    secret = testing123
    require_message_authenticator = yes
}}
modules {{
    pap {{
        normalise = yes
    }}
    files {{
        filename = {d}/users
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
    }}
    authorize {{
        files
        pap
        # FreeRADIUS before 3.2.5 (Debian bookworm ships 3.2.1) signs replies only
        # when asked; the client requires Message-Authenticator (BlastRADIUS).
        update reply {{
            Message-Authenticator := 0x00000000000000000000000000000000
        }}
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
    }}
}}
"#
    );
    std::fs::write(dir.join("radiusd.conf"), conf).unwrap();
    let mut child = Command::new("freeradius")
        .args(["-X", "-d", &dir.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start freeradius");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut child = child;
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.contains("Ready to process requests") => return Some(Radiusd(child, rx)),
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("freeradius did not start:\n{}", seen.join("\n"))
            }
        }
    }
}

fn login(user: &str, pw: &str, from: &str) -> serde_json::Value {
    json!([
        ["ehlo"],
        ["starttls"],
        ["ehlo"],
        ["auth_plain", [user, pw]],
        ["cmd", format!("MAIL FROM:<{from}>")]
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radius_backend_against_freeradius() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let Some(radiusd) = freeradius(dir.path(), port) else {
        return;
    };
    let dead = free_udp_port();
    let t = common::start(|c, tun| {
        c.auth.backend = config::AuthBackend::Radius;
        // A server that does not answer first: the next one in order is asked.
        c.auth.radius_servers = vec![
            format!("127.0.0.1:{dead}").parse().unwrap(),
            format!("127.0.0.1:{port}").parse().unwrap(),
        ];
        c.auth.radius_secret = Some("testing123".into());
        tun.radius_timeout = Duration::from_millis(300);
        tun.radius_retries = 1;
    })
    .await;
    let p = t.starttls();
    // RADIUS has the password; the store the owned senders.
    let out = py(p, "starttls", login("ann", "radpw", "ann@example.net")).await;
    let log = || radiusd.1.try_iter().collect::<Vec<_>>().join("\n");
    assert_eq!(
        out[3],
        "235 2.7.0 Authentication successful",
        "{out:?}\nfreeradius said:\n{}",
        log()
    );
    assert_eq!(out[4], "250 2.1.0 Ok", "{out:?}");
    // The store's password is not the RADIUS one.
    let out = py(p, "starttls", login("ann", "pw", "ann@example.net")).await;
    assert_eq!(out[3], "535 5.7.8 Error: authentication failed", "{out:?}");
    let out = py(p, "starttls", login("nobody", "x", "n@example.net")).await;
    assert_eq!(out[3], "535 5.7.8 Error: authentication failed", "{out:?}");
    // Known to RADIUS, not to the store: logged in, but owns no sender.
    let out = py(p, "starttls", login("carl", "carlpw", "carl@example.net")).await;
    assert_eq!(out[3], "235 2.7.0 Authentication successful", "{out:?}");
    assert!(out[4].starts_with("553 5.7.1"), "{out:?}");

    // No RADIUS server answering: a temporary failure, not a wrong password.
    let t2 = common::start(|c, tun| {
        c.auth.backend = config::AuthBackend::Radius;
        c.auth.radius_servers = vec![format!("127.0.0.1:{dead}").parse().unwrap()];
        c.auth.radius_secret = Some("testing123".into());
        tun.radius_timeout = Duration::from_millis(200);
        tun.radius_retries = 1;
    })
    .await;
    let out = py(
        t2.starttls(),
        "starttls",
        login("ann", "radpw", "ann@example.net"),
    )
    .await;
    assert_eq!(
        out[3], "454 4.7.0 Temporary authentication failure",
        "{out:?}"
    );
}
