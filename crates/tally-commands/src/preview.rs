//! `tally preview`: the exact bytes the next upload would send, week by week, or exactly why
//! nothing would be sent.
//!
//! Like `tally upload`, it first builds the reports that are due (so the bytes shown are the
//! bytes that will be sent: each report's random `x` is drawn once), but it never fetches or
//! sends anything. With `TALLY=off` or `DO_NOT_TRACK` it touches nothing.
//!
//! After each week's bytes it names, for every counter sent, the chart the collector collects it
//! for (the `chart` of the counter in the verified config, described on the collector's
//! `/config` page), so the user can see why each number is asked for.
//!
//! When the verified config asks for private aggregation (its `aggregation` section), what
//! would leave is not the report but the layout's vector of it: the preview shows that vector
//! entry by entry (index, program, what the bit means, value), names both aggregators, and then
//! the report it is computed from, marked as not sent.

use std::process::ExitCode;

use std::collections::BTreeMap;

use tally_home::{Env, Mode};
use tally_protocol::config::aggregation::AggregationConfig;
use tally_protocol::config::layout::EntryKind;
use tally_protocol::{Report, UploadConfig};

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
    let config = tally_config::current(&home.config_dir(), env.today())
        .ok()
        .map(|verified| verified.config);
    let out = &mut *io.out;
    if mode == Mode::Off || preview.weeks.is_empty() {
        out.write_all(preview.explain().as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    for week in &preview.weeks {
        match &week.outcome {
            Ok(bytes) => {
                let section = config.as_ref().and_then(|c| c.aggregation.as_ref());
                if let (Some(section), Ok(report)) = (section, Report::parse(bytes)) {
                    write_vector(out, section, &report)?;
                    writeln!(
                        out,
                        "It is computed from this report, which is not sent ({} bytes):",
                        bytes.len()
                    )?;
                    out.write_all(bytes)?;
                    continue;
                }
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
                if let (Some(config), Ok(report)) = (&config, Report::parse(bytes)) {
                    let page = endpoint.as_ref().map_or_else(
                        || "the collector's /config page".to_owned(),
                        |e| format!("{}/config", e.url),
                    );
                    writeln!(
                        out,
                        "Why each counter is asked for (charts described at {page}):"
                    )?;
                    for (counter, charts) in charts_of(config, &report) {
                        let charts = if charts.is_empty() {
                            "no chart named in the collector's config".to_owned()
                        } else {
                            format!("chart {}", charts.join(", chart "))
                        };
                        writeln!(out, "  {counter}: {charts}")?;
                    }
                }
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

/// The vector of `report` under the config's private-aggregation `section`, entry by entry.
fn write_vector(
    out: &mut dyn std::io::Write,
    section: &AggregationConfig,
    report: &Report,
) -> std::io::Result<()> {
    let vector = section.layout.measurement(report);
    writeln!(
        out,
        "Week of {}: the next upload would send a private-aggregation (DAP) report: this vector \
         of {} entries, split into two secret shares, one sealed to the leader {} and one to \
         the helper {}. Neither can read it alone; only the sum over at least {} installations \
         is ever seen.",
        report.week,
        vector.len(),
        section.leader,
        section.helper,
        section.min_batch_size
    )?;
    writeln!(out, "  index  program  entry  value")?;
    for (entry, value) in section.layout.entries().iter().zip(&vector) {
        let meaning = match &entry.kind {
            EntryKind::Reports => "reported this week".to_owned(),
            EntryKind::Sampled { rate } => format!("sampled at rate {rate}"),
            EntryKind::Version { bucket } => format!("version {bucket}"),
            EntryKind::Os { os } => format!("os {os}"),
            EntryKind::Arch { arch } => format!("arch {arch}"),
            EntryKind::Presence { counter } => format!("{counter} > 0"),
            EntryKind::CountBit { counter, bit } => format!("{counter} count, bit {bit}"),
            EntryKind::VersionPresence { counter, bucket } => {
                format!("{counter} > 0 in version {bucket}")
            }
        };
        writeln!(
            out,
            "  {}  {}  {meaning}  {value}",
            entry.index, entry.program
        )?;
    }
    Ok(())
}

/// Every counter `report` sends, as `counter (program)`, with the charts `config` collects it for.
fn charts_of(config: &UploadConfig, report: &Report) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for section in &report.programs {
        let charts = config
            .program(&section.program)
            .map(|p| p.counter_charts())
            .unwrap_or_default();
        for counter in section.counters.keys() {
            out.entry(format!("{counter} ({})", section.program))
                .or_insert_with(|| charts.get(counter).cloned().unwrap_or_default());
        }
    }
    out
}
