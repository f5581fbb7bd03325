//! The `rustfmt` and `cargo-fmt` grammars. `cargo fmt` runs `cargo-fmt fmt …`; what follows
//! its `--` is handed to rustfmt, which counts it itself when it runs through its own shim.

use crate::spec::{
    FlagSpec, Stop, Token, closed, flag_label, flag_labels, open, open_s, scan_gnu, switch,
    switch_s,
};
use crate::{Names, TOOLCHAIN_CHANNELS, toolchain_channel};

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

fn push_tokens(tokens: &[Token<'_>], names: &mut Names) -> bool {
    let mut positional = false;
    for token in tokens {
        match token {
            Token::Flag { spec, value } => names.push_parts(&["flag:", &flag_label(spec, *value)]),
            Token::Unknown => names.push("flag:other"),
            Token::Positional => positional = true,
        }
    }
    positional
}

pub(crate) fn count_rustfmt(args: &[Option<&str>], names: &mut Names) {
    let mut rest = args;
    if let Some(Some(first)) = rest.first()
        && first.starts_with('+')
    {
        names.push_parts(&["toolchain:", toolchain_channel(first)]);
        rest = &rest[1..];
    }
    let mut tokens = Vec::new();
    let stop = scan_gnu(rest, RUSTFMT, false, &mut tokens);
    let files =
        push_tokens(&tokens, names) || matches!(stop, Stop::DoubleDash(i) if i + 1 < rest.len());
    names.push(if files { "input:files" } else { "input:stdin" });
}

pub(crate) fn count_cargo_fmt(args: &[Option<&str>], names: &mut Names) {
    let mut rest = args;
    // Run by cargo as `cargo-fmt fmt …`.
    if let Some(Some("fmt")) = rest.first() {
        rest = &rest[1..];
    }
    let mut tokens = Vec::new();
    let stop = scan_gnu(rest, CARGO_FMT, false, &mut tokens);
    push_tokens(&tokens, names);
    if let Stop::DoubleDash(_) = stop {
        names.push("flag:--");
    }
}

pub(crate) fn vocabulary_rustfmt(names: &mut Names) {
    for ch in TOOLCHAIN_CHANNELS {
        names.push_parts(&["toolchain:", ch]);
    }
    for spec in RUSTFMT {
        for label in flag_labels(spec) {
            names.push_parts(&["flag:", &label]);
        }
    }
    names.push("flag:other");
    names.push("input:files");
    names.push("input:stdin");
}

pub(crate) fn vocabulary_cargo_fmt(names: &mut Names) {
    for spec in CARGO_FMT {
        for label in flag_labels(spec) {
            names.push_parts(&["flag:", &label]);
        }
    }
    names.push("flag:other");
    names.push("flag:--");
}
