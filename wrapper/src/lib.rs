//! tally-wrapper (skeleton).
