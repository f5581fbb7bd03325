//! Merging reports into per-calendar-week aggregates, and publishing them under the threshold.
//!
//! [`MergedWeek`] is the private, unthresholded merge of every report of one calendar week
//! (stored as `merged/<monday>.json` next to the raw reports). [`MergedWeek::publish`] and
//! [`MergedWeek::summary`] turn it into the public [`ProgramWeek`] / [`WeekSummary`] types, and
//! are the only way anything leaves the server: every counter, split bucket, program and week
//! seen in fewer than `threshold` distinct reports is left out there.
//!
//! The unit is the report: a report with two sections for one program (say two versions used
//! in one week) counts once for the program, once for each version, and a counter is "in" the
//! report when its summed count over those sections is above zero.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tally_protocol::aggregate::{
    CounterAggregate, ProgramWeek, WeekSummary, bucket_week, wilson_interval,
};
use tally_protocol::{Day, Report};

/// Normal quantile of the published 95% intervals.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// The merged, unthresholded aggregate of one calendar week. Private to the server's store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedWeek {
    /// Monday of the calendar week.
    pub week: Day,
    /// Reports merged (all programs).
    pub reports: u64,
    pub programs: BTreeMap<String, MergedProgram>,
}

/// One program's merged counts in a calendar week.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergedProgram {
    /// Reports with at least one section for the program.
    pub reports: u64,
    pub counters: BTreeMap<String, MergedCounter>,
    pub versions: BTreeMap<String, u64>,
    pub os: BTreeMap<String, u64>,
    pub arch: BTreeMap<String, u64>,
    /// Per program version, the outcome counters ([`is_split_by_version`]) of that version's
    /// sections: what "compiler crashes per version" is drawn from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_version: BTreeMap<String, BTreeMap<String, MergedCounter>>,
}

/// Whether a counter is also merged per program version: the outcome families
/// (`rustc/outcome:ice`, `clippy/outcome:error`), which are compared across releases. Other
/// counters are not, as that would multiply every merge by the number of versions.
pub fn is_split_by_version(counter: &str) -> bool {
    counter
        .split_once(':')
        .is_some_and(|(family, _)| family.ends_with("/outcome"))
}

/// One counter's merged counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedCounter {
    /// Reports in which the counter summed above zero.
    pub reports_with: u64,
    /// Sum over all reports (saturating).
    pub total: u64,
}

impl MergedWeek {
    /// An empty merge for the calendar week starting on `monday`.
    pub fn new(monday: Day) -> MergedWeek {
        MergedWeek {
            week: monday,
            reports: 0,
            programs: BTreeMap::new(),
        }
    }

    /// Adds one report. The caller guarantees the report belongs to this calendar week and
    /// has not been added before.
    pub fn add(&mut self, report: &Report) {
        debug_assert_eq!(bucket_week(report.week), self.week);
        self.reports += 1;
        // Per program, the union of this report's sections.
        let mut per_program: BTreeMap<&str, ReportProgram<'_>> = BTreeMap::new();
        for section in &report.programs {
            let entry = per_program.entry(section.program.as_str()).or_default();
            entry.versions.insert(section.version.as_str());
            entry.os.insert(section.os.as_str());
            entry.arch.insert(section.arch.as_str());
            for (name, count) in &section.counters {
                let sum = entry.counters.entry(name.as_str()).or_insert(0);
                *sum = sum.saturating_add(*count);
                if is_split_by_version(name) {
                    let sum = entry
                        .by_version
                        .entry(section.version.as_str())
                        .or_default()
                        .entry(name.as_str())
                        .or_insert(0);
                    *sum = sum.saturating_add(*count);
                }
            }
        }
        for (program, seen) in per_program {
            let merged = self.programs.entry(program.to_string()).or_default();
            merged.reports += 1;
            for (bucket, values) in [
                (&mut merged.versions, seen.versions),
                (&mut merged.os, seen.os),
                (&mut merged.arch, seen.arch),
            ] {
                for value in values {
                    *bucket.entry(value.to_string()).or_insert(0) += 1;
                }
            }
            for (name, count) in seen.counters {
                let counter = merged.counters.entry(name.to_string()).or_default();
                if count > 0 {
                    counter.reports_with += 1;
                }
                counter.total = counter.total.saturating_add(count);
            }
            for (version, counters) in seen.by_version {
                let merged_version = merged.by_version.entry(version.to_string()).or_default();
                for (name, count) in counters {
                    let counter = merged_version.entry(name.to_string()).or_default();
                    if count > 0 {
                        counter.reports_with += 1;
                    }
                    counter.total = counter.total.saturating_add(count);
                }
            }
        }
    }

