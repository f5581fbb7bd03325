//! `tally upload [--dry-run] [--background]`: build the due reports and send them now, with
//! progress on stderr and a summary on stdout.
//!
//! `--background` is how the shims start the daily run: the process leaves the shim's session
//! first (so the terminal's signals and the tool's exit cannot touch it; its stdio is already
//! null), then runs quietly and always exits 0. `--dry-run` and `TALLY_DEBUG_UPLOAD` print the
//! exact bytes that would be sent and send nothing.

use std::process::ExitCode;

use tally_home::Env;

use crate::{Io, UploadArgs};

/// `tally upload`.
pub(crate) fn run(args: &UploadArgs, env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    let options = tally_upload::Options {
        dry_run: args.dry_run,
        ..Default::default()
    };
    if args.background {
        // Own session, so nothing the user does in the terminal reaches this run. Failing only
        // means we already lead a session, which is just as good.
        let _ = nix::unistd::setsid();
        let _ = tally_upload::run(env, &options, &mut |_| {});
        return Ok(ExitCode::SUCCESS);
    }
    let debug = tally_upload::debug_upload(env);
    let err = &mut *io.err;
    let summary = tally_upload::run(env, &options, &mut |line| {
        let _ = writeln!(err, "tally: {line}");
    })?;
    let out = &mut *io.out;
    for (path, reason) in &summary.build.quarantined {
        writeln!(io.err, "tally: quarantined {}: {reason}", path.display())?;
    }
    for problem in &summary.build.problems {
        writeln!(io.err, "tally: problem: {problem}")?;
    }
    if let Some(problem) = &summary.config_problem {
        writeln!(io.err, "tally: config: {problem}")?;
    }
    // In mode local or off the summary line says why once; no need to repeat it per week.
    let withheld = summary
        .build
        .withheld
        .iter()
        .filter(|(_, why)| !matches!(why, tally_report::Withheld::ModeNotOn(_)));
    for (week, why) in withheld {
        writeln!(out, "Week of {week}: not uploaded: {why}.")?;
    }
    if !summary.would_send.is_empty() || debug || args.dry_run {
        let why = if debug {
            "TALLY_DEBUG_UPLOAD is set"
        } else {
            "dry run"
        };
        let to = summary.endpoint.as_deref().unwrap_or("the collector");
        if summary.would_send.is_empty() && summary.nothing_sent_because.is_none() {
            writeln!(out, "{why}: nothing would be sent (no report is waiting).")?;
        }
        for (week, bytes) in &summary.would_send {
            writeln!(
                out,
                "{why}: would send these {} bytes to {to}/upload/{week}, and sent nothing:",
                bytes.len()
            )?;
            out.write_all(bytes)?;
        }
    }
    if (debug || args.dry_run) && summary.nothing_sent_because.is_none() {
        writeln!(
            out,
            "Upload: nothing sent ({} would have been).",
            summary.would_send.len()
        )?;
    } else {
        writeln!(out, "Upload: {}.", summary.one_line())?;
    }
    let failed = !summary.retry.is_empty()
        || (matches!(summary.mode, Some(tally_home::Mode::On { .. }))
            && summary.config_problem.is_some()
            && summary.nothing_sent_because.is_some());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
