//! The rendered pages in a real headless Chromium: they load without console errors or refused
//! loads, the charts hold the expected series and points, the layout fits a phone-width
//! screen, and a screenshot of a seeded program page is written to the test's temporary
//! directory (`CARGO_TARGET_TMPDIR/program-page.png`; the committed screenshots come from the
//! real server and `tally view`).
//!
//! Skips (with a message) when Chromium is missing, unless `TALLY_REQUIRE_CHROMIUM=1`.

use crate::support::{self as fixtures, cargo_weeks, day, section};
use serde_json::json;
use tally_charts::{UserData, UserWeek, dashboard_index, program_page, user_view};
use tally_test_support::webdriver::{Browser, chart_titled, series_names};

/// The series drawn in each chart, as `{chart kind: [[series, points drawn], …]}` per chart.
const SERIES_SCRIPT: &str = r#"
return Array.from(document.querySelectorAll('svg.chart')).map(svg => ({
  kind: svg.dataset.chart,
  title: svg.dataset.title,
  width: svg.getBoundingClientRect().width,
  series: Array.from(svg.querySelectorAll('g.series')).map(g => ({
    name: g.dataset.series,
    points: g.querySelectorAll('circle.point, rect.segment, rect.bar').length,
    bands: g.querySelectorAll('polygon.band, line.whisker').length,
  })),
}));
"#;

/// A headless Chromium and a temporary directory for the pages it opens.
struct Pages {
    browser: Browser,
    dir: tempfile::TempDir,
}

impl Pages {
    /// `None` (with a message) when Chromium is missing (see [`Browser::start`]).
    fn start(width: u32, height: u32) -> Option<Pages> {
        let browser = Browser::start(width, height)?;
        let dir = tempfile::tempdir().expect("tempdir");
        Some(Pages { browser, dir })
    }

    /// Writes `html` as the page `name`; its `file://` URL.
    fn write(&self, name: &str, html: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, html).expect("write page");
        format!("file://{}", path.display())
    }
}

#[test]
fn pages_render_in_headless_chromium() {
    let Some(pages) = Pages::start(1280, 900) else {
        return;
    };
    let browser = &pages.browser;

    // Program page: partitions, counters, splits, bands.
    let url = pages.write("cargo.html", &program_page("cargo", &cargo_weeks(), 5));
    browser.goto_cleanly(&url);
    let charts = browser.eval(SERIES_SCRIPT, json!([]));
    let charts = charts.as_array().expect("charts");
    let find = |title_start: &str| chart_titled(charts, title_start);
    let subcommands = find("cargo/subcommand:");
    assert_eq!(subcommands["kind"], "partition");
    let names = series_names(subcommands);
    assert_eq!(
        names,
        [
            "cargo/subcommand:build",
            "cargo/subcommand:other",
            "cargo/subcommand:test"
        ]
    );
    for series in subcommands["series"].as_array().unwrap() {
        assert_eq!(series["points"], 3, "{series}");
        assert_eq!(series["bands"], 4, "one band and three whiskers: {series}");
    }
    let offline = find("cargo/flag:");
    assert_eq!(
        offline["series"][0]["points"], 2,
        "the withheld week is a gap"
    );
    let invocations = find("cargo/invocations");
    assert_eq!(invocations["kind"], "counter");
    let os = find("Reports by os");
    assert_eq!(os["series"].as_array().unwrap().len(), 2);
    assert!(
        charts.iter().all(|c| c["width"].as_f64().unwrap() > 100.0),
        "every chart is drawn with a width"
    );
    browser.screenshot(
        &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("program-page.png"),
        1100,
    );

    // Phone width: no horizontal scrolling, charts shrink to fit.
    assert_eq!(
        browser.overflow_on_a_phone(&url),
        0,
        "the program page fits 390 px"
    );

    // Index page.
    browser.resize(1280, 900);
    let url = pages.write("index.html", &dashboard_index(&fixtures::index()));
    browser.goto(&url);
    assert!(browser.console_problems().is_empty());
    let charts = browser.eval(SERIES_SCRIPT, json!([]));
    let series: Vec<&str> = charts[0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(series, ["all reports", "cargo", "rustc"]);
    let rows = browser.eval(
        "return document.querySelectorAll('table.weeks tbody tr').length;",
        json!([]),
    );
    assert_eq!(rows, json!(3));

    // User view.
    let data = UserData {
        data_dir: "/tmp/tally".to_owned(),
        mode: "local".to_owned(),
        weeks: vec![
            UserWeek {
                week: day("2026-11-12"),
                in_progress: false,
                programs: vec![section(
                    "cargo",
                    &[("cargo/invocations", 9), ("cargo/subcommand:build", 7)],
                )],
            },
            UserWeek {
                week: day("2026-11-19"),
                in_progress: true,
                programs: vec![section("cargo", &[("cargo/invocations", 3)])],
            },
        ],
    };
    let url = pages.write("view.html", &user_view(&data));
    browser.goto(&url);
    assert!(browser.console_problems().is_empty());
    let bars = browser.eval(
        "return Array.from(document.querySelectorAll('svg[data-chart=\"user-week\"] rect.bar')).map(r => [r.parentNode.dataset.series, Number(r.dataset.value)]);",
        json!([]),
    );
    assert_eq!(
        bars,
        json!([
            ["cargo/invocations", 3],
            ["cargo/invocations", 9],
            ["cargo/subcommand:build", 7]
        ])
    );
    assert_eq!(
        browser.overflow_on_a_phone(&url),
        0,
        "the user view fits 390 px"
    );
}

/// A page whose markup tried to load something from the network would be caught: this checks
/// that the console check itself works, so the "no console errors" assertions above can fail.
#[test]
fn console_check_sees_a_blocked_load() {
    let Some(pages) = Pages::start(800, 600) else {
        return;
    };
    let browser = &pages.browser;
    let page = program_page("cargo", &cargo_weeks(), 5)
        .replace("</body>", "<img src=\"http://127.0.0.1:9/x.png\"></body>");
    browser.goto(&pages.write("bad.html", &page));
    let problems = browser.console_problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Content Security Policy") || p.contains("x.png")),
        "a blocked image shows in the console: {problems:?}"
    );
}

