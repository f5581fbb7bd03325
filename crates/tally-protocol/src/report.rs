//! The weekly report: one installation-week of counts.
//!
//! The client writes a local copy holding everything, and, in mode `on`, an upload copy holding
//! only what the verified config allows. Both have this shape (schema:
//! `config-schema/report.schema.json`):
//!
//! ```json
//! {
//!   "week": "2026-11-16",
//!   "x": 0.4231,
//!   "config_version": 3,
//!   "programs": [
//!     { "program": "cargo", "version": "1.95.0", "os": "linux", "arch": "x86_64",
//!       "counters": { "cargo/invocations": 12, "cargo/subcommand:build": 9 } }
//!   ]
//! }
//! ```
//!
//! Privacy promise: a report holds no identifier and no time finer than its week's first day.
//! `x` is drawn afresh for every report, so it links nothing across weeks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Day;

/// One installation-week of counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// First day of the week the counts were made in (weeks are [`crate::WEEK_DAYS`] long).
    pub week: Day,
    /// The report's random number, uniform in `(0, 1)`, drawn once per report; the server
    /// refuses any other value.
    #[cfg_attr(test, schemars(extend("exclusiveMinimum" = 0, "exclusiveMaximum" = 1)))]
    pub x: f64,
    /// The version of the config the upload copy was filtered by; `None` in a local copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<u64>,
    /// One section per (program, version, os, arch) seen during the week.
    pub programs: Vec<ProgramReport>,
}

/// The counts of one program version on one OS and architecture during the week.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProgramReport {
    /// Program name (`cargo`, `rustc`, `rustfmt`, `cargo-fmt`, `go`, `gofmt`).
    pub program: String,
    /// The tool's version as tally read it (`1.95.0`, `go1.19.8`, `unknown`).
    pub version: String,
    /// Rust's `std::env::consts::OS` name.
    pub os: String,
    /// Rust's `std::env::consts::ARCH` name.
    pub arch: String,
    /// Counter name to count. Names come from tally's fixed vocabulary (`tally-grammar`).
    pub counters: BTreeMap<String, u64>,
}

/// Why a report body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("report is {0} bytes, over the {max} byte limit", max = crate::MAX_REPORT_BYTES)]
    TooLarge(usize),
    #[error("report is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("report x is {0}, not in (0, 1)")]
    BadX(f64),
}

impl Report {
    /// Parses a report body and checks its shape (size, JSON, `x` in `(0, 1)`). Whether its
    /// contents are allowed is the server's business (it knows the config). Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Report, ReportError> {
        if bytes.len() > crate::MAX_REPORT_BYTES {
            return Err(ReportError::TooLarge(bytes.len()));
        }
        let report: Report =
            serde_json::from_slice(bytes).map_err(|e| ReportError::Json(e.to_string()))?;
        if !(report.x > 0.0 && report.x < 1.0) {
            return Err(ReportError::BadX(report.x));
        }
        Ok(report)
    }

    /// The canonical serialized form (pretty JSON, keys in a fixed order, trailing newline).
    /// `tally preview` prints exactly these bytes and the uploader sends exactly these bytes.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a Report always serializes");
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config-schema/example-report.json");

    #[test]
    fn example_report_round_trips() {
        let report = Report::parse(EXAMPLE.as_bytes()).unwrap();
        let again = Report::parse(&report.to_canonical_json()).unwrap();
        assert_eq!(report, again);
    }

    #[test]
    fn rejects_bad_reports() {
        assert!(matches!(
            Report::parse(&vec![b' '; 200 * 1024]),
            Err(ReportError::TooLarge(_))
        ));
        let bad_x = EXAMPLE.replacen("0.4231", "1.5", 1);
        assert!(matches!(
            Report::parse(bad_x.as_bytes()),
            Err(ReportError::BadX(_))
        ));
        let extra = EXAMPLE.replacen("{", "{\"hostname\": \"me\",", 1);
        assert!(Report::parse(extra.as_bytes()).is_err());
        let negative = EXAMPLE.replacen(": 12", ": -12", 1);
        assert!(Report::parse(negative.as_bytes()).is_err());
    }
}