    /// The index entry for this week, or `None` if the week has fewer than `threshold`
    /// reports. Programs under the threshold are left out.
    pub fn summary(&self, threshold: u64) -> Option<WeekSummary> {
        if self.reports < threshold.max(1) {
            return None;
        }
        let programs = self
            .programs
            .iter()
            .filter(|(_, p)| p.reports >= threshold)
            .map(|(name, p)| (name.clone(), p.reports))
            .collect();
        Some(WeekSummary {
            week: self.week,
            reports: self.reports,
            programs,
        })
    }

    /// The public aggregate of `program`, or `None` if it has fewer than `threshold` reports
    /// this week (or none). Counters and split buckets under the threshold are left out.
    pub fn publish(&self, program: &str, threshold: u64) -> Option<ProgramWeek> {
        let merged = self.programs.get(program)?;
        if merged.reports < threshold.max(1) {
            return None;
        }
        let n = merged.reports;
        let counters = merged
            .counters
            .iter()
            .filter(|(_, c)| c.reports_with >= threshold.max(1))
            .map(|(name, c)| {
                let (low, high) = wilson_interval(c.reports_with, n, Z_95);
                CounterAggregate {
                    name: name.clone(),
                    reports_with: c.reports_with,
                    share: c.reports_with as f64 / n as f64,
                    low,
                    high,
                    total: c.total,
                }
            })
            .collect();
        let keep = |bucket: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
            let mut published: Vec<(&String, u64)> = bucket
                .iter()
                .filter(|(_, n)| **n >= threshold)
                .map(|(k, n)| (k, *n))
                .collect();
            // Complementary suppression: with exactly one bucket withheld, the program's report
            // count minus the published buckets would give the withheld bucket's count. Withhold
            // the smallest published bucket too, so only a sum of two can be derived.
            if bucket.len() - published.len() == 1
                && let Some(smallest) = published
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (name, n))| (*n, *name))
                    .map(|(i, _)| i)
            {
                published.remove(smallest);
            }
            published.into_iter().map(|(k, n)| (k.clone(), n)).collect()
        };
        let versions = keep(&merged.versions);
        // Per version, a counter's reports: the same suppression, over the versions, with a
        // version withheld from `versions` counted as withheld here too.
        let mut by_version: BTreeMap<String, Vec<CounterAggregate>> = BTreeMap::new();
        let names: BTreeSet<&String> = merged.by_version.values().flat_map(|c| c.keys()).collect();
        for name in names {
            let per_version: BTreeMap<String, u64> = merged
                .by_version
                .iter()
                .filter_map(|(v, c)| Some((v.clone(), c.get(name)?.reports_with)))
                .filter(|(_, n)| *n > 0)
                .collect();
            let published: BTreeMap<String, u64> = per_version
                .iter()
                .map(|(v, n)| (v.clone(), if versions.contains_key(v) { *n } else { 0 }))
                .collect();
            for (version, reports_with) in keep(&published) {
                let of = versions[&version];
                let (low, high) = wilson_interval(reports_with, of, Z_95);
                let total = merged.by_version[&version][name].total;
                by_version
                    .entry(version)
                    .or_default()
                    .push(CounterAggregate {
                        name: name.clone(),
                        reports_with,
                        share: reports_with as f64 / of as f64,
                        low,
                        high,
                        total,
                    });
            }
        }
        Some(ProgramWeek {
            week: self.week,
            program: program.to_string(),
            reports: n,
            threshold,
            counters,
            versions,
            os: keep(&merged.os),
            arch: keep(&merged.arch),
            by_version,
        })
    }
}

