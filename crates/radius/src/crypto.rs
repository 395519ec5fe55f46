//! The cryptography of RADIUS, computed over wire bytes: Request and Response
//! Authenticators (RFC 2865 section 3, RFC 2866 section 3, RFC 5176 section 2.3),
//! Message-Authenticator (HMAC-MD5, RFC 3579 section 3.2), User-Password hiding
//! (RFC 2865 section 5.2) and CHAP verification (RFC 1994, RFC 2865 section 5.3).
//!
//! MD5 is what the protocol defines; the shared secret and the Message-Authenticator
//! are its only protection, which is why [`verify_request`] insists on the latter for
//! Access-Request (the 2024 Blast-RADIUS attack forges responses to requests without it).

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};

use crate::attribute::{kind, raw_attributes};
use crate::error::Error;
use crate::packet::{checked_len, Code, HEADER_LEN};

/// MD5 of the packet bytes followed by the secret: the Response Authenticator (with
/// the Request Authenticator in the header) and the computed Request Authenticator
/// (with 16 zero bytes in the header).
pub(crate) fn md5_packet(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(packet);
    h.update(secret);
    h.finalize().into()
}

/// Compares without an early exit, so timing does not reveal how many bytes matched.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 16 random bytes for an Access-Request authenticator (from the OS generator).
pub fn random_authenticator() -> [u8; 16] {
    let mut a = [0u8; 16];
    if getrandom::getrandom(&mut a).is_err() {
        // The OS generator does not fail on Linux; if it ever did, a time-derived
        // value still keeps identifiers of retried requests apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        a = md5_packet(&t.to_be_bytes(), b"portcullis");
    }
    a
}

/// The offset of the single Message-Authenticator's value, None when absent.
fn message_authenticator_offset(packet: &[u8]) -> Result<Option<usize>, Error> {
    let mut found = None;
    for raw in raw_attributes(packet) {
        let (offset, k, value) = raw?;
        if k == kind::MESSAGE_AUTHENTICATOR {
            if value.len() != 16 {
                return Err(Error::AttributeLength {
                    kind: k,
                    len: value.len(),
                });
            }
            if found.is_some() {
                return Err(Error::DuplicateMessageAuthenticator);
            }
            found = Some(offset + 2);
        }
    }
    Ok(found)
}

fn hmac_md5(secret: &[u8], packet: &[u8]) -> [u8; 16] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(packet);
    mac.finalize().into_bytes().into()
}

/// Fills in the Message-Authenticator of an encoded packet (if it has one), over the
/// packet as it stands (the caller has put the right authenticator in the header).
pub(crate) fn sign_message_authenticator(packet: &mut [u8], secret: &[u8]) -> Result<(), Error> {
    if let Some(at) = message_authenticator_offset(packet)? {
        packet[at..at + 16].fill(0);
        let mac = hmac_md5(secret, packet);
        packet[at..at + 16].copy_from_slice(&mac);
    }
    Ok(())
}

/// Checks the Message-Authenticator computed with `header_auth` in the authenticator
/// field; Ok(false) when the packet has none.
fn check_message_authenticator(
    packet: &[u8],
    secret: &[u8],
    header_auth: &[u8; 16],
) -> Result<bool, Error> {
    let Some(at) = message_authenticator_offset(packet)? else {
        return Ok(false);
    };
    let mut copy = packet.to_vec();
    copy[4..HEADER_LEN].copy_from_slice(header_auth);
    copy[at..at + 16].fill(0);
    if ct_eq(&hmac_md5(secret, &copy), &packet[at..at + 16]) {
        Ok(true)
    } else {
        Err(Error::BadMessageAuthenticator)
    }
}

fn header_authenticator(packet: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&packet[4..HEADER_LEN]);
    a
}

