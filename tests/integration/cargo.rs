//! cargo through its shim: cargo's own counters, and compiles counted through the
//! `RUSTC_WRAPPER` the shim arranges (keeping a wrapper the user already has).

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{TALLY, World, map, ok, run};

/// `cargo ARGS` through the shims in the world's copy of the `cargo-hello` fixture.
fn cargo_in_hello(w: &World, args: &[&str]) -> Output {
    let project = w.fixture("cargo-hello");
    ok(w.cmd("cargo").args(args).current_dir(&project))
}

/// `cargo build` of the `cargo-hello` fixture with `RUSTC_WRAPPER` set to `wrapper`, `cargo`
/// being one of the world's commands (through the shims, or not).
fn build_hello_wrapped_by(w: &World, mut cargo: Command, wrapper: &Path) -> Output {
    let project = w.fixture("cargo-hello");
    ok(cargo
        .arg("build")
        .env("RUSTC_WRAPPER", wrapper)
        .current_dir(&project))
}

/// The names every cargo-driven rustc run carries, whatever cargo version.
fn assert_all_from_cargo(rustc: &std::collections::BTreeMap<String, u64>) {
    let invocations = rustc["rustc/invocations"];
    assert_eq!(
        rustc.get("rustc/caller:cargo"),
        Some(&invocations),
        "{rustc:#?}"
    );
    assert_eq!(rustc.get("rustc/caller:direct"), None, "{rustc:#?}");
}

#[test]
fn cargo_build_release_counts_cargo_and_its_compiles() {
    let w = World::new();
    cargo_in_hello(&w, &["build", "--release", "-q"]);
    assert_eq!(
        w.program("cargo"),
        map(&[
            ("cargo/invocations", 1),
            ("cargo/subcommand:build", 1),
            ("cargo/build/flag:--release", 1),
            ("cargo/build/flag:--quiet", 1),
        ])
    );
    let rustc = w.program("rustc");
    assert_eq!(rustc.get("rustc/compiles"), Some(&1), "{rustc:#?}");
    assert_eq!(rustc.get("rustc/edition:2021"), Some(&1));
    assert_eq!(rustc.get("rustc/codegen:opt-level=3"), Some(&1));
    assert_eq!(rustc.get("rustc/crate-type:bin"), Some(&1));
    // cargo's probes are probes, not compiles.
    assert!(
        rustc.get("rustc/probe:version").is_some_and(|n| *n >= 1),
        "{rustc:#?}"
    );
    assert!(
        rustc.get("rustc/probe:print").is_some_and(|n| *n >= 1),
        "{rustc:#?}"
    );
    assert_all_from_cargo(&rustc);
    assert_eq!(w.versions("cargo"), [rustc_release()]);
    assert_eq!(w.versions("rustc"), [rustc_release()]);
}

/// The release of the default toolchain, as tally should record it (`1.95.0`).
fn rustc_release() -> String {
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("release: "))
        .unwrap()
        .to_string()
}

#[test]
fn cargo_test_and_run() {
    let w = World::new();
    let project = w.fixture("cargo-hello");
    ok(w.cmd("cargo").args(["test", "-q"]).current_dir(&project));
    let out = ok(w
        .cmd("cargo")
        .args(["run", "-q", "--", "--secret-arg"])
        .current_dir(&project));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the fixture\n"
    );
    let cargo = w.program("cargo");
    assert_eq!(
        cargo,
        map(&[
            ("cargo/invocations", 2),
            ("cargo/subcommand:test", 1),
            ("cargo/subcommand:run", 1),
            ("cargo/test/flag:--quiet", 1),
            ("cargo/run/flag:--quiet", 1),
            ("cargo/run/flag:--", 1),
        ])
    );
    let rustc = w.program("rustc");
    // test: the bin with --test; run: the bin.
    assert_eq!(rustc.get("rustc/compiles"), Some(&2), "{rustc:#?}");
    assert_eq!(rustc.get("rustc/flag:--test"), Some(&1), "{rustc:#?}");
    assert_all_from_cargo(&rustc);
}

