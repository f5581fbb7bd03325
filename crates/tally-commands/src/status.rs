//! `tally status [--json]`: the mode and since when, where the data is, the shims and whether
//! compiles under cargo are counted, the collector and its config, this week's counts, when
//! the next report is due, and the last upload.
//!
//! Promises: status only reads (it never creates the data directory, the weekday file or
//! anything else), and it never fails because one part cannot be read: that part says why.

use std::io::Write;
use std::process::ExitCode;

use crate::shim_report::{ShimReport, WrapperState};
use serde::Serialize;
use tally_config::{CacheState, Endpoint};
use tally_home::{Day, Env, Home, Mode, Week};
use tally_upload::state::LastUpload;

use crate::{Io, StatusArgs};

/// Everything `tally status` reports.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    /// `off`, `local` or `on`.
    pub mode: String,
    /// The consent date, in mode `on`.
    pub since: Option<Day>,
    /// How the environment changed the stored mode, if it did.
    pub mode_note: Option<String>,
    /// The data directory (`None`: no home at all).
    pub data_dir: Option<String>,
    pub shims: Shims,
    pub endpoint: Option<EndpointStatus>,
    pub config: ConfigStatus,
    pub this_week: Option<ThisWeek>,
    /// The first day a not-yet-built report can be built.
    pub next_report_due: Option<Day>,
    pub pending_reports: usize,
    pub last_upload: Option<LastUpload>,
}

/// The shims as `tally status` shows them.
#[derive(Debug, Serialize)]
pub(crate) struct Shims {
    pub dir: Option<String>,
    pub first_on_path: bool,
    /// The binary every shim on PATH runs, when it is one (`tally-shim` after `tally setup`).
    pub runs: Option<String>,
    /// The `tally-shim` installed beside this `tally` (`None`: a partial install).
    pub hot_binary: Option<String>,
    pub tools: Vec<ToolStatus>,
    /// Whether compiles under cargo are counted.
    pub cargo_compiles_counted: bool,
    /// The binary cargo runs as `RUSTC_WRAPPER`, when counted.
    pub wrapper: Option<String>,
    /// How, or why not.
    pub cargo_compiles: String,
    /// When some shims run `tally` though `tally-shim` is installed: what to do.
    pub relink: Option<String>,
    /// When the shims are not first on PATH: the shell line that puts them first.
    pub fix: Option<String>,
}

/// One tool's shim.
#[derive(Debug, Serialize)]
pub(crate) struct ToolStatus {
    pub tool: String,
    pub shim: Option<String>,
    /// Which of tally's binaries the shim runs.
    pub runs: Option<String>,
    pub shadowed_by: Option<String>,
    pub real: Option<String>,
}

/// The pinned collector.
#[derive(Debug, Serialize)]
pub(crate) struct EndpointStatus {
    pub url: String,
    pub key_ids: Vec<String>,
}

/// The cached config and whether it verifies today.
#[derive(Debug, Serialize)]
pub(crate) struct ConfigStatus {
    pub verified: bool,
    pub version: Option<u64>,
    pub expires: Option<Day>,
    pub key_id: Option<String>,
    pub fetched_at: Option<Day>,
    /// Why the config is not usable, or what went wrong on the last fetch.
    pub problem: Option<String>,
    /// How the verified config asks for weeks to be sent.
    pub upload_mode: Option<UploadMode>,
}

/// How the collector's verified config asks for weeks to be sent.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum UploadMode {
    /// Each week's filtered report, as `tally preview` shows it.
    Plain,
    /// Only the layout's vector, one secret share to each of two aggregators.
    PrivateAggregation { leader: String, helper: String },
}

/// The week in progress.
#[derive(Debug, Serialize)]
pub(crate) struct ThisWeek {
    pub start: Day,
    pub end: Day,
    pub counts: u64,
    pub files: usize,
}