/// Verifies a received request with the client's `secret`.
///
/// Access-Request and Status-Server must carry a valid Message-Authenticator
/// (Blast-RADIUS); Accounting, CoA and Disconnect requests must have a valid
/// computed Request Authenticator, and a valid Message-Authenticator if they carry one.
pub fn verify_request(datagram: &[u8], secret: &[u8]) -> Result<(), Error> {
    let len = checked_len(datagram)?;
    let packet = &datagram[..len];
    let code = Code::from_u8(packet[0])?;
    if !code.is_request() {
        return Err(Error::NotARequest(packet[0]));
    }
    if code.has_computed_request_authenticator() {
        let mut zeroed = packet.to_vec();
        zeroed[4..HEADER_LEN].fill(0);
        if !ct_eq(&md5_packet(&zeroed, secret), &packet[4..HEADER_LEN]) {
            return Err(Error::BadAuthenticator);
        }
        check_message_authenticator(packet, secret, &[0; 16])?;
        Ok(())
    } else if check_message_authenticator(packet, secret, &header_authenticator(packet))? {
        Ok(())
    } else {
        Err(Error::MissingMessageAuthenticator)
    }
}

/// Verifies a received response to a request sent with `request_authenticator`:
/// the Response Authenticator always, and the Message-Authenticator, which is
/// required in Access-Accept, Access-Reject and Access-Challenge.
pub fn verify_response(
    datagram: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<(), Error> {
    let len = checked_len(datagram)?;
    let packet = &datagram[..len];
    let code = Code::from_u8(packet[0])?;
    let mut with_request = packet.to_vec();
    with_request[4..HEADER_LEN].copy_from_slice(request_authenticator);
    if !ct_eq(&md5_packet(&with_request, secret), &packet[4..HEADER_LEN]) {
        return Err(Error::BadAuthenticator);
    }
    // RFC 5176 computes the ACK/NAK Message-Authenticator over the Request
    // Authenticator, FreeRADIUS over zeros: accept either (both need the secret).
    let present = match check_message_authenticator(packet, secret, request_authenticator) {
        Err(Error::BadMessageAuthenticator) if code.signs_with_zero_vector() => {
            check_message_authenticator(packet, secret, &[0; 16])?
        }
        other => other?,
    };
    let required = matches!(
        code,
        Code::AccessAccept | Code::AccessReject | Code::AccessChallenge
    );
    if required && !present {
        return Err(Error::MissingMessageAuthenticator);
    }
    Ok(())
}

/// Hides a User-Password (RFC 2865 section 5.2): padded with zeros to a multiple of
/// 16 bytes, at most 128.
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Vec<u8>, Error> {
    if password.len() > 128 {
        return Err(Error::PasswordLength(password.len()));
    }
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut out = password.to_vec();
    out.resize(padded_len, 0);
    let mut prev: [u8; 16] = *request_authenticator;
    for chunk in out.chunks_mut(16) {
        let mut h = Md5::new();
        h.update(secret);
        h.update(prev);
        let b: [u8; 16] = h.finalize().into();
        for (c, k) in chunk.iter_mut().zip(b) {
            *c ^= k;
        }
        prev.copy_from_slice(chunk);
    }
    Ok(out)
}

/// Recovers a User-Password hidden by [`hide_password`], without the zero padding.
pub fn unhide_password(
    hidden: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Vec<u8>, Error> {
    if hidden.is_empty() || hidden.len() > 128 || !hidden.len().is_multiple_of(16) {
        return Err(Error::PasswordLength(hidden.len()));
    }
    let mut out = Vec::with_capacity(hidden.len());
    let mut prev: &[u8] = request_authenticator;
    for chunk in hidden.chunks(16) {
        let mut h = Md5::new();
        h.update(secret);
        h.update(prev);
        let b: [u8; 16] = h.finalize().into();
        out.extend(chunk.iter().zip(b).map(|(c, k)| c ^ k));
        prev = chunk;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// Checks a CHAP response: MD5(identifier, password, challenge) (RFC 1994 section
/// 4.1). The challenge is CHAP-Challenge, or the Request Authenticator when the
/// request has none (RFC 2865 section 2.2).
pub fn chap_verify(ident: u8, response: &[u8; 16], challenge: &[u8], password: &[u8]) -> bool {
    ct_eq(&chap_response(ident, challenge, password), response)
}

/// The CHAP response a peer knowing `password` sends.
pub fn chap_response(ident: u8, challenge: &[u8], password: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([ident]);
    h.update(password);
    h.update(challenge);
    h.finalize().into()
}
