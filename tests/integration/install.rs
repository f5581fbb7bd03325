//! install.sh for one user in a temporary HOME: idempotent, marked profile edits, a clean
//! uninstall, and --purge, with the already built binary (`--binary`); and once with
//! install.sh's own release build, the binary users get.

use std::path::Path;
use std::process::Command;

use crate::support::{TALLY, TOOLS, have_strace, ok, run};

fn install_sh(home: &Path, args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap());
    run(&mut cmd)
}

/// Runs `rustc -V` through the shims in `bin` (first on PATH, the real rustc after them),
/// counting into `data`, and checks that rustc answered.
fn rustc_version_through(bin: &Path, data: &Path) {
    let out = ok(&mut rustc_version_command(
        bin,
        data,
        Command::new(bin.join("rustc")),
    ));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rustc "));
    // The first run's count waits for rustc's version, off the hot path.
    crate::support::settle(data);
}

/// `cmd` (the shim `bin/rustc`, or a tracer in front of it) with `-V`, the shims first on
/// PATH and the counters in `data`.
fn rustc_version_command(bin: &Path, data: &Path, mut cmd: Command) -> Command {
    let mut path = vec![bin.to_path_buf()];
    path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
    cmd.arg("-V")
        .env("PATH", std::env::join_paths(path).unwrap())
        .env("TALLY_DIR", data);
    cmd
}

/// The system calls the installed shim makes before it hands over (`strace`, up to the
/// second `execve`): tally's own code reads nothing in `/proc` (it knows itself by
/// `AT_EXECFN`; only glibc's static start-up may read the link `/proc/self/exe`, once, for
/// `$ORIGIN`), and the counter file is opened without access-time updates. Each was measured
/// at 0.01 to 0.02 ms of the hand-over (bench/README.md, "Techniques").
fn check_the_shims_system_calls(bin: &Path, data: &Path, scratch: &Path) {
    if !have_strace() {
        return;
    }
    let trace = scratch.join("shim.strace");
    let mut strace = Command::new("strace");
    strace.arg("-o").arg(&trace).arg(bin.join("rustc"));
    ok(&mut rustc_version_command(bin, data, strace));
    let trace = std::fs::read_to_string(&trace).unwrap();
    let shim: Vec<&str> = trace
        .lines()
        .skip_while(|l| !l.starts_with("execve("))
        .skip(1)
        .take_while(|l| !l.starts_with("execve("))
        .collect();
    assert!(
        trace.lines().filter(|l| l.starts_with("execve(")).count() >= 2,
        "the shim handed over with execve: {trace}"
    );
    let proc_reads: Vec<&&str> = shim.iter().filter(|l| l.contains("/proc/")).collect();
    let c_library_origin = |l: &&&str| l.starts_with("readlink(\"/proc/self/exe\"");
    assert!(
        proc_reads.len() <= 1 && proc_reads.iter().all(c_library_origin),
        "the shim looked at /proc: {shim:#?}"
    );
    assert!(
        shim.iter()
            .any(|l| l.contains(".count\"") && l.contains("O_NOATIME")),
        "the counter file opened with O_NOATIME: {shim:#?}"
    );
}

