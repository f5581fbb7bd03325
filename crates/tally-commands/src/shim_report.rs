//! What `tally status` and `tally setup` say about the shims: are they first on PATH (and if
//! not, what comes before them and the one line that fixes it), what real tool does each find,
//! and are compiles under cargo counted (the `RUSTC_WRAPPER` arrangement). Pure reads.
//!
//! Every copy of a tool on PATH is looked at (the `which` crate), not only the first, so that a
//! shims directory that comes after rustup's `~/.cargo/bin` is still found and named.

use std::ffi::OsString;
use std::path::PathBuf;

use tally_grammar::Tool;
use tally_home::{Env, Mode};

use tally_process::identity::{FileId, ThisBinary, tally_exe};
use tally_process::lookup::{executable, find_real};

/// One tool's shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolShim {
    /// The tool name (`cargo`).
    pub tool: &'static str,
    /// Where tally's shim for `tool` is on PATH, if it is anywhere on it.
    pub shim: Option<PathBuf>,
    /// The first `tool` on PATH that is not tally, if it comes before the shim (or there is no
    /// shim): what runs instead, uncounted.
    pub shadowed_by: Option<PathBuf>,
    /// The real tool the shim hands over to.
    pub real: Option<PathBuf>,
}

/// How cargo's compiles are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WrapperState {
    /// The cargo shim is first on PATH and will set `RUSTC_WRAPPER` to tally (keeping the
    /// user's wrapper, if any, to run after it).
    ArrangedByCargoShim { next: Option<OsString> },
    /// `RUSTC_WRAPPER` already names tally in this environment.
    SetInEnvironment,
    /// Compiles under cargo are not counted (no cargo shim first on PATH, mode off, or no
    /// `tally` binary to point at).
    NotCounted { why: String },
}

/// The shims as seen from this environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimReport {
    /// The directory of the shims, if tally is on PATH under any tool's name.
    pub shims_dir: Option<PathBuf>,
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
    let tally = tally_exe();
    let tally_id = tally
        .as_deref()
        .and_then(FileId::of_target)
        .or_else(tally_process::identity::self_identity);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut tools = Vec::new();
    let mut shims_dir = None;
    for tool in Tool::ALL {
        let name = tool.name();
        let mut entry = ToolShim {
            tool: name,
            shim: None,
            shadowed_by: None,
            real: None,
        };
        if let Some(path_var) = &path_var {
            // Every copy in PATH order, until tally's: the first one that is not tally (if
            // any) is what runs instead of the shim.
            let copies = which::which_in_all(name, Some(path_var), &cwd)
                .into_iter()
                .flatten();
            for candidate in copies {
                let Some(meta) = executable(&candidate) else {
                    continue;
                };
                if Some(FileId::of(&meta)) == tally_id {
                    if let Some(dir) = candidate.parent() {
                        shims_dir.get_or_insert_with(|| dir.to_path_buf());
                    }
                    entry.shim = Some(candidate);
                    break;
                }
                entry.shadowed_by.get_or_insert(candidate);
            }
        }
        entry.real = find_real(
            name,
            path_var.as_deref(),
            &ThisBinary::with_identity(tally_id),
        )
        .ok()
        .map(|f| f.path);
        tools.push(entry);
    }
    let first_on_path = tools
        .iter()
        .all(|t| t.shim.is_some() && t.shadowed_by.is_none());
    let cargo_first = tools
        .iter()
        .any(|t| t.tool == "cargo" && t.shim.is_some() && t.shadowed_by.is_none());
    let home = tally_home::Home::locate(env);
    let mode = tally_home::effective_mode(env, home.as_ref());
    let cargo_env = tally_process::arrange::CargoEnv::from_process();
    let rustc_wrapper = if cargo_env
        .rustc_wrapper
        .as_deref()
        .is_some_and(|w| !w.is_empty() && tally_process::arrange::is_tally(w, tally_id))
    {
        WrapperState::SetInEnvironment
    } else if mode == Mode::Off {
        WrapperState::NotCounted {
            why: "tally is off".into(),
        }
    } else if !cargo_first {
        WrapperState::NotCounted {
            why: "the cargo shim is not first on PATH".into(),
        }
    } else if let Some(tally) = &tally {
        match tally_process::arrange::arrange(tally, &cargo_env, &cwd, &[]) {
            tally_process::arrange::Arrangement::AlreadyTally => WrapperState::SetInEnvironment,
            tally_process::arrange::Arrangement::Wrap { next } => {
                WrapperState::ArrangedByCargoShim { next }
            }
        }
    } else {
        WrapperState::NotCounted {
            why: "no binary named `tally` beside the shims to use as RUSTC_WRAPPER".into(),
        }
    };
    let fix = if first_on_path {
        None
    } else {
        shims_dir
            .clone()
            .or_else(|| crate::setup::installed_shims_dir(env, tally_id))
            .and_then(|dir| crate::setup::path_line(&dir, env).ok())
    };
    ShimReport {
        shims_dir,
        first_on_path,
        tools,
        rustc_wrapper,
        fix,
    }
}
