//! `tally preview`: the exact bytes the next upload would send, week by week, or exactly why
//! nothing would be sent.
//!
//! Like `tally upload`, it first builds the reports that are due (so the bytes shown are the
//! bytes that will be sent: each report's random `x` is drawn once), but it never fetches or
//! sends anything. With `TALLY=off` or `DO_NOT_TRACK` it touches nothing.

use std::process::ExitCode;

use tally_home::{Env, Mode};

use crate::{Io, locate_home};

/// `tally preview`.
pub(crate) fn run(env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    if env.forces_off() {
        writeln!(
            io.out,
            "Nothing would be sent: TALLY=off or DO_NOT_TRACK is set in this environment, so \
             tally counts, writes and sends nothing."
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let home = locate_home(env)?;
    let mode = tally_home::effective_mode(env, Some(&home));
    if let Mode::Local = mode
        && env.lowers_to_local()
    {
        writeln!(
            io.out,
            "TALLY=local is set in this environment: nothing is uploaded from it."
        )?;
    }
    let preview = tally_report::preview(&home, mode, env.today())?;
    let endpoint = tally_config::Endpoint::load(&home.config_dir())
        .ok()
        .flatten();
    let out = &mut *io.out;
    if mode == Mode::Off || preview.weeks.is_empty() {
        out.write_all(preview.explain().as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    for week in &preview.weeks {
        match &week.outcome {
            Ok(bytes) => {
                let to = endpoint
                    .as_ref()
                    .map(|e| e.upload_url(week.week))
                    .unwrap_or_else(|| "the collector".into());
                writeln!(
                    out,
                    "Week of {}: the next upload would send these {} bytes to {to}:",
                    week.week,
                    bytes.len()
                )?;
                out.write_all(bytes)?;
            }
            Err(why) => writeln!(out, "Week of {}: nothing would be sent: {why}.", week.week)?,
        }
    }
    for (path, reason) in &preview.build.quarantined {
        writeln!(io.err, "tally: quarantined {}: {reason}", path.display())?;
    }
    for problem in &preview.build.problems {
        writeln!(io.err, "tally: problem: {problem}")?;
    }
    Ok(ExitCode::SUCCESS)
}
