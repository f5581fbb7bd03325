//! The `tally-shim` binary: tally's hot path and nothing else. The shims directory links it
//! under each tool's name (`cargo`, `rustc`, `rustfmt`, `cargo-fmt`, `go`, `gofmt`), and the
//! cargo shim makes it cargo's `RUSTC_WRAPPER`; it runs on every compile of every user, so
//! every page of code it touches on the way to the `exec` counts (bench/README.md, "Shims").
//!
//! What may be linked into it: the PATH shim (`tally-shims`), the wrapper (`tally-wrapper`),
//! what they share (`tally-process`, `tally-home`, `tally-grammar`, `tally-sys`, `tally-env`,
//! and the little of `tally-protocol` that names versions, days and programs), and std. Never
//! the CLI (`tally-commands`) or anything only it needs: no argument parser (clap), no HTTP
//! client, no upload config or its verification, no reports, no charts. `tally-shim` finds the
//! `tally` beside it for the one thing the CLI does on its behalf (the daily upload).
//! `tests/integration/hot_binary.rs` fails when any of those enters, by its dependency tree and
//! by the symbols of the built binary.
//!
//! Run under its own name with anything but a compiler to wrap, it says where the commands are
//! and exits with status 2.
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

#[path = "../entry.rs"]
mod entry;

use std::ffi::OsString;

tally_sys::entry_point!(shim_main);

/// The hot path, or a pointer to `tally`; returns the exit status.
fn shim_main(argv: Vec<OsString>) -> i32 {
    match entry::hot_path(argv) {
        Ok(status) => status,
        Err(_) => {
            eprintln!(
                "tally-shim runs tally's shims (linked as cargo, rustc, rustfmt, cargo-fmt, go, \
                 gofmt) and its RUSTC_WRAPPER, nothing else; the commands are `tally`'s (tally \
                 --help)."
            );
            2
        }
    }
}
