//! How compiles fared, read back from the counter names [`crate::outcome`] makes: the summary
//! `tally show` and `tally view` print (the outcome mix, the weeks with a compiler crash per
//! compiler version, the time histogram, the most frequent error codes and lints).
//!
//! What it promises: [`parse`] accepts exactly the names [`crate::outcome::vocabulary`] holds
//! and nothing else, so a summary is made of vocabulary names only. Pure: the caller reads the
//! counter files or reports and hands their counts over, one section at a time.

use std::collections::BTreeMap;

use crate::outcome::{BUCKET_LABELS, Driver, KIND_LABELS, Outcome};

/// One compile counter, by what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileCounter<'a> {
    /// `<driver>/outcome:<outcome>`.
    Outcome { driver: Driver, outcome: Outcome },
    /// `<driver>/build-script-outcome:<outcome>`: a compile a build script ran.
    BuildScript { driver: Driver, outcome: Outcome },
    /// `<driver>/time/<kind>:<bucket>`; `bucket` indexes [`BUCKET_LABELS`].
    Time {
        driver: Driver,
        kind: &'static str,
        bucket: usize,
    },
    /// `rustc/error:<code>` (`other` for a code outside the vocabulary).
    Error { code: &'a str },
    /// `<driver>/lint:<lint>:<level>`.
    Lint {
        driver: Driver,
        lint: &'a str,
        level: &'a str,
    },
    /// `rustc/diagnostics:capped`.
    Capped,
}

/// What a compile counter name says, or `None` for any other name (a shape this module does
/// not make, or a code or lint outside the vocabulary).
pub fn parse(name: &str) -> Option<CompileCounter<'_>> {
    if name == crate::outcome::CAPPED {
        return Some(CompileCounter::Capped);
    }
    let (driver, rest) = if let Some(rest) = name.strip_prefix("rustc/") {
        (Driver::Rustc, rest)
    } else if let Some(rest) = name.strip_prefix("clippy/") {
        (Driver::Clippy, rest)
    } else {
        return None;
    };
    if let Some(label) = rest.strip_prefix("outcome:") {
        let outcome = Outcome::ALL.into_iter().find(|o| o.label() == label)?;
        return Some(CompileCounter::Outcome { driver, outcome });
    }
    if let Some(label) = rest.strip_prefix("build-script-outcome:") {
        let outcome = Outcome::ALL.into_iter().find(|o| o.label() == label)?;
        return Some(CompileCounter::BuildScript { driver, outcome });
    }
    if let Some(rest) = rest.strip_prefix("time/") {
        let (kind, bucket) = rest.split_once(':')?;
        let kind = KIND_LABELS.into_iter().find(|k| *k == kind)?;
        let bucket = BUCKET_LABELS.iter().position(|b| *b == bucket)?;
        return Some(CompileCounter::Time {
            driver,
            kind,
            bucket,
        });
    }
    if let Some(code) = rest.strip_prefix("error:") {
        let known = driver == Driver::Rustc
            && (code == "other"
                || crate::outcome::diagnostic_name(Some(code), "error")
                    == Some(format!("rustc/error:{code}")));
        return known.then_some(CompileCounter::Error { code });
    }
    if let Some(rest) = rest.strip_prefix("lint:") {
        let (lint, level) = rest.rsplit_once(':')?;
        if !crate::outcome::LEVELS.contains(&level) {
            return None;
        }
        let known = lint == "other" || {
            let code = match driver {
                Driver::Rustc => lint.to_string(),
                Driver::Clippy => format!("clippy::{lint}"),
            };
            crate::outcome::diagnostic_name(Some(&code), "warning").as_deref()
                == Some(&format!("{}/lint:{lint}:warn", driver.name())[..])
        };
        return known.then_some(CompileCounter::Lint {
            driver,
            lint,
            level,
        });
    }
    None
}

/// Weeks a compiler version compiled in, and how many of them saw it crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionWeeks {
    /// Weeks with at least one compile counted.
    pub weeks: u64,
    /// Of those, weeks with at least one compiler crash (`outcome:ice`).
    pub ice_weeks: u64,
}

