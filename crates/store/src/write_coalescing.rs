//! A SQLite VFS that writes the WAL and the database file in few large writes.
//!
//! SQLite writes each WAL frame as two `pwrite`s (its 24-byte header, then the page)
//! and a checkpoint copies each page with one more; on this kind of machine a
//! `pwrite` costs ~7 µs whatever its size, so a 100 KB message (27 frames) spent
//! ~0.4 ms of its commit in system calls, and an accounting batch as much. This
//! shim over the default `unix` VFS gathers consecutive writes of one file in memory
//! and hands them to the kernel in one `pwrite` (a whole commit, or a run of pages
//! of a checkpoint).
//!
//! Nothing SQLite relies on changes: before any other operation on the file (read,
//! sync, size, truncate, lock, close, file control, shared memory) the gathered
//! bytes are written, so every reader and every flush sees them; and a WAL commit is
//! written out as soon as its last frame is complete (the frame header with a
//! database size marks the commit), before SQLite publishes it in the wal-index.
//! Other connections, [`crate::db`]'s own `fdatasync` of the WAL and a crash after
//! the commit returned all find the frames in the file. Only the WAL and the main
//! database file are wrapped; journals and temporary files go straight to `unix`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open the store with.
pub(crate) const NAME: &str = "portcullis-coalescing";
const NAME_C: &CStr = c"portcullis-coalescing";

/// The most `unix` writes in one call (it masks the length with 0x1ffff); 31 pages.
const MAX_WRITE: usize = 0x1f000;
/// Bytes gathered before they are written anyway.
const MAX_GATHERED: usize = 8 << 20;
/// Size of a WAL frame header (SQLite's `wal.c`): the page number, then the database
/// size in pages after the commit, which only a commit's last frame carries.
const FRAME_HEADER: c_int = 24;

/// Registers the VFS once (not as the default); false when SQLite refused it.
pub(crate) fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| unsafe {
        let unix = ffi::sqlite3_vfs_find(std::ptr::null());
        if unix.is_null() {
            tracing::warn!("SQLite has no default VFS to wrap; writing through it directly");
            return false;
        }
        let mut vfs: ffi::sqlite3_vfs = *unix;
        vfs.szOsFile = (std::mem::size_of::<Gathering>() + (*unix).szOsFile as usize) as c_int;
        vfs.zName = NAME_C.as_ptr();
        vfs.pAppData = unix.cast();
        vfs.pNext = std::ptr::null_mut();
        vfs.xOpen = Some(open);
        // SQLite keeps the pointer for the life of the process.
        let vfs = Box::leak(Box::new(vfs));
        let rc = ffi::sqlite3_vfs_register(vfs, 0);
        if rc != ffi::SQLITE_OK {
            tracing::warn!("SQLite refused the write-coalescing VFS ({rc}); using its own");
        }
        rc == ffi::SQLITE_OK
    })
}

/// A wrapped file: SQLite allocates `szOsFile` bytes, this struct first and the
/// `unix` file it wraps right after.
#[repr(C)]
struct Gathering {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    wal: bool,
    /// Bytes not yet written, belonging at `at`.
    gathered: Vec<u8>,
    at: i64,
    /// The last write was the header of a commit's last frame: its page ends it.
    commit_ends_next: bool,
    /// Offset of the last read, to tell a checksum rewrite of a frame header (read,
    /// then written in place) from an appended frame.
    last_read: Option<i64>,
}

fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    unsafe { (*vfs).pAppData.cast() }
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let unix = real_vfs(vfs);
    let Some(unix_open) = (*unix).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    let wal = flags & ffi::SQLITE_OPEN_WAL != 0;
    if !wal && flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
        // The wrapper's allocation is larger than `unix` needs: it simply uses it.
        return unix_open(unix, name, file, flags, out_flags);
    }
    let real = file
        .cast::<u8>()
        .add(std::mem::size_of::<Gathering>())
        .cast::<ffi::sqlite3_file>();
    let rc = unix_open(unix, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        (*file).pMethods = std::ptr::null();
        return rc;
    }
    file.cast::<Gathering>().write(Gathering {
        base: ffi::sqlite3_file { pMethods: &METHODS },
        real,
        wal,
        gathered: Vec::new(),
        at: 0,
        commit_ends_next: false,
        last_read: None,
    });
    ffi::SQLITE_OK
}

unsafe fn this<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Gathering {
    &mut *file.cast::<Gathering>()
}

unsafe fn methods(g: &Gathering) -> &ffi::sqlite3_io_methods {
    &*(*g.real).pMethods
}

