//! The cargo shim's `RUSTC_WRAPPER` arrangement: cargo often runs rustc without going through
//! `PATH`, so compiles are counted by making tally cargo's rustc wrapper, while keeping any
//! wrapper the user already has (sccache…) to run after tally. The wrapper is the binary the
//! cargo shim runs as, under its own name (`tally_process::identity::wrapper_exe`):
//! `tally-shim` for the shims `tally setup` makes, `tally` for shims linked to it; a setting
//! naming either is tally already ([`is_tally`]).
//!
//! Cargo's rules, followed here: `RUSTC_WRAPPER` in the environment wins (set but empty means
//! "no wrapper", overriding config); then `--config` on cargo's command line (the last one
//! that sets `build.rustc-wrapper`, as `KEY=VALUE` or in a named `.toml` file); then
//! `CARGO_BUILD_RUSTC_WRAPPER`; then `build.rustc-wrapper` in `.cargo/config.toml` (or
//! `.cargo/config`) in the working directory and each parent, the deepest first, then
//! `$CARGO_HOME/config.toml`. A configured path containing a `/` is relative to the directory
//! holding `.cargo/` (to the working directory for `--config KEY=VALUE`, and to the file's
//! directory's parent for `--config FILE`, as cargo has it); a bare name is looked up on PATH
//! when run. Because `RUSTC_WRAPPER` beats all of these, tally must find the user's wrapper
//! wherever it is set, or setting `RUSTC_WRAPPER=tally` would silently drop it. Not read:
//! `include`d config files (an unstable cargo feature).
//!
//! Never `RUSTC_WORKSPACE_WRAPPER` (it changes cargo's metadata hash and rebuilds everything).
//!
//! Cargo caches what rustc answered to its probes (`rustc -vV`, `--print …`) in
//! `target/.rustc_info.json`, under a key made from the paths, sizes and times of rustc and of
//! the wrapper, not from what the wrapper runs after itself. With tally as the wrapper for
//! every user wrapper, a probe answered through one (a failing `/bin/false`) would be reused
//! through another. So when the user has a wrapper, cargo is given a path of its own for it
//! ([`wrapper_path`]): a symbolic link to tally in the data directory, named after the user's
//! wrapper; without one, tally's own path.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::identity::{file_stem, is_binary_name};
use tally_sys::FileId;

/// The environment variables this arrangement reads (cargo's, not tally's).
#[derive(Debug, Default, Clone)]
pub struct CargoEnv {
    pub rustc_wrapper: Option<OsString>,
    pub cargo_build_rustc_wrapper: Option<OsString>,
    pub cargo_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl CargoEnv {
    pub fn from_process() -> CargoEnv {
        CargoEnv::from_snapshot(&tally_home::env::ProcessEnv::capture())
    }

    /// The same, out of an environment already copied.
    pub fn from_snapshot(env: &tally_home::env::ProcessEnv) -> CargoEnv {
        CargoEnv {
            rustc_wrapper: env.get("RUSTC_WRAPPER").map(OsStr::to_os_string),
            cargo_build_rustc_wrapper: env.non_empty("CARGO_BUILD_RUSTC_WRAPPER"),
            cargo_home: env.non_empty("CARGO_HOME").map(PathBuf::from),
            home: env.non_empty("HOME").map(PathBuf::from),
        }
    }
}

/// What the cargo shim sets in cargo's environment.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrangement {
    /// tally is already cargo's wrapper (a cargo shim further up, or the user did it): nothing
    /// to change, so tally is never wrapped twice.
    AlreadyTally,
    /// Set `RUSTC_WRAPPER` to tally, and `TALLY_NEXT_WRAPPER` to the user's wrapper if any.
    Wrap { next: Option<OsString> },
}

/// Works out the arrangement for a cargo run in `cwd` with cargo's arguments `args` (after
/// `argv[0]`). `tally` is the binary that will be `RUSTC_WRAPPER` (`tally-shim` or `tally`).
pub fn arrange(tally: &Path, env: &CargoEnv, cwd: &Path, args: &[OsString]) -> Arrangement {
    let tally_id = FileId::of_target(tally);
    let user = match &env.rustc_wrapper {
        Some(w) if w.is_empty() => None,
        Some(w) => Some(w.clone()),
        None => match command_line_wrapper(args, cwd) {
            Some(setting) => setting,
            None => env
                .cargo_build_rustc_wrapper
                .clone()
                .or_else(|| configured_wrapper(cwd, env)),
        },
    };
    match user {
        Some(w) if is_tally(&w, tally_id) => {
            if env.rustc_wrapper.as_deref() == Some(w.as_os_str()) {
                Arrangement::AlreadyTally
            } else {
                // tally named in config only: make it explicit, with nothing after it.
                Arrangement::Wrap { next: None }
            }
        }
        next => Arrangement::Wrap { next },
    }
}

