//! `RUSTC_WRAPPER` mode: cargo runs `tally /abs/path/to/rustc args…`; tally counts the compile
//! and runs the compiler, or the user's own wrapper first when the cargo shim kept one in
//! `TALLY_NEXT_WRAPPER` (`sccache /abs/rustc args…`). tally is outermost on purpose: a cache hit
//! inside sccache runs nothing after it.
//!
//! A compile (not one of cargo's `-vV` or `--print` probes) is run as a child and waited for
//! ([`supervise`]), so that its outcome, time bucket and diagnostics can be counted
//! ([`outcome`], names from `tally_grammar::outcome`); a probe, and everything when tally's
//! mode is off (or counting failed), is `exec`ed as before, with nothing read. If the child
//! cannot be set up, the compiler is `exec`ed instead.
//!
//! The compiler's version names the counter file. When it is not cached yet, nothing waits for
//! it: the compile starts at once, and its counts (the call's and the outcome's, after the
//! compile) go to a detached helper that asks the compiler and counts under its answer
//! (`tally_process::version`).
//!
//! # Build scripts' compiles
//!
//! Build scripts compile scraps of code to learn what the compiler supports (anyhow's,
//! thiserror's and proc-macro2's nightly probes, autocfg's, hence num-traits' and many more):
//! they run `$RUSTC_WRAPPER $RUSTC … probe.rs`, so tally sees them as compiles, and many are
//! meant to fail on a stable compiler. They are not the user's compiles: such a compile is
//! counted by its outcome under `<driver>/build-script-outcome:<outcome>` only (a crash in one
//! is still seen), never in the outcome, time, error and lint counters, which say how the
//! user's compiles fare. Its call is counted like any other, with `rustc/caller:build-script`.
//!
//! How a build script's compile is told apart (`tally_grammar::caller_from_env`), from the
//! environment cargo documents (rust-lang/cargo `doc/book/src/reference/environment-variables.md`,
//! "Environment variables Cargo sets for crates" and "… for build scripts") and sets
//! (`src/compiler/compilation.rs`, `src/compiler/custom_build.rs`):
//! - `CARGO_CRATE_NAME` is set by cargo on every rustc it runs to compile a crate
//!   (`Compilation::rustc_process` → `fill_rustc_tool_env`), build scripts' own compiles
//!   included (`build_script_build`), and never on a process it runs that is not a compile: a
//!   build script runs with `host_process`, which does not set it. Present → cargo's compile.
//! - `CARGO_CFG_TARGET_ARCH` (one of the `CARGO_CFG_*` cargo derives from `rustc --print cfg`,
//!   always present) is set by cargo only when it runs a build script (`custom_build.rs`), and
//!   whatever the build script starts inherits it. Present without `CARGO_CRATE_NAME` → a
//!   compile a build script ran.
//!
//! Why this holds: the pair is cargo's own bookkeeping, not the user's (no one exports
//! `CARGO_CFG_TARGET_ARCH` to a shell), and each variable answers a different question.
//! `CARGO_CRATE_NAME` wins, so a cargo run by a build script (a nested build, which inherits
//! the outer build script's `CARGO_CFG_*`) still counts its own compiles as the user's;
//! only what a build script compiles itself is set apart. Variables such as `TARGET`, `HOST`
//! or `OUT_DIR` would not do: Makefiles and CI set `TARGET`, and cargo sets `OUT_DIR` for the
//! compile of every crate that has a build script. A build script that clears its child's
//! environment before probing is counted as cargo's compile, as before.
//!
//! Argument layouts (`argv[0]` is tally):
//! - `tally /abs/rustc args…`: the usual case.
//! - `tally clippy-driver args…` or `tally /abs/clippy-driver /abs/rustc args…`: `cargo
//!   clippy` (clippy-driver as compiler, or as `RUSTC_WORKSPACE_WRAPPER` in front of rustc).
//! - `tally other-wrapper /abs/rustc args…`: some other workspace wrapper before rustc.
//!
//! Promises: the same as the shims' (see `tally_shims`): argument bytes, environment minus
//! tally's markers (`TALLY_NEXT_WRAPPER` is removed, and `RUSTC_WRAPPER` is given back the
//! user's wrapper or removed when it named tally), descriptors and exit status are kept; every
//! failure inside tally is swallowed. If `argv[1]` is tally itself (cargo found tally's `rustc`
//! shim on PATH), the real rustc is found on PATH and run instead, so a compile is counted once
//! and tally never wraps itself.