impl From<ShimReport> for Shims {
    fn from(report: ShimReport) -> Shims {
        let show = |p: Option<&std::path::Path>| p.map(|p| p.display().to_string());
        let (cargo_compiles_counted, wrapper, cargo_compiles) = match &report.rustc_wrapper {
            WrapperState::ArrangedByCargoShim {
                wrapper,
                next: None,
            } => (
                true,
                show(Some(wrapper)),
                format!(
                    "counted: the cargo shim sets RUSTC_WRAPPER to {}",
                    wrapper.display()
                ),
            ),
            WrapperState::ArrangedByCargoShim {
                wrapper,
                next: Some(next),
            } => (
                true,
                show(Some(wrapper)),
                format!(
                    "counted: the cargo shim sets RUSTC_WRAPPER to {}, which then runs your \
                     wrapper {}",
                    wrapper.display(),
                    next.to_string_lossy()
                ),
            ),
            WrapperState::SetInEnvironment { wrapper } => (
                true,
                Some(wrapper.to_string_lossy().into_owned()),
                format!(
                    "counted: RUSTC_WRAPPER is {} in this environment",
                    wrapper.to_string_lossy()
                ),
            ),
            WrapperState::NotCounted { why } => (false, None, format!("not counted: {why}")),
        };
        let mut runs: Vec<&std::path::Path> = report
            .tools
            .iter()
            .filter_map(|t| t.runs.as_deref())
            .collect();
        runs.dedup();
        // Shims linked to `tally` itself while `tally-shim` is installed: made before it existed.
        let slower = report.hot_binary.as_deref().and_then(|hot| {
            report
                .tools
                .iter()
                .filter_map(|t| t.runs.as_deref())
                .find(|runs| *runs != hot)
                .map(|_| hot)
        });
        Shims {
            dir: show(report.shims_dir.as_deref()),
            first_on_path: report.first_on_path,
            runs: match runs.as_slice() {
                [one] => show(Some(one)),
                _ => None,
            },
            hot_binary: show(report.hot_binary.as_deref()),
            tools: report
                .tools
                .iter()
                .map(|t| ToolStatus {
                    tool: t.tool.to_string(),
                    shim: show(t.shim.as_deref()),
                    runs: show(t.runs.as_deref()),
                    shadowed_by: show(t.shadowed_by.as_deref()),
                    real: show(t.real.as_deref()),
                })
                .collect(),
            cargo_compiles_counted,
            wrapper,
            cargo_compiles,
            relink: slower.map(|hot| {
                format!(
                    "`tally setup` links the shims to {}, which starts faster than tally",
                    hot.display()
                )
            }),
            fix: report.fix,
        }
    }
}

/// Gathers the status without writing anything.
pub(crate) fn gather(env: &Env, shims: Shims) -> Status {
    let home = Home::locate(env);
    let today = env.today();
    let stored = home.as_ref().map(|h| h.stored_mode());
    let mode = tally_home::effective_mode(env, home.as_ref());
    let mode_note = mode_note(env, stored.as_ref(), mode);
    let (mode_name, since) = match mode {
        Mode::Off => ("off", None),
        Mode::Local => ("local", None),
        Mode::On { since } => ("on", Some(since)),
    };
    let mut status = Status {
        mode: mode_name.to_string(),
        since,
        mode_note,
        data_dir: home.as_ref().map(|h| h.root().display().to_string()),
        shims,
        endpoint: None,
        config: ConfigStatus {
            verified: false,
            version: None,
            expires: None,
            key_id: None,
            fetched_at: None,
            problem: None,
            upload_mode: None,
        },
        this_week: None,
        next_report_due: None,
        pending_reports: 0,
        last_upload: None,
    };
    let Some(home) = home else {
        status.config.problem = Some("no data directory".into());
        return status;
    };
    read_collector(&home, today, &mut status);
    read_counts(&home, today, &mut status);
    status.pending_reports = tally_upload::outbox::pending(&home.reports_dir())
        .map(|p| p.len())
        .unwrap_or(0);
    status.last_upload = tally_upload::state::read_last(home.root());
    status
}

/// How the environment or the data directory changed what the stored mode says, if it did.
fn mode_note(
    env: &Env,
    stored: Option<&Result<Mode, tally_home::Error>>,
    mode: Mode,
) -> Option<String> {
    match (stored, mode) {
        (None, _) => Some(
            "no data directory (set TALLY_DIR, XDG_STATE_HOME or HOME): nothing is counted".into(),
        ),
        (Some(Err(err)), _) => Some(format!("{err}; until then tally counts nothing")),
        (Some(Ok(_)), Mode::Off) if env.forces_off() => Some(
            "TALLY=off or DO_NOT_TRACK is set in this environment: nothing is counted or sent"
                .into(),
        ),
        (Some(Ok(Mode::On { since })), Mode::Local) => Some(format!(
            "stored mode is on since {since}, but TALLY=local in this environment: nothing is sent"
        )),
        _ => None,
    }
}

