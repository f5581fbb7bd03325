//! tally-cli (skeleton; see ARCHITECTURE.md).