#[test]
fn build_scripts_are_their_own_caller() {
    let w = World::new();
    let project = w.fixture("cargo-buildscript");
    ok(w.cmd("cargo").args(["build"]).current_dir(&project));
    let rustc = w.program("rustc");
    // The build script's `rustc --version`, through RUSTC_WRAPPER as autocfg does.
    assert_eq!(
        rustc.get("rustc/caller:build-script"),
        Some(&1),
        "{rustc:#?}"
    );
    // Compiles: the build script and the library.
    assert_eq!(rustc.get("rustc/compiles"), Some(&2), "{rustc:#?}");
    assert_eq!(rustc.get("rustc/caller:direct"), None, "{rustc:#?}");
}

#[test]
fn cargo_fmt_counts_cargo_and_cargo_fmt() {
    let w = World::new();
    cargo_in_hello(&w, &["fmt", "--check"]);
    assert_eq!(
        w.program("cargo"),
        map(&[
            ("cargo/invocations", 1),
            ("cargo/subcommand:fmt", 1),
            ("cargo/fmt/flag:--check", 1)
        ])
    );
    assert_eq!(
        w.program("cargo-fmt"),
        map(&[("cargo-fmt/invocations", 1), ("cargo-fmt/flag:--check", 1)])
    );
}

#[test]
fn cargo_clippy_counts_the_clippy_driver() {
    let w = World::new();
    let project = w.fixture("cargo-hello");
    let out = run(w.cmd("cargo").args(["clippy", "-q"]).current_dir(&project));
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not installed") {
        eprintln!("skipping: clippy is not installed");
        return;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rustc = w.program("rustc");
    // clippy-driver is the workspace wrapper for the one crate: one compile, by clippy.
    assert_eq!(rustc.get("rustc/compiles"), Some(&1), "{rustc:#?}");
    assert!(
        rustc.get("rustc/driver:clippy").is_some_and(|n| *n >= 1),
        "{rustc:#?}"
    );
}

/// A logging wrapper like cargo's own `echo_wrapper` test helper.
fn logging_wrapper(w: &World) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = w.tmp.path().join("wrapper.log");
    let script = crate::support::write_script(
        &w.tmp.path().join("logwrap"),
        &format!("echo \"WRAPPED $*\" >> {}\nexec \"$@\"", log.display()),
    );
    (script, log)
}

#[test]
fn a_previous_rustc_wrapper_still_runs_after_tally() {
    let w = World::new();
    let (script, log) = logging_wrapper(&w);
    build_hello_wrapped_by(&w, w.cmd("cargo"), &script);
    let logged = std::fs::read_to_string(&log).unwrap();
    // The user's wrapper runs the real compiler (not tally, not the shim) for every compile.
    assert!(
        logged.lines().any(|l| l.contains("--crate-name hello")),
        "{logged}"
    );
    assert!(!logged.contains("/shims/"), "{logged}");
    // Not rustup's proxy either: cargo without a wrapper skips it, so tally does too.
    let cargo_home_bin = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo")
        })
        .join("bin/rustc ");
    assert!(
        !logged.contains(cargo_home_bin.to_str().unwrap()),
        "{logged}"
    );
    let rustc = w.program("rustc");
    assert_eq!(rustc.get("rustc/compiles"), Some(&1), "{rustc:#?}");
    let wrapped = logged.lines().filter(|l| l.starts_with("WRAPPED")).count() as u64;
    assert_eq!(
        wrapped, rustc["rustc/invocations"],
        "every counted run went through the user's wrapper"
    );
}

#[test]
fn a_wrapper_from_cargo_config_is_discovered_and_kept() {
    let w = World::new();
    let project = w.fixture("cargo-hello");
    let (script, log) = logging_wrapper(&w);
    std::fs::create_dir_all(project.join(".cargo")).unwrap();
    std::fs::write(
        project.join(".cargo/config.toml"),
        format!("[build]\nrustc-wrapper = \"{}\"\n", script.display()),
    )
    .unwrap();
    ok(w.cmd("cargo").args(["build"]).current_dir(&project));
    assert_compiled_once_through(&w, &log);
}