/// The collector endpoint and the state of its config.
fn read_collector(home: &Home, today: Day, status: &mut Status) {
    let config_dir = home.config_dir();
    match Endpoint::load(&config_dir) {
        Ok(Some(endpoint)) => {
            let cache = CacheState::load(&config_dir);
            status.config.fetched_at = cache.fetched_at;
            match tally_config::current_for(&endpoint, &config_dir, today) {
                Ok(verified) => {
                    status.config.verified = true;
                    status.config.version = Some(verified.config.version);
                    status.config.expires = Some(verified.config.expires);
                    status.config.key_id = Some(verified.key_id.to_string());
                    status.config.upload_mode = Some(match &verified.config.aggregation {
                        None => UploadMode::Plain,
                        Some(section) => UploadMode::PrivateAggregation {
                            leader: section.leader.clone(),
                            helper: section.helper.clone(),
                        },
                    });
                    status.config.problem = cache.last_error;
                }
                Err(why) => {
                    status.config.version = cache.verified_version;
                    status.config.problem = Some(match cache.last_error {
                        Some(last) if last != why.to_string() => {
                            format!("{why} (last fetch: {last})")
                        }
                        _ => why.to_string(),
                    });
                }
            }
            status.endpoint = Some(EndpointStatus {
                key_ids: endpoint
                    .pinned_keys()
                    .map(|keys| keys.iter().map(|k| k.key_id.to_string()).collect())
                    .unwrap_or_default(),
                url: endpoint.url,
            });
        }
        Ok(None) => {
            status.config.problem = Some(
                "no collector endpoint is set (`tally on --endpoint URL --key KEY` sets one)"
                    .into(),
            );
        }
        Err(err) => status.config.problem = Some(err.to_string()),
    }
}

/// This week's counts and when the next report is due.
fn read_counts(home: &Home, today: Day, status: &mut Status) {
    // The week schedule, read without choosing one (choosing writes the weekday file).
    let week = home
        .stored_weekday()
        .ok()
        .flatten()
        .and_then(|weekday| Week::containing(today, weekday).ok());
    let mut this_week = week.map(|w| ThisWeek {
        start: w.start,
        end: w.end,
        counts: 0,
        files: 0,
    });
    // Read only: skipped files are for the commands that report them.
    for file in tally_report::weeks::counter_files(home, false).0 {
        let (start, end, snapshot) = (file.week, file.end, file.snapshot);
        // An ended week's report can be built now; the current week's when it ends.
        let due = if end <= today { today } else { end };
        status.next_report_due = Some(status.next_report_due.map_or(due, |d: Day| d.min(due)));
        if let Some(week) = this_week.as_mut().filter(|w| w.start == start) {
            week.files += 1;
            week.counts = snapshot
                .counters
                .values()
                .fold(week.counts, |a, b| a.saturating_add(*b));
        }
    }
    if this_week.as_ref().is_some_and(|w| w.files == 0) {
        this_week = None;
    }
    status.this_week = this_week;
}

