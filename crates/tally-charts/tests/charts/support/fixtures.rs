//! Seeded aggregates shared by the rendering tests and the browser tests: three weeks of cargo
//! and rustc data with a partition (`cargo/subcommand:*`, `rustc/edition:*`), plain counters,
//! a counter missing one week (withheld), and version/OS/arch splits.

#![allow(dead_code)]

use std::collections::BTreeMap;

use tally_protocol::aggregate::{
    CounterAggregate, ProgramWeek, WeekSummary, WeeksIndex, wilson_interval,
};
use tally_protocol::{Day, ProgramReport};

pub const WEEKS: [&str; 3] = ["2026-11-02", "2026-11-09", "2026-11-16"];

pub fn day(text: &str) -> Day {
    text.parse().expect("fixture day")
}

pub fn counter(name: &str, reports_with: u64, reports: u64, total: u64) -> CounterAggregate {
    let (low, high) = wilson_interval(reports_with, reports, 1.96);
    CounterAggregate {
        name: name.to_owned(),
        reports_with,
        share: reports_with as f64 / reports as f64,
        low,
        high,
        total,
    }
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// cargo's weeks: `cargo/invocations` every week, `cargo/flag:--offline` withheld in week 2.
pub fn cargo_weeks() -> Vec<ProgramWeek> {
    let reports = [40u64, 55, 61];
    WEEKS
        .iter()
        .zip(reports)
        .enumerate()
        .map(|(i, (week, n))| {
            let mut counters = vec![
                counter("cargo/invocations", n, n, n * 30),
                counter("cargo/subcommand:build", n - 2, n, n * 20),
                counter("cargo/subcommand:test", n / 2 + i as u64 * 3, n, n * 5),
                counter("cargo/subcommand:other", 7, n, 9),
            ];
            if i != 1 {
                counters.push(counter("cargo/flag:--offline", 6 + i as u64, n, 20));
            }
            ProgramWeek {
                week: day(week),
                program: "cargo".to_owned(),
                reports: n,
                threshold: 5,
                counters,
                versions: map(&[("1.94.0", n / 3), ("1.95.0", n - n / 3)]),
                os: map(&[("linux", n - 10), ("macos", 10)]),
                arch: map(&[("x86_64", n - 8), ("aarch64", 8)]),
                by_version: Default::default(),
            }
        })
        .collect()
}

pub fn index() -> WeeksIndex {
    let cargo = [40u64, 55, 61];
    let rustc = [30u64, 33, 50];
    WeeksIndex {
        threshold: 5,
        weeks: WEEKS
            .iter()
            .enumerate()
            .rev()
            .map(|(i, week)| WeekSummary {
                week: day(week),
                reports: cargo[i] + 4,
                programs: map(&[("cargo", cargo[i]), ("rustc", rustc[i])]),
            })
            .collect(),
    }
}

pub fn section(program: &str, counters: &[(&str, u64)]) -> ProgramReport {
    ProgramReport {
        program: program.to_owned(),
        version: "1.95.0".to_owned(),
        os: "linux".to_owned(),
        arch: "x86_64".to_owned(),
        counters: map(counters),
    }
}
