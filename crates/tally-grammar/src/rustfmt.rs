//! The `rustfmt` and `cargo-fmt` grammars. `cargo fmt` runs `cargo-fmt fmt …`; what follows
//! its `--` is handed to rustfmt, which counts it itself when it runs through its own shim.

use crate::spec::{
    Dialect, FlagSpec, Stop, closed, open, open_s, push_flag_vocabulary, push_flags,
    push_toolchain_and_flag_vocabulary, scan, switch, switch_s,
};
use crate::{Names, count_toolchain};

const EDITIONS: &[&str] = &["2015", "2018", "2021", "2024"];

static RUSTFMT: &[FlagSpec] = &[
    switch("--check"),
    closed("--emit", &["files", "stdout", "checkstyle", "json"]),
    switch("--backup"),
    open("--config-path"),
    closed("--edition", EDITIONS),
    closed("--style-edition", EDITIONS),
    closed("--color", &["auto", "always", "never"]),
    closed("--print-config", &["default", "minimal", "current"]),
    switch_s("--files-with-diff", 'l'),
    switch_s("--verbose", 'v'),
    switch_s("--quiet", 'q'),
    switch_s("--version", 'V'),
    switch_s("--help", 'h'),
    open("--config"),
    switch("--unstable-features"),
    switch("--skip-children"),
    switch("--error-on-unformatted"),
    open("--file-lines"),
];

static CARGO_FMT: &[FlagSpec] = &[
    switch("--check"),
    switch("--all"),
    open_s("--package", 'p'),
    open("--manifest-path"),
    closed("--message-format", &["short", "json", "human"]),
    switch_s("--verbose", 'v'),
    switch_s("--quiet", 'q'),
    switch("--version"),
    switch_s("--help", 'h'),
];

pub(crate) fn count_rustfmt(args: &[Option<&str>], names: &mut Names) {
    let rest = count_toolchain(args, names);
    let mut tokens = Vec::new();
    let stop = scan(Dialect::Gnu, rest, RUSTFMT, false, &mut tokens);
    let files =
        push_flags(&tokens, names) || matches!(stop, Stop::DoubleDash(i) if i + 1 < rest.len());
    names.push(if files { "input:files" } else { "input:stdin" });
}

pub(crate) fn count_cargo_fmt(args: &[Option<&str>], names: &mut Names) {
    let mut rest = args;
    // Run by cargo as `cargo-fmt fmt …`.
    if let Some(Some("fmt")) = rest.first() {
        rest = &rest[1..];
    }
    let mut tokens = Vec::new();
    let stop = scan(Dialect::Gnu, rest, CARGO_FMT, false, &mut tokens);
    push_flags(&tokens, names);
    if let Stop::DoubleDash(_) = stop {
        names.push("flag:--");
    }
}

pub(crate) fn vocabulary_rustfmt(names: &mut Names) {
    push_toolchain_and_flag_vocabulary(RUSTFMT, names);
    names.push("input:files");
    names.push("input:stdin");
}

pub(crate) fn vocabulary_cargo_fmt(names: &mut Names) {
    push_flag_vocabulary(CARGO_FMT, names);
    names.push("flag:--");
}
