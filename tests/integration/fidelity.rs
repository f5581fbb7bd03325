//! The wrapped tool behaves exactly as without tally: exit status, signals, streams, stdin,
//! argument bytes, environment (minus tally's markers), argv[0], same process.

use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::util::{World, ok, run};

/// Panic messages name the thread's OS id (`thread 'main' (4242) panicked`), which differs
/// between any two runs; everything else must match byte for byte.
fn without_thread_ids(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"' (") {
            let digits = bytes[i + 3..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits > 0 && bytes.get(i + 3 + digits) == Some(&b')') {
                out.extend_from_slice(b"' (N)");
                i += 3 + digits + 1;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Runs the same command with and without the shims and returns both outputs.
fn both(
    w: &World,
    program: &str,
    args: &[&str],
    dir: &std::path::Path,
) -> (std::process::Output, std::process::Output) {
    let via = run(w.cmd(program).args(args).current_dir(dir));
    let direct = run(w.direct(program).args(args).current_dir(dir));
    (via, direct)
}

#[test]
fn exit_codes_and_streams_are_identical() {
    let w = World::new();
    let rustc_dir = w.fixture("rustc");
    // 0, with stdout.
    let (via, direct) = both(&w, "rustc", &["--print", "cfg"], &rustc_dir);
    assert_eq!(via.status.code(), Some(0));
    assert_eq!(
        (via.status.code(), &via.stdout, &via.stderr),
        (direct.status.code(), &direct.stdout, &direct.stderr)
    );
    // 1, with a compile error on stderr.
    let (via, direct) = both(&w, "rustc", &["bad.rs", "-o", "/dev/null"], &rustc_dir);
    assert_eq!(via.status.code(), Some(1));
    assert!(!via.stderr.is_empty());
    assert_eq!(
        (via.status.code(), &via.stdout, &via.stderr),
        (direct.status.code(), &direct.stdout, &direct.stderr)
    );

    let project = w.fixture("cargo-hello");
    ok(w.direct("cargo")
        .args(["build", "-q"])
        .current_dir(&project));
    // 101 (a panic in the program cargo runs) and an arbitrary status.
    for args in [
        &["run", "-q", "--", "panic"][..],
        &["run", "-q", "--", "exit", "3"],
    ] {
        let (via, direct) = both(&w, "cargo", args, &project);
        assert_eq!(via.status.code(), direct.status.code(), "{args:?}");
        assert_eq!(via.stdout, direct.stdout, "{args:?}");
        assert_eq!(
            without_thread_ids(&via.stderr),
            without_thread_ids(&direct.stderr),
            "{args:?}"
        );
    }
    let (via, _) = both(&w, "cargo", &["run", "-q", "--", "panic"], &project);
    assert_eq!(via.status.code(), Some(101));
}

#[test]
fn stdin_is_passed_through() {
    let w = World::new();
    let project = w.fixture("cargo-hello");
    let mut child = w
        .cmd("cargo")
        .args(["run", "-q", "--", "echo-stdin"])
        .current_dir(&project)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = b"line one\nline two \xe2\x9c\x93\n";
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, input);
}

#[test]
fn non_utf8_arguments_reach_the_tool_byte_for_byte() {
    let w = World::new();
    let arg = std::ffi::OsString::from_vec(b"--cfg=caf\xe9\xff".to_vec());
    let via = run(w.cmd("rustc").arg(&arg).arg("-"));
    let direct = run(w.direct("rustc").arg(&arg).arg("-"));
    // rustc rejects the argument, naming its bytes (`caf\xE9\xFF`): the same bytes arrived.
    assert_eq!(via.status.code(), direct.status.code());
    assert_eq!(
        without_thread_ids(&via.stderr),
        without_thread_ids(&direct.stderr)
    );
    assert!(
        String::from_utf8_lossy(&via.stderr).contains("caf\\xE9\\xFF"),
        "{}",
        String::from_utf8_lossy(&via.stderr)
    );
    // Counted all the same (the argument itself as nothing).
    assert_eq!(w.program("rustc").get("rustc/invocations"), Some(&1));
}

#[test]
fn same_process_signals_environment_and_argv0() {
    let w = World::new();
    let spawn = |mut cmd: Command| {
        cmd.args(["-", "--crate-name", "waits"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    let mut via = spawn(w.cmd("rustc"));
    let mut direct = spawn(w.direct("rustc"));
    // rustc waits on stdin; by then the shim has exec'd it in the same process.
    let proc_of =
        |pid: u32, what: &str| std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
    let exe_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let mut settled = false;
    for _ in 0..1000 {
        // Both past every launcher (tally, rustup's proxy): the real rustc runs in each.
        // Compare the command lines too: a rustup proxy is also named `rustc`, and while it
        // execs the toolchain's rustc, /proc/<pid>/cmdline reads empty for a moment.
        let cmdline = proc_of(via.id(), "cmdline");
        if exe_of(via.id()).is_some_and(|e| e.file_name() == Some("rustc".as_ref()))
            && exe_of(direct.id()) == exe_of(via.id())
            && !cmdline.is_empty()
            && cmdline == proc_of(direct.id(), "cmdline")
        {
            settled = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        settled,
        "the shim never became the real rustc with the same argv: {:?}",
        exe_of(via.id())
    );
    // argv identical (argv[0] is still `rustc`, which rustup's proxy dispatches on).
    assert_eq!(
        proc_of(via.id(), "cmdline"),
        proc_of(direct.id(), "cmdline")
    );
    // Environment identical but for tally's marker (and PATH, which this test changed).
    let env_of = |pid: u32| {
        let mut vars: Vec<Vec<u8>> = proc_of(pid, "environ")
            .split(|b| *b == 0)
            .filter(|v| {
                !v.is_empty() && !v.starts_with(b"TALLY_SHIM_GUARD=") && !v.starts_with(b"PATH=")
            })
            .map(<[u8]>::to_vec)
            .collect();
        vars.sort();
        vars
    };
    assert_eq!(env_of(via.id()), env_of(direct.id()));
    // Signals reach the tool, and death by signal is reported as such.
    for child in [&mut via, &mut direct] {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
    }
    let (v, d) = (via.wait().unwrap(), direct.wait().unwrap());
    assert_eq!(v.signal(), Some(15));
    assert_eq!(v.signal(), d.signal());
}
