//! The user's weeks: every count tally holds on this machine, read once, in one shape, with one
//! policy for files that cannot be used. `tally show`, `tally view`, `tally preview` and the
//! weekly build ([`crate::build`]) all read through here.
//!
//! Two sources: the counter files of weeks not yet turned into reports (`counters/`), and the
//! local reports of ended weeks (`reports/local/<week>.json`, which hold everything counted,
//! whatever was uploaded).
//!
//! The policy for bad files, the same for every reader:
//! - dotfiles (temporary names of a write in progress) are never read;
//! - a counter file that is not a valid counter file (corrupt, from a future format, a header
//!   whose week is not two days or whose program name is not one tally's writers make) is
//!   skipped and named with the reason, and moved to `quarantine/` with its reason when the
//!   caller may write (tally is not off); a file that cannot be quarantined is left and named;
//! - a counter file that cannot be read now (permissions, I/O) is skipped and named, left where
//!   it is, and its week is held back from being reported without it;
//! - a local report that cannot be read, or is not a valid report of the week its name says,
//!   is skipped and named, and left where it is.
//!
//! Nothing is ever deleted here, and every skipped file is in [`Holdings::skipped`] (or the
//! second half of what [`counter_files`] and [`local_reports`] return) for the caller to show.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tally_home::{Home, Snapshot, fsio};
use tally_protocol::{Day, Report, WEEK_DAYS};

/// The folder of `reports/` that holds the local copies of ended weeks.
pub const LOCAL: &str = "local";

/// Largest local report read back (a week of 1,000 full counter files is about 1 MiB). Local
/// copies are not bound by the upload limit: they hold everything.
pub const MAX_LOCAL_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Where a week's counts were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `counters/*.count`: a week not yet reported.
    Counters,
    /// `reports/local/<week>.json`: an ended week.
    LocalReport,
}

/// One program version's counts in one week.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
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
pub struct WeekCounts {
    pub week: Day,
    /// The day after the week's last day.
    pub end: Day,
    pub source: Source,
    pub programs: Vec<Section>,
}

/// A file that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
    /// Where the file was moved, if it was quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined_to: Option<PathBuf>,
    /// Which rule of the policy skipped it.
    #[serde(skip)]
    pub kind: SkipKind,
}

/// Which rule of the module's policy skipped a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipKind {
    /// Not a valid counter file. When the reader could write but the move to `quarantine/`
    /// failed, why.
    InvalidCounterFile { quarantine_failed: Option<String> },
    /// A counter file that cannot be read now; its week (from its file name, when that names
    /// one) must not be reported without it.
    UnreadableCounterFile { week: Option<Day> },
    /// A local report that cannot be read or is not valid.
    LocalReport,
}

/// Everything tally holds, newest week first, and the files skipped on the way.
#[derive(Debug, Default, Serialize)]
pub struct Holdings {
    pub weeks: Vec<WeekCounts>,
    pub skipped: Vec<Skipped>,
}

/// One valid counter file.
#[derive(Debug)]
pub struct CounterFile {
    pub path: PathBuf,
    /// The week its header names: first day, and the day after the last.
    pub week: Day,
    pub end: Day,
    pub snapshot: Snapshot,
}

/// Every counter file and local report of `home`, by week: the counter files of one week
/// merged into one [`WeekCounts`] (sections sorted by program, version, os, arch), each local
/// report one. Newest week first; in one week, counter files before the local report.
/// Quarantines invalid counter files when `may_write`.
pub fn read_weeks(home: &Home, may_write: bool) -> Holdings {
    let (files, mut skipped) = counter_files(home, may_write);
    let mut by_week: BTreeMap<(Day, Day), Vec<Section>> = BTreeMap::new();
    for file in files {
        let meta = file.snapshot.meta;
        by_week
            .entry((file.week, file.end))
            .or_default()
            .push(Section {
                program: meta.program,
                version: meta.version,
                os: meta.os,
                arch: meta.arch,
                counters: file.snapshot.counters,
                dropped: file.snapshot.dropped,
            });
    }
    let mut weeks = Vec::new();
    for ((week, end), mut programs) in by_week {
        programs.sort_by(|a, b| {
            (&a.program, &a.version, &a.os, &a.arch).cmp(&(&b.program, &b.version, &b.os, &b.arch))
        });
        weeks.push(WeekCounts {
            week,
            end,
            source: Source::Counters,
            programs,
        });
    }
    let (reports, skipped_reports) = local_reports(home);
    skipped.extend(skipped_reports);
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
        weeks.push(WeekCounts {
            week: report.week,
            end,
            source: Source::LocalReport,
            programs,
        });
    }
    weeks.sort_by(|a, b| (b.week, a.source).cmp(&(a.week, b.source)));
    Holdings { weeks, skipped }
}

