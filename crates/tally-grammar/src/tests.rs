use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

fn names(tool: Tool, args: &[&str]) -> Vec<String> {
    names_with(tool, args, &Context::default())
}

fn names_with(tool: Tool, args: &[&str], ctx: &Context<'_>) -> Vec<String> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    counter_names(tool, &args, ctx)
}

fn has(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

#[test]
fn a_closed_flag_missing_its_value_is_other_and_in_the_vocabulary() {
    // Found by the vocabulary proptest: `rustfmt --color` as the last argument.
    for (tool, args, expected) in [
        (
            Tool::Rustfmt,
            &["--color"][..],
            "rustfmt/flag:--color=other",
        ),
        (
            Tool::Rustfmt,
            &["--edition"][..],
            "rustfmt/flag:--edition=other",
        ),
        (
            Tool::CargoFmt,
            &["--message-format"][..],
            "cargo-fmt/flag:--message-format=other",
        ),
    ] {
        let got = names(tool, args);
        assert!(has(&got, expected), "{args:?}: {got:?}");
        let vocabulary = crate::vocabulary(tool);
        for name in &got {
            assert!(vocabulary.contains(name), "{name} not in the vocabulary");
        }
    }
}

#[test]
fn cargo_build_release() {
    let n = names(
        Tool::Cargo,
        &[
            "build",
            "--release",
            "-p",
            "secret-crate",
            "-j2",
            "--features=a,b",
        ],
    );
    assert_eq!(
        n,
        [
            "cargo/invocations",
            "cargo/subcommand:build",
            "cargo/build/flag:--release",
            "cargo/build/flag:--package",
            "cargo/build/flag:--jobs",
            "cargo/build/flag:--features",
        ]
    );
}

#[test]
fn cargo_toolchain_aliases_globals_and_passthrough() {
    let n = names(
        Tool::Cargo,
        &[
            "+nightly-2024-01-01",
            "-vv",
            "--color",
            "always",
            "t",
            "--no-run",
            "name",
            "--",
            "--nocapture",
        ],
    );
    assert_eq!(
        n,
        [
            "cargo/invocations",
            "cargo/toolchain:nightly",
            "cargo/flag:--verbose",
            "cargo/flag:--color=always",
            "cargo/subcommand:test",
            "cargo/test/flag:--no-run",
            "cargo/test/flag:--",
        ]
    );
    assert!(has(
        &names(Tool::Cargo, &["+my-toolchain", "b"]),
        "cargo/toolchain:other"
    ));
    assert!(has(
        &names(Tool::Cargo, &["+1.70.0", "b"]),
        "cargo/toolchain:version"
    ));
}

#[test]
fn cargo_unknown_things_are_other() {
    let n = names(Tool::Cargo, &["my-alias", "--secret"]);
    assert_eq!(n, ["cargo/invocations", "cargo/subcommand:other"]);
    let n = names(
        Tool::Cargo,
        &["build", "--frobnicate=/home/me", "--profile", "my-prof"],
    );
    assert!(has(&n, "cargo/build/flag:other"));
    assert!(has(&n, "cargo/build/flag:--profile=other"));
    let n = names(Tool::Cargo, &["build", "--profile=release"]);
    assert!(has(&n, "cargo/build/flag:--profile=release"));
    let n = names(Tool::Cargo, &["nextest", "run", "--workspace"]);
    assert_eq!(n, ["cargo/invocations", "cargo/subcommand:nextest"]);
}

#[test]
fn rustc_compile_under_cargo() {
    let ctx = Context {
        rustc_caller: RustcCaller::Cargo,
        ..Context::default()
    };
    let n = names_with(
        Tool::Rustc,
        &[
            "--crate-name",
            "secret_name",
            "--edition=2021",
            "src/lib.rs",
            "--error-format=json",
            "--json=diagnostic-rendered-ansi,artifacts",
            "--crate-type",
            "lib",
            "--emit=dep-info,metadata,link",
            "-C",
            "opt-level=3",
            "-Cembed-bitcode=no",
            "-C",
            "incremental=/home/me/target/inc",
            "-Zshare-generics=y",
            "-Z",
            "mystery-flag",
            "-L",
            "dependency=/home/me/target/deps",
            "--extern",
            "foo=/x/libfoo.rlib",
            "--cfg",
            "feature=\"secret\"",
            "-Cmetadata=abcdef",
        ],
        &ctx,
    );
    let expected = [
        "rustc/invocations",
        "rustc/caller:cargo",
        "rustc/compiles",
        "rustc/flag:--crate-name",
        "rustc/edition:2021",
        "rustc/error-format:json",
        "rustc/json:diagnostic-rendered-ansi",
        "rustc/json:artifacts",
        "rustc/crate-type:lib",
        "rustc/emit:dep-info",
        "rustc/emit:metadata",
        "rustc/emit:link",
        "rustc/codegen:opt-level=3",
        "rustc/codegen:embed-bitcode=no",
        "rustc/codegen:incremental",
        "rustc/unstable:-Zshare-generics",
        "rustc/unstable:other",
        "rustc/flag:-L",
        "rustc/flag:--extern",
        "rustc/flag:--cfg",
        "rustc/codegen:metadata",
    ];
    assert_eq!(n, expected);
}

#[test]
fn rustc_probes_are_not_compiles() {
    let n = names(Tool::Rustc, &["-vV"]);
    assert!(has(&n, "rustc/probe:version") && !has(&n, "rustc/compiles"));
    let n = names(
        Tool::Rustc,
        &[
            "-",
            "--crate-name",
            "___",
            "--print=file-names",
            "--crate-type",
            "bin",
            "--print=sysroot",
        ],
    );
    assert_eq!(
        n,
        [
            "rustc/invocations",
            "rustc/caller:direct",
            "rustc/probe:print",
            "rustc/print:file-names",
            "rustc/print:sysroot"
        ]
    );
    assert_eq!(
        names(Tool::Rustc, &["-vV"]),
        [
            "rustc/invocations",
            "rustc/caller:direct",
            "rustc/probe:version"
        ]
    );
    // A real compile that also prints is a compile.
    let n = names(
        Tool::Rustc,
        &[
            "lib.rs",
            "--crate-type=staticlib",
            "--print",
            "native-static-libs",
        ],
    );
    assert!(has(&n, "rustc/compiles") && !has(&n, "rustc/probe:print"));
}

#[test]
fn rustc_argfiles_are_read_never_copied() {
    let reader = |p: &Path| -> Option<Vec<u8>> {
        (p == Path::new("/tmp/cargo-argfile.1"))
            .then(|| b"--edition\n2024\nsrc/main.rs\n-Copt-level=s\n".to_vec())
    };
    let ctx = Context {
        read_argfile: &reader,
        ..Context::default()
    };
    let n = names_with(Tool::Rustc, &["@/tmp/cargo-argfile.1", "@/nope"], &ctx);
    for want in [
        "rustc/argfile:read",
        "rustc/argfile:unreadable",
        "rustc/edition:2024",
        "rustc/codegen:opt-level=s",
        "rustc/compiles",
    ] {
        assert!(has(&n, want), "{want} missing from {n:?}");
    }
}

#[test]
fn rustc_caller_signals() {
    let env = |vars: &'static [&'static str]| move |k: &str| vars.contains(&k);
    assert_eq!(
        caller_from_env(&env(&["CARGO", "CARGO_CRATE_NAME"]), RustcCaller::Direct),
        RustcCaller::Cargo
    );
    assert_eq!(
        caller_from_env(
            &env(&["CARGO", "CARGO_CFG_TARGET_ARCH", "OUT_DIR"]),
            RustcCaller::Direct
        ),
        RustcCaller::BuildScript
    );
    assert_eq!(
        caller_from_env(&env(&[]), RustcCaller::Cargo),
        RustcCaller::Cargo
    );
    assert_eq!(
        caller_from_env(&env(&["OUT_DIR"]), RustcCaller::Direct),
        RustcCaller::Direct
    );
}

