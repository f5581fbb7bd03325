//! The `rustc` grammar (also used for `clippy-driver`).
//!
//! rustc's arguments are getopts-style: `-C opt-level=3` and `-Copt-level=3`, `--edition 2021`
//! and `--edition=2021`, `-vV`; `@file` expands to one argument per line (no nesting). Cargo's
//! probes (`-vV`, `--print=… -`) are counted as probes, never as compiles.

use crate::outcome::CompileKind;
use crate::{Context, Names, RustcCaller};
use std::path::Path;

/// Argfiles larger than this are counted as unreadable rather than read (cargo's are far
/// smaller: it only falls back to one when the command line is too long for the OS).
pub const MAX_ARGFILE_BYTES: u64 = 4 << 20;

const EDITIONS: &[&str] = &["2015", "2018", "2021", "2024", "future"];
const CRATE_TYPES: &[&str] = &[
    "bin",
    "lib",
    "rlib",
    "dylib",
    "cdylib",
    "staticlib",
    "proc-macro",
    "sdylib",
];
const EMIT_KINDS: &[&str] = &[
    "asm",
    "llvm-bc",
    "llvm-ir",
    "obj",
    "metadata",
    "link",
    "dep-info",
    "mir",
    "thin-link-bitcode",
];
const PRINT_KINDS: &[&str] = &[
    "all-target-specs-json",
    "backend-has-zstd",
    "calling-conventions",
    "cfg",
    "check-cfg",
    "code-models",
    "crate-name",
    "crate-root-lint-levels",
    "deployment-target",
    "file-names",
    "host-tuple",
    "link-args",
    "native-static-libs",
    "relocation-models",
    "split-debuginfo",
    "stack-protector-strategies",
    "supported-crate-types",
    "sysroot",
    "target-cpus",
    "target-features",
    "target-libdir",
    "target-list",
    "target-spec-json",
    "tls-models",
];
const ERROR_FORMATS: &[&str] = &["human", "json", "short"];
const JSON_KINDS: &[&str] = &[
    "artifacts",
    "future-incompat",
    "unused-externs",
    "unused-externs-silent",
    "diagnostic-short",
    "diagnostic-rendered-ansi",
    "diagnostic-unicode",
    "timings",
];
const COLORS: &[&str] = &["auto", "always", "never"];
const CAP_LINTS: &[&str] = &["allow", "warn", "deny", "forbid", "force-warn"];

