//! `tally preview`: exactly what the next upload would send, or exactly why nothing.
//!
//! Preview first builds due reports, as `tally upload` does before sending, so that the bytes
//! it shows are the bytes that will be sent (each report's random `x` is drawn once, when its
//! week is built). In mode `off` it touches nothing.

use std::fmt::Write as _;

use tally_home::{Home, Mode};
use tally_protocol::{Day, MAX_REPORT_BYTES, Report};

use crate::build::{
    BuildError, BuildSummary, LOCAL, PENDING, REFUSED, SENT, build_due_reports, config_for,
    report_weeks,
};
use crate::filter::{Withheld, may_send, upload_copy};
use crate::weeks::{counter_files, read_local};

/// What the next upload would do, week by week.
#[derive(Debug)]
pub struct Preview {
    pub mode: Mode,
    /// Every week with a report not yet sent or refused, oldest first.
    pub weeks: Vec<WeekPreview>,
    /// When the next week ends (the day its report can be built), if anything is being counted.
    pub next_report_due: Option<Day>,
    /// What building the due reports did.
    pub build: BuildSummary,
}

/// One week's verdict.
#[derive(Debug)]
pub struct WeekPreview {
    pub week: Day,
    /// The exact bytes that would be POSTed, or why nothing would be.
    pub outcome: Result<Vec<u8>, Withheld>,
}

impl Preview {
    /// The reports that would be sent: (week, exact bytes).
    pub fn to_send(&self) -> Vec<(Day, &[u8])> {
        self.weeks
            .iter()
            .filter_map(|w| w.outcome.as_ref().ok().map(|b| (w.week, b.as_slice())))
            .collect()
    }

    /// A plain-language account: for each week, the bytes or the reason; and when there is no
    /// week at all, why not.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        if self.mode == Mode::Off {
            out.push_str(
                "Nothing would be sent: tally is off (nothing is counted or written; `tally local` \
                 or `tally on` turns it back on).\n",
            );
            return out;
        }
        if self.weeks.is_empty() {
            out.push_str("Nothing would be sent: no counted week has ended yet.");
            if let Some(due) = self.next_report_due {
                let _ = write!(out, " The current week's report is built on {due}.");
            }
            out.push('\n');
        }
        for week in &self.weeks {
            match &week.outcome {
                Ok(bytes) => {
                    let _ = writeln!(
                        out,
                        "Week of {}: would send these {} bytes:",
                        week.week,
                        bytes.len()
                    );
                    out.push_str(&String::from_utf8_lossy(bytes));
                }
                Err(why) => {
                    let _ = writeln!(out, "Week of {}: nothing would be sent: {why}.", week.week);
                }
            }
        }
        for (path, reason) in &self.build.quarantined {
            let _ = writeln!(out, "Quarantined {}: {reason}", path.display());
        }
        for problem in &self.build.problems {
            let _ = writeln!(out, "Problem: {problem}");
        }
        out
    }
}

/// Builds due reports, then says, week by week, what the next upload would send.
pub fn preview(home: &Home, mode: Mode, today: Day) -> Result<Preview, BuildError> {
    if mode == Mode::Off {
        return Ok(Preview {
            mode,
            weeks: Vec::new(),
            next_report_due: None,
            build: BuildSummary::default(),
        });
    }
    let summary = build_due_reports(home, mode, today)?;
    let config = config_for(home, mode, today);
    let config_ref = config.as_ref().map(|v| &v.config).map_err(String::as_str);
    let done: Vec<Day> = [SENT, REFUSED]
        .iter()
        .flat_map(|f| report_weeks(home, f))
        .collect();
    let mut weeks: Vec<Day> = report_weeks(home, LOCAL);
    weeks.extend(report_weeks(home, PENDING));
    weeks.sort();
    weeks.dedup();
    weeks.retain(|w| !done.contains(w));

    let mut previews = Vec::new();
    for week in weeks {
        let pending = home
            .reports_dir()
            .join(PENDING)
            .join(format!("{week}.json"));
        let outcome = match tally_home::fsio::read_capped(&pending, MAX_REPORT_BYTES as u64) {
            Ok(Some(bytes)) => sendable(&bytes, mode, config_ref, today).map(|()| bytes),
            Ok(None) | Err(_) => match read_local(home, week) {
                Ok(local) => {
                    upload_copy(&local, mode, config_ref, today).map(|r| r.to_canonical_json())
                }
                Err(problem) => Err(Withheld::Unreadable(problem)),
            },
        };
        previews.push(WeekPreview { week, outcome });
    }
    // Read only: the build above has already quarantined what it had to.
    let next_report_due = counter_files(home, false)
        .0
        .into_iter()
        .map(|file| file.end)
        .filter(|end| *end > today)
        .min();
    Ok(Preview {
        mode,
        weeks: previews,
        next_report_due,
        build: summary,
    })
}

/// Whether a pending report may still be sent today: the same gates as when it was made
/// (mode, consent, age, a verified config), checked again because any of them may have changed.
fn sendable(
    bytes: &[u8],
    mode: Mode,
    config: Result<&tally_protocol::UploadConfig, &str>,
    today: Day,
) -> Result<(), Withheld> {
    let report = Report::parse(bytes).map_err(|e| {
        Withheld::Unreadable(format!(
            "the pending report is invalid ({e}); delete it from reports/pending/"
        ))
    })?;
    may_send(report.week, mode, config, today)?;
    Ok(())
}
