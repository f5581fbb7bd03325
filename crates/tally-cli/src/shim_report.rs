//! What `tally status` says about the shims: are they first on PATH, what real tool does each
//! find, and are compiles under cargo counted (the `RUSTC_WRAPPER` arrangement). Pure reads.

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
    /// Where the first `tool` on PATH is, if it is tally's shim.
    pub shim: Option<PathBuf>,
    /// Whether a `tool` that is not tally comes before the shim on PATH (the shim is bypassed).
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
    /// The directory of the shims, if any tool's first PATH entry is tally.
    pub shims_dir: Option<PathBuf>,
    /// Whether every tool's first match on PATH is tally's shim.
    pub first_on_path: bool,
    pub tools: Vec<ToolShim>,
    pub rustc_wrapper: WrapperState,
}

/// Builds the report. `env` decides the mode; `PATH`, `RUSTC_WRAPPER` and the cargo config
/// files are read from the process, as cargo would.
pub fn shim_report(env: &Env) -> ShimReport {
    let tally = tally_exe();
    let tally_id = tally
        .as_deref()
        .and_then(FileId::of_target)
        .or_else(tally_process::identity::self_identity);
    let path_var = tally_home::env::var_os("PATH");
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
            for dir in std::env::split_paths(path_var) {
                let candidate = dir.join(name);
                let Some(meta) = executable(&candidate) else {
                    continue;
                };
                if Some(FileId::of(&meta)) == tally_id {
                    entry.shim = Some(candidate);
                    shims_dir.get_or_insert(dir);
                } else {
                    entry.shadowed_by = Some(candidate);
                }
                break;
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
    let first_on_path = tools.iter().all(|t| t.shim.is_some());
    let cargo_first = tools.iter().any(|t| t.tool == "cargo" && t.shim.is_some());
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
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
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
    ShimReport {
        shims_dir,
        first_on_path,
        tools,
        rustc_wrapper,
    }
}