#![forbid(unsafe_code)]

pub mod outcome;
pub mod supervise;

use std::ffi::{OsStr, OsString};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use tally_grammar::outcome::{
    CompileKind, Driver, Outcome, build_script_outcome_name, outcome_name, time_name,
};
use tally_grammar::{Context, RustcCaller, Tool, caller_from_env, rustc_counter_names};
use tally_home::env::ProcessEnv;
use tally_home::env::{TALLY_FORCE_ARG0, TALLY_NEXT_WRAPPER};
use tally_home::{Counted, Day, Env, Home, Mode, effective_mode};
use tally_process::identity::{self_identity, stem_of, tally_file};
use tally_process::{EnvChanges, exec, lookup, version};
use tally_sys::FileId;

/// Whether `tally <argv1> …` is a `RUSTC_WRAPPER` call rather than a CLI subcommand: `argv[1]`
/// is a path, or names a rustc-like compiler. CLI subcommands are plain words.
pub fn is_wrapper_invocation(argv1: &OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    argv1.as_bytes().contains(&b'/') || matches!(stem_of(argv1), Some("rustc" | "clippy-driver"))
}

/// Where the compiler is in argv, and whether clippy drives it.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    /// Index in argv of the compiler whose arguments follow it.
    pub compiler: usize,
    /// clippy-driver is the compiler or the workspace wrapper.
    pub clippy: bool,
}

/// Reads the layout of `argv` (`argv[0]` is tally, `argv[1]` exists).
pub fn layout(argv: &[OsString]) -> Layout {
    let stem1 = argv.get(1).and_then(|a| stem_of(a));
    let stem2 = argv.get(2).and_then(|a| stem_of(a));
    let clippy = stem1 == Some("clippy-driver");
    // `tally <workspace-wrapper> /abs/rustc args…`: cargo puts the workspace wrapper first.
    // The compiler may come as a bare `rustc` when cargo found it on PATH.
    if stem1 != Some("rustc") && stem2 == Some("rustc") {
        Layout {
            compiler: 2,
            clippy,
        }
    } else {
        Layout {
            compiler: 1,
            clippy,
        }
    }
}

/// Runs as `RUSTC_WRAPPER`. Returns only if nothing could be run, with the exit status.
pub fn run_wrapper(argv: Vec<OsString>) -> i32 {
    tally_process::silence_panics();
    if argv.len() < 2 {
        eprintln!(
            "tally: RUSTC_WRAPPER mode needs the compiler to run: tally /path/to/rustc ARGS…"
        );
        return 2;
    }
    let this = self_identity();
    let process_env = ProcessEnv::capture();
    let layout = layout(&argv);
    let mut run_argv: Vec<OsString> = argv[1..].to_vec();
    let compiler_index = layout.compiler - 1;
    if let Err(status) = use_real_compiler(&mut run_argv[compiler_index], this, &process_env) {
        return status;
    }
    // The counter file stays mapped until the `exec` or the end of the compile (see
    // `tally_home::Counted`).
    let counted = catch_unwind(AssertUnwindSafe(|| count(&run_argv, &layout, &process_env)))
        .ok()
        .flatten();
    let (mut tally, kind, caller) = match counted {
        Some(call) => (Some(call.tally), call.kind, call.caller),
        None => (None, None, RustcCaller::Cargo),
    };

    let (changes, next) = child_environment(&process_env, this);
    let (program, argv0, args) = match &next {
        Some(next) => (PathBuf::from(next), next.clone(), &run_argv[..]),
        None => (
            PathBuf::from(&run_argv[0]),
            run_argv[0].clone(),
            &run_argv[1..],
        ),
    };
    if tally.is_some()
        && let Some(kind) = kind
    {
        let compile = Compile {
            kind,
            driver: if layout.clippy {
                Driver::Clippy
            } else {
                Driver::Rustc
            },
            build_script: caller == RustcCaller::BuildScript,
        };
        let status = run_and_count(
            &program,
            &argv0,
            args,
            &process_env,
            &changes,
            &compile,
            &mut tally,
        );
        if let Some(status) = status {
            // Names still waiting here mean the compiler could not be run at all (not
            // found): the call is counted all the same, as a probe's is.
            hand_on_call(tally);
            return status;
        }
    }
    // A probe, or a compile that could not be supervised: `exec`ed. Counts still waiting for
    // the compiler's version are handed on first.
    hand_on_call(tally);
    exec(&program, &argv0, args, &process_env, &changes)
}

