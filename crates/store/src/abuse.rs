//! Abuse evidence and cases in the store.

/// Schema version 5: evidence and cases.
pub(crate) const MIGRATION: &str = "SELECT 1;";