/// Writes what was gathered, in pieces `unix` takes whole.
unsafe fn write_out(g: &mut Gathering) -> c_int {
    let Some(write) = methods(g).xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut at = g.at;
    for piece in g.gathered.chunks(MAX_WRITE) {
        let rc = write(g.real, piece.as_ptr().cast(), piece.len() as c_int, at);
        if rc != ffi::SQLITE_OK {
            g.gathered.clear();
            return rc;
        }
        at += piece.len() as i64;
    }
    g.gathered.clear();
    ffi::SQLITE_OK
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let g = this(file);
    let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount as usize);
    // A frame header rewritten in place after its checksum changed (read, then
    // written at the same offset): nothing follows it.
    let rewrite = g.wal && amount == FRAME_HEADER && g.last_read == Some(offset);
    g.last_read = None;
    if g.gathered.is_empty() || offset != g.at + g.gathered.len() as i64 {
        let rc = write_out(g);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        g.at = offset;
    }
    g.gathered.extend_from_slice(bytes);
    if rewrite || g.commit_ends_next {
        g.commit_ends_next = false;
        return write_out(g);
    }
    if g.wal && amount == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0] {
        g.commit_ends_next = true;
    } else if g.gathered.len() >= MAX_GATHERED {
        return write_out(g);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let g = this(file);
    let rc = write_out(g);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    g.last_read = Some(offset);
    methods(g)
        .xRead
        .map_or(ffi::SQLITE_IOERR_READ, |r| r(g.real, buf, amount, offset))
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let g = this(file);
    let written = write_out(g);
    let closed = methods(g).xClose.map_or(ffi::SQLITE_OK, |c| c(g.real));
    std::ptr::drop_in_place(file.cast::<Gathering>());
    if written != ffi::SQLITE_OK {
        written
    } else {
        closed
    }
}

/// The `unix` method, after writing what was gathered.
macro_rules! after_write_out {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let g = this(file);
            let rc = write_out(g);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            methods(g).$field.map_or(ffi::SQLITE_IOERR, |m| m(g.real $(, $arg)*))
        }
    };
}

after_write_out!(truncate, xTruncate, (size: i64));
after_write_out!(sync, xSync, (flags: c_int));
after_write_out!(file_size, xFileSize, (size: *mut i64));
after_write_out!(lock, xLock, (level: c_int));
after_write_out!(unlock, xUnlock, (level: c_int));
after_write_out!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
after_write_out!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
after_write_out!(shm_map, xShmMap, (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
after_write_out!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int));
after_write_out!(shm_unmap, xShmUnmap, (delete: c_int));
after_write_out!(fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void));
after_write_out!(unfetch, xUnfetch, (offset: i64, page: *mut c_void));

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let g = this(file);
    methods(g).xSectorSize.map_or(4096, |m| m(g.real))
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let g = this(file);
    methods(g).xDeviceCharacteristics.map_or(0, |m| m(g.real))
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    let g = this(file);
    write_out(g);
    if let Some(m) = methods(g).xShmBarrier {
        m(g.real)
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> rusqlite::Connection {
        assert!(register());
        let c = rusqlite::Connection::open_with_flags_and_vfs(
            path,
            rusqlite::OpenFlags::default(),
            NAME,
        )
        .unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;",
        )
        .unwrap();
        c
    }

    fn count(c: &rusqlite::Connection) -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn integrity(c: &rusqlite::Connection) -> String {
        c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    /// Commits are seen by another connection as soon as they return; transactions
    /// larger than the cache (pages spilled to the WAL, then rewritten in place with
    /// new checksums) and than one write of `unix`; checkpoints that copy whole runs
    /// of pages; and the file SQLite's own library reads afterwards.
    #[test]
    fn commits_checkpoints_and_reopening_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open(&path);
        writer
            .execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b BLOB NOT NULL)")
            .unwrap();
        let reader = open(&path);
        for i in 0..40 {
            writer
                .execute("INSERT INTO t (b) VALUES (?1)", [vec![i as u8; 10_000]])
                .unwrap();
            assert_eq!(count(&reader), i + 1);
        }
        // 10 MB in one transaction through a 40-page cache: pages spill to the WAL
        // before the commit, and the counter's page, spilled and changed again, is
        // rewritten in its frame (then every later frame's checksum is rewritten).
        writer
            .execute_batch(
                "CREATE TABLE u (n INTEGER); INSERT INTO u VALUES (0); \
                 PRAGMA cache_size=40; BEGIN",
            )
            .unwrap();
        for i in 0..100 {
            if i % 3 == 0 {
                writer.execute("UPDATE u SET n = n + 1", []).unwrap();
            }
            writer
                .execute("INSERT INTO t (b) VALUES (?1)", [vec![i as u8; 100_000]])
                .unwrap();
        }
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(count(&reader), 140);
        // What a crash would leave: the files as they are now, the WAL recovered
        // (every frame's checksum verified) by a connection of SQLite's own VFS.
        let crashed = dir.path().join("crashed.db");
        std::fs::copy(&path, &crashed).unwrap();
        std::fs::copy(
            dir.path().join("t.db-wal"),
            dir.path().join("crashed.db-wal"),
        )
        .unwrap();
        let recovered = rusqlite::Connection::open(&crashed).unwrap();
        assert_eq!(count(&recovered), 140);
        assert_eq!(integrity(&recovered), "ok");
        drop(recovered);
        let checkpoint: (i64, i64, i64) = reader
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(checkpoint.0, 0);
        assert_eq!(checkpoint.1, checkpoint.2, "every frame copied");
        assert_eq!(integrity(&reader), "ok");
        drop((writer, reader));

        // SQLite's default VFS reads what this one wrote.
        let plain = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(integrity(&plain), "ok");
        let last: Vec<u8> = plain
            .query_row("SELECT b FROM t ORDER BY a DESC LIMIT 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(last, vec![99u8; 100_000]);
        let n: i64 = plain
            .query_row("SELECT n FROM u", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 34);
        let sum: i64 = plain
            .query_row("SELECT sum(length(b)) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, 40 * 10_000 + 100 * 100_000);
    }
}
