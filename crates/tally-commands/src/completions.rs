//! `tally completions SHELL` and `tally man [--dir DIR]`: the shell completion script
//! (clap_complete) and the man pages (clap_mangen), generated from the very clap definition the
//! parser uses ([`crate::command_line`]), so neither can fall behind the commands.
//!
//! Printed, or with `--dir` written as one page per command (`tally.1`, `tally-status.1`, ...,
//! the pages `tally.1` refers to); never installed anywhere unasked: `tally setup` says where
//! each shell and `man` look for them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

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

/// Options of `tally man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write every page (tally.1 and one per subcommand) into this directory instead of
    /// printing tally.1, e.g. ~/.local/share/man/man1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `tally man`.
pub(crate) fn man(args: &ManArgs, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        clap_mangen::generate_to(crate::command_line(), dir)
            .with_context(|| format!("cannot write the man pages in {}", dir.display()))?;
        writeln!(
            io.out,
            "Wrote tally.1 and a page per subcommand to {}.",
            dir.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut page = Vec::new();
    // As `--dir` writes it: no page for `help`, which the pages themselves are.
    clap_mangen::Man::new(crate::command_line().disable_help_subcommand(true)).render(&mut page)?;
    io.out.write_all(&page)?;
    Ok(ExitCode::SUCCESS)
}
