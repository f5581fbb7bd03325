//! Open data: the published aggregates as downloadable files, one per calendar week.
//!
//! `GET /data/` lists the published weeks; `GET /data/<monday>.json` and `/data/<monday>.csv`
//! hold exactly what the dashboard and `/api/weeks` publish for that week (publication
//! threshold and complementary suppression applied by `merge.rs`, the only way anything leaves
//! the server), under [`LICENCE`]. `tally-server export` writes the same bytes offline from a
//! store. The formats are documented in `docs/open-data.md` and versioned by [`SCHEMA`]: a
//! change that would break a reader gets a new schema name.
//!
//! Promises: a file is built only from `MergedWeek::summary` and `MergedWeek::publish`, so it
//! can hold nothing the dashboard withholds; the server's file and the export's file of the
//! same week, threshold and day are byte for byte equal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tally_protocol::aggregate::{
    CounterAggregate, ProgramWeek, WeekSummary, bucket_week, wilson_interval,
};
use tally_protocol::{Day, MAX_REPORT_AGE_DAYS, WEEK_DAYS};

use crate::configs::Configs;
use crate::merge::MergedWeek;
use crate::store::{MAX_MERGED_BYTES, MAX_NOTE_BYTES, Read, Store, merged_key};
use object_store::path::Path;

/// The schema name every file carries; bumped only for changes that break readers.
pub const SCHEMA: &str = "tally-open-data/1";

/// The licence of the published data (SPDX identifier).
pub const LICENCE: &str = "CC-BY-4.0";

/// The licence in words, with its link, for pages and the CSV's first line.
pub const LICENCE_LINE: &str = "licence CC-BY-4.0 (https://creativecommons.org/licenses/by/4.0/): share and adapt, with attribution";

/// The store key whose presence marks a store as holding simulated reports (`tally demo`);
/// its contents say how they were made.
pub const SIMULATED_KEY: &str = "SIMULATED.txt";

/// The CSV's column names, in order.
pub const CSV_COLUMNS: [&str; 11] = [
    "week",
    "program",
    "program_reports",
    "dimension",
    "version",
    "name",
    "reports",
    "share",
    "low",
    "high",
    "total",
];

/// One week's published aggregates: the `/data/<monday>.json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeekData {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Always [`LICENCE`].
    pub licence: String,
    /// Monday of the calendar week.
    pub week: Day,
    /// Anything seen in fewer distinct reports than this is withheld.
    pub threshold: u64,
    /// The week no longer accepts uploads, so its numbers are final.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The reports are simulated (`tally demo`), not from real installations.
    pub simulated: bool,
    /// Reports stored for the week, all programs.
    pub reports: u64,
    /// Each published program's aggregates, by name.
    pub programs: Vec<ProgramWeek>,
}

/// The last day a report of the calendar week starting `monday` can be accepted: a report's
/// week may start on the Sunday and be sent up to [`MAX_REPORT_AGE_DAYS`] after it began.
pub fn final_after(monday: Day) -> Option<Day> {
    monday.plus_days(WEEK_DAYS - 1 + MAX_REPORT_AGE_DAYS)
}

impl WeekData {
    /// The document of one week from its public summary and programs.
    pub fn new(
        summary: &WeekSummary,
        programs: Vec<ProgramWeek>,
        threshold: u64,
        today: Day,
        simulated: bool,
    ) -> WeekData {
        WeekData {
            schema: SCHEMA.to_owned(),
            licence: LICENCE.to_owned(),
            week: summary.week,
            threshold,
            is_final: final_after(summary.week).is_some_and(|last| today > last),
            simulated,
            reports: summary.reports,
            programs,
        }
    }

    /// From a private merge, through the same thresholded publication as the dashboard.
    /// `None` when the week publishes nothing.
    pub fn from_merged(
        merged: &MergedWeek,
        threshold: u64,
        today: Day,
        simulated: bool,
    ) -> Option<WeekData> {
        let summary = merged.summary(threshold)?;
        let programs = summary
            .programs
            .keys()
            .filter_map(|program| merged.publish(program, threshold))
            .collect();
        Some(WeekData::new(
            &summary, programs, threshold, today, simulated,
        ))
    }

