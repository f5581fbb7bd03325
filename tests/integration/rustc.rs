//! rustc and rustfmt run directly through their shims.

use crate::support::{World, map, ok, run};

#[test]
fn rustc_direct_compile() {
    let w = World::new();
    let dir = w.fixture("rustc");
    ok(w.cmd("rustc")
        .args(["--edition", "2021", "-C", "opt-level=2", "hello.rs", "-o"])
        .arg(w.tmp.path().join("hello"))
        .current_dir(&dir));
    let out = ok(&mut std::process::Command::new(w.tmp.path().join("hello")));
    assert_eq!(out.stdout, b"hello from rustc\n");
    assert_eq!(
        w.program("rustc"),
        map(&[
            ("rustc/invocations", 1),
            ("rustc/caller:direct", 1),
            ("rustc/compiles", 1),
            ("rustc/edition:2021", 1),
            ("rustc/codegen:opt-level=2", 1),
            ("rustc/flag:-o", 1),
        ])
    );
}

#[test]
fn rustc_version_is_a_probe() {
    let w = World::new();
    ok(w.cmd("rustc").arg("-vV"));
    assert_eq!(
        w.program("rustc"),
        map(&[
            ("rustc/invocations", 1),
            ("rustc/caller:direct", 1),
            ("rustc/probe:version", 1),
        ])
    );
}

#[test]
fn rustc_argfile_is_counted_and_passed_unchanged() {
    let w = World::new();
    let dir = w.fixture("rustc");
    let argfile = w.tmp.path().join("args");
    std::fs::write(
        &argfile,
        format!(
            "--edition\n2018\nhello.rs\n-o\n{}\n",
            w.tmp.path().join("viaargfile").display()
        ),
    )
    .unwrap();
    ok(w.cmd("rustc")
        .arg(format!("@{}", argfile.display()))
        .current_dir(&dir));
    assert!(
        w.tmp.path().join("viaargfile").exists(),
        "rustc read the argfile itself"
    );
    let rustc = w.program("rustc");
    assert_eq!(rustc.get("rustc/argfile:read"), Some(&1));
    assert_eq!(rustc.get("rustc/edition:2018"), Some(&1));
    // A missing argfile: rustc fails as it would, tally counts it as unreadable.
    let out = run(w.cmd("rustc").arg("@/nonexistent/argfile"));
    assert!(!out.status.success());
    assert_eq!(w.program("rustc").get("rustc/argfile:unreadable"), Some(&1));
}

#[test]
fn rustc_plus_toolchain_goes_through_rustup() {
    if std::process::Command::new("rustup")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: rustc is not managed by rustup here, so `+toolchain` means nothing");
        return;
    }
    let w = World::new();
    let out = ok(w.cmd("rustc").args(["+stable", "--version"]));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rustc "));
    assert_eq!(w.program("rustc").get("rustc/probe:version"), Some(&1));
    assert_ne!(w.versions("rustc"), ["unknown"]);
}

#[test]
fn rustfmt_check_and_stdin() {
    let w = World::new();
    let dir = w.fixture("rustc");
    let out = run(w
        .cmd("rustfmt")
        .args(["--check", "--edition", "2021", "ugly.rs"])
        .current_dir(&dir));
    assert_eq!(out.status.code(), Some(1), "ugly.rs needs formatting");
    let out = ok(w
        .cmd("rustfmt")
        .args(["--edition", "2021"])
        .stdin(std::fs::File::open(dir.join("ugly.rs")).unwrap()));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fn main() {\n    println!(\"x\");\n}\n"
    );
    assert_eq!(
        w.program("rustfmt"),
        map(&[
            ("rustfmt/invocations", 2),
            ("rustfmt/flag:--check", 1),
            ("rustfmt/flag:--edition=2021", 2),
            ("rustfmt/input:files", 1),
            ("rustfmt/input:stdin", 1),
        ])
    );
}
