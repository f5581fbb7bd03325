//! Turning ended weeks of counter files into reports on disk.
//!
//! Two steps, each safe to interrupt at any point and to run again:
//!
//! A. For every week whose counter files have all ended (`week_end <= today`): merge them into
//!    one local report (a fresh `x`), write `reports/local/<week>.json`, and only then remove
//!    the counter files. The local report is created exclusively (never overwritten): if it
//!    already exists, the week was done by an earlier or concurrent run and its remaining
//!    counter files are leftovers already counted, so they are removed.
//! B. For every local report without an upload copy (in `pending/`, `sent/` or `refused/`):
//!    derive one with [`upload_copy`] from the report as stored and, if allowed, create
//!    `reports/pending/<week>.json` exclusively. Deriving from the stored local report keeps
//!    the two copies' `x` identical; re-deciding on every run lets a config that arrives later
//!    apply to a week that has already ended (with the same `x`).
//!
//! The counter files are read by [`crate::weeks`], whose policy applies: files that are not
//! valid counter files are quarantined (with the reason) and reported; a file that can't be
//! read at all holds its week back until it can.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use tally_home::{Home, Mode, Snapshot, fsio};
use tally_protocol::{Day, ProgramReport, Report, SectionKey};

use crate::filter::{Withheld, upload_copy};
/// Read through [`crate::weeks`], like every reader of the user's weeks.
pub use crate::weeks::read_local;
use crate::weeks::{self, SkipKind};

/// The folders under `reports/`.
pub use crate::weeks::LOCAL;
pub const PENDING: &str = "pending";
pub const SENT: &str = "sent";
pub const REFUSED: &str = "refused";

/// What one run of [`build_due_reports`] did.
#[derive(Debug, Default)]
pub struct BuildSummary {
    /// Weeks turned into local reports in this run.
    pub built: Vec<BuiltWeek>,
    /// Upload copies written to `pending/` in this run.
    pub pending_written: Vec<(Day, PathBuf)>,
    /// Local reports without an upload copy, and why.
    pub withheld: Vec<(Day, Withheld)>,
    /// Invalid counter files moved to quarantine: (new path, reason).
    pub quarantined: Vec<(PathBuf, String)>,
    /// Problems that held something back; each message says what and how to fix it.
    pub problems: Vec<String>,
}

/// One week turned into a local report.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltWeek {
    pub week: Day,
    pub local_path: PathBuf,
    /// Counter files merged into it (and then removed).
    pub files: usize,
}

/// Why a run could not proceed at all.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "cannot write the report {path}: {source}; check that the data directory is writable and the disk not full (the counter files were kept)"
    )]
    Write { path: PathBuf, source: io::Error },
}

/// Builds every due report for `home` on `today`. In mode `off` it does nothing at all. The
/// config is the cached one, re-verified now ([`tally_config::current`]); fetch it first
/// (`tally_config::refresh`) to upload under the newest config.
pub fn build_due_reports(home: &Home, mode: Mode, today: Day) -> Result<BuildSummary, BuildError> {
    build_due_reports_with(home, mode, today, &mut fresh_x)
}

/// A uniformly random `x` in `(0, 1)`.
pub fn fresh_x() -> f64 {
    loop {
        let x = fastrand::f64();
        if x > 0.0 {
            return x;
        }
    }
}

/// [`build_due_reports`] with the source of `x` given (tests fix it).
pub fn build_due_reports_with(
    home: &Home,
    mode: Mode,
    today: Day,
    draw_x: &mut dyn FnMut() -> f64,
) -> Result<BuildSummary, BuildError> {
    let mut summary = BuildSummary::default();
    if mode == Mode::Off {
        return Ok(summary);
    }
    let mut just_built = consume_ended_weeks(home, today, draw_x, &mut summary)?;
    write_upload_copies(home, mode, today, &mut just_built, &mut summary)?;
    Ok(summary)
}

fn consume_ended_weeks(
    home: &Home,
    today: Day,
    draw_x: &mut dyn FnMut() -> f64,
    summary: &mut BuildSummary,
) -> Result<BTreeMap<Day, Report>, BuildError> {
    // Reports written by this run, so that step B need not read them back.
    let mut just_built = BTreeMap::new();
    let (files, skipped) = weeks::counter_files(home, true);
    let held_back = note_skipped(skipped, summary);
    let mut ended: BTreeMap<Day, Vec<(PathBuf, Snapshot)>> = BTreeMap::new();
    for file in files {
        if file.end <= today && !held_back.contains(&file.week) {
            ended
                .entry(file.week)
                .or_default()
                .push((file.path, file.snapshot));
        }
    }
    let local_dir = home.reports_dir().join(LOCAL);
    for (week, files) in ended {
        let local_path = local_dir.join(format!("{week}.json"));
        let (paths, snapshots): (Vec<PathBuf>, Vec<Snapshot>) = files.into_iter().unzip();
        if fs::symlink_metadata(&local_path).is_err() {
            let report = merge(week, draw_x(), snapshots);
            let written = home
                .own_dir(&local_dir)
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|()| create_new(&local_path, &report.to_canonical_json()));
            match written {
                Ok(true) => {
                    summary.built.push(BuiltWeek {
                        week,
                        local_path: local_path.clone(),
                        files: paths.len(),
                    });
                    just_built.insert(week, report);
                }
                // A concurrent run wrote it first: these files are in its report.
                Ok(false) => {}
                Err(source) => {
                    return Err(BuildError::Write {
                        path: local_path,
                        source,
                    });
                }
            }
        }
        remove_reported(&paths, &local_path, summary);
    }
    Ok(just_built)
}

