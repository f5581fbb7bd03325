//! The dashboard of a real `tally-server` (the built binary, on loopback, seeded with reports
//! uploaded over HTTP) in a real headless Chromium: the pages load without console errors, the
//! charts carry the series and values the JSON API publishes, nothing under the publication
//! threshold appears anywhere on a page, the layout fits a phone, and screenshots of the index
//! and the cargo page are taken: `dashboard.png` and `dashboard-cargo.png` under the target
//! directory (`target/tmp/tally-server-dashboard/`), so that a test run leaves the work tree
//! clean, or in `docs/screenshots/` with `TALLY_BLESS_SCREENSHOTS=1`.
//!
//! Skips (with a message) when Chromium is missing, unless `TALLY_REQUIRE_CHROMIUM=1`.

use std::path::Path;
use std::process::Stdio;
use std::time::SystemTime;

use crate::support::{Collector, serve_command};
use serde_json::json;
use tally_protocol::Report;
use tally_protocol::aggregate::ProgramWeek;
use tally_test_support::command::Reaped;
use tally_test_support::command::spawn_listening;
use tally_test_support::reports;
use tally_test_support::webdriver::{
    BLESS_SCREENSHOTS, Browser, blessing_screenshots, chart_titled, committed_screenshot_dir,
    screenshot_dir, series_names,
};

/// Report weeks (installation week starts) and how many reports each gets. 2026-11-05 (a
/// Thursday) is charted in the calendar week of Monday 2026-11-02.
const SEEDED: [(&str, u64); 3] = [("2026-11-05", 9), ("2026-11-10", 14), ("2026-11-16", 21)];
const THRESHOLD: u64 = 5;
/// Seen in 3 reports a week: under the threshold, so it must never be shown.
const WITHHELD: &str = "cargo/build/flag:--locked";

const SCREENSHOTS: [&str; 2] = ["dashboard.png", "dashboard-cargo.png"];

/// Each file's contents and modification time, `None` if it is missing.
fn snapshot(dir: &Path) -> Vec<Option<(Vec<u8>, SystemTime)>> {
    SCREENSHOTS
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).ok()?;
            Some((bytes, std::fs::metadata(&path).ok()?.modified().ok()?))
        })
        .collect()
}

