//! The RADIUS wire protocol (RFC 2865, 2866, 3579, 5176) without I/O, and a small
//! async client. Used by `enforce` (the server for the BRAS, CoA) and `submission`
//! (the `radius` auth backend).
