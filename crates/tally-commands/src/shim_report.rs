//! What `tally status` and `tally setup` say about the shims: are they first on PATH (and if
//! not, what comes before them and the one line that fixes it), which of tally's binaries each
//! runs (`tally-shim`, or `tally` itself for links made before it existed) and what real tool
//! it finds, and are compiles under cargo counted (the `RUSTC_WRAPPER` arrangement, and by
//! which binary). Pure reads.
//!
//! Every copy of a tool on PATH is looked at (the `which` crate), not only the first, so that a
//! shims directory that comes after rustup's `~/.cargo/bin` is still found and named.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use tally_grammar::Tool;
use tally_home::{Env, Mode};

use tally_process::identity::{ThisBinary, wrapper_exe};
use tally_process::lookup::{executable, find_real, hot_binary_beside};
use tally_sys::FileId;

/// One tool's shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolShim {
    /// The tool name (`cargo`).
    pub tool: &'static str,
    /// Where tally's shim for `tool` is on PATH, if it is anywhere on it.
    pub shim: Option<PathBuf>,
    /// Which of tally's binaries that shim runs.
    pub runs: Option<PathBuf>,
    /// The first `tool` on PATH that is not tally, if it comes before the shim (or there is no
    /// shim): what runs instead, uncounted.
    pub shadowed_by: Option<PathBuf>,
    /// The real tool the shim hands over to.
    pub real: Option<PathBuf>,
}

/// How cargo's compiles are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WrapperState {
    /// The cargo shim is first on PATH and will set `RUSTC_WRAPPER` to `wrapper` (the binary
    /// it runs, under its own name), keeping the user's wrapper, if any, to run after it.
    ArrangedByCargoShim {
        wrapper: PathBuf,
        next: Option<OsString>,
    },
    /// `RUSTC_WRAPPER` already names tally in this environment (`wrapper` is its value).
    SetInEnvironment { wrapper: OsString },
    /// Compiles under cargo are not counted (no cargo shim first on PATH, or mode off).
    NotCounted { why: String },
}

/// The shims as seen from this environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimReport {
    /// The directory of the shims, if tally is on PATH under any tool's name.
    pub shims_dir: Option<PathBuf>,
    /// The `tally-shim` installed beside this `tally`, which `tally setup` links the shims to
    /// (`None`: a partial install, the shims can only run `tally` itself).
    pub hot_binary: Option<PathBuf>,
    /// Whether every tool's first match on PATH is tally's shim.
    pub first_on_path: bool,
    pub tools: Vec<ToolShim>,
    pub rustc_wrapper: WrapperState,
    /// When the shims are not first on PATH for every tool: the shell line that puts them
    /// first (their directory on PATH, else `tally setup`'s, if it holds the shims).
    pub fix: Option<String>,
}

/// Builds the report. `env` decides the mode; `PATH`, `RUSTC_WRAPPER` and the cargo config
/// files are read from the process, as cargo would.
pub fn shim_report(env: &Env) -> ShimReport {
    shim_report_with_path(env, tally_home::env::var_os("PATH"))
}

/// [`shim_report`] for the search path `path_var` instead of the process's `PATH` (what
/// `tally setup` checks: the PATH a new shell will have).
pub fn shim_report_with_path(env: &Env, path_var: Option<OsString>) -> ShimReport {
    let binaries = Binaries::find();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut shims_dir = None;
    let tools: Vec<ToolShim> = Tool::ALL
        .iter()
        .map(|tool| {
            tool_shim(
                tool.name(),
                path_var.as_deref(),
                &binaries,
                &cwd,
                &mut shims_dir,
            )
        })
        .collect();
    let first_on_path = tools
        .iter()
        .all(|t| t.shim.is_some() && t.shadowed_by.is_none());
    let cargo_shim_runs = tools
        .iter()
        .find(|t| t.tool == "cargo" && t.shim.is_some() && t.shadowed_by.is_none())
        .and_then(|t| t.runs.clone());
    let rustc_wrapper = wrapper_state(env, &binaries, cargo_shim_runs, &cwd);
    let fix = if first_on_path {
        None
    } else {
        shims_dir
            .clone()
            .or_else(|| {
                crate::install_paths::installed_shims_dir(env, &|id| binaries.which(id).is_some())
            })
            .and_then(|dir| crate::install_paths::path_line(&dir, env).ok())
    };
    ShimReport {
        shims_dir,
        hot_binary: binaries.hot,
        first_on_path,
        tools,
        rustc_wrapper,
        fix,
    }
}

