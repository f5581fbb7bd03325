//! The measurement layout: how one installation-week of counters becomes the vector of 1-bit
//! entries that the client secret-shares (Prio3SumVec, `bits = 1`), and how the collector reads
//! the summed vector back.
//!
//! The layout is part of the signed config. [`Layout::entries`] expands it into numbered
//! entries, always in the same order; [`Layout::measurement`] fills them from a report;
//! [`Layout::interpret`] turns the aggregate (entry-wise sums over a batch) into per-program
//! numbers with the meaning the plain mode's merge gives them (`tally-server`'s `merge.rs`).
//!
//! Per program, in layout order, the entries are:
//!
//! | entries | one bit meaning | what the sum gives |
//! | --- | --- | --- |
//! | `reports` | the week has a section for the program | the program's reports |
//! | `sampled` per distinct counter rate below 1, ascending | …and the report's `x` ≤ that rate | the denominator of those counters |
//! | `version` per bucket, then `other` | a section's version is in the bucket (`major.minor`) | reports per version |
//! | `os` per layout OS, `arch` per layout arch | a section runs on it | reports per OS, per arch |
//! | per counter: `presence` | the counter summed over the sections is > 0 (and `x` ≤ its rate) | reports with the counter |
//! | per counter with `count_bits = n`: `count` bits 0..n | binary digit *i* of the count, clipped to 2^n − 1 | Σ 2^i × sum_i: the clipped total |
//! | per `by_version` counter, per version bucket and `other` | presence among that version's sections | reports with it, per version |
//!
//! Why this shape (the reasons are spelled out in `docs/private-aggregation.md`):
//!
//! - **One task, one vector, every program in it.** A task ID is visible to both aggregators
//!   (and on the network path): a task per program or per version would tell them which programs
//!   and versions an installation uses. With segments, an aggregator learns only that a report
//!   arrived.
//! - **1-bit entries only.** Prio3SumVec has one bit width per task; a SumVec with `bits = n`
//!   encodes every entry as `n` proven bits anyway. Laying a wider count out as its own binary
//!   digits costs exactly the same and lets presence bits and counts share one vector.
//! - **Presence first, counts only where a chart sums events.** The unit of every share chart
//!   is the report; event counts are clipped (2^n − 1), which bounds what one installation can
//!   move a sum by and biases heavy users' totals down. Only outcome mixes and histograms need
//!   them.
//! - **Sample rates as denominator bits.** In a sum a 0 cannot say "not sampled": a counter
//!   kept only when `x` ≤ rate is divided by the number of reports with `x` ≤ rate, which the
//!   `sampled` bit of that rate counts.

use std::collections::{BTreeMap, BTreeSet};

use super::expand_pattern;
use crate::{ProgramConfig, Report, is_program_name};
use serde::{Deserialize, Serialize};

/// Largest vector a task may have: 100,000 one-bit entries make a report of about 1.7 MB.
pub const MAX_LENGTH: u32 = 100_000;

/// The name of the version bucket that takes every version not listed.
pub const OTHER_VERSION: &str = "other";

/// Widest count a layout may ask for: counts up to 65,535 a week.
pub const MAX_COUNT_BITS: u8 = 16;

/// How a week's counters become the vector (see the module docs for the order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Layout {
    /// Operating systems with an entry in every program's `os` segment (Rust's
    /// `std::env::consts::OS` names). Sections on any other OS are not measured.
    #[cfg_attr(test, schemars(inner(length(min = 1)), extend("uniqueItems" = true)))]
    pub os: Vec<String>,
    /// Architectures with an entry in every program's `arch` segment. Sections on any other
    /// architecture are not measured.
    #[cfg_attr(test, schemars(inner(length(min = 1)), extend("uniqueItems" = true)))]
    pub arch: Vec<String>,
    /// The programs, each with its segments, in vector order.
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub programs: Vec<ProgramLayout>,
}

