//! HTTPS with the configured certificate: the portal answers over TLS (rustls, ring),
//! session cookies get the `Secure` flag and HSTS is sent. Uses `curl`.

mod common;

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_https_with_the_configured_certificate() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: curl is not installed (apt-get install curl)");
        return;
    }
    let certdir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let cert = certdir.path().join("cert.pem");
    let key = certdir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (c2, k2) = (cert.clone(), key.clone());
    let p = common::start(move |c| {
        c.submission.tls_cert = Some(c2);
        c.submission.tls_key = Some(k2);
    })
    .await;
    let base = format!("https://127.0.0.1:{}", p.addr.port());
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = Command::new("curl")
                .args(["-sS", "-k", "-i", "--max-time", "20"])
                .args(&args)
                .output()
                .expect("curl runs");
            assert!(
                out.status.success(),
                "curl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        })
    };
    let jar = certdir.path().join("jar.txt").display().to_string();
    let health = run(vec![format!("{base}/healthz")]).await.unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health
        .to_ascii_lowercase()
        .contains("strict-transport-security: max-age="));
    let login = run(vec!["-c".into(), jar.clone(), format!("{base}/login")])
        .await
        .unwrap();
    let lower = login.to_ascii_lowercase();
    assert!(
        lower.contains("set-cookie: pc_login_csrf=") && lower.contains("; secure"),
        "{login}"
    );
    // Log in over TLS: the session cookie is Secure.
    let marker = r#"name="csrf" value=""#;
    let start = login.find(marker).unwrap() + marker.len();
    let csrf = &login[start..start + 64];
    let r = run(vec![
        "-b".into(),
        jar.clone(),
        "--data".into(),
        format!(
            "csrf={csrf}&login=alice&password={}",
            common::urlencode(common::PASSWORD)
        ),
        format!("{base}/login"),
    ])
    .await
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 303"), "{r}");
    let cookie = r
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: pc_customer=")
        })
        .expect("session cookie");
    assert!(
        cookie.contains("Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
    );
    // Plain HTTP to the TLS port gets no page.
    let plain = tokio::task::spawn_blocking({
        let url = format!("http://127.0.0.1:{}/healthz", p.addr.port());
        move || {
            Command::new("curl")
                .args(["-sS", "--max-time", "5", &url])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_path_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config::Config::default();
    cfg.submission.tls_cert = Some(dir.path().join("missing.pem"));
    cfg.submission.tls_key = Some(dir.path().join("missing.key"));
    cfg.portal.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let store = store::Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let err = portal::start(std::sync::Arc::new(cfg), store, vec![])
        .await
        .unwrap_err();
    assert!(err.starts_with("submission.tls_cert:"), "{err}");
}
