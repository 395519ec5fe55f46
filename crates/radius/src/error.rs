//! Errors of the RADIUS codec: a malformed datagram, an attribute that cannot be
//! encoded, or a signature that does not verify.

/// What is wrong with a RADIUS datagram or with a packet to encode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than the fixed 20-byte header.
    #[error("datagram of {0} bytes is shorter than the 20-byte RADIUS header")]
    TooShort(usize),
    /// The header's Length is outside 20..=4096 (RFC 2865 section 3).
    #[error("header length {0} is outside the allowed 20..=4096 bytes")]
    BadLength(u16),
    /// The datagram is shorter than the header's Length says.
    #[error("header says {header} bytes but the datagram has only {received}")]
    Truncated { header: u16, received: usize },
    /// A code this implementation does not know.
    #[error("unknown packet code {0}")]
    UnknownCode(u8),
    /// A request function was given a response code (or the reverse).
    #[error("packet code {0} is not a request")]
    NotARequest(u8),
    /// An attribute header runs past the end of the packet or has length below 2.
    #[error("attribute at offset {offset} is truncated or has a length below 2")]
    AttributeTruncated { offset: usize },
    /// A known attribute with a value of the wrong size.
    #[error("attribute {kind} has a {len}-byte value, which is invalid for its type")]
    AttributeLength { kind: u8, len: usize },
    /// A text attribute that is not UTF-8 (RFC 2865 section 5: text is UTF-8).
    #[error("attribute {kind} is not valid UTF-8 text")]
    BadText { kind: u8 },
    /// An IPv6 prefix attribute with a prefix length above 128.
    #[error("IPv6 prefix attribute {kind} has prefix length {len}, above 128")]
    BadPrefixLength { kind: u8, len: u8 },
    /// An attribute value longer than the 253 bytes one attribute can carry.
    #[error("attribute {kind} value of {len} bytes exceeds the 253-byte maximum")]
    AttributeTooLong { kind: u8, len: usize },
    /// The encoded packet would exceed 4096 bytes.
    #[error("packet of {0} bytes exceeds the 4096-byte RADIUS maximum")]
    PacketTooLong(usize),
    /// A User-Password longer than 128 bytes, or a hidden one whose length is not a
    /// multiple of 16 in 16..=128.
    #[error("User-Password of {0} bytes has an invalid length")]
    PasswordLength(usize),
    /// The packet must carry a Message-Authenticator (RFC 3579, Blast-RADIUS) and does not.
    #[error("Message-Authenticator is missing")]
    MissingMessageAuthenticator,
    /// More than one Message-Authenticator attribute.
    #[error("more than one Message-Authenticator attribute")]
    DuplicateMessageAuthenticator,
    /// The Message-Authenticator does not match: wrong shared secret or a forgery.
    #[error("Message-Authenticator does not verify (wrong shared secret?)")]
    BadMessageAuthenticator,
    /// The Request or Response Authenticator does not match: wrong shared secret,
    /// a reply to another request, or a forgery.
    #[error("packet authenticator does not verify (wrong shared secret?)")]
    BadAuthenticator,
}
