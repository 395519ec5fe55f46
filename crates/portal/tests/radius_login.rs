//! Customer login with `auth.backend = "radius"`: PAP against a RADIUS server (a
//! small fake one here, on a loopback UDP port), not the store's password hash.

mod common;

use std::net::SocketAddr;

use radius::{Attribute, Code, Packet};

const SECRET: &[u8] = b"radius-test-secret";

/// Accepts alice/radius-pw and zed/radius-pw; rejects everything else.
async fn fake_radius() -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(req) = Packet::decode(&buf[..n]) else {
                continue;
            };
            let user = req.user_name().unwrap_or("").to_string();
            let password = req
                .find(|a| match a {
                    Attribute::UserPassword(p) => Some(p.clone()),
                    _ => None,
                })
                .and_then(|h| radius::unhide_password(&h, SECRET, &req.authenticator).ok())
                .unwrap_or_default();
            let ok = (user == "alice" || user == "zed") && password == b"radius-pw";
            let code = if ok {
                Code::AccessAccept
            } else {
                Code::AccessReject
            };
            let reply = Packet::new(code, req.identifier)
                .encode_response(SECRET, &req.authenticator)
                .unwrap();
            let _ = sock.send_to(&reply, peer).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_log_in_against_radius() {
    let server = fake_radius().await;
    let p = common::start(move |c| {
        c.auth.backend = config::AuthBackend::Radius;
        c.auth.radius_servers = vec![server];
        c.auth.radius_secret = Some(String::from_utf8_lossy(SECRET).into_owned());
    })
    .await;
    let mut c = p.client();
    let r = c.login("/login", &[("login", "alice"), ("password", "radius-pw")]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(c.get("/").body.contains(r#"data-state="blocked""#));
    // The password is RADIUS's business: the portal does not offer to change it.
    let page = c.get("/password");
    assert!(page.body.contains("managed with your internet account"));
    let r = c.post_form(
        "/password",
        &[
            ("csrf", &page.csrf()),
            ("current", "radius-pw"),
            ("new", "0123456789a"),
            ("confirm", "0123456789a"),
        ],
    );
    assert_eq!(r.status, 400);
    // The store's hash does not count, a wrong password is refused, and RADIUS
    // accepting someone who is not a subscriber does not make them one.
    let mut d = p.client();
    assert_eq!(
        d.login(
            "/login",
            &[("login", "alice"), ("password", common::PASSWORD)]
        )
        .status,
        401
    );
    assert_eq!(
        d.login("/login", &[("login", "bob"), ("password", "radius-pw")])
            .status,
        401
    );
    assert_eq!(
        d.login("/login", &[("login", "zed"), ("password", "radius-pw")])
            .status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_radius_server_is_a_clear_503() {
    // A port nobody answers on.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let p = common::start(move |c| {
        c.auth.backend = config::AuthBackend::Radius;
        c.auth.radius_servers = vec![addr];
        c.auth.radius_secret = Some("s".into());
    })
    .await;
    let mut c = p.client();
    let r = c.login("/login", &[("login", "alice"), ("password", "x")]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("login service is unavailable"));
    drop(silent);
}
