//! Retention: tally's data directory never grows without bound.
//!
//! The numbers:
//! - Counter files and reports (`reports/local`, `pending`, `sent`, `refused`) are deleted once
//!   their week ended [`RETAIN_WEEKS`] (8) weeks or more before today. A counter file's week comes
//!   from its header; a report's from its `<weekstart>.…` file name. Files whose week cannot be
//!   told are left alone, except counter files that do not parse, which are quarantined.
//! - Quarantined files (and their `.reason`) are deleted [`QUARANTINE_WEEKS`] (4) weeks after they
//!   were last modified (the time they were moved aside).
//! - The wrapper links in `wrappers/` (one per user `RUSTC_WRAPPER`, see
//!   `tally_process::arrange::wrapper_path`) are deleted [`RETAIN_WEEKS`] weeks after they were
//!   made. A link still in use is made again, under the same name, by the next build that needs
//!   it, so cargo's cache keeps its key; a wrapper the user dropped stops taking a slot.
//!
//! Reports older than 21 days are never uploaded anyway (`tally_protocol::MAX_REPORT_AGE_DAYS`),
//! so 8 weeks keeps a couple of months of local history for `tally show` and nothing the uploader
//! could still need.

use std::fs;
use std::path::{Path, PathBuf};

use tally_protocol::{Day, WEEK_DAYS};

use crate::{Error, Home};

/// Weeks after its end that a week's counter files and reports are kept.
pub const RETAIN_WEEKS: i64 = 8;

/// Weeks a quarantined file is kept.
pub const QUARANTINE_WEEKS: i64 = 4;

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepSummary {
    /// Counter files deleted.
    pub deleted_counter_files: Vec<PathBuf>,
    /// Report files deleted.
    pub deleted_reports: Vec<PathBuf>,
    /// Quarantined files deleted.
    pub deleted_quarantined: Vec<PathBuf>,
    /// Wrapper links deleted from `wrappers/`.
    pub deleted_wrapper_links: Vec<PathBuf>,
    /// Invalid counter files moved to quarantine (new paths).
    pub quarantined: Vec<PathBuf>,
    /// Files that could not be removed, with the reason.
    pub failures: Vec<String>,
}

fn expired(week_end: Day, today: Day) -> bool {
    today.days_since(week_end) >= RETAIN_WEEKS * WEEK_DAYS
}

fn remove(path: &Path, into: &mut Vec<PathBuf>, failures: &mut Vec<String>) {
    match fs::remove_file(path) {
        Ok(()) => into.push(path.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => failures.push(format!("cannot delete {}: {e}", path.display())),
    }
}

/// Everything but directories in `dir` (links and special files too: deleting one removes it,
/// never what it points to). A `dir` that is a link is not read through.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = crate::fsio::read_own_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .into_iter()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
}

/// Deletes expired weeks and old quarantined files. Creates nothing (a missing directory is
/// simply empty); per-file failures are collected in the summary, not fatal.
pub fn sweep(home: &Home, today: Day) -> Result<SweepSummary, Error> {
    let mut summary = SweepSummary::default();
    let store = home.counter_store();
    let mut counter_paths = store.counter_paths();
    counter_paths.sort();
    for path in counter_paths {
        match crate::Store::read(&path) {
            Ok(snapshot) => {
                if let Ok(end) = snapshot.meta.week_end.parse::<Day>()
                    && expired(end, today)
                {
                    remove(
                        &path,
                        &mut summary.deleted_counter_files,
                        &mut summary.failures,
                    );
                }
            }
            Err(e) if e.is_invalid_file() => {
                match store.quarantine(&path, &crate::read_error_reason(&e)) {
                    Ok(q) => summary.quarantined.push(q),
                    Err(e) => summary.failures.push(e.to_string()),
                }
            }
            Err(_) => {}
        }
    }
    for sub in ["local", "pending", "sent", "refused"] {
        for path in files_in(&home.reports_dir().join(sub)) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let start = name
                .get(..10)
                .filter(|_| name.as_bytes().get(10) == Some(&b'.'))
                .and_then(|d| d.parse::<Day>().ok());
            if let Some(end) = start.and_then(|s| s.plus_days(WEEK_DAYS))
                && expired(end, today)
            {
                remove(&path, &mut summary.deleted_reports, &mut summary.failures);
            }
        }
    }
    for path in files_in(&home.quarantine_dir()) {
        if modified_day(&path)
            .is_some_and(|day| today.days_since(day) >= QUARANTINE_WEEKS * WEEK_DAYS)
        {
            remove(
                &path,
                &mut summary.deleted_quarantined,
                &mut summary.failures,
            );
        }
    }
    for path in files_in(&home.root().join("wrappers")) {
        if modified_day(&path).is_some_and(|day| today.days_since(day) >= RETAIN_WEEKS * WEEK_DAYS)
        {
            remove(
                &path,
                &mut summary.deleted_wrapper_links,
                &mut summary.failures,
            );
        }
    }
    Ok(summary)
}

/// The day an entry was last modified: the entry's own time (a link's, never its target's).
fn modified_day(path: &Path) -> Option<Day> {
    let modified = fs::symlink_metadata(path).and_then(|m| m.modified()).ok()?;
    let secs = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Day::from_unix_days((secs / 86_400) as i64)
}
