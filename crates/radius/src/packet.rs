//! RADIUS packets: the 20-byte header (code, identifier, length, authenticator) and
//! the attribute list, decoded to [`Packet`] and encoded back.
//!
//! [`Packet::encode`] writes the packet exactly as given; [`Packet::encode_request`]
//! and [`Packet::encode_response`] also sign it (authenticators and a
//! Message-Authenticator, see [`crate::crypto`]).

use std::net::Ipv4Addr;

use crate::attribute::{raw_attributes, AcctStatusType, Attribute, Ipv6Prefix};
use crate::crypto;
use crate::error::Error;

/// Code, identifier, length, authenticator.
pub const HEADER_LEN: usize = 20;
/// The largest packet RFC 2865 allows.
pub const MAX_LEN: usize = 4096;

/// Packet codes (RFC 2865, 2866, 5176, 5997).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    AccessRequest,
    AccessAccept,
    AccessReject,
    AccountingRequest,
    AccountingResponse,
    AccessChallenge,
    StatusServer,
    DisconnectRequest,
    DisconnectAck,
    DisconnectNak,
    CoaRequest,
    CoaAck,
    CoaNak,
}

impl Code {
    pub fn from_u8(v: u8) -> Result<Code, Error> {
        Ok(match v {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            11 => Code::AccessChallenge,
            12 => Code::StatusServer,
            40 => Code::DisconnectRequest,
            41 => Code::DisconnectAck,
            42 => Code::DisconnectNak,
            43 => Code::CoaRequest,
            44 => Code::CoaAck,
            45 => Code::CoaNak,
            other => return Err(Error::UnknownCode(other)),
        })
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Code::AccessRequest => 1,
            Code::AccessAccept => 2,
            Code::AccessReject => 3,
            Code::AccountingRequest => 4,
            Code::AccountingResponse => 5,
            Code::AccessChallenge => 11,
            Code::StatusServer => 12,
            Code::DisconnectRequest => 40,
            Code::DisconnectAck => 41,
            Code::DisconnectNak => 42,
            Code::CoaRequest => 43,
            Code::CoaAck => 44,
            Code::CoaNak => 45,
        }
    }

    /// Whether the Request Authenticator is an MD5 over the packet (RFC 2866
    /// section 3, RFC 5176 section 2.3) rather than random (Access-Request).
    pub fn has_computed_request_authenticator(self) -> bool {
        matches!(
            self,
            Code::AccountingRequest | Code::CoaRequest | Code::DisconnectRequest
        )
    }

    /// Whether the Message-Authenticator of a response with this code is computed
    /// over 16 zero bytes in the authenticator field, as FreeRADIUS (and the NASes
    /// built on its libraries) do for Accounting-Response and CoA/Disconnect ACK/NAK;
    /// Access-Accept, -Reject and -Challenge use the Request Authenticator (RFC 3579).
    pub fn signs_with_zero_vector(self) -> bool {
        matches!(
            self,
            Code::AccountingResponse
                | Code::CoaAck
                | Code::CoaNak
                | Code::DisconnectAck
                | Code::DisconnectNak
        )
    }

    /// Whether this code is sent by a client and answered by a server.
    pub fn is_request(self) -> bool {
        matches!(self, Code::AccessRequest | Code::StatusServer)
            || self.has_computed_request_authenticator()
    }
}

/// A decoded packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub code: Code,
    pub identifier: u8,
    /// Request or Response Authenticator, as on the wire.
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

/// Validates the header and returns the packet length (trailing bytes beyond it are
/// padding and ignored, RFC 2865 section 3).
pub(crate) fn checked_len(buf: &[u8]) -> Result<usize, Error> {
    if buf.len() < HEADER_LEN {
        return Err(Error::TooShort(buf.len()));
    }
    let header = u16::from_be_bytes([buf[2], buf[3]]);
    let len = usize::from(header);
    if !(HEADER_LEN..=MAX_LEN).contains(&len) {
        return Err(Error::BadLength(header));
    }
    if buf.len() < len {
        return Err(Error::Truncated {
            header,
            received: buf.len(),
        });
    }
    Ok(len)
}

