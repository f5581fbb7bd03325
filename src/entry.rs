//! What both of tally's binaries share at their entry, `tally` (src/main.rs) and `tally-shim`
//! (src/bin/tally-shim.rs): C's `main` as the entry point (`tally_sys::entry_point!`, which
//! holds the entry point's `unsafe`), the allocator per target, and the dispatch of the hot
//! path ([`hot_path`]). Each binary includes this file as a module of its own (`#[path]`): an
//! entry point has to be defined in the binary itself, and a library crate in between would
//! only add a name to the dependency graph.
//!
//! ## The entry point is C's `main`, not Rust's
//!
//! On Linux (glibc or musl), both binaries are `#![no_main]`: the C library calls the `main`
//! that `tally_sys::entry_point!` defines directly, and Rust's runtime start-up
//! (`std::rt::lang_start`) never runs. That start-up reads `/proc/self/maps` to find the main thread's stack guard, maps
//! an alternate signal stack, installs SIGSEGV and SIGBUS handlers, checks file descriptors 0
//! to 2 and ignores SIGPIPE: about 0.13 ms on every compile of every user, which is more than
//! the whole budget the shim has (bench/README.md, "Shims"). What is given up, and how it is
//! made good:
//! - the arguments: taken from `main`'s own `argc` and `argv`
//!   ([`tally_sys::startup::args_of_c_main`]);
//! - SIGPIPE stays as the parent left it. For the shim that is required (the tool must inherit
//!   it); the CLI then dies quietly on a closed pipe (`tally show | head`), as C tools do;
//! - a panic is caught by each binary's own function (the CLI's in src/main.rs; the hot path
//!   swallows its own) and ends the process with status 101, as Rust's runtime would;
//! - stdout is flushed before returning (C's `exit` does not know Rust's buffer): the CLI's
//!   function does it, the hot path writes only to stderr, which is not buffered;
//! - a stack overflow is a plain SIGSEGV, without Rust's one-line message.
//!
//! Elsewhere (and in test builds) a normal `fn main` runs the same function.

use std::ffi::OsString;

/// With musl (Rust's `*-unknown-linux-musl` targets), Rust's allocations go to dlmalloc, as
/// ripgrep chooses jemalloc there: musl's own `malloc` ("mallocng") is built for size, not speed,
/// and on the shim's path it ran about a third of the instructions up to the `exec` and asked the
/// kernel for memory six times, where dlmalloc maps one segment (bench/README.md,
/// "Techniques"). glibc's `malloc` is kept with glibc.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The hot path, before anything else runs (no argument parser, config or runtime):
/// 1. `argv[0]`'s file stem (or `TALLY_FORCE_ARG0`) is a tool (`cargo`, `rustc`, `rustfmt`,
///    `cargo-fmt`, `go`, `gofmt`): the PATH shim ([`tally_shims::run_shim`]);
/// 2. `argv[1]` is a path or a rustc-like compiler (`tally-shim /abs/rustc args…`, as cargo
///    runs a `RUSTC_WRAPPER`): the wrapper ([`tally_wrapper::run_wrapper`]).
///
/// Returns the exit status, or gives `argv` back when it is neither.
pub(crate) fn hot_path(argv: Vec<OsString>) -> Result<i32, Vec<OsString>> {
    if let Some(tool) = tally_shims::tool_from_argv0(argv.first().map(|a| a.as_os_str())) {
        // Returns only when the tool could not be run.
        return Ok(tally_shims::run_shim(tool, argv));
    }
    if argv
        .get(1)
        .is_some_and(|a| tally_wrapper::is_wrapper_invocation(a))
    {
        return Ok(tally_wrapper::run_wrapper(argv));
    }
    Err(argv)
}
