//! The chart config: the one file that says what the collector collects, why, and how it shows
//! it, after Go's `internal/chartconfig` ("telemetry collection should be derived from views of
//! the data that we want to see").
//!
//! A chart config is TOML (schema: `config-schema/charts.schema.json`, example:
//! `config-schema/example-charts.toml`). Each `[[chart]]` has a stable `id`, a `title`, the
//! `description` of the question it answers, a link to the `proposal` that justified it, the
//! `program` and its `versions`, the `counters` it needs (names or families such as
//! `cargo/subcommand:{build,check,test}`), its `kind` and the `margin` of error wanted.
//!
//! Two things are derived from it, and nothing else may be:
//! - [`generate`]: the upload config (`tally-server config generate`): exactly the counters the
//!   charts need, each tagged with its chart's id, the rates planned from each chart's margin
//!   ([`crate::plan`]), a version one above the last one served; and, when the chart config
//!   has an `[aggregation]` table (private aggregation), the config's aggregation section: the
//!   layout the charts need (`tally_protocol::config::layout::for_charts`), in the task that
//!   `tally-server dap provision --charts` made for exactly that layout ([`ChartsAggregation`]);
//! - the public `/config` page (`config_page.rs`), which lists what the served config collects
//!   with each chart's title, description and proposal. [`check_served`] refuses to serve a
//!   config that was not generated from the chart file the page describes.
//!
//! Promises: a chart file that parses here produces an upload config that
//! `UploadConfig::validate` accepts; every counter of the generated config belongs to a chart
//! and every chart's counters are in it; bad input is an error naming the chart and the field.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tally_protocol::config::aggregation::{AggregationConfig, VdafParams};
use tally_protocol::config::expand_pattern;
use tally_protocol::config::layout::{self, Layout};
use tally_protocol::{CounterConfig, Day, ProgramConfig, UploadConfig};

use crate::plan::{Plan, plan};

/// Largest chart file read (the upload config it generates is capped at 1 MiB too).
pub const MAX_CHARTS_BYTES: usize = 1024 * 1024;

/// A chart config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct ChartsFile {
    /// Operating systems whose reports are wanted (Rust's `std::env::consts::OS` names).
    pub os: Vec<String>,
    /// Architectures whose reports are wanted (Rust's `std::env::consts::ARCH` names).
    pub arch: Vec<String>,
    /// Confidence level of every chart's margin of error.
    #[serde(default = "default_confidence")]
    #[cfg_attr(test, schemars(range(min = 0.5, max = 0.999)))]
    pub confidence: f64,
    /// The charts, in the order the `/config` page lists them.
    #[serde(rename = "chart")]
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub charts: Vec<Chart>,
    /// Private aggregation: present when clients send DAP reports to two aggregators instead
    /// of plain reports (docs/private-aggregation.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<ChartsAggregation>,
}

fn default_confidence() -> f64 {
    0.95
}

/// The chart config's `[aggregation]` table: what private aggregation needs beyond the charts.
/// `tally-server dap provision --charts` makes a task for the layout the charts need and writes
/// the config section to `section`; `config generate` puts that section into the upload config
/// after checking that it is for this very layout, these aggregators and this batch size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct ChartsAggregation {
    /// The leader's public base URL: `https`, or `http` to a loopback address.
    #[cfg_attr(test, schemars(regex(pattern = r"^https?://[^\s]+$")))]
    pub leader: String,
    /// The helper's public base URL, run by another organisation than the leader.
    #[cfg_attr(test, schemars(regex(pattern = r"^https?://[^\s]+$")))]
    pub helper: String,
    /// Fewest reports a batch is collected with, enforced by both aggregators: the publication
    /// threshold the collector serves with (`serve --threshold`).
    #[cfg_attr(test, schemars(range(min = 1)))]
    pub min_batch_size: u64,
    /// Seconds report times are rounded down to, a divisor of a day.
    #[serde(default = "default_time_precision")]
    #[cfg_attr(test, schemars(range(min = 1, max = 86_400)))]
    pub time_precision: u64,
    /// Version buckets (`major.minor`) per program, for the charts that cross versions;
    /// versions not listed are counted as `other`.
    #[serde(default)]
    pub versions: BTreeMap<String, Vec<String>>,
    /// The config section's file, relative to the chart file: written by `tally-server dap
    /// provision --charts`, read by `config generate`.
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub section: String,
}

fn default_time_precision() -> u64 {
    86_400
}