#[test]
fn install_twice_modify_path_uninstall_purge() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let original_profile = "# my profile\nexport EDITOR=vi\n";
    std::fs::write(home.join(".profile"), original_profile).unwrap();
    std::fs::write(home.join(".bashrc"), "alias ll='ls -l'\n").unwrap();

    for _ in 0..2 {
        let out = install_sh(home, &["--binary", TALLY, "--modify-path", "--no-demo"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(".local/share/tally/bin:$PATH"), "{stdout}");
    }
    let install_dir = home.join(".local/share/tally");
    let bin = install_dir.join("bin");
    // The tools' shims run tally-shim, installed from beside --binary; `tally` runs tally.
    for tool in TOOLS.iter().chain(&["tally"]) {
        let link = bin.join(tool);
        let binary = if *tool == "tally" {
            "tally"
        } else {
            "tally-shim"
        };
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            install_dir.join(binary),
            "{tool}"
        );
    }
    for profile in [".profile", ".bashrc"] {
        let text = std::fs::read_to_string(home.join(profile)).unwrap();
        assert_eq!(
            text.matches("# tally shims").count(),
            1,
            "{profile}: {text}"
        );
    }
    // The installed shim works and counts.
    let data = home.join("data");
    rustc_version_through(&bin, &data);
    assert!(data.join("counters").read_dir().unwrap().count() == 1);

    // Uninstall removes what it installed and only that; purge takes the data.
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh"))
        .arg("--purge")
        .env_clear()
        .env("HOME", home)
        .env("TALLY_DIR", &data)
        .env("PATH", std::env::var_os("PATH").unwrap());
    ok(&mut cmd);
    assert!(!install_dir.exists());
    assert!(!data.exists());
    assert_eq!(
        std::fs::read_to_string(home.join(".profile")).unwrap(),
        original_profile
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".bashrc")).unwrap(),
        "alias ll='ls -l'\n"
    );
    // Uninstalling again is harmless.
    assert!(install_sh(home, &["--uninstall"]).status.success());
}

#[test]
fn purge_refuses_a_directory_that_is_not_tallys() {
    let tmp = tempfile::tempdir().unwrap();
    let precious = tmp.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("thesis.tex"), "...").unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh"))
        .arg("--purge")
        .env_clear()
        .env("HOME", tmp.path())
        .env("TALLY_DIR", &precious)
        .env("PATH", std::env::var_os("PATH").unwrap());
    let out = run(&mut cmd);
    assert!(!out.status.success());
    assert!(precious.join("thesis.tex").exists());
}

/// install.sh's own build, as a newcomer runs it: release, static (scripts/release-build.sh).
/// The installed binary must count a real rustc run through its shim, and unwind a panic
/// (its entry point is C's `main`, which catches it, src/main.rs): `tally view` printing to a
/// pipe nobody reads, with SIGPIPE ignored, panics, and the panic must end in exit status 101
/// with Rust's message.
#[test]
fn install_builds_a_release_binary_that_counts_and_unwinds() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let real_home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh"))
        .arg("--no-demo")
        .env_clear()
        .env("HOME", &home)
        .env("PATH", std::env::var_os("PATH").unwrap())
        // The toolchain stays the user's own; only tally's files go to the new HOME.
        .env(
            "RUSTUP_HOME",
            std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| real_home.join(".rustup").into()),
        )
        .env(
            "CARGO_HOME",
            std::env::var_os("CARGO_HOME").unwrap_or_else(|| real_home.join(".cargo").into()),
        );
    let out = ok(&mut cmd);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A stock toolchain on Linux builds a static binary: glibc's static libraries come with
    // its development files, and Rust's musl target, where installed, is static anyway.
    assert!(
        said.contains("building tally and tally-shim (release, static"),
        "{said}"
    );
    assert!(!said.contains("not possible"), "{said}");
    let bin = home.join(".local/share/tally/bin");
    let data = tmp.path().join("data");
    assert_eq!(
        std::fs::read_link(bin.join("rustc")).unwrap(),
        home.join(".local/share/tally/tally-shim"),
        "the shims run the hot binary"
    );

    // The shim counts a real rustc run and hands over its output; the second run (the
    // counter file exists) is traced.
    rustc_version_through(&bin, &data);
    check_the_shims_system_calls(&bin, &data, tmp.path());
    let counted = tally_home::Home::at(&data).counter_store().list();
    assert_eq!(counted.len(), 1);
    let snapshot = counted[0].1.as_ref().unwrap();
    assert_eq!(snapshot.counters.get("rustc/invocations"), Some(&2));

    // A panic unwinds to `main`'s catch: 101 and Rust's message, not an abort.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = run(Command::new("sh")
        .args(["-c", "trap '' PIPE; exec \"$0\" view --out \"$1\""])
        .arg(bin.join("tally"))
        .arg(tmp.path().join("view.html"))
        .env("TALLY_DIR", &data)
        .env_remove("RUST_BACKTRACE")
        .stdout(writer));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    assert!(stderr.contains("failed printing to stdout"), "{stderr}");
}
