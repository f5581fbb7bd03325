//! The collector's dashboard: the index page and one page per program, from the published
//! aggregates (`tally_protocol::aggregate`).
//!
//! These functions only draw what they are given: the server passes them aggregates that already
//! exclude everything under the publication threshold, and nothing here can add data back.
//! Program pages are linked from the index as `programs/{program}` (one percent-encoded path
//! segment, relative to the index), so the server serves the index at `/` and program pages at
//! `/programs/{program}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use tally_protocol::Day;
use tally_protocol::aggregate::{CounterAggregate, ProgramWeek, WeekSummary, WeeksIndex};

use crate::buckets::{bucket_order, is_histogram};
use crate::html::{count_cell, escape, page, path_segment};
use crate::svg::{
    IntervalBars, IntervalRow, LineChart, Point, Scale, Series, StackedColumns, interval_bars,
    line_chart, stacked_columns,
};

/// At most this many weeks are listed in the index's table (the chart shows them all).
const INDEX_TABLE_WEEKS: usize = 12;

/// The index page: programs, the latest weeks and how many reports each had.
pub fn dashboard_index(index: &WeeksIndex) -> String {
    let mut weeks = index.weeks.clone();
    weeks.sort_by_key(|w| w.week);
    let programs: BTreeSet<&str> = weeks
        .iter()
        .flat_map(|w| w.programs.keys().map(String::as_str))
        .collect();

    let mut body = String::new();
    body.push_str("<header><p><a href=\"config\">what is collected, and why</a> · <a href=\"data/\">open data</a></p><h1>tally: what people use</h1>");
    let _ = writeln!(
        body,
        "<p class=\"note\">Reports are one installation-week each. {}</p></header>",
        threshold_note(index.threshold)
    );
    if weeks.is_empty() {
        body.push_str("<p class=\"empty\">No published data yet: no week has reports above the publication threshold.</p>\n");
        return page("tally dashboard", &body);
    }
    body.push_str(&programs_nav(&programs));
    body.push_str(&reports_per_week(&weeks, &programs));
    body.push_str(&index_weeks_table(&weeks, &programs));
    page("tally dashboard", &body)
}

/// Links to each program's page.
fn programs_nav(programs: &BTreeSet<&str>) -> String {
    let mut body = String::new();
    body.push_str("<h2>Programs</h2><nav class=\"programs\">");
    for program in programs {
        let _ = write!(
            body,
            "<a class=\"program\" data-program=\"{name}\" href=\"programs/{href}\">{name}</a>",
            name = escape(program),
            href = path_segment(program),
        );
    }
    body.push_str("</nav>\n");
    body
}

/// Reports per week (`weeks` oldest first), all of them and each program's, as lines.
fn reports_per_week(weeks: &[WeekSummary], programs: &BTreeSet<&str>) -> String {
    let count_series = |name: &str, counts: Vec<Option<u64>>| Series {
        name: name.to_owned(),
        label: name.to_owned(),
        points: counts
            .into_iter()
            .map(|count| {
                count.map(|n| Point {
                    value: n as f64,
                    band: None,
                    detail: String::new(),
                })
            })
            .collect(),
    };
    let mut series = vec![count_series(
        "all reports",
        weeks.iter().map(|w| Some(w.reports)).collect(),
    )];
    for program in programs {
        series.push(count_series(
            program,
            weeks
                .iter()
                .map(|w| w.programs.get(*program).copied())
                .collect(),
        ));
    }
    let mut body = String::new();
    body.push_str("<h2>Reports per week</h2><div class=\"grid\">");
    body.push_str(&line_chart(&LineChart {
        kind: "reports",
        title: "Reports per week, by program".to_owned(),
        x_labels: weeks.iter().map(|w| w.week.to_string()).collect(),
        series,
        scale: Scale::Count,
    }));
    body.push_str("</div>\n");
    body
}

