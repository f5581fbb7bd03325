//! The PATH shims: tally's hot path. Linked as `cargo`, `rustc`, `rustfmt`, `cargo-fmt`, `go`
//! and `gofmt` in a directory first on `PATH`, the binary counts the invocation and `exec`s the
//! real tool.
//!
//! Promises:
//! - **The tool behaves exactly as without tally**: it is `exec`ed (same PID, signals, exit
//!   status, terminal, inherited descriptors such as cargo's jobserver) with the same argument
//!   bytes, working directory and environment, minus tally's markers (`TALLY_FORCE_ARG0` is
//!   removed; `TALLY_SHIM_GUARD` holds only a PID; the cargo shim adds `RUSTC_WRAPPER` and
//!   `TALLY_NEXT_WRAPPER`, see [`arrange`]). `argv[0]` keeps the tool's name, which rustup's
//!   proxies dispatch on.
//! - **Any failure inside tally is swallowed**: counting runs under `catch_unwind` with a
//!   silent panic hook, and every error is ignored; only "no real tool" (exit 127, one line)
//!   and a failed `exec` (126/127, one line) are reported, as a shell would.
//! - **Cheap**: no argument parser, no config file, no async runtime; the mode file, one
//!   counter file and, once per real binary, a version query.
//! - **Mode off writes nothing**: `TALLY=off`, `DO_NOT_TRACK`, or `tally off` → nothing is
//!   created, not even a directory, and the tool is simply `exec`ed.
//!
//! What is shared with the wrapper (the real tool's lookup, identity and version, rustup,
//! the `RUSTC_WRAPPER` arrangement, the hand-over) lives in `tally_process`; here are the
//! shim's own steps and [`background`] (the daily upload trigger).

#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::panic::{AssertUnwindSafe, catch_unwind};

use tally_grammar::{Context, RustcCaller, Tool, caller_from_env, counter_names};
use tally_home::env::ProcessEnv;
use tally_home::env::{TALLY_FORCE_ARG0, TALLY_NEXT_WRAPPER, TALLY_SHIM_GUARD};
use tally_home::{Counted, Env, Home, Mode, effective_mode};

pub mod background;

pub use tally_process::{EnvChanges, exec, silence_panics};
use tally_process::{arrange, identity, lookup, version};

/// The tool a shim invocation stands for: `TALLY_FORCE_ARG0` if set, else `argv[0]`'s file stem.
pub fn tool_from_argv0(argv0: Option<&OsStr>) -> Option<Tool> {
    match tally_home::env::var_os(TALLY_FORCE_ARG0).filter(|v| !v.is_empty()) {
        Some(forced) => identity::stem_of(&forced).and_then(Tool::from_name),
        None => argv0.and_then(identity::stem_of).and_then(Tool::from_name),
    }
}

/// Runs as the shim of `tool`; `argv` is the whole argument vector. Returns only if the real
/// tool could not be run, with the exit status to use.
pub fn run_shim(tool: Tool, argv: Vec<OsString>) -> i32 {
    silence_panics();
    let name = tool.name();
    let this = identity::ThisBinary::current();
    let process_env = ProcessEnv::capture();
    let pid = std::process::id();
    let guard = Guard::read(process_env.get(TALLY_SHIM_GUARD), pid);
    if guard.reentries >= MAX_REENTRIES {
        eprintln!(
            "tally: the `{name}` shim was started again by the program it handed over to, \
             {MAX_REENTRIES} times in one process (PATH: {}): another shim manager on PATH runs \
             tally's shims in a loop. Put tally's shims directory before the other manager's on \
             PATH, or remove one of them.",
            process_env
                .get("PATH")
                .unwrap_or_default()
                .to_string_lossy()
        );
        return 127;
    }
    let found = match lookup::find_real(name, process_env.get("PATH"), &this) {
        Ok(found) => found,
        Err(not_found) => {
            eprintln!("{}", not_found.message(name));
            return 127;
        }
    };
    let args = argv.get(1..).unwrap_or(&[]);
    let mut changes = EnvChanges::default();
    // The same tool again in the same process was counted on the first pass. The counter file
    // stays mapped until the `exec` (see `tally_home::Counted`).
    let _counted = if guard.same_tool(name) {
        None
    } else {
        catch_unwind(AssertUnwindSafe(|| {
            count_and_arrange(tool, &found, args, &process_env, &mut changes)
        }))
        .ok()
        .flatten()
    };
    changes.remove.push(TALLY_FORCE_ARG0.into());
    changes
        .set
        .push((TALLY_SHIM_GUARD.into(), guard.next(name, pid).into()));
    // Keep the name the tool was called by (rustup's proxies dispatch on it).
    let argv0 = match argv.first() {
        Some(a0) if identity::stem_of(a0) == Some(name) => a0.clone(),
        _ => OsString::from(name),
    };
    exec(&found.path, &argv0, args, &process_env, &changes)
}

/// How many times shims may run again within one process (through `exec`) before it is called
/// a loop. Legitimate chains are short (`cargo` execs `cargo-fmt`); a loop is endless.
pub const MAX_REENTRIES: u32 = 8;

