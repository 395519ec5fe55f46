//! A small async RADIUS client over UDP: PAP authentication against a list of servers
//! (the submission server's `radius` backend) and CoA/Disconnect requests to a NAS
//! (RFC 5176). Each request goes out with a Message-Authenticator, and a reply counts
//! only if its authenticators verify; anything else on the socket is ignored.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::attribute::Attribute;
use crate::crypto::{hide_password, random_authenticator, verify_response};
use crate::error::Error;
use crate::packet::{Code, Packet, MAX_LEN};

/// Why a client request has no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be encoded (e.g. a password over 128 bytes).
    #[error("cannot encode the RADIUS request: {0}")]
    Encode(#[from] Error),
    /// No server was given.
    #[error("no RADIUS server configured")]
    NoServers,
    /// Every server was tried, every attempt timed out or failed.
    #[error("no RADIUS server answered ({servers} tried, {attempts} attempts each){}", last.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    NoAnswer {
        servers: usize,
        attempts: u32,
        last: Option<String>,
    },
    /// A CoA or Disconnect call was given a packet that is neither.
    #[error("packet code {0:?} is not a CoA-Request or Disconnect-Request")]
    NotAChange(Code),
}

/// The NAS's answer to a CoA-Request or Disconnect-Request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoaOutcome {
    /// CoA-ACK or Disconnect-ACK.
    Ack,
    /// CoA-NAK or Disconnect-NAK, with its Error-Cause if the NAS gave one.
    Nak { error_cause: Option<u32> },
}

/// Sends `request` (already encoded, identifier `id`, authenticator `auth`) to
/// `server`, retransmitting unchanged up to `retries` times, and returns the first
/// reply whose identifier matches and whose authenticators verify.
async fn exchange(
    server: SocketAddr,
    secret: &[u8],
    request: &[u8],
    id: u8,
    auth: &[u8; 16],
    timeout: Duration,
    retries: u32,
) -> Result<Option<Packet>, std::io::Error> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // A connected socket only receives datagrams from the server.
    socket.connect(server).await?;
    let mut buf = vec![0u8; MAX_LEN];
    for _ in 0..=retries {
        socket.send(request).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => n,
            };
            let reply = &buf[..n];
            if reply.get(1) != Some(&id) || verify_response(reply, secret, auth).is_err() {
                continue;
            }
            if let Ok(p) = Packet::decode(reply) {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

fn random_id() -> u8 {
    random_authenticator()[0]
}

/// Authenticates `login` with PAP against `servers`, in order: each gets one attempt
/// plus `retries` retransmissions, each waiting `timeout`. Ok(true) is Access-Accept,
/// Ok(false) Access-Reject (or an Access-Challenge, which PAP cannot answer); Err when
/// no server answered with a reply that verifies.
pub async fn pap_authenticate(
    servers: &[SocketAddr],
    secret: &[u8],
    login: &str,
    password: &str,
    timeout: Duration,
    retries: u32,
) -> Result<bool, ClientError> {
    if servers.is_empty() {
        return Err(ClientError::NoServers);
    }
    let mut last = None;
    for server in servers {
        let auth = random_authenticator();
        let id = random_id();
        let mut request = Packet::new(Code::AccessRequest, id)
            .with(Attribute::UserName(login.to_string()))
            .with(Attribute::UserPassword(hide_password(
                password.as_bytes(),
                secret,
                &auth,
            )?))
            .with(Attribute::NasIdentifier("portcullis".into()))
            .with(Attribute::ServiceType(8)); // Authenticate-Only
        request.authenticator = auth;
        let bytes = request.encode_request(secret)?;
        match exchange(*server, secret, &bytes, id, &auth, timeout, retries).await {
            Ok(Some(reply)) => match reply.code {
                Code::AccessAccept => return Ok(true),
                Code::AccessReject | Code::AccessChallenge => return Ok(false),
                other => last = Some(format!("{server}: unexpected reply {other:?}")),
            },
            Ok(None) => last = Some(format!("{server}: timed out")),
            Err(e) => last = Some(format!("{server}: {e}")),
        }
    }
    Err(ClientError::NoAnswer {
        servers: servers.len(),
        attempts: retries + 1,
        last,
    })
}

/// Sends a CoA-Request or Disconnect-Request (`request`, whose identifier and
/// authenticator are filled in here) to the NAS and waits for its ACK or NAK, with
/// `retries` retransmissions each waiting `timeout`.
pub async fn change_of_authorization(
    nas: SocketAddr,
    secret: &[u8],
    request: &Packet,
    timeout: Duration,
    retries: u32,
) -> Result<CoaOutcome, ClientError> {
    let (ack, nak) = match request.code {
        Code::CoaRequest => (Code::CoaAck, Code::CoaNak),
        Code::DisconnectRequest => (Code::DisconnectAck, Code::DisconnectNak),
        other => return Err(ClientError::NotAChange(other)),
    };
    let mut request = request.clone();
    request.identifier = random_id();
    let bytes = request.encode_request(secret)?;
    let mut auth = [0u8; 16];
    auth.copy_from_slice(&bytes[4..20]);
    let last = match exchange(
        nas,
        secret,
        &bytes,
        request.identifier,
        &auth,
        timeout,
        retries,
    )
    .await
    {
        Ok(Some(reply)) if reply.code == ack => return Ok(CoaOutcome::Ack),
        Ok(Some(reply)) if reply.code == nak => {
            let error_cause = reply.find(|a| match a {
                Attribute::ErrorCause(c) => Some(*c),
                _ => None,
            });
            return Ok(CoaOutcome::Nak { error_cause });
        }
        Ok(Some(reply)) => format!("{nas}: unexpected reply {:?}", reply.code),
        Ok(None) => format!("{nas}: timed out"),
        Err(e) => format!("{nas}: {e}"),
    };
    Err(ClientError::NoAnswer {
        servers: 1,
        attempts: retries + 1,
        last: Some(last),
    })
}