fn start_server(collector: &Collector, store: &std::path::Path) -> (Reaped, String) {
    let mut started = spawn_listening(
        serve_command(collector, store.to_str().unwrap(), &collector.public_key)
            .args(["--threshold", &THRESHOLD.to_string(), "--flush-ms", "50"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let port = started.port();
    let child = started.drain_stdout();
    (Reaped(child), format!("http://127.0.0.1:{port}"))
}

/// The `i`th report of a week: every report counts invocations and builds; some test, some
/// build with --release; the first three use --locked (withheld).
fn seeded_report(week: &str, i: u64) -> Report {
    let mut counters = vec![
        ("cargo/invocations", 3 + i % 5),
        ("cargo/subcommand:build", 1 + i % 3),
    ];
    if i.is_multiple_of(2) {
        counters.push(("cargo/subcommand:test", 2));
    }
    if i % 3 != 1 {
        counters.push(("cargo/build/flag:--release", 1));
    }
    if i < 3 {
        counters.push((WITHHELD, 1));
    }
    let version = if i.is_multiple_of(4) {
        "1.94.0"
    } else {
        "1.95.0"
    };
    let mut cargo = reports::section("cargo", version, &counters);
    if i.is_multiple_of(5) {
        cargo.arch = "aarch64".into();
    }
    // Distinct x per report (the server keys reports by week and x).
    reports::report(week, (i as f64 + 0.5) / 100.0, vec![cargo])
}

const SERIES_SCRIPT: &str = r#"
return Array.from(document.querySelectorAll('svg.chart')).map(svg => ({
  kind: svg.dataset.chart,
  title: svg.dataset.title,
  series: Array.from(svg.querySelectorAll('g.series')).map(g => ({
    name: g.dataset.series,
    values: Array.from(g.querySelectorAll('circle.point, rect.segment')).map(p => [p.dataset.week, Number(p.dataset.value)]),
  })),
}));
"#;

#[test]
fn dashboard_shows_the_published_aggregates_in_chromium() {
    let Some(browser) = Browser::start(1280, 900) else {
        return;
    };
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let (_server, base) = start_server(&collector, store.path());
    for (week, count) in SEEDED {
        for i in 0..count {
            let report = seeded_report(week, i);
            let mut response = ureq::post(&format!("{base}/upload/{week}"))
                .send(&report.to_canonical_json()[..])
                .unwrap_or_else(|e| panic!("upload {week}/{i}: {e}"));
            assert!(
                response.status().is_success(),
                "{}",
                response.body_mut().read_to_string().unwrap()
            );
        }
    }
    let (shots, blessing) = (
        screenshot_dir(env!("CARGO_TARGET_TMPDIR")),
        blessing_screenshots(),
    );
    let committed_before = snapshot(&committed_screenshot_dir());
    let started = SystemTime::now();

    // Index.
    browser.goto_cleanly(&format!("{base}/"));
    let charts = browser.eval(SERIES_SCRIPT, json!([]));
    let all = &charts[0]["series"][0];
    assert_eq!(all["name"], "all reports");
    assert_eq!(
        all["values"],
        json!([["2026-11-02", 9], ["2026-11-09", 14], ["2026-11-16", 21]])
    );
    browser.screenshot(&shots.join("dashboard.png"), 1000);
    assert_eq!(
        browser.overflow_on_a_phone(&format!("{base}/")),
        0,
        "the index fits a 390 px screen"
    );

    // The cargo page: the chart values are the API's values.
    browser.resize(1280, 900);
    browser.goto_cleanly(&format!("{base}/programs/cargo"));
    let html = browser.eval("return document.documentElement.outerHTML;", json!([]));
    assert!(
        !html.as_str().unwrap().contains("--locked"),
        "a counter under the threshold reached the page"
    );
    let charts = browser.eval(SERIES_SCRIPT, json!([]));
    let charts = charts.as_array().unwrap();
    let chart = |title: &str| chart_titled(charts, title);
    let subcommands = chart("cargo/subcommand:");
    assert_eq!(subcommands["kind"], "partition");
    let names = series_names(subcommands);
    assert_eq!(names, ["cargo/subcommand:build", "cargo/subcommand:test"]);
    let flags = chart("cargo/build/flag:");
    let names = series_names(flags);
    assert_eq!(
        names,
        ["cargo/build/flag:--release"],
        "only the flag above the threshold"
    );
    for (week, _) in SEEDED {
        let published: ProgramWeek = ureq::get(&format!("{base}/api/weeks/{week}/cargo"))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let monday = published.week.to_string();
        for counter in &published.counters {
            let (group, _) = counter.name.split_once(':').unwrap_or((&counter.name, ""));
            let series = charts
                .iter()
                .filter(|c| {
                    c["title"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(&format!("{group}:")))
                })
                .flat_map(|c| c["series"].as_array().unwrap())
                .find(|s| s["name"] == json!(counter.name))
                .unwrap_or_else(|| panic!("{} is not charted", counter.name));
            let charted = series["values"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v[0] == json!(monday))
                .and_then(|v| v[1].as_f64());
            assert!(
                charted.is_some_and(|value| (value - counter.share).abs() < 1e-12),
                "{} in week {monday}: chart {series} vs share {}",
                counter.name,
                counter.share
            );
        }
        let by_arch = chart("Reports by arch");
        for (arch, n) in &published.arch {
            let series = by_arch["series"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == json!(arch))
                .unwrap();
            assert!(
                series["values"]
                    .as_array()
                    .unwrap()
                    .contains(&json!([monday, n])),
                "{arch} {monday}"
            );
        }
    }
    browser.screenshot(&shots.join("dashboard-cargo.png"), 1000);

    // Phone width: nothing scrolls sideways.
    assert_eq!(
        browser.overflow_on_a_phone(&format!("{base}/programs/cargo")),
        0,
        "the cargo page fits a 390 px screen"
    );

    // What is collected, and the open data: they load cleanly, fit a phone, and hold what the
    // API publishes (nothing withheld; every published week linked).
    for path in ["/config", "/data/"] {
        browser.resize(1280, 900);
        browser.goto_cleanly(&format!("{base}{path}"));
        let html = browser.eval("return document.documentElement.outerHTML;", json!([]));
        let html = html.as_str().unwrap();
        if path == "/data/" {
            assert!(!html.contains("--locked"));
            for (week, _) in SEEDED {
                let monday = tally_protocol::aggregate::bucket_week(week.parse().unwrap());
                assert!(html.contains(&format!("href=\"{monday}.csv\"")), "{monday}");
            }
        } else {
            // Every counter the served config names is listed, by chart.
            let listed = browser.eval(
                "return document.querySelectorAll('tr[data-counter]').length;",
                json!([]),
            );
            let config =
                tally_protocol::UploadConfig::parse(&std::fs::read(&collector.config).unwrap())
                    .unwrap();
            let names: usize = config
                .programs
                .iter()
                .map(|p| p.counter_rates().len())
                .sum();
            assert_eq!(listed, json!(names));
        }
        assert_eq!(
            browser.overflow_on_a_phone(&format!("{base}{path}")),
            0,
            "{path} fits a 390 px screen"
        );
    }

    // An unknown program is a 404 page, not an error in the browser.
    let response = ureq::get(&format!("{base}/programs/%3Cscript%3E"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    // The screenshots are fresh PNGs where this run keeps them, and the committed ones are
    // untouched unless blessing.
    for name in SCREENSHOTS {
        let path = shots.join(name);
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", path.display());
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(
            modified >= started,
            "{} was written by this run",
            path.display()
        );
    }
    if !blessing {
        assert!(
            snapshot(&committed_screenshot_dir()) == committed_before,
            "docs/screenshots/ changed without {BLESS_SCREENSHOTS}=1"
        );
    }
}
