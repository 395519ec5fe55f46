//! RADIUS attributes as typed values, and their wire form (type, length, value).
//!
//! The attributes portcullis uses are variants of [`Attribute`]; any other type
//! (including Vendor-Specific) is kept as [`Attribute::Other`] with its raw value, so
//! a packet decodes and re-encodes without loss.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::Error;

/// Attribute type numbers (RFC 2865, 2866, 2869, 3162, 3579, 4818, 5176).
pub mod kind {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const CHAP_PASSWORD: u8 = 3;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const NAS_PORT: u8 = 5;
    pub const SERVICE_TYPE: u8 = 6;
    pub const FRAMED_PROTOCOL: u8 = 7;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const FILTER_ID: u8 = 11;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const STATE: u8 = 24;
    pub const CLASS: u8 = 25;
    pub const SESSION_TIMEOUT: u8 = 27;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const PROXY_STATE: u8 = 33;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const CHAP_CHALLENGE: u8 = 60;
    pub const NAS_PORT_TYPE: u8 = 61;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const ACCT_INTERIM_INTERVAL: u8 = 85;
    pub const NAS_IPV6_ADDRESS: u8 = 95;
    pub const FRAMED_IPV6_PREFIX: u8 = 97;
    pub const ERROR_CAUSE: u8 = 101;
    pub const DELEGATED_IPV6_PREFIX: u8 = 123;
}

use self::kind as k;

/// Acct-Status-Type values (RFC 2866 section 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcctStatusType {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
    Other(u32),
}

impl AcctStatusType {
    pub fn from_u32(v: u32) -> AcctStatusType {
        match v {
            1 => AcctStatusType::Start,
            2 => AcctStatusType::Stop,
            3 => AcctStatusType::InterimUpdate,
            7 => AcctStatusType::AccountingOn,
            8 => AcctStatusType::AccountingOff,
            other => AcctStatusType::Other(other),
        }
    }

    pub fn as_u32(self) -> u32 {
        match self {
            AcctStatusType::Start => 1,
            AcctStatusType::Stop => 2,
            AcctStatusType::InterimUpdate => 3,
            AcctStatusType::AccountingOn => 7,
            AcctStatusType::AccountingOff => 8,
            AcctStatusType::Other(v) => v,
        }
    }
}

/// An IPv6 prefix as carried by Framed-IPv6-Prefix and Delegated-IPv6-Prefix
/// (RFC 3162 section 2.3): host bits are cleared on decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Prefix {
    pub addr: Ipv6Addr,
    pub len: u8,
}

/// Error-Cause values used in CoA/Disconnect NAKs (RFC 5176 section 3.5).
pub mod error_cause {
    pub const SESSION_CONTEXT_NOT_FOUND: u32 = 503;
    pub const UNSUPPORTED_ATTRIBUTE: u32 = 401;
    pub const MISSING_ATTRIBUTE: u32 = 402;
    pub const REQUEST_NOT_ROUTABLE: u32 = 502;
}

/// One attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    UserName(String),
    /// The hidden form as on the wire; see [`crate::hide_password`].
    UserPassword(Vec<u8>),
    /// CHAP identifier and the 16-byte response (RFC 2865 section 5.3).
    ChapPassword {
        ident: u8,
        response: [u8; 16],
    },
    NasIpAddress(Ipv4Addr),
    NasPort(u32),
    ServiceType(u32),
    FramedProtocol(u32),
    FramedIpAddress(Ipv4Addr),
    FilterId(String),
    ReplyMessage(String),
    State(Vec<u8>),
    Class(Vec<u8>),
    SessionTimeout(u32),
    CalledStationId(String),
    CallingStationId(String),
    NasIdentifier(String),
    /// Opaque; a server copies it unchanged into its reply (RFC 2865 section 5.33).
    ProxyState(Vec<u8>),
    AcctStatusType(AcctStatusType),
    AcctDelayTime(u32),
    AcctSessionId(String),
    AcctSessionTime(u32),
    AcctTerminateCause(u32),
    /// Seconds since the Unix epoch.
    EventTimestamp(u32),
    ChapChallenge(Vec<u8>),
    NasPortType(u32),
    /// HMAC-MD5 (RFC 3579 section 3.2); encoders fill it in, put zeros here.
    MessageAuthenticator([u8; 16]),
    AcctInterimInterval(u32),
    NasIpv6Address(Ipv6Addr),
    FramedIpv6Prefix(Ipv6Prefix),
    ErrorCause(u32),
    DelegatedIpv6Prefix(Ipv6Prefix),
    /// Any other type, raw.
    Other {
        kind: u8,
        value: Vec<u8>,
    },
}

