//! What this binary's tests share: seeded aggregates for the rendering tests and the browser
//! tests, three weeks of cargo and rustc data with a partition (`cargo/subcommand:*`,
//! `rustc/edition:*`), plain counters, a counter missing one week (withheld), and
//! version/OS/arch splits.

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
        total: Some(total),
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
    tally_test_support::reports::section(program, "1.95.0", counters)
}

/// `count` weeks of rustc from 2026-06-01 on: how compiles fared (outcomes, with crashes per
/// version), a compile-time histogram, 20 error codes and 10 lints.
pub fn rustc_weeks(count: usize) -> Vec<ProgramWeek> {
    let start = day("2026-06-01");
    (0..count)
        .map(|i| {
            let n = 200 + 10 * i as u64;
            let mut counters = vec![
                counter("rustc/outcome:ok", n, n, n * 300),
                counter("rustc/outcome:error", n / 2, n, n * 20),
                counter("rustc/outcome:ice", 12 + i as u64 % 3, n, 15),
                // Go's bucket names: sorted by name, `<10s` would come before `<1s`.
                counter("rustc/time/codegen-unopt:<0.1s", n, n, n * 150),
                counter("rustc/time/codegen-unopt:<1s", n - 20, n, n * 100),
                counter("rustc/time/codegen-unopt:<10s", n / 2, n, n * 40),
                counter("rustc/time/codegen-unopt:>=60s", 9, n, 11),
            ];
            for code in 0..20u64 {
                counters.push(counter(
                    &format!("rustc/error:E0{:03}", 300 + code),
                    6 + code * 3,
                    n,
                    50,
                ));
            }
            for (l, lint) in [
                "unused_variables",
                "dead_code",
                "unused_imports",
                "unused_mut",
                "non_snake_case",
                "unreachable_code",
                "unused_assignments",
                "deprecated",
                "unused_must_use",
                "other",
            ]
            .iter()
            .enumerate()
            {
                counters.push(counter(
                    &format!("rustc/lint:{lint}:warn"),
                    n / (l as u64 + 2),
                    n,
                    100,
                ));
            }
            let versions = map(&[("1.94.0", n / 4), ("1.95.0", n / 4), ("1.100.0", n - n / 2)]);
            let by_version = [("1.94.0", 3u64), ("1.95.0", 2), ("1.100.0", 8)]
                .iter()
                .map(|(v, ices)| {
                    (
                        (*v).to_owned(),
                        vec![counter("rustc/outcome:ice", *ices, versions[*v], ices + 1)],
                    )
                })
                .collect();
            ProgramWeek {
                week: start.plus_days(7 * i as i64).expect("fixture week"),
                program: "rustc".to_owned(),
                reports: n,
                threshold: 5,
                counters,
                versions,
                os: map(&[("linux", n)]),
                arch: map(&[("x86_64", n)]),
                by_version,
            }
        })
        .collect()
}
