//! tally-home (skeleton; see ARCHITECTURE.md).
