//! The Access-Request view of each subscriber ([`RadiusProfile`]: password hash,
//! port-25 state, static address) kept in memory, so a BRAS re-authenticating many
//! sessions does not cost a store query each. Entries are dropped when the event log
//! names their subscriber (a state, plan, password or address change), within
//! [`POLL`], the delay CoA has for live sessions too. Nothing is cached while the
//! event log cannot be read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{RadiusProfile, Store};

/// How often the event log is read; a change reaches Access-Accepts within this.
const POLL: Duration = Duration::from_millis(200);
/// Most profiles kept; beyond, the cache starts over (a crude bound, rarely reached).
const MAX_PROFILES: usize = 1_000_000;

#[derive(Default)]
pub(crate) struct Profiles {
    entries: Mutex<HashMap<String, Arc<RadiusProfile>>>,
    /// Bumped by every invalidation, so a lookup that raced one does not cache what
    /// it read before the change.
    generation: AtomicU64,
    /// Whether the event follower is running; caching is off while it is not.
    live: AtomicBool,
}

impl Profiles {
    pub(crate) fn get(&self, login: &str) -> Option<Arc<RadiusProfile>> {
        self.entries.lock().ok()?.get(login).cloned()
    }

    /// The generation to pass to [`Profiles::insert`], taken before the store read.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches `profile`, read from the store after [`Profiles::generation`] returned
    /// `generation`, unless an invalidation came in between.
    pub(crate) fn insert(&self, generation: u64, login: &str, profile: Arc<RadiusProfile>) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_PROFILES {
            entries.clear();
        }
        entries.insert(login.to_string(), profile);
    }

    /// Drops what changed: the subscribers named, or everything for a `None`.
    fn invalidate(&self, changes: &[Option<String>]) {
        if changes.is_empty() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            for change in changes {
                match change {
                    Some(login) => {
                        entries.remove(login);
                    }
                    None => entries.clear(),
                }
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Turns caching on for lookups that start from now on.
    fn start_caching(&self) {
        self.live.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn stop_caching(&self) {
        self.live.store(false, Ordering::Release);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Follows the event log for as long as the server runs, invalidating `profiles`.
pub(crate) async fn follow(profiles: Arc<Profiles>, store: Store) {
    loop {
        let mut cursor = match store.last_event_id().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("RADIUS profile cache off, cannot read the event log: {e}");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        // Whatever is cached from here on was read after `cursor`.
        profiles.start_caching();
        loop {
            tokio::time::sleep(POLL).await;
            match store.profile_changes(cursor).await {
                Ok((next, changes)) => {
                    profiles.invalidate(&changes);
                    cursor = next;
                }
                Err(e) => {
                    tracing::warn!("RADIUS profile cache off, event log unreadable: {e}");
                    profiles.stop_caching();
                    break;
                }
            }
        }
    }
}