/// Puts the compiler to run in `compiler`: the real rustc when it is tally's own rustc shim,
/// the toolchain's binary when it is a rustup proxy, else as given. `Err` is the exit status
/// when no real rustc can be found.
fn use_real_compiler(
    compiler: &mut OsString,
    this: Option<FileId>,
    process_env: &ProcessEnv,
) -> Result<(), i32> {
    // argv[1] is tally's own rustc shim (linked to this binary or to the other one of the
    // install): run the real rustc instead (counted here, once).
    let resolved = resolve(compiler, process_env);
    if let Some(shim) = resolved.as_deref().and_then(|c| tally_file(c, this)) {
        match lookup::find_real(
            "rustc",
            process_env.get("PATH"),
            &tally_process::identity::ThisBinary::with_identity(Some(shim)),
        ) {
            Ok(found) => *compiler = found.path.into_os_string(),
            Err(not_found) => {
                eprintln!("{}", not_found.message("rustc"));
                return Err(127);
            }
        }
    }
    // A rustup proxy as the compiler (cargo passes one when tally's shims are on PATH): run the
    // toolchain's own binary, as cargo itself does without a wrapper, instead of
    // paying the proxy's start-up on every compile. Unresolvable: the proxy runs, as given.
    if let Ok(Some(direct)) = catch_unwind(AssertUnwindSafe(|| {
        toolchain_binary_behind(compiler, process_env)
    })) {
        *compiler = direct.into_os_string();
    }
    Ok(())
}

/// The changes to the compiler's environment (tally's own variables removed, the user's
/// `RUSTC_WRAPPER` given back), and the user's own wrapper to run next, if any.
fn child_environment(
    process_env: &ProcessEnv,
    this: Option<FileId>,
) -> (EnvChanges, Option<OsString>) {
    let mut changes = EnvChanges::default();
    changes.remove.push(TALLY_FORCE_ARG0.into());
    changes.remove.push(TALLY_NEXT_WRAPPER.into());
    let next = process_env
        .non_empty(TALLY_NEXT_WRAPPER)
        .filter(|n| !tally_process::arrange::is_tally(n, this));
    let rustc_wrapper_is_tally = process_env
        .get("RUSTC_WRAPPER")
        .is_some_and(|w| !w.is_empty() && tally_process::arrange::is_tally(w, this));
    if rustc_wrapper_is_tally {
        // Give the user's wrapper back its own variable; otherwise as if tally were absent.
        match &next {
            Some(next) => changes.set.push(("RUSTC_WRAPPER".into(), next.clone())),
            None => changes.remove.push("RUSTC_WRAPPER".into()),
        }
    }
    (changes, next)
}

/// Hands the call's names on if they are still waiting for the compiler's version.
fn hand_on_call(tally: Option<Tally>) {
    if let Some(Tally::Deferred(deferred)) = tally {
        let _ = catch_unwind(AssertUnwindSafe(|| deferred.hand_on(&[])));
    }
}

/// A compile being counted.
struct Compile {
    kind: CompileKind,
    driver: Driver,
    /// A build script ran it (a probe): counted apart from the user's compiles.
    build_script: bool,
}

/// One compiler run, counted.
struct Call {
    tally: Tally,
    /// What the run compiles; `None` for a probe.
    kind: Option<CompileKind>,
    caller: RustcCaller,
}

/// Where a run's counts are.
enum Tally {
    /// In the counter file, which stays mapped for the outcome's counts.
    Counted(Counted),
    /// Not counted yet: the compiler's version is not cached. Everything is counted by a
    /// helper once the version is known (`tally_process::version`), after the compile, so
    /// that the compile starts at once.
    Deferred(Deferred),
}

struct Deferred {
    query: version::Query,
    home: Home,
    today: Day,
    names: Vec<String>,
}

impl Deferred {
    /// Hands the call's names and `outcome` to the helper that asks for the version.
    fn hand_on(self, outcome: &[(String, u64)]) {
        self.query
            .count_when_known(&self.home, self.today, "rustc", &self.names, outcome);
    }
}

