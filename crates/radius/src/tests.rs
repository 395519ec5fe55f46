//! Codec tests: RFC 2865 section 7 vectors, round trips, every error path, and a
//! fuzz-style loop of random and mutated datagrams.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::attribute::{kind, AcctStatusType, Attribute, Ipv6Prefix};
use crate::crypto::{chap_response, md5_packet, random_authenticator};
use crate::packet::{Code, Packet};
use crate::{chap_verify, hide_password, unhide_password, verify_request, verify_response, Error};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const RFC_SECRET: &[u8] = b"xyzzy5461";

/// RFC 2865 section 7.1: nemo/arctangent telnets to 192.168.1.3.
fn rfc_request() -> Vec<u8> {
    hex("01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
         93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8 01 10 05 06 00 00 00 03")
}

fn rfc_accept() -> Vec<u8> {
    hex("02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00
         0e 06 c0 a8 01 03")
}

#[test]
fn rfc2865_example_request_decodes_and_password_unhides() {
    let p = Packet::decode(&rfc_request()).unwrap();
    assert_eq!(p.code, Code::AccessRequest);
    assert_eq!(p.user_name(), Some("nemo"));
    assert_eq!(
        p.attributes[2],
        Attribute::NasIpAddress(Ipv4Addr::new(192, 168, 1, 16))
    );
    assert_eq!(p.attributes[3], Attribute::NasPort(3));
    let Attribute::UserPassword(hidden) = &p.attributes[1] else {
        panic!("no password")
    };
    assert_eq!(
        unhide_password(hidden, RFC_SECRET, &p.authenticator).unwrap(),
        b"arctangent"
    );
    assert_eq!(
        &hide_password(b"arctangent", RFC_SECRET, &p.authenticator).unwrap(),
        hidden
    );
    // Re-encoding reproduces the datagram byte for byte.
    assert_eq!(p.encode().unwrap(), rfc_request());
    // It has no Message-Authenticator, which this server requires.
    assert_eq!(
        verify_request(&rfc_request(), RFC_SECRET),
        Err(Error::MissingMessageAuthenticator)
    );
}

#[test]
fn rfc2865_example_response_authenticator() {
    let req = Packet::decode(&rfc_request()).unwrap();
    let accept = rfc_accept();
    let mut with_req = accept.clone();
    with_req[4..20].copy_from_slice(&req.authenticator);
    assert_eq!(md5_packet(&with_req, RFC_SECRET), accept[4..20]);
    let p = Packet::decode(&accept).unwrap();
    assert_eq!(p.code, Code::AccessAccept);
    assert_eq!(p.attributes[0], Attribute::ServiceType(1));
    // The reply is authentic, but lacks the Message-Authenticator we require.
    assert_eq!(
        verify_response(&accept, RFC_SECRET, &req.authenticator),
        Err(Error::MissingMessageAuthenticator)
    );
    assert_eq!(
        verify_response(&accept, b"other", &req.authenticator),
        Err(Error::BadAuthenticator)
    );
}

fn every_attribute() -> Vec<Attribute> {
    let p6 = Ipv6Prefix {
        addr: "2001:db8:1200::".parse().unwrap(),
        len: 56,
    };
    vec![
        Attribute::UserName("alice".into()),
        Attribute::UserPassword(vec![7; 16]),
        Attribute::ChapPassword {
            ident: 9,
            response: [3; 16],
        },
        Attribute::NasIpAddress(Ipv4Addr::new(10, 0, 0, 1)),
        Attribute::NasPort(12),
        Attribute::ServiceType(2),
        Attribute::FramedProtocol(1),
        Attribute::FramedIpAddress(Ipv4Addr::new(100, 64, 0, 7)),
        Attribute::FilterId("port25-block".into()),
        Attribute::ReplyMessage("hello".into()),
        Attribute::State(vec![1, 2]),
        Attribute::Class(vec![3]),
        Attribute::SessionTimeout(3600),
        Attribute::CalledStationId("bras-1".into()),
        Attribute::CallingStationId("00:11:22:33:44:55".into()),
        Attribute::NasIdentifier("bras".into()),
        Attribute::ProxyState(vec![0xaa]),
        Attribute::AcctStatusType(AcctStatusType::Start),
        Attribute::AcctStatusType(AcctStatusType::Other(15)),
        Attribute::AcctDelayTime(2),
        Attribute::AcctSessionId("S-1".into()),
        Attribute::AcctSessionTime(60),
        Attribute::AcctTerminateCause(1),
        Attribute::EventTimestamp(1_800_000_000),
        Attribute::ChapChallenge(vec![5; 16]),
        Attribute::NasPortType(5),
        Attribute::MessageAuthenticator([0; 16]),
        Attribute::AcctInterimInterval(300),
        Attribute::NasIpv6Address(Ipv6Addr::LOCALHOST),
        Attribute::FramedIpv6Prefix(Ipv6Prefix {
            addr: "2001:db8:1:2::".parse().unwrap(),
            len: 64,
        }),
        Attribute::ErrorCause(503),
        Attribute::DelegatedIpv6Prefix(p6),
        Attribute::Other {
            kind: 26,
            value: vec![0, 0, 0x28, 0xaf, 1, 3, 0],
        },
    ]
}

#[test]
fn every_attribute_round_trips() {
    let mut p = Packet::new(Code::AccountingRequest, 42);
    p.attributes = every_attribute();
    let bytes = p.encode().unwrap();
    assert_eq!(Packet::decode(&bytes).unwrap(), p);
    for status in [1, 2, 3, 7, 8, 99] {
        assert_eq!(AcctStatusType::from_u32(status).as_u32(), status);
    }
    for code in [1u8, 2, 3, 4, 5, 11, 12, 40, 41, 42, 43, 44, 45] {
        assert_eq!(Code::from_u8(code).unwrap().as_u8(), code);
    }
}

#[test]
fn ipv6_prefix_host_bits_are_cleared_and_short_forms_accepted() {
    // Prefix length 56 sent with all 16 bytes and host bits set.
    let mut v = vec![0, 56];
    v.extend_from_slice(
        &"2001:db8:1234:56ff::1"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    let a = Attribute::decode(kind::DELEGATED_IPV6_PREFIX, &v).unwrap();
    assert_eq!(
        a,
        Attribute::DelegatedIpv6Prefix(Ipv6Prefix {
            addr: "2001:db8:1234:5600::".parse().unwrap(),
            len: 56
        })
    );
    let mut out = Vec::new();
    a.encode(&mut out).unwrap();
    assert_eq!(out.len(), 2 + 2 + 7, "only the prefix bytes go on the wire");
    assert_eq!(
        Attribute::decode(kind::FRAMED_IPV6_PREFIX, &[0, 0]).unwrap(),
        Attribute::FramedIpv6Prefix(Ipv6Prefix {
            addr: Ipv6Addr::UNSPECIFIED,
            len: 0
        })
    );
}

#[test]
fn access_request_signed_and_verified() {
    let secret = b"s3cret";
    let auth = random_authenticator();
    let mut p = Packet::new(Code::AccessRequest, 1).with(Attribute::UserName("bob".into()));
    p.attributes.push(Attribute::UserPassword(
        hide_password(b"pw", secret, &auth).unwrap(),
    ));
    p.authenticator = auth;
    let bytes = p.encode_request(secret).unwrap();
    verify_request(&bytes, secret).unwrap();
    assert_eq!(
        verify_request(&bytes, b"wrong"),
        Err(Error::BadMessageAuthenticator)
    );
    let decoded = Packet::decode(&bytes).unwrap();
    assert!(
        matches!(decoded.attributes[0], Attribute::MessageAuthenticator(_)),
        "added first"
    );
    assert_eq!(decoded.authenticator, auth);
    // A flipped bit anywhere breaks the Message-Authenticator.
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        verify_request(&tampered, secret),
        Err(Error::BadMessageAuthenticator)
    );

    let reply = Packet::new(Code::AccessAccept, 1).with(Attribute::FilterId("port25-open".into()));
    let rbytes = reply.encode_response(secret, &auth).unwrap();
    verify_response(&rbytes, secret, &auth).unwrap();
    assert_eq!(
        verify_response(&rbytes, secret, &[0; 16]),
        Err(Error::BadAuthenticator)
    );
    assert_eq!(
        verify_response(&rbytes, b"wrong", &auth),
        Err(Error::BadAuthenticator)
    );
    assert_eq!(
        Packet::decode(&rbytes).unwrap().filter_id(),
        Some("port25-open")
    );
}

#[test]
fn forged_message_authenticator_in_authentic_response_is_caught() {
    // Response Authenticator right, Message-Authenticator wrong (recomputed MD5 only).
    let secret = b"s";
    let auth = [9; 16];
    let mut buf = Packet::new(Code::AccessReject, 3)
        .with(Attribute::MessageAuthenticator([1; 16]))
        .encode()
        .unwrap();
    buf[4..20].copy_from_slice(&auth);
    let ra = md5_packet(&buf, secret);
    buf[4..20].copy_from_slice(&ra);
    assert_eq!(
        verify_response(&buf, secret, &auth),
        Err(Error::BadMessageAuthenticator)
    );
}

#[test]
fn accounting_and_coa_requests_have_computed_authenticators() {
    let secret = b"nas-secret";
    for code in [
        Code::AccountingRequest,
        Code::CoaRequest,
        Code::DisconnectRequest,
    ] {
        let p = Packet::new(code, 7)
            .with(Attribute::AcctSessionId("abc".into()))
            .with(Attribute::UserName("u".into()));
        let bytes = p.encode_request(secret).unwrap();
        verify_request(&bytes, secret).unwrap();
        assert_eq!(verify_request(&bytes, b"x"), Err(Error::BadAuthenticator));
        // Without a Message-Authenticator, the authenticator alone suffices.
        let mut plain = p.encode().unwrap();
        plain[4..20].fill(0);
        let a = md5_packet(&plain, secret);
        plain[4..20].copy_from_slice(&a);
        verify_request(&plain, secret).unwrap();
        let ack = Packet::new(Code::CoaAck, 7)
            .encode_response(secret, &a)
            .unwrap();
        verify_response(&ack, secret, &a).unwrap();
    }
}

#[test]
fn passwords_hide_and_unhide_at_every_length() {
    let auth = [0x5a; 16];
    for len in [0usize, 1, 15, 16, 17, 31, 32, 100, 128] {
        let pw: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let hidden = hide_password(&pw, b"k", &auth).unwrap();
        assert_eq!(hidden.len(), len.div_ceil(16).max(1) * 16);
        assert_eq!(unhide_password(&hidden, b"k", &auth).unwrap(), pw);
    }
    assert_eq!(
        hide_password(&[b'x'; 129], b"k", &auth),
        Err(Error::PasswordLength(129))
    );
    for bad in [0usize, 15, 17, 144] {
        assert_eq!(
            unhide_password(&vec![1; bad], b"k", &auth),
            Err(Error::PasswordLength(bad))
        );
    }
}

#[test]
fn chap_verifies_only_the_right_password() {
    let challenge = [0x11; 16];
    let response = chap_response(5, &challenge, b"letmein");
    assert!(chap_verify(5, &response, &challenge, b"letmein"));
    assert!(!chap_verify(5, &response, &challenge, b"letmeout"));
    assert!(!chap_verify(6, &response, &challenge, b"letmein"));
    assert!(!chap_verify(5, &response, &[0x12; 16], b"letmein"));
    // RFC 1994 with a known MD5: MD5(0x01 || "" || "") = MD5("\x01").
    assert_eq!(chap_response(1, b"", b""), md5_packet(&[1], b""));
}

#[test]
fn every_error_path() {
    assert_eq!(Packet::decode(&[1, 2, 3]), Err(Error::TooShort(3)));
    let mut h = vec![1, 0, 0, 19];
    h.extend([0; 16]);
    assert_eq!(Packet::decode(&h), Err(Error::BadLength(19)));
    h[2..4].copy_from_slice(&4097u16.to_be_bytes());
    assert_eq!(Packet::decode(&h), Err(Error::BadLength(4097)));
    h[2..4].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(
        Packet::decode(&h),
        Err(Error::Truncated {
            header: 30,
            received: 20
        })
    );
    let with = |code: u8, attrs: &[u8]| {
        let mut b = vec![code, 0, 0, 0];
        b.extend([0; 16]);
        b.extend_from_slice(attrs);
        let n = b.len() as u16;
        b[2..4].copy_from_slice(&n.to_be_bytes());
        b
    };
    assert_eq!(Packet::decode(&with(99, &[])), Err(Error::UnknownCode(99)));
    assert_eq!(
        Packet::decode(&with(1, &[1, 1])),
        Err(Error::AttributeTruncated { offset: 20 })
    );
    assert_eq!(
        Packet::decode(&with(1, &[1, 9, b'a'])),
        Err(Error::AttributeTruncated { offset: 20 })
    );
    assert_eq!(
        Packet::decode(&with(1, &[1, 2])),
        Err(Error::AttributeLength { kind: 1, len: 0 })
    );
    assert_eq!(
        Packet::decode(&with(1, &[4, 5, 1, 2, 3])),
        Err(Error::AttributeLength { kind: 4, len: 3 })
    );
    assert_eq!(
        Packet::decode(&with(1, &[3, 4, 1, 2])),
        Err(Error::AttributeLength { kind: 3, len: 2 })
    );
    assert_eq!(
        Packet::decode(&with(1, &[80, 4, 1, 2])),
        Err(Error::AttributeLength { kind: 80, len: 2 })
    );
    assert_eq!(
        Packet::decode(&with(1, &[95, 4, 1, 2])),
        Err(Error::AttributeLength { kind: 95, len: 2 })
    );
    assert_eq!(
        Packet::decode(&with(1, &[97, 3, 0])),
        Err(Error::AttributeLength { kind: 97, len: 1 })
    );
    assert_eq!(
        Packet::decode(&with(1, &[1, 3, 0xff])),
        Err(Error::BadText { kind: 1 })
    );
    assert_eq!(
        Packet::decode(&with(1, &[123, 4, 0, 129])),
        Err(Error::BadPrefixLength {
            kind: 123,
            len: 129
        })
    );
    // Trailing padding beyond Length is ignored.
    let mut padded = with(1, &[1, 3, b'a']);
    padded.extend([0xff; 5]);
    assert_eq!(Packet::decode(&padded).unwrap().user_name(), Some("a"));

    let long = Packet::new(Code::AccessAccept, 0).with(Attribute::ReplyMessage("x".repeat(254)));
    assert_eq!(
        long.encode(),
        Err(Error::AttributeTooLong { kind: 18, len: 254 })
    );
    let bad_prefix =
        Packet::new(Code::AccessAccept, 0).with(Attribute::FramedIpv6Prefix(Ipv6Prefix {
            addr: Ipv6Addr::UNSPECIFIED,
            len: 200,
        }));
    assert_eq!(
        bad_prefix.encode(),
        Err(Error::BadPrefixLength { kind: 97, len: 200 })
    );
    let mut huge = Packet::new(Code::AccessAccept, 0);
    huge.attributes = vec![Attribute::ReplyMessage("y".repeat(253)); 17];
    assert_eq!(huge.encode(), Err(Error::PacketTooLong(4100)));
    assert_eq!(
        Packet::new(Code::AccessAccept, 0).encode_request(b"s"),
        Err(Error::NotARequest(2))
    );
    let accept = Packet::new(Code::AccessAccept, 0)
        .encode_response(b"s", &[0; 16])
        .unwrap();
    assert_eq!(verify_request(&accept, b"s"), Err(Error::NotARequest(2)));
    let two = Packet::new(Code::AccessRequest, 0)
        .with(Attribute::MessageAuthenticator([0; 16]))
        .with(Attribute::MessageAuthenticator([0; 16]));
    assert_eq!(
        two.encode_request(b"s"),
        Err(Error::DuplicateMessageAuthenticator)
    );
    assert_eq!(
        verify_request(&two.encode().unwrap(), b"s"),
        Err(Error::DuplicateMessageAuthenticator)
    );
}

#[test]
fn error_text_is_precise() {
    assert_eq!(
        Error::TooShort(3).to_string(),
        "datagram of 3 bytes is shorter than the 20-byte RADIUS header"
    );
    assert_eq!(
        Error::AttributeLength { kind: 4, len: 3 }.to_string(),
        "attribute 4 has a 3-byte value, which is invalid for its type"
    );
    assert_eq!(
        Error::BadMessageAuthenticator.to_string(),
        "Message-Authenticator does not verify (wrong shared secret?)"
    );
}

/// Feeds random and mutated datagrams to every entry point: none may panic.
#[test]
fn random_and_truncated_input_never_panics() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seed = Packet::new(Code::AccountingRequest, 1);
    seed.attributes = every_attribute();
    let valid = [seed.encode().unwrap(), rfc_request(), rfc_accept()];
    for round in 0..20_000 {
        let mut buf = if round % 2 == 0 {
            let len = (next() % 300) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if b.len() >= 4 {
                // A plausible header makes the attribute parser work harder.
                b[0] = [1, 4, 43, 2][(next() % 4) as usize];
                let n = b.len() as u16;
                b[2..4].copy_from_slice(&n.to_be_bytes());
            }
            b
        } else {
            let mut b = valid[round % valid.len()].clone();
            for _ in 0..(next() % 4) {
                if !b.is_empty() {
                    let i = (next() as usize) % b.len();
                    b[i] = next() as u8;
                }
            }
            b
        };
        let cut = (next() as usize) % (buf.len() + 1);
        if round % 3 == 0 {
            buf.truncate(cut);
        }
        if let Ok(p) = Packet::decode(&buf) {
            let _ = p.encode();
            let _ = p.encode_request(b"s");
            let _ = p.encode_response(b"s", &[0; 16]);
        }
        let _ = verify_request(&buf, b"s");
        let _ = verify_response(&buf, b"s", &[0; 16]);
        let _ = unhide_password(&buf, b"s", &[0; 16]);
    }
}
