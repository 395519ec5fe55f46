//! Live sync: keeps the table in step with the store.
//!
//! At start the whole table is loaded in one `nft -f` transaction. Then the event log
//! is followed: each batch of events names the logins that changed; their current
//! state is read back from the store (so replays and reordering are harmless) and the
//! difference goes to nft as one batch of `add element` / `delete element`. Bulk
//! imports (events without a login) and a failed batch cause a full atomic reload,
//! which also resets what this process believes is in the table. Every
//! `enforce.reconcile_interval` the table is checked cheaply — the generation marker,
//! plus a few known elements of each small set — and reloaded when it drifted
//! (someone flushed the ruleset or a set). Because a load replaces the table in one transaction, a
//! failure at any point leaves the previous table in place.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use policy::IpNet;
use store::{Event, Store};

use super::ruleset::{
    self, render_changes, render_probe, render_table_json, Element, Purpose, TableSpec,
};
use super::state::{elements_of, in_dynamic_pool, Enforced};
use super::{NftRunner, NftablesError};

/// Known elements probed per set on each reconcile: enough to notice a flushed set.
const PROBES_PER_SET: usize = 4;

/// Sets larger than this are not probed. nft 1.0 reads a whole set to answer one
/// `get element` (about 0.5 s for 50,000 elements and 1 s for 100,000 on the
/// benchmark machine, `benches/nft.rs`), and the sync loop waits meanwhile; the
/// generation marker still catches the usual drift there (table deleted, ruleset
/// flushed or replaced).
const PROBE_MAX_SET: usize = 20_000;

/// Rows per chunk of the store read: large enough that the channel costs nothing,
/// small enough that building the state keeps pace with the read.
const READ_CHUNK: usize = 16_384;

/// Reads every subscriber element from the store (two indexed joins), building the
/// state from each chunk of rows while the store reads the next.
pub async fn load_elements(
    store: &Store,
    dynamic_pools: &[IpNet],
) -> Result<Enforced, NftablesError> {
    let mut enforced = Enforced::default();
    // Same rule as `elements_of`, row by row.
    let mut chunks = store.opted_out_open_leases_chunks(READ_CHUNK);
    while let Some(chunk) = chunks.recv().await {
        for h in chunk? {
            if in_dynamic_pool(dynamic_pools, &h.net) {
                let e = Element {
                    purpose: Purpose::Allowed,
                    net: h.net,
                };
                enforced.add(h.login, e);
            }
        }
    }
    for h in store.reinstated_static_addresses().await? {
        let e = Element {
            purpose: Purpose::Blocked,
            net: h.net,
        };
        enforced.add(h.login, e);
    }
    enforced.finish();
    Ok(enforced)
}

/// Where the time of the last full load went (the benchmark reports these).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadTimes {
    /// Store query and building what is enforced.
    pub read: Duration,
    /// Rendering the ruleset text.
    pub render: Duration,
    /// `nft -f` committing it.
    pub nft: Duration,
    /// Subscriber elements loaded.
    pub elements: usize,
    /// Size of the ruleset text.
    pub bytes: usize,
}

impl LoadTimes {
    pub fn total(&self) -> Duration {
        self.read + self.render + self.nft
    }
}

/// The table of this process and what it believes is in it.
pub struct Enforcer {
    config: Arc<config::Config>,
    store: Store,
    runner: NftRunner,
    enforced: Enforced,
    generation: u32,
    reconciles: u64,
    applied: Option<tokio::sync::mpsc::UnboundedSender<ruleset::Changes>>,
    last_load: LoadTimes,
}

impl Enforcer {
    pub fn new(config: Arc<config::Config>, store: Store, runner: NftRunner) -> Enforcer {
        Enforcer {
            config,
            store,
            runner,
            enforced: Enforced::default(),
            generation: initial_generation(),
            reconciles: 0,
            applied: None,
            last_load: LoadTimes::default(),
        }
    }

    /// Replaces the table with one rendered from the store, in one transaction.
    pub async fn full_load(&mut self) -> Result<(), NftablesError> {
        let started = Instant::now();
        let enforced = load_elements(&self.store, &self.config.network.dynamic_pools).await?;
        let read = started.elapsed();
        let generation = self.generation.wrapping_add(1);
        let text = render_table_json(
            &TableSpec::from_config(&self.config, generation),
            enforced.elements(),
        );
        let render = started.elapsed() - read;
        self.runner.load_json(&text).await?;
        let times = LoadTimes {
            read,
            render,
            nft: started.elapsed() - read - render,
            elements: enforced.len(),
            bytes: text.len(),
        };
        tracing::info!(
            table = %self.config.enforce.table,
            elements = times.elements,
            generation,
            read_ms = times.read.as_millis() as u64,
            render_ms = times.render.as_millis() as u64,
            nft_ms = times.nft.as_millis() as u64,
            "nftables table loaded"
        );
        // Freeing a million logins' state takes a while; not on the sync loop's time.
        let old = std::mem::replace(&mut self.enforced, enforced);
        tokio::task::spawn_blocking(move || drop(old));
        self.generation = generation;
        self.last_load = times;
        Ok(())
    }