/// One chart: a question, the counters that answer it, and how precisely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Chart {
    /// Stable identifier: lower-case letters, digits and `-`. It travels in the signed upload
    /// config beside each counter, `tally preview` shows it, and `/config#<id>` links to it.
    #[cfg_attr(test, schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{0,63}$")))]
    pub id: String,
    /// What the chart shows, in a few words.
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub title: String,
    /// The question the chart answers, and what the answer is used for.
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub description: String,
    /// Link to the proposal (issue, design document) that justified collecting this.
    #[cfg_attr(test, schemars(regex(pattern = r"^https?://[^\s]+$")))]
    pub proposal: String,
    /// The program whose reports carry the counters (`cargo`, `rustc`, `go`, …).
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub program: String,
    /// The program versions the chart is about, a semver range (`>=1.70.0`). Every chart of
    /// one program names the same range: the upload config has one range per program.
    pub versions: String,
    /// Counter names or families (`prefix:{a,b,c}`).
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub counters: Vec<String>,
    /// How the chart is drawn.
    pub kind: ChartKind,
    /// Wanted half-width of the chart's 95% (or `confidence`) intervals, e.g. 0.02 for ±2
    /// points.
    #[cfg_attr(test, schemars(range(min = 0.0001, max = 0.4999)))]
    pub margin: f64,
}

/// How a chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub enum ChartKind {
    /// The buckets of one family, compared within a week (bars with intervals) and over time.
    Partition,
    /// Bucketed values (`…/time:<1s`), ordered by bucket.
    Histogram,
    /// Each counter's share of reports, week by week.
    ShareOverTime,
}

impl ChartKind {
    pub fn label(self) -> &'static str {
        match self {
            ChartKind::Partition => "partition",
            ChartKind::Histogram => "histogram",
            ChartKind::ShareOverTime => "share over time",
        }
    }
}

impl ChartsFile {
    /// Parses and checks a chart file's text.
    pub fn parse(text: &str) -> anyhow::Result<ChartsFile> {
        if text.len() > MAX_CHARTS_BYTES {
            bail!(
                "the chart file is {} bytes, over the {MAX_CHARTS_BYTES} byte limit",
                text.len()
            );
        }
        let file: ChartsFile = toml::from_str(text).context("the chart file is not valid")?;
        file.validate()?;
        Ok(file)
    }

