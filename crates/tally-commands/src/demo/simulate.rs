//! The demo collector's history: weeks of simulated installations, and the chart config its
//! upload config is generated from.
//!
//! The simulation is a fixed, seeded model (the same reports on every run with the same weeks),
//! meant to make the pages look like a collector's after some months: installations grow week
//! by week, a new Rust release is taken up, one release crashes more than the others, compiles
//! fail and take time, the usual errors and lints appear. It is not data about anyone. Every
//! name it uses comes from tally's own vocabulary (`tally_grammar`), as a real report's would;
//! a name missing from it is dropped, and a test checks that none is.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tally_home::Day;
use tally_protocol::{ProgramReport, Report};

/// Words for the pages and files: what the simulated reports are.
pub const NOTE: &str = "tally demo filled this collector with weeks of simulated installations \
     from a fixed random model; the one real report is yours, from the demo's sample builds.";

/// Rust releases of the simulation, oldest first, with the week index each appears in.
const RUST_RELEASES: [(&str, usize); 4] =
    [("1.92.0", 0), ("1.93.0", 0), ("1.94.0", 4), ("1.95.0", 9)];
/// The release that crashes more often than the others (what the crash chart should show).
const CRASHY: &str = "1.94.0";
const GO_RELEASES: [(&str, usize); 3] = [("1.22.8", 0), ("1.23.4", 0), ("1.24.1", 6)];

/// cargo's subcommands, with how likely a week has each and the most runs it has then.
const CARGO_SUBCOMMANDS: [(&str, f64, u64); 8] = [
    ("build", 0.85, 80),
    ("check", 0.7, 120),
    ("test", 0.6, 50),
    ("run", 0.45, 40),
    ("clippy", 0.3, 30),
    ("fmt", 0.25, 20),
    ("doc", 0.1, 5),
    ("add", 0.15, 4),
];
/// go's subcommands, as [`CARGO_SUBCOMMANDS`].
const GO_SUBCOMMANDS: [(&str, f64, u64); 6] = [
    ("build", 0.9, 60),
    ("test", 0.7, 40),
    ("run", 0.4, 20),
    ("vet", 0.3, 10),
    ("mod", 0.5, 8),
    ("fmt", 0.2, 10),
];

/// Error codes users hit, with how likely a week with errors has each.
const ERRORS: [(&str, f64); 12] = [
    ("E0308", 0.55),
    ("E0425", 0.35),
    ("E0599", 0.33),
    ("E0277", 0.30),
    ("E0382", 0.22),
    ("E0502", 0.15),
    ("E0433", 0.14),
    ("E0432", 0.12),
    ("E0412", 0.10),
    ("E0061", 0.08),
    ("E0282", 0.06),
    ("E0106", 0.05),
];
const RUSTC_LINTS: [(&str, f64); 8] = [
    ("unused_variables", 0.7),
    ("dead_code", 0.65),
    ("unused_imports", 0.6),
    ("unused_mut", 0.35),
    ("non_snake_case", 0.08),
    ("unreachable_code", 0.07),
    ("deprecated", 0.12),
    ("unused_must_use", 0.1),
];
const CLIPPY_LINTS: [(&str, f64); 6] = [
    ("needless_return", 0.4),
    ("redundant_clone", 0.3),
    ("needless_borrow", 0.45),
    ("uninlined_format_args", 0.5),
    ("len_zero", 0.2),
    ("single_match", 0.15),
];
/// Time buckets and the share of compiles in each, for debug codegen and for check compiles.
const CODEGEN_TIME: [(&str, f64); 5] = [
    ("<0.1s", 0.45),
    ("<1s", 0.35),
    ("<10s", 0.16),
    ("<60s", 0.035),
    (">=60s", 0.005),
];
const CHECK_TIME: [(&str, f64); 5] = [
    ("<0.1s", 0.6),
    ("<1s", 0.3),
    ("<10s", 0.09),
    ("<60s", 0.009),
    (">=60s", 0.001),
];

/// Installations reporting in the first simulated week, and how many more each week.
const FIRST_WEEK_INSTALLATIONS: u64 = 140;
const MORE_EACH_WEEK: u64 = 11;

