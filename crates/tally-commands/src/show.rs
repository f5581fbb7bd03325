//! `tally show`: every counter tally holds, per week and program.
//!
//! Two sources, read by [`tally_report::read_weeks`]: the counter files of weeks not yet turned
//! into reports (`counters/`), and the local reports of ended weeks (`reports/local/`, which
//! hold everything counted, whatever was uploaded). A file that cannot be used is skipped with
//! a message naming it; an invalid counter file is also moved to `quarantine/` (unless tally is
//! off, when nothing is written).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use tally_home::{Day, Env, Home, Mode};
use tally_report::{Holdings, Source};

use crate::{Io, ShowArgs, locate_home};

/// `tally show`.
pub(crate) fn run(args: &ShowArgs, env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    let only_day = args
        .week
        .as_deref()
        .map(|text| {
            text.parse::<Day>().with_context(|| {
                format!("--week {text:?}: give a day as YYYY-MM-DD, e.g. --week 2026-11-24")
            })
        })
        .transpose()?;
    let home = locate_home(env)?;
    let may_write = tally_home::effective_mode(env, Some(&home)) != Mode::Off;
    let mut holdings = tally_report::read_weeks(&home, may_write);
    if let Some(day) = only_day {
        holdings.weeks.retain(|w| w.week <= day && day < w.end);
    }
    for skipped in &holdings.skipped {
        match &skipped.quarantined_to {
            Some(to) => writeln!(
                io.err,
                "tally: skipped {}: {}; it was moved to {}",
                skipped.path.display(),
                skipped.reason,
                to.display()
            )?,
            None => writeln!(
                io.err,
                "tally: skipped {}: {}",
                skipped.path.display(),
                skipped.reason
            )?,
        }
    }
    if args.json {
        #[derive(Serialize)]
        struct ShowJson<'a> {
            #[serde(flatten)]
            holdings: &'a Holdings,
            /// How compiles fared over the weeks shown (absent when none was counted).
            #[serde(skip_serializing_if = "Option::is_none")]
            compiles: Option<crate::compiles::CompilesJson>,
        }
        let compiles = crate::compiles::to_json(&crate::compiles::summarize(&holdings.weeks));
        let mut text = serde_json::to_string_pretty(&ShowJson {
            holdings: &holdings,
            compiles,
        })?;
        text.push('\n');
        io.out.write_all(text.as_bytes())?;
    } else if args.csv {
        write_csv(&holdings, io.out)?;
    } else {
        write_text(&holdings, &home, env.today(), only_day, io.out)?;
        crate::compiles::write_text(&crate::compiles::summarize(&holdings.weeks), io.out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_text(
    holdings: &Holdings,
    home: &Home,
    today: Day,
    only_day: Option<Day>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if holdings.weeks.is_empty() {
        match only_day {
            Some(day) => writeln!(out, "tally holds no counts for the week of {day}.")?,
            None => writeln!(
                out,
                "tally holds no counts yet (data directory: {}).",
                home.root().display()
            )?,
        }
        return Ok(());
    }
    for (i, week) in holdings.weeks.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let last = week.end.plus_days(-1).unwrap_or(week.end);
        let state = match week.source {
            Source::LocalReport => "ended; local report".to_string(),
            Source::Counters if today < week.end => "in progress; counter files".to_string(),
            Source::Counters => "ended, report not built yet; counter files".to_string(),
        };
        writeln!(out, "Week {} to {last} ({state})", week.week)?;
        let width = week
            .programs
            .iter()
            .flat_map(|s| s.counters.keys())
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0);
        for section in &week.programs {
            writeln!(
                out,
                "  {} {} ({} {})",
                section.program, section.version, section.os, section.arch
            )?;
            for (name, count) in &section.counters {
                writeln!(out, "    {name:<width$}  {count:>8}")?;
            }
            if section.dropped > 0 {
                writeln!(
                    out,
                    "    ({} increments were not counted: the file reached its size cap)",
                    section.dropped
                )?;
            }
        }
    }
    Ok(())
}

fn write_csv(holdings: &Holdings, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "week,program,version,os,arch,counter,count,source")?;
    for week in &holdings.weeks {
        for section in &week.programs {
            for (name, count) in &section.counters {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{count},{}",
                    week.week,
                    csv_field(&section.program),
                    csv_field(&section.version),
                    csv_field(&section.os),
                    csv_field(&section.arch),
                    csv_field(name),
                    csv_source(week.source)
                )?;
            }
        }
    }
    Ok(())
}

/// The `source` column of the CSV.
fn csv_source(source: Source) -> &'static str {
    match source {
        Source::Counters => "counters",
        Source::LocalReport => "local_report",
    }
}

/// Quotes a CSV field when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(
            csv_field("cargo/subcommand:build"),
            "cargo/subcommand:build"
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
