//! The allocator of the `portcullis` binary (see its `main.rs`), for the benches that
//! run a server in their own process, so the server measured is the one that runs.
//! Each such bench includes this file with `#[path = ".../bench/allocator.rs"] mod allocator;`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