/// The latest [`INDEX_TABLE_WEEKS`] weeks (`weeks` oldest first), newest first: reports, and
/// each program's.
fn index_weeks_table(weeks: &[WeekSummary], programs: &BTreeSet<&str>) -> String {
    let mut body = String::new();
    body.push_str("<h2>Latest weeks</h2><div class=\"table-wrap\"><table class=\"weeks\"><thead><tr><th>week (Monday)</th><th class=\"num\">reports</th>");
    for program in programs {
        let _ = write!(body, "<th class=\"num\">{}</th>", escape(program));
    }
    body.push_str("</tr></thead><tbody>");
    for week in weeks.iter().rev().take(INDEX_TABLE_WEEKS) {
        week_row_start(&mut body, week.week, week.reports);
        for program in programs {
            count_cell(&mut body, week.programs.get(*program).copied());
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table></div>\n");
    body
}

/// A counter name split into its partition and bucket: `rustc/edition:2021` is bucket `2021` of
/// partition `rustc/edition`. Names without `:` stand alone.
pub fn partition_of(counter: &str) -> Option<(&str, &str)> {
    counter.split_once(':')
}

/// At most this many buckets of a partition get a bar in its latest-week chart.
const MAX_BARS: usize = 15;
/// At most this many buckets of a partition get a line over the weeks (the largest).
const MAX_LINES: usize = 8;
/// At most this many weeks are listed in a program page's table (the charts show them all).
const PROGRAM_TABLE_WEEKS: usize = 12;
/// At most this many versions in the crashes-per-version chart (the newest).
const MAX_VERSIONS: usize = 12;

/// One program's page: the latest week of each partition as bars with their intervals; each
/// partition's and counter's share of reports over the weeks with the Wilson interval;
/// histograms of bucketed counters (`…/time:<1s`), ordered by bucket; for compilers, how
/// compiles fare (crashes per version, the outcome mix); the most frequent error codes and
/// lints; then the splits by version, OS and arch. `threshold` is the publication threshold the
/// weeks were published under, stated on the page (also when nothing is published, where the
/// weeks cannot tell it).
pub fn program_page(program: &str, weeks: &[ProgramWeek], threshold: u64) -> String {
    let mut weeks: Vec<&ProgramWeek> = weeks.iter().collect();
    weeks.sort_by_key(|w| w.week);
    let title = format!("{program}: tally dashboard");
    let mut body = program_header(program, threshold);
    let Some(latest) = weeks.last().copied() else {
        body.push_str("<p class=\"empty\">No published data for this program.</p>\n");
        return page(&title, &body);
    };
    let x_labels: Vec<String> = weeks.iter().map(|w| w.week.to_string()).collect();
    let groups = CounterGroups::of(&weeks);
    let page_weeks = PageWeeks {
        all: &weeks,
        latest,
        x_labels: &x_labels,
    };
    body.push_str(&program_weeks_table(&weeks));
    body.push_str(&grid_section(
        "<h2 id=\"outcomes\">How compiles fare</h2><p class=\"note\">How each compile ended (ok, error, ice: the compiler crashed, signal: killed, other). Crashes per version: the share of a version's reports with at least one crash.</p>",
        &groups.outcomes,
        |(group, names)| outcome_charts(group, names, &page_weeks),
    ));
    body.push_str(&grid_section(
        "<h2 id=\"histograms\">Histograms</h2><p class=\"note\">Bucketed counters, in bucket order: the events (compiles) in each bucket in the latest week, and each bucket's share of the events week by week.</p>",
        &groups.histograms,
        |(group, names)| histogram_charts(group, names, &page_weeks),
    ));
    body.push_str(&grid_section(
        "<h2 id=\"partitions\">Partitions</h2>",
        &groups.plain,
        |(group, names)| {
            latest_bars(group, names, latest)
                + &partition_lines("partition", group, names, &page_weeks)
        },
    ));
    body.push_str(&grid_section(
        "<h2>Counters</h2>",
        &groups.singles,
        |name| {
            line_chart(&LineChart {
                kind: "counter",
                title: format!("{name}: share of reports"),
                x_labels: x_labels.clone(),
                series: vec![counter_series(name, &weeks)],
                scale: Scale::Share,
            })
        },
    ));
    body.push_str(&grid_section(
        "<h2>Reports by version, OS and arch</h2>",
        &SPLITS,
        |(split, kind, of)| split_columns(split, kind, *of, &weeks, &x_labels),
    ));
    page(&title, &body)
}

/// A program page's header: links, the program's name, what the shares mean and the threshold.
fn program_header(program: &str, threshold: u64) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><p><a href=\"../\">← all programs</a> · <a href=\"../config\">what is collected, and why</a> · <a href=\"../data/\">open data</a></p><h1 data-program=\"{p}\">{p}</h1>",
        p = escape(program)
    );
    let _ = writeln!(
        body,
        "<p class=\"note\">Shares are of this program's reports (one installation-week each) in \
         which a counter was above zero, with their 95% Wilson interval (bars' whiskers, lines' \
         bands). {}</p></header>",
        threshold_note(threshold)
    );
    body
}