/// The compile counters of many sections (weeks, versions, platforms), added up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileSummary {
    /// Compiles by driver, then by outcome in [`Outcome::ALL`]'s order.
    pub outcomes: BTreeMap<Driver, [u64; Outcome::ALL.len()]>,
    /// Compile times by driver and kind, then by bucket in [`BUCKET_LABELS`]' order.
    pub times: BTreeMap<(Driver, &'static str), [u64; BUCKET_LABELS.len()]>,
    /// Diagnostics with an error code, by code.
    pub errors: BTreeMap<String, u64>,
    /// Lint diagnostics by driver, lint and level.
    pub lints: BTreeMap<(Driver, String, String), u64>,
    /// Compiles whose diagnostics were too many to read them all.
    pub capped: u64,
    /// Compiles run by build scripts (probes), by driver, then by outcome in
    /// [`Outcome::ALL`]'s order: apart from every other field, which are the user's compiles.
    pub build_scripts: BTreeMap<Driver, [u64; Outcome::ALL.len()]>,
    /// Per compiler version, by (version, week): whether a compile crashed that week.
    weeks: BTreeMap<(String, String), bool>,
}

impl CompileSummary {
    /// The summary of many sections, each as (week, program, version, counters): what
    /// `tally show` and `tally view` sum over the weeks they show. See [`Self::add_section`].
    pub fn of_sections<'a, W: std::fmt::Display>(
        sections: impl IntoIterator<Item = (W, &'a str, &'a str, &'a BTreeMap<String, u64>)>,
    ) -> CompileSummary {
        let mut summary = CompileSummary::default();
        for (week, program, version, counters) in sections {
            summary.add_section(
                &week.to_string(),
                program,
                version,
                counters.iter().map(|(name, count)| (name.as_str(), *count)),
            );
        }
        summary
    }

