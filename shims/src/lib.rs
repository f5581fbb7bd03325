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
//! Modules: [`lookup`] (the real tool by file identity), [`identity`], [`version`] (cache),
//! [`rustup`] (toolchain resolution), [`arrange`] (`RUSTC_WRAPPER` for cargo),
//! [`background`] (daily upload trigger), [`notice`] (first-run notice), [`report`] (for
//! `tally status`).

#![forbid(unsafe_code)]

use std::ffi::{CStr, CString, OsStr, OsString};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use tally_grammar::{Context, RustcCaller, Tool, caller_from_env, counter_names};
use tally_home::env::CStringBlock;
use tally_home::env::{TALLY_FORCE_ARG0, TALLY_NEXT_WRAPPER, TALLY_SHIM_GUARD};
use tally_home::{Counted, Env, Home, Mode, ProcessEnv, effective_mode};

pub mod arrange;
pub mod background;
pub mod identity;
pub mod lookup;
pub mod notice;
pub mod report;
pub mod rustup;
pub mod version;

pub use report::{ShimReport, shim_report};

/// The tool a shim invocation stands for: `TALLY_FORCE_ARG0` if set, else `argv[0]`'s file stem.
pub fn tool_from_argv0(argv0: Option<&OsStr>) -> Option<Tool> {
    match std::env::var_os(TALLY_FORCE_ARG0).filter(|v| !v.is_empty()) {
        Some(forced) => identity::stem_of(&forced).and_then(Tool::from_name),
        None => argv0.and_then(identity::stem_of).and_then(Tool::from_name),
    }
}

/// Environment changes for the `exec`.
#[derive(Debug, Default)]
pub struct EnvChanges {
    pub set: Vec<(OsString, OsString)>,
    pub remove: Vec<OsString>,
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
    let version = version::versioned_binary(
        tool,
        &found.path,
        &found.meta,
        found.symlink,
        args,
        process_env,
    )
    .map(|(bin, meta)| version::version_of(tool, &bin, &meta, &home))
    .unwrap_or_else(|| version::UNKNOWN.to_string());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // The mode was read above: count without reading it (or locating the home) again.
    let counted = home.count(env.today(), tool.name(), &version, &refs).ok();
    if counted.as_ref().is_some_and(|c| c.created_file) {
        notice::maybe_show(&env, home.root());
    }
    // Finding tally's own path costs a readlink: only when it can be needed.
    let needs_tally = tool == Tool::Cargo || background::allowed(&env, mode);
    let tally = if needs_tally {
        identity::tally_exe()
    } else {
        None
    };
    background::maybe_start(&env, mode, home.root(), tally.as_deref());
    if tool == Tool::Cargo
        && let Some(tally) = tally
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

/// Replaces this process with `program` (`argv[0]` `argv0`, then `args`), with the environment
/// `env` (the process's own, as captured) changed by `changes`. Returns only on failure, with
/// a shell's status (127 not found, 126 other).
///
/// A bare `execvpe`, not `std::process::Command`: Command resets the signal mask and SIGPIPE's
/// disposition before it execs and sorts the environment, so a tool started from a parent that
/// ignores SIGPIPE or blocks a signal would run differently behind tally. Here the tool
/// inherits both exactly, and the environment keeps its order (a changed variable stays where
/// it was; a new one goes last). Like a shell (and `execvp`), a program name without a `/` is
/// looked up on `PATH`, and a file that is not a binary is run by `/bin/sh`.
pub fn exec(
    program: &Path,
    argv0: &OsStr,
    args: &[OsString],
    env: &ProcessEnv,
    changes: &EnvChanges,
) -> i32 {
    let err = match exec_inner(program, argv0, args, env, changes) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    eprintln!("tally: cannot run {}: {err}", program.display());
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

fn exec_inner(
    program: &Path,
    argv0: &OsStr,
    args: &[OsString],
    env: &ProcessEnv,
    changes: &EnvChanges,
) -> std::io::Result<std::convert::Infallible> {
    use std::os::unix::ffi::OsStrExt;
    let program = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut argv = CStringBlock::with_capacity(
        argv0.len() + args.iter().map(|a| a.len() + 1).sum::<usize>() + 1,
        args.len() + 1,
    );
    argv.push(&[argv0.as_bytes()]);
    for arg in args {
        argv.push(&[arg.as_bytes()]);
    }
    let argv = argv.as_cstrs()?;
    let set = changes.set_entries();
    let envp = environment_with(env.block(), &set, &changes.remove)?;
    #[cfg(target_os = "linux")]
    let result = nix::unistd::execvpe(&program, &argv, &envp);
    // Elsewhere without the PATH search: the shim always has an absolute path.
    #[cfg(not(target_os = "linux"))]
    let result = nix::unistd::execve(&program, &argv, &envp);
    result.map_err(|errno| std::io::Error::from_raw_os_error(errno as i32))
}

/// The environment for the tool: the entries of `current` (the process's, as captured) in
/// their order, without the variables named in `remove`, with the `NAME=VALUE` entries of
/// `set` (in place of the variable's first entry when it exists, at the end otherwise). Every other entry goes through
/// byte for byte, even one without a `=`.
///
/// Kept entries are borrowed from `current`, not copied: the environment is most of what the
/// shim holds in memory, and a copy of it spread the heap over one more fresh page, a page fault
/// on every run. `set` is usually [`EnvChanges::set_entries`]. An entry no C string can hold
/// (a NUL inside) is `InvalidInput`.
pub fn environment_with<'a>(
    current: &'a CStringBlock,
    set: &'a CStringBlock,
    remove: &[OsString],
) -> std::io::Result<Vec<&'a CStr>> {
    use std::os::unix::ffi::OsStrExt;
    let set = set.as_cstrs()?;
    // Each new entry's name, from the entry itself.
    let set_names: Vec<&[u8]> = set
        .iter()
        .map(|e| tally_home::env::split_entry(e.to_bytes()).map_or(&[][..], |(k, _)| k.as_bytes()))
        .collect();
    let mut out = Vec::with_capacity(current.len() + set.len());
    // The new entries still to place, by index; each leaves this list where it is first
    // written.
    let mut pending: Vec<usize> = (0..set.len()).collect();
    // Each entry is matched against the few changed names directly (`NAME=` at its start)
    // rather than split at its `=` first: the environment has dozens of entries and the shim
    // builds this on every run.
    let named = |entry: &[u8], name: &[u8]| tally_home::env::entry_has_name(entry, name);
    for entry in current.as_cstrs_iter() {
        let entry = entry?;
        let bytes = entry.to_bytes();
        if set_names.iter().any(|k| named(bytes, k)) {
            // In place, once: a second entry for the same variable goes.
            if let Some(at) = pending.iter().position(|&i| named(bytes, set_names[i])) {
                out.push(set[pending.remove(at)]);
            }
        } else if !remove.iter().any(|k| named(bytes, k.as_bytes())) {
            out.push(entry);
        }
    }
    out.extend(pending.into_iter().map(|i| set[i]));
    Ok(out)
}

