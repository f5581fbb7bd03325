//! The integration tests of tally-commands, in one test binary (as ripgrep's `tests/`): the
//! commands and their output (insta snapshots in `snapshots/`), privacy of what leaves the
//! machine, uploading to a real collector on loopback, and `tally demo` end to end; `support`
//! holds the temporary data directory, the collector and ways to run the CLI.
#![allow(clippy::disallowed_methods)] // tests read the harness's environment

mod commands;
mod dap;
mod demo_e2e;
mod demo_private;
mod privacy;
mod support;
mod upload;
