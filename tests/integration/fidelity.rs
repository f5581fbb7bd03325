//! The wrapped tool behaves exactly as without tally: exit status, signals, streams, stdin,
//! argument bytes, environment (minus tally's markers), argv[0], same process.

use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::support::{World, ok, run};

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

/// `/proc/<pid>/<what>`, empty once the process is gone.
fn proc_of(pid: u32, what: &str) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default()
}

/// Waits until both children run the real rustc (past every launcher: tally, rustup's proxy,
/// a Python or shell parent that execs) with the same command line.
fn wait_until_both_run_rustc(via: &std::process::Child, direct: &std::process::Child) {
    let exe_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    for _ in 0..1000 {
        // Compare the command lines too: a rustup proxy is also named `rustc`, and while it
        // execs the toolchain's rustc, /proc/<pid>/cmdline reads empty for a moment.
        let cmdline = proc_of(via.id(), "cmdline");
        if exe_of(via.id()).is_some_and(|e| e.file_name() == Some("rustc".as_ref()))
            && exe_of(direct.id()) == exe_of(via.id())
            && !cmdline.is_empty()
            && cmdline == proc_of(direct.id(), "cmdline")
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!(
        "the shim never became the real rustc with the same argv: {:?}",
        exe_of(via.id())
    );
}

/// rustc reading its source from stdin: it waits there, so its /proc entries can be read.
fn waiting_rustc(mut cmd: Command) -> std::process::Child {
    cmd.args(["-", "--crate-name", "waits"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

#[test]
fn same_process_signals_environment_and_argv0() {
    let w = World::new();
    let mut via = waiting_rustc(w.cmd("rustc"));
    let mut direct = waiting_rustc(w.direct("rustc"));
    // rustc waits on stdin; by then the shim has exec'd it in the same process.
    wait_until_both_run_rustc(&via, &direct);
    // argv identical (argv[0] is still `rustc`, which rustup's proxy dispatches on).
    assert_eq!(
        proc_of(via.id(), "cmdline"),
        proc_of(direct.id(), "cmdline")
    );
    // Environment identical, in the same order, but for tally's marker (and PATH, which this
    // test changed).
    let env_of = |pid: u32| {
        proc_of(pid, "environ")
            .split(|b| *b == 0)
            .filter(|v| {
                !v.is_empty() && !v.starts_with(b"TALLY_SHIM_GUARD=") && !v.starts_with(b"PATH=")
            })
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    };
    assert_eq!(env_of(via.id()), env_of(direct.id()));
    // Nothing of tally's is left open or mapped in the tool. The shim keeps the counter file
    // mapped and open up to the `exec`; close-on-exec and the new image take both away.
    // rustc opens and closes files while it starts (its libraries, the sysroot) before it
    // blocks on stdin, so one look can catch a passing descriptor in either process: compare
    // until the sets agree, and fail only if they never do (a descriptor tally leaked stays).
    let fds_of = |pid: u32| {
        let mut fds: Vec<(String, Option<String>)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            // A pipe's inode differs per child; its kind is what counts.
                            std::fs::read_link(e.path()).ok().map(|t| {
                                let t = t.to_string_lossy().into_owned();
                                t.split_once(":[")
                                    .map_or(t.clone(), |(kind, _)| kind.to_owned())
                            }),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        fds.sort();
        fds
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (via_fds, direct_fds) = loop {
        let (v, d) = (fds_of(via.id()), fds_of(direct.id()));
        if v == d || std::time::Instant::now() > deadline {
            break (v, d);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(via_fds, direct_fds);
    let maps = String::from_utf8_lossy(&proc_of(via.id(), "maps")).into_owned();
    assert!(!maps.contains(".count"), "{maps}");
    assert!(
        !w.counters().is_empty(),
        "the shim counted before it exec'd"
    );
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

/// A parent that ignores SIGPIPE and blocks a signal (as some build systems and CI runners
/// do) hands both on to the tool; tally must not reset them on the way (Rust's
/// `std::process::Command` would: it empties the signal mask and restores SIGPIPE).
///
/// The tool is a stand-in `gofmt` that execs `sleep`: rustc, cargo and go set their own
/// signal handling, which would hide what tally did; `sh` and `sleep` keep what they inherit.
#[test]
fn ignored_and_blocked_signals_reach_the_tool_unchanged() {
    let w = World::new();
    let tools = w.work.join("sleepy-tools");
    crate::support::write_script(&tools.join("gofmt"), "exec sleep 60");
    let start = |path: std::ffi::OsString| {
        // python3 execs the shim (or the tool) with SIGPIPE ignored and SIGUSR1 blocked.
        let mut parent = w.direct("python3");
        parent
            .arg("-c")
            .arg(
                "import os, signal, sys\n\
                 signal.signal(signal.SIGPIPE, signal.SIG_IGN)\n\
                 signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n\
                 os.execvp('gofmt', ['gofmt'])",
            )
            .env("PATH", path)
            .stdin(Stdio::null());
        parent.spawn().unwrap()
    };
    let dirs = |with_shims: bool| {
        let mut dirs = vec![];
        if with_shims {
            dirs.push(w.shims.clone());
        }
        dirs.push(tools.clone());
        dirs.extend(std::env::split_paths(&w.real_path));
        std::env::join_paths(dirs).unwrap()
    };
    let mut via = start(dirs(true));
    let mut direct = start(dirs(false));
    let is_sleep = |pid: u32| proc_of(pid, "comm") == b"sleep\n";
    for _ in 0..1000 {
        if is_sleep(via.id()) && is_sleep(direct.id()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        is_sleep(via.id()) && is_sleep(direct.id()),
        "the stand-in tool never started"
    );
    let signal_state = |pid: u32| {
        String::from_utf8_lossy(&proc_of(pid, "status"))
            .lines()
            .filter(|l| l.starts_with("SigIgn:") || l.starts_with("SigBlk:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let direct_state = signal_state(direct.id());
    let via_state = signal_state(via.id());
    for child in [&mut via, &mut direct] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(via_state, direct_state);
    // The parent's settings really are in force (else this test could not fail).
    let mask =
        |line: &str| u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
    let (blocked, ignored) = (mask(&direct_state[0]), mask(&direct_state[1]));
    assert_ne!(
        ignored & (1 << (13 - 1)),
        0,
        "SIGPIPE ignored: {direct_state:?}"
    );
    assert_ne!(
        blocked & (1 << (10 - 1)),
        0,
        "SIGUSR1 blocked: {direct_state:?}"
    );
    // And it was the shim that ran: gofmt was counted.
    assert_eq!(w.program("gofmt").get("gofmt/invocations"), Some(&1));
}
