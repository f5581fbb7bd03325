//! tally-config (skeleton; see ARCHITECTURE.md).
