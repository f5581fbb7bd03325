//! The `cargo` grammar: a leading `+toolchain`, global flags, the subcommand (aliases folded
//! into their full names), and the subcommand's flags up to `--` (what follows goes to the
//! program or test harness being run, and is not cargo's).

use crate::spec::{
    Dialect, FlagSpec, Stop, Value, closed, open, open_s, optional, push_flags,
    push_sub_flag_vocabulary, push_sub_flags, push_toolchain_and_flag_vocabulary, scan, switch,
    switch_s,
};
use crate::{Names, count_toolchain};

const COLORS: &[&str] = &["auto", "always", "never"];
const EDITIONS: &[&str] = &["2015", "2018", "2021", "2024"];
const MESSAGE_FORMATS: &[&str] = &[
    "human",
    "short",
    "json",
    "json-diagnostic-short",
    "json-diagnostic-rendered-ansi",
    "json-render-diagnostics",
];
/// Profiles cargo defines itself; custom profile names are the user's own words.
const PROFILES: &[&str] = &["dev", "release", "test", "bench", "check", "doc"];

/// Flags cargo accepts everywhere (before or after the subcommand).
static GLOBAL: &[FlagSpec] = &[
    switch_s("--verbose", 'v'),
    switch_s("--quiet", 'q'),
    closed("--color", COLORS),
    switch("--frozen"),
    switch("--locked"),
    switch("--offline"),
    open("--config"),
    open_s("-Z", 'Z'),
    open_s("-C", 'C'),
    switch_s("--help", 'h'),
    switch("--list"),
    switch_s("--version", 'V'),
    open("--explain"),
];

/// Package and target selection, features, compilation options (build, check, test, …).
static BUILD: &[FlagSpec] = &[
    FlagSpec {
        name: "--package",
        short: Some('p'),
        value: Value::Open,
    },
    switch("--workspace"),
    switch("--all"),
    open("--exclude"),
    switch("--lib"),
    open("--bin"),
    switch("--bins"),
    open("--example"),
    switch("--examples"),
    open("--test"),
    switch("--tests"),
    open("--bench"),
    switch("--benches"),
    switch("--all-targets"),
    FlagSpec {
        name: "--features",
        short: Some('F'),
        value: Value::Open,
    },
    switch("--all-features"),
    switch("--no-default-features"),
    switch_s("--release", 'r'),
    closed("--profile", PROFILES),
    open("--target"),
    open("--target-dir"),
    open("--artifact-dir"),
    FlagSpec {
        name: "--jobs",
        short: Some('j'),
        value: Value::Open,
    },
    switch("--keep-going"),
    closed("--message-format", MESSAGE_FORMATS),
    open("--manifest-path"),
    open("--lockfile-path"),
    switch("--ignore-rust-version"),
    optional("--timings", &["html", "json"]),
    switch("--future-incompat-report"),
    switch("--unit-graph"),
    switch("--build-plan"),
];

