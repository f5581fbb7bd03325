//! The `tally` command line: `status`, `on`, `local`, `off`, `clean`, `show`, `preview`,
//! `upload`, `config`, `view`, `demo`, `setup`, `completions` and `man`.
//!
//! The binary's `main` calls [`run`] when tally is invoked under its own name with a
//! subcommand. Every command's output is produced here; the work itself lives in the library
//! crates (`tally-home`, `tally-report`, `tally-config`, `tally-upload`).
//!
//! Promises: an error is one paragraph on stderr that says what went wrong and how to fix it,
//! and exits with status 1 (usage errors: 2). No command writes anything when the environment
//! forces tally off (`TALLY=off`, `DO_NOT_TRACK=1`), except `clean`, which only removes.
//! Output cut short by a closed pipe (`tally show | head`) is not an error. Everything printed
//! goes through [`escape::Escaping`]: no control character from a config, a collector, a
//! report or a file reaches the terminal (only newline and tab pass).

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod compiles;
mod completions;
mod config;
mod data_files;
pub mod demo;
pub mod escape;
mod install_paths;
mod modes;
mod preview;
mod setup;
mod shim_report;
mod show;
mod status;
mod upload;
pub mod view;

/// Opt-in, privacy-preserving usage counting for go, gofmt, cargo, rustc and rustfmt.
#[derive(Debug, Parser)]
#[command(name = "tally", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the mode, where data lives, the shims, the config, this week's counts and uploads.
    Status(StatusArgs),
    /// Turn uploading on: count locally and send weekly reports to a collector.
    On(OnArgs),
    /// Count on this machine only and send nothing (the default).
    Local,
    /// Stop counting: tally writes nothing and starts nothing.
    Off,
    /// Delete everything tally holds in its data directory.
    Clean(CleanArgs),
    /// Print every counter tally holds, per week and program.
    Show(ShowArgs),
    /// Print the exact bytes the next upload would send, or why nothing would be sent.
    Preview,
    /// Build the reports that are due and upload them now.
    Upload(UploadArgs),
    /// Show the cached upload config and its verification, or verify a config file.
    Config(ConfigArgs),
    /// Show your own counts as charts in a browser.
    View(view::ViewArgs),
    /// Run a complete collector and client on this machine, in temporary directories.
    Demo(demo::DemoArgs),
    /// Install the shims for this user and check them; --uninstall removes what it made.
    Setup(setup::SetupArgs),
    /// Print the shell completion script for SHELL.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff: `tally man | man -l -`), or write every page with --dir.
    Man(completions::ManArgs),
}

/// Options of `tally status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `tally on`.
#[derive(Debug, clap::Args)]
pub struct OnArgs {
    /// The collector's URL (e.g. https://tally.example.org). Needed the first time unless this
    /// build of tally has one built in.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The collector's minisign public key (base64, as in the second line of a `.pub` file).
    /// Repeat for a backup key.
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// Accept a plain http:// URL to a collector on another machine (reports travel
    /// unencrypted; only for a network you trust). http:// to this machine needs no flag.
    #[arg(long)]
    pub allow_http: bool,
}

/// Options of `tally clean`.
#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// Delete without asking (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Options of `tally show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Only the week that contains this day (YYYY-MM-DD).
    #[arg(long, value_name = "DAY")]
    pub week: Option<String>,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV: week,program,version,os,arch,counter,count,source.
    #[arg(long)]
    pub csv: bool,
}

/// Options of `tally upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Build the due reports and say what would be sent, but send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run quietly, detached from the terminal (how the shims start the daily upload).
    #[arg(long, hide = true)]
    pub background: bool,
}

/// Options of `tally config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: Option<ConfigCommand>,
}

/// Subcommands of `tally config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Verify a config file and its minisign signature against the pinned keys or `--key`.
    Verify {
        /// The config file (JSON).
        file: std::path::PathBuf,
        /// Its minisign signature file (`.minisig`).
        sig: std::path::PathBuf,
        /// A minisign public key to verify against instead of the pinned ones. Repeatable.
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
    },
}

