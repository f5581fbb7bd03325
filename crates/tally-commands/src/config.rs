//! `tally config` (the cached upload config and whether it verifies now) and `tally config
//! verify FILE SIG [--key KEY]` (check any config file against the pinned keys or given ones).
//!
//! Nothing here fetches or writes: `tally upload` fetches, in mode `on` only.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use tally_config::{CacheState, Endpoint, PinnedKey, Ratchet, Verified};
use tally_home::Env;

use crate::{ConfigArgs, ConfigCommand, Io, locate_home};

/// `tally config [verify …]`.
pub(crate) fn run(args: &ConfigArgs, env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    match &args.command {
        None => show(env, io),
        Some(ConfigCommand::Verify { file, sig, keys }) => verify(file, sig, keys, env, io),
    }
}

fn show(env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    let home = locate_home(env)?;
    let config_dir = home.config_dir();
    let out = &mut *io.out;
    let endpoint = match Endpoint::load(&config_dir)? {
        Some(endpoint) => endpoint,
        None => {
            writeln!(
                out,
                "No collector endpoint is set, so there is no config. `tally on --endpoint URL \
                 --key KEY` sets one."
            )?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    writeln!(out, "Endpoint:  {}", endpoint.url)?;
    for key in endpoint.pinned_keys().unwrap_or_default() {
        writeln!(out, "Key:       {} ({})", key.key_id, key.base64)?;
    }
    let state = CacheState::load(&config_dir);
    match state.fetched_at {
        Some(day) => writeln!(out, "Fetched:   {day}")?,
        None => writeln!(out, "Fetched:   never")?,
    }
    if let Some(error) = &state.last_error {
        let when = state
            .last_attempt
            .map(|d| d.to_string())
            .unwrap_or_default();
        writeln!(out, "Last try:  {when}: {error}")?;
    }
    match tally_config::current_for(&endpoint, &config_dir, env.today()) {
        Ok(verified) => {
            describe(&verified, out)?;
            let body = tally_home::fsio::read_capped(
                &config_dir.join(tally_config::cache::CONFIG_FILE),
                tally_protocol::MAX_CONFIG_BYTES as u64,
            )?
            .unwrap_or_default();
            writeln!(out)?;
            out.write_all(&body)?;
            if !body.ends_with(b"\n") {
                writeln!(out)?;
            }
        }
        Err(why) => writeln!(out, "Verified:  no: {why}")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// What a verified config says, in a few lines.
fn describe(verified: &Verified, out: &mut dyn Write) -> std::io::Result<()> {
    let config = &verified.config;
    writeln!(out, "Verified:  yes, signed by key {}", verified.key_id)?;
    writeln!(out, "Comment:   {}", verified.trusted_comment)?;
    writeln!(out, "Version:   {}", config.version)?;
    writeln!(out, "Expires:   {}", config.expires)?;
    writeln!(out, "Sampling:  {} of reports are sent", config.sample_rate)?;
    writeln!(
        out,
        "OS, arch:  {}; {}",
        config.os.join(", "),
        config.arch.join(", ")
    )?;
    for program in &config.programs {
        writeln!(
            out,
            "Program:   {} {} ({} counters)",
            program.name,
            program.versions,
            program.counter_rates().len()
        )?;
    }
    Ok(())
}

fn verify(
    file: &std::path::Path,
    sig: &std::path::Path,
    keys: &[String],
    env: &Env,
    io: &mut Io<'_>,
) -> anyhow::Result<ExitCode> {
    let body = read_capped(file, tally_protocol::MAX_CONFIG_BYTES + 1)?;
    let signature = read_capped(sig, tally_config::verify::MAX_SIGNATURE_BYTES + 1)?;
    let home = tally_home::Home::locate(env);
    let (pinned, pinned_from_endpoint) = if keys.is_empty() {
        let home = home.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "no key to verify with: give one with --key KEY, or pin one with `tally on`"
            )
        })?;
        let endpoint = Endpoint::load(&home.config_dir())?.ok_or_else(|| {
            anyhow::anyhow!(
                "no key to verify with: no collector is pinned; give a key with --key KEY \
                 (the base64 line of the collector's minisign.pub)"
            )
        })?;
        (endpoint.pinned_keys()?, true)
    } else {
        let parsed: Result<Vec<PinnedKey>, _> = keys.iter().map(|k| PinnedKey::parse(k)).collect();
        (parsed?, false)
    };
    match tally_config::verify_config(&body, &signature, &pinned, env.today()) {
        Ok(verified) => {
            writeln!(
                io.out,
                "{}: the signature verifies and the config is valid.",
                file.display()
            )?;
            describe(&verified, io.out)?;
            if pinned_from_endpoint
                && let Some(home) = &home
                && let Err(rollback) = Ratchet::load(&home.config_dir())?.check(&verified)
            {
                writeln!(io.out, "But tally would not use it: {rollback}")?;
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            writeln!(io.err, "tally: {} was refused: {why}", file.display())?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Reads at most `max` bytes of `path` (enough for the verifier to report an oversized file).
fn read_capped(path: &std::path::Path, max: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open {}; check the path", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max as u64)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}
