//! The nftables table on the Linux router: port 25 from the dynamic pools is refused
//! unless the source belongs to an `opted-out` subscriber (or the destination is one
//! of the ISP's own mail servers); static addresses are refused only when their
//! holder is `reinstated`. IPv4 and IPv6, in table `inet <enforce.table>`.
//!
//! - [`ruleset`]: the table and its updates as `nft` text (pure).
//! - [`state`]: which elements each subscriber needs, and what is loaded.
//! - [`sync`]: the live loop (full atomic load, event-driven element batches,
//!   periodic reconcile).
//! - [`runner`]: invokes `nft`, optionally inside a network namespace.
//!
//! A full load goes to `nft -j -f -` as JSON: nft 1.0.6 takes a million elements in
//! about a third less CPU that way than as text (it reads all of its input before
//! parsing, so streaming it while the store is read would not overlap anything);
//! the text form is what `portcullis enforce render` prints, and both forms are the
//! same table (`tests/nftables.rs` loads both and compares `nft list table`).
//!
//! Updates go through `nft -f -` with batched text, chosen by measurement
//! (`cargo bench -p enforce --bench nft`, a million-element set loaded): one batch of
//! 1, 100 or 1000 element changes costs 9–16 ms per call as text and the same as
//! JSON (`nft -j`); starting `nft` with empty input already costs 5–10 ms of that,
//! which is all a netlink library could save — small against the store's 200 ms
//! event poll and the one-second target, so there is no netlink code to maintain.
//!
//! The RADIUS side of enforcement (Filter-Id, CoA) lives in `radius_server` and `coa`.

pub mod ruleset;
pub mod runner;
pub mod state;
pub mod sync;

use std::sync::Arc;

pub use ruleset::{render_pbl_ip6trie, Element, Purpose, TableSpec};
pub use runner::NftRunner;
pub use sync::Enforcer;

/// Errors of the nftables enforcement layer.
#[derive(Debug, thiserror::Error)]
pub enum NftablesError {
    /// The nft command vector is empty (a programming error in the caller).
    #[error("no nft command configured")]
    NoCommand,
    /// `nft` could not be started: not installed, or not on PATH.
    #[error("cannot run '{command}': {reason} (is nftables installed?)")]
    Spawn { command: String, reason: String },
    /// `nft` ran and refused the input; its first error lines are quoted.
    #[error("'{command}' failed with status {status}: {message}")]
    Refused {
        command: String,
        status: i32,
        message: String,
    },
    /// The store could not answer.
    #[error("reading enforcement state: {0}")]
    Store(#[from] store::StoreError),
}

/// Loads the table and keeps it in step with the event log (when `enforce.nftables`).
pub async fn start(
    config: Arc<config::Config>,
    store: store::Store,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    start_with_runner(config, store, NftRunner::default()).await
}

/// [`start`] with a chosen `nft` invocation (tests run it inside a namespace). The
/// first load happens before this returns, so a router that cannot take the table is
/// reported at start, not later in a log.
pub async fn start_with_runner(
    config: Arc<config::Config>,
    store: store::Store,
    runner: NftRunner,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    if !config.enforce.nftables {
        return Ok(vec![]);
    }
    // Events from here on are replayed after the load: harmless, as each replay
    // re-reads the subscriber's current state.
    let cursor = store
        .last_event_id()
        .await
        .map_err(|e| format!("nftables: {e}"))?;
    let mut enforcer = Enforcer::new(config.clone(), store.clone(), runner);
    enforcer
        .full_load()
        .await
        .map_err(|e| format!("nftables: {e}"))?;
    let every = config
        .enforce
        .reconcile_interval
        .get()
        .max(std::time::Duration::from_secs(1));
    let follower = store.follow(cursor);
    Ok(vec![tokio::spawn(sync::run(enforcer, follower, every))])
}

/// The complete ruleset for `nft -f` (`portcullis enforce render`), from the store's
/// current state.
pub async fn render(config: &config::Config, store: &store::Store) -> Result<String, String> {
    let enforced = sync::load_elements(store, &config.network.dynamic_pools)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ruleset::render_table(
        &TableSpec::from_config(config, 0),
        enforced.elements(),
    ))
}

/// The dynamic pools as an rbldnsd `ip4set` zone (`portcullis enforce export-pbl`).
pub fn render_pbl(config: &config::Config) -> String {
    ruleset::render_pbl(&config.network.dynamic_pools)
}
