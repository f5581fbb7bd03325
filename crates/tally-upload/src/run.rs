//! One upload run: what `tally upload` and the daily background run do.
//!
//! In order: refuse when the environment forces tally off (nothing is written); take the run
//! lock; in mode `on`, touch the daily token and fetch the config if it is stale; build the
//! due reports; delete weeks past retention; then, in mode `on` with a config that verifies
//! now, send each pending report (oldest first) and file it as sent, refused or still pending.
//! Each pending report passes the same gates again right before it is sent (mode, consent
//! before its week, age), because any of them may have changed since it was written.
//!
//! When the config that verifies now carries an `aggregation` section, a pending week is sent
//! as a DAP report to the section's leader instead (`crate::dap`), and no plain report is
//! sent; it is filed as sent, refused or still pending exactly as a plain report is.

use std::path::Path;

use tally_config::{Endpoint, FetchOptions};
use tally_home::{Env, Home, Mode, env::is_truthy};
use tally_protocol::config::aggregation::AggregationConfig;
use tally_protocol::{Day, MAX_REPORT_AGE_DAYS};
use tally_report::BuildSummary;

use crate::dap::{self, DapSender};
use crate::http::{self, PostOutcome};
use crate::lock;
use crate::outbox::{self, Folder, PendingReport};
use crate::state::{self, LastUpload};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Build reports and say what would be sent, but send nothing.
    pub dry_run: bool,
    /// Limits for fetching the config.
    pub fetch: FetchOptions,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// The mode the run saw, if it got that far.
    pub mode: Option<Mode>,
    /// Why nothing at all was sent, when that is the case for a reason other than there being
    /// nothing to send.
    pub nothing_sent_because: Option<String>,
    /// The collector's URL, in mode `on` with an endpoint set.
    pub endpoint: Option<String>,
    /// The DAP leader's and helper's URLs, when the verified config asks for private
    /// aggregation (then `would_send` holds each week's vector, not its report).
    pub aggregators: Option<(String, String)>,
    /// The config's problem, if fetching or verifying it failed.
    pub config_problem: Option<String>,
    /// What building the due reports did.
    pub build: BuildSummary,
    /// What the retention sweep deleted (weeks past `tally_home::retention::RETAIN_WEEKS`).
    pub retention: tally_home::retention::SweepSummary,
    /// Reports the collector accepted.
    pub sent: Vec<Day>,
    /// Reports the collector refused, with its reason.
    pub refused: Vec<(Day, String)>,
    /// Reports kept for a later run, and why.
    pub retry: Vec<(Day, String)>,
    /// Pending reports removed without being sent, and why.
    pub discarded: Vec<(Day, String)>,
    /// In a dry run or with `TALLY_DEBUG_UPLOAD`: the reports that would have been sent.
    pub would_send: Vec<(Day, Vec<u8>)>,
}

impl Summary {
    /// One line for `tally status` and the log of the last upload.
    pub fn one_line(&self) -> String {
        if let Some(why) = &self.nothing_sent_because {
            return format!("nothing sent: {why}");
        }
        let mut parts = vec![format!("{} sent", self.sent.len())];
        if !self.refused.is_empty() {
            parts.push(format!("{} refused by the collector", self.refused.len()));
        }
        if !self.retry.is_empty() {
            parts.push(format!("{} kept for a later try", self.retry.len()));
        }
        if !self.discarded.is_empty() {
            parts.push(format!("{} dropped unsent", self.discarded.len()));
        }
        parts.join(", ")
    }
}

/// Why a run could not work at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    NoHome(#[from] tally_home::Error),
    #[error("{action} {}: {source}; check that the data directory is writable", path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Build(#[from] tally_report::BuildError),
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `TALLY_DEBUG_UPLOAD` asks to print instead of send.
pub fn debug_upload(env: &Env) -> bool {
    env.get(tally_home::env::TALLY_DEBUG_UPLOAD)
        .is_some_and(is_truthy)
}

