//! The report folders the uploader works through: `reports/pending/` → `reports/sent/` (2xx) or
//! `reports/refused/` (4xx, with a `.reason` beside the report). A week sent as a private-
//! aggregation report has a `.dap` note beside it in `reports/sent/`: the vector that was sent.
//!
//! Promises: a report is moved with `rename`, so it is always in exactly one folder; a report
//! is never rewritten, so what was sent is byte for byte what the user could preview; a refused
//! report is never retried. Folders and reports are reached through `tally_home::fsio`: a link
//! or special file in their place is never followed, read or waited on.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tally_home::fsio;
use tally_protocol::{Day, MAX_REPORT_BYTES, Report};

/// Where a report went after its upload attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    Pending,
    Sent,
    Refused,
}

impl Folder {
    /// The folder's name under `reports/`.
    pub fn name(self) -> &'static str {
        match self {
            Folder::Pending => "pending",
            Folder::Sent => "sent",
            Folder::Refused => "refused",
        }
    }
}

/// One report waiting in `reports/pending/`.
#[derive(Debug, Clone)]
pub struct PendingReport {
    /// Its path.
    pub path: PathBuf,
    /// The week its file name says it covers.
    pub week: Day,
}

/// The reports waiting in `reports_dir/pending/`, oldest week first. Files whose names are not
/// `<YYYY-MM-DD>.json` are not reports and are left alone.
pub fn pending(reports_dir: &Path) -> io::Result<Vec<PendingReport>> {
    let dir = reports_dir.join(Folder::Pending.name());
    let entries = fsio::read_own_dir(&dir)?;
    let mut reports = Vec::new();
    for entry in entries {
        let name = entry.file_name();
        let Some(week) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|stem| stem.parse::<Day>().ok())
        else {
            continue;
        };
        reports.push(PendingReport {
            path: entry.path(),
            week,
        });
    }
    reports.sort_by_key(|r| r.week);
    Ok(reports)
}

/// Reads a pending report and checks it is one tally may send: a valid report whose file name
/// matches its week. Returns its exact bytes (what is sent) and the parsed report.
pub fn read_pending(report: &PendingReport) -> Result<(Vec<u8>, Report), String> {
    let bytes = fsio::read_capped(&report.path, MAX_REPORT_BYTES as u64)
        .and_then(|b| b.ok_or_else(|| io::ErrorKind::NotFound.into()))
        .map_err(|e| format!("cannot read {}: {e}", report.path.display()))?;
    let parsed = Report::parse(&bytes)
        .map_err(|e| format!("{} is not a valid report: {e}", report.path.display()))?;
    if parsed.week != report.week {
        return Err(format!(
            "{} holds week {} but is named for week {}",
            report.path.display(),
            parsed.week,
            report.week
        ));
    }
    Ok((bytes, parsed))
}

/// Moves a pending report into `folder` (creating it), and for a refusal writes `reason` to
/// `<week>.json.reason` beside it first. Returns the report's new path.
pub fn file_away(
    reports_dir: &Path,
    report: &PendingReport,
    folder: Folder,
    reason: Option<&str>,
) -> io::Result<PathBuf> {
    let dir = reports_dir.join(folder.name());
    fsio::own_dir(reports_dir.parent().unwrap_or(reports_dir), &dir)?;
    let name = report
        .path
        .file_name()
        .ok_or_else(|| io::Error::other("report path has no name"))?;
    let target = dir.join(name);
    if let Some(reason) = reason {
        let mut reason_name = name.to_os_string();
        reason_name.push(".reason");
        fsio::write_atomic(&dir.join(reason_name), format!("{reason}\n").as_bytes())?;
    }
    fs::rename(&report.path, &target)?;
    Ok(target)
}

/// Writes `bytes` to `<week>.json<suffix>` in `folder` (creating it), beside where
/// [`file_away`] puts the report.
pub fn write_beside(
    reports_dir: &Path,
    report: &PendingReport,
    folder: Folder,
    suffix: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let dir = reports_dir.join(folder.name());
    fsio::own_dir(reports_dir.parent().unwrap_or(reports_dir), &dir)?;
    let mut name = report
        .path
        .file_name()
        .ok_or_else(|| io::Error::other("report path has no name"))?
        .to_os_string();
    name.push(suffix);
    fsio::write_atomic(&dir.join(name), bytes)
}

/// Removes a pending report that must never be sent (too old, or from before the consent date).
pub fn discard(report: &PendingReport) -> io::Result<()> {
    match fs::remove_file(&report.path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"week":"2026-11-16","x":0.25,"config_version":1,"programs":[{"program":"cargo","version":"1.95.0","os":"linux","arch":"x86_64","counters":{"cargo/invocations":1}}]}"#;

    /// A reports directory whose `pending/` holds these files (name, contents).
    fn with_pending(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let pending_dir = dir.path().join("pending");
        fs::create_dir_all(&pending_dir).unwrap();
        for (name, contents) in files {
            fs::write(pending_dir.join(name), contents).unwrap();
        }
        dir
    }

    #[test]
    fn lists_only_reports_oldest_first_and_files_them_away() {
        let dir = with_pending(&[
            ("2026-11-16.json", REPORT),
            ("2026-11-09.json", &REPORT.replace("11-16", "11-09")),
            ("notes.txt", "x"),
            ("2026-11-09.json.tmp1", "x"),
        ]);
        let reports = pending(dir.path()).unwrap();
        let weeks: Vec<String> = reports.iter().map(|r| r.week.to_string()).collect();
        assert_eq!(weeks, ["2026-11-09", "2026-11-16"]);

        let (bytes, parsed) = read_pending(&reports[1]).unwrap();
        assert_eq!(bytes, REPORT.as_bytes());
        assert_eq!(parsed.x, 0.25);

        let moved = file_away(dir.path(), &reports[1], Folder::Refused, Some("HTTP 400")).unwrap();
        assert_eq!(fs::read_to_string(&moved).unwrap(), REPORT);
        let reason = fs::read_to_string(dir.path().join("refused/2026-11-16.json.reason")).unwrap();
        assert_eq!(reason, "HTTP 400\n");
        assert_eq!(pending(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn a_misnamed_or_broken_report_is_not_sendable() {
        let dir = with_pending(&[
            ("2026-11-23.json", REPORT),
            ("2026-11-30.json", "{not json"),
        ]);
        let reports = pending(dir.path()).unwrap();
        assert!(
            read_pending(&reports[0])
                .unwrap_err()
                .contains("named for week 2026-11-23")
        );
        assert!(
            read_pending(&reports[1])
                .unwrap_err()
                .contains("not a valid report")
        );
    }

    #[test]
    fn no_pending_folder_means_nothing_pending() {
        let dir = tempfile::tempdir().unwrap();
        assert!(pending(dir.path()).unwrap().is_empty());
    }
}