/// One program's segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct ProgramLayout {
    /// The program's name (`tally_protocol::is_program_name`).
    #[cfg_attr(test, schemars(regex(pattern = crate::program::PROGRAM_NAME_REGEX)))]
    pub name: String,
    /// Version buckets, `major.minor` (`"1.95"`), each once; versions not listed fall into
    /// `other` (which is implicit, not listed).
    #[cfg_attr(test, schemars(inner(length(min = 1)), extend("uniqueItems" = true)))]
    pub versions: Vec<String>,
    /// Counters (names or `prefix:{a,b}` patterns), in vector order.
    pub counters: Vec<CounterLayout>,
    /// Counters (expanded names, each also in `counters`) whose presence is also laid out per
    /// version bucket (the plain mode's `by_version`, for crashes per version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_version: Vec<String>,
}

/// One counter, or a pattern of counters with the same settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct CounterLayout {
    /// A counter name or a `prefix:{a,b,c}` pattern.
    #[cfg_attr(test, schemars(regex(pattern = super::COUNTER_PATTERN_REGEX)))]
    pub name: String,
    /// Fraction in `(0, 1]`: the counter is measured in a report whose `x` is at most this.
    #[serde(default = "full_rate", skip_serializing_if = "is_full_rate")]
    #[cfg_attr(test, schemars(range(max = 1.0), extend("exclusiveMinimum" = 0.0)))]
    pub rate: f64,
    /// 0: presence only. `n` in `1..=16`: also the week's count, clipped to `2^n − 1`, as `n`
    /// binary digits.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cfg_attr(test, schemars(range(max = 16)))]
    pub count_bits: u8,
}

fn full_rate() -> f64 {
    1.0
}

fn is_full_rate(rate: &f64) -> bool {
    *rate == 1.0
}

fn is_zero(bits: &u8) -> bool {
    *bits == 0
}

/// What one entry of the vector means.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryKind {
    /// The week has a section for the program.
    Reports,
    /// The week has a section for the program and its `x` is at most `rate`.
    Sampled { rate: f64 },
    /// A section's version is in this bucket (`major.minor`, or `other`).
    Version { bucket: String },
    /// A section runs on this OS.
    Os { os: String },
    /// A section runs on this architecture.
    Arch { arch: String },
    /// The counter, summed over the program's sections, is above zero.
    Presence { counter: String },
    /// Binary digit `bit` of the counter's clipped sum.
    CountBit { counter: String, bit: u8 },
    /// The counter is above zero in the sections of this version bucket.
    VersionPresence { counter: String, bucket: String },
}

/// One numbered entry of the vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Position in the vector.
    pub index: usize,
    /// The program the entry belongs to.
    pub program: String,
    /// What its bit means.
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// Why a layout was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayoutError {
    #[error("the layout has no programs")]
    Empty,
    #[error(
        "layout program {0:?} is not a program name (1 to 64 lowercase ASCII letters, digits, `-` and `_`)"
    )]
    BadProgram(String),
    #[error("layout program {0:?} appears twice")]
    DuplicateProgram(String),
    #[error("layout {what} {value:?} appears twice or is empty")]
    BadBucket { what: &'static str, value: String },
    #[error("layout program {program}: counter pattern {pattern:?} is malformed")]
    BadPattern { program: String, pattern: String },
    #[error("layout program {program}: counter {counter:?} appears twice")]
    DuplicateCounter { program: String, counter: String },
    #[error("layout program {program}: counter {counter:?} has rate {rate}, outside (0, 1]")]
    BadRate {
        program: String,
        counter: String,
        rate: f64,
    },
    #[error(
        "layout program {program}: counter {counter:?} has count_bits {bits}, over {MAX_COUNT_BITS}"
    )]
    BadCountBits {
        program: String,
        counter: String,
        bits: u8,
    },
    #[error(
        "layout program {program}: by_version names {counter:?}, which is not one of its counters"
    )]
    UnknownByVersion { program: String, counter: String },
    #[error("the layout has {0} entries, over the {max} a task allows", max = MAX_LENGTH)]
    TooLong(usize),
}