#[test]
fn a_compiler_page_with_many_weeks_renders_in_headless_chromium() {
    let Some(pages) = Pages::start(1280, 900) else {
        return;
    };
    let browser = &pages.browser;
    let weeks = fixtures::rustc_weeks(30);
    let url = pages.write("rustc.html", &program_page("rustc", &weeks, 5));
    browser.goto_cleanly(&url);
    let charts = browser.eval(SERIES_SCRIPT, json!([]));
    let charts = charts.as_array().expect("charts");
    let kinds: Vec<&str> = charts.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    for kind in [
        "ice-by-version",
        "outcome-mix",
        "outcome-mix-weeks",
        "outcome-partition",
        "histogram",
        "histogram-weeks",
        "latest",
        "partition",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    // Each latest-week bar has its interval: whiskers drawn beside it.
    let bars = browser.eval(
        "return Array.from(document.querySelectorAll('svg[data-chart=\"latest\"] rect.bar')).map(r => [Number(r.dataset.low), Number(r.dataset.value), Number(r.dataset.high), r.getBoundingClientRect().width]);",
        json!([]),
    );
    let bars = bars.as_array().unwrap();
    assert!(bars.len() >= 15);
    for bar in bars {
        let (low, value, high, width) = (
            bar[0].as_f64().unwrap(),
            bar[1].as_f64().unwrap(),
            bar[2].as_f64().unwrap(),
            bar[3].as_f64().unwrap(),
        );
        assert!(low <= value && value <= high, "{bar}");
        assert!(width > 0.0, "{bar}");
    }
    assert!(charts.iter().all(|c| c["width"].as_f64().unwrap() > 100.0));
    let rows = browser.eval(
        "return document.querySelectorAll('table.weeks tbody tr').length;",
        json!([]),
    );
    assert_eq!(rows, json!(12), "the table keeps to the latest weeks");
    browser.screenshot(
        &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rustc-page.png"),
        1100,
    );
    assert_eq!(
        browser.overflow_on_a_phone(&url),
        0,
        "the rustc page fits 390 px"
    );
}
