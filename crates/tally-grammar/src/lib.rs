//! Tool grammars as data: turns one invocation of `cargo`, `rustc`, `rustfmt`, `cargo-fmt`, `go`
//! or `gofmt` into counter names drawn from a fixed vocabulary.
//!
//! What this crate promises:
//! - **Names only, never values.** A counter name is built from the tool's name, a subcommand
//!   from a fixed list, a flag from the tool's flag table, and, for a handful of flags whose
//!   values come from a closed set (Rust editions, `-C opt-level`, `--crate-type`, `--emit`
//!   kinds, Go build modes…), a value from that set. Anything else (an unknown subcommand or
//!   flag, a value outside the set) becomes `other`. Paths, crate names, target names and any
//!   other argument text can never reach a name.
//! - **Closed vocabulary.** [`vocabulary`] lists every name [`counter_names`] can return for a
//!   tool; tests check every output against it.
//! - **Pure.** The only I/O is rustc's `@argfile`, read through the caller-supplied reader in
//!   [`Context`], so the hot path decides how (bounded) and tests decide what.
//!
//! Name shapes (`<tool>` is the program name):
//! - `<tool>/invocations`: every run.
//! - `cargo/subcommand:build`, `cargo/build/flag:--release`, `cargo/flag:--verbose` (before the
//!   subcommand), `cargo/toolchain:nightly` (a leading `+toolchain`, by channel).
//! - `rustc/compiles`, `rustc/caller:cargo|build-script|direct`, `rustc/edition:2021`,
//!   `rustc/crate-type:lib`, `rustc/emit:metadata`, `rustc/codegen:opt-level=3`,
//!   `rustc/unstable:-Zshare-generics`, `rustc/flag:--test`; cargo's probes count as
//!   `rustc/probe:version` / `rustc/probe:print` (+ `rustc/print:file-names`), not compiles.
//! - `go/subcommand:test`, `go/test/flag:-race`, `go/build/flag:-buildmode=pie`,
//!   `go/mod/subcommand:tidy`, `gofmt/flag:-s`.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::Path;

mod cargo;
pub mod compiles;
mod go;
pub mod outcome;
mod rustc;
mod rustfmt;
mod spec;

pub use rustc::{MAX_ARGFILE_BYTES, caller_from_env};

/// A tool tally can stand in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    Cargo,
    Rustc,
    Rustfmt,
    CargoFmt,
    Go,
    Gofmt,
}

impl Tool {
    /// Every tool, in the order shims are installed.
    pub const ALL: [Tool; 6] = [
        Tool::Cargo,
        Tool::Rustc,
        Tool::Rustfmt,
        Tool::CargoFmt,
        Tool::Go,
        Tool::Gofmt,
    ];

    /// The tool whose executable is called `name` (a file stem: `.exe` already stripped).
    pub fn from_name(name: &str) -> Option<Tool> {
        Some(match name {
            "cargo" => Tool::Cargo,
            "rustc" => Tool::Rustc,
            "rustfmt" => Tool::Rustfmt,
            "cargo-fmt" => Tool::CargoFmt,
            "go" => Tool::Go,
            "gofmt" => Tool::Gofmt,
            _ => return None,
        })
    }

    /// The executable name, which is also the program name in counter files and names.
    pub fn name(self) -> &'static str {
        TOOL_NAMES[self as usize]
    }
}

/// Every tool's name, in the order of [`Tool`]'s variants. A named table rather than a
/// `match`: the compiler turns such a match into anonymous lookup tables, one wherever it is
/// inlined, which the shim's link order (shims/hot-path.order) cannot name, so they cost the
/// shim page faults of their own; this one is placed with the shim's other data.
static TOOL_NAMES: [&str; 6] = ["cargo", "rustc", "rustfmt", "cargo-fmt", "go", "gofmt"];

/// Who started a rustc run. See [`caller_from_env`] for the signals used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RustcCaller {
    /// Cargo compiling a crate (or probing rustc).
    Cargo,
    /// A build script (autocfg, rustc_version…) running rustc itself.
    BuildScript,
    /// Someone typing `rustc` (or any other program).
    Direct,
}

impl RustcCaller {
    pub fn label(self) -> &'static str {
        match self {
            RustcCaller::Cargo => "cargo",
            RustcCaller::BuildScript => "build-script",
            RustcCaller::Direct => "direct",
        }
    }
}

/// Reads an `@argfile` for counting; `None` when it is missing or unreadable.
pub type ArgfileReader<'a> = &'a dyn Fn(&Path) -> Option<Vec<u8>>;

/// What a grammar needs to know beyond the arguments.
pub struct Context<'a> {
    /// Who ran rustc (rustc only).
    pub rustc_caller: RustcCaller,
    /// The driver is `clippy-driver` rather than `rustc` (rustc grammar, plus `rustc/driver:clippy`).
    pub clippy_driver: bool,
    /// How to read rustc `@argfile`s.
    pub read_argfile: ArgfileReader<'a>,
}

