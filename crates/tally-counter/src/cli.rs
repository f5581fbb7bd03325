//! Counting a clap command line by name: which flags and subcommands it set, never their
//! values (feature `clap`).
//!
//! Only what the tool's own [`Command`] defines is named: a flag by its long name (`--loud`)
//! or, without one, its short one (`-l`); a subcommand by its name. Positional arguments, every
//! value, and an external subcommand's name (which the user typed, clap knows nothing of it)
//! never are: the last counts as `subcommand:other`. A flag counts once however often it was
//! given, and only when it came from the command line (not from a default or the environment).
//! Each name is checked like any other and counts as `<program>/other` if it breaks the rule
//! (a long name of more than 32 bytes, capitals in a long name).

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

use crate::counter::add_by_name;
use crate::session::SESSION;

/// Counts `<prefix><flag>` for each flag of `command` set on the command line at this level of
/// `matches` (not in its subcommands), like Go's `counter.CountFlags`.
///
/// ```
/// # #[cfg(feature = "clap")] {
/// use clap::{Arg, ArgAction, Command};
///
/// let command = Command::new("greet").arg(Arg::new("loud").long("loud").action(ArgAction::SetTrue));
/// let matches = command.clone().get_matches_from(["greet", "--loud"]);
/// tally_counter::cli::count_flags("greet/flag:", &command, &matches); // greet/flag:--loud
/// # }
/// ```
pub fn count_flags(prefix: &str, command: &Command, matches: &ArgMatches) {
    for label in flags_set(command, matches) {
        add_by_name(&SESSION, &format!("{prefix}{label}"), 1);
    }
}

/// Counts the whole command line the way tally names cargo's: `<prefix>flag:--x` for each flag
/// set before any subcommand, `<prefix>subcommand:<name>` for the subcommand chosen, and the
/// same one level down under `<prefix><name>/` (`greet/hello/flag:--loud`), to the last
/// subcommand. `prefix` is usually `"<program>/"`.
pub fn count_command(prefix: &str, command: &Command, matches: &ArgMatches) {
    for name in command_names(prefix, command, matches) {
        add_by_name(&SESSION, &name, 1);
    }
}

/// What [`count_command`] counts (for tests and for tools that show what they would count).
pub fn command_names(prefix: &str, command: &Command, matches: &ArgMatches) -> Vec<String> {
    let mut names = Vec::new();
    let (mut prefix, mut command, mut matches) = (prefix.to_string(), command, matches);
    loop {
        for label in flags_set(command, matches) {
            names.push(format!("{prefix}flag:{label}"));
        }
        let Some((name, sub_matches)) = matches.subcommand() else {
            break;
        };
        let Some(sub) = command.find_subcommand(name) else {
            // An external subcommand: its name is whatever the user typed.
            names.push(format!("{prefix}subcommand:other"));
            break;
        };
        let name = sub.get_name();
        names.push(format!("{prefix}subcommand:{name}"));
        prefix = format!("{prefix}{name}/");
        command = sub;
        matches = sub_matches;
    }
    names
}

/// `--long` or `-s` for each flag of `command` given on the command line in `matches`.
fn flags_set(command: &Command, matches: &ArgMatches) -> Vec<String> {
    let mut labels = Vec::new();
    for id in matches.ids() {
        if matches.value_source(id.as_str()) != Some(ValueSource::CommandLine) {
            continue;
        }
        let Some(arg) = command.get_arguments().find(|a| a.get_id() == id) else {
            continue;
        };
        if let Some(long) = arg.get_long() {
            labels.push(format!("--{long}"));
        } else if let Some(short) = arg.get_short() {
            labels.push(format!("-{short}"));
        }
    }
    labels.sort();
    labels.dedup();
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn greet() -> Command {
        Command::new("greet")
            .arg(Arg::new("verbose").short('v').action(ArgAction::Count))
            .arg(
                Arg::new("color")
                    .long("color")
                    .default_value("auto")
                    .action(ArgAction::Set),
            )
            .subcommand(
                Command::new("hello")
                    .arg(Arg::new("loud").long("loud").action(ArgAction::SetTrue))
                    .arg(Arg::new("name").long("name").action(ArgAction::Set))
                    .arg(Arg::new("who").action(ArgAction::Set)),
            )
            .allow_external_subcommands(true)
    }

    #[test]
    fn names_flags_and_subcommands_never_values() {
        let command = greet();
        let matches = command.clone().get_matches_from([
            "greet",
            "-vv",
            "hello",
            "--loud",
            "--name",
            "/home/alice/secret",
            "Alice",
        ]);
        assert_eq!(
            command_names("greet/", &command, &matches),
            [
                "greet/flag:-v",
                "greet/subcommand:hello",
                "greet/hello/flag:--loud",
                "greet/hello/flag:--name",
            ]
        );
    }

    #[test]
    fn defaults_are_not_counted_and_external_subcommands_are_other() {
        let command = greet();
        let matches =
            command
                .clone()
                .get_matches_from(["greet", "--color", "never", "deploy-to-prod", "x"]);
        assert_eq!(
            command_names("greet/", &command, &matches),
            ["greet/flag:--color", "greet/subcommand:other"]
        );
        let matches = command.clone().get_matches_from(["greet"]);
        assert!(command_names("greet/", &command, &matches).is_empty());
    }
}
