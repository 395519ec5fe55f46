//! The RADIUS wire protocol (RFC 2865, 2866, 3579, 5176) without I/O, and a small
//! async client. Used by `enforce` (the server for the BRAS, CoA) and `submission`
//! (the `radius` auth backend).
//!
//! The codec ([`packet`], [`attribute`], [`crypto`]) is pure: bytes in, typed values
//! out, and back. It never panics on input (see the fuzz-style test and `fuzz/`).
//! The authenticators and User-Password hiding are computed over the wire bytes, so
//! [`Packet::encode_request`] and [`Packet::encode_response`] produce signed
//! datagrams and [`verify_request`] / [`verify_response`] check received ones.
//! Only [`client`] touches sockets.

pub mod attribute;
pub mod client;
pub mod crypto;
mod error;
pub mod packet;

pub use attribute::{AcctStatusType, Attribute, Ipv6Prefix};
pub use client::{change_of_authorization, pap_authenticate, ClientError, CoaOutcome};
pub use crypto::{chap_verify, hide_password, unhide_password, verify_request, verify_response};
pub use error::Error;
pub use packet::{Code, Packet};

#[cfg(test)]
mod tests;
