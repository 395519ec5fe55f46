//! Enforcement: makes the network obey the port-25 policy, two ways.
//!
//! - [`nftables`]: a table on the Linux router, loaded atomically and kept in step
//!   with the event log.
//! - [`radius_server`] and [`coa`]: a RADIUS server for the BRAS (Filter-Id per
//!   port-25 state, accounting that records leases) and CoA/Disconnect (RFC 5176) for
//!   live sessions when a state changes.

pub mod coa;
pub mod nftables;
pub mod radius_server;
