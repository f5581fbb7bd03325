//! tally-grammar (skeleton; see ARCHITECTURE.md).
