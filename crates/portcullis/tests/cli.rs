//! The operator CLI, driven as a person would: the real binary, a config file, CSV
//! files, and the store read back through the CLI itself.

mod common;

use std::time::Duration;

use common::{one_line, Env};

#[test]
fn config_check_default_and_errors() {
    let env = Env::new("");
    assert!(env.ok(&["config", "check"]).contains("portcullis.toml: ok"));

    // The printed default parses back.
    let default = env.ok(&["config", "default"]);
    let p = env.write("default.toml", &default);
    let out = std::process::Command::new(common::BIN)
        .args(["--config", p.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // No file at all: built-in defaults (run where there is no portcullis.toml).
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["config", "check"])
        .current_dir(empty.path())
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("built-in defaults"));

    let bad = env.write(
        "bad.toml",
        "[network]\ndynamic_pools = [\"10.0.0.0/8\"]\nstatic_pools = [\"10.2.0.0/16\"]\n",
    );
    let out = std::process::Command::new(common::BIN)
        .args(["--config", bad.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let line = one_line(&out);
    assert!(line.contains("bad.toml: network.static_pools: dynamic pool 10.0.0.0/8 overlaps static pool 10.2.0.0/16"), "{line}");

    let typo = env.write("typo.toml", "[submission]\nlisten_tls = [\"0.0.0.0\"]\n");
    let out = std::process::Command::new(common::BIN)
        .args(["--config", typo.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    let line = one_line(&out);
    assert!(
        line.contains("typo.toml line 2: submission.listen_tls:"),
        "{line}"
    );

    let out = std::process::Command::new(common::BIN)
        .args(["--config", "/nonexistent/p.toml", "config", "check"])
        .output()
        .unwrap();
    assert!(one_line(&out).contains("cannot read config file /nonexistent/p.toml"));

    // Through the environment variable too.
    let out = std::process::Command::new(common::BIN)
        .args(["config", "check"])
        .env("PORTCULLIS_CONFIG", &typo)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn subscribers_add_show_list_and_bad_input_changes_nothing() {
    let env = Env::new("");
    env.ok(&[
        "subscriber",
        "add",
        "alice",
        "--password",
        "pw1",
        "--email",
        "alice@example.net",
    ]);
    let out = env.run_stdin(
        &[
            "subscriber",
            "add",
            "bob",
            "--password-stdin",
            "--plan",
            "static",
            "--static-ip",
            "198.51.100.7",
        ],
        "s3cret\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bob = env.json(&["subscriber", "show", "bob"]);
    assert_eq!(bob["subscriber"]["plan"], "static");
    assert_eq!(bob["subscriber"]["port25"], "exempt");
    assert_eq!(bob["subscriber"]["static_ips"][0], "198.51.100.7");
    assert_eq!(bob["leases"][0]["source"], "static");
    assert!(
        bob["subscriber"].get("password_hash").is_none(),
        "hashes never leave the store"
    );

    let before = env.json(&["subscriber", "list"]);
    assert_eq!(before.as_array().unwrap().len(), 2);

    let cases: &[(&[&str], &str)] = &[
        (
            &["subscriber", "show", "nobody"],
            "no subscriber with login 'nobody'",
        ),
        (
            &["subscriber", "add", "alice", "--password", "x"],
            "subscriber 'alice' already exists",
        ),
        (
            &[
                "subscriber",
                "add",
                "carol",
                "--password",
                "x",
                "--plan",
                "static",
                "--static-ip",
                "300.1.1.1",
            ],
            "'300.1.1.1' is not an IP address or CIDR prefix",
        ),
        (
            &[
                "subscriber",
                "add",
                "carol",
                "--password",
                "x",
                "--plan",
                "static",
                "--static-ip",
                "203.0.113.5",
            ],
            "static address 203.0.113.5 is outside the static pools (198.51.100.0/24)",
        ),
        (
            &[
                "subscriber",
                "add",
                "carol",
                "--password",
                "x",
                "--plan",
                "static",
                "--static-ip",
                "198.51.100.7",
            ],
            "address 198.51.100.7 is already assigned to 'bob'",
        ),
        (
            &[
                "subscriber",
                "add",
                "carol",
                "--password",
                "x",
                "--static-ip",
                "198.51.100.8",
            ],
            "a dynamic subscriber has no static address",
        ),
        (
            &[
                "subscriber",
                "add",
                "carol",
                "--password",
                "x",
                "--plan",
                "static",
            ],
            "needs at least one static address",
        ),
        (
            &["subscriber", "add", "bad login", "--password", "x"],
            "login 'bad login' is invalid",
        ),
        (&["subscriber", "add", "carol"], "a password is required"),
        (
            &[
                "subscriber",
                "add",
                "carol",
                "--password",
                "x",
                "--plan",
                "business",
            ],
            "plan 'business' is invalid",
        ),
        (
            &[
                "subscriber",
                "add",
                "carol",
                "--password",
                "x",
                "--email",
                "nope",
            ],
            "'nope' is not an email address",
        ),
        (
            &["subscriber", "set-plan", "nobody", "dynamic"],
            "no subscriber with login 'nobody'",
        ),
        (
            &["subscriber", "allow-sender", "alice", "not an address"],
            "is neither an address",
        ),
    ];
    for (args, want) in cases {
        let line = env.fails(args);
        assert!(
            line.starts_with("portcullis: ") && line.contains(want),
            "{args:?}: {line}"
        );
    }
    assert_eq!(
        env.json(&["subscriber", "list"]),
        before,
        "failed commands changed nothing"
    );

    env.ok(&["subscriber", "allow-sender", "alice", "@Shop.Example"]);
    assert_eq!(
        env.json(&["subscriber", "show", "alice"])["subscriber"]["allowed_senders"][0],
        "@shop.example"
    );
    let text = env.ok(&["subscriber", "list"]);
    assert!(text.lines().next().unwrap().starts_with("LOGIN"), "{text}");
    assert!(text.contains("198.51.100.7"));
}

#[test]
fn set_plan_moves_between_exempt_and_blocked() {
    let env = Env::new("");
    env.ok(&["subscriber", "add", "dora", "--password", "pw"]);
    env.ok(&[
        "subscriber",
        "set-plan",
        "dora",
        "static",
        "--static-ip",
        "198.51.100.20",
    ]);
    let s = env.json(&["subscriber", "show", "dora"]);
    assert_eq!(s["subscriber"]["port25"], "exempt");
    assert_eq!(env.json(&["whois", "198.51.100.20"])["login"], "dora");
    env.ok(&["subscriber", "set-plan", "dora", "dynamic"]);
    assert_eq!(
        env.json(&["subscriber", "show", "dora"])["subscriber"]["port25"],
        "blocked"
    );
    env.fails(&["whois", "198.51.100.20"]);
}

#[test]
fn optout_and_port25_flow_is_audited() {
    let env = Env::new("");
    env.ok(&["subscriber", "add", "erin", "--password", "pw"]);
    assert!(env
        .fails(&["optout", "approve", "erin"])
        .contains("there is no pending opt-out request (state blocked)"));
    assert!(env
        .fails(&["optout", "request", "erin"])
        .contains("--accept-aup"));
    env.ok(&[
        "optout",
        "request",
        "erin",
        "--accept-aup",
        "--reason",
        "own mail server",
    ]);
    assert_eq!(env.json(&["optout", "list"])[0]["login"], "erin");
    assert!(env
        .ok(&["optout", "approve", "erin"])
        .contains("optout-pending -> opted-out"));
    assert!(env
        .ok(&["port25", "block", "erin", "--reason", "spam complaint"])
        .contains("opted-out -> reinstated"));
    assert!(env
        .fails(&["optout", "request", "erin", "--accept-aup"])
        .contains("only an operator can re-open it"));
    assert!(env
        .fails(&["port25", "unblock", "erin", "--reason", " "])
        .contains("--reason"));
    env.ok(&["port25", "unblock", "erin", "--reason", "cleaned up"]);

    let audit = env.json(&["audit", "erin"]);
    let steps: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [
        ("subscriber-add", "blocked"),
        ("optout-request", "optout-pending"),
        ("optout-approve", "opted-out"),
        ("port25-block", "reinstated"),
        ("port25-unblock", "opted-out"),
    ];
    assert_eq!(steps, want.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(audit[3]["reason"], "spam complaint");
    assert!(audit[3]["actor"].as_str().unwrap().starts_with("operator:"));
    assert!(env.fails(&["audit", "nobody"]).contains("no subscriber"));
}

#[test]
fn subscriber_import_names_the_bad_line_and_imports_nothing() {
    let env = Env::new("");
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0GtkYxW2lYNyh6M3dZ0fdCbKSO3JvzRvfr2JSDU5+Pg";
    let bad_files: &[(&str, &str)] = &[
        ("login,plan,static_ip,email,password_hash\nann,dynamic,,,\nbea,static,999.1.1.1,,\n", "line 3: '999.1.1.1' is not an IP address"),
        ("login,plan,static_ip,email,password_hash\nann,dynamic,,,\nann,dynamic,,,\n", "line 3: login 'ann' repeats line 2"),
        ("login,plan,static_ip,email,password_hash\nann,dynamic,,,\nbea,dynamic,,\n", "line 3: expected 5 fields, found 4"),
        ("login,plan,static_ip,email,password_hash\nann,dynamic,,,notahash\n", "line 2: password_hash: not a PHC password hash"),
        ("login,plan,static_ip,email,password_hash\nann,static,10.9.9.9,,\n", "line 2: static address 10.9.9.9 is outside the static pools"),
        ("login,plan,static_ip,email,password_hash\nann,static,198.51.100.1,,\nbea,static,198.51.100.0/30,,\n", "line 3: static address 198.51.100.0/30 is also given on line 2"),
        ("login,plan,static_ip,email\nann,weekly,,\n", "line 2: plan 'weekly' is invalid"),
        ("user,plan\nann,dynamic\n", "line 1: header lacks column 'login'"),
    ];
    for (i, (text, want)) in bad_files.iter().enumerate() {
        let f = env.write(&format!("bad{i}.csv"), text);
        let line = env.fails(&["subscriber", "import", f.to_str().unwrap()]);
        assert!(
            line.contains(&format!("bad{i}.csv {want}")),
            "file {i}: {line}"
        );
    }
    assert_eq!(
        env.json(&["subscriber", "list"]).as_array().unwrap().len(),
        0,
        "nothing imported"
    );

    env.ok(&["subscriber", "add", "zed", "--password", "pw"]);
    let f = env.write(
        "dup.csv",
        "login,plan,static_ip,email,password_hash\nann,dynamic,,,\nzed,dynamic,,,\n",
    );
    assert!(env
        .fails(&["subscriber", "import", f.to_str().unwrap()])
        .contains("dup.csv line 3: subscriber 'zed' already exists"));

    let good = format!(
        "login,plan,static_ip,email,password_hash\nann,dynamic,,ann@example.net,\"{hash}\"\nbea,static,198.51.100.9,,\n\"cy,d\",dynamic,,,\ncyd,,,,\n"
    );
    let f = env.write("good.csv", &good);
    let line = env.fails(&["subscriber", "import", f.to_str().unwrap()]);
    assert!(
        line.contains("line 4: login 'cy,d' is invalid"),
        "quoted fields are parsed as CSV: {line}"
    );
    let f = env.write("good.csv", &good.replace("\"cy,d\",dynamic,,,\n", ""));
    assert!(env
        .ok(&["subscriber", "import", f.to_str().unwrap()])
        .contains("imported 3 subscribers"));
    let bea = env.json(&["subscriber", "show", "bea"]);
    assert_eq!(bea["subscriber"]["port25"], "exempt");
    assert_eq!(
        env.json(&["whois", "198.51.100.9", "--at", "2001-01-01T00:00:00Z"])["login"],
        "bea",
        "imported static addresses count from the start"
    );
}

#[test]
fn lease_import_and_whois_at_time() {
    let env = Env::new("");
    env.ok(&["subscriber", "add", "ann", "--password", "pw"]);
    env.ok(&["subscriber", "add", "bea", "--password", "pw"]);
    let f = env.write(
        "leases.csv",
        "login,ip,start,end\nann,100.64.1.1,2026-11-01T08:00:00Z,2026-11-01T20:00:00Z\nbea,100.64.1.1,2026-11-01T20:00:00Z,\nann,2001:db8:1200::/56,2026-11-01T08:00:00+01:00,\n",
    );
    assert!(env
        .ok(&["lease", "import", f.to_str().unwrap()])
        .contains("imported 3 leases"));
    let who = |ip: &str, at: &str| {
        env.json(&["whois", ip, "--at", at])["login"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(who("100.64.1.1", "2026-11-01T08:00:00Z"), "ann");
    assert_eq!(who("100.64.1.1", "2026-11-01T19:59:59Z"), "ann");
    assert_eq!(who("100.64.1.1", "2026-11-01T20:00:00Z"), "bea");
    assert_eq!(who("2001:db8:1200:7::25", "2026-11-02T00:00:00Z"), "ann");
    assert!(env
        .ok(&["whois", "100.64.1.1", "--at", "2026-11-01T12:00:00Z"])
        .contains("100.64.1.1 at 2026-11-01T12:00:00Z: ann"));

    let line = env.fails(&["whois", "100.64.1.1", "--at", "2026-10-01T00:00:00Z"]);
    assert_eq!(
        line,
        "portcullis: nobody held 100.64.1.1 at 2026-10-01T00:00:00Z"
    );
    assert!(env
        .fails(&["whois", "100.64.1.300"])
        .contains("'100.64.1.300' is not an IP address"));
    assert!(env
        .fails(&["whois", "100.64.1.1", "--at", "noon"])
        .contains("--at: 'noon' is not an RFC 3339 time"));

    assert_eq!(
        env.json(&["lease", "list", "100.64.1.1"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        env.json(&["lease", "list", "ann"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(env.json(&["lease", "list"]).as_array().unwrap().len(), 3);

    let bad: &[(&str, &str)] = &[
        ("login,ip,start,end\nann,100.64.1.2,2026-11-01T08:00:00Z,\nzed,100.64.1.3,2026-11-01T08:00:00Z,\n", "line 3: no subscriber with login 'zed'"),
        ("login,ip,start,end\nann,100.64.1.2,yesterday,\n", "line 2: start: 'yesterday' is not an RFC 3339 time"),
        ("login,ip,start,end\nann,100.64.1.2,2026-11-01T08:00:00Z,2026-11-01T07:00:00Z\n", "line 2: end is not after start"),
        ("login,ip,start,end\nann,100.64.1.0/33,2026-11-01T08:00:00Z,\n", "line 2: '100.64.1.0/33': prefix length must be at most 32"),
    ];
    for (i, (text, want)) in bad.iter().enumerate() {
        let f = env.write(&format!("bad{i}.csv"), text);
        let line = env.fails(&["lease", "import", f.to_str().unwrap()]);
        assert!(line.contains(want), "{line}");
    }
    assert_eq!(
        env.json(&["lease", "list"]).as_array().unwrap().len(),
        3,
        "nothing imported"
    );
}

#[test]
fn serve_is_ready_sees_cli_changes_within_a_second_and_stops_on_sigterm() {
    let env = Env::new("");
    let mut serve = env.serve();
    env.ok(&["subscriber", "add", "fay", "--password", "pw"]);
    let started = std::time::Instant::now();
    env.ok(&["optout", "request", "fay", "--accept-aup"]);
    serve
        .wait_for("kind=port25.changed login=fay", Duration::from_secs(5))
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "event seen {:?} after the CLI change",
        started.elapsed()
    );
    serve.signal("TERM");
    let status = serve.child.wait().unwrap();
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}\n{}",
        serve.log()
    );
    assert!(serve.log().contains("SIGTERM: stopping"));
}

#[test]
fn serve_refuses_a_bad_config_with_one_line() {
    let env = Env::new("[enforce]\ntable = \"1bad\"\n");
    let out = env.run(&["serve"]);
    assert!(!out.status.success());
    assert!(one_line(&out).contains("enforce.table"));
}

#[test]
fn enforce_render_loads_in_nft_check_mode_and_pbl_lists_pools() {
    let env = Env::new("[network]\ndynamic_pools = [\"100.64.0.0/10\", \"2001:db8:8000::/33\"]\nstatic_pools = [\"198.51.100.0/24\"]\n");
    env.ok(&["subscriber", "add", "gus", "--password", "pw"]);
    env.ok(&[
        "subscriber",
        "add",
        "hal",
        "--password",
        "pw",
        "--plan",
        "static",
        "--static-ip",
        "198.51.100.30",
    ]);
    let f = env.write(
        "l.csv",
        "login,ip,start,end\ngus,100.64.3.3,2026-11-01T00:00:00Z,\n",
    );
    env.ok(&["lease", "import", f.to_str().unwrap()]);
    let blocked = env.ok(&["enforce", "render"]);
    assert!(
        !blocked.contains("100.64.3.3"),
        "a blocked subscriber's address is not allowed out"
    );
    env.ok(&["optout", "request", "gus", "--accept-aup"]);
    env.ok(&["optout", "approve", "gus"]);
    env.ok(&["port25", "block", "hal", "--reason", "spam"]);
    let ruleset = env.ok(&["enforce", "render"]);
    assert!(ruleset.contains("table inet portcullis"), "{ruleset}");
    assert!(
        ruleset.contains("100.64.3.3"),
        "opted-out lease allowed: {ruleset}"
    );
    assert!(
        ruleset.contains("198.51.100.30"),
        "reinstated static address blocked: {ruleset}"
    );
    assert!(ruleset.contains("2001:db8:8000::/33"));

    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok()
    {
        // Check mode: parsed and validated by the kernel, never committed.
        let mut nft = std::process::Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        nft.stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let out = nft.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -c rejected the ruleset: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let pbl = env.ok(&["enforce", "export-pbl"]);
    assert!(pbl.contains("100.64.0.0/10"), "{pbl}");
    assert!(
        !pbl.contains("198.51.100"),
        "static pools are not in the policy block list"
    );
}

#[test]
fn operators_and_api_tokens_through_serve() {
    let port = common::free_port();
    let env = Env::new(&format!("[portal]\nlisten = [\"127.0.0.1:{port}\"]\n"));
    assert!(env
        .fails(&[
            "operator",
            "add",
            "ann",
            "--role",
            "boss",
            "--password",
            "long enough pw"
        ])
        .contains("role 'boss' is invalid"));
    assert!(env
        .fails(&[
            "operator",
            "add",
            "ann",
            "--role",
            "abuse",
            "--password",
            "short"
        ])
        .contains("at least 12 characters"));
    env.ok(&[
        "operator",
        "add",
        "ann",
        "--role",
        "abuse",
        "--password",
        "correct horse",
    ]);
    assert!(env
        .fails(&[
            "operator",
            "add",
            "ann",
            "--role",
            "admin",
            "--password",
            "another long one"
        ])
        .contains("ann"));
    assert_eq!(env.json(&["operator", "list"])[0]["role"], "abuse");
    let token = env.ok(&["operator", "token", "ann"]);
    let token = token.trim();
    assert_eq!(token.lines().count(), 1, "the token alone on stdout");
    assert!(env
        .fails(&["operator", "token", "nobody"])
        .contains("nobody"));
    env.ok(&["subscriber", "add", "ivy", "--password", "pw"]);

    let _serve = env.serve();
    let curl = |auth: Option<&str>| {
        let mut c = std::process::Command::new("curl");
        c.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/api/v1/subscribers/ivy"),
        ]);
        if let Some(t) = auth {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        String::from_utf8(c.output().unwrap().stdout).unwrap()
    };
    assert_eq!(curl(Some(token)), "200");
    assert_eq!(curl(None), "401");
    let metrics = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for family in [
        "portcullis_submission_sessions_total",
        "portcullis_radius_packets_total",
    ] {
        assert!(
            metrics.contains(family),
            "serve wires {family} into /metrics: {metrics}"
        );
    }
    assert_eq!(curl(Some("pct_0000")), "401");
    env.ok(&["operator", "remove", "ann"]);
    assert_eq!(
        curl(Some(token)),
        "401",
        "a removed operator's token stops working"
    );
    assert!(env
        .fails(&["operator", "remove", "ann"])
        .contains("operator 'ann'"));
}

#[test]
fn abuse_ingest_reinstates_an_opted_out_subscriber_once() {
    let env = Env::new("");
    env.ok(&[
        "subscriber",
        "add",
        "jo",
        "--password",
        "pw",
        "--email",
        "jo@example.net",
    ]);
    let f = env.write(
        "l.csv",
        "login,ip,start,end\njo,100.64.7.7,2026-11-01T00:00:00Z,\n",
    );
    env.ok(&["lease", "import", f.to_str().unwrap()]);
    env.ok(&["optout", "request", "jo", "--accept-aup"]);
    env.ok(&["optout", "approve", "jo"]);
    // Within the complaint window whatever day the test runs.
    let arrival = delivery::dsn::rfc5322_date(
        policy::Clock::now(&policy::SystemClock).minus(Duration::from_secs(3600)),
    );
    let arf = format!("From: abuse@bigmail.example\r\nTo: abuse@isp.example\r\nSubject: FW: spam report\r\nMessage-ID: <r1@bigmail.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: BigMail-FBL/1.0\r\nVersion: 1\r\nSource-IP: 100.64.7.7\r\nArrival-Date: {arrival}\r\nReported-Domain: example.net\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: jo@example.net\r\nTo: victim@bigmail.example\r\nSubject: cheap pills\r\nMessage-ID: <spam1@example.net>\r\n\r\nbuy now\r\n--b--\r\n");
    let f = env.write("report.eml", &arf);
    let report = env.json(&["abuse", "ingest", f.to_str().unwrap()]);
    assert_eq!(report["recorded"], 1, "{report}");
    assert_eq!(report["items"][0]["login"], "jo", "{report}");
    assert_eq!(
        env.json(&["subscriber", "show", "jo"])["subscriber"]["port25"],
        "reinstated"
    );
    let again = env.json(&["abuse", "ingest", f.to_str().unwrap()]);
    assert_eq!(
        again["duplicates"], 1,
        "the same report counts once: {again}"
    );
    assert_eq!(
        env.json(&["subscriber", "show", "jo"])["cases"][0]["status"],
        "open"
    );
    assert!(env
        .ok(&["subscriber", "show", "jo"])
        .contains("abuse cases:"));
    let cases = env.json(&["abuse", "cases", "jo"]);
    assert_eq!(cases[0]["evidence_count"], 1, "{cases}");
    assert!(env.ok(&["abuse", "cases"]).contains("jo"));

    let junk = env.write("junk.eml", "\u{0}\u{1}not a message at all");
    let line = env.fails(&["abuse", "ingest", junk.to_str().unwrap()]);
    assert!(
        line.contains("refused") || line.contains("nothing ingested"),
        "{line}"
    );
    assert!(env
        .fails(&["abuse", "ingest", "/nonexistent/x.eml"])
        .contains("/nonexistent/x.eml"));
    assert!(env
        .fails(&["abuse", "cases", "nobody"])
        .contains("no subscriber"));
}

#[test]
fn queue_and_dkim_commands() {
    let env = Env::new("");
    assert!(env.ok(&["queue", "list"]).starts_with("ID"));
    assert_eq!(env.json(&["queue", "list"]), serde_json::json!([]));
    assert!(env.fails(&["queue", "show", "NOSUCH"]).contains("NOSUCH"));
    assert!(env.fails(&["queue", "retry", "NOSUCH"]).contains("NOSUCH"));
    assert!(env
        .fails(&["queue", "delete", "NOSUCH", "--bounce"])
        .contains("NOSUCH"));
    env.ok(&["queue", "flush"]);

    let out = env.run(&[
        "dkim",
        "keygen",
        "isp.example",
        "s1",
        "--algorithm",
        "ed25519",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = String::from_utf8_lossy(&out.stdout);
    assert!(
        record.contains("v=DKIM1") && record.contains("k=ed25519") && record.contains("p="),
        "{record}"
    );
    let key = env.path("data/dkim/isp.example.s1.key");
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .contains("PRIVATE KEY"));
    assert!(env
        .fails(&["dkim", "keygen", "bad domain", "s1"])
        .contains("bad domain"));
    assert!(env
        .fails(&["dkim", "keygen", "isp.example", "s2", "--algorithm", "dsa"])
        .contains("dsa"));
}

#[test]
fn serve_suspends_a_login_whose_sending_looks_stolen() {
    let port = common::free_port();
    let env = Env::new(&format!(
        "[submission]\nlisten_starttls = [\"127.0.0.1:{port}\"]\nlisten_tls = []\nsender_policy = \"any\"\n[submission.limits]\nrecipients_per_message = 1000\nrecipients_per_day = 100000\n[delivery]\nsmart_host = \"127.0.0.1:9\"\n"
    ));
    env.ok(&["subscriber", "add", "kim", "--password", "kims-password"]);
    let mut serve = env.serve();
    // One message to 400 distinct recipients: far beyond any subscriber's own sending.
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", {port}, timeout=30)
s.starttls(context=ctx)
s.login("kim", "kims-password")
s.sendmail("kim@example.net", ["r%d@example.org" % i for i in range(400)], "Subject: hi\r\n\r\nhello\r\n")
s.quit()
"#
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut suspended = false;
    for _ in 0..50 {
        if env.json(&["subscriber", "show", "kim"])["subscriber"]["suspended"] == true {
            suspended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        suspended,
        "the anomaly watch suspended kim: {}",
        serve.log()
    );
    serve.wait_for("queued", Duration::from_secs(1)).unwrap();
    let login = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", {port}, timeout=30)
s.starttls(context=ctx)
try:
    s.login("kim", "kims-password"); print("ok")
except smtplib.SMTPAuthenticationError as e:
    print(e.smtp_code)
"#
    );
    let try_login = || {
        String::from_utf8(
            std::process::Command::new("python3")
                .args(["-c", &login])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    assert_eq!(
        try_login().trim(),
        "535",
        "a suspended login cannot authenticate"
    );
    // The operator lifts it.
    env.ok(&[
        "subscriber",
        "unsuspend",
        "kim",
        "--reason",
        "customer reset the password",
    ]);
    assert_eq!(try_login().trim(), "ok");
    assert!(env
        .json(&["audit", "kim"])
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["reason"] == "customer reset the password"));
}
