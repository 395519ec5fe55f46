//! The mail queue: messages accepted by submission, per-recipient delivery state.
//! Schema and operations are filled in by the submission and delivery work.

/// Schema version 2: the mail queue.
pub(crate) const MIGRATION: &str = "SELECT 1;";
