//! The integration tests of tally-counter, in one test binary: the library used as a tool uses
//! it, in real child processes (one counting session per process, as in a tool), against a
//! real data directory.
//!
//! Every child is this binary again running [`worker`] with a role (`ROLE`) and the world's
//! environment; the parent checks what the child left in the data directory.
#![allow(clippy::disallowed_methods)] // tests read the harness's environment

mod dependencies;
mod modes;
mod privacy;
mod processes;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Arg, ArgAction};
use tally_counter::{Counter, Histogram, Program};
use tally_test_support::home::TempHome;

/// The variable that tells [`worker`] what to do.
pub const ROLE: &str = "TALLY_COUNTER_TEST_ROLE";

/// The program the workers count for.
pub const PROGRAM: Program = Program::new("counter-probe", "2.4.0");

/// A data directory for one test (`TALLY_DIR`), made or not, and a `HOME` beside it.
pub struct World {
    home: TempHome,
    pub data: PathBuf,
}

impl World {
    /// A world whose data directory exists (tally installed, mode `local` by default).
    pub fn installed() -> World {
        World::in_home(TempHome::installed())
    }

    /// A world without a data directory (tally not installed).
    pub fn absent() -> World {
        World::in_home(TempHome::absent())
    }

    fn in_home(home: TempHome) -> World {
        let data = home.data.clone();
        World { home, data }
    }

    /// This binary as a worker with `role`, an environment of only `PATH`, `HOME` (a directory
    /// that is not the data directory) and `TALLY_DIR`, plus `extra`.
    pub fn worker(&self, role: &str, extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.arg("--exact")
            .arg("worker")
            .args(["--nocapture", "--test-threads=1", "--quiet"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home.home)
            .env("TALLY_DIR", &self.data)
            .env(ROLE, role)
            .stdin(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Every counter in the data directory, per program, summed over files.
    pub fn counters(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        tally_test_support::home::counters_by_program(&self.data)
    }

    /// Every file under the data directory, with its bytes (nothing when there is none).
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    out.push((path.clone(), Vec::new()));
                    walk(&path, out);
                } else {
                    out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data, &mut out);
        out.sort();
        out
    }
}

pub use tally_test_support::command::ok;

static INVOCATIONS: Counter = tally_counter::counter!("counter-probe/invocations");
static TIME: Histogram = tally_counter::histogram!("counter-probe/time");
static SIZE: Histogram = tally_counter::histogram!("counter-probe/size", values = &[10, 100]);

/// The child side of every test: does what `ROLE` says, in this fresh process.
#[test]
fn worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        // A tool run: open, count a counter, a histogram, a command line.
        "tool" => {
            assert!(tally_counter::open(PROGRAM));
            INVOCATIONS.inc();
            TIME.observe(std::time::Duration::from_millis(1500));
            SIZE.observe_value(42);
            let command = clap::Command::new("counter-probe")
                .arg(Arg::new("fast").long("fast").action(ArgAction::SetTrue))
                .subcommand(
                    clap::Command::new("run")
                        .arg(Arg::new("jobs").short('j').action(ArgAction::Set)),
                );
            let matches =
                command
                    .clone()
                    .get_matches_from(["counter-probe", "--fast", "run", "-j", "8"]);
            tally_counter::cli::count_command("counter-probe/", &command, &matches);
            println!("counting={}", tally_counter::counting());
        }
        // Opens, then never counts.
        "idle" => {
            assert!(tally_counter::open(PROGRAM));
            println!("opened");
        }
        // Counts before naming its program: nothing.
        "unopened" => {
            INVOCATIONS.inc();
            println!("counting={}", tally_counter::counting());
        }
        "threads" => processes::threads_worker(),
        "misuse" => privacy::misuse_worker(),
        other => panic!("unknown role {other}"),
    }
}

/// Reads all of stdin (the workers that take input).
pub fn stdin_bytes() -> Vec<u8> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).unwrap();
    bytes
}