/// The first cells of a weeks table's row: the week (its Monday) and its reports.
fn week_row_start(body: &mut String, week: Day, reports: u64) {
    let _ = write!(
        body,
        "<tr data-week=\"{week}\"><td>{week}</td><td class=\"num\" data-reports=\"{reports}\">{reports}</td>"
    );
}

/// The latest [`PROGRAM_TABLE_WEEKS`] weeks (`weeks` oldest first), newest first: reports and
/// counters shown.
fn program_weeks_table(weeks: &[&ProgramWeek]) -> String {
    let mut body = String::new();
    body.push_str("<div class=\"table-wrap\"><table class=\"weeks\"><thead><tr><th>week (Monday)</th><th class=\"num\">reports</th><th class=\"num\">counters shown</th></tr></thead><tbody>");
    for week in weeks.iter().rev().take(PROGRAM_TABLE_WEEKS) {
        week_row_start(&mut body, week.week, week.reports);
        let _ = write!(body, "<td class=\"num\">{}</td></tr>", week.counters.len());
    }
    body.push_str("</tbody></table></div>\n");
    if weeks.len() > PROGRAM_TABLE_WEEKS {
        let _ = writeln!(
            body,
            "<p class=\"note\">The latest {PROGRAM_TABLE_WEEKS} of {} weeks; the charts show them all.</p>",
            weeks.len()
        );
    }
    body
}

/// A group of counters charted together: a partition's name and its buckets' counter names.
type Group<'a> = (&'a str, BTreeSet<&'a str>);

/// A program's counters, grouped as its page charts them: a partition's buckets share one
/// chart; other counters get one each.
struct CounterGroups<'a> {
    /// Compile outcomes (`<driver>/outcome`): the compiler's own first, then other drivers'
    /// (clippy).
    outcomes: Vec<Group<'a>>,
    /// Bucketed counters (`…/time:<1s`).
    histograms: Vec<Group<'a>>,
    /// Every other partition.
    plain: Vec<Group<'a>>,
    /// Counters of no partition.
    singles: Vec<&'a str>,
}

impl<'a> CounterGroups<'a> {
    fn of(weeks: &[&'a ProgramWeek]) -> CounterGroups<'a> {
        let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for week in weeks {
            for counter in &week.counters {
                let group = partition_of(&counter.name).map_or(counter.name.as_str(), |(p, _)| p);
                groups
                    .entry(group)
                    .or_default()
                    .insert(counter.name.as_str());
            }
        }
        let (partitions, singles): (Vec<_>, Vec<_>) = groups
            .into_iter()
            .partition(|(group, names)| names.iter().any(|n| n != group));
        let (mut outcomes, rest): (Vec<_>, Vec<_>) = partitions
            .into_iter()
            .partition(|(group, _)| group.ends_with("/outcome"));
        outcomes.sort_by_key(|(group, _)| (*group != "rustc/outcome", *group));
        let (histograms, plain): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|(_, names)| is_histogram(names.iter().copied()));
        CounterGroups {
            outcomes,
            histograms,
            plain,
            singles: singles.into_iter().map(|(name, _)| name).collect(),
        }
    }
}

/// A section of a program page: `heading` (HTML), then the charts of each of `groups` in a
/// grid. Empty without groups.
fn grid_section<T>(heading: &str, groups: &[T], charts: impl Fn(&T) -> String) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let mut body = String::new();
    body.push_str(heading);
    body.push_str("<div class=\"grid\">");
    for group in groups {
        body.push_str(&charts(group));
    }
    body.push_str("</div>\n");
    body
}

