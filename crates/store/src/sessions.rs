//! RADIUS sessions in the store: what the accounting side of `enforce` needs beyond
//! plain leases (closing a NAS's sessions, stale sessions, live sessions for CoA).

/// Schema version 4: session bookkeeping.
pub(crate) const MIGRATION: &str = "SELECT 1;";
