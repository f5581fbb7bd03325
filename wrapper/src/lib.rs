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

use tally_grammar::outcome::{CompileKind, Driver, Outcome, outcome_name, time_name};
use tally_grammar::{Context, RustcCaller, Tool, caller_from_env, rustc_counter_names};
use tally_home::env::{TALLY_FORCE_ARG0, TALLY_NEXT_WRAPPER};
use tally_home::{Counted, Env, Home, Mode, ProcessEnv, effective_mode};
use tally_process::identity::{self_identity, stem_of, tally_file};
use tally_process::{EnvChanges, exec, lookup, version};

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
    // argv[1] is tally's own rustc shim (linked to this binary or to the other one of the
    // install): run the real rustc instead (counted here, once).
    let compiler_index = layout.compiler - 1;
    let compiler = resolve(&run_argv[compiler_index], &process_env);
    if let Some(shim) = compiler.as_deref().and_then(|c| tally_file(c, this)) {
        match lookup::find_real(
            "rustc",
            process_env.get("PATH"),
            &tally_process::identity::ThisBinary::with_identity(Some(shim)),
        ) {
            Ok(found) => run_argv[compiler_index] = found.path.into_os_string(),
            Err(not_found) => {
                eprintln!("{}", not_found.message("rustc"));
                return 127;
            }
        }
    }
    // A rustup proxy as the compiler (cargo passes one when tally's shims are on PATH): run the
    // toolchain's own binary, as cargo itself does without a wrapper (cargo#11917), instead of
    // paying the proxy's start-up on every compile. Unresolvable: the proxy runs, as given.
    if let Ok(Some(direct)) = catch_unwind(AssertUnwindSafe(|| {
        toolchain_binary_behind(&run_argv[compiler_index], &process_env)
    })) {
        run_argv[compiler_index] = direct.into_os_string();
    }
    // The counter file stays mapped until the `exec` or the end of the compile (see
    // `tally_home::Counted`).
    let counted = catch_unwind(AssertUnwindSafe(|| count(&run_argv, &layout, &process_env)))
        .ok()
        .flatten();

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
    let (program, argv0, args) = match &next {
        Some(next) => (PathBuf::from(next), next.clone(), &run_argv[..]),
        None => (
            PathBuf::from(&run_argv[0]),
            run_argv[0].clone(),
            &run_argv[1..],
        ),
    };
    if let Some((counted, Some(kind))) = &counted {
        let driver = if layout.clippy {
            Driver::Clippy
        } else {
            Driver::Rustc
        };
        let compile = Compile {
            counted,
            kind: *kind,
            driver,
        };
        if let Some(status) =
            run_and_count(&program, &argv0, args, &process_env, &changes, &compile)
        {
            return status;
        }
    }
    exec(&program, &argv0, args, &process_env, &changes)
}

/// A compile being counted.
struct Compile<'a> {
    counted: &'a Counted,
    kind: CompileKind,
    driver: Driver,
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
    compile: &Compile<'_>,
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
    let mut reader = Some(outcome::StderrReader::new(compile.kind.json));
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
    let _ = catch_unwind(AssertUnwindSafe(|| {
        count_outcome(compile, &finished, reader)
    }));
    match finished.ended {
        supervise::Ended::Exited(code) => Some(code),
        supervise::Ended::Signaled(signal) => {
            tally_sys::spawn::die_by_signal(signal);
            Some(128 + signal)
        }
    }
}

/// Adds the outcome, the time bucket and the diagnostics to the compile's counter file.
fn count_outcome(
    compile: &Compile<'_>,
    finished: &supervise::Finished,
    reader: Option<outcome::StderrReader>,
) {
    let exit_code = match finished.ended {
        supervise::Ended::Exited(code) => Some(code),
        supervise::Ended::Signaled(_) => None,
    };
    let panicked = reader.as_ref().is_some_and(|r| r.panicked);
    let file = compile.counted.file();
    // The file stayed mapped through the compile: if another program truncated it meanwhile,
    // a count would touch a page past its end and die of SIGBUS. Counting nothing is the
    // failure to prefer; the next run quarantines the short file.
    if !file.still_whole() {
        return;
    }
    let outcome = Outcome::classify(exit_code, panicked);
    let _ = file.add(&outcome_name(compile.driver, outcome), 1);
    let _ = file.add(
        &time_name(compile.driver, compile.kind, finished.elapsed),
        1,
    );
    for (name, count) in reader
        .map(outcome::StderrReader::finish)
        .unwrap_or_default()
    {
        let _ = file.add(&name, count);
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
/// `[workspace-wrapper, compiler, args…]`. Returns the counter file, still mapped, and what
/// the run compiles (`None` for a probe).
fn count(
    run_argv: &[OsString],
    layout: &Layout,
    process_env: &ProcessEnv,
) -> Option<(Counted, Option<CompileKind>)> {
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
    let binary = resolve(compiler, process_env).map(|p| {
        if stem_of(p.as_os_str()) == Some("clippy-driver") {
            p.with_file_name("rustc")
        } else {
            p
        }
    });
    let version = binary
        .and_then(|bin| {
            let (meta, symlink) = lookup::executable_entry(&bin)?;
            let (bin, meta) =
                version::versioned_binary(Tool::Rustc, &bin, &meta, symlink, args, process_env)?;
            Some(version::version_of(Tool::Rustc, &bin, &meta, &home))
        })
        .unwrap_or_else(|| version::UNKNOWN.to_string());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // The mode was read above: count without reading it (or locating the home) again, as
    // the shim does.
    let counted = home.count(env.today(), "rustc", &version, &refs).ok();
    if counted.as_ref().is_some_and(|c| c.created_file) {
        tally_process::notice::maybe_show(&env, home.root());
    }
    counted.map(|c| (c, kind))
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