const BOOL: &[&str] = &["yes", "no", "y", "n", "on", "off", "true", "false"];
/// `-C` options: the name, and the closed set of values worth recording (empty: name only,
/// because the value is a path, a number or a free-form list).
const CODEGEN: &[(&str, &[&str])] = &[
    ("opt-level", &["0", "1", "2", "3", "s", "z"]),
    (
        "debuginfo",
        &[
            "0",
            "1",
            "2",
            "none",
            "line-directives-only",
            "line-tables-only",
            "limited",
            "full",
        ],
    ),
    (
        "lto",
        &[
            "fat", "thin", "off", "yes", "no", "y", "n", "on", "true", "false",
        ],
    ),
    ("panic", &["unwind", "abort", "immediate-abort"]),
    ("strip", &["none", "debuginfo", "symbols"]),
    (
        "relocation-model",
        &[
            "static",
            "pic",
            "pie",
            "dynamic-no-pic",
            "ropi",
            "rwpi",
            "ropi-rwpi",
            "default",
        ],
    ),
    (
        "code-model",
        &["tiny", "small", "kernel", "medium", "large"],
    ),
    ("split-debuginfo", &["off", "packed", "unpacked"]),
    ("symbol-mangling-version", &["legacy", "v0", "hashed"]),
    ("target-cpu", &["native", "generic"]),
    ("embed-bitcode", BOOL),
    ("overflow-checks", BOOL),
    ("debug-assertions", BOOL),
    ("prefer-dynamic", BOOL),
    ("force-frame-pointers", BOOL),
    ("force-unwind-tables", BOOL),
    ("rpath", BOOL),
    ("no-redzone", BOOL),
    ("no-vectorize-loops", BOOL),
    ("no-vectorize-slp", BOOL),
    ("no-prepopulate-passes", BOOL),
    ("save-temps", BOOL),
    ("soft-float", BOOL),
    ("link-dead-code", BOOL),
    ("linker-plugin-lto", BOOL),
    ("instrument-coverage", BOOL),
    ("default-linker-libraries", BOOL),
    ("link-self-contained", BOOL),
    ("jump-tables", BOOL),
    ("dwarf-version", &["2", "3", "4", "5"]),
    ("relro-level", &["full", "partial", "off"]),
    ("control-flow-guard", BOOL),
    ("collapse-macro-debuginfo", BOOL),
    ("codegen-units", &[]),
    ("incremental", &[]),
    ("linker", &[]),
    ("linker-flavor", &[]),
    ("link-arg", &[]),
    ("link-args", &[]),
    ("llvm-args", &[]),
    ("metadata", &[]),
    ("extra-filename", &[]),
    ("target-feature", &[]),
    ("profile-generate", &[]),
    ("profile-use", &[]),
    ("passes", &[]),
    ("remark", &[]),
    ("ar", &[]),
    ("dlltool", &[]),
    ("inline-threshold", &[]),
];
/// `-Z` options worth telling apart. Values are never recorded: unstable options change too
/// often for a closed value set to stay true.
const UNSTABLE: &[&str] = &[
    "allow-features",
    "annotate-moves",
    "assume-incomplete-release",
    "binary-dep-depinfo",
    "branch-protection",
    "build-sdylib-interface",
    "cf-protection",
    "checksum-hash-algorithm",
    "codegen-backend",
    "coverage-options",
    "crate-attr",
    "cross-crate-inline-threshold",
    "debug-info-for-profiling",
    "debuginfo-compression",
    "direct-access-external-data",
    "dual-proc-macros",
    "dump-mir",
    "dwarf-version",
    "dylib-lto",
    "embed-source",
    "emit-stack-sizes",
    "external-clangrt",
    "extra-const-ub-checks",
    "fewer-names",
    "fixed-x18",
    "fmt-debug",
    "function-return",
    "function-sections",
    "has-thread-local",
    "hint-mostly-unused",
    "human-readable-cgu-names",
    "incremental-verify-ich",
    "indirect-branch-cs-prefix",
    "inline-mir",
    "instrument-mcount",
    "instrument-xray",
    "link-native-libraries",
    "linker-features",
    "lint-mir",
    "llvm-plugins",
    "llvm-time-trace",
    "location-detail",
    "ls",
    "macro-backtrace",
    "maximal-hir-to-mir-coverage",
    "merge-functions",
    "meta-stats",
    "min-function-alignment",
    "mir-enable-passes",
    "mir-opt-level",
    "next-solver",
    "no-codegen",
    "no-link",
    "no-parallel-backend",
    "no-trait-vptr",
    "on-broken-pipe",
    "oom",
    "packed-bundled-libs",
    "panic-abort-tests",
    "panic-in-drop",
    "patchable-function-entry",
    "plt",
    "polonius",
    "pre-link-args",
    "print-mono-items",
    "print-type-sizes",
    "query-dep-graph",
    "randomize-layout",
    "reg-struct-return",
    "regparm",
    "relax-elf-relocations",
    "remap-cwd-prefix",
    "retpoline",
    "sanitizer",
    "self-profile",
    "self-profile-events",
    "share-generics",
    "shell-argfiles",
    "small-data-threshold",
    "split-dwarf-inlining",
    "split-dwarf-kind",
    "stack-protector",
    "staticlib-allow-rdylib-deps",
    "strict-init-checks",
    "temps-dir",
    "terminal-urls",
    "threads",
    "time-llvm-passes",
    "time-passes",
    "tls-model",
    "track-diagnostics",
    "treat-err-as-bug",
    "trim-diagnostic-paths",
    "ui-testing",
    "unpretty",
    "unstable-options",
    "validate-mir",
    "verbose-internals",
    "virtual-function-elimination",
    "wasm-c-abi",
];

/// What a long option or a value-taking short option does with its value.
#[derive(Clone, Copy)]
enum Kind {
    Switch,
    Open,
    Edition,
    CrateType,
    Emit,
    Print,
    Codegen,
    Unstable,
    ErrorFormat,
    Json,
    Color,
    CapLints,
}