/// The weeks a program page charts: all of them oldest first, the latest, and their labels on
/// the x axis.
struct PageWeeks<'a> {
    all: &'a [&'a ProgramWeek],
    latest: &'a ProgramWeek,
    x_labels: &'a [String],
}

/// How one driver's compiles fare: crashes per version and the outcome mix in the latest week,
/// the mix week by week, and each outcome's share of reports.
fn outcome_charts(group: &str, names: &BTreeSet<&str>, weeks: &PageWeeks<'_>) -> String {
    let mut body = crashes_by_version(group, weeks.latest);
    body.push_str(&outcome_mix(group, names, weeks.latest));
    let outcomes: Vec<&str> = names.iter().copied().collect();
    body.push_str(&event_shares_chart(
        "outcome-mix-weeks",
        format!("{group}: share of compiles by outcome, per week"),
        group,
        &outcomes,
        weeks,
    ));
    body.push_str(&partition_lines("outcome-partition", group, names, weeks));
    body
}

/// One histogram in bucket order: the latest week's events per bucket, and each bucket's share
/// of the events week by week.
fn histogram_charts(group: &str, names: &BTreeSet<&str>, weeks: &PageWeeks<'_>) -> String {
    let latest = weeks.latest;
    let mut ordered: Vec<&str> = names.iter().copied().collect();
    ordered.sort_by(|a, b| bucket_order(a, b));
    let label = |name: &str| partition_of(name).map_or(name, |(_, b)| b).to_owned();
    let mut body = stacked_columns(&StackedColumns {
        kind: "histogram",
        title: format!("{group}, week of {}: events per bucket", latest.week),
        x_labels: ordered.iter().map(|n| label(n)).collect(),
        stacks: vec![(
            "events".to_owned(),
            ordered
                .iter()
                .map(|name| {
                    latest
                        .counters
                        .iter()
                        .find(|c| c.name == *name)
                        .and_then(|c| c.total)
                        .unwrap_or(0)
                })
                .collect(),
        )],
    });
    body.push_str(&event_shares_chart(
        "histogram-weeks",
        format!("{group}: share of events per bucket, per week"),
        group,
        &ordered,
        weeks,
    ));
    body
}

/// Each of `names`' share of its group's events week by week, one line each, in their order.
fn event_shares_chart(
    kind: &'static str,
    title: String,
    group: &str,
    names: &[&str],
    weeks: &PageWeeks<'_>,
) -> String {
    line_chart(&LineChart {
        kind,
        title,
        x_labels: weeks.x_labels.to_vec(),
        series: names
            .iter()
            .map(|name| event_share_series(group, name, weeks.all))
            .collect(),
        scale: Scale::Share,
    })
}

/// Where a split of a week's reports is: by version, by OS, by arch.
type SplitOf = fn(&ProgramWeek) -> &BTreeMap<String, u64>;

/// The splits a program page draws, in order: name, chart kind, where it is.
const SPLITS: [(&str, &str, SplitOf); 3] = [
    ("version", "split-version", |w| &w.versions),
    ("os", "split-os", |w| &w.os),
    ("arch", "split-arch", |w| &w.arch),
];

/// Reports by one split (version, OS or arch), week by week, as stacked columns.
fn split_columns(
    split: &str,
    kind: &'static str,
    of: SplitOf,
    weeks: &[&ProgramWeek],
    x_labels: &[String],
) -> String {
    let buckets: BTreeSet<&str> = weeks
        .iter()
        .flat_map(|w| of(w).keys().map(String::as_str))
        .collect();
    let stacks = buckets
        .iter()
        .map(|bucket| {
            let values = weeks
                .iter()
                .map(|w| of(w).get(*bucket).copied().unwrap_or(0))
                .collect();
            ((*bucket).to_owned(), values)
        })
        .collect();
    stacked_columns(&StackedColumns {
        kind,
        title: format!("Reports by {split}"),
        x_labels: x_labels.to_vec(),
        stacks,
    })
}

