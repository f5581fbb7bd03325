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
use tally_protocol::config::layout::ProgramSums;
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
    /// Sum over all reports (saturating); `None` where it was not measured (a private
    /// aggregate's presence-only counter). A plain merge always has it, so its stored form is
    /// unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Reports in which the counter was measured, where that is not every report of the
    /// program: a private aggregate's sampled counter (a rate below 1 measures it only in
    /// reports whose `x` is at most the rate). Its share and interval are over these. A plain
    /// merge never sets it, and its stored form has no such field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<u64>,
}

impl MergedCounter {
    /// Counts one plain report's value of the counter.
    fn add(&mut self, count: u64) {
        if count > 0 {
            self.reports_with += 1;
        }
        self.total = Some(self.total.unwrap_or(0).saturating_add(count));
    }
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

    /// The merge of a week collected by private aggregation: `reports`, the number the leader
    /// aggregated, and `programs`, the batch's entry-wise sums read back through the layout
    /// (`Layout::interpret`). The layout counts what a plain merge counts, per report: a
    /// program's reports, its version buckets (`major.minor` or `other`, where a plain merge
    /// has the versions themselves), OS and architecture, the reports each counter is above
    /// zero in, and per version bucket the `by_version` counters. Buckets and counters seen in
    /// no report are left out, as a plain merge never has them. A counter's `total` is its
    /// clipped sum where the layout gives it `count_bits`, else not measured (`None`); a
    /// sampled counter's share is over the reports that measured it ([`MergedCounter::of`]).
    pub fn from_aggregate(
        monday: Day,
        reports: u64,
        programs: &BTreeMap<String, ProgramSums>,
    ) -> MergedWeek {
        let seen = |counts: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
            counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.clone(), *n))
                .collect()
        };
        let programs = programs
            .iter()
            .filter(|(_, p)| p.reports > 0)
            .map(|(name, p)| {
                let counters = p
                    .counters
                    .iter()
                    .filter(|(_, c)| c.reports_with > 0)
                    .map(|(counter, c)| {
                        let merged = MergedCounter {
                            reports_with: c.reports_with,
                            total: c.total,
                            of: (c.of != p.reports).then_some(c.of),
                        };
                        (counter.clone(), merged)
                    })
                    .collect();
                let by_version = p
                    .by_version
                    .iter()
                    .map(|(bucket, counters)| {
                        let present = counters
                            .iter()
                            .filter(|(_, n)| **n > 0)
                            .map(|(counter, n)| {
                                let merged = MergedCounter {
                                    reports_with: *n,
                                    ..MergedCounter::default()
                                };
                                (counter.clone(), merged)
                            })
                            .collect::<BTreeMap<_, _>>();
                        (bucket.clone(), present)
                    })
                    .filter(|(_, counters)| !counters.is_empty())
                    .collect();
                let merged = MergedProgram {
                    reports: p.reports,
                    counters,
                    versions: seen(&p.versions),
                    os: seen(&p.os),
                    arch: seen(&p.arch),
                    by_version,
                };
                (name.clone(), merged)
            })
            .collect();
        MergedWeek {
            week: monday,
            reports,
            programs,
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
                merged
                    .counters
                    .entry(name.to_string())
                    .or_default()
                    .add(count);
            }
            for (version, counters) in seen.by_version {
                let merged_version = merged.by_version.entry(version.to_string()).or_default();
                for (name, count) in counters {
                    merged_version
                        .entry(name.to_string())
                        .or_default()
                        .add(count);
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
                let of = c.of.unwrap_or(n).max(1);
                let (low, high) = wilson_interval(c.reports_with, of, Z_95);
                CounterAggregate {
                    name: name.clone(),
                    reports_with: c.reports_with,
                    share: c.reports_with as f64 / of as f64,
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
    use tally_test_support::reports;

    /// A cargo section of `version`.
    fn section(version: &str, counters: &[(&str, u64)]) -> ProgramReport {
        reports::section("cargo", version, counters)
    }

    fn report(x: f64, programs: Vec<ProgramReport>) -> Report {
        reports::report("2026-11-11", x, programs)
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
                total: Some(3),
                of: None,
            }
        );
        assert_eq!(
            cargo.counters["cargo/subcommand:build"],
            MergedCounter {
                reports_with: 1,
                total: Some(3),
                of: None,
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
        assert_eq!((inv.reports_with, inv.total, inv.share), (5, Some(5), 1.0));
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

    /// A week collected by private aggregation publishes what the plain merge of the same
    /// reports publishes: programs, counters (shares, intervals, totals where the layout
    /// carries counts), OS and architecture; versions by bucket; a sampled counter over the
    /// reports that measured it.
    #[test]
    fn a_private_aggregate_publishes_as_the_plain_merge_does() {
        use tally_protocol::config::layout::{CounterLayout, Layout, ProgramLayout};
        let counter = |name: &str, rate: f64, count_bits: u8| CounterLayout {
            name: name.into(),
            rate,
            count_bits,
        };
        let layout = Layout {
            os: vec!["linux".into(), "macos".into()],
            arch: vec!["x86_64".into(), "aarch64".into()],
            programs: vec![ProgramLayout {
                name: "cargo".into(),
                versions: vec!["1.95".into()],
                counters: vec![
                    counter("cargo/invocations", 1.0, 8),
                    counter("cargo/subcommand:build", 1.0, 0),
                    counter("cargo/subcommand:test", 0.5, 0),
                ],
                by_version: vec!["cargo/subcommand:build".into()],
            }],
        };
        layout.validate().unwrap();
        let reports: Vec<Report> = (0..40u64)
            .map(|i| {
                let x = (i as f64 + 0.5) / 40.0;
                let mut sections = vec![section(
                    if i % 3 == 0 { "1.95.0" } else { "1.96.1" },
                    &[
                        ("cargo/invocations", 1 + i % 9),
                        ("cargo/subcommand:build", i % 4),
                        ("cargo/subcommand:test", i % 2),
                    ],
                )];
                if i % 5 == 0 {
                    sections[0].arch = "aarch64".into();
                }
                report(x, sections)
            })
            .collect();
        let monday: Day = "2026-11-09".parse().unwrap();
        let mut plain = MergedWeek::new(monday);
        let mut sums = vec![0u128; layout.len()];
        for r in &reports {
            plain.add(r);
            for (sum, entry) in sums.iter_mut().zip(layout.measurement(r)) {
                *sum += entry;
            }
        }
        let private = MergedWeek::from_aggregate(
            monday,
            reports.len() as u64,
            &layout.interpret(&sums).unwrap(),
        );
        assert_eq!(private.summary(5), plain.summary(5));
        let (p, q) = (
            private.publish("cargo", 5).unwrap(),
            plain.publish("cargo", 5).unwrap(),
        );
        assert_eq!((p.reports, &p.os, &p.arch), (q.reports, &q.os, &q.arch));
        let by_name = |week: &ProgramWeek| -> BTreeMap<String, CounterAggregate> {
            week.counters
                .iter()
                .map(|c| (c.name.clone(), c.clone()))
                .collect()
        };
        let (pc, qc) = (by_name(&p), by_name(&q));
        assert_eq!(pc["cargo/invocations"], qc["cargo/invocations"]);
        let build = (&pc["cargo/subcommand:build"], &qc["cargo/subcommand:build"]);
        assert_eq!(
            (
                build.0.reports_with,
                build.0.share,
                build.0.low,
                build.0.high
            ),
            (
                build.1.reports_with,
                build.1.share,
                build.1.low,
                build.1.high
            )
        );
        // Presence only in the layout: not measured, where the plain merge has a sum.
        assert_eq!(build.0.total, None);
        assert!(build.1.total.is_some());
        // Sampled at 0.5: measured in the 20 reports with x <= 0.5, present in half of them.
        let test = &pc["cargo/subcommand:test"];
        assert_eq!((test.reports_with, test.share), (10, 0.5));
        // Versions by bucket: 1.95.0 is "1.95", 1.96.1 is "other".
        let plain_95: u64 = q
            .versions
            .iter()
            .filter(|(v, _)| v.starts_with("1.95."))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(p.versions.get("1.95"), Some(&plain_95));
        assert_eq!(p.versions.get("other"), Some(&(40 - plain_95)));
        // The stored form of a plain merge is unchanged: no `of` anywhere.
        assert!(!serde_json::to_string(&plain).unwrap().contains("\"of\""));
    }
}