#[test]
fn clippy_driver_counts_as_rustc() {
    let ctx = Context {
        clippy_driver: true,
        rustc_caller: RustcCaller::Cargo,
        ..Context::default()
    };
    let n = names_with(Tool::Rustc, &["src/lib.rs"], &ctx);
    assert!(has(&n, "rustc/driver:clippy") && has(&n, "rustc/compiles"));
}

#[test]
fn rustfmt_and_cargo_fmt() {
    assert_eq!(
        names(
            Tool::Rustfmt,
            &["--edition", "2021", "--check", "src/main.rs"]
        ),
        [
            "rustfmt/invocations",
            "rustfmt/flag:--edition=2021",
            "rustfmt/flag:--check",
            "rustfmt/input:files"
        ]
    );
    assert!(has(
        &names(Tool::Rustfmt, &["--emit=stdout"]),
        "rustfmt/input:stdin"
    ));
    assert_eq!(
        names(
            Tool::CargoFmt,
            &["fmt", "--check", "--", "--edition", "2021"]
        ),
        [
            "cargo-fmt/invocations",
            "cargo-fmt/flag:--check",
            "cargo-fmt/flag:--"
        ]
    );
}

#[test]
fn go_commands() {
    assert_eq!(
        names(
            Tool::Go,
            &[
                "test",
                "-race",
                "./...",
                "-run",
                "TestSecret",
                "--count=1",
                "-args",
                "-x"
            ]
        ),
        [
            "go/invocations",
            "go/subcommand:test",
            "go/test/flag:-race",
            "go/test/flag:-run",
            "go/test/flag:-count",
            "go/test/flag:-args",
        ]
    );
    assert_eq!(
        names(
            Tool::Go,
            &["build", "-buildmode=pie", "-o", "/tmp/x", "./cmd", "-race"]
        ),
        [
            "go/invocations",
            "go/subcommand:build",
            "go/build/flag:-buildmode=pie",
            "go/build/flag:-o"
        ]
    );
    assert_eq!(
        names(Tool::Go, &["mod", "tidy", "-v"]),
        [
            "go/invocations",
            "go/subcommand:mod",
            "go/mod/subcommand:tidy",
            "go/mod/flag:-v"
        ]
    );
    assert_eq!(
        names(Tool::Go, &["frob"]),
        ["go/invocations", "go/subcommand:other"]
    );
    assert!(has(
        &names(Tool::Go, &["test", "-test.v"]),
        "go/test/flag:-v"
    ));
}