const LONG: &[(&str, Kind)] = &[
    ("--edition", Kind::Edition),
    ("--crate-type", Kind::CrateType),
    ("--emit", Kind::Emit),
    ("--print", Kind::Print),
    ("--codegen", Kind::Codegen),
    ("--error-format", Kind::ErrorFormat),
    ("--json", Kind::Json),
    ("--color", Kind::Color),
    ("--cap-lints", Kind::CapLints),
    ("--test", Kind::Switch),
    ("--verbose", Kind::Switch),
    ("--help", Kind::Switch),
    ("--version", Kind::Switch),
    ("--cfg", Kind::Open),
    ("--check-cfg", Kind::Open),
    ("--crate-name", Kind::Open),
    ("--extern", Kind::Open),
    ("--target", Kind::Open),
    ("--out-dir", Kind::Open),
    ("--explain", Kind::Open),
    ("--sysroot", Kind::Open),
    ("--remap-path-prefix", Kind::Open),
    ("--diagnostic-width", Kind::Open),
    ("--env-set", Kind::Open),
    ("--force-warn", Kind::Open),
    ("--allow", Kind::Open),
    ("--warn", Kind::Open),
    ("--deny", Kind::Open),
    ("--forbid", Kind::Open),
];

/// Single-letter options: (letter, canonical name, kind).
const SHORT: &[(char, &str, Kind)] = &[
    ('C', "-C", Kind::Codegen),
    ('Z', "-Z", Kind::Unstable),
    ('L', "-L", Kind::Open),
    ('l', "-l", Kind::Open),
    ('o', "-o", Kind::Open),
    ('A', "-A", Kind::Open),
    ('W', "-W", Kind::Open),
    ('D', "-D", Kind::Open),
    ('F', "-F", Kind::Open),
    ('O', "-O", Kind::Switch),
    ('g', "-g", Kind::Switch),
    ('v', "--verbose", Kind::Switch),
    ('V', "--version", Kind::Switch),
    ('h', "--help", Kind::Switch),
];

/// Who ran rustc, from the environment it inherited. Signals, most specific first:
/// - `CARGO_CRATE_NAME`: cargo sets it on every rustc it runs to compile a crate (build
///   scripts included), and never for a build script's own process → [`RustcCaller::Cargo`].
/// - `CARGO_CFG_TARGET_ARCH`: cargo sets `CARGO_CFG_*` only for build scripts, and a rustc a
///   build script runs (autocfg, rustc_version) inherits it → [`RustcCaller::BuildScript`].
/// - `CARGO`: set by cargo for everything it runs, except the `-vV`/`--print` probes it makes
///   of rustc before a build → [`RustcCaller::Cargo`].
/// - Otherwise `fallback`: [`RustcCaller::Cargo`] in `RUSTC_WRAPPER` mode (only cargo and its
///   children call that), [`RustcCaller::Direct`] for the PATH shim.
///
/// `is_set` answers whether a variable is present; values are never read.
pub fn caller_from_env(is_set: &dyn Fn(&str) -> bool, fallback: RustcCaller) -> RustcCaller {
    if is_set("CARGO_CRATE_NAME") {
        RustcCaller::Cargo
    } else if is_set("CARGO_CFG_TARGET_ARCH") {
        RustcCaller::BuildScript
    } else if is_set("CARGO") {
        RustcCaller::Cargo
    } else {
        fallback
    }
}

#[derive(Default)]
struct Seen {
    version: bool,
    print: bool,
    stdin_input: bool,
    file_input: bool,
    /// An `--emit` kind other than metadata and dep-info (`link`, `obj`…).
    emit_codegen: bool,
    emit_metadata: bool,
    /// The last `-C opt-level` (or `-O`) is not 0.
    optimised: bool,
    json: bool,
}

impl Seen {
    fn compile_kind(&self) -> CompileKind {
        CompileKind {
            // No `--emit` at all is rustc's default, `link`.
            check: self.emit_metadata && !self.emit_codegen,
            optimised: self.optimised,
            json: self.json,
        }
    }
}

