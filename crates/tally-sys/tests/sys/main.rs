//! The integration tests of tally-sys, in one test binary (as ripgrep's `tests/`): each module
//! is one area, `fixtures/` holds counter files written by an independent implementation.
#![allow(clippy::disallowed_methods)] // tests read the harness's environment

mod basic;
mod multiprocess;
mod parser;

/// The name libtest gives the test `name` of the module whose `module_path!()` is `module`: the
/// module path without the crate's name. Tests that re-run this binary as a child process pass
/// it with `--exact`; a name that matches nothing would run no test at all in the child.
fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}