    /// Reads and checks a chart file.
    pub fn read(path: &std::path::Path) -> anyhow::Result<ChartsFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the chart file {}", path.display()))?;
        ChartsFile::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(0.5..1.0).contains(&self.confidence) {
            bail!(
                "confidence {} must be in [0.5, 1), e.g. 0.95",
                self.confidence
            );
        }
        if self.charts.is_empty() {
            bail!("the chart file has no [[chart]]; every collected counter needs one");
        }
        let mut ids = BTreeSet::new();
        let mut ranges: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for chart in &self.charts {
            let at = |field: &str| format!("chart {:?}: {field}", chart.id);
            let id_ok = !chart.id.is_empty()
                && chart.id.len() <= 64
                && chart
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !chart.id.starts_with('-');
            if !id_ok {
                bail!(
                    "{}: use lower-case letters, digits and '-' (at most 64)",
                    at("id")
                );
            }
            if !ids.insert(chart.id.as_str()) {
                bail!("{}: two charts have this id", at("id"));
            }
            for (field, value) in [
                ("title", &chart.title),
                ("description", &chart.description),
                ("program", &chart.program),
            ] {
                if value.trim().is_empty() {
                    bail!("{} is empty", at(field));
                }
            }
            let proposal_ok = (chart.proposal.starts_with("https://")
                || chart.proposal.starts_with("http://"))
                && !chart.proposal.contains(char::is_whitespace);
            if !proposal_ok {
                bail!(
                    "{} {:?} is not an http(s) link to the proposal",
                    at("proposal"),
                    chart.proposal
                );
            }
            if !(chart.margin > 0.0 && chart.margin < 0.5) {
                bail!(
                    "{} {} must be in (0, 0.5), e.g. 0.02",
                    at("margin"),
                    chart.margin
                );
            }
            if chart.counters.is_empty() {
                bail!("{} is empty", at("counters"));
            }
            for pattern in &chart.counters {
                let Some(names) = expand_pattern(pattern) else {
                    bail!(
                        "{}: {pattern:?} is not a counter name or a family prefix:{{a,b}}",
                        at("counters")
                    );
                };
                if chart.kind == ChartKind::Histogram
                    && let Some(bad) = names.iter().find(|n| bucket_bound(n).is_none())
                {
                    bail!(
                        "{}: {bad:?} is not a histogram bucket (like rustc/time:<1s or :>=60s)",
                        at("counters")
                    );
                }
            }
            match ranges.get(chart.program.as_str()) {
                Some((versions, other)) if *versions != chart.versions => bail!(
                    "{}: {:?} differs from chart {other:?}'s {versions:?} for the same program; \
                     the upload config has one version range per program",
                    at("versions"),
                    chart.versions
                ),
                _ => {
                    ranges.insert(&chart.program, (&chart.versions, &chart.id));
                }
            }
        }
        // The range syntax and counter patterns are checked where clients check them.
        self.upload_config(1, "2000-01-01".parse()?, &|_| 1.0)?;
        if self.aggregation.is_some() {
            // As a client would check the section: the URLs, the precision, the layout.
            self.placeholder_section()?;
        }
        Ok(())
    }

    /// The measurement layout the charts need (`layout::for_charts`); `None` without an
    /// `[aggregation]` table.
    pub fn layout(&self) -> Option<Layout> {
        let table = self.aggregation.as_ref()?;
        let charts: Vec<layout::ChartCounters> = self
            .charts
            .iter()
            .map(|c| layout::ChartCounters {
                program: c.program.clone(),
                counters: c.counters.clone(),
                kind: match c.kind {
                    ChartKind::Partition => layout::ChartKind::Partition,
                    ChartKind::Histogram => layout::ChartKind::Histogram,
                    ChartKind::ShareOverTime => layout::ChartKind::ShareOverTime,
                },
            })
            .collect();
        Some(layout::for_charts(
            &self.os,
            &self.arch,
            &charts,
            &table.versions,
        ))
    }

    /// The section these charts ask for, with a placeholder task ID, checked as a client
    /// checks a section: every error names `[aggregation]`.
    fn placeholder_section(&self) -> anyhow::Result<AggregationConfig> {
        let table = self
            .aggregation
            .as_ref()
            .context("the chart file has no [aggregation] table")?;
        let layout = self.layout().expect("a table");
        let section = AggregationConfig {
            protocol: tally_protocol::config::aggregation::PROTOCOL.into(),
            leader: table.leader.clone(),
            helper: table.helper.clone(),
            task_id: "A".repeat(43),
            vdaf: VdafParams::sum_vec(u32::try_from(layout.len()).unwrap_or(u32::MAX)),
            time_precision: table.time_precision,
            min_batch_size: table.min_batch_size,
            layout,
        };
        section
            .validate()
            .map_err(|e| anyhow::anyhow!("[aggregation]: {e}"))?;
        Ok(section)
    }

    /// Checks that `section` (a provisioned task's) is the one these charts ask for: the same
    /// aggregators, batch size, precision and layout.
    pub fn check_section(&self, section: &AggregationConfig) -> anyhow::Result<()> {
        let wanted = self.placeholder_section()?;
        let slash = |url: &str| url.trim_end_matches('/').to_owned();
        let differs = if slash(&section.leader) != slash(&wanted.leader)
            || slash(&section.helper) != slash(&wanted.helper)
        {
            Some(format!(
                "is for the aggregators {} and {}, the chart file names {} and {}",
                section.leader, section.helper, wanted.leader, wanted.helper
            ))
        } else if section.min_batch_size != wanted.min_batch_size {
            Some(format!(
                "has min_batch_size {}, the chart file {}",
                section.min_batch_size, wanted.min_batch_size
            ))
        } else if section.time_precision != wanted.time_precision {
            Some(format!(
                "has time_precision {}, the chart file {}",
                section.time_precision, wanted.time_precision
            ))
        } else if section.layout != wanted.layout {
            Some(format!(
                "lays out {} entries for other counters or versions than the charts need ({} entries)",
                section.layout.len(),
                wanted.layout.len()
            ))
        } else {
            None
        };
        match differs {
            Some(why) => bail!(
                "the aggregation section of task {} {why}: a task's parameters never change, so provision a new one (`tally-server dap provision --charts …`)",
                section.task_id
            ),
            None => Ok(()),
        }
    }

    /// The chart with `id`.
    pub fn chart(&self, id: &str) -> Option<&Chart> {
        self.charts.iter().find(|c| c.id == id)
    }

    /// The upload config these charts need, with each chart's counters at `rate(chart)`.
    fn upload_config(
        &self,
        version: u64,
        expires: Day,
        rate: &dyn Fn(&Chart) -> f64,
    ) -> anyhow::Result<UploadConfig> {
        let mut programs: Vec<ProgramConfig> = Vec::new();
        for chart in &self.charts {
            let index = match programs.iter().position(|p| p.name == chart.program) {
                Some(index) => index,
                None => {
                    programs.push(ProgramConfig {
                        name: chart.program.clone(),
                        versions: chart.versions.clone(),
                        counters: Vec::new(),
                    });
                    programs.len() - 1
                }
            };
            let rate = rate(chart);
            for pattern in &chart.counters {
                programs[index].counters.push(CounterConfig {
                    name: pattern.clone(),
                    rate,
                    chart: Some(chart.id.clone()),
                });
            }
        }
        let sample_rate = self.charts.iter().map(rate).fold(0.0, f64::max);
        let config = UploadConfig {
            version,
            expires,
            sample_rate,
            os: self.os.clone(),
            arch: self.arch.clone(),
            programs,
            aggregation: None,
        };
        config
            .validate()
            .context("the charts do not make a valid upload config")?;
        Ok(config)
    }
}