/// Counts a rustc run; returns what it compiles, or `None` for a probe or a run without input.
pub(crate) fn count(
    args: &[Option<&str>],
    ctx: &Context<'_>,
    names: &mut Names,
) -> Option<CompileKind> {
    if ctx.clippy_driver {
        names.push("driver:clippy");
    }
    names.push_parts(&["caller:", ctx.rustc_caller.label()]);
    let mut seen = Seen::default();
    let mut flags = Names {
        prefix: "rustc",
        names: Vec::new(),
    };
    // Argfile contents live here so the expanded list can borrow from them.
    let mut files: Vec<String> = Vec::new();
    let mut argfile_names: Vec<&'static str> = Vec::new();
    for arg in args {
        if let Some(path) = arg.and_then(|a| a.strip_prefix('@')) {
            match (ctx.read_argfile)(Path::new(path)).and_then(|b| String::from_utf8(b).ok()) {
                Some(text) => {
                    argfile_names.push("argfile:read");
                    files.push(text);
                }
                None => argfile_names.push("argfile:unreadable"),
            }
        }
    }
    let mut expanded: Vec<Option<&str>> = Vec::with_capacity(args.len());
    let mut file_iter = files.iter();
    let mut read_iter = argfile_names.iter();
    for arg in args {
        if arg.is_some_and(|a| a.starts_with('@')) {
            if *read_iter.next().unwrap_or(&"") == "argfile:read"
                && let Some(text) = file_iter.next()
            {
                // rustc reads argfiles with `lines()`: one argument per line, no nesting.
                expanded.extend(text.lines().map(Some));
            }
        } else {
            expanded.push(*arg);
        }
    }
    for name in &argfile_names {
        flags.push(name);
    }
    scan(&expanded, &mut seen, &mut flags);

    // A probe counts as a probe and by what it printed; its other flags (cargo's probe passes
    // every crate type) would only blur the counts of real compiles.
    let probe = if seen.version {
        Some("probe:version")
    } else if seen.print && !seen.file_input {
        Some("probe:print")
    } else {
        None
    };
    let kind =
        (probe.is_none() && (seen.file_input || seen.stdin_input)).then(|| seen.compile_kind());
    match probe {
        Some(probe) => {
            names.push(probe);
            for name in flags
                .names
                .iter()
                .filter(|n| n.starts_with("rustc/print:") || n.starts_with("rustc/argfile:"))
            {
                names.names.push(name.clone());
            }
        }
        None => {
            if seen.file_input || seen.stdin_input {
                names.push("compiles");
            }
            names.names.extend(flags.names);
        }
    }
    kind
}

fn scan(args: &[Option<&str>], seen: &mut Seen, out: &mut Names) {
    let mut i = 0;
    while i < args.len() {
        let Some(arg) = args[i] else {
            // A non-UTF-8 argument: an input path or a value; never read further.
            seen.file_input = true;
            i += 1;
            continue;
        };
        if arg == "-" {
            seen.stdin_input = true;
        } else if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            match LONG
                .iter()
                .find(|(n, _)| n.strip_prefix("--") == Some(name))
            {
                Some((canonical, kind)) => {
                    let value = if inline.is_some() || matches!(kind, Kind::Switch) {
                        inline
                    } else {
                        i += 1;
                        args.get(i).copied().flatten()
                    };
                    record(canonical, *kind, value, seen, out);
                }
                None => out.push("flag:other"),
            }
        } else if arg == "-vV" || arg == "-Vv" {
            record("--verbose", Kind::Switch, None, seen, out);
            record("--version", Kind::Switch, None, seen, out);
        } else if let Some(rest) = arg.strip_prefix('-') {
            let mut chars = rest.chars();
            let letter = chars.next();
            match SHORT.iter().find(|(c, _, _)| Some(*c) == letter) {
                Some((_, canonical, Kind::Switch)) if chars.as_str().is_empty() => {
                    record(canonical, Kind::Switch, None, seen, out)
                }
                Some((_, canonical, kind)) if !matches!(kind, Kind::Switch) => {
                    let attached = chars.as_str();
                    let value = if !attached.is_empty() {
                        Some(attached)
                    } else {
                        i += 1;
                        args.get(i).copied().flatten()
                    };
                    record(canonical, *kind, value, seen, out);
                }
                _ => out.push("flag:other"),
            }
        } else {
            seen.file_input = true;
        }
        i += 1;
    }
}

