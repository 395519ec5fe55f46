//! `portcullis`: one binary for every component (DESIGN.md). This file only parses
//! the command line, runs the command, and turns a failure into one line on stderr
//! and a non-zero exit.

mod cli;
mod commands;
mod output;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc malloc: the servers allocate on one thread and free on
/// another (packets, messages, rows), where glibc's arenas were a sixth of the RADIUS
/// server's CPU (benches/radius.rs); mimalloc's thread-local free lists are not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc marks its arenas for transparent huge pages. It hands idle memory back to
/// the kernel after a short delay, and the next touch of that memory then faults in a
/// whole 2 MB page and zeroes it: with 100 KB messages, a seventh of the submission
/// server's CPU went to zeroing pages, and its memory was twice what it used (the
/// compare bench, `MIMALLOC_ALLOW_THP=0` against the default). The flag is what
/// mimalloc itself sets for that option; it holds for memory already reserved.
fn no_transparent_huge_pages() {
    // SAFETY: prctl with integer arguments only; a kernel without THP refuses it, harmlessly.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