/// The most links [`wrapper_path`] keeps (one per distinct user wrapper); past it, tally's own
/// path is used (cargo's cache then cannot tell those wrappers apart, nothing else changes).
pub const MAX_WRAPPER_LINKS: usize = 64;

/// The path cargo gets as `RUSTC_WRAPPER` for tally followed by the user's wrapper `next`:
/// `tally` itself when there is none, else `<data_dir>/wrappers/tally-<hash of next>`, a
/// symbolic link to `tally` made here if needed, so that cargo's cache of rustc's answers is
/// keyed apart for each user wrapper (see the module docs). Any failure (a read-only data
/// directory, something other than a directory at `wrappers`, too many links) gives `tally`.
/// Nothing in the data directory is followed: `wrappers` must be a real directory, and an
/// existing entry is used only when it is a link whose target is `tally` (a link made by the
/// other binary, or by an earlier install, is replaced).
pub fn wrapper_path(tally: &Path, next: Option<&OsStr>, data_dir: &Path) -> PathBuf {
    next.and_then(|next| wrapper_link(tally, next, data_dir))
        .unwrap_or_else(|| tally.to_path_buf())
}

fn wrapper_link(tally: &Path, next: &OsStr, data_dir: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let dir = data_dir.join("wrappers");
    // FNV-1a: a stable name for the same wrapper in every run (not a secret: the link's name
    // tells only which of the user's wrappers it stands for, and stays on this machine).
    let hash = next
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let name = format!("tally-{hash:016x}");
    let link = dir.join(&name);
    if std::fs::read_link(&link).ok().as_deref() == Some(tally) {
        return Some(link);
    }
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => {
            if std::fs::read_dir(&dir).ok()?.count() >= MAX_WRAPPER_LINKS {
                return None;
            }
        }
        Ok(_) => return None,
        Err(_) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
        }
    }
    // Made under a temporary name and renamed into place: a concurrent cargo sees either no
    // link or a whole one.
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(tally, &tmp).ok()?;
    if std::fs::rename(&tmp, &link).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return None;
    }
    Some(link)
}

/// Whether a wrapper setting names tally itself: by the name of either of its binaries
/// (`tally`, `tally-shim`: both run as the wrapper), or by being the same file as `tally_id`.
pub fn is_tally(wrapper: &OsStr, tally_id: Option<FileId>) -> bool {
    let path = Path::new(wrapper);
    if is_binary_name(file_stem(path)) {
        return true;
    }
    path.is_absolute() && tally_id.is_some() && FileId::of_target(path) == tally_id
}

/// `build.rustc-wrapper` as set by `--config` on cargo's command line: `None` if no `--config`
/// sets it, `Some(None)` if the last one that does sets it empty (no wrapper), else the wrapper.
pub fn command_line_wrapper(args: &[OsString], cwd: &Path) -> Option<Option<OsString>> {
    let mut found = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(arg) = arg.to_str() else { continue };
        if arg == "--" {
            break;
        }
        let value = match arg.strip_prefix("--config") {
            Some("") => match args.next().and_then(|v| v.to_str()) {
                Some(v) => v,
                None => break,
            },
            Some(rest) => match rest.strip_prefix('=') {
                Some(v) => v,
                None => continue,
            },
            None => continue,
        };
        // Cargo's own rule: an argument naming an existing file is that file; anything else
        // is a TOML `KEY=VALUE`.
        let as_path = cwd.join(value);
        let (text, base) = if !value.is_empty() && as_path.is_file() {
            let Ok(text) = std::fs::read_to_string(&as_path) else {
                continue;
            };
            let base = as_path
                .parent()
                .and_then(Path::parent)
                .unwrap_or(cwd)
                .to_path_buf();
            (text, base)
        } else {
            (value.to_string(), cwd.to_path_buf())
        };
        if let Some(setting) = wrapper_in(&text) {
            found = Some(setting.map(|w| resolve_relative(&w, &base)));
        }
    }
    found
}

/// `build.rustc-wrapper` in a piece of cargo configuration: `None` if it is not set there,
/// `Some(None)` if set empty.
fn wrapper_in(toml_text: &str) -> Option<Option<String>> {
    let table = toml_text.parse::<toml::Table>().ok()?;
    let value = table.get("build")?.get("rustc-wrapper")?.as_str()?;
    Some((!value.is_empty()).then(|| value.to_string()))
}

