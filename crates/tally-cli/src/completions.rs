//! `tally completions SHELL` and `tally man`: the shell completion script (clap_complete) and
//! the man page (clap_mangen), generated from the very clap definition the parser uses
//! ([`crate::command_line`]), so neither can fall behind the commands.
//!
//! Both are printed, never installed: `tally setup` says where each shell looks for them.

use std::process::ExitCode;

use crate::Io;

/// Options of `tally completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `tally completions SHELL`.
pub(crate) fn completions(args: &CompletionsArgs, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    // Generated whole before it is written: clap_complete panics on a write error, and a
    // closed pipe is not one worth a panic.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut crate::command_line(), "tally", &mut script);
    io.out.write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// `tally man`.
pub(crate) fn man(io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    let mut page = Vec::new();
    clap_mangen::Man::new(crate::command_line()).render(&mut page)?;
    io.out.write_all(&page)?;
    Ok(ExitCode::SUCCESS)
}
