//! The memory allocator of the `portcullis` binary. The benches that run a server in
//! their own process include this file too (`#[path = ".../portcullis/src/allocator.rs"]
//! mod allocator;`) and call [`set_up`] first, so the server they measure allocates as
//! the one that runs.

/// mimalloc rather than glibc malloc: the servers allocate on one thread and free on
/// another (packets, messages, rows), where glibc's arenas were a sixth of the RADIUS
/// server's CPU (benches/radius.rs); mimalloc's thread-local free lists are not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for the process, before it does any work.
/// mimalloc marks its arenas for them and hands idle memory back to the kernel after a
/// short delay; the next touch of that memory then faults in a whole 2 MB page and
/// zeroes it. With 100 KB messages a seventh of the submission server's CPU went to
/// zeroing pages and its memory was twice what it used (the compare bench,
/// `MIMALLOC_ALLOW_THP=0` against the default). The flag is what mimalloc itself sets
/// for that option, and it holds for memory already reserved.
pub fn set_up() {
    // SAFETY: prctl with integer arguments only; a kernel without THP refuses it, harmlessly.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
