//! tally-shims (skeleton).
