//! go and gofmt through their shims. Skipped with a message without Go, unless
//! TALLY_REQUIRE_GO=1.

use std::path::PathBuf;

use crate::support::{World, have_go, map, ok, run};

/// A world with the `go-hello` module copied in, and its path; `None` (the test skips, or
/// fails with `TALLY_REQUIRE_GO=1`) without Go.
fn go_hello() -> Option<(World, PathBuf)> {
    if !have_go() {
        return None;
    }
    let w = World::new();
    let dir = w.fixture("go-hello");
    Some((w, dir))
}

#[test]
fn go_build_test_fmt_and_gofmt() {
    let Some((w, dir)) = go_hello() else {
        return;
    };
    ok(w.cmd("go")
        .args(["build", "-trimpath", "-o"])
        .arg(w.tmp.path().join("hello"))
        .arg(".")
        .current_dir(&dir));
    let out = ok(&mut std::process::Command::new(w.tmp.path().join("hello")));
    assert_eq!(out.stdout, b"hello from go\n");
    ok(w.cmd("go")
        .args(["test", "-count=1", "./...", "-run", "TestGreeting"])
        .current_dir(&dir));
    // gofmt -l lists the unformatted file, exactly as without tally.
    let via = ok(w.cmd("gofmt").args(["-l", "."]).current_dir(&dir));
    let direct = ok(w.direct("gofmt").args(["-l", "."]).current_dir(&dir));
    assert_eq!(via.stdout, direct.stdout);
    assert_eq!(via.stdout, b"ugly.go\n");
    // go fmt rewrites it (running gofmt from GOROOT, which tally does not see).
    ok(w.cmd("go").args(["fmt", "./..."]).current_dir(&dir));
    let after = ok(w.direct("gofmt").args(["-l", "."]).current_dir(&dir));
    assert!(after.stdout.is_empty());

    assert_eq!(
        w.program("go"),
        map(&[
            ("go/invocations", 3),
            ("go/subcommand:build", 1),
            ("go/build/flag:-trimpath", 1),
            ("go/build/flag:-o", 1),
            ("go/subcommand:test", 1),
            ("go/test/flag:-count", 1),
            ("go/test/flag:-run", 1),
            ("go/subcommand:fmt", 1),
        ])
    );
    assert_eq!(
        w.program("gofmt"),
        map(&[
            ("gofmt/invocations", 1),
            ("gofmt/flag:-l", 1),
            ("gofmt/input:files", 1)
        ])
    );
    let go_version = String::from_utf8(ok(w.direct("go").arg("version")).stdout).unwrap();
    // Counted under the normalised version: `go1.19.8` is kept as `1.19.8`.
    let raw = go_version.split_whitespace().nth(2).unwrap();
    let expected = tally_home::normalize_version(raw).into_owned();
    assert!(
        !expected.starts_with("go") && expected.contains('.'),
        "{raw}"
    );
    assert_eq!(w.versions("go"), std::slice::from_ref(&expected));
    assert_eq!(w.versions("gofmt"), [expected]);
}

#[test]
fn go_test_failure_exit_code_is_kept() {
    let Some((w, dir)) = go_hello() else {
        return;
    };
    std::fs::write(
        dir.join("fail_test.go"),
        "package main\n\nimport \"testing\"\n\nfunc TestFail(t *testing.T) { t.Fatal(\"no\") }\n",
    )
    .unwrap();
    let via = run(w
        .cmd("go")
        .args(["test", "-count=1", "-run", "TestFail", "."])
        .current_dir(&dir));
    let direct = run(w
        .direct("go")
        .args(["test", "-count=1", "-run", "TestFail", "."])
        .current_dir(&dir));
    assert_eq!(via.status.code(), direct.status.code());
    assert_eq!(via.status.code(), Some(1));
}
