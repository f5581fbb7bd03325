//! The integration tests of tally-report, in one test binary (as ripgrep's `tests/`): weekly
//! reports on a real data directory, and the privacy and sampling properties of the upload copy.
//!
//! proptest keeps the cases it replays first in `../proptest-regressions/<module>.txt`: with a
//! `main.rs` here, its default `SourceParallel` persistence takes this directory for the source
//! root and looks in a directory beside it, not beside each source file.

mod privacy;
mod report;
mod support;
