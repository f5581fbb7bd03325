//! Faults: loops, a PATH holding only the shims, corrupt files, unusable homes, tally off.

use std::os::unix::fs::PermissionsExt;

use crate::support::{TALLY, TALLY_SHIM, World, map, ok, run, write_script};

#[test]
fn shims_directory_twice_on_path() {
    let w = World::new();
    let alias = w.tmp.path().join("shims-again");
    std::os::unix::fs::symlink(&w.shims, &alias).unwrap();
    let mut dirs = vec![w.shims.clone(), alias, w.shims.clone()];
    dirs.extend(std::env::split_paths(&w.real_path));
    let path = std::env::join_paths(dirs).unwrap();
    let out = ok(w.cmd("rustc").arg("-V").env("PATH", path));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rustc "));
    assert_eq!(w.program("rustc").get("rustc/invocations"), Some(&1));
}

#[test]
fn only_shims_on_path_is_127_with_one_clear_line() {
    let w = World::new();
    let out = run(w.cmd("cargo").arg("build").env("PATH", &w.shims));
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("`cargo`") && stderr.contains(&w.shims.display().to_string()),
        "{stderr}"
    );
}

#[test]
fn a_loop_through_another_shim_manager_stops_with_127() {
    let w = World::new();
    // Another manager's `cargo` that hands over to whatever `cargo` is first on PATH: tally.
    let other = w.tmp.path().join("other");
    write_script(
        &other.join("cargo"),
        &format!("PATH={}:$PATH exec cargo \"$@\"", w.shims.display()),
    );
    let mut dirs = vec![w.shims.clone(), other];
    dirs.extend(std::env::split_paths(&w.real_path));
    let out = run(w
        .cmd("cargo")
        .arg("--version")
        .env("PATH", std::env::join_paths(dirs).unwrap()));
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("loop"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_corrupt_counter_file_is_quarantined_and_the_tool_runs() {
    let w = World::new();
    let file = w.first_counter_file();
    std::fs::write(&file, b"this is not a counter file\0\0\0garbage").unwrap();
    let out = ok(w.cmd("rustc").arg("-V"));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rustc "));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.program("rustc").get("rustc/invocations"), Some(&1));
    assert!(w.data.join("quarantine").read_dir().unwrap().count() >= 1);
}

/// The tool's output with tally's data directory made unusable in some way.
fn runs_unharmed(w: &World, configure: impl Fn(&mut std::process::Command)) {
    let mut via = w.cmd("rustc");
    via.arg("--print").arg("cfg");
    configure(&mut via);
    let via = run(&mut via);
    let direct = ok(w.direct("rustc").args(["--print", "cfg"]));
    assert_eq!(via.status.code(), Some(0));
    assert_eq!(via.stdout, direct.stdout);
    assert!(
        via.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&via.stderr)
    );
}

#[test]
fn unusable_or_missing_home_never_breaks_the_tool() {
    let w = World::new();
    // Read-only even for root.
    runs_unharmed(&w, |c| {
        c.env("TALLY_DIR", "/proc/tally-cannot-write-here");
    });
    // A path through a regular file.
    let file = w.tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    runs_unharmed(&w, |c| {
        c.env("TALLY_DIR", file.join("data"));
    });
    // A read-only data directory (mode 0555; root ignores it, the cases above do not).
    std::fs::create_dir_all(w.data.join("counters")).unwrap();
    std::fs::set_permissions(&w.data, std::fs::Permissions::from_mode(0o555)).unwrap();
    runs_unharmed(&w, |_| {});
    std::fs::set_permissions(&w.data, std::fs::Permissions::from_mode(0o755)).unwrap();
    // No home at all: nothing is counted, nothing written.
    let home = w.tmp.path().join("home");
    runs_unharmed(&w, |c| {
        c.env_remove("HOME").env_remove("TALLY_DIR");
    });
    assert!(std::fs::read_dir(&home).unwrap().next().is_none());
    // A relative TALLY_DIR is no home either: nothing lands in the working directory.
    runs_unharmed(&w, |c| {
        c.env("TALLY_DIR", "relative/dir");
    });
    assert!(!w.work.join("relative").exists());
}

#[test]
fn tally_off_and_do_not_track_write_nothing() {
    for (key, value) in [("TALLY", "off"), ("DO_NOT_TRACK", "1")] {
        let w = World::new();
        let project = w.fixture("cargo-hello");
        ok(w.cmd("cargo")
            .args(["build", "-q"])
            .env(key, value)
            .current_dir(&project));
        ok(w.cmd("rustc").arg("-V").env(key, value));
        assert!(
            !w.data.exists(),
            "{key}={value} created {}",
            w.data.display()
        );
    }
}

#[test]
fn force_arg0_makes_tally_a_shim() {
    let w = World::new();
    let out = ok(w.cmd(TALLY).arg("-V").env("TALLY_FORCE_ARG0", "rustc"));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rustc "));
    assert_eq!(
        w.program("rustc"),
        map(&[
            ("rustc/invocations", 1),
            ("rustc/caller:direct", 1),
            ("rustc/probe:version", 1)
        ])
    );
}

#[test]
fn mode_off_arranges_no_rustc_wrapper() {
    let w = World::new();
    let project = w.fixture("cargo-hello");
    // `cargo build -v` prints each rustc command, wrapper first.
    let on = ok(w.cmd("cargo").args(["build", "-v"]).current_dir(&project));
    assert!(
        String::from_utf8_lossy(&on.stderr).contains(&format!("`{TALLY_SHIM} ")),
        "the cargo shim sets RUSTC_WRAPPER to tally-shim"
    );
    let w = World::new();
    let project = w.fixture("cargo-hello");
    let off = ok(w
        .cmd("cargo")
        .args(["build", "-v"])
        .env("TALLY", "off")
        .current_dir(&project));
    let stderr = String::from_utf8_lossy(&off.stderr);
    assert!(stderr.contains("Running `"), "{stderr}");
    assert!(
        !stderr.contains(TALLY),
        "mode off must leave RUSTC_WRAPPER alone: {stderr}"
    );
}
