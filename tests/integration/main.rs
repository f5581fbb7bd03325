//! Integration tests of the built `tally` binary in front of the real cargo, rustc, rustfmt,
//! go and gofmt. Each test builds its own world (see `support`): a shims directory of symlinks, a
//! temporary HOME and data directory, a fixed environment.
// Tests read the harness's environment (PATH, HOME, the TALLY_REQUIRE_* switches) to build
// the tools' worlds.
#![allow(clippy::disallowed_methods)]

mod cargo;
mod faults;
mod fidelity;
mod firstrun;
mod go;
mod hot_binary;
mod install;
mod library;
mod mapped;
mod outcomes;
mod planted;
mod privacy;
mod rustc;
mod setup;
mod support;
