//! The integration tests of tally-config, in one test binary (as ripgrep's `tests/`):
//! verification against the `minisign` crate and the reference `minisign` CLI, with the
//! shared configs, keys and loopback HTTP server in `common`.
#![allow(clippy::disallowed_methods)] // tests read the harness's environment

mod common;
mod minisign_cli;
mod verify;
