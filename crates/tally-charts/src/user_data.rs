//! What `tally view` draws: the user's own weeks of counts, as plain data.
//!
//! The CLI reads them from the local reports and the current week's counter files; the page
//! (`user.rs`) and its compiles section (`user_compiles.rs`) only draw them.

use tally_protocol::{Day, ProgramReport};

/// Everything `tally view` shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserData {
    /// Where the data was read from, shown so the user knows which files these are.
    pub data_dir: String,
    /// The mode line (`local`, `on since 2026-11-02`, `off`), shown as is.
    pub mode: String,
    pub weeks: Vec<UserWeek>,
}

/// One week of the user's counts.
#[derive(Debug, Clone, PartialEq)]
pub struct UserWeek {
    /// First day of the week (the installation's own week start).
    pub week: Day,
    /// `true` while the week has not ended (counts still growing, no report yet).
    pub in_progress: bool,
    /// One section per (program, version, OS, arch), as in a report.
    pub programs: Vec<ProgramReport>,
}
