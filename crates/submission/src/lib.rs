//! The submission server (RFC 6409): SMTP on 587 with STARTTLS and 465 with implicit
//! TLS (RFC 8314), AUTH PLAIN/LOGIN after TLS only, limits, throttling and durable
//! accept into the delivery queue. Not yet built: see issue "Submission server".
