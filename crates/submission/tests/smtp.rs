//! The submission server driven by real clients (swaks, curl, Python's smtplib) and by
//! raw sockets for what clients cannot be made to do. Each negative case checks its
//! precise reply and that the server goes on serving.

mod common;

use std::time::Duration;

use common::{py, queue_id, run, start, swaks, Raw};
use serde_json::json;

async fn assert_queued_whole(t: &common::TestServer, transcript: &str, login: &str) -> String {
    let id = queue_id(transcript).unwrap_or_else(|| panic!("no queue id in:\n{transcript}"));
    let m = t
        .store
        .queue_message(&id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{id} not in the queue"));
    assert_eq!(m.login, login);
    let body = t.store.queue_body(&id).await.unwrap().unwrap();
    assert_eq!(body.len() as i64, m.size);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(text.starts_with("Received: from "), "{text}");
    assert!(
        text.contains(&format!("(authenticated as {login})")),
        "{text}"
    );
    assert!(text.contains(" with ESMTPSA id "), "{text}");
    assert_eq!(m.spool_path, None, "the store row is the one copy");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_auth_plain_login_implicit_tls_and_pipelining() {
    let t = start(|_, _| {}).await;
    let port = t.starttls().to_string();
    let tls_port = t.tls().to_string();
    for auth in ["PLAIN", "LOGIN"] {
        let (ok, out) = swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "--auth",
            auth,
            "--auth-user",
            "ann",
            "--auth-password",
            "pw",
            "--from",
            "ann@example.net",
            "--to",
            "carol@example.org",
        ])
        .await;
        assert!(ok, "{auth}: {out}");
        assert!(
            out.contains("250 STARTTLS") || out.contains("250-STARTTLS"),
            "{out}"
        );
        assert!(
            out.contains("250 AUTH PLAIN LOGIN") || out.contains("250-AUTH PLAIN LOGIN"),
            "{out}"
        );
        let text = assert_queued_whole(&t, &out, "ann").await;
        assert!(text.contains("(using TLSv1."), "{text}");
        assert!(text.contains("for <carol@example.org>"), "{text}");
    }
    // Implicit TLS (RFC 8314) on the second port.
    let (ok, out) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &tls_port,
        "--tlsc",
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob",
        "--auth-password",
        "pw2",
        "--from",
        "sales@bob.example",
        "--to",
        "x@example.org",
    ])
    .await;
    assert!(ok, "{out}");
    assert_queued_whole(&t, &out, "bob").await;
    // PIPELINING, and two recipients.
    let (ok, out) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--tls",
        "--pipeline",
        "--auth",
        "LOGIN",
        "--auth-user",
        "ann",
        "--auth-password",
        "pw",
        "--from",
        "ann@example.net",
        "--to",
        "a@example.org,b@example.org",
    ])
    .await;
    assert!(ok, "{out}");
    let id = queue_id(&out).unwrap();
    assert_eq!(
        t.store
            .queue_message(&id)
            .await
            .unwrap()
            .unwrap()
            .recipients
            .len(),
        2
    );
    // IPv6 listener.
    if let Some(v6) = t.starttls_v6() {
        let (ok, out) = swaks(&[
            "--server",
            "::1",
            "--port",
            &v6.port().to_string(),
            "-6",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "ann",
            "--auth-password",
            "pw",
            "--from",
            "ann@example.net",
            "--to",
            "v6@example.org",
        ])
        .await;
        assert!(ok, "{out}");
        assert!(queue_id(&out).is_some(), "{out}");
    }
    let m = submission::metrics();
    assert!(
        m.messages_accepted
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4
    );
    assert!(m
        .render()
        .contains("portcullis_submission_messages_accepted_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_smtp_with_ssl_reqd_and_smtps() {
    let t = start(|_, _| {}).await;
    let mail = b"From: Ann <ann@example.net>\r\nTo: dan@example.org\r\nSubject: curl\r\n\r\nHello from curl.\r\n";
    for url in [
        format!("smtp://127.0.0.1:{}", t.starttls()),
        format!("smtps://127.0.0.1:{}", t.tls()),
    ] {
        let args: Vec<String> = [
            "-sS",
            "-v",
            "--ssl-reqd",
            "-k",
            "--url",
            &url,
            "--user",
            "ann:pw",
            "--mail-from",
            "ann@example.net",
            "--mail-rcpt",
            "dan@example.org",
            "-T",
            "-",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (ok, out) = run("curl", &args, Some(mail)).await;
        assert!(ok, "{url}: {out}");
        let text = assert_queued_whole(&t, &out, "ann").await;
        assert!(
            text.contains("Subject: curl\r\n") && text.ends_with("Hello from curl.\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nDate: ") && text.contains("\r\nMessage-ID: <"),
            "added when missing: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_is_served_too() {
    let t = start(|_, _| {}).await;
    let url = format!("smtp://127.0.0.1:{}", t.starttls());
    let args: Vec<String> = [
        "-sS",
        "--ssl-reqd",
        "-k",
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "--url",
        &url,
        "--user",
        "ann:pw",
        "--mail-from",
        "ann@example.net",
        "--mail-rcpt",
        "dan@example.org",
        "-T",
        "-",
        "-v",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, out) = run("curl", &args, Some(b"Subject: t\r\n\r\nx\r\n")).await;
    assert!(ok, "{out}");
    let text = assert_queued_whole(&t, &out, "ann").await;
    assert!(
        text.contains("(using TLSv1.2 with cipher TLS_ECDHE_"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_sends_and_sees_precise_refusals() {
    let t = start(|_, _| {}).await;
    let msg = "From: ann@example.net\r\nSubject: py\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <own@x>\r\n\r\nhi\r\n";
    let out = py(
        t.starttls(),
        "starttls",
        json!([
            ["ehlo"],
            ["starttls"],
            ["ehlo"],
            ["login", ["ann", "pw"]],
            ["sendmail", ["ann@example.net", ["e@example.org"], msg]]
        ]),
    )
    .await;
    assert_eq!(out.last().map(String::as_str), Some("SENT"), "{out:?}");
    let q = t.store.list_queue(100).await.unwrap();
    let body = t.store.queue_body(&q[0].id).await.unwrap().unwrap();
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        text.matches("Message-ID:").count(),
        1,
        "kept the client's: {text}"
    );

    // AUTH and MAIL before TLS; relay without AUTH; wrong password; unknown user.
    let out = py(
        t.starttls(),
        "plain",
        json!([
            ["ehlo"],
            ["cmd", "AUTH PLAIN AGFubgBwdw=="],
            ["cmd", "MAIL FROM:<ann@example.net>"]
        ]),
    )
    .await;
    assert_eq!(
        out[1], "530 5.7.0 Must issue a STARTTLS command first",
        "{out:?}"
    );
    assert_eq!(
        out[2], "530 5.7.0 Must issue a STARTTLS command first",
        "{out:?}"
    );
    let out = py(
        t.starttls(),
        "starttls",
        json!([
            ["ehlo"],
            ["starttls"],
            ["ehlo"],
            ["cmd", "MAIL FROM:<ann@example.net>"],
            ["auth_plain", ["ann", "nope"]],
            ["auth_plain", ["nobody", "pw"]]
        ]),
    )
    .await;
    assert_eq!(out[3], "530 5.7.0 Authentication required", "{out:?}");
    assert_eq!(out[4], "535 5.7.8 Error: authentication failed", "{out:?}");
    assert_eq!(out[5], out[4], "unknown user looks the same");

    // Sender not owned, too many recipients, oversized (SIZE and while reading DATA).
    let mut steps = vec![
        json!(["ehlo"]),
        json!(["starttls"]),
        json!(["ehlo"]),
        json!(["login", ["ann", "pw"]]),
    ];
    steps.push(json!(["cmd", "MAIL FROM:<ceo@bank.example>"]));
    steps.push(json!(["cmd", "MAIL FROM:<ann@example.net> SIZE=10000000"]));
    steps.push(json!(["cmd", "MAIL FROM:<ann@example.net>"]));
    for i in 0..6 {
        steps.push(json!(["cmd", format!("RCPT TO:<r{i}@example.org>")]));
    }
    steps.push(json!(["cmd", "DATA"]));
    steps.push(json!(["raw", format!("{}\r\n.\r\n", "x".repeat(70_000))]));
    steps.push(json!(["cmd", "NOOP"]));
    let out = py(t.starttls(), "starttls", json!(steps)).await;
    assert_eq!(
        out[4], "553 5.7.1 <ceo@bank.example>: Sender address rejected: not owned by user ann",
        "{out:?}"
    );
    assert_eq!(
        out[5], "552 5.3.4 Error: message size exceeds fixed limit",
        "{out:?}"
    );
    assert_eq!(out[6], "250 2.1.0 Ok");
    assert_eq!(out[11], "250 2.1.5 Ok");
    assert_eq!(out[12], "452 4.5.3 Error: too many recipients", "{out:?}");
    assert_eq!(out[13], "354 2.0.0 End data with <CR><LF>.<CR><LF>");
    assert_eq!(
        out[14], "552 5.3.4 Error: message size exceeds fixed limit",
        "{out:?}"
    );
    assert_eq!(out[15], "250 2.0.0 Ok", "session goes on: {out:?}");

    // Bare-LF smuggling: refused, and the smuggled second message never runs.
    let before = t.store.queue_len().await.unwrap();
    let out = py(
        t.starttls(),
        "starttls",
        json!([["ehlo"], ["starttls"], ["ehlo"], ["login", ["ann", "pw"]], ["cmd", "MAIL FROM:<ann@example.net>"],
               ["cmd", "RCPT TO:<a@example.org>"], ["cmd", "DATA"],
               ["raw", "Subject: a\r\n\r\nhi\n.\nMAIL FROM:<ann@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nevil\r\n.\r\n"],
               ["cmd", "NOOP"]]),
    )
    .await;
    assert_eq!(out[7], "550 5.5.2 Error: bare <LF> received", "{out:?}");
    assert_eq!(out[8], "250 2.0.0 Ok", "{out:?}");
    assert_eq!(t.store.queue_len().await.unwrap(), before, "nothing queued");
    // VRFY.
    let out = py(
        t.starttls(),
        "plain",
        json!([["ehlo"], ["cmd", "VRFY ann"]]),
    )
    .await;
    assert!(out[1].starts_with("252 2.0.0"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_limit_applies_per_login() {
    let t = start(|c, _| c.submission.limits.messages_per_hour = 2).await;
    let send = |login: &'static str, pw: &'static str, from: &'static str| {
        let port = t.starttls();
        async move {
            py(
                port,
                "starttls",
                json!([
                    ["ehlo"],
                    ["starttls"],
                    ["ehlo"],
                    ["login", [login, pw]],
                    ["cmd", format!("MAIL FROM:<{from}>")]
                ]),
            )
            .await
        }
    };
    for _ in 0..2 {
        let (ok, out) = swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &t.starttls().to_string(),
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "ann",
            "--auth-password",
            "pw",
            "--from",
            "ann@example.net",
            "--to",
            "x@example.org",
        ])
        .await;
        assert!(ok, "{out}");
    }
    let out = send("ann", "pw", "ann@example.net").await;
    assert_eq!(
        out[4], "450 4.7.1 Error: hourly message limit reached for ann, try again later",
        "{out:?}"
    );
    let out = send("bob", "pw2", "bob@bob.example").await;
    assert_eq!(out[4], "250 2.1.0 Ok", "other logins unaffected: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_the_login_and_suspended_cannot_log_in() {
    let t = start(|c, _| c.auth.max_failures = 3).await;
    let port = t.starttls();
    let mut steps = vec![json!(["ehlo"]), json!(["starttls"]), json!(["ehlo"])];
    for _ in 0..3 {
        steps.push(json!(["auth_plain", ["ann", "wrong"]]));
    }
    steps.push(json!(["auth_plain", ["ann", "pw"]]));
    let out = py(port, "starttls", json!(steps)).await;
    assert_eq!(
        &out[3..6],
        ["535 5.7.8 Error: authentication failed"; 3],
        "{out:?}"
    );
    assert_eq!(
        out[6], "454 4.7.0 Error: too many failed logins, try again later",
        "even the right password: {out:?}"
    );
    let out = py(
        port,
        "starttls",
        json!([
            ["ehlo"],
            ["starttls"],
            ["ehlo"],
            ["auth_plain", ["bob", "pw2"]]
        ]),
    )
    .await;
    assert_eq!(
        out[3], "235 2.7.0 Authentication successful",
        "another login from the same address: {out:?}"
    );

    // Suspend bob directly in the database (the CLI for it is another issue's).
    let script = format!("import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE subscribers SET suspended = 1 WHERE login = 'bob'\"); c.commit()", t.db.display().to_string());
    let (ok, msg) = run("python3", &["-c".to_string(), script], None).await;
    assert!(ok, "{msg}");
    let out = py(
        port,
        "starttls",
        json!([
            ["ehlo"],
            ["starttls"],
            ["ehlo"],
            ["auth_plain", ["bob", "pw2"]]
        ]),
    )
    .await;
    assert_eq!(out[3], "535 5.7.8 Error: authentication failed", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_precise_replies_and_others_are_served() {
    let t = start(|_, tun| {
        tun.idle_timeout = Duration::from_secs(2);
        tun.max_connections_per_ip = 4;
    })
    .await;
    let port = t.starttls();

    // A 1 MB command line: refused without buffering it, and the session goes on.
    let mut raw = Raw::connect(port).await;
    assert!(raw
        .reply()
        .await
        .unwrap()
        .starts_with("220 mail.test.example"));
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'A', 1024 * 1024));
    line.extend_from_slice(b"\r\nNOOP\r\n");
    raw.send(&line).await;
    assert_eq!(raw.reply().await.unwrap(), "500 5.5.2 Error: line too long");
    assert_eq!(raw.reply().await.unwrap(), "250 2.0.0 Ok");
    drop(raw);

    // Garbage instead of a TLS handshake, on 465 and after STARTTLS: the connection closes.
    let mut g = Raw::connect(t.tls()).await;
    g.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(g.line(Duration::from_secs(5)).await, None);
    let mut g = Raw::connect(port).await;
    g.reply().await.unwrap();
    g.send(b"EHLO x\r\nSTARTTLS\r\n").await;
    assert_eq!(g.reply().await.unwrap(), "250 STARTTLS");
    assert_eq!(g.reply().await.unwrap(), "220 2.0.0 Ready to start TLS");
    g.send(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 6, 7, 8])
        .await;
    assert_eq!(
        g.line(Duration::from_secs(5))
            .await
            .filter(|l| l.starts_with("2")),
        None
    );

    // A client that sends a byte now and then: cut by the idle timeout with 421 4.4.2.
    let mut slow = Raw::connect(port).await;
    slow.reply().await.unwrap();
    let started = std::time::Instant::now();
    let mut got = None;
    for b in b"NOOP NOOP NOOP NOOP" {
        if slow.stream.try_write(std::slice::from_ref(b)).is_err() {
            break;
        }
        if let Some(l) = slow.line(Duration::from_millis(400)).await {
            got = Some(l);
            break;
        }
    }
    assert_eq!(
        got.as_deref(),
        Some("421 4.4.2 mail.test.example Error: timeout exceeded")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The per-address connection limit.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = Raw::connect(port).await;
        assert!(c.reply().await.unwrap().starts_with("220 "));
        held.push(c);
    }
    let mut extra = Raw::connect(port).await;
    assert_eq!(
        extra.reply().await.unwrap(),
        "421 4.7.0 mail.test.example Error: too many connections from your address"
    );
    drop(held);
    drop(extra);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Too many bad commands end the session.
    let mut bad = Raw::connect(port).await;
    bad.reply().await.unwrap();
    bad.send(&b"BOGUS\r\n".repeat(25)).await;
    let mut last = String::new();
    while let Some(l) = bad.line(Duration::from_secs(5)).await {
        last = l;
    }
    assert_eq!(last, "421 4.7.0 Error: too many errors, closing connection");

    // And everyone else is still served.
    let (ok, out) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "ann",
        "--auth-password",
        "pw",
        "--from",
        "ann@example.net",
        "--to",
        "z@example.org",
    ])
    .await;
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_sessions() {
    let t = start(|_, _| {}).await;
    let port = t.starttls();
    // A session open across the reload.
    let mut open = Raw::connect(port).await;
    open.reply().await.unwrap();
    let pid = std::process::id().to_string();
    let (ok, msg) = run("kill", &["-HUP".to_string(), pid], None).await;
    assert!(ok, "{msg}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    open.send(b"NOOP\r\n").await;
    assert_eq!(open.reply().await.unwrap(), "250 2.0.0 Ok");
    let (ok, out) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "ann",
        "--auth-password",
        "pw",
        "--from",
        "ann@example.net",
        "--to",
        "z@example.org",
    ])
    .await;
    assert!(ok, "{out}");
}