/// Simulated reports for the calendar weeks starting on `mondays` (oldest first), from
/// platforms in `os` and `arch`.
pub fn reports(mondays: &[Day], os: &[&str], arch: &[&str], seed: u64) -> Vec<Report> {
    let vocabulary: BTreeSet<String> = tally_grammar::Tool::ALL
        .iter()
        .flat_map(|tool| tally_grammar::vocabulary(*tool))
        .chain(tally_grammar::outcome::vocabulary())
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for (w, monday) in mondays.iter().enumerate() {
        let installations = FIRST_WEEK_INSTALLATIONS + MORE_EACH_WEEK * w as u64;
        for _ in 0..installations {
            let week = monday.plus_days(rng.i64(0..7)).unwrap_or(*monday);
            let mut x = rng.f64();
            while x == 0.0 {
                x = rng.f64();
            }
            let platform = (
                os[rng.usize(..os.len())].to_owned(),
                arch[rng.usize(..arch.len())].to_owned(),
            );
            let mut sim = Installation {
                rng: &mut rng,
                week: w,
                vocabulary: &vocabulary,
            };
            let programs = sim.sections(&platform);
            if !programs.is_empty() {
                out.push(Report {
                    week,
                    x,
                    config_version: Some(1),
                    programs,
                });
            }
        }
    }
    out
}

struct Installation<'a> {
    rng: &'a mut fastrand::Rng,
    week: usize,
    vocabulary: &'a BTreeSet<String>,
}

impl Installation<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.f64() < p
    }

    /// The newest release out by this week (65%), or the one before. Two releases in use keep
    /// both above the publication threshold in the crashes-per-version chart (with a third,
    /// rarer one withheld, complementary suppression would withhold a second).
    fn release<'r>(&mut self, releases: &[(&'r str, usize)]) -> &'r str {
        let out: Vec<&str> = releases
            .iter()
            .filter(|(_, from)| *from <= self.week)
            .map(|(v, _)| *v)
            .collect();
        let back = usize::from(self.rng.f64() >= 0.65);
        out[out.len().saturating_sub(1 + back)]
    }

    fn section(
        &self,
        program: &str,
        version: &str,
        platform: &(String, String),
        counters: BTreeMap<String, u64>,
    ) -> ProgramReport {
        ProgramReport {
            program: program.to_owned(),
            version: version.to_owned(),
            os: platform.0.clone(),
            arch: platform.1.clone(),
            counters: counters
                .into_iter()
                .filter(|(name, n)| *n > 0 && self.vocabulary.contains(name))
                .collect(),
        }
    }

    fn sections(&mut self, platform: &(String, String)) -> Vec<ProgramReport> {
        let mut sections = Vec::new();
        if self.chance(0.9) {
            let version = self.release(&RUST_RELEASES);
            let (cargo, rustc) = self.rust(version);
            sections.push(self.section("cargo", version, platform, cargo));
            sections.push(self.section("rustc", version, platform, rustc));
            if self.chance(0.45) {
                let runs = self.rng.u64(1..30);
                let mut counters = BTreeMap::from([("rustfmt/invocations".to_owned(), runs)]);
                if self.chance(0.3) {
                    counters.insert("rustfmt/flag:--check".to_owned(), runs / 2 + 1);
                }
                sections.push(self.section("rustfmt", version, platform, counters));
            }
        }
        if self.chance(0.35) {
            let version = self.release(&GO_RELEASES);
            let mut counters = self.subcommand_counters("go", &GO_SUBCOMMANDS);
            if self.chance(0.25) {
                counters.insert("go/test/flag:-race".to_owned(), self.rng.u64(1..5));
            }
            sections.push(self.section("go", version, platform, counters));
            if self.chance(0.4) {
                let n = self.rng.u64(1..10);
                let gofmt = BTreeMap::from([
                    ("gofmt/invocations".to_owned(), n),
                    ("gofmt/flag:-l".to_owned(), n),
                ]);
                sections.push(self.section("gofmt", version, platform, gofmt));
            }
        }
        sections
    }

    /// `program`'s subcommands in one installation-week, each run with its chance and then
    /// 1 to `most` times, and `<program>/invocations`, their sum (at least 1).
    fn subcommand_counters(
        &mut self,
        program: &str,
        subcommands: &[(&str, f64, u64)],
    ) -> BTreeMap<String, u64> {
        let mut counters = BTreeMap::new();
        let mut total = 0;
        for &(sub, p, most) in subcommands {
            if self.chance(p) {
                let n = self.rng.u64(1..most);
                total += n;
                counters.insert(format!("{program}/subcommand:{sub}"), n);
            }
        }
        counters.insert(format!("{program}/invocations"), total.max(1));
        counters
    }

    /// One installation-week of cargo and of the compiles it ran.
    fn rust(&mut self, version: &str) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let mut cargo = self.subcommand_counters("cargo", &CARGO_SUBCOMMANDS);
        for (flag, p) in [
            ("--release", 0.4),
            ("--locked", 0.12),
            ("--workspace", 0.2),
            ("--all-targets", 0.15),
        ] {
            if self.chance(p) {
                cargo.insert(format!("cargo/build/flag:{flag}"), self.rng.u64(1..10));
            }
        }

        let mut rustc = BTreeMap::new();
        let compiles = self.rng.u64(20..1500);
        rustc.insert("rustc/invocations".to_owned(), compiles);
        rustc.insert("rustc/caller:cargo".to_owned(), compiles);
        // The 2024 edition is taken up over the weeks.
        let edition_2024 = 0.15 + 0.03 * self.week as f64;
        for (edition, p) in [("2021", 0.8), ("2024", edition_2024), ("2018", 0.15)] {
            if self.chance(p) {
                rustc.insert(
                    format!("rustc/edition:{edition}"),
                    self.rng.u64(1..compiles / 2 + 2),
                );
            }
        }
        let mut failed = 0;
        if self.chance(0.55) {
            failed = self.rng.u64(1..compiles / 10 + 2);
            rustc.insert("rustc/outcome:error".to_owned(), failed);
            for (code, p) in ERRORS {
                if self.chance(p) {
                    rustc.insert(format!("rustc/error:{code}"), self.rng.u64(1..failed + 2));
                }
            }
        }
        // Far more crashes than real compilers have, so that a demo-sized week publishes them.
        let crash = if version == CRASHY { 0.25 } else { 0.08 };
        let mut other = 0;
        if self.chance(crash) {
            other += 1;
            rustc.insert("rustc/outcome:ice".to_owned(), 1);
        }
        if self.chance(0.05) {
            other += 1;
            rustc.insert("rustc/outcome:signal".to_owned(), 1);
        }
        rustc.insert(
            "rustc/outcome:ok".to_owned(),
            compiles.saturating_sub(failed + other),
        );
        for (kind, buckets, share) in [
            ("codegen-unopt", CODEGEN_TIME, 0.55),
            ("check-unopt", CHECK_TIME, 0.35),
            ("codegen-opt", CODEGEN_TIME, 0.1),
        ] {
            let of_kind = (compiles as f64 * share) as u64;
            for (bucket, part) in buckets {
                let n = (of_kind as f64 * part * (0.5 + self.rng.f64())).round() as u64;
                rustc.insert(format!("rustc/time/{kind}:{bucket}"), n);
            }
        }
        for (lint, p) in RUSTC_LINTS {
            if self.chance(p) {
                rustc.insert(format!("rustc/lint:{lint}:warn"), self.rng.u64(1..60));
            }
        }
        if cargo.contains_key("cargo/subcommand:clippy") {
            let runs = cargo["cargo/subcommand:clippy"];
            rustc.insert("clippy/outcome:ok".to_owned(), runs * 5);
            if self.chance(0.3) {
                rustc.insert("clippy/outcome:error".to_owned(), runs);
            }
            for (lint, p) in CLIPPY_LINTS {
                if self.chance(p) {
                    rustc.insert(format!("clippy/lint:{lint}:warn"), self.rng.u64(1..40));
                }
            }
        }
        (cargo, rustc)
    }
}