    /// Adds one section of a report or counter file: `program`'s counters at `version` in the
    /// week `week`. Only `rustc`'s sections hold compile counters (the wrapper counts into the
    /// compiler's file, clippy's compiles included); any other program's is skipped.
    pub fn add_section<'a>(
        &mut self,
        week: &str,
        program: &str,
        version: &str,
        counters: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        if program != "rustc" {
            return;
        }
        let mut compiled = false;
        let mut crashed = false;
        for (name, count) in counters {
            if count == 0 {
                continue;
            }
            match parse(name) {
                Some(CompileCounter::Outcome { driver, outcome }) => {
                    let slot = &mut self.outcomes.entry(driver).or_default()[outcome as usize];
                    *slot = slot.saturating_add(count);
                    compiled = true;
                    crashed |= outcome == Outcome::Ice;
                }
                Some(CompileCounter::Time {
                    driver,
                    kind,
                    bucket,
                }) => {
                    let slot = &mut self.times.entry((driver, kind)).or_default()[bucket];
                    *slot = slot.saturating_add(count);
                }
                Some(CompileCounter::Error { code }) => {
                    let slot = self.errors.entry(code.to_string()).or_default();
                    *slot = slot.saturating_add(count);
                }
                Some(CompileCounter::Lint {
                    driver,
                    lint,
                    level,
                }) => {
                    let slot = self
                        .lints
                        .entry((driver, lint.to_string(), level.to_string()))
                        .or_default();
                    *slot = slot.saturating_add(count);
                }
                Some(CompileCounter::Capped) => self.capped = self.capped.saturating_add(count),
                Some(CompileCounter::BuildScript { driver, outcome }) => {
                    let slot = &mut self.build_scripts.entry(driver).or_default()[outcome as usize];
                    *slot = slot.saturating_add(count);
                }
                None => {}
            }
        }
        if compiled {
            let seen = self
                .weeks
                .entry((version.to_string(), week.to_string()))
                .or_default();
            *seen |= crashed;
        }
    }

    /// Whether any counter of the user's compiles was added (build scripts' compiles aside).
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
            && self.times.is_empty()
            && self.errors.is_empty()
            && self.lints.is_empty()
            && self.capped == 0
    }

    /// All compiles counted, over every driver and outcome.
    pub fn compiles(&self) -> u64 {
        self.outcomes.values().flatten().sum()
    }

    /// Per compiler version: the weeks it compiled in and those with a crash.
    pub fn version_weeks(&self) -> BTreeMap<&str, VersionWeeks> {
        let mut out: BTreeMap<&str, VersionWeeks> = BTreeMap::new();
        for ((version, _week), crashed) in &self.weeks {
            let entry = out.entry(version.as_str()).or_default();
            entry.weeks += 1;
            entry.ice_weeks += u64::from(*crashed);
        }
        out
    }

    /// The `n` most frequent error codes, most frequent first (ties by code).
    pub fn top_errors(&self, n: usize) -> Vec<(&str, u64)> {
        top(self.errors.iter().map(|(code, c)| (code.as_str(), *c)), n)
    }

    /// The `n` most frequent lints as (`driver/lint:level` name, count), most frequent first.
    pub fn top_lints(&self, n: usize) -> Vec<(String, u64)> {
        let named = self.lints.iter().map(|((driver, lint, level), c)| {
            (format!("{}/lint:{lint}:{level}", driver.name()), *c)
        });
        let mut all: Vec<(String, u64)> = named.collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

fn top<'a>(items: impl Iterator<Item = (&'a str, u64)>, n: usize) -> Vec<(&'a str, u64)> {
    let mut all: Vec<(&str, u64)> = items.collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    all.truncate(n);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_the_vocabulary() {
        let vocabulary = crate::outcome::vocabulary();
        for name in &vocabulary {
            assert!(parse(name).is_some(), "{name} is in the vocabulary");
        }
        for name in [
            "rustc/compiles",
            "rustc/outcome:crashed",
            "rustc/build-script-outcome:crashed",
            "clippy/build-script:ok",
            "rustc/time/check-unopt:<2s",
            "rustc/time/debug:<1s",
            "rustc/error:E9999",
            "clippy/error:E0308",
            "rustc/lint:not_a_lint:warn",
            "rustc/lint:unused_variables:loud",
            "clippy/lint:unused_variables:warn",
            "cargo/outcome:ok",
        ] {
            assert!(!vocabulary.contains(&name.to_string()), "{name}");
            assert_eq!(parse(name), None, "{name}");
        }
    }

    #[test]
    fn adds_sections_up() {
        let mut summary = CompileSummary::default();
        summary.add_section(
            "2026-11-02",
            "rustc",
            "1.91.0",
            [
                ("rustc/outcome:ok", 10),
                ("rustc/outcome:ice", 1),
                ("rustc/time/check-unopt:<1s", 11),
                ("rustc/error:E0308", 3),
                ("rustc/lint:unused_variables:warn", 5),
                ("cargo/subcommand:build", 4),
            ],
        );
        // Another platform in the same week: the week counts once.
        summary.add_section(
            "2026-11-02",
            "rustc",
            "1.91.0",
            [
                ("rustc/outcome:ok", 2),
                ("clippy/outcome:error", 1),
                ("rustc/build-script-outcome:error", 4),
                ("rustc/build-script-outcome:ok", 6),
            ],
        );
        summary.add_section(
            "2026-11-09",
            "rustc",
            "1.91.0",
            [("rustc/outcome:ok", 2), ("rustc/error:E0425", 3)],
        );
        summary.add_section(
            "2026-11-09",
            "rustc",
            "1.92.0",
            [("rustc/outcome:error", 1)],
        );
        // Not the compiler's section: skipped.
        summary.add_section("2026-11-09", "cargo", "1.92.0", [("rustc/outcome:ok", 9)]);
        // No compile in this section: no week for its version.
        summary.add_section("2026-11-09", "rustc", "1.93.0", [("rustc/compiles", 1)]);

        // Build scripts' probes are apart: not in the compiles, nor their outcomes.
        assert_eq!(summary.compiles(), 17);
        assert_eq!(summary.build_scripts[&Driver::Rustc], [6, 4, 0, 0, 0]);
        assert_eq!(summary.outcomes[&Driver::Rustc], [14, 1, 1, 0, 0]);
        assert_eq!(summary.outcomes[&Driver::Clippy], [0, 1, 0, 0, 0]);
        assert_eq!(
            summary.times[&(Driver::Rustc, "check-unopt")],
            [0, 11, 0, 0, 0]
        );
        let versions = summary.version_weeks();
        assert_eq!(
            versions["1.91.0"],
            VersionWeeks {
                weeks: 2,
                ice_weeks: 1
            }
        );
        assert_eq!(
            versions["1.92.0"],
            VersionWeeks {
                weeks: 1,
                ice_weeks: 0
            }
        );
        assert!(!versions.contains_key("1.93.0"));
        assert_eq!(summary.top_errors(1), [("E0308", 3)]);
        assert_eq!(summary.top_errors(5), [("E0308", 3), ("E0425", 3)]);
        assert_eq!(
            summary.top_lints(5),
            [("rustc/lint:unused_variables:warn".to_string(), 5)]
        );
    }
}
