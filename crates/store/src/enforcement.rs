//! Queries that enforcement (nftables, RADIUS) needs from the store.

/// Schema version 3: enforcement state.
pub(crate) const MIGRATION: &str = "SELECT 1;";
