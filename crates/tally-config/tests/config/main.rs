//! The integration tests of tally-config, in one test binary (as ripgrep's `tests/`):
//! verification against the `minisign` crate and the reference `minisign` CLI, with the
//! configs of `support`, and keys, signatures and a fake collector from `tally-test-support`.
#![allow(clippy::disallowed_methods)] // tests read the harness's environment

mod minisign_cli;
mod support;
mod verify;