/// A configured program: a path with a `/` is relative to `base`; a bare name stays bare (it
/// is looked up on PATH when run).
fn resolve_relative(value: &str, base: &Path) -> OsString {
    if value.contains('/') && !Path::new(value).is_absolute() {
        base.join(value).into_os_string()
    } else {
        OsString::from(value)
    }
}

/// `build.rustc-wrapper` from the config files cargo would read, resolved as cargo does.
pub fn configured_wrapper(cwd: &Path, env: &CargoEnv) -> Option<OsString> {
    let mut candidates: Vec<PathBuf> = cwd.ancestors().map(|d| d.join(".cargo")).collect();
    let cargo_home = env
        .cargo_home
        .clone()
        .or_else(|| env.home.as_ref().map(|h| h.join(".cargo")));
    if let Some(home) = cargo_home
        && !candidates.contains(&home)
    {
        candidates.push(home);
    }
    for dot_cargo in candidates {
        // Cargo prefers the extension-less file when both exist.
        for name in ["config", "config.toml"] {
            let file = dot_cargo.join(name);
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let Some(setting) = wrapper_in(&text) else {
                continue;
            };
            let base = dot_cargo.parent().unwrap_or(Path::new("/"));
            return setting.map(|value| resolve_relative(&value, base));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty file standing for the installed `tally` binary, at `bin/tally` under `root`.
    fn installed_tally(root: &Path) -> PathBuf {
        let tally = root.join("bin/tally");
        std::fs::create_dir_all(tally.parent().unwrap()).unwrap();
        std::fs::write(&tally, "").unwrap();
        tally
    }

    #[test]
    fn follows_cargo_precedence() {
        let tmp = tempfile::tempdir().unwrap();
        let tally = installed_tally(tmp.path());
        let project = tmp.path().join("ws/member");
        std::fs::create_dir_all(project.join(".cargo")).unwrap();
        std::fs::create_dir_all(tmp.path().join("ws/.cargo")).unwrap();
        std::fs::write(
            tmp.path().join("ws/.cargo/config.toml"),
            "[build]\nrustc-wrapper = \"tools/logwrap\"\n",
        )
        .unwrap();
        let env = CargoEnv {
            cargo_home: Some(tmp.path().join("cargo-home")),
            ..CargoEnv::default()
        };

        let got = arrange(&tally, &env, &project, &[]);
        assert_eq!(
            got,
            Arrangement::Wrap {
                next: Some(tmp.path().join("ws/tools/logwrap").into_os_string())
            }
        );

        // A deeper config wins, bare names stay bare.
        std::fs::write(
            project.join(".cargo/config"),
            "[build]\nrustc-wrapper = \"sccache\"\n",
        )
        .unwrap();
        assert_eq!(
            arrange(&tally, &env, &project, &[]),
            Arrangement::Wrap {
                next: Some("sccache".into())
            }
        );

        // The environment beats config; empty means none.
        let with = |w: &str| CargoEnv {
            rustc_wrapper: Some(w.into()),
            ..env.clone()
        };
        assert_eq!(
            arrange(&tally, &with("/usr/bin/other"), &project, &[]),
            Arrangement::Wrap {
                next: Some("/usr/bin/other".into())
            }
        );
        assert_eq!(
            arrange(&tally, &with(""), &project, &[]),
            Arrangement::Wrap { next: None }
        );
        let build = CargoEnv {
            cargo_build_rustc_wrapper: Some("cachepot".into()),
            ..env.clone()
        };
        assert_eq!(
            arrange(&tally, &build, &project, &[]),
            Arrangement::Wrap {
                next: Some("cachepot".into())
            }
        );

        // Never twice, never itself.
        assert_eq!(
            arrange(&tally, &with(tally.to_str().unwrap()), &project, &[]),
            Arrangement::AlreadyTally
        );
        assert_eq!(
            arrange(&tally, &with("/elsewhere/tally"), &project, &[]),
            Arrangement::AlreadyTally
        );
    }

    #[test]
    fn command_line_config_beats_the_build_variable_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let tally = tmp.path().join("bin/tally");
        let project = tmp.path().join("project");
        std::fs::create_dir_all(project.join(".cargo")).unwrap();
        std::fs::write(
            project.join(".cargo/config.toml"),
            "[build]\nrustc-wrapper = \"from-file\"\n",
        )
        .unwrap();
        let env = CargoEnv {
            cargo_build_rustc_wrapper: Some("from-env".into()),
            cargo_home: Some(tmp.path().join("none")),
            ..CargoEnv::default()
        };
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let next = |a: &[&str]| match arrange(&tally, &env, &project, &args(a)) {
            Arrangement::Wrap { next } => next,
            other => panic!("{other:?}"),
        };
        assert_eq!(next(&["build"]), Some("from-env".into()));
        // KEY=VALUE, in both spellings, after the subcommand too; the last one wins.
        assert_eq!(
            next(&["--config", "build.rustc-wrapper='sccache'", "build"]),
            Some("sccache".into())
        );
        assert_eq!(
            next(&[
                "build",
                "--config=build.rustc-wrapper=\"first\"",
                "--config",
                "build.rustc-wrapper=\"tools/second\""
            ]),
            Some(project.join("tools/second").into_os_string())
        );
        // Other keys are not the wrapper; an empty one means none.
        assert_eq!(
            next(&["--config", "build.jobs=2", "build"]),
            Some("from-env".into())
        );
        assert_eq!(next(&["--config", "build.rustc-wrapper=''", "build"]), None);
        // After `--` it is the program's argument, not cargo's.
        assert_eq!(
            next(&["run", "--", "--config", "build.rustc-wrapper='x'"]),
            Some("from-env".into())
        );
        // A file: relative paths in it are relative to its directory's parent.
        std::fs::create_dir_all(project.join("ci/cfg")).unwrap();
        std::fs::write(
            project.join("ci/cfg/wrap.toml"),
            "[build]\nrustc-wrapper = \"bin/logwrap\"\n",
        )
        .unwrap();
        assert_eq!(
            next(&["--config", "ci/cfg/wrap.toml", "build"]),
            Some(project.join("ci/bin/logwrap").into_os_string())
        );
        // RUSTC_WRAPPER still beats everything.
        let env = CargoEnv {
            rustc_wrapper: Some("/usr/bin/explicit".into()),
            ..env.clone()
        };
        assert_eq!(
            arrange(
                &tally,
                &env,
                &project,
                &args(&["--config", "build.rustc-wrapper='x'"])
            ),
            Arrangement::Wrap {
                next: Some("/usr/bin/explicit".into())
            }
        );
    }

    #[test]
    fn each_user_wrapper_gets_a_path_of_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let tally = installed_tally(tmp.path());
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        assert_eq!(wrapper_path(&tally, None, &data), tally);
        assert!(
            !data.join("wrappers").exists(),
            "no wrapper, nothing written"
        );
        let a = wrapper_path(&tally, Some(OsStr::new("/bin/false")), &data);
        let b = wrapper_path(&tally, Some(OsStr::new("sccache")), &data);
        assert_ne!(a, b);
        for link in [&a, &b] {
            assert!(
                link.starts_with(data.join("wrappers")),
                "{}",
                link.display()
            );
            assert_eq!(std::fs::read_link(link).unwrap(), tally);
        }
        // The same wrapper, the same path, again.
        assert_eq!(
            wrapper_path(&tally, Some(OsStr::new("/bin/false")), &data),
            a
        );
        // A link to anything else is replaced, never followed.
        std::fs::remove_file(&a).unwrap();
        std::os::unix::fs::symlink("/elsewhere", &a).unwrap();
        assert_eq!(
            wrapper_path(&tally, Some(OsStr::new("/bin/false")), &data),
            a
        );
        assert_eq!(std::fs::read_link(&a).unwrap(), tally);
        // `wrappers` planted as a link, or no writable data directory: tally's own path.
        let planted = tmp.path().join("planted");
        std::fs::create_dir(&planted).unwrap();
        std::fs::create_dir(planted.join("real")).unwrap();
        std::os::unix::fs::symlink(planted.join("real"), planted.join("wrappers")).unwrap();
        assert_eq!(wrapper_path(&tally, Some(OsStr::new("x")), &planted), tally);
        assert_eq!(std::fs::read_dir(planted.join("real")).unwrap().count(), 0);
        assert_eq!(
            wrapper_path(
                &tally,
                Some(OsStr::new("x")),
                &tmp.path().join("missing/data")
            ),
            tally
        );
    }

    #[test]
    fn nothing_configured_means_no_next_wrapper() {
        let tmp = tempfile::tempdir().unwrap();
        let env = CargoEnv {
            cargo_home: Some(tmp.path().join("none")),
            ..CargoEnv::default()
        };
        assert_eq!(
            arrange(&tmp.path().join("tally"), &env, tmp.path(), &[]),
            Arrangement::Wrap { next: None }
        );
    }
}