fn u32_of(kind: u8, v: &[u8]) -> Result<u32, Error> {
    let b: [u8; 4] = v
        .try_into()
        .map_err(|_| Error::AttributeLength { kind, len: v.len() })?;
    Ok(u32::from_be_bytes(b))
}

fn ipv4_of(kind: u8, v: &[u8]) -> Result<Ipv4Addr, Error> {
    u32_of(kind, v).map(Ipv4Addr::from)
}

fn text_of(kind: u8, v: &[u8]) -> Result<String, Error> {
    if v.is_empty() {
        return Err(Error::AttributeLength { kind, len: 0 });
    }
    String::from_utf8(v.to_vec()).map_err(|_| Error::BadText { kind })
}

fn bytes_of(kind: u8, v: &[u8]) -> Result<Vec<u8>, Error> {
    if v.is_empty() {
        return Err(Error::AttributeLength { kind, len: 0 });
    }
    Ok(v.to_vec())
}

fn prefix_of(kind: u8, v: &[u8]) -> Result<Ipv6Prefix, Error> {
    // Reserved, Prefix-Length, then 0..=16 prefix bytes.
    if v.len() < 2 || v.len() > 18 {
        return Err(Error::AttributeLength { kind, len: v.len() });
    }
    let len = v[1];
    if len > 128 {
        return Err(Error::BadPrefixLength { kind, len });
    }
    let mut bytes = [0u8; 16];
    bytes[..v.len() - 2].copy_from_slice(&v[2..]);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    let addr = Ipv6Addr::from(u128::from_be_bytes(bytes) & mask);
    Ok(Ipv6Prefix { addr, len })
}

