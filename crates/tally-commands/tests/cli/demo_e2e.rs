//! End to end: `tally demo` with the real `tally` and `tally-server` binaries, real cargo (and
//! go when installed), real HTTP on loopback; then the numbers the dashboard's JSON publishes
//! are checked against the invocations made, the dashboard and `tally view` are loaded in
//! headless Chromium, and screenshots are written to `<target>/tmp/screenshots/` (to the
//! committed `docs/screenshots/` only with `TALLY_BLESS_SCREENSHOTS=1`; without it, the test
//! checks that the committed ones were left alone).
//!
//! Binaries: the test runs `cargo build -p tally-client -p tally-server` (`tally`, the
//! `tally-shim` beside it that the demo links its shims to, and `tally-server`; the `CARGO` that
//! runs the test, same profile, same target dir) and uses `<target>/<profile>/tally`. Building
//! from the test keeps the binaries in step with the source without depending on the order in
//! which cargo builds test targets; cargo releases its target-dir lock before running tests, so
//! the nested build does not wait on the outer one.
//!
//! The browser part skips with a message when Chromium is missing unless
//! `TALLY_REQUIRE_CHROMIUM=1`; the Go checks skip when `go` is missing unless
//! `TALLY_REQUIRE_GO=1`; the rest always runs (it needs cargo, which runs the test).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tally_commands::demo::{
    CARGO_STEPS, DASHBOARD_LINE_PREFIX, DEMO_THRESHOLD, GO_STEPS, GOFMT_STEPS, HOME_LINE_PREFIX,
    SIMULATED_WEEKS,
};
use tally_protocol::Report;
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex};
use tally_test_support::webdriver::{self, Browser, repo_root};

/// The whole demo (builds included) must print its dashboard line within this time.
const DEMO_TIMEOUT: Duration = Duration::from_secs(600);

/// `<target>/<profile>`, from the test executable's own path (`<target>/<profile>/deps/…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps")
        .to_path_buf()
}

pub(crate) fn build_binaries() -> (PathBuf, PathBuf) {
    let dir = profile_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = repo_root(env!("CARGO_MANIFEST_DIR"));
    let mut build = Command::new(cargo);
    build
        .current_dir(&root)
        .args([
            "build",
            "-p",
            "tally-client",
            "-p",
            "tally-server",
            "--bin",
            "tally",
            "--bin",
            "tally-shim",
            "--bin",
            "tally-server",
        ])
        .env("CARGO_TARGET_DIR", dir.parent().expect("target dir"));
    if dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build of tally and tally-server failed"
    );
    (dir.join("tally"), dir.join("tally-server"))
}

/// Starts `cmd` (`what` names it) with its stdout piped to a thread that hands over its
/// lines, so that waits for them can be bounded; stderr goes to the test's.
fn spawn_with_lines(cmd: &mut Command, what: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The reports (`.json`) in `dir`.
pub(crate) fn reports_in(dir: &Path) -> Vec<Report> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| Report::parse(&std::fs::read(&p).unwrap()).unwrap())
        .collect()
}

pub(crate) fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    ureq::get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn has_go() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("go").is_file()))
}