impl Packet {
    /// An empty packet with a zero authenticator.
    pub fn new(code: Code, identifier: u8) -> Packet {
        Packet {
            code,
            identifier,
            authenticator: [0; 16],
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute (builder style).
    pub fn with(mut self, attribute: Attribute) -> Packet {
        self.attributes.push(attribute);
        self
    }

    /// Decodes a datagram. Checks structure only; signatures are checked by
    /// [`crate::verify_request`] and [`crate::verify_response`].
    pub fn decode(buf: &[u8]) -> Result<Packet, Error> {
        let len = checked_len(buf)?;
        let buf = &buf[..len];
        let code = Code::from_u8(buf[0])?;
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&buf[4..HEADER_LEN]);
        let mut attributes = Vec::new();
        for raw in raw_attributes(buf) {
            let (_, kind, value) = raw?;
            attributes.push(Attribute::decode(kind, value)?);
        }
        Ok(Packet {
            code,
            identifier: buf[1],
            authenticator,
            attributes,
        })
    }

    /// Encodes the packet as it is, without computing any signature.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(128);
        out.push(self.code.as_u8());
        out.push(self.identifier);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            a.encode(&mut out)?;
            if out.len() > MAX_LEN {
                return Err(Error::PacketTooLong(out.len()));
            }
        }
        let len = out.len() as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }

    /// The attribute list with a Message-Authenticator first (where the Blast-RADIUS
    /// advisory wants it) unless one is already present.
    fn with_message_authenticator(&self) -> Packet {
        let mut p = self.clone();
        if !p
            .attributes
            .iter()
            .any(|a| matches!(a, Attribute::MessageAuthenticator(_)))
        {
            p.attributes
                .insert(0, Attribute::MessageAuthenticator([0; 16]));
        }
        p
    }

    /// Encodes and signs a request: always with a Message-Authenticator; for
    /// Accounting, CoA and Disconnect requests the Request Authenticator is computed
    /// (whatever `self.authenticator` holds); for Access-Request it is taken from
    /// `self.authenticator`, which the caller fills with random bytes
    /// ([`crate::crypto::random_authenticator`]).
    pub fn encode_request(&self, secret: &[u8]) -> Result<Vec<u8>, Error> {
        if !self.code.is_request() {
            return Err(Error::NotARequest(self.code.as_u8()));
        }
        let mut buf = self.with_message_authenticator().encode()?;
        if self.code.has_computed_request_authenticator() {
            buf[4..HEADER_LEN].fill(0);
            crypto::sign_message_authenticator(&mut buf, secret)?;
            let auth = crypto::md5_packet(&buf, secret);
            buf[4..HEADER_LEN].copy_from_slice(&auth);
        } else {
            crypto::sign_message_authenticator(&mut buf, secret)?;
        }
        Ok(buf)
    }

    /// Encodes and signs a response to a request whose authenticator was
    /// `request_authenticator`: always with a Message-Authenticator (see
    /// [`Code::signs_with_zero_vector`]), then the Response Authenticator.
    pub fn encode_response(
        &self,
        secret: &[u8],
        request_authenticator: &[u8; 16],
    ) -> Result<Vec<u8>, Error> {
        let mut buf = self.with_message_authenticator().encode()?;
        if self.code.signs_with_zero_vector() {
            crypto::sign_message_authenticator(&mut buf, secret)?;
            buf[4..HEADER_LEN].copy_from_slice(request_authenticator);
        } else {
            buf[4..HEADER_LEN].copy_from_slice(request_authenticator);
            crypto::sign_message_authenticator(&mut buf, secret)?;
        }
        let auth = crypto::md5_packet(&buf, secret);
        buf[4..HEADER_LEN].copy_from_slice(&auth);
        Ok(buf)
    }

    /// The first attribute of a type, as chosen by `pick`.
    pub fn find<T>(&self, pick: impl Fn(&Attribute) -> Option<T>) -> Option<T> {
        self.attributes.iter().find_map(pick)
    }

    pub fn user_name(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::UserName(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn acct_session_id(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::AcctSessionId(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn acct_status_type(&self) -> Option<AcctStatusType> {
        self.find(|a| match a {
            Attribute::AcctStatusType(t) => Some(*t),
            _ => None,
        })
    }

    pub fn framed_ip_address(&self) -> Option<Ipv4Addr> {
        self.find(|a| match a {
            Attribute::FramedIpAddress(ip) => Some(*ip),
            _ => None,
        })
    }

    pub fn filter_id(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::FilterId(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Framed-IPv6-Prefix and Delegated-IPv6-Prefix values, in packet order.
    pub fn ipv6_prefixes(&self) -> Vec<Ipv6Prefix> {
        self.attributes
            .iter()
            .filter_map(|a| match a {
                Attribute::FramedIpv6Prefix(p) | Attribute::DelegatedIpv6Prefix(p) => Some(*p),
                _ => None,
            })
            .collect()
    }
}