    /// The JSON file: pretty, newline-terminated.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("week data serializes");
        text.push('\n');
        text
    }

    /// The CSV file: a `#` line naming the schema and licence, the header, then one row per
    /// published number (see `docs/open-data.md`).
    pub fn to_csv(&self, with_preamble: bool) -> String {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        if with_preamble {
            let _ = writer.write_record(CSV_COLUMNS);
        }
        let week = self.week.to_string();
        let _ = writer.write_record([
            week.as_str(),
            "",
            "",
            "reports",
            "",
            "",
            &self.reports.to_string(),
            "",
            "",
            "",
            "",
        ]);
        for program in &self.programs {
            let n = program.reports.to_string();
            let row = |dimension: &str, version: &str, name: &str, reports: u64| {
                vec![
                    week.clone(),
                    inert(&program.program),
                    n.clone(),
                    dimension.to_owned(),
                    inert(version),
                    inert(name),
                    reports.to_string(),
                ]
            };
            for counter in &program.counters {
                let mut record = row("counter", "", &counter.name, counter.reports_with);
                push_share(&mut record, counter);
                let _ = writer.write_record(&record);
            }
            for (dimension, buckets) in [
                ("version", &program.versions),
                ("os", &program.os),
                ("arch", &program.arch),
            ] {
                for (bucket, count) in buckets {
                    let mut record = row(dimension, "", bucket, *count);
                    record.extend(["", "", "", ""].map(String::from));
                    let _ = writer.write_record(&record);
                }
            }
            for (version, counters) in &program.by_version {
                for counter in counters {
                    let mut record = row(
                        "version-counter",
                        version,
                        &counter.name,
                        counter.reports_with,
                    );
                    push_share(&mut record, counter);
                    let _ = writer.write_record(&record);
                }
            }
        }
        let body = writer.into_inner().unwrap_or_default();
        let mut out = String::new();
        if with_preamble {
            let _ = writeln!(
                out,
                "# {SCHEMA}: tally published aggregates, week of {}{}; {LICENCE_LINE}",
                self.week,
                if self.simulated {
                    " (SIMULATED data)"
                } else {
                    ""
                }
            );
        }
        out.push_str(&String::from_utf8_lossy(&body));
        out
    }
}

/// A text cell as a spreadsheet shows it and never runs it: one that starts with `=`, `+`, `-`,
/// `@`, a tab or a carriage return (what spreadsheets take for a formula: OWASP's rule against
/// CSV injection) gets a leading `'`. Only text cells (program, version, counter and bucket
/// names, which a collector's config could spell so) pass here; number cells are written by
/// this module from counts and shares, never negative, and are left alone.
pub fn inert(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

fn push_share(record: &mut Vec<String>, counter: &CounterAggregate) {
    record.extend([
        counter.share.to_string(),
        counter.low.to_string(),
        counter.high.to_string(),
        // Empty where the total was not measured (a presence-only counter of a private
        // aggregate): a 0 would be a count nobody made.
        counter
            .total
            .map_or_else(String::new, |total| total.to_string()),
    ]);
}

/// Recomputes a counter's share and interval from a file's numbers alone, as a reader would:
/// `reports / program_reports` with the 95% Wilson interval.
pub fn recompute_share(reports: u64, program_reports: u64) -> (f64, f64, f64) {
    let (low, high) = wilson_interval(reports, program_reports, crate::merge::Z_95);
    (reports as f64 / program_reports as f64, low, high)
}

/// The weeks of a store, merged, and those that could not be read.
#[derive(Debug, Default)]
pub struct StoredWeeks {
    /// Oldest first.
    pub merged: Vec<MergedWeek>,
    /// Each week whose merge could not be read (not a regular file, too big, does not parse,
    /// the store failed reading it), with why, naming the key.
    pub unreadable: Vec<(Day, String)>,
}

/// Every week of the store from `since`'s calendar week on, merged: rebuilt from its raw
/// reports where there are any (each checked again as its upload was, [`Configs`]), else its
/// stored merge (raw reports past retention are gone, the merge stays). A week that cannot be
/// read is set aside with the reason, and the others are read.
pub async fn merged_weeks(store: &Store, since: Day) -> anyhow::Result<StoredWeeks> {
    let since = bucket_week(since);
    let mut weeks: BTreeMap<Day, Option<MergedWeek>> = BTreeMap::new();
    let (_, report_dirs) = store.list_dir("reports").await?;
    for dir in report_dirs {
        if let Some(monday) = dir.filename().and_then(|n| n.parse::<Day>().ok())
            && monday >= since
        {
            weeks.insert(monday, None);
        }
    }
    let (merged_keys, _) = store.list_dir("merged").await?;
    for key in merged_keys {
        if let Some(monday) = key
            .filename()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<Day>().ok())
            && monday >= since
        {
            weeks.entry(monday).or_insert(None);
        }
    }
    let configs = Configs::new(store.clone());
    let mut out = StoredWeeks::default();
    for (monday, _) in weeks {
        let (keys, _) = store.list_dir(&format!("reports/{monday}")).await?;
        let keys: Vec<_> = keys
            .into_iter()
            .filter(|k| k.as_ref().ends_with(".json"))
            .collect();
        if keys.is_empty() {
            let key = merged_key(monday);
            match stored_merge(store, &configs, &key, monday).await {
                Ok(Some(merged)) => out.merged.push(merged),
                Ok(None) => {}
                Err(why) => out.unreadable.push((monday, why)),
            }
            continue;
        }
        let mut merged = MergedWeek::new(monday);
        for report in crate::checkpoint::fetch(store, &configs, monday, keys).await? {
            merged.add(&report);
        }
        out.merged.push(merged);
    }
    Ok(out)
}