impl Attribute {
    /// Decodes one attribute value of type `kind`.
    pub fn decode(kind: u8, v: &[u8]) -> Result<Attribute, Error> {
        Ok(match kind {
            k::USER_NAME => Attribute::UserName(text_of(kind, v)?),
            k::USER_PASSWORD => Attribute::UserPassword(bytes_of(kind, v)?),
            k::CHAP_PASSWORD => {
                if v.len() != 17 {
                    return Err(Error::AttributeLength { kind, len: v.len() });
                }
                let mut response = [0u8; 16];
                response.copy_from_slice(&v[1..]);
                Attribute::ChapPassword {
                    ident: v[0],
                    response,
                }
            }
            k::NAS_IP_ADDRESS => Attribute::NasIpAddress(ipv4_of(kind, v)?),
            k::NAS_PORT => Attribute::NasPort(u32_of(kind, v)?),
            k::SERVICE_TYPE => Attribute::ServiceType(u32_of(kind, v)?),
            k::FRAMED_PROTOCOL => Attribute::FramedProtocol(u32_of(kind, v)?),
            k::FRAMED_IP_ADDRESS => Attribute::FramedIpAddress(ipv4_of(kind, v)?),
            k::FILTER_ID => Attribute::FilterId(text_of(kind, v)?),
            k::REPLY_MESSAGE => Attribute::ReplyMessage(text_of(kind, v)?),
            k::STATE => Attribute::State(bytes_of(kind, v)?),
            k::CLASS => Attribute::Class(bytes_of(kind, v)?),
            k::SESSION_TIMEOUT => Attribute::SessionTimeout(u32_of(kind, v)?),
            k::CALLED_STATION_ID => Attribute::CalledStationId(text_of(kind, v)?),
            k::CALLING_STATION_ID => Attribute::CallingStationId(text_of(kind, v)?),
            k::NAS_IDENTIFIER => Attribute::NasIdentifier(text_of(kind, v)?),
            k::PROXY_STATE => Attribute::ProxyState(bytes_of(kind, v)?),
            k::ACCT_STATUS_TYPE => {
                Attribute::AcctStatusType(AcctStatusType::from_u32(u32_of(kind, v)?))
            }
            k::ACCT_DELAY_TIME => Attribute::AcctDelayTime(u32_of(kind, v)?),
            k::ACCT_SESSION_ID => Attribute::AcctSessionId(text_of(kind, v)?),
            k::ACCT_SESSION_TIME => Attribute::AcctSessionTime(u32_of(kind, v)?),
            k::ACCT_TERMINATE_CAUSE => Attribute::AcctTerminateCause(u32_of(kind, v)?),
            k::EVENT_TIMESTAMP => Attribute::EventTimestamp(u32_of(kind, v)?),
            k::CHAP_CHALLENGE => Attribute::ChapChallenge(bytes_of(kind, v)?),
            k::NAS_PORT_TYPE => Attribute::NasPortType(u32_of(kind, v)?),
            k::MESSAGE_AUTHENTICATOR => {
                let b: [u8; 16] = v
                    .try_into()
                    .map_err(|_| Error::AttributeLength { kind, len: v.len() })?;
                Attribute::MessageAuthenticator(b)
            }
            k::ACCT_INTERIM_INTERVAL => Attribute::AcctInterimInterval(u32_of(kind, v)?),
            k::NAS_IPV6_ADDRESS => {
                let b: [u8; 16] = v
                    .try_into()
                    .map_err(|_| Error::AttributeLength { kind, len: v.len() })?;
                Attribute::NasIpv6Address(Ipv6Addr::from(b))
            }
            k::FRAMED_IPV6_PREFIX => Attribute::FramedIpv6Prefix(prefix_of(kind, v)?),
            k::ERROR_CAUSE => Attribute::ErrorCause(u32_of(kind, v)?),
            k::DELEGATED_IPV6_PREFIX => Attribute::DelegatedIpv6Prefix(prefix_of(kind, v)?),
            _ => Attribute::Other {
                kind,
                value: v.to_vec(),
            },
        })
    }

    /// The attribute's type number.
    pub fn kind(&self) -> u8 {
        match self {
            Attribute::UserName(_) => k::USER_NAME,
            Attribute::UserPassword(_) => k::USER_PASSWORD,
            Attribute::ChapPassword { .. } => k::CHAP_PASSWORD,
            Attribute::NasIpAddress(_) => k::NAS_IP_ADDRESS,
            Attribute::NasPort(_) => k::NAS_PORT,
            Attribute::ServiceType(_) => k::SERVICE_TYPE,
            Attribute::FramedProtocol(_) => k::FRAMED_PROTOCOL,
            Attribute::FramedIpAddress(_) => k::FRAMED_IP_ADDRESS,
            Attribute::FilterId(_) => k::FILTER_ID,
            Attribute::ReplyMessage(_) => k::REPLY_MESSAGE,
            Attribute::State(_) => k::STATE,
            Attribute::Class(_) => k::CLASS,
            Attribute::SessionTimeout(_) => k::SESSION_TIMEOUT,
            Attribute::CalledStationId(_) => k::CALLED_STATION_ID,
            Attribute::CallingStationId(_) => k::CALLING_STATION_ID,
            Attribute::NasIdentifier(_) => k::NAS_IDENTIFIER,
            Attribute::ProxyState(_) => k::PROXY_STATE,
            Attribute::AcctStatusType(_) => k::ACCT_STATUS_TYPE,
            Attribute::AcctDelayTime(_) => k::ACCT_DELAY_TIME,
            Attribute::AcctSessionId(_) => k::ACCT_SESSION_ID,
            Attribute::AcctSessionTime(_) => k::ACCT_SESSION_TIME,
            Attribute::AcctTerminateCause(_) => k::ACCT_TERMINATE_CAUSE,
            Attribute::EventTimestamp(_) => k::EVENT_TIMESTAMP,
            Attribute::ChapChallenge(_) => k::CHAP_CHALLENGE,
            Attribute::NasPortType(_) => k::NAS_PORT_TYPE,
            Attribute::MessageAuthenticator(_) => k::MESSAGE_AUTHENTICATOR,
            Attribute::AcctInterimInterval(_) => k::ACCT_INTERIM_INTERVAL,
            Attribute::NasIpv6Address(_) => k::NAS_IPV6_ADDRESS,
            Attribute::FramedIpv6Prefix(_) => k::FRAMED_IPV6_PREFIX,
            Attribute::ErrorCause(_) => k::ERROR_CAUSE,
            Attribute::DelegatedIpv6Prefix(_) => k::DELEGATED_IPV6_PREFIX,
            Attribute::Other { kind, .. } => *kind,
        }
    }

