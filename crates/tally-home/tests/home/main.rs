//! The integration tests of tally-home, in one test binary (as ripgrep's `tests/`): modes and
//! the environment, privacy of what is written, retention, and the counter store on corrupt,
//! unwritable and full disks.
#![allow(clippy::disallowed_methods)] // tests read the harness's environment

mod modes;
mod privacy;
mod retention;
mod store;

/// The name libtest gives the test `name` of the module whose `module_path!()` is `module`: the
/// module path without the crate's name. Tests that re-run this binary as a child process pass
/// it with `--exact`; a name that matches nothing would run no test at all in the child.
fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}