/// The latest week of a partition: one bar per bucket (the largest [`MAX_BARS`]), by share,
/// each with its interval. Error codes and lints are titled as what they are.
fn latest_bars(group: &str, names: &BTreeSet<&str>, latest: &ProgramWeek) -> String {
    let mut rows: Vec<IntervalRow> = latest
        .counters
        .iter()
        .filter(|c| names.contains(c.name.as_str()))
        .map(|c| {
            let Point {
                value,
                band,
                detail,
            } = share_point(c, latest.reports);
            IntervalRow {
                name: c.name.clone(),
                label: partition_of(&c.name)
                    .map_or(c.name.as_str(), |(_, b)| b)
                    .to_owned(),
                value,
                band,
                detail,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.name.cmp(&b.name))
    });
    let more = rows.len().saturating_sub(MAX_BARS);
    rows.truncate(MAX_BARS);
    let what = if group.ends_with("/error") {
        format!("Most frequent error codes ({group})")
    } else if group.ends_with("/lint") {
        format!("Most frequent lints ({group})")
    } else {
        group.to_owned()
    };
    let mut note = String::new();
    if more > 0 {
        note = format!("{more} smaller buckets not drawn.");
    }
    if rows.is_empty() {
        note = "Nothing published in the latest week.".to_owned();
    }
    interval_bars(&IntervalBars {
        kind: "latest",
        title: format!("{what}, week of {}: share of reports", latest.week),
        rows,
        note,
    })
}

/// A partition over the weeks: one line per bucket (the [`MAX_LINES`] largest), by name, as a
/// chart of `kind` (`partition`, or `outcome-partition` for outcomes, which have their own
/// colours: `svg::outcome_color`).
fn partition_lines(
    kind: &'static str,
    group: &str,
    names: &BTreeSet<&str>,
    weeks: &PageWeeks<'_>,
) -> String {
    let largest = |name: &str| {
        weeks
            .all
            .iter()
            .flat_map(|w| w.counters.iter().filter(|c| c.name == name))
            .map(|c| c.share)
            .fold(0.0, f64::max)
    };
    let mut chosen: Vec<&str> = names.iter().copied().collect();
    chosen.sort_by(|a, b| largest(b).total_cmp(&largest(a)).then_with(|| a.cmp(b)));
    let more = chosen.len().saturating_sub(MAX_LINES);
    chosen.truncate(MAX_LINES);
    chosen.sort();
    let mut title = format!("{group}: share of reports per bucket");
    if more > 0 {
        let _ = write!(title, " (the {MAX_LINES} largest of {})", names.len());
    }
    line_chart(&LineChart {
        kind,
        title,
        x_labels: weeks.x_labels.to_vec(),
        series: chosen
            .iter()
            .map(|name| counter_series(name, weeks.all))
            .collect(),
        scale: Scale::Share,
    })
}