/// A program's counters, expanded: (name, rate, count bits), in vector order.
struct Expanded<'a> {
    program: &'a ProgramLayout,
    counters: Vec<(String, f64, u8)>,
    /// Distinct rates below 1, ascending.
    rates: Vec<f64>,
}

impl Layout {
    /// Parses and validates a layout from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Layout, String> {
        let layout: Layout = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        layout.validate().map_err(|e| e.to_string())?;
        Ok(layout)
    }

    /// Checks what serde cannot: names, patterns, rates, widths, duplicates and the length.
    pub fn validate(&self) -> Result<(), LayoutError> {
        if self.programs.is_empty() {
            return Err(LayoutError::Empty);
        }
        check_buckets("os", &self.os)?;
        check_buckets("arch", &self.arch)?;
        let mut programs = BTreeSet::new();
        for program in &self.programs {
            if !is_program_name(&program.name) {
                return Err(LayoutError::BadProgram(
                    program.name.chars().take(80).collect(),
                ));
            }
            if !programs.insert(&program.name) {
                return Err(LayoutError::DuplicateProgram(program.name.clone()));
            }
            check_buckets("version bucket", &program.versions)?;
            if program.versions.iter().any(|v| v == OTHER_VERSION) {
                return Err(LayoutError::BadBucket {
                    what: "version bucket (`other` is implicit)",
                    value: OTHER_VERSION.into(),
                });
            }
            let expanded = expand(program)?;
            let names: BTreeSet<&str> = expanded.counters.iter().map(|c| c.0.as_str()).collect();
            let mut crossed = BTreeSet::new();
            for counter in &program.by_version {
                if !names.contains(counter.as_str()) || !crossed.insert(counter) {
                    return Err(LayoutError::UnknownByVersion {
                        program: program.name.clone(),
                        counter: counter.clone(),
                    });
                }
            }
        }
        let len = self.len_unchecked();
        if len > MAX_LENGTH as usize {
            return Err(LayoutError::TooLong(len));
        }
        Ok(())
    }

    fn expanded(&self) -> impl Iterator<Item = Expanded<'_>> {
        self.programs
            .iter()
            .map(|p| expand(p).expect("a validated layout expands"))
    }

    fn len_unchecked(&self) -> usize {
        self.programs
            .iter()
            .filter_map(|p| expand(p).ok())
            .map(|e| {
                let buckets = e.program.versions.len() + 1;
                1 + e.rates.len()
                    + buckets
                    + self.os.len()
                    + self.arch.len()
                    + e.counters
                        .iter()
                        .map(|c| 1 + usize::from(c.2))
                        .sum::<usize>()
                    + e.program.by_version.len() * buckets
            })
            .sum()
    }

    /// Number of entries: the VDAF's `length`. The layout must be valid.
    pub fn len(&self) -> usize {
        self.len_unchecked()
    }

    /// Whether the vector is empty (never, for a valid layout).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, numbered, in vector order. The layout must be valid.
    pub fn entries(&self) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(self.len());
        for e in self.expanded() {
            let program = &e.program.name;
            let mut push = |kind| {
                entries.push(Entry {
                    index: entries.len(),
                    program: program.clone(),
                    kind,
                })
            };
            push(EntryKind::Reports);
            for rate in &e.rates {
                push(EntryKind::Sampled { rate: *rate });
            }
            for bucket in version_buckets(e.program) {
                push(EntryKind::Version {
                    bucket: bucket.to_owned(),
                });
            }
            for os in &self.os {
                push(EntryKind::Os { os: os.clone() });
            }
            for arch in &self.arch {
                push(EntryKind::Arch { arch: arch.clone() });
            }
            for (name, _, bits) in &e.counters {
                push(EntryKind::Presence {
                    counter: name.clone(),
                });
                for bit in 0..*bits {
                    push(EntryKind::CountBit {
                        counter: name.clone(),
                        bit,
                    });
                }
            }
            for counter in &e.program.by_version {
                for bucket in version_buckets(e.program) {
                    push(EntryKind::VersionPresence {
                        counter: counter.clone(),
                        bucket: bucket.to_owned(),
                    });
                }
            }
        }
        entries
    }

    /// The vector for `report` (an upload copy or a local one: sections on an OS or
    /// architecture the layout does not name are skipped, and a counter is measured only when
    /// `report.x` is at most its rate). Every entry is 0 or 1. The layout must be valid.
    pub fn measurement(&self, report: &Report) -> Vec<u128> {
        let mut vector = Vec::with_capacity(self.len());
        for e in self.expanded() {
            let sections: Vec<_> = report
                .programs
                .iter()
                .filter(|s| {
                    s.program == e.program.name
                        && self.os.contains(&s.os)
                        && self.arch.contains(&s.arch)
                })
                .collect();
            let present = !sections.is_empty();
            let kept = |rate: f64| present && report.x <= rate;
            let bit = |on: bool| u128::from(on);
            vector.push(bit(present));
            for rate in &e.rates {
                vector.push(bit(kept(*rate)));
            }
            let buckets = version_buckets(e.program);
            let bucket_of = |version: &str| bucket_of(e.program, version);
            for bucket in &buckets {
                vector.push(bit(sections
                    .iter()
                    .any(|s| bucket_of(&s.version) == *bucket)));
            }
            for os in &self.os {
                vector.push(bit(sections.iter().any(|s| &s.os == os)));
            }
            for arch in &self.arch {
                vector.push(bit(sections.iter().any(|s| &s.arch == arch)));
            }
            let sum_of = |name: &str, bucket: Option<&str>| -> u64 {
                sections
                    .iter()
                    .filter(|s| bucket.is_none_or(|b| bucket_of(&s.version) == b))
                    .filter_map(|s| s.counters.get(name))
                    .fold(0u64, |sum, count| sum.saturating_add(*count))
            };
            let rates: BTreeMap<&str, f64> = e
                .counters
                .iter()
                .map(|(name, rate, _)| (name.as_str(), *rate))
                .collect();
            for (name, rate, bits) in &e.counters {
                let sum = if kept(*rate) { sum_of(name, None) } else { 0 };
                vector.push(bit(sum > 0));
                let clipped = sum.min((1u64 << bits) - 1);
                for i in 0..*bits {
                    vector.push(u128::from((clipped >> i) & 1));
                }
            }
            for counter in &e.program.by_version {
                let kept = kept(rates[counter.as_str()]);
                for bucket in &buckets {
                    vector.push(bit(kept && sum_of(counter, Some(bucket)) > 0));
                }
            }
        }
        vector
    }

    /// Reads an aggregate (the entry-wise sums over a batch, as the collector unshards them)
    /// back into per-program numbers. `None` if `sums` is not this layout's length.
    pub fn interpret(&self, sums: &[u128]) -> Option<BTreeMap<String, ProgramSums>> {
        if sums.len() != self.len() {
            return None;
        }
        let as_u64 = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        let mut out = BTreeMap::new();
        let mut next = sums.iter().copied();
        let mut take = || as_u64(next.next().expect("length checked"));
        for e in self.expanded() {
            let mut program = ProgramSums {
                reports: take(),
                ..ProgramSums::default()
            };
            let sampled: Vec<u64> = e.rates.iter().map(|_| take()).collect();
            let buckets = version_buckets(e.program);
            for bucket in &buckets {
                program.versions.insert((*bucket).to_owned(), take());
            }
            for os in &self.os {
                program.os.insert(os.clone(), take());
            }
            for arch in &self.arch {
                program.arch.insert(arch.clone(), take());
            }
            for (name, rate, bits) in &e.counters {
                let reports_with = take();
                let mut total = 0u64;
                for i in 0..*bits {
                    total = total.saturating_add(take().saturating_mul(1 << i));
                }
                let of = match e.rates.iter().position(|r| r == rate) {
                    Some(i) => sampled[i],
                    None => program.reports,
                };
                program.counters.insert(
                    name.clone(),
                    CounterSums {
                        reports_with,
                        of,
                        total: (*bits > 0).then_some(total),
                    },
                );
            }
            for counter in &e.program.by_version {
                for bucket in &buckets {
                    program
                        .by_version
                        .entry((*bucket).to_owned())
                        .or_default()
                        .insert(counter.clone(), take());
                }
            }
            out.insert(e.program.name.clone(), program);
        }
        Some(out)
    }
}

