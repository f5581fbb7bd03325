//! How compiles fared, as `tally show` prints it: the compile counters of every week shown
//! (the `RUSTC_WRAPPER` counts: outcome, time bucket, error codes, lints), summed by
//! `tally_grammar::compiles`. Only `rustc`'s sections hold them.

use std::io::Write;

use serde::Serialize;
use tally_grammar::compiles::CompileSummary;
use tally_grammar::outcome::{BUCKET_LABELS, Outcome};

use crate::show::WeekCounts;

/// The most frequent error codes and lints listed.
const TOP: usize = 10;

/// The compile counters of `weeks`, summed.
pub(crate) fn summarize(weeks: &[WeekCounts]) -> CompileSummary {
    let mut summary = CompileSummary::default();
    for week in weeks {
        let key = week.week.to_string();
        for section in &week.programs {
            summary.add_section(
                &key,
                &section.program,
                &section.version,
                section.counters.iter().map(|(n, c)| (n.as_str(), *c)),
            );
        }
    }
    summary
}

/// The summary as `tally show --json` gives it.
#[derive(Debug, Serialize)]
pub(crate) struct CompilesJson {
    /// Per driver (`rustc`, `clippy`): compiles by outcome.
    outcomes: Vec<DriverOutcomes>,
    /// Per compiler version: weeks with a compile, and of those, weeks with a compiler crash.
    crash_weeks: Vec<VersionCrashWeeks>,
    /// Per driver and kind: compiles by time bucket.
    times: Vec<TimeRow>,
    /// The most frequent error codes, most frequent first.
    top_errors: Vec<Named>,
    /// The most frequent lints (`driver/lint:name:level`), most frequent first.
    top_lints: Vec<Named>,
    /// Compiles that wrote more diagnostics than tally reads.
    #[serde(skip_serializing_if = "is_zero")]
    capped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Serialize)]
struct DriverOutcomes {
    driver: &'static str,
    ok: u64,
    error: u64,
    ice: u64,
    signal: u64,
    other: u64,
}

#[derive(Debug, Serialize)]
struct VersionCrashWeeks {
    version: String,
    weeks: u64,
    ice_weeks: u64,
}

#[derive(Debug, Serialize)]
struct TimeRow {
    driver: &'static str,
    kind: &'static str,
    /// Bucket name (`<0.1s` … `>=60s`) → compiles.
    buckets: std::collections::BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
struct Named {
    name: String,
    count: u64,
}

/// The JSON form, `None` when no compile was counted.
pub(crate) fn to_json(summary: &CompileSummary) -> Option<CompilesJson> {
    if summary.is_empty() {
        return None;
    }
    let count = |row: &[u64; Outcome::ALL.len()], o: Outcome| row[o as usize];
    Some(CompilesJson {
        outcomes: summary
            .outcomes
            .iter()
            .map(|(driver, row)| DriverOutcomes {
                driver: driver.name(),
                ok: count(row, Outcome::Ok),
                error: count(row, Outcome::Error),
                ice: count(row, Outcome::Ice),
                signal: count(row, Outcome::Signal),
                other: count(row, Outcome::Other),
            })
            .collect(),
        crash_weeks: summary
            .version_weeks()
            .into_iter()
            .map(|(version, w)| VersionCrashWeeks {
                version: version.to_string(),
                weeks: w.weeks,
                ice_weeks: w.ice_weeks,
            })
            .collect(),
        times: summary
            .times
            .iter()
            .map(|((driver, kind), row)| TimeRow {
                driver: driver.name(),
                kind,
                buckets: BUCKET_LABELS.into_iter().zip(row.iter().copied()).collect(),
            })
            .collect(),
        top_errors: summary
            .top_errors(TOP)
            .into_iter()
            .map(|(name, count)| Named {
                name: format!("rustc/error:{name}"),
                count,
            })
            .collect(),
        top_lints: summary
            .top_lints(TOP)
            .into_iter()
            .map(|(name, count)| Named { name, count })
            .collect(),
        capped: summary.capped,
    })
}

/// The text block `tally show` ends with; nothing when no compile was counted.
pub(crate) fn write_text(summary: &CompileSummary, out: &mut dyn Write) -> std::io::Result<()> {
    if summary.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "Compiles under cargo, all weeks above ({} compiles)",
        summary.compiles()
    )?;
    if !summary.outcomes.is_empty() {
        write!(out, "  {:<22}", "outcome")?;
        for outcome in Outcome::ALL {
            write!(out, "{:>8}", outcome.label())?;
        }
        writeln!(out)?;
        for (driver, row) in &summary.outcomes {
            write!(out, "    {:<20}", driver.name())?;
            for n in row {
                write!(out, "{n:>8}")?;
            }
            writeln!(out)?;
        }
    }
    let versions = summary.version_weeks();
    if !versions.is_empty() {
        writeln!(
            out,
            "  weeks with a compiler crash (ICE), per rustc version"
        )?;
        for (version, weeks) in versions {
            writeln!(
                out,
                "    {version:<20}{} of {} week(s)",
                weeks.ice_weeks, weeks.weeks
            )?;
        }
    }
    if !summary.times.is_empty() {
        write!(out, "  {:<22}", "time per compile")?;
        for bucket in BUCKET_LABELS {
            write!(out, "{bucket:>8}")?;
        }
        writeln!(out)?;
        for ((driver, kind), row) in &summary.times {
            write!(out, "    {:<20}", format!("{} {kind}", driver.name()))?;
            for n in row {
                write!(out, "{n:>8}")?;
            }
            writeln!(out)?;
        }
    }
    let errors = summary.top_errors(TOP);
    if !errors.is_empty() {
        writeln!(out, "  most frequent error codes")?;
        for (code, count) in errors {
            writeln!(out, "    {code:<44}{count:>8}")?;
        }
    }
    let lints = summary.top_lints(TOP);
    if !lints.is_empty() {
        writeln!(out, "  most frequent lints")?;
        for (name, count) in lints {
            writeln!(out, "    {name:<44}{count:>8}")?;
        }
    }
    if summary.capped > 0 {
        writeln!(
            out,
            "  {} compile(s) wrote more diagnostics than tally reads; the rest went uncounted",
            summary.capped
        )?;
    }
    Ok(())
}
