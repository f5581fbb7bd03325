//! The `tally` binary: the CLI, and under a tool's name or as `RUSTC_WRAPPER` the same hot
//! path as `tally-shim` (so that links and wrapper settings made for `tally` keep working).
//! Thin on purpose; every behaviour lives in a library crate (see ARCHITECTURE.md).
//!
//! Dispatch, before anything else runs: the hot path ([`entry::hot_path`]: the PATH shim by
//! `argv[0]`, the wrapper by `argv[1]`), else the CLI ([`tally_commands::run`]). The entry point
//! is C's `main` (src/entry.rs says why).
#![cfg_attr(
    all(
        target_os = "linux",
        any(target_env = "gnu", target_env = "musl"),
        not(test)
    ),
    no_main
)]
// The lint keeps `unsafe` out of this crate's source: C's `main` comes from
// `tally_sys::entry_point!`, whose SAFETY comments discharge it there.
#![deny(unsafe_code)]

#[path = "entry.rs"]
mod entry;

use std::ffi::OsString;
use std::io::Write;

tally_sys::entry_point!(tally_main);

/// Dispatches on the name and arguments; returns the exit status.
fn tally_main(argv: Vec<OsString>) -> i32 {
    let argv = match entry::hot_path(argv) {
        Ok(status) => return status,
        Err(argv) => argv,
    };
    // The CLI, as Rust's runtime would run it: a panic is reported (by the panic hook) and
    // ends the process with 101; whatever is still buffered reaches stdout.
    let status = std::panic::catch_unwind(|| i32::from(tally_commands::run(argv))).unwrap_or(101);
    let _ = std::io::stdout().flush();
    status
}