    /// Appends type, length and value to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let kind = self.kind();
        let start = out.len();
        out.push(kind);
        out.push(0);
        match self {
            Attribute::UserName(s)
            | Attribute::FilterId(s)
            | Attribute::ReplyMessage(s)
            | Attribute::CalledStationId(s)
            | Attribute::CallingStationId(s)
            | Attribute::NasIdentifier(s)
            | Attribute::AcctSessionId(s) => out.extend_from_slice(s.as_bytes()),
            Attribute::UserPassword(b)
            | Attribute::State(b)
            | Attribute::Class(b)
            | Attribute::ProxyState(b)
            | Attribute::ChapChallenge(b)
            | Attribute::Other { value: b, .. } => out.extend_from_slice(b),
            Attribute::ChapPassword { ident, response } => {
                out.push(*ident);
                out.extend_from_slice(response);
            }
            Attribute::NasIpAddress(a) | Attribute::FramedIpAddress(a) => {
                out.extend_from_slice(&a.octets())
            }
            Attribute::NasPort(v)
            | Attribute::ServiceType(v)
            | Attribute::FramedProtocol(v)
            | Attribute::SessionTimeout(v)
            | Attribute::AcctDelayTime(v)
            | Attribute::AcctSessionTime(v)
            | Attribute::AcctTerminateCause(v)
            | Attribute::EventTimestamp(v)
            | Attribute::NasPortType(v)
            | Attribute::AcctInterimInterval(v)
            | Attribute::ErrorCause(v) => out.extend_from_slice(&v.to_be_bytes()),
            Attribute::AcctStatusType(t) => out.extend_from_slice(&t.as_u32().to_be_bytes()),
            Attribute::MessageAuthenticator(m) => out.extend_from_slice(m),
            Attribute::NasIpv6Address(a) => out.extend_from_slice(&a.octets()),
            Attribute::FramedIpv6Prefix(p) | Attribute::DelegatedIpv6Prefix(p) => {
                if p.len > 128 {
                    out.truncate(start);
                    return Err(Error::BadPrefixLength { kind, len: p.len });
                }
                out.push(0);
                out.push(p.len);
                let n = usize::from(p.len).div_ceil(8);
                out.extend_from_slice(&p.addr.octets()[..n]);
            }
        }
        let len = out.len() - start;
        if len > 255 {
            out.truncate(start);
            return Err(Error::AttributeTooLong { kind, len: len - 2 });
        }
        out[start + 1] = len as u8;
        Ok(())
    }
}

/// Iterates over the raw attributes of a packet body: `(offset, type, value)`, where
/// `offset` is the position of the attribute header within the whole packet.
pub(crate) fn raw_attributes(
    packet: &[u8],
) -> impl Iterator<Item = Result<(usize, u8, &[u8]), Error>> {
    let mut offset = crate::packet::HEADER_LEN;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || offset >= packet.len() {
            return None;
        }
        let rest = &packet[offset..];
        let len = rest.get(1).map_or(0, |l| usize::from(*l));
        if len < 2 || len > rest.len() {
            failed = true;
            return Some(Err(Error::AttributeTruncated { offset }));
        }
        let item = (offset, rest[0], &rest[2..len]);
        offset += len;
        Some(Ok(item))
    })
}