#[test]
fn gofmt_flags() {
    assert_eq!(
        names(Tool::Gofmt, &["-s", "-l", "-r", "a -> b", "."]),
        [
            "gofmt/invocations",
            "gofmt/flag:-s",
            "gofmt/flag:-l",
            "gofmt/flag:-r",
            "gofmt/input:files"
        ]
    );
    assert!(has(&names(Tool::Gofmt, &["--frob"]), "gofmt/flag:other"));
}

#[test]
fn non_utf8_arguments_are_never_flags() {
    use std::os::unix::ffi::OsStringExt;
    let args = vec![
        OsString::from("build"),
        OsString::from_vec(vec![b'-', 0xff, 0xfe]),
    ];
    let n = counter_names(Tool::Cargo, &args, &Context::default());
    assert_eq!(n, ["cargo/invocations", "cargo/subcommand:build"]);
    let n = counter_names(
        Tool::Rustc,
        &[OsString::from_vec(vec![0xff])],
        &Context::default(),
    );
    assert!(has(&n, "rustc/compiles"));
}

#[test]
fn examples_from_the_issue_are_in_the_vocabulary() {
    let all: HashSet<String> = Tool::ALL.iter().flat_map(|t| vocabulary(*t)).collect();
    for name in [
        "cargo/invocations",
        "cargo/subcommand:build",
        "cargo/build/flag:--release",
        "rustc/edition:2021",
        "rustc/codegen:opt-level=3",
        "rustc/unstable:-Zshare-generics",
        "go/test/flag:-race",
        "gofmt/flag:-s",
        "cargo/subcommand:other",
        "rustc/unstable:other",
    ] {
        assert!(all.contains(name), "{name}");
    }
}

/// The tools tally shims are programs like any other: their names follow the rule that the
/// collector and the counter library apply to every program (`tally_protocol::is_program_name`).
#[test]
fn tool_names_follow_the_program_name_rule() {
    for tool in Tool::ALL {
        assert!(tally_protocol::is_program_name(tool.name()), "{tool:?}");
        assert_eq!(Tool::from_name(tool.name()), Some(tool));
    }
}

#[test]
fn vocabulary_names_are_short_and_plain() {
    for tool in Tool::ALL {
        for name in vocabulary(tool) {
            assert!(name.starts_with(&format!("{}/", tool.name())), "{name}");
            assert!(name.len() <= 80, "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name}");
        }
    }
}

/// Flag-shaped words from every grammar, so random argument lists exercise real paths.
fn known_words() -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for tool in Tool::ALL {
        for name in vocabulary(tool) {
            let label = name.rsplit(':').next().unwrap_or("").to_string();
            words.push(label.split('=').next().unwrap_or("").to_string());
            words.push(label);
        }
    }
    words.extend(
        [
            "build", "test", "mod", "tidy", "-C", "-Z", "--", "-args", "@", "+nightly", "-", "fmt",
            "run",
        ]
        .map(String::from),
    );
    words.sort();
    words.dedup();
    words
}

/// A secret-looking or path-like value that cannot occur in any vocabulary name (the `qx`
/// marker appears in none).
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "qx[A-Za-z0-9]{6,20}".prop_map(|s| s),
        "/home/qx[a-z]{3,8}/[a-z]{1,8}\\.rs",
        "ghp_qx[A-Za-z0-9]{20}",
        "sk_live_qx[a-z0-9]{12}",
        "--qx[a-z]{3,10}=qx[a-z0-9]{4}",
        "-Zqx[a-z]{4}",
        "-Cqx[a-z]{3}=qx[0-9]{3}",
        "opt-level=qx[a-z]{3}",
        "@/tmp/qx[a-z]{6}",
        "\\+qx[a-z]{5}",
    ]
}

