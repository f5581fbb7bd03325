//! `tally on`, `tally local`, `tally off` and `tally clean`: the user's consent and their data.
//!
//! Promises: `on` records today as the consent date (nothing counted before it is ever sent)
//! and says plainly what will be sent, to whom, from when; pointing tally at a different
//! collector is new consent with a new date. `local` and `off` withdraw consent: reports
//! waiting to be uploaded are deleted. When the environment forces tally off (`TALLY=off`,
//! `DO_NOT_TRACK`), these commands write nothing and say so. `clean` removes only files tally
//! itself makes, so a mistaken `TALLY_DIR` cannot cost the user anything else.

use std::fs;
use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tally_config::Endpoint;
use tally_home::{Env, Home, Mode};

use crate::{CleanArgs, Io, OnArgs, locate_home};

/// The collector URL this build of tally was packaged with, if any.
const BUILTIN_ENDPOINT: Option<&str> = option_env!("TALLY_BUILTIN_ENDPOINT");
/// The collector's public keys this build was packaged with (comma- or space-separated).
const BUILTIN_KEYS: Option<&str> = option_env!("TALLY_BUILTIN_KEYS");

fn refuse_when_forced_off(env: &Env, what: &str) -> anyhow::Result<()> {
    if env.forces_off() {
        bail!(
            "TALLY=off or DO_NOT_TRACK is set in this environment, and then tally writes nothing, \
             so it cannot {what}; run the command again without them"
        );
    }
    Ok(())
}

