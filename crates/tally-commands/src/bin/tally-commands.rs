//! The tally CLI alone, without the shims' dispatch: what this crate's tests run as a real
//! process (the `tally` binary itself belongs to the root package).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(tally_commands::run(std::env::args_os().collect()))
}
