//! tally-upload (skeleton; see ARCHITECTURE.md).
