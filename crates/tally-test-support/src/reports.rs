//! Reports as an installation sends them, for the tests of what receives, merges and charts
//! them.

use tally_protocol::{ProgramReport, Report};

/// A section of `program` `version` on linux/x86_64 with these counters.
pub fn section(program: &str, version: &str, counters: &[(&str, u64)]) -> ProgramReport {
    ProgramReport {
        program: program.to_owned(),
        version: version.to_owned(),
        os: "linux".to_owned(),
        arch: "x86_64".to_owned(),
        counters: counters
            .iter()
            .map(|(name, count)| ((*name).to_owned(), *count))
            .collect(),
    }
}

/// A report of the week of `week` (a `YYYY-MM-DD` day) with its `x`, for config version 1.
pub fn report(week: &str, x: f64, programs: Vec<ProgramReport>) -> Report {
    Report {
        week: week.parse().unwrap(),
        x,
        config_version: Some(1),
        programs,
    }
}
