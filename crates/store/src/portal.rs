//! What the portal keeps in the store: operator accounts and API tokens (tables of
//! migration 1), web sessions, customer requests.

/// Schema version 6: portal state.
pub(crate) const MIGRATION: &str = "SELECT 1;";