impl Default for Context<'_> {
    fn default() -> Self {
        Context {
            rustc_caller: RustcCaller::Direct,
            clippy_driver: false,
            read_argfile: &read_argfile_bounded,
        }
    }
}

/// Reads an argfile from disk, refusing anything over [`MAX_ARGFILE_BYTES`] (counted as unreadable).
pub fn read_argfile_bounded(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_ARGFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    (bytes.len() as u64 <= MAX_ARGFILE_BYTES).then_some(bytes)
}

/// The counter names for one invocation of `tool` with `args` (argv without `argv[0]`), each
/// name once, in first-seen order.
pub fn counter_names(tool: Tool, args: &[OsString], ctx: &Context<'_>) -> Vec<String> {
    let strs: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    let mut names = Names::new(tool);
    names.push("invocations");
    match tool {
        Tool::Cargo => cargo::count(&strs, &mut names),
        Tool::Rustc => {
            rustc::count(&strs, ctx, &mut names);
        }
        Tool::Rustfmt => rustfmt::count_rustfmt(&strs, &mut names),
        Tool::CargoFmt => rustfmt::count_cargo_fmt(&strs, &mut names),
        Tool::Go => go::count_go(&strs, &mut names),
        Tool::Gofmt => go::count_gofmt(&strs, &mut names),
    }
    names.into_vec()
}

/// [`counter_names`] for rustc, with what the run compiles: `None` for a probe (`-vV`,
/// `--print`) or a run without input, which the wrapper does not wait for.
pub fn rustc_counter_names(
    args: &[OsString],
    ctx: &Context<'_>,
) -> (Vec<String>, Option<outcome::CompileKind>) {
    let strs: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    let mut names = Names::new(Tool::Rustc);
    names.push("invocations");
    let kind = rustc::count(&strs, ctx, &mut names);
    (names.into_vec(), kind)
}

/// Every counter name [`counter_names`] can return for `tool`, sorted.
pub fn vocabulary(tool: Tool) -> Vec<String> {
    let mut names = Names::new(tool);
    names.push("invocations");
    match tool {
        Tool::Cargo => cargo::vocabulary(&mut names),
        Tool::Rustc => rustc::vocabulary(&mut names),
        Tool::Rustfmt => rustfmt::vocabulary_rustfmt(&mut names),
        Tool::CargoFmt => rustfmt::vocabulary_cargo_fmt(&mut names),
        Tool::Go => go::vocabulary_go(&mut names),
        Tool::Gofmt => go::vocabulary_gofmt(&mut names),
    }
    let mut all = names.into_vec();
    all.sort();
    all
}

/// Collects names under the tool's prefix, each once.
pub(crate) struct Names {
    prefix: &'static str,
    names: Vec<String>,
}

impl Names {
    fn new(tool: Tool) -> Self {
        Names {
            prefix: tool.name(),
            names: Vec::new(),
        }
    }

    /// Adds `<tool>/<suffix>` unless already there.
    pub(crate) fn push(&mut self, suffix: &str) {
        self.push_parts(&[suffix]);
    }

    /// Adds `<tool>/` followed by `parts` joined, unless already there. Names are joined by
    /// hand rather than with `format!`: the shim runs this on every invocation, and the
    /// formatting machinery is a few kilobytes of code that would run cold each time
    /// (bench/README.md, "Shims").
    pub(crate) fn push_parts(&mut self, parts: &[&str]) {
        let len = self.prefix.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut name = String::with_capacity(len);
        name.push_str(self.prefix);
        name.push('/');
        for part in parts {
            name.push_str(part);
        }
        if !self.names.contains(&name) {
            self.names.push(name);
        }
    }

    fn into_vec(self) -> Vec<String> {
        self.names
    }
}

/// The channel of a `+toolchain` argument: `stable`, `beta`, `nightly`, `version` (`+1.70.0`),
/// or `other` (custom toolchain names are the user's own words).
pub(crate) fn toolchain_channel(arg: &str) -> &'static str {
    let name = arg.trim_start_matches('+');
    let channel = name.split('-').next().unwrap_or("");
    match channel {
        "stable" => "stable",
        "beta" => "beta",
        "nightly" => "nightly",
        c if !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit() || ch == '.') => "version",
        _ => "other",
    }
}

/// Counts a leading `+toolchain` argument, if there is one, and returns the arguments after it.
pub(crate) fn count_toolchain<'a, 'b>(
    args: &'b [Option<&'a str>],
    names: &mut Names,
) -> &'b [Option<&'a str>] {
    match args.first() {
        Some(Some(first)) if first.starts_with('+') => {
            names.push_parts(&["toolchain:", toolchain_channel(first)]);
            &args[1..]
        }
        _ => args,
    }
}

pub(crate) const TOOLCHAIN_CHANNELS: &[&str] = &["stable", "beta", "nightly", "version", "other"];

#[cfg(test)]
mod tests;