/// The merged copy of the week of `monday` at `key`: `Ok(None)` if there is none, `Err` with
/// why it cannot be read.
pub(crate) async fn stored_merge(
    store: &Store,
    configs: &Configs,
    key: &Path,
    monday: Day,
) -> Result<Option<MergedWeek>, String> {
    let bytes = match store.read(key, MAX_MERGED_BYTES).await {
        Ok(Read::Found(bytes)) => bytes,
        Ok(Read::Missing) => return Ok(None),
        Ok(Read::Skipped(why)) => return Err(why),
        Err(e) => return Err(format!("{e:#}")),
    };
    match serde_json::from_slice::<MergedWeek>(&bytes) {
        Ok(merged) if merged.week == monday => match configs.check_merged(&merged).await {
            Ok(Ok(())) => Ok(Some(merged)),
            Ok(Err(why)) => Err(format!(
                "{key} holds what no upload could have brought: {why}"
            )),
            Err(e) => Err(format!("{e:#}")),
        },
        Ok(merged) => Err(format!("{key} holds the week of {}", merged.week)),
        Err(e) => Err(format!("{key} does not parse: {e}")),
    }
}

/// Whether the store is marked as holding simulated reports.
pub async fn is_simulated(store: &Store) -> anyhow::Result<bool> {
    Ok(store
        .get(&Path::from(SIMULATED_KEY), MAX_NOTE_BYTES)
        .await?
        .is_some())
}

/// Output format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

/// `tally-server export`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Storage: a directory, or s3://bucket/prefix (as for `serve`).
    #[arg(long)]
    pub store: String,
    /// The first week to export (any day of it, YYYY-MM-DD).
    #[arg(long)]
    pub since: Day,
    /// csv or json.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Publication threshold: the one the collector serves with.
    #[arg(long, default_value_t = crate::DEFAULT_THRESHOLD)]
    pub threshold: u64,
    /// Write one file per week here (`<monday>.csv` / `.json`, the bytes `/data/` serves);
    /// without it, everything goes to standard output (CSV: one header; JSON: an array).
    #[arg(long, short = 'o')]
    pub out: Option<std::path::PathBuf>,
}

/// Runs `tally-server export`.
pub fn export_command(args: &ExportArgs) -> anyhow::Result<()> {
    if args.threshold == 0 {
        bail!("--threshold must be at least 1");
    }
    let today = crate::clock::Clock::from_env()?.today();
    let store = Store::open(&args.store)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (weeks, simulated) = runtime.block_on(async {
        anyhow::Ok((
            merged_weeks(&store, args.since).await?,
            is_simulated(&store).await?,
        ))
    })?;
    for (monday, why) in &weeks.unreadable {
        eprintln!("tally-server: skipped the week of {monday}: {why}");
    }
    let published: Vec<WeekData> = weeks
        .merged
        .iter()
        .filter_map(|m| WeekData::from_merged(m, args.threshold, today, simulated))
        .collect();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for week in &published {
            let (name, text) = match args.format {
                Format::Csv => (format!("{}.csv", week.week), week.to_csv(true)),
                Format::Json => (format!("{}.json", week.week), week.to_json()),
            };
            let path = dir.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        eprintln!(
            "tally-server: exported {} week(s) to {}",
            published.len(),
            dir.display()
        );
        return all_exported(&weeks);
    }
    let mut out = String::new();
    match args.format {
        Format::Csv => {
            for (i, week) in published.iter().enumerate() {
                if i == 0 {
                    out.push_str(&week.to_csv(true));
                } else {
                    out.push_str(&week.to_csv(false));
                }
            }
        }
        Format::Json => {
            out = serde_json::to_string_pretty(&published)?;
            out.push('\n');
        }
    }
    use std::io::Write as _;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    all_exported(&weeks)
}

/// `Ok` if every week was read; else the error that makes `export` fail once the others are
/// written, so that a script notices a week is missing.
fn all_exported(weeks: &StoredWeeks) -> anyhow::Result<()> {
    match weeks.unreadable.len() {
        0 => Ok(()),
        n => bail!(
            "{n} week(s) could not be read and were not exported (named above); the others were. \
             Repair or remove the files named, or restore them from a backup"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_are_made_inert() {
        for formula in ["=1+1", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "-V"] {
            assert_eq!(inert(formula), format!("'{formula}"));
        }
        for text in [
            "cargo/invocations",
            "1.95.0",
            "linux",
            "",
            "a=b",
            "'quoted",
            "0.25",
        ] {
            assert_eq!(inert(text), text);
        }
    }

    #[test]
    fn weeks_become_final_once_no_upload_can_reach_them() {
        let monday: Day = "2026-11-02".parse().unwrap();
        // The week's Sunday-starting reports may arrive until 21 days after that Sunday.
        assert_eq!(final_after(monday).unwrap().to_string(), "2026-11-29");
    }
}