/// Every valid counter file of `home`, sorted by path, and the ones skipped (quarantined when
/// `may_write`; see the module's policy).
pub fn counter_files(home: &Home, may_write: bool) -> (Vec<CounterFile>, Vec<Skipped>) {
    let store = home.counter_store();
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for (path, read) in store.list() {
        let snapshot = match read {
            Ok(snapshot) => snapshot,
            Err(e) if e.is_invalid_file() => {
                skipped.push(invalid(home, path, e.to_string(), may_write));
                continue;
            }
            Err(e) => {
                let week = week_from_file_name(&path);
                skipped.push(Skipped {
                    path,
                    reason: e.to_string(),
                    quarantined_to: None,
                    kind: SkipKind::UnreadableCounterFile { week },
                });
                continue;
            }
        };
        let days = (
            snapshot.meta.week_start.parse::<Day>(),
            snapshot.meta.week_end.parse::<Day>(),
        );
        let (Ok(week), Ok(end)) = days else {
            let reason = format!(
                "its header's week {:?}..{:?} is not a pair of YYYY-MM-DD days",
                snapshot.meta.week_start, snapshot.meta.week_end
            );
            skipped.push(invalid(home, path, reason, may_write));
            continue;
        };
        // A report holds only program names that follow the shared rule (the collector and
        // `Report::parse` refuse any other): a file naming another kind of program is not one
        // tally's writers made.
        if !tally_protocol::is_program_name(&snapshot.meta.program) {
            // The name itself stays out of the reason: it is whatever the file held.
            let reason = "its header's program name is not 1 to 64 lowercase ASCII letters, \
                          digits, `-` and `_` starting with a letter or digit";
            skipped.push(invalid(home, path, reason.to_owned(), may_write));
            continue;
        }
        files.push(CounterFile {
            path,
            week,
            end,
            snapshot,
        });
    }
    (files, skipped)
}

/// An invalid counter file, skipped, and quarantined when `may_write`.
fn invalid(home: &Home, path: PathBuf, reason: String, may_write: bool) -> Skipped {
    let (quarantined_to, quarantine_failed) = if may_write {
        match home.counter_store().quarantine(&path, &reason) {
            Ok(moved) => (Some(moved), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    Skipped {
        path,
        reason,
        quarantined_to,
        kind: SkipKind::InvalidCounterFile { quarantine_failed },
    }
}

/// `<program>@<version>-<os>-<arch>-<YYYY-MM-DD>.v1.count` → the week.
fn week_from_file_name(path: &Path) -> Option<Day> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".count")?;
    let stem = &stem[..stem.rfind('.')?];
    stem.get(stem.len().checked_sub(10)?..)?.parse().ok()
}

/// Every local report of `home` (`reports/local/<week>.json`), oldest first, and the ones
/// skipped (left where they are).
pub fn local_reports(home: &Home) -> (Vec<Report>, Vec<Skipped>) {
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    let mut paths = fsio::visible_entries(&home.reports_dir().join(LOCAL), ".json");
    paths.sort();
    for path in paths {
        let week = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<Day>().ok());
        let read = match week {
            Some(week) => read_report_file(&path, week).map_err(LocalReadError::reason),
            None => Err(
                "its name is not <YYYY-MM-DD>.json, so it is not a report tally wrote; \
                         move it out of the folder"
                    .to_owned(),
            ),
        };
        match read {
            Ok(report) => reports.push(report),
            Err(reason) => skipped.push(Skipped {
                path,
                reason,
                quarantined_to: None,
                kind: SkipKind::LocalReport,
            }),
        }
    }
    (reports, skipped)
}