/// One program's numbers from an aggregate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProgramSums {
    /// Reports with a section for the program.
    pub reports: u64,
    /// Reports per version bucket (and `other`).
    pub versions: BTreeMap<String, u64>,
    /// Reports per OS.
    pub os: BTreeMap<String, u64>,
    /// Reports per architecture.
    pub arch: BTreeMap<String, u64>,
    /// Per counter.
    pub counters: BTreeMap<String, CounterSums>,
    /// Per version bucket, reports with each `by_version` counter.
    pub by_version: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One counter's numbers from an aggregate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CounterSums {
    /// Reports in which the counter was above zero.
    pub reports_with: u64,
    /// Reports in which the counter was measured (the program's reports, or for a counter with
    /// a rate below 1, those whose `x` was at most it): the denominator of its share.
    pub of: u64,
    /// The sum of the clipped weekly counts, for a counter with `count_bits`.
    pub total: Option<u64>,
}

impl ProgramLayout {
    /// A program's layout from the plain config's program section: its counters in order with
    /// their rates (a rate of 0 leaves the counter out), `count_bits` per expanded counter name
    /// from `count_bits_of`, the version buckets given, and `by_version` the counters named
    /// (those not in the program are ignored).
    pub fn from_program_config(
        program: &ProgramConfig,
        versions: Vec<String>,
        count_bits_of: impl Fn(&str) -> u8,
        by_version: &[String],
    ) -> ProgramLayout {
        // The larger rate of a name listed twice, as the plain mode resolves it.
        let rates = program.counter_rates();
        let mut seen = BTreeSet::new();
        let counters: Vec<CounterLayout> = program
            .counters
            .iter()
            .flat_map(|c| expand_pattern(&c.name).unwrap_or_default())
            .filter(|name| rates[name] > 0.0 && seen.insert(name.clone()))
            .map(|name| CounterLayout {
                rate: rates[&name],
                count_bits: count_bits_of(&name),
                name,
            })
            .collect();
        let names: BTreeSet<&str> = counters.iter().map(|c| c.name.as_str()).collect();
        ProgramLayout {
            name: program.name.clone(),
            versions,
            by_version: by_version
                .iter()
                .filter(|c| names.contains(c.as_str()))
                .cloned()
                .collect(),
            counters,
        }
    }
}

