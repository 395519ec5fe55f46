//! SQLite's own page cache, minus a full scan at the end of most write transactions.
//!
//! When a B-tree page splits, SQLite sorts the new pages by renumbering them, parking
//! one under a temporary number on the way: the page past the 1 GiB lock byte
//! (262,145 with 4 KiB pages). The default cache (`pcache1`) remembers the largest
//! number it ever held, and at the end of every transaction drops the pages past
//! the database's end; with that remembered number far past the end it scans its
//! whole hash table to do so. A store that deletes (delivered messages, closed
//! leases) reuses freed pages out of order, so nearly every transaction that splits
//! a page renumbers one, and every such commit paid a scan of the whole cache: ~5%
//! of the CPU of RADIUS accounting, growing with the cache, so a larger cache cost
//! more than the reads it saved.
//!
//! This shim passes every call to `pcache1`, but parks the page under the number
//! just past the largest it has handed out instead, which no cached page has and
//! which leaves `pcache1` only a bucket or two to look at. Nothing else changes.

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// SQLite's lock byte (`PENDING_BYTE`, fixed by the file format unless a test moves it).
const PENDING_BYTE: c_uint = 0x4000_0000;

/// Pages parked past the cache's highest number instead of at the lock page.
static PARKED: AtomicU64 = AtomicU64::new(0);

/// How many pages the shim parked so far; None when SQLite kept its own cache.
pub fn parked_pages() -> Option<u64> {
    install().then(|| PARKED.load(Ordering::Relaxed))
}

/// `pcache1`'s methods, kept for the life of the process.
static INNER: OnceLock<Methods> = OnceLock::new();

struct Methods(ffi::sqlite3_pcache_methods2);

// Plain functions, and an argument only ever handed back to them: SQLite calls them
// from any thread.
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

/// Installs the shim; must run before SQLite initializes (the first connection).
/// False when SQLite was already initialized or refused it: it then keeps `pcache1`.
pub(crate) fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| unsafe {
        let mut inner: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
        let got = ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_GETPCACHE2,
            &mut inner as *mut ffi::sqlite3_pcache_methods2,
        );
        if got != ffi::SQLITE_OK || inner.xCreate.is_none() || INNER.set(Methods(inner)).is_err() {
            return false;
        }
        let shim = ffi::sqlite3_pcache_methods2 {
            iVersion: 1,
            pArg: std::ptr::null_mut(),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            xCreate: Some(create),
            xCachesize: Some(cachesize),
            xPagecount: Some(pagecount),
            xFetch: Some(fetch),
            xUnpin: Some(unpin),
            xRekey: Some(rekey),
            xTruncate: Some(truncate),
            xDestroy: Some(destroy),
            xShrink: Some(shrink),
        };
        // SQLite copies the struct.
        let rc = ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_PCACHE2,
            &shim as *const ffi::sqlite3_pcache_methods2,
        );
        if rc != ffi::SQLITE_OK {
            tracing::debug!("SQLite kept its page cache ({rc}): it was initialized already");
        }
        rc == ffi::SQLITE_OK
    })
}

/// One connection's cache: `pcache1`'s, and what the shim knows about its numbers.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// The page SQLite parks a page under while renumbering.
    lock_page: c_uint,
    /// No page numbered above this is in the cache (an upper bound).
    highest: c_uint,
    /// Where the page SQLite parked at `lock_page` really is.
    parked: Option<c_uint>,
}

fn inner() -> &'static ffi::sqlite3_pcache_methods2 {
    &INNER
        .get()
        .expect("the page cache shim is installed only with pcache1's methods")
        .0
}

unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    &mut *p.cast::<Cache>()
}

impl Cache {
    /// The number `pcache1` knows `key` by.
    fn real(&self, key: c_uint) -> c_uint {
        match self.parked {
            Some(at) if key == self.lock_page => at,
            _ => key,
        }
    }
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    let i = inner();
    i.xInit.map_or(ffi::SQLITE_OK, |f| f(i.pArg))
}

unsafe extern "C" fn shutdown(_: *mut c_void) {
    let i = inner();
    if let Some(f) = i.xShutdown {
        f(i.pArg);
    }
}

unsafe extern "C" fn create(
    sz_page: c_int,
    sz_extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(create) = inner().xCreate else {
        return std::ptr::null_mut();
    };
    let p = create(sz_page, sz_extra, purgeable);
    if p.is_null() {
        return p;
    }
    Box::into_raw(Box::new(Cache {
        inner: p,
        lock_page: PENDING_BYTE / sz_page.max(1) as c_uint + 1,
        highest: 0,
        parked: None,
    }))
    .cast()
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, n: c_int) {
    if let Some(f) = inner().xCachesize {
        f(cache(p).inner, n);
    }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    inner().xPagecount.map_or(0, |f| f(cache(p).inner))
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let c = cache(p);
    let Some(f) = inner().xFetch else {
        return std::ptr::null_mut();
    };
    let key = c.real(key);
    let page = f(c.inner, key, create);
    if !page.is_null() {
        c.highest = c.highest.max(key);
    }
    page
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    if let Some(f) = inner().xUnpin {
        f(cache(p).inner, page, discard);
    }
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let c = cache(p);
    let Some(f) = inner().xRekey else { return };
    let from = c.real(old);
    if old == c.lock_page {
        c.parked = None;
    }
    let to = if new == c.lock_page {
        // Past every page cached: no page has that number while this one is parked.
        let spot = c.highest + 1;
        c.parked = Some(spot);
        PARKED.fetch_add(1, Ordering::Relaxed);
        spot
    } else {
        new
    };
    f(c.inner, page, from, to);
    c.highest = c.highest.max(to);
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let c = cache(p);
    if let Some(f) = inner().xTruncate {
        f(c.inner, limit);
    }
    // Every page numbered `limit` or above is gone.
    c.highest = c.highest.min(limit.saturating_sub(1));
    if c.parked.is_some_and(|at| at >= limit) {
        c.parked = None;
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    let c = Box::from_raw(p.cast::<Cache>());
    if let Some(f) = inner().xDestroy {
        f(c.inner);
    }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    if let Some(f) = inner().xShrink {
        f(cache(p).inner);
    }
}