/// Reads the stored local report of `week`; the error names the file and says what to do.
pub fn read_local(home: &Home, week: Day) -> Result<Report, String> {
    let path = home.reports_dir().join(LOCAL).join(format!("{week}.json"));
    read_report_file(&path, week).map_err(|e| match e {
        LocalReadError::Missing => format!("cannot read {}: it does not exist", path.display()),
        LocalReadError::Invalid(reason) => format!("{} is {reason}", path.display()),
    })
}

/// Why a local report could not be used.
enum LocalReadError {
    Missing,
    /// "not a valid report (why); what to do".
    Invalid(String),
}

impl LocalReadError {
    /// The reason, for a line that names the file first.
    fn reason(self) -> String {
        match self {
            LocalReadError::Missing => "it does not exist".to_owned(),
            LocalReadError::Invalid(reason) => reason,
        }
    }
}

/// The local report at `path`, which must hold `week`.
fn read_report_file(path: &Path, week: Day) -> Result<Report, LocalReadError> {
    let invalid = |why: String| {
        LocalReadError::Invalid(format!(
            "not a valid report ({why}); delete it to drop that week"
        ))
    };
    let bytes = match fsio::read_capped(path, MAX_LOCAL_REPORT_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(LocalReadError::Missing),
        Err(e) => return Err(invalid(e.to_string())),
    };
    let report: Report = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if !(report.x > 0.0 && report.x < 1.0) {
        return Err(invalid(format!("x is {}, not in (0, 1)", report.x)));
    }
    if report.week != week {
        return Err(invalid(format!("it holds week {}", report.week)));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A home with one running week in a counter file, one ended week as a local report, and
    /// one file of each kind the policy skips.
    fn seeded() -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        tally_test_support::home::seed_user_weeks(&home);
        std::fs::write(home.counters_dir().join(".partial.v1.count"), b"garbage").unwrap();
        let local = home.reports_dir().join(LOCAL);
        // The ended week's report again, under another week's name.
        std::fs::copy(local.join("2026-11-09.json"), local.join("2026-11-02.json")).unwrap();
        std::fs::write(local.join(".tmp-1.json"), b"{half").unwrap();
        (dir, home)
    }

    fn skipped_names(holdings: &Holdings) -> Vec<String> {
        holdings
            .skipped
            .iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn bad_files_are_named_dotfiles_unread_and_nothing_moves_without_write() {
        let (_dir, home) = seeded();
        let holdings = read_weeks(&home, false);
        let sources: Vec<Source> = holdings.weeks.iter().map(|w| w.source).collect();
        assert_eq!(sources, [Source::Counters, Source::LocalReport]);
        assert_eq!(holdings.weeks[1].week.to_string(), "2026-11-09");
        assert_eq!(holdings.weeks[1].end.to_string(), "2026-11-16");
        assert_eq!(
            skipped_names(&holdings),
            ["zz-corrupt.v1.count", "2026-11-02.json"]
        );
        let wrong_week = &holdings.skipped[1];
        assert!(
            wrong_week.reason.contains("it holds week 2026-11-09"),
            "{}",
            wrong_week.reason
        );
        assert!(holdings.skipped.iter().all(|s| s.quarantined_to.is_none()));
        assert!(home.counters_dir().join("zz-corrupt.v1.count").exists());
    }

    #[test]
    fn invalid_counter_files_are_quarantined_when_writing_reports_left() {
        let (_dir, home) = seeded();
        let holdings = read_weeks(&home, true);
        let moved = holdings.skipped[0].quarantined_to.as_ref().unwrap();
        assert!(moved.starts_with(home.quarantine_dir()) && moved.exists());
        assert!(!home.counters_dir().join("zz-corrupt.v1.count").exists());
        assert!(home.counters_dir().join(".partial.v1.count").exists());
        assert!(holdings.skipped[1].quarantined_to.is_none());
        assert!(
            home.reports_dir()
                .join(LOCAL)
                .join("2026-11-02.json")
                .exists()
        );
    }
}
