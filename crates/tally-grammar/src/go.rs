//! The `go` and `gofmt` grammars: Go's `flag` package rules (single or double dash, `=value`
//! or a separate value for non-boolean flags, parsing stops at the first non-flag argument
//! except for `go test` and `go vet`, which accept flags after the package list until `-args`).

use crate::Names;
use crate::spec::{
    Dialect, FlagSpec, Stop, Value, closed, open, optional, push_flag_vocabulary, push_flags,
    push_sub_flag_vocabulary, push_sub_flags, scan, switch,
};

static BUILD: &[FlagSpec] = &[
    open("-C"),
    switch("-a"),
    switch("-n"),
    open("-p"),
    switch("-race"),
    switch("-msan"),
    switch("-asan"),
    switch("-cover"),
    closed("-covermode", &["set", "count", "atomic"]),
    open("-coverpkg"),
    switch("-v"),
    switch("-work"),
    switch("-x"),
    open("-asmflags"),
    closed(
        "-buildmode",
        &[
            "archive",
            "c-archive",
            "c-shared",
            "default",
            "shared",
            "exe",
            "pie",
            "plugin",
        ],
    ),
    optional("-buildvcs", &["true", "false", "auto"]),
    closed("-compiler", &["gc", "gccgo"]),
    open("-gccgoflags"),
    open("-gcflags"),
    open("-installsuffix"),
    open("-ldflags"),
    switch("-linkshared"),
    closed("-mod", &["readonly", "vendor", "mod"]),
    switch("-modcacherw"),
    open("-modfile"),
    open("-overlay"),
    open("-pgo"),
    open("-pkgdir"),
    open("-tags"),
    switch("-trimpath"),
    open("-toolexec"),
    open("-o"),
    switch("-json"),
];

static TEST: &[FlagSpec] = &[
    switch("-args"),
    switch("-c"),
    open("-exec"),
    switch("-i"),
    open("-bench"),
    switch("-benchmem"),
    open("-benchtime"),
    open("-blockprofile"),
    open("-blockprofilerate"),
    open("-count"),
    open("-coverprofile"),
    open("-cpu"),
    open("-cpuprofile"),
    switch("-failfast"),
    switch("-fullpath"),
    open("-fuzz"),
    open("-fuzzcachedir"),
    open("-fuzzminimizetime"),
    open("-fuzztime"),
    open("-list"),
    open("-memprofile"),
    open("-memprofilerate"),
    open("-mutexprofile"),
    open("-mutexprofilefraction"),
    open("-outputdir"),
    open("-parallel"),
    open("-run"),
    switch("-short"),
    open("-shuffle"),
    open("-skip"),
    open("-timeout"),
    open("-trace"),
    open("-vet"),
];
static RUN: &[FlagSpec] = &[open("-exec")];
static GET: &[FlagSpec] = &[
    switch("-d"),
    switch("-t"),
    optional("-u", &["patch"]),
    switch("-insecure"),
];
static LIST: &[FlagSpec] = &[
    switch("-compiled"),
    switch("-deps"),
    switch("-e"),
    switch("-export"),
    open("-f"),
    switch("-find"),
    switch("-m"),
    switch("-retracted"),
    open("-reuse"),
    switch("-test"),
    switch("-u"),
    switch("-versions"),
];
static CLEAN: &[FlagSpec] = &[
    switch("-i"),
    switch("-r"),
    switch("-cache"),
    switch("-testcache"),
    switch("-modcache"),
    switch("-fuzzcache"),
];
static GENERATE: &[FlagSpec] = &[open("-run"), open("-skip")];
static FMT: &[FlagSpec] = &[
    switch("-n"),
    switch("-x"),
    closed("-mod", &["readonly", "vendor", "mod"]),
];
static VET: &[FlagSpec] = &[open("-vettool")];
static ENV: &[FlagSpec] = &[
    switch("-json"),
    switch("-u"),
    switch("-w"),
    switch("-changed"),
];
static VERSION: &[FlagSpec] = &[switch("-m"), switch("-v"), switch("-json")];
static DOC: &[FlagSpec] = &[
    switch("-all"),
    switch("-c"),
    switch("-cmd"),
    switch("-short"),
    switch("-src"),
    switch("-u"),
    open("-http"),
];
static MOD: &[FlagSpec] = &[
    switch("-v"),
    switch("-e"),
    open("-go"),
    open("-compat"),
    switch("-x"),
    switch("-json"),
    open("-reuse"),
    switch("-diff"),
    open("-modfile"),
    switch("-print"),
    switch("-fmt"),
    open("-require"),
    open("-droprequire"),
    open("-replace"),
    open("-dropreplace"),
    open("-exclude"),
    open("-dropexclude"),
    open("-retract"),
    open("-dropretract"),
    open("-module"),
    open("-toolchain"),
    open("-godebug"),
    open("-dropgodebug"),
    switch("-m"),
    open("-o"),
    open("-tool"),
    open("-droptool"),
    open("-ignore"),
    open("-use"),
    open("-dropuse"),
    switch("-r"),
];
static NONE: &[FlagSpec] = &[];

/// How a `go` command's arguments are read.
struct Command {
    name: &'static str,
    tables: &'static [&'static [FlagSpec]],
    /// Flags may follow positionals (`go test ./... -run X`).
    flags_after_positionals: bool,
    /// Second-level words (`go mod tidy`), counted as `go/<cmd>/subcommand:<word>`.
    words: &'static [&'static str],
}