/// Runs one upload. `progress` receives a line per step worth telling a person about.
pub fn run(
    env: &Env,
    options: &Options,
    progress: &mut dyn FnMut(&str),
) -> Result<Summary, RunError> {
    let mut summary = Summary::default();
    if env.forces_off() {
        summary.mode = Some(Mode::Off);
        summary.nothing_sent_because = Some(
            "TALLY=off or DO_NOT_TRACK is set, so tally sends nothing and writes nothing".into(),
        );
        return Ok(summary);
    }
    let home = Home::locate(env).ok_or(tally_home::Error::NoHome)?;
    let mode = tally_home::effective_mode(env, Some(&home));
    summary.mode = Some(mode);
    if mode == Mode::Off {
        summary.nothing_sent_because =
            Some("tally is off (`tally local` or `tally on` turns it back on)".into());
        return Ok(summary);
    }
    let today = env.today();
    let debug = debug_upload(env);
    let sending_allowed = !options.dry_run && !debug;

    let Some(_lock) = lock::try_lock(home.root())
        .map_err(io_error("cannot take the upload lock in", home.root()))?
    else {
        summary.nothing_sent_because =
            Some("another tally upload is running; it sends what is due".into());
        return Ok(summary);
    };
    if matches!(mode, Mode::On { .. }) && sending_allowed {
        // The shims' daily gate: started or not by a shim, this run counts as today's.
        lock::touch_token(home.root())
            .map_err(io_error("cannot touch the upload token in", home.root()))?;
    }

    let result = build_and_send(
        &home,
        env,
        mode,
        options,
        sending_allowed,
        &mut summary,
        progress,
    );
    // In mode on, every real run is recorded for `tally status`, including one that sent
    // nothing and why.
    if sending_allowed && matches!(mode, Mode::On { .. }) {
        let last = LastUpload {
            day: today,
            sent: count(summary.sent.len()),
            refused: count(summary.refused.len()),
            retry: count(summary.retry.len()),
            result: match &result {
                Ok(()) => summary.one_line(),
                Err(err) => format!("failed: {err}"),
            },
        };
        state::write_last(home.root(), &last)
            .map_err(io_error("cannot record the upload in", home.root()))?;
    }
    result.map(|()| summary)
}

