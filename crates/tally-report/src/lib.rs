//! tally-report (skeleton; see ARCHITECTURE.md).
