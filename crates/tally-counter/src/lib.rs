//! tally-counter (skeleton; see ARCHITECTURE.md).
