//! The cargo shim's `RUSTC_WRAPPER` arrangement: cargo often runs rustc without going through
//! `PATH`, so compiles are counted by making tally cargo's rustc wrapper, while keeping any
//! wrapper the user already has (sccache…) to run after tally.
//!
//! Cargo's rules, followed here: `RUSTC_WRAPPER` in the environment wins (set but empty means
//! "no wrapper", overriding config); then `CARGO_BUILD_RUSTC_WRAPPER`; then `build.rustc-wrapper`
//! in `.cargo/config.toml` (or `.cargo/config`) in the working directory and each parent, the
//! deepest first, then `$CARGO_HOME/config.toml`. A configured path containing a `/` is relative
//! to the directory holding `.cargo/`; a bare name is looked up on PATH when run. Not read:
//! `--config` on cargo's command line and `include`d config files.
//!
//! Never `RUSTC_WORKSPACE_WRAPPER` (it changes cargo's metadata hash and rebuilds everything).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::identity::{FileIdentity, file_stem};

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
        CargoEnv {
            rustc_wrapper: std::env::var_os("RUSTC_WRAPPER"),
            cargo_build_rustc_wrapper: std::env::var_os("CARGO_BUILD_RUSTC_WRAPPER")
                .filter(|v| !v.is_empty()),
            cargo_home: std::env::var_os("CARGO_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            home: std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
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

/// Works out the arrangement for a cargo run in `cwd`. `tally` is the binary that will be
/// `RUSTC_WRAPPER`.
pub fn arrange(tally: &Path, env: &CargoEnv, cwd: &Path) -> Arrangement {
    let tally_id = FileIdentity::of_path(tally);
    let user = match &env.rustc_wrapper {
        Some(w) if w.is_empty() => None,
        Some(w) => Some(w.clone()),
        None => env
            .cargo_build_rustc_wrapper
            .clone()
            .or_else(|| configured_wrapper(cwd, env)),
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

/// Whether a wrapper setting names tally itself (by name, or by being the same file).
pub fn is_tally(wrapper: &OsStr, tally_id: Option<FileIdentity>) -> bool {
    let path = Path::new(wrapper);
    if file_stem(path) == Some("tally") {
        return true;
    }
    path.is_absolute() && tally_id.is_some() && FileIdentity::of_path(path) == tally_id
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
            let Ok(table) = text.parse::<toml::Table>() else {
                continue;
            };
            let Some(value) = table
                .get("build")
                .and_then(|b| b.get("rustc-wrapper"))
                .and_then(|w| w.as_str())
            else {
                continue;
            };
            if value.is_empty() {
                return None;
            }
            let base = dot_cargo.parent().unwrap_or(Path::new("/"));
            return Some(if value.contains('/') && !Path::new(value).is_absolute() {
                base.join(value).into_os_string()
            } else {
                OsString::from(value)
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_cargo_precedence() {
        let tmp = tempfile::tempdir().unwrap();
        let tally = tmp.path().join("bin/tally");
        std::fs::create_dir_all(tally.parent().unwrap()).unwrap();
        std::fs::write(&tally, "").unwrap();
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

        let got = arrange(&tally, &env, &project);
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
            arrange(&tally, &env, &project),
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
            arrange(&tally, &with("/usr/bin/other"), &project),
            Arrangement::Wrap {
                next: Some("/usr/bin/other".into())
            }
        );
        assert_eq!(
            arrange(&tally, &with(""), &project),
            Arrangement::Wrap { next: None }
        );
        let build = CargoEnv {
            cargo_build_rustc_wrapper: Some("cachepot".into()),
            ..env.clone()
        };
        assert_eq!(
            arrange(&tally, &build, &project),
            Arrangement::Wrap {
                next: Some("cachepot".into())
            }
        );

        // Never twice, never itself.
        assert_eq!(
            arrange(&tally, &with(tally.to_str().unwrap()), &project),
            Arrangement::AlreadyTally
        );
        assert_eq!(
            arrange(&tally, &with("/elsewhere/tally"), &project),
            Arrangement::AlreadyTally
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
            arrange(&tmp.path().join("tally"), &env, tmp.path()),
            Arrangement::Wrap { next: None }
        );
    }
}