static TEST: &[FlagSpec] = &[
    switch("--no-run"),
    switch("--no-fail-fast"),
    switch("--doc"),
];
static DOC: &[FlagSpec] = &[
    switch("--open"),
    switch("--no-deps"),
    switch("--document-private-items"),
];
static FIX: &[FlagSpec] = &[
    switch("--edition"),
    switch("--edition-idioms"),
    switch("--allow-dirty"),
    switch("--allow-staged"),
    switch("--allow-no-vcs"),
    switch("--broken-code"),
];
static CLIPPY: &[FlagSpec] = &[
    switch("--fix"),
    switch("--no-deps"),
    switch("--allow-dirty"),
    switch("--allow-staged"),
];
static NEW: &[FlagSpec] = &[
    switch("--bin"),
    switch("--lib"),
    closed("--vcs", &["git", "hg", "pijul", "fossil", "none"]),
    closed("--edition", EDITIONS),
    open("--name"),
    open("--registry"),
];
static ADD: &[FlagSpec] = &[
    switch("--dev"),
    switch("--build"),
    switch("--optional"),
    switch("--no-optional"),
    switch("--no-default-features"),
    switch("--default-features"),
    FlagSpec {
        name: "--features",
        short: Some('F'),
        value: Value::Open,
    },
    FlagSpec {
        name: "--package",
        short: Some('p'),
        value: Value::Open,
    },
    open("--path"),
    open("--git"),
    open("--branch"),
    open("--tag"),
    open("--rev"),
    open("--rename"),
    open("--registry"),
    open("--target"),
    switch_s("--dry-run", 'n'),
    open("--manifest-path"),
];
static INSTALL: &[FlagSpec] = &[
    open("--version"),
    open("--git"),
    open("--branch"),
    open("--tag"),
    open("--rev"),
    open("--path"),
    open("--root"),
    open("--index"),
    open("--registry"),
    switch_s("--force", 'f'),
    switch("--no-track"),
    switch("--debug"),
    switch("--list"),
];
static PUBLISH: &[FlagSpec] = &[
    switch_s("--dry-run", 'n'),
    switch("--no-verify"),
    switch("--allow-dirty"),
    open("--registry"),
    open("--index"),
    // The token is a secret: only the flag's name is ever counted.
    open("--token"),
    switch("--list"),
];
static UPDATE: &[FlagSpec] = &[
    switch("--recursive"),
    open("--precise"),
    switch("--breaking"),
    switch_s("--dry-run", 'n'),
    switch("--aggressive"),
];
static TREE: &[FlagSpec] = &[
    FlagSpec {
        name: "--edges",
        short: Some('e'),
        value: Value::Open,
    },
    FlagSpec {
        name: "--invert",
        short: Some('i'),
        value: Value::Open,
    },
    open("--depth"),
    closed("--prefix", &["depth", "indent", "none"]),
    switch("--no-dedupe"),
    switch_s("--duplicates", 'd'),
    open("--format"),
    open("--charset"),
];
static CLEAN: &[FlagSpec] = &[switch("--doc"), switch_s("--dry-run", 'n')];
static METADATA: &[FlagSpec] = &[
    closed("--format-version", &["1"]),
    switch("--no-deps"),
    open("--filter-platform"),
];
static FMT: &[FlagSpec] = &[
    switch("--check"),
    switch("--all"),
    switch("--message-format"),
];
static PACKAGE: &[FlagSpec] = &[
    switch("--list"),
    switch("--no-verify"),
    switch("--allow-dirty"),
];

/// cargo's own subcommands, with the extra flag tables each accepts besides [`GLOBAL`].
static SUBCOMMANDS: &[(&str, &[&[FlagSpec]])] = &[
    ("build", &[BUILD]),
    ("check", &[BUILD]),
    ("test", &[BUILD, TEST]),
    ("bench", &[BUILD, TEST]),
    ("run", &[BUILD]),
    ("doc", &[BUILD, DOC]),
    ("rustc", &[BUILD]),
    ("rustdoc", &[BUILD, DOC]),
    ("fix", &[BUILD, FIX]),
    ("clippy", &[BUILD, CLIPPY]),
    ("install", &[BUILD, INSTALL]),
    ("uninstall", &[BUILD]),
    ("package", &[BUILD, PACKAGE]),
    ("publish", &[BUILD, PUBLISH]),
    ("new", &[NEW]),
    ("init", &[NEW]),
    ("add", &[ADD]),
    ("remove", &[ADD]),
    ("update", &[BUILD, UPDATE]),
    ("tree", &[BUILD, TREE]),
    ("clean", &[BUILD, CLEAN]),
    ("metadata", &[BUILD, METADATA]),
    ("fmt", &[BUILD, FMT]),
    ("fetch", &[BUILD]),
    ("generate-lockfile", &[BUILD]),
    ("vendor", &[BUILD]),
    ("search", &[]),
    ("info", &[]),
    ("login", &[]),
    ("logout", &[]),
    ("owner", &[]),
    ("yank", &[]),
    ("version", &[]),
    ("help", &[]),
    ("pkgid", &[BUILD]),
    ("locate-project", &[BUILD]),
    ("read-manifest", &[BUILD]),
    ("verify-project", &[BUILD]),
    ("report", &[]),
    ("config", &[]),
];