/// `tally status`.
pub(crate) fn run(args: &StatusArgs, env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    let shims = Shims::from(crate::shim_report::shim_report(env));
    let status = gather(env, shims);
    if args.json {
        let mut text = serde_json::to_string_pretty(&status)?;
        text.push('\n');
        io.out.write_all(text.as_bytes())?;
    } else {
        render(&status, io.out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The text form.
pub(crate) fn render(status: &Status, out: &mut dyn Write) -> std::io::Result<()> {
    render_mode(status, out)?;
    render_shims(&status.shims, out)?;
    render_collector(status, out)?;
    render_counts(status, out)
}

/// The mode and the data directory.
fn render_mode(status: &Status, out: &mut dyn Write) -> std::io::Result<()> {
    let mode = match (status.mode.as_str(), status.since) {
        ("on", Some(since)) => format!(
            "on since {since}: counts locally and uploads weekly reports of weeks that begin after {since}"
        ),
        ("local", _) => "local: counts on this machine, sends nothing".to_string(),
        _ => "off: counts nothing, writes nothing, sends nothing".to_string(),
    };
    writeln!(out, "Mode:         {mode}")?;
    if let Some(note) = &status.mode_note {
        writeln!(out, "              ({note})")?;
    }
    match &status.data_dir {
        Some(dir) => writeln!(out, "Data:         {dir}")?,
        None => writeln!(out, "Data:         none")?,
    }
    Ok(())
}

/// The shims, each tool, and compiles under cargo.
fn render_shims(shims: &Shims, out: &mut dyn Write) -> std::io::Result<()> {
    let running = shims
        .runs
        .as_deref()
        .map(|binary| format!(", running {binary}"))
        .unwrap_or_default();
    match (&shims.dir, shims.first_on_path) {
        (Some(dir), true) => writeln!(
            out,
            "Shims:        {dir} (first on PATH for every tool){running}"
        )?,
        (Some(dir), false) => writeln!(
            out,
            "Shims:        {dir} (not first on PATH for every tool){running}"
        )?,
        (None, _) => writeln!(
            out,
            "Shims:        not on PATH (`tally setup` installs them and prints the line to add): tools are not counted"
        )?,
    }
    for tool in &shims.tools {
        let real = tool.real.as_deref().unwrap_or("not found");
        // The binary, per tool, only when the shims do not all run the same one.
        let through = match (&shims.runs, &tool.runs) {
            (None, Some(binary)) => format!(" (through {binary})"),
            _ => String::new(),
        };
        let state = match (&tool.shim, &tool.shadowed_by) {
            (Some(_), None) => format!("counted{through}, runs {real}"),
            (Some(_), Some(other)) => {
                format!("not counted: {other} comes before the shim on PATH")
            }
            (None, Some(_)) => format!("not counted; real: {real}"),
            (None, None) => format!("not counted (no shim on PATH); real: {real}"),
        };
        writeln!(out, "  {:<12}{state}", tool.tool)?;
    }
    if let Some(fix) = &shims.fix {
        writeln!(
            out,
            "  To put the shims first, make this the last line of your shell profile \
             (`tally setup --modify-path` does):"
        )?;
        writeln!(out, "      {fix}")?;
    }
    if let Some(relink) = &shims.relink {
        writeln!(out, "  {relink}")?;
    }
    writeln!(out, "Under cargo:  compiles {}", shims.cargo_compiles)?;
    Ok(())
}

/// The collector and its config.
fn render_collector(status: &Status, out: &mut dyn Write) -> std::io::Result<()> {
    match &status.endpoint {
        Some(endpoint) => writeln!(
            out,
            "Collector:    {} (key {})",
            endpoint.url,
            endpoint.key_ids.join(", ")
        )?,
        None => writeln!(out, "Collector:    none")?,
    }
    let config = &status.config;
    if config.verified {
        writeln!(
            out,
            "Config:       version {}, expires {}, signature verified (key {})",
            config.version.map(|v| v.to_string()).unwrap_or_default(),
            config.expires.map(|d| d.to_string()).unwrap_or_default(),
            config.key_id.as_deref().unwrap_or_default()
        )?;
        if let Some(problem) = &config.problem {
            writeln!(out, "              (last fetch failed: {problem})")?;
        }
        match &config.upload_mode {
            Some(UploadMode::Plain) | None => writeln!(
                out,
                "Upload mode:  plain (the filtered report, as `tally preview` shows it)"
            )?,
            Some(UploadMode::PrivateAggregation { leader, helper }) => writeln!(
                out,
                "Upload mode:  private aggregation (DAP): only a vector of 0/1 entries, split \
                 into two secret shares, one for the leader {} and one for the helper {}; no \
                 plain report is sent",
                leader, helper
            )?,
        }
    } else if status.endpoint.is_some() {
        writeln!(
            out,
            "Config:       not usable, nothing is uploaded: {}",
            config.problem.as_deref().unwrap_or("unknown")
        )?;
    } else {
        writeln!(out, "Config:       none")?;
    }
    Ok(())
}

/// This week's counts, the next report, pending reports, the last upload.
fn render_counts(status: &Status, out: &mut dyn Write) -> std::io::Result<()> {
    match &status.this_week {
        Some(week) => writeln!(
            out,
            "This week:    {} to {}: {} counts in {} file(s)",
            week.start,
            week.end.plus_days(-1).unwrap_or(week.end),
            week.counts,
            week.files
        )?,
        None => writeln!(out, "This week:    nothing counted yet")?,
    }
    match status.next_report_due {
        Some(day) => writeln!(out, "Next report:  {day}")?,
        None => writeln!(out, "Next report:  none due (nothing counted)")?,
    }
    if status.pending_reports > 0 {
        writeln!(
            out,
            "Pending:      {} report(s) waiting to be uploaded",
            status.pending_reports
        )?;
    }
    match &status.last_upload {
        Some(last) => writeln!(out, "Last upload:  {}: {}", last.day, last.result)?,
        None => writeln!(out, "Last upload:  never")?,
    }
    Ok(())
}