/// How a chart reads its counters, which decides what the layout gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    /// Shares of reports per bucket: presence only (outcome families also get counts, for the
    /// outcome mix, and `:ice` per version).
    Partition,
    /// A counter's share of reports week by week: presence only.
    ShareOverTime,
    /// Events per bucket: presence and clipped counts.
    Histogram,
}

/// One chart's counters, as a chart config names them.
#[derive(Debug, Clone)]
pub struct ChartCounters {
    pub program: String,
    /// Counter names or `prefix:{a,b}` patterns.
    pub counters: Vec<String>,
    pub kind: ChartKind,
}

/// Bits of a count where a chart sums events: counts up to 255 a week per installation.
pub const CHART_COUNT_BITS: u8 = 8;

/// The layout a chart config needs, and nothing more: per program (in order of first
/// appearance), the counters its charts name (each once, rate 1), with [`CHART_COUNT_BITS`]
/// count bits for those a histogram charts and for outcome families (`…/outcome:…`, whose mix
/// is charted in compiles), and the `…/outcome:ice` counters crossed with `versions` (crashes
/// per version). Versions not listed for a program fall into `other`.
pub fn for_charts(
    os: &[String],
    arch: &[String],
    charts: &[ChartCounters],
    versions: &BTreeMap<String, Vec<String>>,
) -> Layout {
    let mut programs: Vec<ProgramLayout> = Vec::new();
    for chart in charts {
        let index = match programs.iter().position(|p| p.name == chart.program) {
            Some(i) => i,
            None => {
                programs.push(ProgramLayout {
                    name: chart.program.clone(),
                    versions: versions.get(&chart.program).cloned().unwrap_or_default(),
                    counters: Vec::new(),
                    by_version: Vec::new(),
                });
                programs.len() - 1
            }
        };
        let program = &mut programs[index];
        for pattern in &chart.counters {
            for name in expand_pattern(pattern).unwrap_or_default() {
                let is_outcome = name
                    .split_once(':')
                    .is_some_and(|(family, _)| family.ends_with("/outcome"));
                let counts = chart.kind == ChartKind::Histogram || is_outcome;
                match program.counters.iter_mut().find(|c| c.name == name) {
                    Some(existing) => {
                        if counts {
                            existing.count_bits = CHART_COUNT_BITS;
                        }
                    }
                    None => {
                        if is_outcome && name.ends_with(":ice") {
                            program.by_version.push(name.clone());
                        }
                        program.counters.push(CounterLayout {
                            name,
                            rate: 1.0,
                            count_bits: if counts { CHART_COUNT_BITS } else { 0 },
                        });
                    }
                }
            }
        }
    }
    Layout {
        os: os.to_vec(),
        arch: arch.to_vec(),
        programs,
    }
}