fn arg() -> impl Strategy<Value = String> {
    let words = known_words();
    prop_oneof![
        3 => proptest::sample::select(words.clone()),
        2 => secret(),
        1 => (proptest::sample::select(words), secret()).prop_map(|(w, s)| format!("{w}={s}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn names_stay_in_the_vocabulary_and_never_carry_values(
        args in proptest::collection::vec(arg(), 0..24),
        tool_index in 0usize..6,
        argfile in secret(),
    ) {
        let tool = Tool::ALL[tool_index];
        let vocab: HashSet<String> = vocabulary(tool).into_iter().collect();
        // Argfiles hold the same mix of words and secrets.
        let body = format!("{}\n{}\n", argfile, args.join("\n"));
        let reader = move |_: &Path| Some(body.clone().into_bytes());
        for caller in [RustcCaller::Cargo, RustcCaller::BuildScript, RustcCaller::Direct] {
            let ctx = Context { rustc_caller: caller, clippy_driver: caller == RustcCaller::Cargo, read_argfile: &reader };
            let os: Vec<OsString> = args.iter().map(OsString::from).collect();
            for name in counter_names(tool, &os, &ctx) {
                prop_assert!(vocab.contains(&name), "{name} not in the {tool:?} vocabulary");
                prop_assert!(!name.contains("qx"), "a value leaked into {name}");
            }
        }
    }
}

/// The whole vocabulary, one file per tool under `src/snapshots/`: the reviewable list of every
/// counter name tally can ever write. A grammar change shows up here as a diff.
#[test]
fn vocabulary_snapshots() {
    for tool in Tool::ALL {
        insta::assert_snapshot!(
            format!("vocabulary_{}", tool.name()),
            vocabulary(tool).join("\n")
        );
    }
}

#[test]
fn tool_names_follow_the_variants() {
    assert_eq!(
        Tool::ALL.map(Tool::name),
        ["cargo", "rustc", "rustfmt", "cargo-fmt", "go", "gofmt"]
    );
    for tool in Tool::ALL {
        assert_eq!(Tool::from_name(tool.name()), Some(tool));
    }
}

#[test]
fn rustc_compile_kinds() {
    use crate::outcome::CompileKind;
    let kind = |args: &[&str]| {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        rustc_counter_names(&args, &Context::default()).1
    };
    // cargo check: metadata (and dep-info) only, JSON diagnostics.
    assert_eq!(
        kind(&[
            "src/lib.rs",
            "--error-format=json",
            "--emit=dep-info,metadata",
            "-C",
            "embed-bitcode=no"
        ]),
        Some(CompileKind {
            check: true,
            optimised: false,
            json: true
        })
    );
    // cargo build --release: metadata and link, opt-level 3.
    assert_eq!(
        kind(&[
            "src/main.rs",
            "--error-format",
            "json",
            "--emit=dep-info,metadata,link",
            "-C",
            "opt-level=3"
        ]),
        Some(CompileKind {
            check: false,
            optimised: true,
            json: true
        })
    );
    // rustc's defaults: link, opt-level 0, human diagnostics; the last opt-level wins; -O.
    assert_eq!(kind(&["x.rs"]), Some(CompileKind::default()));
    assert_eq!(
        kind(&["x.rs", "-Copt-level=3", "-C", "opt_level=0"]).map(|k| k.optimised),
        Some(false)
    );
    assert_eq!(kind(&["x.rs", "-O"]).map(|k| k.optimised), Some(true));
    assert_eq!(
        kind(&["x.rs", "--emit", "metadata", "--emit=obj"]).map(|k| k.check),
        Some(false)
    );
    // Probes and runs without input are not compiles.
    assert_eq!(kind(&["-vV"]), None);
    assert_eq!(
        kind(&["-", "--print=file-names", "--crate-type", "lib"]),
        None
    );
    assert_eq!(kind(&["--error-format=json"]), None);
    // The names are those of `counter_names`.
    let args: Vec<OsString> = ["x.rs", "-O"].iter().map(OsString::from).collect();
    assert_eq!(
        rustc_counter_names(&args, &Context::default()).0,
        counter_names(Tool::Rustc, &args, &Context::default())
    );
}

/// Every name the outcome of a compile can be counted under (the diagnostic vocabulary from
/// `vocab/` included): a refresh of the vocabulary shows up here as a diff.
#[test]
fn outcome_vocabulary_snapshot() {
    insta::assert_snapshot!(
        "vocabulary_rustc_outcomes",
        crate::outcome::vocabulary().join("\n")
    );
}