/// Where a command writes, and what it may ask.
pub struct Io<'a> {
    /// The command's output (stdout).
    pub out: &'a mut dyn Write,
    /// Progress, warnings and errors (stderr).
    pub err: &'a mut dyn Write,
    /// Whether stdin is a terminal a person can answer questions on.
    pub interactive: bool,
}

/// Runs the CLI on `args` (argv including the program name) and returns the exit status.
pub fn run(args: Vec<OsString>) -> u8 {
    let env = tally_home::Env::from_process();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        interactive: std::io::stdin().is_terminal(),
    };
    status_with(args, &env, &mut io)
}

/// [`run`] with an explicit environment and output: what tests drive.
pub fn run_with(args: Vec<OsString>, env: &tally_home::Env, io: &mut Io<'_>) -> ExitCode {
    ExitCode::from(status_with(args, env, io))
}

/// [`run_with`] as the process's exit status (the binary's entry point is C's `main`, which
/// needs a number; `ExitCode` does not give its value back).
fn status_with(args: Vec<OsString>, env: &tally_home::Env, io: &mut Io<'_>) -> u8 {
    let mut out = escape::Escaping::new(&mut *io.out);
    let mut err = escape::Escaping::new(&mut *io.err);
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        interactive: io.interactive,
    };
    escaped_status_with(args, env, &mut io)
}

/// [`status_with`] once the output is escaped.
fn escaped_status_with(args: Vec<OsString>, env: &tally_home::Env, io: &mut Io<'_>) -> u8 {
    let parsed = command_line()
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with status 0; usage errors to stderr with 2.
            let text = err.render().to_string();
            let target: &mut dyn Write = if err.use_stderr() { io.err } else { io.out };
            let _ = target.write_all(text.as_bytes());
            return u8::try_from(err.exit_code()).unwrap_or(2);
        }
    };
    match dispatch(&cli.command, env, io) {
        // Commands end in success or failure, nothing else.
        Ok(code) if code == ExitCode::SUCCESS => 0,
        Ok(_) => 1,
        // A closed pipe (`tally show | head`) is not an error worth a message.
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            0
        }
        Err(err) => {
            let _ = writeln!(io.err, "tally: error: {err:#}");
            1
        }
    }
}

fn dispatch(command: &Command, env: &tally_home::Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    if let Some(Err(message)) = env.clock_override() {
        writeln!(io.err, "tally: warning: {message}")?;
    }
    match command {
        Command::Status(args) => status::run(args, env, io),
        Command::On(args) => modes::on(args, env, io),
        Command::Local => modes::local(env, io),
        Command::Off => modes::off(env, io),
        Command::Clean(args) => modes::clean(args, env, io),
        Command::Show(args) => show::run(args, env, io),
        Command::Preview => preview::run(env, io),
        Command::Upload(args) => upload::run(args, env, io),
        Command::Config(args) => config::run(args, env, io),
        Command::View(args) => view::run(args, env).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::run(args).map(|()| ExitCode::SUCCESS),
        Command::Setup(args) => setup::run(args, env, io),
        Command::Completions(args) => completions::completions(args, io),
        Command::Man(args) => completions::man(args, io),
    }
}

/// The clap command, with `tally status --help` listing every environment variable tally reads
/// (from the registry in `tally_home::env`, so the list cannot go stale).
pub fn command_line() -> clap::Command {
    let mut vars = String::from("Environment variables tally reads:\n");
    for var in tally_home::env::VARS {
        vars.push_str(&format!(
            "  {:<24} {} (read by {})\n",
            var.name, var.meaning, var.read_by
        ));
    }
    Cli::command().mut_subcommand("status", |status| status.after_long_help(vars))
}

/// The data directory, or an error saying how to give tally one.
pub(crate) fn locate_home(env: &tally_home::Env) -> anyhow::Result<tally_home::Home> {
    tally_home::Home::locate(env).ok_or_else(|| anyhow::anyhow!(tally_home::Error::NoHome))
}