/// The user's wrapper ran the compile (its log names the crate), and tally counted it once.
fn assert_compiled_once_through(w: &World, wrapper_log: &std::path::Path) {
    assert!(
        std::fs::read_to_string(wrapper_log)
            .unwrap()
            .contains("--crate-name hello")
    );
    assert_eq!(w.program("rustc").get("rustc/compiles"), Some(&1));
}

/// `cargo --config build.rustc-wrapper=…`: cargo lets `RUSTC_WRAPPER` beat `--config`, so
/// unless the shim finds this wrapper, making tally the wrapper would silently drop it.
#[test]
fn a_wrapper_from_the_config_option_is_kept() {
    let w = World::new();
    let project = w.fixture("cargo-hello");
    let (script, log) = logging_wrapper(&w);
    ok(w.cmd("cargo")
        .arg("--config")
        .arg(format!(
            "build.rustc-wrapper={:?}",
            script.display().to_string()
        ))
        .arg("build")
        .current_dir(&project));
    assert_compiled_once_through(&w, &log);
}

#[test]
fn rustc_wrapper_tally_is_never_doubled() {
    let w = World::new();
    // The user already made tally the wrapper, and runs cargo through the shim.
    build_hello_wrapped_by(&w, w.cmd("cargo"), Path::new(TALLY));
    assert_eq!(w.program("rustc").get("rustc/compiles"), Some(&1));
}

#[test]
fn rustc_wrapper_without_the_shims() {
    let w = World::new();
    build_hello_wrapped_by(&w, w.direct("cargo"), Path::new(TALLY));
    assert_eq!(
        w.program("cargo"),
        map(&[]),
        "no cargo shim, no cargo counters"
    );
    let rustc = w.program("rustc");
    assert_eq!(rustc.get("rustc/compiles"), Some(&1), "{rustc:#?}");
    assert_all_from_cargo(&rustc);
}

#[test]
fn jobserver_survives_cargo_build_j2() {
    let w = World::new();
    let root = w.work.join("ws");
    let members = ["a", "b", "c", "d"];
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"2\"\nmembers = [{}]\n",
            members.map(|m| format!("\"{m}\"")).join(",")
        ),
    )
    .unwrap();
    for m in members {
        std::fs::create_dir_all(root.join(m).join("src")).unwrap();
        std::fs::write(
            root.join(m).join("Cargo.toml"),
            format!("[package]\nname = \"{m}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
        )
        .unwrap();
        std::fs::write(root.join(m).join("src/lib.rs"), "pub fn f() -> u32 { 1 }\n").unwrap();
    }
    let out = ok(w.cmd("cargo").args(["build", "-j2"]).current_dir(&root));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // rustc warns when the jobserver descriptors cargo passed are not there.
    assert!(!stderr.contains("jobserver"), "{stderr}");
    assert_eq!(w.program("rustc").get("rustc/compiles"), Some(&4));
    assert_eq!(w.program("cargo").get("cargo/build/flag:--jobs"), Some(&1));
}

#[test]
fn hard_linked_shims_find_their_binary_by_name_for_rustc_wrapper() {
    for (binary, name) in [
        (crate::support::TALLY_SHIM, "tally-shim"),
        (crate::support::TALLY, "tally"),
    ] {
        let w = World::new();
        // Shims as hard links to a copy of the binary in their own directory (no symlink to
        // resolve).
        let dir = w.tmp.path().join("hardlinks");
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(binary, dir.join(name)).unwrap();
        for tool in crate::support::TOOLS {
            std::fs::hard_link(dir.join(name), dir.join(tool)).unwrap();
        }
        let mut path = vec![dir.clone()];
        path.extend(std::env::split_paths(&w.real_path));
        let project = w.fixture("cargo-hello");
        let out = ok(w
            .cmd("cargo")
            .args(["build", "-v"])
            .env("PATH", std::env::join_paths(path).unwrap())
            .current_dir(&project));
        assert_eq!(w.program("cargo").get("cargo/subcommand:build"), Some(&1));
        // Compiles were counted: cargo ran the sibling under its own name as RUSTC_WRAPPER.
        assert_eq!(w.program("rustc").get("rustc/compiles"), Some(&1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("`{} ", dir.join(name).display())),
            "{stderr}"
        );
    }
}
