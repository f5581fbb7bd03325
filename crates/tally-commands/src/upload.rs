//! `tally upload [--dry-run] [--background]`: build the due reports and send them now, with
//! progress on stderr and a summary on stdout.
//!
//! `--background` is how the shims start the daily run: the process first lets go of every
//! descriptor it inherited (the tool's caller may have passed it pipes, and a build tool
//! waiting for EOF on one must not wait for an upload), keeping only stdin, stdout and stderr
//! pointed at `/dev/null`; then it leaves the shim's session (so the terminal's signals and the
//! tool's exit cannot touch it); then it runs quietly and always exits 0. `--dry-run` and `TALLY_DEBUG_UPLOAD` print the
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
        keep_only_null_stdio();
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
            match &summary.aggregators {
                Some((leader, helper)) => writeln!(
                    out,
                    "{why}: would send the week of {week} as a private-aggregation report: this \
                     vector, one secret share to the DAP leader {leader} and one to the helper \
                     {helper}; sent nothing:"
                )?,
                None => writeln!(
                    out,
                    "{why}: would send these {} bytes to {to}/upload/{week}, and sent nothing:",
                    bytes.len()
                )?,
            }
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

/// Closes every descriptor above 2 and points 0, 1 and 2 at `/dev/null`.
///
/// Done here, as the detached run's first act, rather than by whoever starts it: the shim
/// starts it through `sh` with `std::process::Command`, which cannot close descriptors it did
/// not open (that takes `pre_exec`, `unsafe`, which tally keeps out of this crate), and this
/// way no starter can get it wrong. The inherited copies live for the microseconds between
/// the `exec` and this call, not for the upload's tens of seconds.
fn keep_only_null_stdio() {
    use std::os::fd::AsRawFd;
    // The open descriptors, listed first and closed after the listing's own is gone. Without
    // /proc, every number up to the limit (bounded: a huge limit is not worth a long loop).
    let open: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => {
            let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map_or(1024, |(soft, _)| soft.min(65_536));
            (3..i32::try_from(limit).unwrap_or(65_536)).collect()
        }
    };
    for fd in open.into_iter().filter(|&fd| fd > 2) {
        let _ = nix::unistd::close(fd);
    }
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            if null.as_raw_fd() != fd {
                let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
            }
        }
        // `null` itself is one of 0 to 2 only if one of them was closed; keep it then.
        if null.as_raw_fd() <= 2 {
            let _ = std::os::fd::IntoRawFd::into_raw_fd(null);
        }
    }
}
