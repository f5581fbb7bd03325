//! The `tally` binary: one program, many names. Thin on purpose; every behaviour lives in a
//! library crate (see ARCHITECTURE.md).
//!
//! Dispatch, before anything else runs (no argument parser, config or runtime on the first
//! two paths):
//! 1. `argv[0]`'s file stem (or `TALLY_FORCE_ARG0`) is a tool (`cargo`, `rustc`, `rustfmt`,
//!    `cargo-fmt`, `go`, `gofmt`): the PATH shim ([`tally_shims::run_shim`]).
//! 2. `argv[1]` is a path or a rustc-like compiler (`tally /abs/rustc args…`, as cargo runs a
//!    `RUSTC_WRAPPER`): the wrapper ([`tally_wrapper::run_wrapper`]).
//! 3. Otherwise the CLI ([`tally_cli::run`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(tool) = tally_shims::tool_from_argv0(argv.first().map(|a| a.as_os_str())) {
        return exit(tally_shims::run_shim(tool, argv));
    }
    if argv
        .get(1)
        .is_some_and(|a| tally_wrapper::is_wrapper_invocation(a))
    {
        return exit(tally_wrapper::run_wrapper(argv));
    }
    tally_cli::run(argv)
}

/// The shim and the wrapper return only when the tool could not be run.
fn exit(status: i32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}