/// Runs the compile as a child, waits, counts how it fared, and returns the exit status to end
/// with (having died of the child's signal when it died of one). `None` when no child could be
/// set up: the caller `exec`s instead.
fn run_and_count(
    program: &Path,
    argv0: &OsStr,
    args: &[OsString],
    env: &ProcessEnv,
    changes: &EnvChanges,
    compile: &Compile,
    tally: &mut Option<Tally>,
) -> Option<i32> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(program.as_os_str().as_bytes()).ok()?;
    let argv: Vec<CString> = std::iter::once(argv0)
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .ok()?;
    let argv: Vec<&std::ffi::CStr> = argv.iter().map(CString::as_c_str).collect();
    let set = changes.set_entries();
    let envp = tally_process::environment_with(env.block(), &set, &changes.remove).ok()?;
    // A build script's compile is counted by its outcome alone: its diagnostics are not read
    // (a crash is still seen, from the panic message).
    let mut reader = Some(outcome::StderrReader::new(
        compile.kind.json && !compile.build_script,
    ));
    // A reader that panics is dropped; stderr is still forwarded.
    let mut copy = |chunk: &[u8]| {
        if let Some(r) = reader.as_mut()
            && catch_unwind(AssertUnwindSafe(|| r.feed(chunk))).is_err()
        {
            reader = None;
        }
    };
    let finished = match supervise::run(
        &supervise::Program {
            path: &path,
            // As `exec`: a name without `/` is looked up on PATH.
            search_path: true,
            argv: &argv,
            envp: &envp,
        },
        &mut copy,
    ) {
        Ok(finished) => finished,
        Err(supervise::Failed::Setup(_)) => return None,
        Err(supervise::Failed::Exec(err)) => {
            eprintln!("tally: cannot run {}: {err}", program.display());
            return Some(if err.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    if let Some(tally) = tally.take() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let names = outcome_names(compile, &finished, reader);
            match tally {
                Tally::Counted(counted) => add_outcome(&counted, &names),
                Tally::Deferred(deferred) => deferred.hand_on(&names),
            }
        }));
    }
    match finished.ended {
        supervise::Ended::Exited(code) => Some(code),
        supervise::Ended::Signaled(signal) => {
            tally_sys::spawn::die_by_signal(signal);
            Some(128 + signal)
        }
    }
}

/// How the compile fared, as names with counts: the outcome, the time bucket and the
/// diagnostics; for a build script's compile, its outcome under the build scripts' own name
/// only.
fn outcome_names(
    compile: &Compile,
    finished: &supervise::Finished,
    reader: Option<outcome::StderrReader>,
) -> Vec<(String, u64)> {
    let exit_code = match finished.ended {
        supervise::Ended::Exited(code) => Some(code),
        supervise::Ended::Signaled(_) => None,
    };
    let panicked = reader.as_ref().is_some_and(|r| r.panicked);
    let outcome = Outcome::classify(exit_code, panicked);
    if compile.build_script {
        return vec![(build_script_outcome_name(compile.driver, outcome), 1)];
    }
    let mut names = vec![
        (outcome_name(compile.driver, outcome), 1),
        (time_name(compile.driver, compile.kind, finished.elapsed), 1),
    ];
    names.extend(
        reader
            .map(outcome::StderrReader::finish)
            .unwrap_or_default(),
    );
    names
}

/// Adds `names` to the compile's counter file, mapped since the call was counted.
fn add_outcome(counted: &Counted, names: &[(String, u64)]) {
    let file = counted.file();
    // The file stayed mapped through the compile: if another program truncated it meanwhile,
    // a count would touch a page past its end and die of SIGBUS. Counting nothing is the
    // failure to prefer; the next run quarantines the short file.
    if !file.still_whole() {
        return;
    }
    for (name, count) in names {
        let _ = file.add(name, *count);
    }
}

/// The toolchain binary a rustup proxy named `program` would run, if `program` is one.
fn toolchain_binary_behind(program: &OsStr, env: &ProcessEnv) -> Option<PathBuf> {
    let path = resolve(program, env)?;
    if !tally_process::rustup::is_rustup_proxy(&path) {
        return None;
    }
    let tool = stem_of(path.as_os_str())?;
    let cwd = std::env::current_dir().ok()?;
    tally_process::rustup::toolchain_binary(
        tool,
        &[],
        &cwd,
        &tally_process::rustup::RustupEnv::from_snapshot(env),
    )
}

