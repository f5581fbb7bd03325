//! The process plumbing the PATH shim (`tally-shims`) and the `RUSTC_WRAPPER` (`tally-wrapper`)
//! share, so that neither reaches into the other and the CLI can describe both:
//!
//! - the process's environment, copied once, and argv/envp blocks are
//!   `tally_home::env::{ProcessEnv, CStringBlock}` (where tally's own variables are read from
//!   them), used here and by both callers from there;
//! - [`exec`]: the tool's environment and the bare `execvpe` hand-over;
//! - [`identity`]: this binary's identity (`AT_EXECFN`; file identities are `tally_sys::FileId`),
//!   tool names from paths;
//! - [`lookup`]: the real tool on `PATH`, never tally itself, and tally's binaries beside this one;
//! - [`rustup`]: which toolchain binary a rustup proxy would run;
//! - [`version`]: the real tool's version, cached by (path, size, mtime);
//! - [`arrange`]: how the cargo shim sets `RUSTC_WRAPPER` while keeping the user's own wrapper;
//! - [`notice`]: the first-run notice.
//!
//! Promises: nothing here panics on bad input or blocks on the data directory; every failure is
//! an error value the hot path can swallow, so the real tool still runs.

#![forbid(unsafe_code)]

pub mod arrange;
pub mod exec;
pub mod identity;
pub mod lookup;
pub mod notice;
pub mod rustup;
pub mod version;

pub use exec::{EnvChanges, environment_with, exec, silence_panics};
