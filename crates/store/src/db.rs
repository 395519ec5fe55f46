//! The thin layer that lets every query be written once for both backends.
//!
//! SQL is written in PostgreSQL's dialect with `$N` placeholders, only `BIGINT` and
//! `TEXT` columns, and `{serial}` for auto-numbered keys in migrations; for SQLite the
//! placeholders become `?N`. Rows come back as [`Row`]s of [`Value`]s, so callers never
//! see a backend type. SQLite runs on blocking threads: one writer connection (one
//! writer is all SQLite allows anyway) and a few readers, so a query never waits for a
//! commit's fsync (WAL readers see the last commit); PostgreSQL uses a small pool of
//! connections.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::SinkExt;
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::error::StoreError;

/// A parameter or a column value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    /// Raw bytes: a BLOB on SQLite (which keeps one as is even in a TEXT column), a
    /// BYTEA on PostgreSQL (whose TEXT cannot hold arbitrary bytes). Shared, so a
    /// message body is bound without a copy.
    Bytes(Arc<Vec<u8>>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v as i64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a parameter list: `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { vec![$($crate::db::Value::from($v)),*] };
}

/// One result row.
#[derive(Clone, Debug)]
pub struct Row(Vec<Value>);

impl Row {
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.0.get(i) {
            Some(Value::Int(v)) => Ok(*v),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected integer, found {other:?}"
            ))),
        }
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.0.get(i) {
            Some(Value::Null) => Ok(None),
            _ => self.int(i).map(Some),
        }
    }
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.0.get(i) {
            Some(Value::Text(v)) => Ok(v.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, found {other:?}"
            ))),
        }
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.0.get(i) {
            Some(Value::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
    /// The column as it came back: bytes or text, taking it out of the row.
    pub fn take(&mut self, i: usize) -> Option<Value> {
        self.0.get_mut(i).map(|v| std::mem::replace(v, Value::Null))
    }
}

/// One result row read in place by [`Db::query_map`].
pub(crate) enum RowRef<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

impl RowRef<'_> {
    /// Column `i` as text, borrowed.
    pub(crate) fn str(&self, i: usize) -> Result<&str, StoreError> {
        let corrupt = |e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("column {i}: expected text ({e})"))
        };
        match self {
            RowRef::Sqlite(r) => r.get_ref(i)?.as_str().map_err(|e| corrupt(&e)),
            RowRef::Postgres(r) => r.try_get::<_, &str>(i).map_err(|e| corrupt(&e)),
        }
    }
}

/// One statement of a transaction.
#[derive(Clone, Debug)]
pub struct Stmt {
    pub sql: String,
    pub params: Vec<Value>,
    /// When set, the transaction is rolled back with [`StoreError::Conflict`] unless
    /// the statement touched exactly this many rows (optimistic concurrency).
    pub expect_rows: Option<u64>,
    /// The statement ends in `RETURNING id`: its slot in [`Db::tx`]'s result holds
    /// the new row's id instead of a row count.
    returns_id: bool,
    /// For a plain multi-row INSERT from [`bulk_insert`]: the equivalent
    /// `COPY t (cols) FROM STDIN` and the row width. PostgreSQL streams such rows with
    /// COPY (several times faster than INSERT); SQLite runs the INSERT.
    copy: Option<(String, usize)>,
}

impl Stmt {
    pub fn new(sql: impl Into<String>, params: Vec<Value>) -> Stmt {
        Stmt {
            sql: sql.into(),
            params,
            expect_rows: None,
            returns_id: false,
            copy: None,
        }
    }
    pub fn expect(mut self, rows: u64) -> Stmt {
        self.expect_rows = Some(rows);
        self
    }
    /// Whether this appends to the event log (see [`EVENT_LOCK`]).
    pub fn appends_event(&self) -> bool {
        self.sql.trim_start().starts_with("INSERT INTO events")
    }
    /// An INSERT whose new id the caller needs, read in the same transaction (a
    /// `SELECT MAX(id)` afterwards could see another transaction's row).
    pub fn returning_id(mut self) -> Stmt {
        self.sql.push_str(" RETURNING id");
        self.returns_id = true;
        self
    }
}

/// Multi-row INSERTs: `prefix` is `INSERT INTO t (a, b) VALUES`, each row one tuple.
pub fn bulk_insert(prefix: &str, suffix: &str, rows: Vec<Vec<Value>>) -> Vec<Stmt> {
    const PARAMS_PER_STMT: usize = 8_000;
    let width = rows.first().map_or(1, Vec::len).max(1);
    let per = (PARAMS_PER_STMT / width).max(1);
    let copy = copy_command(prefix, suffix).map(|c| (c, width));
    let mut out = Vec::new();
    let mut it = rows.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<Vec<Value>> = it.by_ref().take(per).collect();
        let mut sql = String::with_capacity(prefix.len() + chunk.len() * width * 6);
        sql.push_str(prefix);
        let mut n = 0;
        for (r, row) in chunk.iter().enumerate() {
            sql.push_str(if r == 0 { " (" } else { ", (" });
            for c in 0..row.len() {
                n += 1;
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(suffix);
        let mut stmt = Stmt::new(sql, chunk.into_iter().flatten().collect());
        stmt.copy = copy.clone();
        out.push(stmt);
    }
    out
}

/// `INSERT INTO t (a, b) VALUES` with no suffix → `COPY t (a, b) FROM STDIN`.
fn copy_command(prefix: &str, suffix: &str) -> Option<String> {
    let target = prefix
        .trim()
        .strip_prefix("INSERT INTO ")?
        .strip_suffix("VALUES")?
        .trim();
    (suffix.trim().is_empty() && target.ends_with(')')).then(|| format!("COPY {target} FROM STDIN"))
}

/// Rows in COPY's text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_text(params: &[Value], width: usize, out: &mut Vec<u8>) {
    for row in params.chunks(width) {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match v {
                Value::Null => out.extend_from_slice(b"\\N"),
                Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
                Value::Bytes(b) => {
                    // bytea's hex form, its backslash escaped for COPY's text format.
                    out.extend_from_slice(b"\\\\x");
                    for byte in b.iter() {
                        out.extend_from_slice(format!("{byte:02x}").as_bytes());
                    }
                }
                Value::Text(t) => {
                    for b in t.bytes() {
                        match b {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            _ => out.push(b),
                        }
                    }
                }
            }
        }
        out.push(b'\n');
    }
}

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(Arc<Sqlite>),
    Postgres(Arc<PgPool>),
}

/// SQLite connections to one database file: the writer, and readers for queries.
pub(crate) struct Sqlite {
    /// Shared with the checkpointer, which takes it to copy a small rest; it holds
    /// nothing else of the store, so the store is dropped (see its `Drop`) by whoever
    /// lets go of it last, never by the checkpointer.
    writer: Arc<Mutex<rusqlite::Connection>>,
    readers: Vec<Mutex<rusqlite::Connection>>,
    next: AtomicUsize,
    /// Commits so far (written to the WAL, maybe not yet on disk).
    commits: Arc<AtomicU64>,
    wal: WalSync,
}

/// Makes commits durable after the writer lock is released (group commit with the
/// flush pipelined): the writer commits with synchronous=NORMAL, which writes the
/// WAL without flushing it, and each committer then waits here until one
/// `fdatasync` of the WAL that started after its commit has returned. While one
/// flush runs, the next transactions are already being written, and one flush covers
/// every commit before it. Checkpoints flush the WAL before copying it and the
/// database file after (SQLite does so at synchronous=NORMAL too), so a commit that
/// was checkpointed and its WAL rewritten is on disk in the database file.
struct WalSync {
    path: String,
    state: Mutex<SyncState>,
    flushed: std::sync::Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Every commit numbered up to this one is on disk.
    synced: u64,
    flushing: bool,
    /// The WAL open for flushing, with its inode: SQLite deletes and recreates the WAL
    /// only when every connection closed, but a flush must never go to a stale file.
    file: Option<(std::fs::File, u64)>,
}

impl WalSync {
    /// Returns once commit number `seq` (and every one before it) is on disk.
    fn wait(&self, seq: u64, commits: &AtomicU64) -> Result<(), StoreError> {
        let mut st = self.state.lock().map_err(poisoned)?;
        loop {
            if st.synced >= seq {
                return Ok(());
            }
            if st.flushing {
                st = self.flushed.wait(st).map_err(poisoned)?;
                continue;
            }
            // Lead a flush covering every commit written so far.
            st.flushing = true;
            let target = commits.load(Ordering::Acquire);
            let file = st.file.take();
            drop(st);
            let result = self.flush(file);
            st = self.state.lock().map_err(poisoned)?;
            st.flushing = false;
            self.flushed.notify_all();
            match result {
                Ok(file) => {
                    st.file = Some(file);
                    st.synced = st.synced.max(target);
                }
                Err(e) => return Err(StoreError::Backend(format!("flushing {}: {e}", self.path))),
            }
        }
    }

    /// Starts writing the WAL's dirty pages to disk without waiting for them
    /// (`sync_file_range`), so they are on their way while the committer does what
    /// it does before it waits for the flush. A no-op while a flush runs (that one
    /// writes them) or before the first.
    #[cfg(target_os = "linux")]
    fn start_writeback(&self) {
        use std::os::fd::AsRawFd;
        let Ok(st) = self.state.lock() else { return };
        if let Some((file, _)) = &st.file {
            // SAFETY: a file descriptor this struct owns; the call only reads it.
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&self) {}

    fn flush(&self, file: Option<(std::fs::File, u64)>) -> std::io::Result<(std::fs::File, u64)> {
        use std::os::unix::fs::MetadataExt;
        let current = inode(&self.path)?;
        let (file, ino) = match file {
            Some((f, ino)) if ino == current => (f, ino),
            _ => {
                let f = std::fs::File::open(&self.path)?;
                let ino = f.metadata()?.ino();
                (f, ino)
            }
        };
        file.sync_data()?;
        Ok((file, ino))
    }
}

/// The inode number of `path`, asking for nothing else. A `stat` that reads the
/// timestamps makes Linux (multigrain timestamps, 6.13 on) give the file's next write
/// a new mtime, which dirties its inode, and `fdatasync` on ext4 then writes the inode
/// block too: one more synchronous disk write in nearly every flush of the WAL, which
/// is written between every two flushes.
#[cfg(target_os = "linux")]
fn inode(path: &str) -> std::io::Result<u64> {
    let c = std::ffi::CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: a valid C string and a buffer statx fills.
    unsafe {
        let mut buf: libc::statx = std::mem::zeroed();
        if libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_INO, &mut buf) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(buf.stx_ino)
    }
}

#[cfg(not(target_os = "linux"))]
fn inode(path: &str) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.ino())
}

/// Whether a commit returns only once it is on disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Flush {
    /// Survives a power cut once returned: everything that was promised to someone
    /// (an accepted message, an accounting record, an operator's change).
    Wait,
    /// Visible and safe from a crash of the process when returned, on disk with the
    /// next flush (any other commit's, or the checkpointer's, within moments); a power
    /// cut may undo it. For bookkeeping whose loss only repeats work: a delivery's
    /// outcome (the message is sent again, as Postfix does when its queue file's
    /// unlink was not yet on disk) and claims (they expire).
    Later,
}

/// The most statements a commit without a flush runs on the caller's thread when the
/// writer is free (a delivery's outcome for a few messages); larger ones, and every
/// commit that waits for its flush, go to a blocking thread, so a runtime worker is
/// never held long.
const ON_CALLER_STATEMENTS: usize = 32;

/// Reader connections per SQLite store: queries run on blocking threads, a few at once.
const SQLITE_READERS: usize = 4;

/// Prepared statements kept per SQLite connection.
const STATEMENT_CACHE: usize = 256;

/// How often the checkpointer copies committed WAL frames into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Frames committed during a PASSIVE round few enough to copy while holding the writer.
const CHECKPOINT_TAIL: i64 = 128;
/// Most PASSIVE rounds before the rest is copied while holding the writer anyway
/// (bounding the WAL when writing outpaces copying).
const CHECKPOINT_CATCH_UP: usize = 5;

/// A connection to the database file through [`crate::write_coalescing`] (SQLite's own
/// VFS if it could not be registered), with [`crate::page_cache`].
fn open_connection(path: &str) -> rusqlite::Result<rusqlite::Connection> {
    // Before anything initializes SQLite (registering the VFS does).
    crate::page_cache::install();
    if crate::write_coalescing::register() {
        let flags = rusqlite::OpenFlags::default();
        rusqlite::Connection::open_with_flags_and_vfs(path, flags, crate::write_coalescing::NAME)
    } else {
        rusqlite::Connection::open(path)
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Backend("sqlite lock poisoned".into())
}

impl Sqlite {
    fn open(path: &str) -> Result<Sqlite, StoreError> {
        let connect = |setup: &str| -> Result<rusqlite::Connection, StoreError> {
            let conn = open_connection(path).map_err(|e| StoreError::open(path, e))?;
            conn.busy_timeout(Duration::from_secs(30))
                .map_err(|e| StoreError::open(path, e))?;
            // Statements with IN lists and bulk inserts differ by their number of
            // placeholders: rusqlite's 16 cached statements were re-prepared all along.
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            conn.execute_batch(setup)
                .map_err(|e| StoreError::open(path, e))?;
            Ok(conn)
        };
        // synchronous=NORMAL: a commit writes the WAL; [`WalSync`] flushes it before
        // the commit is reported. Checkpoints run on their own connection
        // ([`Sqlite::checkpoint`]), so a commit never also pays for copying the WAL
        // into the database file.
        let writer = connect(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
             PRAGMA wal_autocheckpoint=0;",
        )?;
        let readers = (0..SQLITE_READERS)
            .map(|_| connect("PRAGMA query_only=ON;").map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Sqlite {
            writer: Arc::new(Mutex::new(writer)),
            readers,
            next: AtomicUsize::new(0),
            commits: Arc::new(AtomicU64::new(0)),
            wal: WalSync {
                path: format!("{path}-wal"),
                state: Mutex::new(SyncState::default()),
                flushed: std::sync::Condvar::new(),
            },
        })
    }

    /// Runs `write` on the writer connection, then, with `flush`, waits until what it
    /// committed is on disk.
    fn write<T>(
        &self,
        flush: Flush,
        write: impl FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (out, seq) = self.write_unflushed(write)?;
        if flush == Flush::Wait {
            self.wal.wait(seq, &self.commits)?;
        }
        Ok(out)
    }

    /// Runs `write` on the writer connection; returns its result and the number of
    /// its commit, for [`WalSync::wait`].
    fn write_unflushed<T>(
        &self,
        write: impl FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<(T, u64), StoreError> {
        let mut c = self.writer.lock().map_err(poisoned)?;
        self.committed(write(&mut c))
    }

    /// [`Sqlite::write_unflushed`] if the writer is free now; None if it is busy.
    fn try_write_unflushed<T>(
        &self,
        write: impl FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Option<Result<(T, u64), StoreError>> {
        match self.writer.try_lock() {
            Ok(mut c) => Some(self.committed(write(&mut c))),
            Err(std::sync::TryLockError::WouldBlock) => None,
            Err(std::sync::TryLockError::Poisoned(e)) => Some(Err(poisoned(e))),
        }
    }

    /// Numbers a commit the writer made (called with the writer held).
    fn committed<T>(&self, out: Result<T, StoreError>) -> Result<(T, u64), StoreError> {
        Ok((out?, self.commits.fetch_add(1, Ordering::AcqRel) + 1))
    }

    /// A connection for a query: the writer when it is idle (its page cache is
    /// current, while a reader's is dropped after every commit), else a free reader,
    /// else the next reader in turn to wait for.
    fn reader(&self) -> Result<MutexGuard<'_, rusqlite::Connection>, StoreError> {
        if let Ok(g) = self.writer.try_lock() {
            return Ok(g);
        }
        for r in &self.readers {
            if let Ok(g) = r.try_lock() {
                return Ok(g);
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[i].lock().map_err(poisoned)
    }

    /// Copies committed WAL frames into the database file every [`CHECKPOINT_EVERY`]
    /// there were commits, on a thread and connection of its own, until the store is
    /// dropped. The bulk is copied with PASSIVE checkpoints, which never block the
    /// writer or readers. But the WAL is rewritten from its start only by a commit
    /// that finds every frame copied, and under steady writing each checkpoint ends
    /// behind the commits made while it ran: the WAL would grow without end (hundreds
    /// of MB within seconds of 100 KB messages), each commit extending the file, which
    /// makes its flush dearer, and the checkpoints with it. So once the rest is small,
    /// it is copied while holding the writer: commits wait that long (a few frames
    /// and two flushes), and the next commit starts the WAL over.
    fn checkpoint(
        store: Weak<Sqlite>,
        writer: Arc<Mutex<rusqlite::Connection>>,
        commits: Arc<AtomicU64>,
        path: String,
    ) {
        let conn = match open_connection(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("sqlite checkpointer cannot open {path}: {e}");
                return;
            }
        };
        let _ = conn.busy_timeout(Duration::from_secs(1));
        let passive = || {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
        };
        let mut seen = 0;
        loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            if store.strong_count() == 0 {
                return;
            }
            let commits = commits.load(Ordering::Relaxed);
            if commits == seen {
                continue;
            }
            seen = commits;
            let mut result = passive();
            // Each round copies what was committed during the one before, so the rest
            // shrinks while copying outpaces writing; none of these rounds blocks a commit.
            for _ in 0..CHECKPOINT_CATCH_UP {
                let Ok((before, _)) = result else { break };
                result = passive();
                if matches!(result, Ok((log, _)) if log - before <= CHECKPOINT_TAIL) {
                    break;
                }
            }
            if result.is_ok() {
                if let Ok(_writer) = writer.lock() {
                    result = passive();
                }
            }
            if let Err(e) = result {
                tracing::warn!("sqlite checkpoint of {path} failed: {e}");
            }
        }
    }
}

impl Drop for Sqlite {
    /// The last handle on the store is gone: what this process wrote is copied
    /// from the WAL into the database file and the WAL emptied, so the next process to
    /// open the store does not pay for it (after a bulk import, tens or hundreds of MB
    /// the next command would read and copy before answering). SQLite does this itself
    /// when a connection closes and no other is using the database, but after a large
    /// write the checkpointer is usually still copying then; SQLite answers a second
    /// checkpoint busy at once, without waiting, so this tries again until it is done.
    fn drop(&mut self) {
        let Ok(c) = self.writer.lock() else { return };
        // A process that changed nothing (a query from the CLI beside a running server)
        // leaves the WAL to whoever wrote it.
        if c.total_changes() == 0 {
            return;
        }
        let deadline = Instant::now() + CLOSE_CHECKPOINT_WAIT;
        loop {
            match c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            }) {
                Ok(0) => return,
                Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Ok(_) => {
                    tracing::warn!(
                        "sqlite checkpoint on close of {}: still busy after {CLOSE_CHECKPOINT_WAIT:?}, the next process copies the rest",
                        self.wal.path
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        "sqlite checkpoint on close of {} failed: {e}",
                        self.wal.path
                    );
                    return;
                }
            }
        }
    }
}

/// How long closing a store waits for a running checkpoint before leaving the rest.
const CLOSE_CHECKPOINT_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct PgPool {
    clients: Vec<tokio::sync::Mutex<tokio_postgres::Client>>,
    next: AtomicUsize,
}

/// The transaction-scoped advisory lock that makes event ids commit in order on
/// PostgreSQL, so a follower reading `id > cursor` never skips a late commit.
const EVENT_LOCK: i64 = 0x706f_7274_6375;

impl Db {
    pub(crate) async fn open_sqlite(path: &str) -> Result<Db, StoreError> {
        let path = path.to_string();
        let db = {
            let path = path.clone();
            blocking(move || Sqlite::open(&path)).await?
        };
        let db = Arc::new(db);
        let (weak, writer, commits) = (Arc::downgrade(&db), db.writer.clone(), db.commits.clone());
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || Sqlite::checkpoint(weak, writer, commits, path))
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpointer: {e}")))?;
        Ok(Db::Sqlite(db))
    }

    pub(crate) async fn open_postgres(url: &str, pool_size: usize) -> Result<Db, StoreError> {
        let mut clients = Vec::new();
        for _ in 0..pool_size.max(1) {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| StoreError::open(url, e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::error!("postgres connection ended: {e}");
                }
            });
            clients.push(tokio::sync::Mutex::new(client));
        }
        Ok(Db::Postgres(Arc::new(PgPool {
            clients,
            next: AtomicUsize::new(0),
        })))
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Runs a script of several statements without parameters (migrations).
    pub(crate) async fn batch(&self, script: &str) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(db) => {
                let db = db.clone();
                let script = script.to_string();
                blocking(move || db.write(Flush::Wait, |c| Ok(c.execute_batch(&script)?))).await
            }
            Db::Postgres(pool) => {
                let c = pool.get().await;
                c.batch_execute(script).await.map_err(StoreError::from)
            }
        }
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<Vec<Row>, StoreError> {
        self.query_with(sql, params, Flush::Wait).await
    }

    /// [`Db::query`] of a write whose loss only repeats work (see [`Flush::Later`]).
    pub(crate) async fn query_flush_later(
        &self,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<Vec<Row>, StoreError> {
        self.query_with(sql, params, Flush::Later).await
    }

    async fn query_with(
        &self,
        sql: &str,
        params: Vec<Value>,
        flush: Flush,
    ) -> Result<Vec<Row>, StoreError> {
        match self {
            Db::Sqlite(db) => {
                let db = db.clone();
                let sql = sqlite_sql(sql);
                blocking(move || {
                    if is_read(&sql) {
                        return sqlite_query(&*db.reader()?, &sql, &params);
                    }
                    // A write with RETURNING: the writer, committed on return.
                    db.write(flush, |c| sqlite_query(c, &sql, &params))
                })
                .await
            }
            Db::Postgres(pool) => {
                let c = pool.get().await;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = c.query(sql, &refs).await?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// Like [`Db::query`], but each row is handed to `map` in place (columns borrowed
    /// from the backend's buffers, no [`Value`]s), so reading a million rows costs
    /// one `T` per row.
    pub(crate) async fn query_map<T, F>(
        &self,
        sql: &str,
        params: Vec<Value>,
        map: F,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&RowRef<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let mut chunks = self.query_chunks(sql, params, usize::MAX, map);
        let mut out = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            out.extend(chunk?);
        }
        Ok(out)
    }

    /// [`Db::query_map`] delivered in chunks of up to `chunk` rows as the query runs,
    /// so the caller can work on the first rows while later ones are read (`map` runs
    /// on SQLite's blocking thread or PostgreSQL's reader task). The channel is
    /// unbounded so a slow consumer never keeps the connection busy. An error ends
    /// the stream.
    pub(crate) fn query_chunks<T, F>(
        &self,
        sql: &str,
        params: Vec<Value>,
        chunk: usize,
        mut map: F,
    ) -> tokio::sync::mpsc::UnboundedReceiver<Result<Vec<T>, StoreError>>
    where
        T: Send + 'static,
        F: FnMut(&RowRef<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let chunk = chunk.max(1);
        let first = chunk.min(4096);
        match self {
            Db::Sqlite(db) => {
                let db = db.clone();
                let sql = sqlite_sql(sql);
                let mut read = move |tx: &tokio::sync::mpsc::UnboundedSender<_>| {
                    if !is_read(&sql) {
                        return Err(StoreError::Invalid(format!("not a read: {sql}")));
                    }
                    let c = db.reader()?;
                    let mut st = c.prepare_cached(&sql)?;
                    let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
                    let mut out = Vec::with_capacity(first);
                    while let Some(r) = rows.next()? {
                        out.push(map(&RowRef::Sqlite(r))?);
                        if out.len() >= chunk {
                            let _ = tx.send(Ok(std::mem::replace(
                                &mut out,
                                Vec::with_capacity(chunk.min(65_536)),
                            )));
                        }
                    }
                    let _ = tx.send(Ok(out));
                    Ok(())
                };
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = read(&tx) {
                        let _ = tx.send(Err(e));
                    }
                });
            }
            Db::Postgres(pool) => {
                let pool = pool.clone();
                let sql = sql.to_string();
                tokio::spawn(async move {
                    let read = async {
                        let c = pool.get().await;
                        let rows = c
                            .query_raw(
                                sql.as_str(),
                                params.iter().map(|p| p as &(dyn ToSql + Sync)),
                            )
                            .await?;
                        futures_util::pin_mut!(rows);
                        let mut out = Vec::with_capacity(first);
                        while let Some(r) = futures_util::StreamExt::next(&mut rows).await {
                            out.push(map(&RowRef::Postgres(&r?))?);
                            if out.len() >= chunk {
                                let _ = tx.send(Ok(std::mem::replace(
                                    &mut out,
                                    Vec::with_capacity(chunk.min(65_536)),
                                )));
                            }
                        }
                        let _ = tx.send(Ok(out));
                        Ok::<(), StoreError>(())
                    };
                    if let Err(e) = read.await {
                        let _ = tx.send(Err(e));
                    }
                });
            }
        }
        rx
    }

    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Runs `stmts` in one transaction; returns the rows each touched (or, for a
    /// [`Stmt::returning_id`], the new id). With
    /// `orders_events`, holds the event lock from the first event row to the commit
    /// (see [`EVENT_LOCK`]).
    pub(crate) async fn tx(
        &self,
        stmts: Vec<Stmt>,
        orders_events: bool,
    ) -> Result<Vec<u64>, StoreError> {
        self.tx_with(stmts, orders_events, Flush::Wait).await
    }

    /// [`Db::tx`] for bookkeeping that may be redone (see [`Flush::Later`]).
    pub(crate) async fn tx_flush_later(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, StoreError> {
        self.tx_with(stmts, false, Flush::Later).await
    }

    /// Reads, then writes what the reads call for, in one transaction returned before
    /// its flush: the caller may start its next transaction meanwhile and tell whoever
    /// waits for this one once [`Unflushed::flushed`] returns. `plan` queries through
    /// the function it is given and returns its result and the statements to run.
    /// On SQLite that is one trip to the writer connection, whose cache is warm, and
    /// the reads happen under the write lock, so nothing changes between them and the
    /// writes. On PostgreSQL the reads come first, then the transaction: a concurrent
    /// change must be caught by the statements' [`Stmt::expect`].
    pub(crate) async fn read_then_tx<T: Send + 'static>(
        &self,
        plan: impl FnOnce(&mut Query<'_>) -> Result<(T, Vec<Stmt>), StoreError> + Send + 'static,
    ) -> Result<(T, Unflushed), StoreError> {
        match self {
            Db::Sqlite(db) => {
                let db = db.clone();
                blocking(move || {
                    let (out, seq) = db.write_unflushed(|c| {
                        let tx =
                            c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                        let (out, stmts) =
                            plan(&mut |sql, params| sqlite_query(&tx, &sqlite_sql(sql), &params))?;
                        run_stmts(&tx, &stmts)?;
                        tx.commit()?;
                        Ok(out)
                    })?;
                    Ok((out, Unflushed(Some((db, seq)))))
                })
                .await
            }
            Db::Postgres(_) => {
                // The plan is synchronous: its queries wait on this runtime from a
                // blocking thread.
                let db = self.clone();
                let runtime = tokio::runtime::Handle::current();
                let (out, stmts) = blocking(move || {
                    plan(&mut |sql, params| runtime.block_on(db.query(sql, params)))
                })
                .await?;
                if !stmts.is_empty() {
                    let events = stmts.iter().any(Stmt::appends_event);
                    self.tx(stmts, events).await?;
                }
                Ok((out, Unflushed(None)))
            }
        }
    }

    /// [`Db::tx`], for SQLite committed on the calling thread, which it blocks (a
    /// runtime worker: the caller makes sure that is rare, see
    /// `submission::committer`), and returned before its flush, which the caller waits
    /// for with [`Unflushed::flushed_here`]. Saves the hand-off to a blocking thread
    /// and back.
    pub(crate) async fn tx_on_caller(
        &self,
        stmts: Vec<Stmt>,
    ) -> Result<(Vec<u64>, Unflushed), StoreError> {
        match self {
            Db::Sqlite(db) => {
                let (out, seq) = db.write_unflushed(|c| sqlite_tx(c, &stmts))?;
                db.wal.start_writeback();
                Ok((out, Unflushed(Some((db.clone(), seq)))))
            }
            Db::Postgres(_) => Ok((self.tx(stmts, false).await?, Unflushed::done())),
        }
    }

    async fn tx_with(
        &self,
        stmts: Vec<Stmt>,
        orders_events: bool,
        flush: Flush,
    ) -> Result<Vec<u64>, StoreError> {
        match self {
            Db::Sqlite(db) => {
                // A small commit that waits for no flush is cheaper here, when the
                // writer is free, than a blocking thread's two wake-ups and the trip
                // back (a delivery's outcome: tens of µs against a hundred or more).
                if flush == Flush::Later && stmts.len() <= ON_CALLER_STATEMENTS {
                    if let Some(done) = db.try_write_unflushed(|c| sqlite_tx(c, &stmts)) {
                        return done.map(|(out, _)| out);
                    }
                }
                let db = db.clone();
                blocking(move || db.write(flush, |c| sqlite_tx(c, &stmts))).await
            }
            Db::Postgres(pool) => {
                let mut c = pool.get().await;
                let tx = c.transaction().await?;
                if flush == Flush::Later {
                    tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
                        .await?;
                }
                // The event lock is taken just before the first event row, so a long
                // import holds it only for its last statement and the commit.
                let mut locked = !orders_events;
                let mut counts = Vec::with_capacity(stmts.len());
                let mut i = 0;
                while i < stmts.len() {
                    let s = &stmts[i];
                    if !locked && s.appends_event() {
                        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENT_LOCK])
                            .await?;
                        locked = true;
                    }
                    if let Some((copy, width)) = &s.copy {
                        // One COPY stream for this and the following chunks of the same insert.
                        let run: Vec<&Stmt> = stmts[i..]
                            .iter()
                            .take_while(|t| t.copy.as_ref().map(|c| &c.0) == Some(copy))
                            .collect();
                        let mut buf = Vec::new();
                        for t in &run {
                            copy_text(&t.params, *width, &mut buf);
                            counts.push((t.params.len() / width) as u64);
                        }
                        let sink = tx.copy_in(copy.as_str()).await?;
                        futures_util::pin_mut!(sink);
                        sink.send(bytes::Bytes::from(buf)).await?;
                        sink.finish().await?;
                        i += run.len();
                        continue;
                    }
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        s.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                    if s.returns_id {
                        let id: i64 = tx.query_one(s.sql.as_str(), &refs).await?.get(0);
                        counts.push(id as u64);
                        i += 1;
                        continue;
                    }
                    let n = tx.execute(s.sql.as_str(), &refs).await?;
                    check_expected(s, n)?;
                    counts.push(n);
                    i += 1;
                }
                tx.commit().await?;
                Ok(counts)
            }
        }
    }
}

/// Runs `stmts` in one IMMEDIATE transaction on `c`.
fn sqlite_tx(c: &mut rusqlite::Connection, stmts: &[Stmt]) -> Result<Vec<u64>, StoreError> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let counts = run_stmts(&tx, stmts)?;
    tx.commit()?;
    Ok(counts)
}

/// A query run by a [`Db::read_then_tx`] plan: SQL with `$n` placeholders, and its rows.
pub(crate) type Query<'a> = dyn FnMut(&str, Vec<Value>) -> Result<Vec<Row>, StoreError> + 'a;

/// Runs `stmts` in the open transaction `tx`; the rows each touched (or the new id of
/// a [`Stmt::returning_id`]).
fn run_stmts(tx: &rusqlite::Transaction<'_>, stmts: &[Stmt]) -> Result<Vec<u64>, StoreError> {
    let mut counts = Vec::with_capacity(stmts.len());
    for s in stmts {
        let mut st = tx.prepare_cached(&sqlite_sql(&s.sql))?;
        let params = rusqlite::params_from_iter(s.params.iter());
        if s.returns_id {
            let id: i64 = st.query_row(params, |r| r.get(0))?;
            counts.push(id as u64);
            continue;
        }
        let n = st.execute(params)? as u64;
        check_expected(s, n)?;
        counts.push(n);
    }
    Ok(counts)
}

/// A committed transaction that may not be on disk yet (see [`Db::read_then_tx`]).
#[must_use = "a commit is not durable until `flushed` returns"]
pub struct Unflushed(Option<(Arc<Sqlite>, u64)>);

impl Unflushed {
    /// Returns once the transaction is on disk (a power cut no longer undoes it).
    pub async fn flushed(self) -> Result<(), StoreError> {
        match self.0 {
            None => Ok(()),
            Some((db, seq)) => blocking(move || db.wal.wait(seq, &db.commits)).await,
        }
    }

    /// Whether a flush is still to come.
    pub fn is_pending(&self) -> bool {
        self.0.is_some()
    }

    /// [`Unflushed::flushed`], waited for on the calling thread. On a runtime worker
    /// the worker's queued tasks move to another thread meanwhile
    /// ([`tokio::task::block_in_place`]): whatever the caller woke before waiting
    /// (delivery of the message just committed) runs while the disk flushes.
    pub fn flushed_here(self) -> Result<(), StoreError> {
        let Some((db, seq)) = self.0 else {
            return Ok(());
        };
        let wait = || db.wal.wait(seq, &db.commits);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// `results` of the transaction once it is on disk; each an error if the flush failed.
    pub async fn settle<T>(
        self,
        results: Vec<Result<T, StoreError>>,
    ) -> Vec<Result<T, StoreError>> {
        match self.flushed().await {
            Ok(()) => results,
            Err(e) => results
                .iter()
                .map(|_| Err(StoreError::Backend(e.to_string())))
                .collect(),
        }
    }

    /// A transaction that was on disk when it returned.
    pub(crate) fn done() -> Unflushed {
        Unflushed(None)
    }
}

fn check_expected(s: &Stmt, n: u64) -> Result<(), StoreError> {
    match s.expect_rows {
        Some(want) if want != n => Err(StoreError::Conflict),
        _ => Ok(()),
    }
}

impl PgPool {
    async fn get(&self) -> tokio::sync::MutexGuard<'_, tokio_postgres::Client> {
        for c in &self.clients {
            if let Ok(g) = c.try_lock() {
                return g;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].lock().await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

/// Whether `sql` only reads, so it can run on a reader connection.
fn is_read(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("SELECT"))
}

/// `$1` → `?1`: SQLite's numbered placeholders bind by number, not by first use.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

fn sqlite_query(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Row>, StoreError> {
    let mut st = c.prepare_cached(sql)?;
    let cols = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(cols);
        for i in 0..cols {
            vals.push(match r.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                rusqlite::types::ValueRef::Real(v) => Value::Int(v as i64),
                rusqlite::types::ValueRef::Text(t) => {
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
                rusqlite::types::ValueRef::Blob(b) => Value::Bytes(Arc::new(b.to_vec())),
            });
        }
        out.push(Row(vals));
    }
    Ok(out)
}

fn pg_row(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BYTEA => r
                .try_get::<_, Option<Vec<u8>>>(i)?
                .map(|b| Value::Bytes(Arc::new(b))),
            _ => r.try_get::<_, Option<String>>(i)?.map(Value::Text),
        };
        vals.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(vals))
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b.as_slice())),
        })
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Bytes(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flush reads only the WAL's inode number, and still follows the file when
    /// the WAL at its path is a new one.
    #[test]
    fn the_wal_flush_follows_a_replaced_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-wal");
        let path_str = path.to_str().unwrap().to_string();
        assert!(inode(&path_str).is_err(), "no file yet");
        std::fs::write(&path, b"first").unwrap();
        assert_eq!(
            inode(&path_str).unwrap(),
            std::fs::metadata(&path).unwrap().ino()
        );
        let wal = WalSync {
            path: path_str.clone(),
            state: Mutex::new(SyncState::default()),
            flushed: std::sync::Condvar::new(),
        };
        let (file, first) = wal.flush(None).unwrap();
        let (file, again) = wal.flush(Some((file, first))).unwrap();
        assert_eq!(again, first);
        // Replaced under the same name (SQLite recreates a WAL once all connections closed).
        let other = dir.path().join("new");
        std::fs::write(&other, b"second").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let (_, replaced) = wal.flush(Some((file, first))).unwrap();
        assert_ne!(replaced, first);
        assert_eq!(replaced, std::fs::metadata(&path).unwrap().ino());
    }

    /// A small commit without a flush runs on the caller's thread when the writer is
    /// free (here the only blocking thread is taken, so it could not run there), and
    /// waits for the writer on a blocking thread when it is busy.
    #[test]
    fn small_unflushed_commits_run_on_the_caller_when_the_writer_is_free() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open_sqlite(dir.path().join("t.db").to_str().unwrap())
                .await
                .unwrap();
            db.batch("CREATE TABLE t (n BIGINT NOT NULL)")
                .await
                .unwrap();
            let Db::Sqlite(sqlite) = &db else {
                unreachable!()
            };
            let insert = |n: i64| vec![Stmt::new("INSERT INTO t (n) VALUES ($1)", params![n])];
            let count = || {
                let c = sqlite.writer.lock().unwrap();
                c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                    .unwrap()
            };

            let (release, held) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || held.recv());
            let done = tokio::time::timeout(Duration::from_secs(5), db.tx_flush_later(insert(1)));
            assert_eq!(done.await.expect("ran on the caller").unwrap(), vec![1]);
            assert_eq!(count(), 1);
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();

            let writer = sqlite.writer.clone();
            let (locked, holding) = std::sync::mpsc::channel();
            let holder = std::thread::spawn(move || {
                let _held = writer.lock().unwrap();
                locked.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
            });
            holding.recv().unwrap();
            let started = Instant::now();
            assert_eq!(db.tx_flush_later(insert(2)).await.unwrap(), vec![1]);
            assert!(started.elapsed() >= Duration::from_millis(250));
            holder.join().unwrap();
            assert_eq!(count(), 2);
        });
    }

    #[test]
    fn bulk_insert_numbers_placeholders_across_rows() {
        let rows = vec![params![1i64, "a"], params![2i64, "b"]];
        let stmts = bulk_insert("INSERT INTO t (n, s) VALUES", "", rows);
        assert_eq!(stmts.len(), 1);
        assert_eq!(
            stmts[0].sql.trim(),
            "INSERT INTO t (n, s) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(stmts[0].params.len(), 4);
    }

    #[test]
    fn plain_bulk_inserts_can_be_copied() {
        assert_eq!(
            copy_command("INSERT INTO t (a, b) VALUES", "").as_deref(),
            Some("COPY t (a, b) FROM STDIN")
        );
        assert_eq!(
            copy_command("INSERT INTO t (a) VALUES", "ON CONFLICT DO NOTHING"),
            None
        );
        let mut out = Vec::new();
        let row: Vec<Value> = params![1i64, Value::Null, "a\tb\\c\nd"];
        copy_text(&row, 3, &mut out);
        assert_eq!(out, b"1\t\\N\ta\\tb\\\\c\\nd\n");
        out.clear();
        copy_text(&[Value::Bytes(Arc::new(vec![0, 0xab]))], 1, &mut out);
        assert_eq!(out, b"\\\\x00ab\n");
    }

    #[test]
    fn bulk_insert_splits_large_batches() {
        let rows: Vec<Vec<Value>> = (0..10_000i64).map(|i| params![i, i]).collect();
        let stmts = bulk_insert("INSERT INTO t (a, b) VALUES", "", rows);
        assert_eq!(stmts.len(), 3);
        assert_eq!(stmts.iter().map(|s| s.params.len()).sum::<usize>(), 20_000);
    }
}
