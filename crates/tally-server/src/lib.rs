//! tally-server (skeleton; see ARCHITECTURE.md).
