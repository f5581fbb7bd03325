//! `tally-shim`, the hot path's own binary, stays small on purpose: nothing of the CLI, no
//! argument parser, no HTTP client enters it (src/bin/tally-shim.rs says what may). Checked two
//! ways, each with a control that shows the check can see what it looks for:
//! - the dependency tree of the crates it is built from (`cargo tree`), against the crates of
//!   the CLI and the network;
//! - the symbols of the built binary (`nm`, demangled), against the same crates' paths: this
//!   is what fails when someone calls into the CLI from `tally-shim`'s `main`, which its
//!   package's dependencies would allow.
//!
//! And what `tally-shim` does under its own name with nothing to wrap, and that `tally` still
//! runs the same hot path under a tool's name and as `RUSTC_WRAPPER`, for links and settings
//! made before `tally-shim` existed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::support::{TALLY, TALLY_SHIM, World, map, ok, run};
use tally_test_support::command::cargo_tree_packages;

/// Crates that must never be in `tally-shim`: the CLI and what only it needs (commands, the
/// upload config, reports, uploads, private aggregation, charts), the collector, argument
/// parsers, HTTP clients and servers, async runtimes, TLS.
const FORBIDDEN: &[&str] = &[
    "tally-commands",
    "tally-config",
    "tally-report",
    "tally-upload",
    "tally-dap",
    "prio",
    "janus_messages",
    "hpke-dispatch",
    "tally-charts",
    "tally-server",
    "clap",
    "clap_builder",
    "clap_complete",
    "clap_mangen",
    "ureq",
    "reqwest",
    "hyper",
    "http",
    "curl",
    "axum",
    "tokio",
    "rustls",
    "minisign",
    "minisign-verify",
];

/// The crates (`name`) in the normal and build dependency trees of `packages`, for this host.
fn dependency_tree(packages: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["-e", "normal,build"];
    for package in packages {
        args.extend(["-p", package]);
    }
    cargo_tree_packages(&args, Path::new(env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn the_hot_binary_s_crates_depend_on_nothing_of_the_cli_or_the_network() {
    // What src/bin/tally-shim.rs uses, and so all that may be linked into it.
    let hot = dependency_tree(&["tally-shims", "tally-wrapper", "tally-sys"]);
    assert!(
        hot.contains("tally-process") && hot.contains("tally-home"),
        "{hot:?}"
    );
    let entered: Vec<&&str> = FORBIDDEN.iter().filter(|c| hot.contains(**c)).collect();
    assert!(
        entered.is_empty(),
        "{entered:?} entered the dependencies of tally-shim (tally-shims, tally-wrapper, \
         tally-sys): keep the hot path free of the CLI and the network (src/bin/tally-shim.rs)"
    );
    // The control: the CLI's own tree has them, so the query sees such crates.
    let cli = dependency_tree(&["tally-commands"]);
    for expected in ["clap", "ureq", "tally-config", "tally-upload", "tally-dap"] {
        assert!(cli.contains(expected), "{expected} in {cli:?}");
    }
}

/// The demangled names of the functions and data in `binary` (a test build keeps its symbols).
fn symbols(binary: &str) -> Vec<String> {
    let out = run(Command::new("nm").args(["--demangle", "--defined-only", binary]));
    assert!(
        out.status.success(),
        "nm {binary} failed (nm comes with binutils, which Rust needs to link): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The forbidden crates whose code is in `symbols`, with an example symbol each.
fn forbidden_code(symbols: &[String]) -> Vec<(String, String)> {
    FORBIDDEN
        .iter()
        .filter_map(|krate| {
            let path = format!("{}::", krate.replace('-', "_"));
            symbols
                .iter()
                .find(|s| s.contains(&path))
                .map(|s| (krate.to_string(), s.clone()))
        })
        .collect()
}

#[test]
fn no_code_of_the_cli_or_the_network_is_linked_into_the_hot_binary() {
    let hot = symbols(TALLY_SHIM);
    assert!(
        hot.iter().any(|s| s.contains("tally_shims::run_shim"))
            && hot.iter().any(|s| s.contains("tally_wrapper::run_wrapper")),
        "tally-shim holds the shim and the wrapper"
    );
    let found = forbidden_code(&hot);
    assert!(
        found.is_empty(),
        "tally-shim links code it must not (src/bin/tally-shim.rs says what may be linked): \
         {found:#?}"
    );
    // The control: `tally` links the CLI, and this check sees it there.
    let cli: Vec<String> = forbidden_code(&symbols(TALLY))
        .into_iter()
        .map(|(krate, _)| krate)
        .collect();
    for expected in ["tally-commands", "clap_builder", "ureq"] {
        assert!(cli.iter().any(|k| k == expected), "{expected} in {cli:?}");
    }
}

#[test]
fn under_its_own_name_it_points_at_tally_and_exits_2() {
    let w = World::new();
    for args in [&[][..], &["status"], &["--help"]] {
        let out = run(w.direct(TALLY_SHIM).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("`tally`"), "{stderr}");
    }
    assert!(!w.data.exists(), "nothing counted, nothing written");
}

#[test]
fn tally_itself_still_runs_as_a_shim_and_as_the_wrapper() {
    // Shims linked to `tally`, as setup made them before `tally-shim` existed.
    let w = World::with_binary(TALLY);
    let project = w.fixture("cargo-hello");
    let out = ok(w.cmd("cargo").args(["build", "-v"]).current_dir(&project));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The cargo shim made its own binary, under its own name, cargo's RUSTC_WRAPPER.
    assert!(stderr.contains(&format!("`{TALLY} ")), "{stderr}");
    assert_eq!(w.program("cargo").get("cargo/subcommand:build"), Some(&1));
    assert_eq!(w.program("rustc").get("rustc/compiles"), Some(&1));
    let out = ok(w.cmd("rustc").arg("-V"));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rustc "));
    assert_eq!(
        w.program("rustc").get("rustc/caller:direct"),
        Some(&1),
        "{:#?}",
        w.program("rustc")
    );

    // `RUSTC_WRAPPER=tally` set by the user, in front of shims that run `tally-shim`: counted
    // once, by `tally`.
    let w = World::new();
    let project = w.fixture("cargo-hello");
    let out = ok(w
        .cmd("cargo")
        .args(["build", "-v"])
        .env("RUSTC_WRAPPER", TALLY)
        .current_dir(&project));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("`{TALLY} ")), "{stderr}");
    assert!(!stderr.contains(TALLY_SHIM), "{stderr}");
    assert_eq!(w.program("rustc").get("rustc/compiles"), Some(&1));
    assert_eq!(w.program("cargo").get("cargo/subcommand:build"), Some(&1));
    // The other way round: shims linked to `tally`, `RUSTC_WRAPPER=tally-shim`.
    let w = World::with_binary(TALLY);
    let project = w.fixture("cargo-hello");
    ok(w.cmd("cargo")
        .arg("build")
        .env("RUSTC_WRAPPER", TALLY_SHIM)
        .current_dir(&project));
    assert_eq!(w.program("rustc").get("rustc/compiles"), Some(&1));
    // And without a cargo shim at all.
    let w = World::new();
    let project = w.fixture("cargo-hello");
    ok(w.direct("cargo")
        .arg("build")
        .env("RUSTC_WRAPPER", TALLY)
        .current_dir(&project));
    assert_eq!(w.program("cargo"), map(&[]));
    assert_eq!(w.program("rustc").get("rustc/compiles"), Some(&1));
}