fn record(flag: &str, kind: Kind, value: Option<&str>, seen: &mut Seen, out: &mut Names) {
    match kind {
        Kind::Switch | Kind::Open => {
            if flag == "--version" {
                seen.version = true;
            }
            if flag == "-O" {
                seen.optimised = true;
            }
            out.push_parts(&["flag:", flag]);
        }
        Kind::Edition => out.push_parts(&["edition:", closed(EDITIONS, value)]),
        Kind::CrateType => {
            for v in value.unwrap_or("").split(',') {
                out.push_parts(&["crate-type:", closed(CRATE_TYPES, Some(v))]);
            }
        }
        Kind::Emit => {
            for v in value.unwrap_or("").split(',') {
                // `--emit=dep-info=path`: the path is never looked at.
                let kind = v.split('=').next();
                match kind {
                    Some("metadata") => seen.emit_metadata = true,
                    Some("dep-info") => {}
                    _ => seen.emit_codegen = true,
                }
                out.push_parts(&["emit:", closed(EMIT_KINDS, kind)]);
            }
        }
        Kind::Print => {
            seen.print = true;
            // `--print link-args=path`: the path is never looked at.
            let kind = value.map(|v| v.split('=').next().unwrap_or(""));
            out.push_parts(&["print:", closed(PRINT_KINDS, kind)]);
        }
        Kind::ErrorFormat => {
            seen.json = value == Some("json");
            out.push_parts(&["error-format:", closed(ERROR_FORMATS, value)])
        }
        Kind::Json => {
            for v in value.unwrap_or("").split(',') {
                out.push_parts(&["json:", closed(JSON_KINDS, Some(v))]);
            }
        }
        Kind::Color => out.push_parts(&["color:", closed(COLORS, value)]),
        Kind::CapLints => out.push_parts(&["cap-lints:", closed(CAP_LINTS, value)]),
        Kind::Codegen => {
            if let Some((name, level)) = value.and_then(|v| v.split_once('='))
                && name.replace('_', "-") == "opt-level"
            {
                seen.optimised = level != "0";
            }
            out.push_parts(&["codegen:", &codegen_label(value)])
        }
        Kind::Unstable => out.push_parts(&["unstable:", &unstable_label(value)]),
    }
}

fn closed(set: &[&'static str], value: Option<&str>) -> &'static str {
    value
        .and_then(|v| set.iter().find(|s| **s == v).copied())
        .unwrap_or("other")
}

/// `opt-level=3` → `opt-level=3`; `incremental=/path` → `incremental`; unknown → `other`.
fn codegen_label(value: Option<&str>) -> String {
    let Some(value) = value else {
        return "other".into();
    };
    let (name, val) = match value.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (value, None),
    };
    let name = name.replace('_', "-");
    let Some((name, set)) = CODEGEN.iter().find(|(n, _)| *n == name) else {
        return "other".into();
    };
    match val {
        Some(v) if !set.is_empty() => [name, "=", closed(set, Some(v))].concat(),
        _ => (*name).to_string(),
    }
}

/// `share-generics=yes` / `share_generics` → `-Zshare-generics`; unknown → `other`.
fn unstable_label(value: Option<&str>) -> String {
    let Some(value) = value else {
        return "other".into();
    };
    let name = value.split('=').next().unwrap_or("").replace('_', "-");
    match UNSTABLE.iter().find(|n| **n == name) {
        Some(n) => ["-Z", n].concat(),
        None => "other".into(),
    }
}

pub(crate) fn vocabulary(names: &mut Names) {
    for n in ["driver:clippy", "probe:version", "probe:print", "compiles"] {
        names.push(n);
    }
    for c in [
        RustcCaller::Cargo,
        RustcCaller::BuildScript,
        RustcCaller::Direct,
    ] {
        names.push_parts(&["caller:", c.label()]);
    }
    names.push("argfile:read");
    names.push("argfile:unreadable");
    names.push("flag:other");
    for (name, kind) in LONG
        .iter()
        .map(|(n, k)| (*n, *k))
        .chain(SHORT.iter().map(|(_, n, k)| (*n, *k)))
    {
        let (prefix, set): (&str, &[&str]) = match kind {
            Kind::Switch | Kind::Open => {
                names.push_parts(&["flag:", name]);
                continue;
            }
            Kind::Edition => ("edition", EDITIONS),
            Kind::CrateType => ("crate-type", CRATE_TYPES),
            Kind::Emit => ("emit", EMIT_KINDS),
            Kind::Print => ("print", PRINT_KINDS),
            Kind::ErrorFormat => ("error-format", ERROR_FORMATS),
            Kind::Json => ("json", JSON_KINDS),
            Kind::Color => ("color", COLORS),
            Kind::CapLints => ("cap-lints", CAP_LINTS),
            Kind::Codegen => {
                names.push("codegen:other");
                for (n, set) in CODEGEN {
                    names.push_parts(&["codegen:", n]);
                    if !set.is_empty() {
                        for v in set.iter().chain(&["other"]) {
                            names.push_parts(&["codegen:", n, "=", v]);
                        }
                    }
                }
                continue;
            }
            Kind::Unstable => {
                names.push("unstable:other");
                for n in UNSTABLE {
                    names.push_parts(&["unstable:-Z", n]);
                }
                continue;
            }
        };
        for v in set.iter().chain(&["other"]) {
            names.push_parts(&[prefix, ":", v]);
        }
    }
}