/// `tally on`.
pub(crate) fn on(args: &OnArgs, env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    refuse_when_forced_off(env, "turn uploads on")?;
    let home = locate_home(env)?;
    let config_dir = home.config_dir();
    let existing = Endpoint::load(&config_dir).context("reading the stored collector endpoint")?;
    let endpoint = choose_endpoint(args, existing.as_ref())?;
    let today = env.today();
    let previous = home.stored_mode().unwrap_or(Mode::Local);
    // Keep the first consent date only while it is consent to the same collector.
    let since = match previous {
        Mode::On { since } if existing.as_ref() == Some(&endpoint) => since,
        _ => today,
    };
    home.own_dir(&config_dir)?;
    endpoint.save(&config_dir)?;
    home.set_mode(Mode::On { since })?;

    let key_ids: Vec<String> = endpoint
        .pinned_keys()
        .map(|keys| keys.iter().map(|k| k.key_id.to_string()).collect())
        .unwrap_or_default();
    let out = &mut *io.out;
    if since == today {
        writeln!(
            out,
            "tally is on: weekly reports will be sent to {}.",
            endpoint.url
        )?;
    } else {
        writeln!(
            out,
            "tally is on (since {since}): weekly reports are sent to {}.",
            endpoint.url
        )?;
    }
    writeln!(out)?;
    writeln!(out, "What will be sent, to whom, from when:")?;
    writeln!(
        out,
        "  - To {} only, once a week, for weeks that begin after {since}. Nothing counted",
        endpoint.url
    )?;
    writeln!(out, "    before then is ever sent.")?;
    writeln!(
        out,
        "  - Only the counters the collector's config asks for, and only if the config's signature"
    )?;
    writeln!(
        out,
        "    verifies against the pinned key {}.",
        key_ids.join(" or ")
    )?;
    writeln!(
        out,
        "  - Each report holds: the week's first day, a random number, and per program version,"
    )?;
    writeln!(
        out,
        "    OS and architecture, how often each counted name occurred (like cargo/subcommand:build)."
    )?;
    writeln!(
        out,
        "  - Never: names, paths, arguments' values, crate names, host or user names, machine IDs."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Counts are kept in {}; every report sent is kept there too, in reports/sent/.",
        home.root().display()
    )?;
    writeln!(
        out,
        "See the exact bytes with `tally preview`; stop with `tally local` or `tally off`."
    )?;
    if endpoint.url.starts_with("http://") && !is_loopback_url(&endpoint.url) {
        writeln!(
            io.err,
            "tally: warning: {} is not https://: reports will cross the network unencrypted",
            endpoint.url
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The endpoint `tally on` uses: the command line's, else the stored one, else the built-in.
fn choose_endpoint(args: &OnArgs, existing: Option<&Endpoint>) -> anyhow::Result<Endpoint> {
    let builtin_keys: Vec<String> = BUILTIN_KEYS
        .unwrap_or_default()
        .split([',', ' ', '\n'])
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    let url = args
        .endpoint
        .clone()
        .or_else(|| existing.map(|e| e.url.clone()))
        .or_else(|| BUILTIN_ENDPOINT.map(str::to_string));
    let Some(url) = url else {
        bail!(
            "tally needs to know where to send reports: give the collector's URL and public key, \
             e.g. `tally on --endpoint https://tally.example.org --key RW...` (ask the collector \
             for both)"
        );
    };
    let same_url = |other: &str| normalize_url(other) == normalize_url(&url);
    let keys = if !args.keys.is_empty() {
        args.keys.clone()
    } else if let Some(existing) = existing.filter(|e| same_url(&e.url)) {
        existing.keys.clone()
    } else if BUILTIN_ENDPOINT.is_some_and(same_url) {
        builtin_keys
    } else {
        Vec::new()
    };
    // Forcing plain http is remembered for the same URL, and given again for a new one.
    let allow_http = args.allow_http || existing.is_some_and(|e| e.allow_http && same_url(&e.url));
    Endpoint::with_options(&url, &keys, allow_http).map_err(|e| anyhow::anyhow!("{e}"))
}

fn normalize_url(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

fn is_loopback_url(url: &str) -> bool {
    let host = url
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    host == "localhost" || host.starts_with("127.") || url.starts_with("http://[::1]")
}

/// `tally local`.
pub(crate) fn local(env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    refuse_when_forced_off(env, "change the mode")?;
    let home = locate_home(env)?;
    home.set_mode(Mode::Local)?;
    writeln!(
        io.out,
        "tally is local: it counts on this machine and sends nothing. Counts are in {}.",
        home.root().display()
    )?;
    withdraw_pending(&home, io)?;
    Ok(ExitCode::SUCCESS)
}

/// `tally off`.
pub(crate) fn off(env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    if env.forces_off() {
        writeln!(
            io.out,
            "tally is already off in this environment (TALLY=off or DO_NOT_TRACK is set), and \
             writes nothing, not even the mode; to turn it off for good, run `tally off` \
             without them."
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let home = locate_home(env)?;
    home.set_mode(Mode::Off)?;
    writeln!(
        io.out,
        "tally is off: it counts nothing, writes nothing and sends nothing. What it already \
         holds stays in {} (`tally show`; `tally clean` deletes it).",
        home.root().display()
    )?;
    withdraw_pending(&home, io)?;
    Ok(ExitCode::SUCCESS)
}

/// Deletes the reports waiting to be uploaded: consent was withdrawn.
fn withdraw_pending(home: &Home, io: &mut Io<'_>) -> anyhow::Result<()> {
    let pending = tally_upload::outbox::pending(&home.reports_dir())?;
    for report in &pending {
        tally_upload::outbox::discard(report)?;
    }
    if !pending.is_empty() {
        writeln!(
            io.out,
            "Deleted {} report(s) that were waiting to be uploaded.",
            pending.len()
        )?;
    }
    Ok(())
}

/// `tally clean`.
pub(crate) fn clean(args: &CleanArgs, env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    let home = locate_home(env)?;
    let root = home.root();
    let inventory = crate::data_files::inventory(root)?;
    if inventory.holds_nothing_of_tallys() {
        writeln!(
            io.out,
            "Nothing to delete: {} holds no tally data.",
            root.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        if !io.interactive {
            bail!(
                "`tally clean` deletes everything tally holds in {} and needs confirmation; \
                 stdin is not a terminal, so run `tally clean --yes`",
                root.display()
            );
        }
        write!(
            io.err,
            "Delete everything tally holds in {} (counts, reports, mode, collector settings)? [y/N] ",
            root.display()
        )?;
        io.err.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            writeln!(io.out, "Nothing deleted.")?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    // An `off` stays off: deleting the mode file would quietly turn counting back on.
    let keep_off = home.stored_mode().is_ok_and(|m| m == Mode::Off);
    let mode_path = home.mode_path();
    let files = inventory
        .files
        .iter()
        .filter(|path| !(keep_off && **path == mode_path));
    let removed = delete(files, &inventory.dirs)?;
    writeln!(io.out, "Deleted {removed} item(s) from {}.", root.display())?;
    if !inventory.foreign.is_empty() {
        writeln!(
            io.out,
            "Kept {} entr{} that tally did not make: {}.",
            inventory.foreign.len(),
            if inventory.foreign.len() == 1 {
                "y"
            } else {
                "ies"
            },
            inventory.some_foreign(root)
        )?;
    }
    if keep_off {
        writeln!(io.out, "tally stays off (the mode file was kept).")?;
    } else {
        writeln!(
            io.out,
            "tally is back to the default mode, local; `tally off` stops counting."
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes `files` (each by itself: a link, never what it points to), then each of `dirs`
/// (deepest first) that is empty by then. Returns how many files went.
pub(crate) fn delete<'a>(
    files: impl IntoIterator<Item = &'a std::path::PathBuf>,
    dirs: &[std::path::PathBuf],
) -> anyhow::Result<usize> {
    let mut removed = 0usize;
    for path in files {
        match fs::remove_file(path) {
            Ok(()) => removed += 1,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("deleting {} (check its permissions)", path.display())
                });
            }
        }
    }
    for dir in dirs {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
                ) => {}
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("deleting {} (check its permissions)", dir.display())
                });
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_loopback_collectors() {
        assert!(is_loopback_url("http://127.0.0.1:8080"));
        assert!(is_loopback_url("http://localhost/x"));
        assert!(is_loopback_url("http://[::1]:9"));
        assert!(!is_loopback_url("http://tally.example.org"));
    }
}
