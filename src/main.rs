//! The `tally` binary: one program, many names. Thin on purpose; every behaviour lives in a
//! library crate (see ARCHITECTURE.md).
fn main() {}