fn check_buckets(what: &'static str, values: &[String]) -> Result<(), LayoutError> {
    let mut seen = BTreeSet::new();
    for value in values {
        if value.is_empty() || !seen.insert(value) {
            return Err(LayoutError::BadBucket {
                what,
                value: value.clone(),
            });
        }
    }
    Ok(())
}

fn expand(program: &ProgramLayout) -> Result<Expanded<'_>, LayoutError> {
    let mut counters = Vec::new();
    let mut names = BTreeSet::new();
    let mut rates = BTreeSet::new();
    for counter in &program.counters {
        let expanded = expand_pattern(&counter.name).ok_or_else(|| LayoutError::BadPattern {
            program: program.name.clone(),
            pattern: counter.name.clone(),
        })?;
        if !(counter.rate > 0.0 && counter.rate <= 1.0) {
            return Err(LayoutError::BadRate {
                program: program.name.clone(),
                counter: counter.name.clone(),
                rate: counter.rate,
            });
        }
        if counter.count_bits > MAX_COUNT_BITS {
            return Err(LayoutError::BadCountBits {
                program: program.name.clone(),
                counter: counter.name.clone(),
                bits: counter.count_bits,
            });
        }
        if counter.rate < 1.0 {
            rates.insert(counter.rate.to_bits());
        }
        for name in expanded {
            if !names.insert(name.clone()) {
                return Err(LayoutError::DuplicateCounter {
                    program: program.name.clone(),
                    counter: name,
                });
            }
            counters.push((name, counter.rate, counter.count_bits));
        }
    }
    // Positive f64s order like their bit patterns.
    let rates = rates.into_iter().map(f64::from_bits).collect();
    Ok(Expanded {
        program,
        counters,
        rates,
    })
}

fn version_buckets(program: &ProgramLayout) -> Vec<&str> {
    program
        .versions
        .iter()
        .map(String::as_str)
        .chain([OTHER_VERSION])
        .collect()
}

/// The bucket of a tool version: its `major.minor` if the program lists it, else `other`.
fn bucket_of<'a>(program: &'a ProgramLayout, version: &str) -> &'a str {
    crate::version::numeric_core(version)
        .map(|v| format!("{}.{}", v.major, v.minor))
        .and_then(|mm| program.versions.iter().find(|b| **b == mm))
        .map_or(OTHER_VERSION, String::as_str)
}

#[cfg(test)]
mod tests;