/// `<driver>/outcome:ice` per version in the latest week: the share of each version's reports
/// with a crash, with its interval, newest versions first.
fn crashes_by_version(group: &str, latest: &ProgramWeek) -> String {
    let ice = format!("{group}:ice");
    let mut rows: Vec<(Vec<u64>, IntervalRow)> = latest
        .by_version
        .iter()
        .filter_map(|(version, counters)| {
            let c = counters.iter().find(|c| c.name == ice)?;
            let of = latest.versions.get(version).copied().unwrap_or(0);
            Some((
                version_key(version),
                IntervalRow {
                    name: version.clone(),
                    label: version.clone(),
                    value: c.share,
                    band: Some((c.low, c.high)),
                    detail: format!(
                        "in {} of {of} reports of this version, {}",
                        c.reports_with,
                        events(c, "crashes")
                    ),
                },
            ))
        })
        .collect();
    if rows.is_empty() {
        // No version published a crash this week: nothing to compare.
        return String::new();
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    rows.truncate(MAX_VERSIONS);
    let driver = group.trim_end_matches("/outcome");
    interval_bars(&IntervalBars {
        kind: "ice-by-version",
        title: format!(
            "{driver}: share of reports with a compiler crash (ICE), by version, week of {}",
            latest.week
        ),
        rows: rows.into_iter().map(|(_, row)| row).collect(),
        note: "Versions with no crash, or with too few reports to publish, have no bar.".to_owned(),
    })
}

/// The outcome mix of the latest week: each outcome's share of all compiles (events).
fn outcome_mix(group: &str, names: &BTreeSet<&str>, latest: &ProgramWeek) -> String {
    let counters: Vec<_> = latest
        .counters
        .iter()
        .filter(|c| names.contains(c.name.as_str()))
        .collect();
    let all: u64 = counters.iter().filter_map(|c| c.total).sum();
    let rows = counters
        .iter()
        .map(|c| IntervalRow {
            name: c.name.clone(),
            label: partition_of(&c.name)
                .map_or(c.name.as_str(), |(_, b)| b)
                .to_owned(),
            value: if all == 0 {
                0.0
            } else {
                c.total.unwrap_or(0) as f64 / all as f64
            },
            band: None,
            detail: match c.total {
                Some(total) => format!("{total} of {all} compiles"),
                None => "compiles not measured".to_owned(),
            },
        })
        .collect();
    interval_bars(&IntervalBars {
        kind: "outcome-mix",
        title: format!(
            "{group}, week of {}: share of compiles by outcome",
            latest.week
        ),
        rows,
        note: "Of the compiles in the published outcomes.".to_owned(),
    })
}

/// A bucket's share of its group's events (summed counts) week by week: for outcomes and
/// histograms, where the unit is the compile, not the report.
fn event_share_series(group: &str, name: &str, weeks: &[&ProgramWeek]) -> Series {
    let prefix = format!("{group}:");
    let points = weeks
        .iter()
        .map(|week| {
            let all: u64 = week
                .counters
                .iter()
                .filter(|c| c.name.starts_with(&prefix))
                .filter_map(|c| c.total)
                .sum();
            let counter = week.counters.iter().find(|c| c.name == name)?;
            let total = counter.total?;
            (all > 0).then(|| Point {
                value: total as f64 / all as f64,
                band: None,
                detail: format!("{total} of {all} events"),
            })
        })
        .collect();
    Series {
        name: name.to_owned(),
        label: partition_of(name).map_or(name, |(_, b)| b).to_owned(),
        points,
    }
}

/// Orders versions numerically (`1.100.0` after `1.95.0`; `go1.22.1` by its numbers).
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// What the publication threshold means, in words, with the number in a `data-threshold`
/// attribute for tests.
fn threshold_note(threshold: u64) -> String {
    if threshold <= 1 {
        format!(
            "Publication threshold <span data-threshold=\"{threshold}\">{threshold}</span>: \
             everything is shown, even what a single report holds (fit for a demo, not for real users)."
        )
    } else {
        format!(
            "Anything seen in fewer than <span data-threshold=\"{threshold}\">{threshold}</span> \
             reports is withheld from every page."
        )
    }
}

/// A counter's share of a week's `reports`, with its interval and, for the tooltip, how many
/// reports and events it stands for.
fn share_point(c: &CounterAggregate, reports: u64) -> Point {
    Point {
        value: c.share,
        band: Some((c.low, c.high)),
        detail: format!(
            "in {} of {reports} reports, {}",
            c.reports_with,
            events(c, "events")
        ),
    }
}

/// A tooltip's count of `unit` for counter `c`: its total, or that the total was not measured
/// (a presence-only counter of a week collected by private aggregation).
fn events(c: &CounterAggregate, unit: &str) -> String {
    match c.total {
        Some(total) => format!("{total} {unit}"),
        None => format!("{unit} not measured"),
    }
}

/// One counter's share of reports over the weeks; weeks where it was withheld or absent are
/// gaps.
fn counter_series(name: &str, weeks: &[&ProgramWeek]) -> Series {
    let label = partition_of(name)
        .map_or(name, |(_, bucket)| bucket)
        .to_owned();
    let points = weeks
        .iter()
        .map(|week| {
            week.counters
                .iter()
                .find(|c| c.name == name)
                .map(|c| share_point(c, week.reports))
        })
        .collect();
    Series {
        name: name.to_owned(),
        label,
        points,
    }
}

/// The weeks to fetch for a program page: the latest `count` weeks of the index that have the
/// program, newest last.
pub fn weeks_with_program(index: &WeeksIndex, program: &str, count: usize) -> Vec<Day> {
    let mut weeks: Vec<Day> = index
        .weeks
        .iter()
        .filter(|w| w.programs.contains_key(program))
        .map(|w| w.week)
        .collect();
    weeks.sort();
    let skip = weeks.len().saturating_sub(count);
    weeks.split_off(skip)
}