impl EnvChanges {
    /// `KEY=VALUE` for each variable to set, in order: the new entries [`environment_with`]
    /// hands the tool.
    pub fn set_entries(&self) -> CStringBlock {
        use std::os::unix::ffi::OsStrExt;
        let bytes = self.set.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut block = CStringBlock::with_capacity(bytes, self.set.len());
        for (key, value) in &self.set {
            block.push(&[key.as_bytes(), b"=", value.as_bytes()]);
        }
        block
    }
}

/// A panic inside tally must not print anything: the tool's stderr must be what it would be
/// without tally. The panic is caught and the tool runs.
pub fn silence_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_keeps_its_order_and_applies_changes_in_place() {
        // The tool's environment as byte strings (without their NULs).
        fn tool_env(current: &CStringBlock, changes: &EnvChanges) -> Vec<Vec<u8>> {
            let set = changes.set_entries();
            environment_with(current, &set, &changes.remove)
                .unwrap()
                .iter()
                .map(|e| e.to_bytes().to_vec())
                .collect()
        }
        let current = CStringBlock::from_nul_terminated(
            b"A=1\0TALLY_FORCE_ARG0=rustc\0B=2\0NO_EQUALS_SIGN\0C=3\0B=dup\0".to_vec(),
        );
        let changes = EnvChanges {
            set: vec![("B".into(), "new".into()), ("D".into(), "4".into())],
            remove: vec!["TALLY_FORCE_ARG0".into(), "C".into(), "D".into()],
        };
        assert_eq!(
            tool_env(&current, &changes),
            [&b"A=1"[..], b"B=new", b"NO_EQUALS_SIGN", b"D=4"]
        );
        // Names are whole names: `B` is not `BB`, and an entry named `=B` is not `B`.
        let current = CStringBlock::from_nul_terminated(b"BB=1\0=B=2\0B\0B=3".to_vec());
        let changes = EnvChanges {
            set: vec![("B".into(), "new".into())],
            remove: vec![],
        };
        assert_eq!(
            tool_env(&current, &changes),
            [&b"BB=1"[..], b"=B=2", b"B", b"B=new"]
        );
        // A value no C string can hold is refused, not cut short; so is such an entry of the
        // current environment.
        let changes = EnvChanges {
            set: vec![("BAD".into(), "a\0b".into())],
            remove: vec![],
        };
        let set = changes.set_entries();
        assert_eq!(
            environment_with(&CStringBlock::default(), &set, &changes.remove)
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::InvalidInput
        );
        let mut current = CStringBlock::default();
        current.push(&[b"A=1\0B=2"]);
        let set = CStringBlock::default();
        assert_eq!(
            environment_with(&current, &set, &[]).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        assert_eq!(CStringBlock::default().entries().count(), 0);
        // No changes: the environment as it was, duplicates and all, borrowed, not copied.
        let current = CStringBlock::from_nul_terminated(b"Z=1\0A=2\0Z=3".to_vec());
        assert_eq!(
            tool_env(&current, &EnvChanges::default()),
            [&b"Z=1"[..], b"A=2", b"Z=3"]
        );
        let set = CStringBlock::default();
        let borrowed = environment_with(&current, &set, &[]).unwrap();
        let kept = current.as_cstrs().unwrap();
        assert!(
            borrowed
                .iter()
                .zip(&kept)
                .all(|(a, b)| std::ptr::eq(a.as_ptr(), b.as_ptr()))
        );
    }

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