/// The file a program argument names: a path as is, a bare name through PATH.
fn resolve(program: &OsStr, env: &ProcessEnv) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return Some(path.to_path_buf());
    }
    let path_var = env.get("PATH")?;
    std::env::split_paths(path_var)
        .map(|d| d.join(path))
        .find(|c| lookup::executable(c).is_some())
}

/// Counts one compiler run. `run_argv` is what will be run: `[compiler, args…]` or
/// `[workspace-wrapper, compiler, args…]`. With the compiler's version cached, the call is
/// counted now and the counter file comes back still mapped; otherwise the counts wait for
/// the compile's end and go to the helper that asks for the version ([`Tally::Deferred`]).
fn count(run_argv: &[OsString], layout: &Layout, process_env: &ProcessEnv) -> Option<Call> {
    let env = Env::from_snapshot(process_env);
    let home = Home::locate(&env)?;
    if effective_mode(&env, Some(&home)) == Mode::Off {
        return None;
    }
    let compiler = &run_argv[layout.compiler - 1];
    let args = &run_argv[layout.compiler..];
    let caller = caller_from_env(&|k| process_env.get(k).is_some(), RustcCaller::Cargo);
    let ctx = Context {
        rustc_caller: caller,
        clippy_driver: layout.clippy,
        ..Context::default()
    };
    let (names, kind) = rustc_counter_names(args, &ctx);
    // clippy-driver as the compiler reports clippy's version; rustc's is what matters, and a
    // rustc sits beside it in the toolchain.
    let binary = resolve(compiler, process_env)
        .map(|p| {
            if stem_of(p.as_os_str()) == Some("clippy-driver") {
                p.with_file_name("rustc")
            } else {
                p
            }
        })
        .and_then(|bin| {
            let (meta, symlink) = lookup::executable_entry(&bin)?;
            version::versioned_binary(Tool::Rustc, &bin, &meta, symlink, args, process_env)
        });
    let tally = match binary.map(|(bin, meta)| version::cached(Tool::Rustc, &bin, &meta, &home)) {
        Some(version::Cached::Missing(query)) => {
            // The helper may create the week's file; the notice is said here, where the
            // terminal is, once the data directory exists.
            if home.own_dir(&home.versions_dir()).is_ok() {
                tally_process::notice::maybe_show(&env, home.root());
            }
            Tally::Deferred(Deferred {
                query,
                today: env.today(),
                home,
                names,
            })
        }
        known => {
            let version = match known {
                Some(version::Cached::Known(version)) => version,
                _ => version::UNKNOWN.to_string(),
            };
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            // The mode was read above: count without reading it (or locating the home) again,
            // as the shim does.
            let counted = home.count(env.today(), "rustc", &version, &refs).ok()?;
            if counted.created_file {
                tally_process::notice::maybe_show(&env, home.root());
            }
            Tally::Counted(counted)
        }
    };
    Some(Call {
        tally,
        kind,
        caller,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn recognises_wrapper_calls() {
        for yes in [
            "/usr/bin/rustc",
            "rustc",
            "clippy-driver",
            "./x",
            "/opt/sccache",
        ] {
            assert!(is_wrapper_invocation(OsStr::new(yes)), "{yes}");
        }
        for no in ["status", "show", "upload", "demo", "--help"] {
            assert!(!is_wrapper_invocation(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn layouts() {
        assert_eq!(
            layout(&argv(&["tally", "/t/bin/rustc", "-vV"])),
            Layout {
                compiler: 1,
                clippy: false
            }
        );
        assert_eq!(
            layout(&argv(&[
                "tally",
                "/t/bin/clippy-driver",
                "/t/bin/rustc",
                "src/lib.rs"
            ])),
            Layout {
                compiler: 2,
                clippy: true
            }
        );
        assert_eq!(
            layout(&argv(&["tally", "clippy-driver", "src/lib.rs"])),
            Layout {
                compiler: 1,
                clippy: true
            }
        );
        assert_eq!(
            layout(&argv(&["tally", "/opt/ws-wrap", "/t/bin/rustc", "x.rs"])),
            Layout {
                compiler: 2,
                clippy: false
            }
        );
    }
}