/// Everything after the lock: config, reports, retention, sending. Fills `summary`.
fn build_and_send(
    home: &Home,
    env: &Env,
    mode: Mode,
    options: &Options,
    sending_allowed: bool,
    summary: &mut Summary,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RunError> {
    let today = env.today();
    let (endpoint, refused_download) =
        refresh_config(home, mode, today, options, summary, progress);
    build_reports(home, mode, today, summary, progress)?;
    let Some((since, endpoint, aggregation)) =
        may_send(home, env, mode, endpoint, refused_download, summary)
    else {
        return Ok(());
    };
    summary.aggregators = aggregation
        .as_ref()
        .map(|a| (a.leader.clone(), a.helper.clone()));
    send_pending(
        home,
        &endpoint,
        aggregation.as_ref(),
        since,
        today,
        sending_allowed,
        summary,
        progress,
    )
}

/// In mode `on`, fetches the collector's config. Returns the endpoint, if one is set, and
/// whether a config that arrived was refused.
fn refresh_config(
    home: &Home,
    mode: Mode,
    today: Day,
    options: &Options,
    summary: &mut Summary,
    progress: &mut dyn FnMut(&str),
) -> (Option<Endpoint>, bool) {
    let config_dir = home.config_dir();
    if !matches!(mode, Mode::On { .. }) {
        return (None, false);
    }
    let mut refused_download = false;
    let endpoint = {
        match Endpoint::load(&config_dir) {
            Ok(Some(endpoint)) => {
                summary.endpoint = Some(endpoint.url.clone());
                match tally_config::refresh(&endpoint, &config_dir, today, &options.fetch) {
                    Ok(verified) => progress(&format!(
                        "using config version {} of {}, signature verified (key {})",
                        verified.config.version, endpoint.url, verified.key_id
                    )),
                    Err(err) => {
                        // A download that arrived but was refused (tampered, unknown key,
                        // rolled back, expired) stops this run, even if an older cached config
                        // still verifies: the collector's current word is in doubt.
                        refused_download = !err.is_transport();
                        summary.config_problem = Some(err.to_string());
                    }
                }
                Some(endpoint)
            }
            Ok(None) => {
                summary.config_problem = Some(
                    "no collector endpoint is set; `tally on --endpoint URL --key KEY` sets one"
                        .into(),
                );
                None
            }
            Err(err) => {
                summary.config_problem = Some(err.to_string());
                None
            }
        }
    };
    (endpoint, refused_download)
}

/// Builds the due reports, then applies retention (the daily run is also what keeps the data
/// directory bounded).
fn build_reports(
    home: &Home,
    mode: Mode,
    today: Day,
    summary: &mut Summary,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RunError> {
    summary.build = tally_report::build_due_reports(home, mode, today)?;
    for built in &summary.build.built {
        progress(&format!(
            "built the report of the week of {} from {} counter file(s)",
            built.week, built.files
        ));
    }

    match tally_home::retention::sweep(home, today) {
        Ok(swept) => {
            let deleted = swept.deleted_counter_files.len()
                + swept.deleted_reports.len()
                + swept.deleted_quarantined.len()
                + swept.deleted_wrapper_links.len();
            if deleted > 0 {
                progress(&format!(
                    "deleted {deleted} file(s) of weeks older than {} weeks",
                    tally_home::retention::RETAIN_WEEKS
                ));
            }
            summary
                .build
                .problems
                .extend(swept.failures.iter().cloned());
            summary.retention = swept;
        }
        Err(err) => summary.build.problems.push(format!("retention: {err}")),
    }
    Ok(())
}

/// Whether anything may be sent: mode `on` (its consent day returned), an endpoint, and a
/// config that verifies now (its private-aggregation section returned, if it has one). If not,
/// `summary` says why.
fn may_send(
    home: &Home,
    env: &Env,
    mode: Mode,
    endpoint: Option<Endpoint>,
    refused_download: bool,
    summary: &mut Summary,
) -> Option<(Day, Endpoint, Option<AggregationConfig>)> {
    let today = env.today();
    let config_dir = home.config_dir();
    let since = match mode {
        Mode::On { since } => since,
        other => {
            let why = if env.lowers_to_local() {
                format!(
                    "the mode is {other} in this environment (TALLY=local), so nothing is uploaded"
                )
            } else {
                format!(
                    "the mode is {other}, so nothing is uploaded (`tally on --endpoint URL --key \
                     KEY` turns uploading on)"
                )
            };
            summary.nothing_sent_because = Some(why);
            return None;
        }
    };
    let Some(endpoint) = endpoint else {
        summary.nothing_sent_because = summary.config_problem.clone();
        return None;
    };
    if refused_download {
        let why = summary.config_problem.clone().unwrap_or_default();
        summary.nothing_sent_because = Some(format!("the collector's config was refused: {why}"));
        return None;
    }
    // Whatever the fetch said, only a config that verifies now lets anything leave.
    match tally_config::current_for(&endpoint, &config_dir, today) {
        Ok(verified) => Some((since, endpoint, verified.config.aggregation)),
        Err(why) => {
            let why = summary
                .config_problem
                .clone()
                .unwrap_or_else(|| why.to_string());
            summary.nothing_sent_because = Some(format!("no verified upload config: {why}"));
            None
        }
    }
}

/// Sends (or, when sending is not allowed, lists) every pending report: each is filed as sent
/// or refused, kept to retry, or dropped when it must never be sent. With `aggregation`, a
/// report is sent as a DAP report to the section's leader, and never in the plain.
#[allow(clippy::too_many_arguments)]
fn send_pending(
    home: &Home,
    endpoint: &Endpoint,
    aggregation: Option<&AggregationConfig>,
    since: Day,
    today: Day,
    sending_allowed: bool,
    summary: &mut Summary,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RunError> {
    let reports_dir = home.reports_dir();
    let pending = outbox::pending(&reports_dir)
        .map_err(io_error("cannot list pending reports in", &reports_dir))?;
    let agent = http::agent();
    let mut dap_sender = aggregation.map(DapSender::new);
    for report in pending {
        if let Some(why) = never_send(&report, since, today) {
            outbox::discard(&report).map_err(io_error(
                "cannot remove the unsendable report",
                &report.path,
            ))?;
            progress(&format!("week of {}: dropped unsent: {why}", report.week));
            summary.discarded.push((report.week, why));
            continue;
        }
        let (bytes, parsed) = match outbox::read_pending(&report) {
            Ok(read) => read,
            Err(why) => {
                // Not a report tally could ever send: set it aside rather than retry forever.
                let reason = format!("not sent: {why}");
                outbox::file_away(&reports_dir, &report, Folder::Refused, Some(&reason))
                    .map_err(io_error("cannot move the broken report", &report.path))?;
                summary.discarded.push((report.week, reason));
                continue;
            }
        };
        if !sending_allowed {
            let shown = match aggregation {
                Some(config) => dap::vector_json(config, &parsed),
                None => bytes,
            };
            summary.would_send.push((report.week, shown));
            continue;
        }
        let outcome = match dap_sender.as_mut() {
            Some(sender) => {
                progress(&format!(
                    "sending the week of {} as a private-aggregation report to {}",
                    report.week,
                    sender.describe()
                ));
                sender.send(&parsed)
            }
            None => {
                let url = endpoint.upload_url(report.week);
                progress(&format!("sending the week of {} to {url}", report.week));
                http::post_report(&agent, &url, &bytes)
            }
        };
        match outcome {
            PostOutcome::Accepted { status } => {
                if let Some(config) = aggregation {
                    outbox::write_beside(
                        &reports_dir,
                        &report,
                        Folder::Sent,
                        dap::SENT_NOTE_SUFFIX,
                        &dap::vector_json(config, &parsed),
                    )
                    .map_err(io_error("cannot note the sent vector of", &report.path))?;
                }
                outbox::file_away(&reports_dir, &report, Folder::Sent, None)
                    .map_err(io_error("cannot file the sent report", &report.path))?;
                progress(&format!(
                    "week of {}: accepted (HTTP {status})",
                    report.week
                ));
                summary.sent.push(report.week);
            }
            PostOutcome::Refused { reason, .. } => {
                outbox::file_away(&reports_dir, &report, Folder::Refused, Some(&reason))
                    .map_err(io_error("cannot file the refused report", &report.path))?;
                progress(&format!(
                    "week of {}: refused by the collector, not retried: {reason}",
                    report.week
                ));
                summary.refused.push((report.week, reason));
            }
            PostOutcome::Retry { reason } => {
                progress(&format!(
                    "week of {}: not delivered, tried again on a later run: {reason}",
                    report.week
                ));
                summary.retry.push((report.week, reason));
            }
        }
    }

    Ok(())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Why a pending report must never be sent, if so: consent did not predate its week, or it
/// is too old. (Checked again here: `tally on` with a new collector moves the consent date.)
fn never_send(report: &PendingReport, since: Day, today: Day) -> Option<String> {
    if since >= report.week {
        return Some(format!(
            "uploading was turned on on {since}, not before the week began on {}",
            report.week
        ));
    }
    let age = today.days_since(report.week);
    if age > MAX_REPORT_AGE_DAYS {
        return Some(format!(
            "the week began {age} days ago; reports older than {MAX_REPORT_AGE_DAYS} days are never sent"
        ));
    }
    None
}