/// Well-known third-party subcommands: counted by name; their flags are not cargo's.
static THIRD_PARTY: &[&str] = &[
    "nextest",
    "llvm-cov",
    "audit",
    "deny",
    "expand",
    "watch",
    "udeps",
    "miri",
    "binstall",
    "insta",
    "outdated",
    "edit",
    "machete",
    "hack",
    "make",
    "tarpaulin",
    "criterion",
    "about",
    "bloat",
    "asm",
    "generate",
    "semver-checks",
    "release",
    "dist",
    "zigbuild",
    "xwin",
    "ndk",
    "leptos",
    "shuttle",
    "component",
    "fuzz",
    "careful",
    "mutants",
    "sort",
    "upgrade",
    "set-version",
];

fn canonical_subcommand(word: &str) -> Option<&'static str> {
    let word = match word {
        "b" => "build",
        "c" => "check",
        "d" => "doc",
        "r" => "run",
        "t" => "test",
        "rm" => "remove",
        w => w,
    };
    SUBCOMMANDS
        .iter()
        .map(|(n, _)| *n)
        .chain(THIRD_PARTY.iter().copied())
        .find(|n| *n == word)
}

fn tables_of(sub: &str) -> Option<&'static [&'static [FlagSpec]]> {
    SUBCOMMANDS.iter().find(|(n, _)| *n == sub).map(|(_, t)| *t)
}

pub(crate) fn count(args: &[Option<&str>], names: &mut Names) {
    let rest = count_toolchain(args, names);
    let mut tokens = Vec::new();
    let stop = scan(Dialect::Gnu, rest, GLOBAL, true, &mut tokens);
    push_flags(&tokens, names);
    let Stop::Positional(at) = stop else { return };
    let sub = rest[at].and_then(canonical_subcommand);
    let Some(sub) = sub else {
        names.push("subcommand:other");
        return;
    };
    names.push_parts(&["subcommand:", sub]);
    let Some(tables) = tables_of(sub) else { return };
    count_sub_flags(sub, tables, &rest[at + 1..], names);
}

/// Scans a subcommand's arguments against its tables plus [`GLOBAL`], merged so that every
/// flag's value is consumed consistently.
fn count_sub_flags(
    sub: &str,
    tables: &[&'static [FlagSpec]],
    args: &[Option<&str>],
    names: &mut Names,
) {
    let merged = merged_table(sub, tables);
    let mut tokens = Vec::new();
    let stop = scan(Dialect::Gnu, args, merged, false, &mut tokens);
    push_sub_flags(sub, &tokens, names);
    if let Stop::DoubleDash(_) = stop {
        names.push_parts(&[sub, "/flag:--"]);
    }
}

/// The subcommand's tables and [`GLOBAL`] as one slice, built once per subcommand and kept
/// for the life of the process (it runs once per process on the hot path anyway).
fn merged_table(sub: &str, tables: &[&'static [FlagSpec]]) -> &'static [FlagSpec] {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<BTreeMap<String, &'static [FlagSpec]>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = cache.get(sub) {
        return t;
    }
    let mut merged: Vec<FlagSpec> = Vec::new();
    for spec in tables.iter().flat_map(|t| t.iter()).chain(GLOBAL.iter()) {
        // First table wins: a subcommand's own meaning of a flag shadows the global one.
        if !merged
            .iter()
            .any(|m| m.name == spec.name || (m.short.is_some() && m.short == spec.short))
        {
            merged.push(*spec);
        }
    }
    let leaked: &'static [FlagSpec] = Box::leak(merged.into_boxed_slice());
    cache.insert(sub.to_string(), leaked);
    leaked
}

pub(crate) fn vocabulary(names: &mut Names) {
    push_toolchain_and_flag_vocabulary(GLOBAL, names);
    names.push("subcommand:other");
    for (sub, tables) in SUBCOMMANDS {
        names.push_parts(&["subcommand:", sub]);
        push_sub_flag_vocabulary(sub, merged_table(sub, tables), names);
        names.push_parts(&[sub, "/flag:--"]);
    }
    for sub in THIRD_PARTY {
        names.push_parts(&["subcommand:", sub]);
    }
}