pub use tally_charts::buckets::{bucket_bound, bucket_order};

/// A generated upload config and the plan behind each chart's rate.
#[derive(Debug, Clone)]
pub struct Generated {
    pub config: UploadConfig,
    /// Per chart id, its plan (margin, reports needed, rate).
    pub plans: Vec<(String, Plan)>,
}

impl Generated {
    /// The config as the file to sign: pretty JSON, newline-terminated.
    pub fn to_json(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(&self.config).expect("an upload config serializes");
        text.push('\n');
        text
    }

    /// Why each rate is what it is, one line per chart.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        for (id, plan) in &self.plans {
            out.push_str(&format!(
                "{id}: ±{} at {}% needs {} reports a week of {} expected: rate {:.6}\n",
                plan.margin,
                plan.confidence * 100.0,
                plan.needed_reports,
                plan.expected_reports,
                plan.sample_rate
            ));
        }
        out.push_str(&format!(
            "config version {}, sample_rate {:.6} (the largest chart rate), expires {}\n",
            self.config.version, self.config.sample_rate, self.config.expires
        ));
        if let Some(section) = &self.config.aggregation {
            out.push_str(&format!(
                "private aggregation: task {}, {} entries a report, leader {}, helper {}, batches of at least {}\n",
                section.task_id,
                section.layout.len(),
                section.leader,
                section.helper,
                section.min_batch_size
            ));
        }
        out
    }
}

/// The upload config for `charts` at `expected_reports` reports a week (at sample rate 1):
/// version `last_served + 1`, valid until `expires`; with `section`, the provisioned task's
/// aggregation section, which must be the one the chart file's `[aggregation]` table asks for.
pub fn generate(
    charts: &ChartsFile,
    expected_reports: u64,
    last_served: u64,
    expires: Day,
    section: Option<AggregationConfig>,
) -> anyhow::Result<Generated> {
    let mut plans = Vec::new();
    for chart in &charts.charts {
        let plan = plan(chart.margin, charts.confidence, expected_reports)
            .with_context(|| format!("chart {:?}", chart.id))?;
        plans.push((chart.id.clone(), plan));
    }
    let rate_of = |chart: &Chart| {
        plans
            .iter()
            .find(|(id, _)| *id == chart.id)
            .map_or(1.0, |(_, plan)| plan.sample_rate)
    };
    let version = last_served
        .checked_add(1)
        .context("the last served config version is the largest possible")?;
    let mut config = charts.upload_config(version, expires, &rate_of)?;
    match (&charts.aggregation, section) {
        (None, None) => {}
        (None, Some(_)) => {
            bail!("an aggregation section was given, but the chart file has no [aggregation] table")
        }
        (Some(table), None) => bail!(
            "the chart file asks for private aggregation, and its section {} is not there yet: provision the task first (`tally-server dap provision --charts CHARTS …`)",
            table.section
        ),
        (Some(_), Some(section)) => {
            section
                .validate()
                .context("the provisioned aggregation section is not valid")?;
            charts.check_section(&section)?;
            config.aggregation = Some(section);
            config
                .validate()
                .context("the charts do not make a valid upload config")?;
        }
    }
    Ok(Generated { config, plans })
}

