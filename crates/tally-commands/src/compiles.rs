//! How compiles fared, as `tally show` prints it: the compile counters of every week shown
//! (the `RUSTC_WRAPPER` counts: outcome, time bucket, error codes, lints), summed by
//! `tally_grammar::compiles`. Only `rustc`'s sections hold them.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use tally_grammar::compiles::CompileSummary;
use tally_grammar::outcome::{BUCKET_LABELS, Driver, Outcome};

use tally_report::WeekCounts;

/// The most frequent error codes and lints listed.
const TOP: usize = 10;

/// The compile counters of `weeks`, summed.
pub(crate) fn summarize(weeks: &[WeekCounts]) -> CompileSummary {
    CompileSummary::of_sections(weeks.iter().flat_map(|week| {
        let sections = week.programs.iter();
        sections.map(|s| (week.week, &*s.program, &*s.version, &s.counters))
    }))
}

/// The summary as `tally show --json` gives it.
#[derive(Debug, Serialize)]
pub(crate) struct CompilesJson {
    /// Per driver (`rustc`, `clippy`): compiles by outcome.
    outcomes: Vec<DriverOutcomes>,
    /// Per driver: compiles run by build scripts (probes), by outcome, apart from the above.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    build_scripts: Vec<DriverOutcomes>,
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
    buckets: BTreeMap<&'static str, u64>,
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
    Some(CompilesJson {
        outcomes: driver_outcomes(&summary.outcomes),
        build_scripts: driver_outcomes(&summary.build_scripts),
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

/// Compiles by driver and outcome, as the JSON form lists them.
fn driver_outcomes(rows: &BTreeMap<Driver, [u64; Outcome::ALL.len()]>) -> Vec<DriverOutcomes> {
    let count = |row: &[u64; Outcome::ALL.len()], o: Outcome| row[o as usize];
    rows.iter()
        .map(|(driver, row)| DriverOutcomes {
            driver: driver.name(),
            ok: count(row, Outcome::Ok),
            error: count(row, Outcome::Error),
            ice: count(row, Outcome::Ice),
            signal: count(row, Outcome::Signal),
            other: count(row, Outcome::Other),
        })
        .collect()
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
    write_outcome_rows(out, "outcome", &summary.outcomes)?;
    // Apart from the user's compiles above: the probes build scripts run (autocfg and the like).
    write_outcome_rows(out, "run by build scripts", &summary.build_scripts)?;
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
    write_top(out, "most frequent error codes", &summary.top_errors(TOP))?;
    write_top(out, "most frequent lints", &summary.top_lints(TOP))?;
    if summary.capped > 0 {
        writeln!(
            out,
            "  {} compile(s) wrote more diagnostics than tally reads; the rest went uncounted",
            summary.capped
        )?;
    }
    Ok(())
}

/// A table of compiles by driver and outcome under `heading`; nothing when `rows` is empty.
/// A ranking under its heading, one `name count` row each; nothing when it is empty.
fn write_top(
    out: &mut dyn Write,
    heading: &str,
    rows: &[(impl std::fmt::Display, u64)],
) -> std::io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(out, "  {heading}")?;
    for (name, count) in rows {
        writeln!(out, "    {name:<44}{count:>8}")?;
    }
    Ok(())
}

fn write_outcome_rows(
    out: &mut dyn Write,
    heading: &str,
    rows: &BTreeMap<Driver, [u64; Outcome::ALL.len()]>,
) -> std::io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    write!(out, "  {heading:<22}")?;
    for outcome in Outcome::ALL {
        write!(out, "{:>8}", outcome.label())?;
    }
    writeln!(out)?;
    for (driver, row) in rows {
        write!(out, "    {:<20}", driver.name())?;
        for n in row {
            write!(out, "{n:>8}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiles build scripts run get their own table, and the user's outcome table holds
    /// only the user's compiles.
    #[test]
    fn build_script_compiles_are_a_table_of_their_own() {
        let mut summary = CompileSummary::default();
        summary.add_section(
            "2026-11-16",
            "rustc",
            "1.95.0",
            [
                ("rustc/outcome:ok", 3),
                ("rustc/build-script-outcome:ok", 5),
                ("rustc/build-script-outcome:error", 2),
            ],
        );
        let mut out = Vec::new();
        write_text(&summary, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = "  outcome                     ok   error     ice  signal   other\n    \
                        rustc                      3       0       0       0       0\n  \
                        run by build scripts        ok   error     ice  signal   other\n    \
                        rustc                      5       2       0       0       0\n";
        assert!(text.contains(expected), "{text}");
        let json = serde_json::to_value(to_json(&summary).unwrap()).unwrap();
        assert_eq!(json["outcomes"][0]["ok"], 3);
        assert_eq!(json["build_scripts"][0]["ok"], 5);
        assert_eq!(json["build_scripts"][0]["error"], 2);
    }
}
