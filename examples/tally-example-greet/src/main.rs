//! `tally-example-greet`: a small CLI that counts its own events into tally through the
//! `tally-counter` library, as any Rust tool can. It greets; what it counts is listed below,
//! and nothing else (never a name it greets, never a value).
//!
//! | counter | when |
//! | --- | --- |
//! | `tally-example-greet/invocations` | every run |
//! | `tally-example-greet/subcommand:{hello,bye}`, `…/flag:-v`, `…/hello/flag:--loud`, … | the subcommand and flags given, by name (`tally_counter::cli::count_command`) |
//! | `tally-example-greet/color:{auto,always,never}` | the `--color` choice, when given |
//! | `tally-example-greet/hello/greeted` | each greeting printed (`--times` of them) |
//! | `tally-example-greet/name-length:{<4,<16,>=16}` | how long the name was, in buckets |
//! | `tally-example-greet/time:{<0.1s,<1s,<10s,<60s,>=60s}` | how long the run took |

use std::time::Instant;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use tally_counter::{Counter, Histogram, counter, histogram};

static INVOCATIONS: Counter = counter!("tally-example-greet/invocations");
static GREETED: Counter = counter!("tally-example-greet/hello/greeted");
static COLOR_AUTO: Counter = counter!("tally-example-greet/color:auto");
static COLOR_ALWAYS: Counter = counter!("tally-example-greet/color:always");
static COLOR_NEVER: Counter = counter!("tally-example-greet/color:never");
static NAME_LENGTH: Histogram = histogram!("tally-example-greet/name-length", values = &[4, 16]);
static TIME: Histogram = histogram!("tally-example-greet/time");

/// Greets people.
#[derive(Parser)]
#[command(name = "tally-example-greet", version)]
struct Cli {
    /// Say more.
    #[arg(short, action = clap::ArgAction::Count)]
    verbose: u8,
    /// When to use color.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Says hello.
    Hello {
        /// Shout it.
        #[arg(long)]
        loud: bool,
        /// How many times.
        #[arg(long, default_value_t = 1)]
        times: u32,
        /// Who to greet.
        name: Option<String>,
    },
    /// Says goodbye.
    Bye {
        /// Who to see off.
        name: Option<String>,
    },
}

fn main() {
    let start = Instant::now();
    // The program's name and version come from this crate's Cargo.toml.
    tally_counter::open!();
    INVOCATIONS.inc();

    let command = Cli::command();
    let matches = command.clone().get_matches();
    tally_counter::cli::count_command("tally-example-greet/", &command, &matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());

    if matches.value_source("color") == Some(clap::parser::ValueSource::CommandLine) {
        // A fixed choice, one counter each: the value itself is never made into a name.
        match cli.color {
            Color::Auto => COLOR_AUTO.inc(),
            Color::Always => COLOR_ALWAYS.inc(),
            Color::Never => COLOR_NEVER.inc(),
        }
    }
    match cli.command {
        Command::Hello { loud, times, name } => {
            let name = name.unwrap_or_else(|| "world".to_string());
            NAME_LENGTH.observe_value(name.chars().count() as u64);
            for _ in 0..times {
                let line = format!("Hello, {name}!");
                println!("{}", if loud { line.to_uppercase() } else { line });
                GREETED.inc();
            }
        }
        Command::Bye { name } => {
            let name = name.unwrap_or_else(|| "world".to_string());
            NAME_LENGTH.observe_value(name.chars().count() as u64);
            println!("Goodbye, {name}.");
        }
    }
    if cli.verbose > 0 {
        eprintln!(
            "tally-example-greet {}: counting into tally: {}",
            env!("CARGO_PKG_VERSION"),
            tally_counter::counting()
        );
    }
    TIME.observe(start.elapsed());
}