/// Refuses a served config that was not generated from `charts`: the same OS and arch, the
/// same programs and version ranges, and the same counters for the same charts (rates and
/// sample rate may differ: they depend on the expected reports given to `generate`).
pub fn check_served(charts: &ChartsFile, served: &UploadConfig) -> anyhow::Result<()> {
    let wanted = charts.upload_config(served.version, served.expires, &|_| 1.0)?;
    let shape = |config: &UploadConfig| {
        let mut os = config.os.clone();
        os.sort();
        let mut arch = config.arch.clone();
        arch.sort();
        let programs: BTreeSet<(String, String, String, Option<String>)> = config
            .programs
            .iter()
            .flat_map(|p| {
                p.counters.iter().map(|c| {
                    (
                        p.name.clone(),
                        p.versions.clone(),
                        c.name.clone(),
                        c.chart.clone(),
                    )
                })
            })
            .collect();
        (os, arch, programs)
    };
    let (want_os, want_arch, want) = shape(&wanted);
    let (have_os, have_arch, have) = shape(served);
    if want_os != have_os || want_arch != have_arch {
        bail!(
            "the served config asks for os {have_os:?} and arch {have_arch:?}, the chart file for {want_os:?} and {want_arch:?}; generate the config from the chart file again"
        );
    }
    if let Some((program, versions, counter, chart)) = have.difference(&want).next() {
        bail!(
            "the served config collects {counter} of {program} {versions} for chart {chart:?}, which the chart file does not; generate the config from the chart file again (`tally-server config generate`)"
        );
    }
    if let Some((program, versions, counter, chart)) = want.difference(&have).next() {
        bail!(
            "the chart file's chart {chart:?} needs {counter} of {program} {versions}, which the served config does not collect; generate the config from the chart file again (`tally-server config generate`)"
        );
    }
    match (&charts.aggregation, &served.aggregation) {
        (None, None) => Ok(()),
        (Some(_), None) => bail!(
            "the chart file asks for private aggregation and the served config has no aggregation section; generate the config from the chart file again (`tally-server config generate`)"
        ),
        (None, Some(_)) => bail!(
            "the served config asks clients for private aggregation and the chart file has no [aggregation] table; generate the config from the chart file again (`tally-server config generate`)"
        ),
        (Some(_), Some(section)) => charts.check_section(section),
    }
}

/// Where a chart file's `[aggregation]` table puts the section: `section`, relative to the
/// chart file's directory.
pub fn section_path(
    charts_path: &std::path::Path,
    table: &ChartsAggregation,
) -> std::path::PathBuf {
    charts_path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(&table.section)
}

/// What `tally-server dap provision --charts CHARTS` takes from a chart file: the layout its
/// charts need, and the `[aggregation]` table's aggregators, batch size, precision and section
/// path.
pub fn aggregation_from_charts(
    path: &std::path::Path,
) -> anyhow::Result<tally_dap_aggregator::cli::FromCharts> {
    let charts = ChartsFile::read(path)?;
    let Some(table) = &charts.aggregation else {
        bail!(
            "{} has no [aggregation] table; add one (config-schema/example-charts-aggregation.toml shows it) or give --layout, --leader-url, --helper-url, --min-batch-size and --config-out",
            path.display()
        );
    };
    Ok(tally_dap_aggregator::cli::FromCharts {
        layout: charts.layout().expect("a table"),
        leader_url: table.leader.clone(),
        helper_url: table.helper.clone(),
        min_batch_size: table.min_batch_size,
        time_precision: table.time_precision,
        section: section_path(path, table),
    })
}

/// `tally-server config generate`'s arguments.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The chart config (TOML; config-schema/example-charts.toml shows one).
    pub charts: std::path::PathBuf,
    /// Reports per week you expect at sample rate 1 (opted-in installations).
    #[arg(long)]
    pub expected_reports: u64,
    /// The config being served now (the file given to `serve --config`): the new one gets the
    /// next version.
    #[arg(long)]
    pub current: Option<std::path::PathBuf>,
    /// The store the collector serves from: the new config's version is above every version
    /// ever served from it (the most reliable source with several servers).
    #[arg(long)]
    pub store: Option<String>,
    /// A collector that has never served a config: version 1.
    #[arg(long, conflicts_with_all = ["current", "store"])]
    pub first: bool,
    /// Last day the config may be used (YYYY-MM-DD); default 90 days from today.
    #[arg(long)]
    pub expires: Option<Day>,
    /// Where to write the config; standard output if not given.
    #[arg(long, short = 'o')]
    pub out: Option<std::path::PathBuf>,
}

