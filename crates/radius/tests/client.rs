//! The async client against a stand-in server on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use radius::{
    change_of_authorization, pap_authenticate, unhide_password, Attribute, ClientError, CoaOutcome,
    Code, Packet,
};
use tokio::net::UdpSocket;

/// Answers Access-Requests: Accept when the password is "right". The first request
/// gets a forged reply first (wrong secret), which the client must ignore.
async fn fake_server(secret: &'static [u8]) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            radius::verify_request(&buf[..n], secret).unwrap();
            let req = Packet::decode(&buf[..n]).unwrap();
            let ok = req.attributes.iter().any(|a| match a {
                Attribute::UserPassword(h) => {
                    unhide_password(h, secret, &req.authenticator).unwrap() == b"right"
                }
                _ => false,
            });
            let forged = Packet::new(Code::AccessAccept, req.identifier)
                .encode_response(b"bad", &req.authenticator)
                .unwrap();
            sock.send_to(&forged, from).await.unwrap();
            let code = if ok {
                Code::AccessAccept
            } else {
                Code::AccessReject
            };
            let reply = Packet::new(code, req.identifier)
                .encode_response(secret, &req.authenticator)
                .unwrap();
            sock.send_to(&reply, from).await.unwrap();
        }
    });
    addr
}

#[tokio::test]
async fn pap_accept_reject_and_failover() {
    let good = fake_server(b"shared").await;
    // A bound socket that never answers, tried first.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let servers = [silent.local_addr().unwrap(), good];
    let t = Duration::from_millis(100);
    assert!(pap_authenticate(&servers, b"shared", "ann", "right", t, 1)
        .await
        .unwrap());
    assert!(!pap_authenticate(&servers, b"shared", "ann", "wrong", t, 0)
        .await
        .unwrap());
    // With the wrong secret every reply fails verification: no answer.
    let e = pap_authenticate(&[good], b"other", "ann", "right", t, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::NoAnswer {
                servers: 1,
                attempts: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        pap_authenticate(&[], b"s", "a", "b", t, 0).await,
        Err(ClientError::NoServers)
    ));
}

#[tokio::test]
async fn coa_ack_and_nak() {
    let nas = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = nas.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let (n, from) = nas.recv_from(&mut buf).await.unwrap();
            radius::verify_request(&buf[..n], b"nas").unwrap();
            let req = Packet::decode(&buf[..n]).unwrap();
            let reply = match req.code {
                Code::CoaRequest => {
                    Packet::new(Code::CoaNak, req.identifier).with(Attribute::ErrorCause(503))
                }
                _ => Packet::new(Code::DisconnectAck, req.identifier),
            };
            let bytes = reply.encode_response(b"nas", &req.authenticator).unwrap();
            nas.send_to(&bytes, from).await.unwrap();
        }
    });
    let t = Duration::from_millis(500);
    let coa = Packet::new(Code::CoaRequest, 0).with(Attribute::FilterId("port25-open".into()));
    assert_eq!(
        change_of_authorization(addr, b"nas", &coa, t, 0)
            .await
            .unwrap(),
        CoaOutcome::Nak {
            error_cause: Some(503)
        }
    );
    let dis = Packet::new(Code::DisconnectRequest, 0).with(Attribute::AcctSessionId("s".into()));
    assert_eq!(
        change_of_authorization(addr, b"nas", &dis, t, 0)
            .await
            .unwrap(),
        CoaOutcome::Ack
    );
    let bad = Packet::new(Code::AccessRequest, 0);
    assert!(matches!(
        change_of_authorization(addr, b"nas", &bad, t, 0).await,
        Err(ClientError::NotAChange(Code::AccessRequest))
    ));
}
