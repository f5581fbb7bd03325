//! tally-charts (skeleton; see ARCHITECTURE.md).
