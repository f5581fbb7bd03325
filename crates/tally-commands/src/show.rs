//! `tally show`: every counter tally holds, per week and program.
//!
//! Two sources: the counter files of weeks not yet turned into reports (`counters/`), and the
//! local reports of ended weeks (`reports/local/`, which hold everything counted, whatever was
//! uploaded). A counter file that is corrupt or from a future format is skipped with a message
//! and moved to `quarantine/` (unless tally is off, when nothing is written); a local report
//! that cannot be read is skipped with a message and left where it is.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use tally_home::{Day, Env, Home, Mode};
use tally_protocol::{Report, WEEK_DAYS};

use crate::{Io, ShowArgs, locate_home};

/// Where a week's counts were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// `counters/*.count`: a week not yet reported.
    Counters,
    /// `reports/local/<week>.json`: an ended week.
    LocalReport,
}

impl Source {
    fn csv_name(self) -> &'static str {
        match self {
            Source::Counters => "counters",
            Source::LocalReport => "local_report",
        }
    }
}

/// One program version's counts in one week.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Section {
    pub program: String,
    pub version: String,
    pub os: String,
    pub arch: String,
    pub counters: BTreeMap<String, u64>,
    /// Increments refused because a size cap was reached.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A week of counts from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WeekCounts {
    pub week: Day,
    /// The day after the week's last day.
    pub end: Day,
    pub source: Source,
    pub programs: Vec<Section>,
}

/// A file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Skipped {
    pub path: PathBuf,
    pub reason: String,
    /// Where the file was moved, if it was quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined_to: Option<PathBuf>,
}

/// Everything tally holds, newest week first.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Holdings {
    pub weeks: Vec<WeekCounts>,
    pub skipped: Vec<Skipped>,
}

/// Reads every counter file and local report. Quarantines invalid counter files when
/// `may_write`.
pub(crate) fn collect(home: &Home, may_write: bool) -> Holdings {
    let mut holdings = Holdings::default();
    let store = home.counter_store();
    let mut by_week: BTreeMap<(Day, Day), Vec<Section>> = BTreeMap::new();
    for (path, result) in store.list() {
        match result {
            Ok(snapshot) => {
                let meta = &snapshot.meta;
                let (Ok(start), Ok(end)) =
                    (meta.week_start.parse::<Day>(), meta.week_end.parse::<Day>())
                else {
                    holdings.skipped.push(Skipped {
                        path,
                        reason: format!(
                            "its header names the week {:?} to {:?}, which are not days",
                            meta.week_start, meta.week_end
                        ),
                        quarantined_to: None,
                    });
                    continue;
                };
                by_week.entry((start, end)).or_default().push(Section {
                    program: meta.program.clone(),
                    version: meta.version.clone(),
                    os: meta.os.clone(),
                    arch: meta.arch.clone(),
                    counters: snapshot.counters,
                    dropped: snapshot.dropped,
                });
            }
            Err(err) => {
                let reason = err.to_string();
                let quarantined_to = if may_write && err.is_invalid_file() {
                    store.quarantine(&path, &reason).ok()
                } else {
                    None
                };
                holdings.skipped.push(Skipped {
                    path,
                    reason,
                    quarantined_to,
                });
            }
        }
    }
    for ((week, end), mut programs) in by_week {
        programs.sort_by(|a, b| {
            (&a.program, &a.version, &a.os, &a.arch).cmp(&(&b.program, &b.version, &b.os, &b.arch))
        });
        holdings.weeks.push(WeekCounts {
            week,
            end,
            source: Source::Counters,
            programs,
        });
    }
    let (reports, skipped) = local_reports(&home.reports_dir().join("local"));
    holdings.skipped.extend(skipped);
    for report in reports {
        let end = report.week.plus_days(WEEK_DAYS).unwrap_or(report.week);
        let programs = report
            .programs
            .into_iter()
            .map(|p| Section {
                program: p.program,
                version: p.version,
                os: p.os,
                arch: p.arch,
                counters: p.counters,
                dropped: 0,
            })
            .collect();
        holdings.weeks.push(WeekCounts {
            week: report.week,
            end,
            source: Source::LocalReport,
            programs,
        });
    }
    holdings
        .weeks
        .sort_by(|a, b| (b.week, a.source).cmp(&(a.week, b.source)));
    holdings
}

/// The local reports in `dir`, and the files there that could not be read.
fn local_reports(dir: &Path) -> (Vec<Report>, Vec<Skipped>) {
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    let Ok(entries) = tally_home::fsio::read_own_dir(dir) else {
        return (reports, skipped);
    };
    let mut paths: Vec<PathBuf> = entries
        .into_iter()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    for path in paths {
        let parsed =
            tally_home::fsio::read_capped(&path, tally_report::build::MAX_LOCAL_REPORT_BYTES)
                .and_then(|b| b.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Report>(&bytes).map_err(|e| e.to_string())
                });
        match parsed {
            Ok(report) => reports.push(report),
            Err(reason) => skipped.push(Skipped {
                path,
                reason: format!("not a readable report: {reason}"),
                quarantined_to: None,
            }),
        }
    }
    (reports, skipped)
}

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
    let mut holdings = collect(&home, may_write);
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
                    week.source.csv_name()
                )?;
            }
        }
    }
    Ok(())
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