#[derive(Default)]
struct ReportProgram<'a> {
    versions: BTreeSet<&'a str>,
    os: BTreeSet<&'a str>,
    arch: BTreeSet<&'a str>,
    counters: BTreeMap<&'a str, u64>,
    by_version: BTreeMap<&'a str, BTreeMap<&'a str, u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::ProgramReport;

    fn section(version: &str, counters: &[(&str, u64)]) -> ProgramReport {
        ProgramReport {
            program: "cargo".into(),
            version: version.into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    fn report(x: f64, programs: Vec<ProgramReport>) -> Report {
        Report {
            week: "2026-11-11".parse().unwrap(),
            x,
            config_version: Some(1),
            programs,
        }
    }

    #[test]
    fn counts_reports_not_sections() {
        let mut week = MergedWeek::new("2026-11-09".parse().unwrap());
        week.add(&report(
            0.1,
            vec![
                section(
                    "1.95.0",
                    &[("cargo/invocations", 2), ("cargo/subcommand:build", 0)],
                ),
                section(
                    "1.96.0",
                    &[("cargo/invocations", 1), ("cargo/subcommand:build", 3)],
                ),
            ],
        ));
        week.add(&report(
            0.2,
            vec![section("1.95.0", &[("cargo/subcommand:build", 0)])],
        ));
        let cargo = &week.programs["cargo"];
        assert_eq!(week.reports, 2);
        assert_eq!(cargo.reports, 2);
        assert_eq!(cargo.versions["1.95.0"], 2);
        assert_eq!(cargo.versions["1.96.0"], 1);
        assert_eq!(cargo.os["linux"], 2);
        assert_eq!(
            cargo.counters["cargo/invocations"],
            MergedCounter {
                reports_with: 1,
                total: 3
            }
        );
        assert_eq!(
            cargo.counters["cargo/subcommand:build"],
            MergedCounter {
                reports_with: 1,
                total: 3
            }
        );
    }

    #[test]
    fn a_lone_withheld_bucket_cannot_be_derived_by_subtraction() {
        // 1 report on a rare version, 5 and 6 on two common ones, threshold 2: with the rare
        // one withheld, 12 - 5 - 6 would give it away; the smallest published bucket goes too.
        let mut week = MergedWeek::new("2026-11-09".parse().unwrap());
        let versions = [("1.80.0", 1), ("1.94.0", 5), ("1.95.0", 6)];
        let mut i = 0;
        for (version, count) in versions {
            for _ in 0..count {
                i += 1;
                week.add(&report(
                    i as f64 / 100.0,
                    vec![section(version, &[("cargo/invocations", 1)])],
                ));
            }
        }
        let published = week.publish("cargo", 2).unwrap();
        assert_eq!(published.reports, 12);
        assert_eq!(published.versions.len(), 1, "{:?}", published.versions);
        assert_eq!(published.versions["1.95.0"], 6);
        // Nothing withheld: nothing extra suppressed.
        let all = week.publish("cargo", 1).unwrap();
        assert_eq!(all.versions.len(), 3);
    }

    #[test]
    fn publishes_only_what_reaches_the_threshold() {
        let mut week = MergedWeek::new("2026-11-09".parse().unwrap());
        for i in 0..5 {
            let rare = if i == 0 { 1 } else { 0 };
            let version = if i == 0 { "1.96.0" } else { "1.95.0" };
            week.add(&report(
                0.1 + i as f64 / 10.0,
                vec![section(
                    version,
                    &[("cargo/invocations", 1), ("cargo/subcommand:doc", rare)],
                )],
            ));
        }
        let published = week.publish("cargo", 5).unwrap();
        assert_eq!(published.reports, 5);
        let names: Vec<_> = published.counters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["cargo/invocations"]);
        assert_eq!(published.versions.len(), 0, "4 and 1 are both under 5");
        assert_eq!(published.os["linux"], 5);
        assert!(week.publish("cargo", 6).is_none());
        assert!(week.summary(6).is_none());
        assert_eq!(week.summary(5).unwrap().programs["cargo"], 5);
        let inv = &published.counters[0];
        assert_eq!((inv.reports_with, inv.total, inv.share), (5, 5, 1.0));
        assert!(inv.low < 1.0 && inv.high == 1.0);
    }

    #[test]
    fn outcomes_are_published_per_version_under_the_same_threshold() {
        let mut week = MergedWeek::new("2026-11-09".parse().unwrap());
        let mut i = 0;
        // 1.95.0: 6 reports, 2 with an ICE; 1.94.0: 5 reports, none; 1.80.0: 1 report, an ICE.
        for (version, count, ices) in [("1.95.0", 6, 2), ("1.94.0", 5, 0), ("1.80.0", 1, 1)] {
            for j in 0..count {
                i += 1;
                let ice = u64::from(j < ices);
                let mut section = section(
                    version,
                    &[("rustc/outcome:ok", 3), ("rustc/outcome:ice", ice)],
                );
                section.program = "rustc".into();
                week.add(&report(i as f64 / 100.0, vec![section]));
            }
        }
        let all = week.publish("rustc", 1).unwrap();
        let ice = |published: &ProgramWeek, version: &str| {
            published.by_version.get(version).and_then(|c| {
                c.iter()
                    .find(|c| c.name == "rustc/outcome:ice")
                    .map(|c| (c.reports_with, c.share))
            })
        };
        assert_eq!(ice(&all, "1.95.0"), Some((2, 2.0 / 6.0)));
        assert_eq!(ice(&all, "1.80.0"), Some((1, 1.0)));
        assert_eq!(ice(&all, "1.94.0"), None, "no ICE, nothing to publish");
        // Threshold 2: 1.80.0 is withheld, and with it its ICE; the ICE counts left published
        // (1.95.0's 2) would give 1.80.0's away by subtraction from the 3 in all, so they go.
        let some = week.publish("rustc", 2).unwrap();
        assert!(!some.versions.contains_key("1.80.0"));
        assert_eq!(ice(&some, "1.80.0"), None);
        assert_eq!(ice(&some, "1.95.0"), None, "{:?}", some.by_version);
        // Only the outcome families are split by version.
        assert!(is_split_by_version("clippy/outcome:error"));
        assert!(!is_split_by_version("rustc/error:E0308"));
        assert!(!week.programs["rustc"].by_version["1.95.0"].contains_key("cargo/invocations"));
    }
}