/// The highest config version served: from the current config file and from the store.
fn last_served(args: &GenerateArgs) -> anyhow::Result<u64> {
    if args.first {
        return Ok(0);
    }
    if args.current.is_none() && args.store.is_none() {
        bail!(
            "say which config is served now: --current CONFIG.json or --store STORE (or --first for a new collector), so the new config's version is above it"
        );
    }
    let mut highest = 0;
    if let Some(path) = &args.current {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the current config {}", path.display()))?;
        let current = UploadConfig::parse(&bytes)
            .with_context(|| format!("the current config {} does not parse", path.display()))?;
        highest = highest.max(current.version);
    }
    if let Some(spec) = &args.store {
        let store = crate::store::Store::open(spec)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (keys, _) = runtime.block_on(store.list_dir("configs"))?;
        let served = keys
            .iter()
            .filter_map(|key| key.filename()?.strip_suffix(".json")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        highest = highest.max(served);
    }
    Ok(highest)
}

/// Runs `tally-server config generate`.
pub fn generate_command(args: &GenerateArgs) -> anyhow::Result<()> {
    let charts = ChartsFile::read(&args.charts)?;
    let expires = match args.expires {
        Some(day) => day,
        None => crate::clock::Clock::from_env()?
            .today()
            .plus_days(90)
            .context("today + 90 days is out of range")?,
    };
    let section = match &charts.aggregation {
        None => None,
        Some(table) => {
            let path = section_path(&args.charts, table);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read the aggregation section {} that [aggregation] names; provision the task first (`tally-server dap provision --charts {} …`)",
                    path.display(),
                    args.charts.display()
                )
            })?;
            Some(AggregationConfig::parse(&bytes).with_context(|| {
                format!("{} is not a valid aggregation section", path.display())
            })?)
        }
    };
    let generated = generate(
        &charts,
        args.expected_reports,
        last_served(args)?,
        expires,
        section,
    )?;
    let json = generated.to_json();
    match &args.out {
        Some(path) => std::fs::write(path, &json)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{json}"),
    }
    eprint!("{}", generated.explain());
    if let Some(path) = &args.out {
        eprintln!(
            "wrote {}; sign it with `tally-server sign {}` and serve it with --charts {}",
            path.display(),
            path.display(),
            args.charts.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config-schema/example-charts.toml");
    const SCHEMA_FILE: &str = "charts.schema.json";

    fn schema_path() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../config-schema")
            .join(SCHEMA_FILE)
    }

    fn generated_schema() -> serde_json::Value {
        let schema = schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<ChartsFile>();
        serde_json::to_value(schema).unwrap()
    }

    #[test]
    fn the_committed_schema_matches_the_rust_types() {
        let generated = generated_schema();
        if tally_env::var_os(tally_env::TALLY_BLESS_SCHEMAS).is_some_and(|v| v == "1") {
            let mut text = serde_json::to_string_pretty(&generated).unwrap();
            text.push('\n');
            std::fs::write(schema_path(), text).unwrap();
        }
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap();
        assert_eq!(
            committed, generated,
            "config-schema/{SCHEMA_FILE} has drifted; regenerate it with \
             `TALLY_BLESS_SCHEMAS=1 cargo test -p tally-server --lib charts_config`"
        );
    }

    /// What the schema finds wrong with `toml_text` (nothing if it validates).
    fn schema_errors(toml_text: &str) -> Vec<String> {
        let as_json: serde_json::Value = toml::from_str(toml_text).unwrap();
        let validator = jsonschema::draft202012::new(&generated_schema()).unwrap();
        validator
            .iter_errors(&as_json)
            .map(|e| e.to_string())
            .collect()
    }

    /// Fails with the schema's complaints unless `toml_text` validates against the schema.
    fn assert_valid(toml_text: &str) {
        let errors = schema_errors(toml_text);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn the_example_validates_against_the_schema_and_parses() {
        assert_valid(EXAMPLE);
        let charts = ChartsFile::parse(EXAMPLE).unwrap();
        assert!(charts.charts.len() >= 6);
        // The example names the compile-outcome counters (outcome, time, errors, lints).
        let all: Vec<&str> = charts
            .charts
            .iter()
            .flat_map(|c| c.counters.iter().map(String::as_str))
            .collect();
        for family in [
            "rustc/outcome:",
            "rustc/time/",
            "rustc/error:",
            "rustc/lint:",
        ] {
            assert!(all.iter().any(|c| c.starts_with(family)), "{family}");
        }
        // An unknown field is refused by both.
        let typo = EXAMPLE.replacen("margin =", "margn =", 1);
        assert!(ChartsFile::parse(&typo).is_err());
        assert!(!schema_errors(&typo).is_empty());
    }

    #[test]
    fn generates_exactly_the_counters_the_charts_need_with_planned_rates() {
        let charts = ChartsFile::parse(EXAMPLE).unwrap();
        let expires: Day = "2027-06-30".parse().unwrap();
        let generated = generate(&charts, 1_000_000, 6, expires, None).unwrap();
        let config = &generated.config;
        assert_eq!(config.version, 7);
        assert_eq!(config.expires, expires);
        // Every counter of the config is tagged with a chart that names it, and the reverse.
        let mut from_config = BTreeSet::new();
        for program in &config.programs {
            for counter in &program.counters {
                let chart = charts.chart(counter.chart.as_deref().unwrap()).unwrap();
                assert_eq!(chart.program, program.name);
                assert!(chart.counters.contains(&counter.name));
                // The rate is plan()'s for the chart's margin.
                let plan = plan(chart.margin, charts.confidence, 1_000_000).unwrap();
                assert_eq!(counter.rate, plan.sample_rate, "{}", counter.name);
                from_config.insert((chart.id.clone(), counter.name.clone()));
            }
        }
        let from_charts: BTreeSet<_> = charts
            .charts
            .iter()
            .flat_map(|c| c.counters.iter().map(|n| (c.id.clone(), n.clone())))
            .collect();
        assert_eq!(from_config, from_charts);
        let max_rate = config
            .programs
            .iter()
            .flat_map(|p| &p.counters)
            .map(|c| c.rate)
            .fold(0.0, f64::max);
        assert_eq!(config.sample_rate, max_rate);
        assert!(config.sample_rate < 1.0);
        // It is a valid config, byte for byte as it would be signed.
        let parsed = UploadConfig::parse(generated.to_json().as_bytes()).unwrap();
        assert_eq!(&parsed, config);
        check_served(&charts, &parsed).unwrap();
        // Few expected reports: collect everything.
        let small = generate(&charts, 100, 0, expires, None).unwrap();
        assert_eq!(small.config.sample_rate, 1.0);
        assert_eq!(small.config.version, 1);
    }

    const AGGREGATION_EXAMPLE: &str =
        include_str!("../../../config-schema/example-charts-aggregation.toml");

    /// The section a provisioning of these charts would write (a fixed task ID).
    fn provisioned(charts: &ChartsFile) -> AggregationConfig {
        AggregationConfig {
            task_id: "8BY0RzZMzxvA46_8ymhzycOB9krN-QIGYvg_RsByGec".into(),
            leader: "https://leader.example/".into(),
            ..charts.placeholder_section().unwrap()
        }
    }

    #[test]
    fn the_aggregation_example_validates_and_lays_out_what_its_charts_need() {
        assert_valid(AGGREGATION_EXAMPLE);
        let charts = ChartsFile::parse(AGGREGATION_EXAMPLE).unwrap();
        let layout = charts.layout().unwrap();
        layout.validate().unwrap();
        // Every counter of every chart, once; counts (8 bits) for outcomes and the histogram;
        // crashes crossed with the three rustc buckets.
        let rustc = layout.programs.iter().find(|p| p.name == "rustc").unwrap();
        assert_eq!(rustc.versions, ["1.93", "1.94", "1.95"]);
        assert_eq!(rustc.by_version, ["rustc/outcome:ice"]);
        assert!(
            rustc
                .counters
                .iter()
                .all(|c| c.count_bits == 8 && c.rate == 1.0)
        );
        assert_eq!(rustc.counters.len(), 10);
        let cargo = layout.programs.iter().find(|p| p.name == "cargo").unwrap();
        assert!(cargo.counters.iter().all(|c| c.count_bits == 0));
        assert_eq!(cargo.counters.len(), 8);
        // The plain example asks for no private aggregation.
        assert_eq!(ChartsFile::parse(EXAMPLE).unwrap().layout(), None);
        assert_eq!(
            section_path(
                std::path::Path::new("/etc/tally/charts.toml"),
                charts.aggregation.as_ref().unwrap()
            ),
            std::path::Path::new("/etc/tally/aggregation.json")
        );
    }

    #[test]
    fn generates_the_aggregation_section_only_for_the_charts_layout() {
        let charts = ChartsFile::parse(AGGREGATION_EXAMPLE).unwrap();
        let expires: Day = "2027-06-30".parse().unwrap();
        let section = provisioned(&charts);
        let generated = generate(&charts, 50_000, 2, expires, Some(section.clone())).unwrap();
        assert_eq!(generated.config.aggregation.as_ref(), Some(&section));
        let parsed = UploadConfig::parse(generated.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, generated.config);
        check_served(&charts, &parsed).unwrap();
        assert!(generated.explain().contains(&section.task_id));

        // Not provisioned yet; a section for a chart file without the table.
        let e = format!(
            "{:#}",
            generate(&charts, 50_000, 2, expires, None).unwrap_err()
        );
        assert!(e.contains("provision the task first"), "{e}");
        let plain = ChartsFile::parse(EXAMPLE).unwrap();
        assert!(generate(&plain, 50_000, 2, expires, Some(section.clone())).is_err());

        // A section provisioned for other charts (one counter more), other aggregators, another
        // batch size: each refused, asking for a new task.
        let grown = ChartsFile::parse(&AGGREGATION_EXAMPLE.replacen(
            "\"cargo/subcommand:{build,check,test,run,fmt,clippy,doc,other}\"",
            "\"cargo/subcommand:{build,check,test,run,fmt,clippy,doc,miri,other}\"",
            1,
        ))
        .unwrap();
        let mut other_helper = section.clone();
        other_helper.helper = "https://elsewhere.example/".into();
        let mut other_batch = section.clone();
        other_batch.min_batch_size = 10;
        for (what, charts, section) in [
            ("other counters", &grown, section.clone()),
            ("other aggregators", &charts, other_helper),
            ("another batch size", &charts, other_batch),
        ] {
            let e = format!(
                "{:#}",
                generate(charts, 50_000, 2, expires, Some(section)).unwrap_err()
            );
            assert!(e.contains("provision a new one"), "{what}: {e}");
        }
        // Serving: the served config and the chart file must agree on the section too.
        assert!(check_served(&grown, &parsed).is_err());
        assert!(check_served(&plain, &parsed).is_err());
        let plain_config = generate(&plain, 50_000, 2, expires, None).unwrap().config;
        let mut pretend = plain_config.clone();
        pretend.aggregation = Some(section);
        assert!(check_served(&plain, &pretend).is_err());
    }

    #[test]
    fn bad_aggregation_tables_get_errors_naming_the_table() {
        for (from, to, says) in [
            (
                "leader = \"https://leader.example/\"",
                "leader = \"http://leader.example/\"",
                "[aggregation]: aggregation leader URL",
            ),
            (
                "helper = \"https://helper.example.org/dap/\"",
                "helper = \"https://leader.example/\"",
                "same URL",
            ),
            (
                "time_precision = 86400",
                "time_precision = 7",
                "time_precision 7",
            ),
            (
                "min_batch_size = 100",
                "min_batch_size = 0",
                "min_batch_size",
            ),
            (
                "rustc = [\"1.93\"",
                "rustc = [\"other\", \"1.93\"",
                "implicit",
            ),
            ("section = ", "sektion = ", "unknown field"),
        ] {
            let text = AGGREGATION_EXAMPLE.replacen(from, to, 1);
            assert_ne!(text, AGGREGATION_EXAMPLE, "{from}");
            let e = format!("{:#}", ChartsFile::parse(&text).unwrap_err());
            assert!(e.contains(says), "{to}: {e}");
        }
    }

    #[test]
    fn refuses_a_served_config_from_another_chart_file() {
        let charts = ChartsFile::parse(EXAMPLE).unwrap();
        let expires: Day = "2027-06-30".parse().unwrap();
        let mut config = generate(&charts, 50_000, 1, expires, None).unwrap().config;
        config.programs[0].counters.push(CounterConfig {
            name: "cargo/extra".into(),
            rate: 1.0,
            chart: None,
        });
        let err = check_served(&charts, &config).unwrap_err().to_string();
        assert!(err.contains("cargo/extra"), "{err}");
        let mut config = generate(&charts, 50_000, 1, expires, None).unwrap().config;
        config.programs[0].counters.pop();
        assert!(check_served(&charts, &config).is_err());
    }

    #[test]
    fn bad_chart_files_get_errors_naming_the_chart() {
        let cases = [
            (
                "id = \"cargo-subcommands\"",
                "id = \"Cargo Subcommands\"",
                "id",
            ),
            ("margin = 0.02", "margin = 0.7", "margin"),
            (
                "proposal = \"https://",
                "proposal = \"ftp://",
                "not an http(s) link",
            ),
            (
                "counters = [\"cargo/subcommand:{",
                "counters = [\"cargo/subcommand:{,",
                "not a counter name",
            ),
        ];
        for (from, to, says) in cases {
            let text = EXAMPLE.replacen(from, to, 1);
            assert_ne!(text, EXAMPLE, "{from}");
            let err = format!("{:#}", ChartsFile::parse(&text).unwrap_err());
            assert!(err.contains(says), "{to}: {err}");
        }
        let twice = format!(
            "{EXAMPLE}\n[[chart]]\nid = \"cargo-subcommands\"\ntitle = \"t\"\ndescription = \"d\"\nproposal = \"https://x\"\nprogram = \"cargo\"\nversions = \">=1.70.0\"\ncounters = [\"cargo/invocations\"]\nkind = \"share-over-time\"\nmargin = 0.1\n"
        );
        assert!(format!("{:#}", ChartsFile::parse(&twice).unwrap_err()).contains("two charts"));
        let other_range = twice
            .replace(
                "id = \"cargo-subcommands\"\ntitle = \"t\"",
                "id = \"x\"\ntitle = \"t\"",
            )
            .replace(
                "versions = \">=1.70.0\"\ncounters = [\"cargo/invocations\"]",
                "versions = \">=1.80.0\"\ncounters = [\"cargo/invocations\"]",
            );
        let err = format!("{:#}", ChartsFile::parse(&other_range).unwrap_err());
        assert!(err.contains("one version range per program"), "{err}");
        assert!(ChartsFile::parse("not toml [").is_err());
    }
}