    /// Phase times of the last successful full load.
    pub fn last_load(&self) -> LoadTimes {
        self.last_load
    }

    /// Applies one batch of events: incremental when possible, a full load otherwise.
    pub async fn apply(&mut self, events: &[Event]) -> Result<(), NftablesError> {
        if events
            .iter()
            .any(|e| e.login.is_none() && e.kind.ends_with(".imported"))
        {
            return self.full_load().await;
        }
        let logins: Vec<String> = events
            .iter()
            .filter_map(|e| e.login.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if logins.is_empty() {
            return Ok(());
        }
        let states = self.store.enforcement_states(&logins).await?;
        let mut changes = ruleset::Changes::default();
        let pools = &self.config.network.dynamic_pools;
        let mut seen = BTreeSet::new();
        for s in &states {
            let wanted = elements_of(pools, s.port25, &s.open_leases, &s.static_ips);
            self.enforced.replace_into(&s.login, wanted, &mut changes);
            seen.insert(s.login.as_str());
        }
        // A login no longer in the store needs nothing.
        for login in logins.iter().filter(|l| !seen.contains(l.as_str())) {
            self.enforced.replace_into(login, Vec::new(), &mut changes);
        }
        if changes.is_empty() {
            return Ok(());
        }
        let text = render_changes(&self.config.enforce.table, &changes);
        match self.runner.load(&text).await {
            Ok(()) => {
                if let Some(tx) = &self.applied {
                    let _ = tx.send(changes.clone());
                }
                tracing::debug!(
                    added = changes.add.len(),
                    deleted = changes.delete.len(),
                    "nftables sets updated"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!("nftables update failed ({e}); reloading the whole table");
                self.full_load().await
            }
        }
    }

    /// Checks that the table is still ours and complete; reloads it when not.
    /// Returns whether a reload happened.
    pub async fn reconcile(&mut self) -> Result<bool, NftablesError> {
        self.reconciles += 1;
        let table = &self.config.enforce.table;
        let marker = self
            .runner
            .run(&["list", "set", "inet", table, "generation"], None)
            .await;
        let expected = format!("{:#010x}", self.generation);
        let intact = match marker {
            Ok(text) if text.contains(&expected) => {
                let probes = self.enforced.sample(
                    PROBES_PER_SET,
                    PROBE_MAX_SET,
                    self.reconciles.wrapping_mul(0x9e37_79b9),
                );
                probes.is_empty()
                    || self
                        .runner
                        .load(&render_probe(table, &probes))
                        .await
                        .is_ok()
            }
            _ => false,
        };
        if intact {
            return Ok(false);
        }
        tracing::warn!(table = %table, "nftables table missing or changed behind our back; reloading");
        self.full_load().await?;
        Ok(true)
    }

    /// Reports every incremental batch once nft has committed it (the benchmark
    /// times state change → set updated with this).
    pub fn observe(&mut self) -> tokio::sync::mpsc::UnboundedReceiver<ruleset::Changes> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.applied = Some(tx);
        rx
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn enforced(&self) -> &Enforced {
        &self.enforced
    }
}

/// Different at each start, so a table left by an earlier process is never mistaken
/// for this one's.
fn initial_generation() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u32) ^ std::process::id().rotate_left(16)
}

/// Loads the table, then follows the event log and reconciles until aborted.
pub async fn run(mut enforcer: Enforcer, mut follower: store::EventFollower, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            batch = follower.next_batch() => match batch {
                Ok(events) => {
                    if let Err(e) = enforcer.apply(&events).await {
                        // The previous table stays loaded; the next reconcile retries.
                        tracing::error!("nftables sync failed: {e}");
                        failing = true;
                    }
                }
                Err(e) => {
                    tracing::error!("nftables sync cannot read the event log: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = tick.tick() => {
                let result = if failing { enforcer.full_load().await.map(|()| true) } else { enforcer.reconcile().await };
                match result {
                    Ok(_) => failing = false,
                    Err(e) => {
                        tracing::error!("nftables reconcile failed: {e}");
                        failing = true;
                    }
                }
            }
        }
    }
}
