//! Weekly reports: ended weeks of counter files become a local report and, in mode `on`, an
//! upload copy holding only what the signed config allows.
//!
//! - [`build_due_reports`]: the weekly step (see [`build`] for its crash-safety): writes
//!   `reports/local/<week>.json` (everything, `config_version` absent) and, only if the mode is
//!   `on` since before the week began and a verified config is present, creates
//!   `reports/pending/<week>.json` filtered by [`upload_copy`]. Counter files are removed only
//!   after the local report is safely on disk; invalid ones are quarantined and reported.
//! - [`upload_copy`]: the pure upload decision (see [`filter`] for the rules, and the privacy
//!   promise: nothing outside the config's vocabulary reaches an upload copy).
//! - [`preview`]: the exact bytes the next upload would send, or why nothing would be sent.
//! - [`read_weeks`]: every count tally holds, by week, for `tally show` and `tally view` (see
//!   [`weeks`] for the one policy every reader of counter files and local reports follows).
//!
//! Each report has a random `x` in `(0, 1)`, drawn once when its week is built and shared by
//! its local and upload copies: the report is sent only if `x <= sample_rate`, and a counter is
//! kept only if `x <= its rate`, so smaller rates select nested subsets of reports.

#![forbid(unsafe_code)]

pub mod build;
pub mod filter;
pub mod preview;
pub mod weeks;

pub use build::{
    BuildError, BuildSummary, BuiltWeek, build_due_reports, build_due_reports_with, fresh_x, merge,
};
pub use filter::{Withheld, upload_copy};
pub use preview::{Preview, WeekPreview, preview};
pub use weeks::{Holdings, Section, Skipped, Source, WeekCounts, read_weeks};
