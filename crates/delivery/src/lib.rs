//! Outbound delivery: the durable queue, MX routing, the SMTP client with
//! opportunistic STARTTLS, retries, DSN bounces (RFC 3464) and DKIM signing.
//! Not yet built: see issue "Outbound delivery".