/// A chart config (TOML, `config-schema/charts.schema.json`) asking for every counter tally
/// knows: one chart per counter family of each tool, histograms for time buckets.
pub fn charts_toml(os: &[&str], arch: &[&str]) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct File<'a> {
        os: &'a [&'a str],
        arch: &'a [&'a str],
        chart: Vec<Chart>,
    }
    #[derive(Serialize)]
    struct Chart {
        id: String,
        title: String,
        description: String,
        proposal: String,
        program: String,
        versions: String,
        counters: Vec<String>,
        kind: &'static str,
        margin: f64,
    }
    let mut charts = Vec::new();
    for tool in tally_grammar::Tool::ALL {
        let mut names = tally_grammar::vocabulary(tool);
        if tool == tally_grammar::Tool::Rustc {
            names.extend(tally_grammar::outcome::vocabulary());
        }
        // Family (the part before the first `:`) -> its buckets; a name without `:` alone.
        let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in names {
            match name.split_once(':') {
                Some((family, bucket)) => families
                    .entry(family.to_owned())
                    .or_default()
                    .push(bucket.to_owned()),
                None => {
                    families.entry(name).or_default();
                }
            }
        }
        for (family, buckets) in families {
            let is_time = family.contains("/time/");
            let (counters, kind) = if buckets.is_empty() {
                (vec![family.clone()], "share-over-time")
            } else {
                (
                    vec![format!("{family}:{{{}}}", buckets.join(","))],
                    if is_time { "histogram" } else { "partition" },
                )
            };
            let id: String = family
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            charts.push(Chart {
                id: format!("{}-{}", tool.name(), id.trim_matches('-')).chars().take(64).collect(),
                title: family.clone(),
                description: format!(
                    "The demo collector asks for every counter tally knows; this chart is {family} of {}.",
                    tool.name()
                ),
                proposal: "https://example.invalid/tally/demo".to_owned(),
                program: tool.name().to_owned(),
                versions: ">=0.0.0".to_owned(),
                counters,
                kind,
                margin: 0.05,
            });
        }
    }
    // Ids must be unique: a family and a tool-prefixed family could meet; number repeats.
    let mut seen = BTreeMap::new();
    for chart in &mut charts {
        let n: &mut u32 = seen.entry(chart.id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            chart.id = format!("{}-{n}", chart.id.chars().take(60).collect::<String>());
        }
    }
    Ok(toml::to_string(&File {
        os,
        arch,
        chart: charts,
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_simulated_name_is_in_the_vocabulary_and_the_weeks_grow() {
        let mondays: Vec<Day> = ["2026-10-05", "2026-10-12", "2026-10-19"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect();
        let reports = reports(&mondays, &["linux", "macos"], &["x86_64"], 7);
        let vocabulary: BTreeSet<String> = tally_grammar::Tool::ALL
            .iter()
            .flat_map(|tool| tally_grammar::vocabulary(*tool))
            .chain(tally_grammar::outcome::vocabulary())
            .collect();
        // The model names only what the vocabulary has (nothing is silently dropped).
        let mut names = BTreeSet::new();
        for report in &reports {
            assert!(report.x > 0.0 && report.x < 1.0);
            Report::parse(&report.to_canonical_json()).unwrap();
            for section in &report.programs {
                names.extend(section.counters.keys().cloned());
            }
        }
        for (code, _) in ERRORS {
            assert!(
                vocabulary.contains(&format!("rustc/error:{code}")),
                "{code}"
            );
        }
        for (lint, _) in RUSTC_LINTS {
            assert!(
                vocabulary.contains(&format!("rustc/lint:{lint}:warn")),
                "{lint}"
            );
        }
        for (lint, _) in CLIPPY_LINTS {
            assert!(
                vocabulary.contains(&format!("clippy/lint:{lint}:warn")),
                "{lint}"
            );
        }
        for name in [
            "rustc/outcome:ice",
            "rustc/time/codegen-unopt:>=60s",
            "cargo/build/flag:--release",
            "go/test/flag:-race",
            "gofmt/flag:-l",
            "rustfmt/flag:--check",
            "clippy/outcome:error",
        ] {
            assert!(names.contains(name), "{name} never simulated");
        }
        let per_week: Vec<usize> = mondays
            .iter()
            .map(|m| {
                reports
                    .iter()
                    .filter(|r| tally_protocol::aggregate::bucket_week(r.week) == *m)
                    .count()
            })
            .collect();
        assert!(per_week.windows(2).all(|w| w[0] < w[1]), "{per_week:?}");
        // Seeded: the same reports every time.
        assert_eq!(
            reports,
            super::reports(&mondays, &["linux", "macos"], &["x86_64"], 7)
        );
    }

    #[test]
    fn the_demo_charts_ask_for_every_counter_of_every_tool() {
        let text = charts_toml(&["linux"], &["x86_64"]).unwrap();
        let file: toml::Value = toml::from_str(&text).unwrap();
        let charts = file["chart"].as_array().unwrap();
        let mut ids = BTreeSet::new();
        let mut asked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for chart in charts {
            assert!(
                ids.insert(chart["id"].as_str().unwrap().to_owned()),
                "{chart}"
            );
            let program = chart["program"].as_str().unwrap().to_owned();
            for pattern in chart["counters"].as_array().unwrap() {
                let names =
                    tally_protocol::config::expand_pattern(pattern.as_str().unwrap()).unwrap();
                asked.entry(program.clone()).or_default().extend(names);
            }
        }
        for tool in tally_grammar::Tool::ALL {
            let asked = &asked[tool.name()];
            for name in tally_grammar::vocabulary(tool) {
                assert!(asked.contains(&name), "{name}");
            }
        }
        for name in tally_grammar::outcome::vocabulary() {
            assert!(asked["rustc"].contains(&name), "{name}");
        }
    }
}