/// Where `name`'s shim is on `path_var`, which of tally's binaries it runs, what comes before
/// it, and the real tool it hands over to. The first shim's directory goes to `shims_dir`.
fn tool_shim(
    name: &'static str,
    path_var: Option<&OsStr>,
    binaries: &Binaries,
    cwd: &Path,
    shims_dir: &mut Option<PathBuf>,
) -> ToolShim {
    // What a shim skips as itself when it looks for the real tool: the binary setup links the
    // shims to (with no `tally-shim` installed, `tally`).
    let skipped = binaries.hot_id.or(binaries.cli_id);
    let mut entry = ToolShim {
        tool: name,
        shim: None,
        runs: None,
        shadowed_by: None,
        real: None,
    };
    let mut runs_id = skipped;
    if let Some(path_var) = path_var {
        // Every copy in PATH order, until tally's: the first one that is not tally (if
        // any) is what runs instead of the shim.
        let copies = which::which_in_all(name, Some(path_var), cwd)
            .into_iter()
            .flatten();
        for candidate in copies {
            let Some(meta) = executable(&candidate) else {
                continue;
            };
            let id = FileId::of(&meta);
            if let Some(binary) = binaries.which(id) {
                if let Some(dir) = candidate.parent() {
                    shims_dir.get_or_insert_with(|| dir.to_path_buf());
                }
                entry.shim = Some(candidate);
                entry.runs = Some(binary.to_path_buf());
                runs_id = Some(id);
                break;
            }
            entry.shadowed_by.get_or_insert(candidate);
        }
    }
    entry.real = find_real(name, path_var, &ThisBinary::with_identity(runs_id))
        .ok()
        .map(|f| f.path);
    entry
}

/// How cargo's compiles are counted: `RUSTC_WRAPPER` already naming tally, or the cargo shim
/// (first on PATH, running `cargo_shim_runs`) arranging it, or why not.
fn wrapper_state(
    env: &Env,
    binaries: &Binaries,
    cargo_shim_runs: Option<PathBuf>,
    cwd: &Path,
) -> WrapperState {
    let home = tally_home::Home::locate(env);
    let mode = tally_home::effective_mode(env, home.as_ref());
    let cargo_env = tally_process::arrange::CargoEnv::from_process();
    let set_in_environment = cargo_env.rustc_wrapper.as_ref().filter(|w| {
        !w.is_empty()
            && (tally_process::arrange::is_tally(w, binaries.cli_id)
                || tally_process::arrange::is_tally(w, binaries.hot_id))
    });
    if let Some(wrapper) = set_in_environment {
        WrapperState::SetInEnvironment {
            wrapper: wrapper.clone(),
        }
    } else if mode == Mode::Off {
        WrapperState::NotCounted {
            why: "tally is off".into(),
        }
    } else if let Some(wrapper) = cargo_shim_runs {
        match tally_process::arrange::arrange(&wrapper, &cargo_env, cwd, &[]) {
            tally_process::arrange::Arrangement::AlreadyTally => WrapperState::SetInEnvironment {
                wrapper: wrapper.into_os_string(),
            },
            tally_process::arrange::Arrangement::Wrap { next } => {
                WrapperState::ArrangedByCargoShim { wrapper, next }
            }
        }
    } else {
        WrapperState::NotCounted {
            why: "the cargo shim is not first on PATH".into(),
        }
    }
}

/// tally's two binaries as this one sees them: itself (`tally`) and the `tally-shim` installed
/// beside it. A shim is tally's when it is a link to either.
struct Binaries {
    cli: Option<PathBuf>,
    cli_id: Option<FileId>,
    hot: Option<PathBuf>,
    hot_id: Option<FileId>,
}

impl Binaries {
    fn find() -> Binaries {
        let cli = wrapper_exe();
        let cli_id = cli
            .as_deref()
            .and_then(FileId::of_target)
            .or_else(tally_process::identity::self_identity);
        let hot = cli.as_deref().and_then(hot_binary_beside);
        let hot_id = hot.as_deref().and_then(FileId::of_target);
        Binaries {
            cli,
            cli_id,
            hot,
            hot_id,
        }
    }

    /// Which of the two binaries the file `id` is.
    fn which(&self, id: FileId) -> Option<&std::path::Path> {
        if Some(id) == self.hot_id {
            self.hot.as_deref()
        } else if Some(id) == self.cli_id {
            Some(
                self.cli
                    .as_deref()
                    .unwrap_or(std::path::Path::new(tally_process::identity::CLI_BINARY)),
            )
        } else {
            None
        }
    }
}