/// Records the counter files the read skipped in `summary`; returns the weeks that are held
/// back because one of their files can't be read now (so that they aren't reported without
/// that file's counts).
fn note_skipped(skipped: Vec<weeks::Skipped>, summary: &mut BuildSummary) -> Vec<Day> {
    let mut held_back = Vec::new();
    for skipped in skipped {
        match (skipped.kind, skipped.quarantined_to) {
            (_, Some(moved)) => summary.quarantined.push((moved, skipped.reason)),
            (SkipKind::UnreadableCounterFile { week }, None) => {
                held_back.extend(week);
                summary.problems.push(format!(
                    "{}; its week is not reported until the file can be read (fix its \
                     permissions, or delete it)",
                    skipped.reason
                ));
            }
            (SkipKind::InvalidCounterFile { quarantine_failed }, None) => {
                summary.problems.push(format!(
                    "{} is not a valid counter file ({}) and could not be quarantined: {}; \
                     delete it by hand",
                    skipped.path.display(),
                    skipped.reason,
                    quarantine_failed.unwrap_or_default()
                ));
            }
            (SkipKind::LocalReport, None) => {}
        }
    }
    held_back
}

/// Removes the counter files of a week whose local report is on disk (fsynced): they are now
/// redundant.
fn remove_reported(paths: &[PathBuf], local_path: &Path, summary: &mut BuildSummary) {
    for path in paths {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            summary.problems.push(format!(
                "cannot remove {} after reporting it: {e}; delete it by hand (its counts are \
                 already in {})",
                path.display(),
                local_path.display()
            ));
        }
    }
}

/// One report from a week's counter files: one section per (program, normalised version, os,
/// arch), in that order, counts of files with the same key summed.
pub fn merge(week: Day, x: f64, snapshots: impl IntoIterator<Item = Snapshot>) -> Report {
    let mut sections: BTreeMap<SectionKey, BTreeMap<String, u64>> = BTreeMap::new();
    for s in snapshots {
        // Files written by an older tally may hold a tool's raw version text; reports keep
        // only the normalised form, as new counter files do.
        let version = tally_home::normalize_version(&s.meta.version).into_owned();
        let key = (s.meta.program, version, s.meta.os, s.meta.arch);
        match sections.entry(key) {
            // The usual case, one file per key: take its map as it is.
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(s.counters);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                for (name, count) in s.counters {
                    let total = slot.get_mut().entry(name).or_insert(0);
                    *total = total.saturating_add(count);
                }
            }
        }
    }
    let programs = sections.into_iter().map(ProgramReport::from).collect();
    Report {
        week,
        x,
        config_version: None,
        programs,
    }
}

/// The weeks of the reports in `reports/<folder>/` (files named `<YYYY-MM-DD>.json`).
pub fn report_weeks(home: &Home, folder: &str) -> Vec<Day> {
    let Ok(entries) = fsio::read_own_dir(&home.reports_dir().join(folder)) else {
        return Vec::new();
    };
    let mut weeks: Vec<Day> = entries
        .into_iter()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
        .collect();
    weeks.sort();
    weeks
}

/// Whether the week already has an upload copy (waiting, sent or refused).
pub fn has_upload_copy(home: &Home, week: Day) -> bool {
    [PENDING, SENT, REFUSED].iter().any(|folder| {
        fs::symlink_metadata(home.reports_dir().join(folder).join(format!("{week}.json"))).is_ok()
    })
}

/// The verified config, or the reason there is none, for [`upload_copy`].
pub(crate) fn config_for(
    home: &Home,
    mode: Mode,
    today: Day,
) -> Result<tally_config::Verified, String> {
    if !matches!(mode, Mode::On { .. }) {
        return Err("the mode is not on".into());
    }
    tally_config::current(&home.config_dir(), today).map_err(|e| e.to_string())
}

fn write_upload_copies(
    home: &Home,
    mode: Mode,
    today: Day,
    just_built: &mut BTreeMap<Day, Report>,
    summary: &mut BuildSummary,
) -> Result<(), BuildError> {
    let config = config_for(home, mode, today);
    let pending_dir = home.reports_dir().join(PENDING);
    let own = |dir: &Path| {
        home.own_dir(dir)
            .map_err(|e| io::Error::other(e.to_string()))
    };
    for week in report_weeks(home, LOCAL) {
        if has_upload_copy(home, week) {
            continue;
        }
        let local = match just_built
            .remove(&week)
            .map_or_else(|| read_local(home, week), Ok)
        {
            Ok(local) => local,
            Err(problem) => {
                summary.problems.push(problem);
                continue;
            }
        };
        let config = config.as_ref().map(|v| &v.config).map_err(String::as_str);
        match upload_copy(&local, mode, config, today) {
            Ok(upload) => {
                let path = pending_dir.join(format!("{week}.json"));
                match own(&pending_dir)
                    .and_then(|()| create_new(&path, &upload.to_canonical_json()))
                {
                    Ok(true) => summary.pending_written.push((week, path)),
                    Ok(false) => {}
                    Err(source) => return Err(BuildError::Write { path, source }),
                }
            }
            Err(why) => summary.withheld.push((week, why)),
        }
    }
    Ok(())
}

/// Creates `path` with `bytes`, atomically and only if it doesn't exist yet: a temporary file
/// in the same directory is written and fsynced, then hard-linked to `path` (which fails if
/// `path` exists, unlike rename, and never follows a link there), then the directory is
/// fsynced. `Ok(false)` if something is at `path`. The directory must exist (callers make it
/// with [`Home::own_dir`], which refuses a link in its place).
pub fn create_new(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a report path has a directory"))?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    let created = match fs::hard_link(tmp.path(), path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    drop(tmp); // removes the temporary name
    fs::File::open(dir)?.sync_all()?;
    Ok(created)
}