const fn cmd(name: &'static str, tables: &'static [&'static [FlagSpec]]) -> Command {
    Command {
        name,
        tables,
        flags_after_positionals: false,
        words: &[],
    }
}

static COMMANDS: &[Command] = &[
    cmd("build", &[BUILD]),
    cmd("install", &[BUILD]),
    cmd("run", &[BUILD, RUN]),
    Command {
        name: "test",
        tables: &[BUILD, TEST],
        flags_after_positionals: true,
        words: &[],
    },
    Command {
        name: "vet",
        tables: &[BUILD, VET],
        flags_after_positionals: true,
        words: &[],
    },
    cmd("get", &[BUILD, GET]),
    cmd("list", &[BUILD, LIST]),
    cmd("clean", &[BUILD, CLEAN]),
    cmd("generate", &[BUILD, GENERATE]),
    cmd("fmt", &[FMT]),
    cmd("fix", &[NONE]),
    cmd("env", &[ENV]),
    cmd("version", &[VERSION]),
    cmd("doc", &[DOC]),
    cmd("bug", &[NONE]),
    cmd("help", &[NONE]),
    Command {
        name: "mod",
        tables: &[MOD],
        flags_after_positionals: true,
        words: &[
            "download", "edit", "graph", "init", "tidy", "vendor", "verify", "why",
        ],
    },
    Command {
        name: "work",
        tables: &[MOD],
        flags_after_positionals: true,
        words: &["init", "use", "edit", "sync", "vendor"],
    },
    Command {
        name: "telemetry",
        tables: &[NONE],
        flags_after_positionals: false,
        words: &["on", "off", "local"],
    },
    Command {
        name: "tool",
        tables: &[NONE],
        flags_after_positionals: false,
        words: &[
            "addr2line",
            "asm",
            "buildid",
            "cgo",
            "compile",
            "covdata",
            "cover",
            "dist",
            "doc",
            "fix",
            "link",
            "nm",
            "objdump",
            "pack",
            "pprof",
            "test2json",
            "trace",
            "vet",
        ],
    },
];

/// The command's tables merged in order (first wins), kept for the process's life.
fn merged(command: &Command) -> &'static [FlagSpec] {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<BTreeMap<&'static str, &'static [FlagSpec]>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(t) = cache.get(command.name) {
        return t;
    }
    let mut all: Vec<FlagSpec> = Vec::new();
    for spec in command.tables.iter().flat_map(|t| t.iter()) {
        if !all.iter().any(|s| s.name == spec.name) {
            all.push(*spec);
        }
    }
    let leaked: &'static [FlagSpec] = Box::leak(all.into_boxed_slice());
    cache.insert(command.name, leaked);
    leaked
}

pub(crate) fn count_go(args: &[Option<&str>], names: &mut Names) {
    let Some(first) = args.first() else { return };
    let Some(command) = first.and_then(|w| COMMANDS.iter().find(|c| c.name == w)) else {
        names.push("subcommand:other");
        return;
    };
    let sub = command.name;
    names.push_parts(&["subcommand:", sub]);
    let table = merged(command);
    let mut rest = &args[1..];
    if !command.words.is_empty() {
        // `go mod tidy -v`, `go tool compile …`: the word comes first.
        let Some(word) = rest.first() else { return };
        let word = word.and_then(|w| command.words.iter().find(|k| **k == w));
        names.push_parts(&[sub, "/subcommand:", word.copied().unwrap_or("other")]);
        if sub == "tool" {
            // The tool's own flags are not go's.
            return;
        }
        rest = &rest[1..];
    }
    let mut tokens = Vec::new();
    // `go build pkg -x`: Go stops reading flags at the first package; so does the scan.
    let stop = scan(
        Dialect::Go,
        rest,
        table,
        !command.flags_after_positionals,
        &mut tokens,
    );
    push_sub_flags(sub, &tokens, names);
    if let Stop::DoubleDash(at) = stop {
        let marker = if rest[at] == Some("--") {
            "--"
        } else {
            "-args"
        };
        names.push_parts(&[sub, "/flag:", marker]);
    }
}

static GOFMT: &[FlagSpec] = &[
    switch("-l"),
    switch("-w"),
    switch("-d"),
    switch("-s"),
    switch("-e"),
    open("-r"),
    open("-cpuprofile"),
    FlagSpec {
        name: "-h",
        short: None,
        value: Value::None,
    },
];

pub(crate) fn count_gofmt(args: &[Option<&str>], names: &mut Names) {
    let mut tokens = Vec::new();
    let stop = scan(Dialect::Go, args, GOFMT, true, &mut tokens);
    push_flags(&tokens, names);
    let files = match stop {
        Stop::Positional(_) => true,
        Stop::DoubleDash(at) => at + 1 < args.len(),
        Stop::End => false,
    };
    names.push(if files { "input:files" } else { "input:stdin" });
}

pub(crate) fn vocabulary_go(names: &mut Names) {
    names.push("subcommand:other");
    for command in COMMANDS {
        let sub = command.name;
        names.push_parts(&["subcommand:", sub]);
        for word in command.words.iter().chain(&["other"]) {
            if !command.words.is_empty() {
                names.push_parts(&[sub, "/subcommand:", word]);
            }
        }
        push_sub_flag_vocabulary(sub, merged(command), names);
        names.push_parts(&[sub, "/flag:--"]);
        names.push_parts(&[sub, "/flag:-args"]);
    }
}

pub(crate) fn vocabulary_gofmt(names: &mut Names) {
    push_flag_vocabulary(GOFMT, names);
    names.push("input:files");
    names.push("input:stdin");
}
