//! The collector's published aggregates: what `GET /api/weeks` and
//! `GET /api/weeks/{week}/{program}` return, and what the dashboard and `tally view` chart.
//!
//! The unit is the report (one installation-week). For each counter the server publishes how
//! many reports had it above zero, that share of all the program's reports with a Wilson 95%
//! interval, and the summed count. Anything seen in fewer reports than the publication
//! threshold is withheld from every public output (a privacy promise, not a display choice).
//!
//! Reports from installations whose weeks start on different weekdays are grouped into
//! calendar weeks by the Monday on or before their `week` day ([`bucket_week`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Day;

/// `GET /api/weeks`: every week that has published data, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeeksIndex {
    /// Reports seen in fewer than this many distinct reports are withheld.
    pub threshold: u64,
    pub weeks: Vec<WeekSummary>,
}

/// One calendar week in the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeekSummary {
    /// Monday of the calendar week.
    pub week: Day,
    /// Reports stored for this week (all programs; a report may cover several programs).
    pub reports: u64,
    /// Per program: how many reports had a section for it. Programs under the threshold are
    /// left out.
    pub programs: BTreeMap<String, u64>,
}

/// `GET /api/weeks/{week}/{program}`: one program's aggregates for one calendar week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramWeek {
    pub week: Day,
    pub program: String,
    /// Reports with a section for this program.
    pub reports: u64,
    pub threshold: u64,
    /// Counters seen in at least `threshold` reports, by name.
    pub counters: Vec<CounterAggregate>,
    /// Reports per program version, OS and arch; buckets under the threshold are left out.
    pub versions: BTreeMap<String, u64>,
    pub os: BTreeMap<String, u64>,
    pub arch: BTreeMap<String, u64>,
    /// Per published version, the outcome counters (`rustc/outcome:ice`, …) among that
    /// version's reports: `share` is `reports_with / versions[version]`. Counters under the
    /// threshold, and any whose count could be derived from the others, are left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_version: BTreeMap<String, Vec<CounterAggregate>>,
}

/// One counter's aggregate over a program-week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterAggregate {
    pub name: String,
    /// Reports in which the counter was above zero.
    pub reports_with: u64,
    /// `reports_with / reports`.
    pub share: f64,
    /// Wilson score 95% interval of `share`.
    pub low: f64,
    pub high: f64,
    /// Sum of the counter over all reports (events, not reports: not a proportion); `null`
    /// where it was not measured: a week collected by private aggregation measures some
    /// counters as presence only (`docs/private-aggregation.md`), and so has their shares and
    /// no totals. A plain week always has it.
    #[serde(default)]
    pub total: Option<u64>,
}

/// Wilson score interval for `successes` out of `n` at normal quantile `z` (1.96 for 95%).
/// Returns `(0, 0)` for `n == 0`.
pub fn wilson_interval(successes: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let n_f = n as f64;
    let p = successes.min(n) as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let center = (p + z2 / (2.0 * n_f)) / denom;
    let half = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The calendar week (its Monday) that a report whose week starts on `day` is counted in.
pub fn bucket_week(day: Day) -> Day {
    let back = i64::from(day.0.weekday().number_days_from_monday());
    day.plus_days(-back).unwrap_or(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_reference_vector() {
        let (lo, hi) = wilson_interval(25, 100, 1.96);
        assert!((lo - 0.1754509).abs() < 1e-6, "{lo}");
        assert!((hi - 0.3430465).abs() < 1e-6, "{hi}");
        assert_eq!(wilson_interval(0, 0, 1.96), (0.0, 0.0));
    }

    #[test]
    fn buckets_by_monday() {
        let wed: Day = "2026-11-25".parse().unwrap();
        assert_eq!(bucket_week(wed).to_string(), "2026-11-23");
        let mon: Day = "2026-11-23".parse().unwrap();
        assert_eq!(bucket_week(mon), mon);
    }
}
