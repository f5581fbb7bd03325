//! The `tally` command line: `status`, `on`, `local`, `off`, `clean`, `show`, `preview`,
//! `upload`, `config`, `view` and `demo`.
//!
//! The binary's `main` calls [`run`] when tally is invoked under its own name with a
//! subcommand. Every command's output is produced here; the work itself lives in the library
//! crates (`tally-home`, `tally-report`, `tally-config`, `tally-upload`).
//!
//! Promises: an error is one paragraph on stderr that says what went wrong and how to fix it,
//! and exits with status 1 (usage errors: 2). No command writes anything when the environment
//! forces tally off (`TALLY=off`, `DO_NOT_TRACK=1`), except `off` and `clean`, which only
//! ever remove.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod demo;
pub mod view;

/// Opt-in, privacy-preserving usage counting for go, gofmt, cargo, rustc and rustfmt.
#[derive(Debug, Parser)]
#[command(name = "tally", version, about, propagate_version = true)]
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

/// Runs the CLI on `args` (argv including the program name) and returns the exit status.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout and usage errors to stderr, with its own code.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    let env = tally_home::Env::from_process();
    match dispatch(&cli.command, &env) {
        Ok(code) => code,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "tally: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: &Command, env: &tally_home::Env) -> anyhow::Result<ExitCode> {
    match command {
        Command::View(args) => view::run(args, env)?,
        Command::Demo(args) => demo::run(args)?,
        other => anyhow::bail!("`tally {}` is not built yet", name_of(other)),
    }
    Ok(ExitCode::SUCCESS)
}

fn name_of(command: &Command) -> &'static str {
    match command {
        Command::Status(_) => "status",
        Command::On(_) => "on",
        Command::Local => "local",
        Command::Off => "off",
        Command::Clean(_) => "clean",
        Command::Show(_) => "show",
        Command::Preview => "preview",
        Command::Upload(_) => "upload",
        Command::Config(_) => "config",
        Command::View(_) => "view",
        Command::Demo(_) => "demo",
    }
}