/// The loop guard carried in `TALLY_SHIM_GUARD` as `<pid>:<tool>:<re-entries>`. A process ID
/// is all it holds: the tool ignores it, and a tool started as a new process (a build script
/// running cargo) starts afresh. Only `exec` keeps the PID, so only a chain of `exec`s within
/// one process (which is what a loop between shim managers is) is ever counted.
#[derive(Debug, PartialEq, Eq)]
pub struct Guard {
    /// The tool the last shim in this process stood for, if the guard is this process's.
    pub tool: Option<String>,
    /// Shim runs in this process before this one.
    pub reentries: u32,
}

impl Guard {
    /// Reads the inherited guard; one from another process than `pid` (this one's, asked for
    /// once per run) or a malformed one is no guard.
    pub fn read(value: Option<&OsStr>, pid: u32) -> Guard {
        let none = Guard {
            tool: None,
            reentries: 0,
        };
        let Some(text) = value.and_then(OsStr::to_str) else {
            return none;
        };
        let mut parts = text.splitn(3, ':');
        let (Some(p), Some(tool), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            return none;
        };
        match (p.parse::<u32>(), n.parse::<u32>()) {
            (Ok(p), Ok(n)) if p == pid => Guard {
                tool: Some(tool.to_string()),
                reentries: n + 1,
            },
            _ => none,
        }
    }

    /// Whether the previous shim in this process was the same tool.
    pub fn same_tool(&self, tool: &str) -> bool {
        self.tool.as_deref() == Some(tool)
    }

    /// The value to hand on from process `pid`.
    pub fn next(&self, tool: &str, pid: u32) -> String {
        // By hand, not `format!` (see `version::cache_key`).
        let mut value = String::with_capacity(tool.len() + 22);
        push_decimal(&mut value, pid);
        value.push(':');
        value.push_str(tool);
        value.push(':');
        push_decimal(&mut value, self.reentries);
        value
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// The counting part of a shim run; every failure is ignored by design (the tool must run).
fn count_and_arrange(
    tool: Tool,
    found: &lookup::Found,
    args: &[OsString],
    process_env: &ProcessEnv,
    changes: &mut EnvChanges,
) -> Option<Counted> {
    let env = Env::from_snapshot(process_env);
    let home = Home::locate(&env)?;
    let mode = effective_mode(&env, Some(&home));
    if mode == Mode::Off {
        return None;
    }
    let caller = caller_from_env(&|k| process_env.get(k).is_some(), RustcCaller::Direct);
    let ctx = Context {
        rustc_caller: caller,
        ..Context::default()
    };
    let names = counter_names(tool, args, &ctx);
    let binary = version::versioned_binary(
        tool,
        &found.path,
        &found.meta,
        found.symlink,
        args,
        process_env,
    );
    // The mode was read above: count without reading it (or locating the home) again. A
    // version not cached yet is asked off the hot path, and counted there.
    let counted = version::count_run(&env, &home, tool, tool.name(), binary, &names);
    // The daily upload is the CLI's (`tally upload`), found beside this binary only when due.
    background::maybe_start(&env, mode, home.root(), lookup::cli_exe);
    // Finding this binary's own path costs a readlink: only for cargo.
    if tool == Tool::Cargo
        && let Some(tally) = identity::wrapper_exe()
    {
        let cwd = std::env::current_dir().unwrap_or_default();
        match arrange::arrange(
            &tally,
            &arrange::CargoEnv::from_snapshot(process_env),
            &cwd,
            args,
        ) {
            arrange::Arrangement::AlreadyTally => {}
            arrange::Arrangement::Wrap { next } => {
                let wrapper = arrange::wrapper_path(&tally, next.as_deref(), home.root());
                changes
                    .set
                    .push(("RUSTC_WRAPPER".into(), wrapper.into_os_string()));
                match next {
                    Some(next) => changes.set.push((TALLY_NEXT_WRAPPER.into(), next)),
                    None => changes.remove.push(TALLY_NEXT_WRAPPER.into()),
                }
            }
        }
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_only_within_one_process() {
        let me = 4242;
        let read = |v: &str| Guard::read(Some(OsStr::new(v)), me);
        assert_eq!(
            read("4242:cargo:0"),
            Guard {
                tool: Some("cargo".into()),
                reentries: 1
            }
        );
        assert_eq!(
            read("4242:cargo-fmt:3"),
            Guard {
                tool: Some("cargo-fmt".into()),
                reentries: 4
            }
        );
        assert_eq!(
            read("17:cargo:5"),
            Guard {
                tool: None,
                reentries: 0
            }
        );
        assert_eq!(
            read("garbage"),
            Guard {
                tool: None,
                reentries: 0
            }
        );
        assert_eq!(
            Guard::read(None, me),
            Guard {
                tool: None,
                reentries: 0
            }
        );
        assert!(read("4242:cargo:0").same_tool("cargo"));
        assert!(!read("4242:cargo:0").same_tool("cargo-fmt"));
        // What `next` hands on is what `read` takes back in the same process.
        let guard = read("4242:rustc:6");
        let next = guard.next("rustc", me);
        assert_eq!(next, "4242:rustc:7");
        assert_eq!(read(&next).reentries, 8);
    }

    #[test]
    fn decimals_like_display() {
        for n in [0, 7, 10, 99, 100, 4_242, 65_535, 4_194_304, u32::MAX] {
            let mut s = String::from("x");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }
}