pub(crate) struct RunningDemo {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Bounded: if closing stdin did not stop it within 20 s, kill it.
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tally demo --no-browser ARGS`, running until it printed its dashboard line.
pub(crate) struct StartedDemo {
    pub(crate) demo: RunningDemo,
    /// The dashboard's base URL, without the trailing `/`.
    pub(crate) dashboard: String,
    /// The demo's tally home.
    pub(crate) home: PathBuf,
    /// What it printed before the dashboard line.
    pub(crate) output: Vec<String>,
    /// The rest of its output, kept open so that the demo never writes to a closed pipe.
    pub(crate) _lines: mpsc::Receiver<String>,
}

/// Starts `tally demo --no-browser ARGS` with `tally` and waits for its dashboard line.
pub(crate) fn start_demo(tally: &Path, args: &[&str]) -> StartedDemo {
    let (mut child, lines) = spawn_with_lines(
        Command::new(tally)
            .args(["demo", "--no-browser"])
            .args(args)
            .env_remove("TALLY_DIR")
            .env_remove("TALLY_NOW")
            .stdin(Stdio::piped()),
        "tally demo",
    );
    let stdin = child.stdin.take();
    let demo = RunningDemo { child, stdin };

    let mut output = Vec::new();
    let mut home = None;
    let dashboard = loop {
        let line = lines.recv_timeout(DEMO_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "tally demo printed no dashboard line; output so far:\n{}",
                output.join("\n")
            )
        });
        println!("demo| {line}");
        if let Some(path) = line.strip_prefix(HOME_LINE_PREFIX) {
            home = Some(PathBuf::from(path));
        }
        if let Some(url) = line.strip_prefix(DASHBOARD_LINE_PREFIX) {
            break url.trim_end_matches('/').to_owned();
        }
        output.push(line);
    };
    StartedDemo {
        demo,
        dashboard,
        home: home.expect("the demo printed its tally home"),
        output,
        _lines: lines,
    }
}

/// Closes the demo's stdin and waits (30 s at most) for it to stop; its exit status.
pub(crate) fn stop_demo(demo: &mut RunningDemo) -> std::process::ExitStatus {
    drop(demo.stdin.take());
    (0..300)
        .find_map(|_| {
            let status = demo.child.try_wait().ok().flatten();
            if status.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            status
        })
        .expect("tally demo stopped within 30 s of stdin closing")
}

#[test]
fn demo_publishes_exactly_the_invocations_made() {
    let (tally, server) = build_binaries();
    assert!(server.is_file(), "tally-server was built next to tally");

    let StartedDemo {
        mut demo,
        dashboard,
        home,
        output,
        _lines,
    } = start_demo(&tally, &[]);
    let demo_root = home
        .parent()
        .expect("home is inside the demo dir")
        .to_path_buf();
    assert!(dashboard.starts_with("http://127.0.0.1:"), "{dashboard}");
    assert!(
        !home.starts_with(std::env::var("HOME").unwrap_or_default())
            || home.starts_with(std::env::temp_dir())
    );

    // The collector publishes the simulated weeks; one of them holds the real report too.
    let index: WeeksIndex = get_json(&format!("{dashboard}/api/weeks"));
    assert_eq!(index.threshold, DEMO_THRESHOLD);
    assert_eq!(index.weeks.len(), SIMULATED_WEEKS, "{index:?}");

    // The real report, as uploaded, is among the week's stored reports, once.
    let sent = reports_in(&home.join("reports/sent"));
    assert_eq!(sent.len(), 1, "one ended week was sent");
    let real = &sent[0];
    // The installation's own week starts on its weekday: the real report is in the calendar
    // week of that start, one of the simulated ones.
    let week = index
        .weeks
        .iter()
        .find(|w| w.week == tally_protocol::aggregate::bucket_week(real.week))
        .unwrap_or_else(|| panic!("no published week holds {}: {index:?}", real.week));
    assert!(
        week.programs.contains_key("cargo") && week.programs.contains_key("rustc"),
        "{week:?}"
    );
    // What the demo said about it: the latest week with its count of reports in words, and how
    // the installation's own week (the one `tally upload` named) relates to the Monday week
    // the collector files it under.
    let said = output.join("\n");
    let latest = &index.weeks[0];
    assert!(
        said.contains(&format!(
            "The collector now publishes the week of {} ({} report{}):",
            latest.week,
            latest.reports,
            if latest.reports == 1 { "" } else { "s" }
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("sending the week of {}", real.week))
            && said.contains(&format!("the week of {}.", week.week)),
        "{said}"
    );
    let fetch = |program: &str| -> ProgramWeek {
        get_json(&format!("{dashboard}/api/weeks/{}/{program}", week.week))
    };
    let week_dir = demo_root.join(format!("collector/store/reports/{}", week.week));
    let stored = stored_reports(&week_dir);
    assert_eq!(week.reports, stored.len() as u64);
    assert_eq!(
        stored.iter().filter(|r| *r == real).count(),
        1,
        "the real report is stored once"
    );

    // Every published number is the sum over the stored reports (the real one included), and
    // every counter left out was seen in fewer than the threshold's reports.
    let mut expected: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for report in &stored {
        let mut per_program: BTreeMap<(String, String), u64> = BTreeMap::new();
        for section in &report.programs {
            for (name, count) in &section.counters {
                *per_program
                    .entry((section.program.clone(), name.clone()))
                    .or_default() += count;
            }
        }
        for (key, total) in per_program {
            let entry = expected.entry(key).or_default();
            entry.0 += u64::from(total > 0);
            entry.1 += total;
        }
    }
    for program in week.programs.keys() {
        let published = fetch(program);
        let shown: BTreeMap<&str, (u64, u64)> = published
            .counters
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    (c.reports_with, c.total.unwrap_or(u64::MAX)),
                )
            })
            .collect();
        for ((p, name), (with, total)) in expected.iter().filter(|((p, _), _)| p == program) {
            match shown.get(name.as_str()) {
                Some(numbers) => assert_eq!(*numbers, (*with, *total), "{p} {name}"),
                None => assert!(
                    *with < DEMO_THRESHOLD,
                    "{p} {name} in {with} reports withheld"
                ),
            }
        }
        assert!(
            shown
                .keys()
                .all(|n| expected.contains_key(&(program.clone(), n.to_string())))
        );
    }

    // The real builds were counted: one cargo invocation per step, compiles through the
    // wrapper, go and gofmt when installed.
    let real_counts = |program: &str, name: &str| -> u64 {
        real.programs
            .iter()
            .filter(|s| s.program == program)
            .filter_map(|s| s.counters.get(name))
            .sum()
    };
    assert_eq!(
        real_counts("cargo", "cargo/invocations"),
        CARGO_STEPS.len() as u64
    );
    let mut by_subcommand: BTreeMap<String, u64> = BTreeMap::new();
    for step in CARGO_STEPS {
        *by_subcommand
            .entry(format!("cargo/subcommand:{}", step[0]))
            .or_default() += 1;
    }
    for (name, count) in &by_subcommand {
        assert_eq!(real_counts("cargo", name), *count, "{name}");
    }
    assert!(real_counts("rustc", "rustc/invocations") > 0);
    if has_go() {
        assert_eq!(real_counts("go", "go/invocations"), GO_STEPS.len() as u64);
        assert_eq!(
            real_counts("gofmt", "gofmt/invocations"),
            GOFMT_STEPS.len() as u64
        );
    } else {
        assert!(
            std::env::var("TALLY_REQUIRE_GO").map_or(true, |v| v != "1"),
            "TALLY_REQUIRE_GO=1 but go is not on PATH"
        );
        println!("go is not installed: the Go half of the demo was skipped");
    }

    // Every count the user's local report holds was sent (the demo's config asks for every
    // counter at rate 1).
    let local = reports_in(&home.join("reports/local"));
    assert_eq!(local.len(), 1, "one ended week");
    for section in &local[0].programs {
        for (name, count) in &section.counters {
            assert_eq!(
                real_counts(&section.program, name),
                *count,
                "{}: {name}",
                section.program
            );
        }
    }

    // The pages and files say the data is simulated.
    for path in ["/", "/programs/rustc", "/config", "/data/"] {
        let page = ureq::get(&format!("{dashboard}{path}"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert!(page.contains("SIMULATED DATA"), "{path}");
    }
    let data: serde_json::Value = get_json(&format!("{dashboard}/data/{}.json", week.week));
    assert_eq!(data["simulated"], json!(true));

    let committed = committed_screenshots();
    browser_checks(&dashboard, &tally, &home);
    if !webdriver::blessing_screenshots() {
        assert_eq!(
            committed_screenshots(),
            committed,
            "a test run without TALLY_BLESS_SCREENSHOTS=1 rewrote docs/screenshots/"
        );
    }

    // Closing stdin stops the demo, which stops the server and removes its directory.
    let status = stop_demo(&mut demo);
    assert!(status.success(), "{status}");
    assert!(
        !demo_root.exists(),
        "the demo removed {}",
        demo_root.display()
    );
    assert!(
        ureq::get(&format!("{dashboard}/healthz")).call().is_err(),
        "the server is stopped"
    );
}

/// The committed screenshots' names, sizes and modification times.
fn committed_screenshots() -> Vec<(PathBuf, u64, SystemTime)> {
    let dir = webdriver::committed_screenshot_dir();
    let mut shots: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            (entry.path(), meta.len(), meta.modified().unwrap())
        })
        .collect();
    shots.sort();
    shots
}

const SERIES_SCRIPT: &str = "return Array.from(document.querySelectorAll('svg.chart')).map(s => ({kind: s.dataset.chart, title: s.dataset.title, series: Array.from(s.querySelectorAll('g.series')).map(g => g.dataset.series)}));";

fn browser_checks(dashboard: &str, tally: &Path, home: &Path) {
    let Some(browser) = Browser::start(1280, 900) else {
        return;
    };
    let shots = webdriver::screenshot_dir(env!("CARGO_TARGET_TMPDIR"));

    browser.goto_cleanly(&format!("{dashboard}/"));
    let charts = browser.eval(SERIES_SCRIPT, json!([]));
    assert_eq!(charts[0]["kind"], "reports", "{charts}");
    let series = charts[0]["series"].as_array().expect("series");
    assert!(
        series.contains(&json!("all reports")) && series.contains(&json!("cargo")),
        "{charts}"
    );
    browser.screenshot(&shots.join("demo-dashboard.png"), 1100);

    browser.resize(1280, 900);
    browser.goto_cleanly(&format!("{dashboard}/programs/cargo"));
    let charts = browser.eval(SERIES_SCRIPT, json!([]));
    let subcommands = charts
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("cargo/subcommand:"))
        })
        .unwrap_or_else(|| panic!("no cargo/subcommand chart: {charts}"));
    assert_eq!(subcommands["kind"], "partition");
    for step in CARGO_STEPS {
        assert!(
            subcommands["series"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("cargo/subcommand:{}", step[0]))),
            "{subcommands}"
        );
    }
    browser.screenshot(&shots.join("demo-cargo.png"), 1100);

    // rustc: how compiles fare, with the simulated release that crashes more.
    browser.goto_cleanly(&format!("{dashboard}/programs/rustc"));
    let charts = browser.eval(SERIES_SCRIPT, json!([]));
    let kinds: Vec<&str> = charts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    for kind in ["ice-by-version", "outcome-mix", "histogram", "latest"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    browser.screenshot(&shots.join("demo-rustc.png"), 1100);

    // What is collected and why, and the open data.
    for (path, shot) in [("/config", "demo-config.png"), ("/data/", "demo-data.png")] {
        browser.goto_cleanly(&format!("{dashboard}{path}"));
        browser.screenshot(&shots.join(shot), 1100);
        assert_eq!(
            browser.overflow_on_a_phone(&format!("{dashboard}{path}")),
            0,
            "{path} fits a 390 px screen"
        );
        browser.resize(1280, 900);
    }

    // `tally view` on the demo's home, served on loopback.
    let (mut view, lines) = spawn_with_lines(
        Command::new(tally)
            .args(["view", "--addr", "127.0.0.1:0"])
            .env("TALLY_DIR", home)
            .stdin(Stdio::null()),
        "tally view",
    );
    let first = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("tally view printed its address");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    browser.resize(1280, 900);
    browser.goto(&url);
    let problems = browser.console_problems();
    let bars = browser.eval(
        "return Array.from(document.querySelectorAll('svg[data-chart=\"user-week\"] g.series')).map(g => [g.dataset.series, Number(g.querySelector('rect.bar').dataset.value)]);",
        json!([]),
    );
    browser.screenshot(&shots.join("tally-view.png"), 1100);
    let _ = view.kill();
    let _ = view.wait();
    assert!(
        problems.is_empty(),
        "console problems on tally view: {problems:?}"
    );
    let bars: BTreeMap<String, u64> = bars
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b[0].as_str().unwrap().to_owned(), b[1].as_u64().unwrap()))
        .collect();
    assert_eq!(
        bars.get("cargo/invocations"),
        Some(&(CARGO_STEPS.len() as u64)),
        "{bars:?}"
    );

    // `tally view --out` writes the same page to one file.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("report.html");
    let status = Command::new(tally)
        .args(["view", "--out"])
        .arg(&file)
        .env("TALLY_DIR", home)
        .status()
        .unwrap();
    assert!(status.success());
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(html.contains("data-series=\"cargo/invocations\""));
    browser.goto(&format!("file://{}", file.display()));
    assert!(browser.console_problems().is_empty());
    let _ = std::io::stdout().flush();
}

/// The reports stored for one week: every generation's (`reports/<monday>/<g>/*.json`, see
/// `tally_server::checkpoint`), a report stored in two generations taken once (by its day and
/// `x`, as the server's merges count it).
fn stored_reports(week_dir: &std::path::Path) -> Vec<Report> {
    let mut files = Vec::new();
    let mut dirs = vec![week_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    files.sort();
    files
        .iter()
        .map(|path| Report::parse(&std::fs::read(path).unwrap()).unwrap())
        .filter(|r| seen.insert((r.week, r.x.to_bits())))
        .collect()
}
