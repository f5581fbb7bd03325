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
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex};

use crate::html::{escape, page, path_segment};
use crate::svg::{LineChart, Point, Scale, Series, StackedColumns, line_chart, stacked_columns};

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
    body.push_str("<header><h1>tally: what people use</h1>");
    let _ = writeln!(
        body,
        "<p class=\"note\">Reports are one installation-week each. {}</p></header>",
        threshold_note(index.threshold)
    );
    if weeks.is_empty() {
        body.push_str("<p class=\"empty\">No published data yet: no week has reports above the publication threshold.</p>\n");
        return page("tally dashboard", &body);
    }

    body.push_str("<h2>Programs</h2><nav class=\"programs\">");
    for program in &programs {
        let _ = write!(
            body,
            "<a class=\"program\" data-program=\"{name}\" href=\"programs/{href}\">{name}</a>",
            name = escape(program),
            href = path_segment(program),
        );
    }
    body.push_str("</nav>\n");

    let x_labels: Vec<String> = weeks.iter().map(|w| w.week.to_string()).collect();
    let mut series = vec![Series {
        name: "all reports".to_owned(),
        label: "all reports".to_owned(),
        points: weeks
            .iter()
            .map(|w| {
                Some(Point {
                    value: w.reports as f64,
                    band: None,
                    detail: String::new(),
                })
            })
            .collect(),
    }];
    for program in &programs {
        series.push(Series {
            name: (*program).to_owned(),
            label: (*program).to_owned(),
            points: weeks
                .iter()
                .map(|w| {
                    w.programs.get(*program).map(|n| Point {
                        value: *n as f64,
                        band: None,
                        detail: String::new(),
                    })
                })
                .collect(),
        });
    }
    body.push_str("<h2>Reports per week</h2><div class=\"grid\">");
    body.push_str(&line_chart(&LineChart {
        kind: "reports",
        title: "Reports per week, by program".to_owned(),
        x_labels,
        series,
        scale: Scale::Count,
    }));
    body.push_str("</div>\n");

    body.push_str("<h2>Latest weeks</h2><div class=\"table-wrap\"><table class=\"weeks\"><thead><tr><th>week (Monday)</th><th class=\"num\">reports</th>");
    for program in &programs {
        let _ = write!(body, "<th class=\"num\">{}</th>", escape(program));
    }
    body.push_str("</tr></thead><tbody>");
    for week in weeks.iter().rev().take(INDEX_TABLE_WEEKS) {
        let _ = write!(
            body,
            "<tr data-week=\"{w}\"><td>{w}</td><td class=\"num\" data-reports=\"{r}\">{r}</td>",
            w = week.week,
            r = week.reports
        );
        for program in &programs {
            match week.programs.get(*program) {
                Some(n) => {
                    let _ = write!(body, "<td class=\"num\">{n}</td>");
                }
                None => body.push_str("<td class=\"num muted\">–</td>"),
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table></div>\n");
    page("tally dashboard", &body)
}

/// A counter name split into its partition and bucket: `rustc/edition:2021` is bucket `2021` of
/// partition `rustc/edition`. Names without `:` stand alone.
pub fn partition_of(counter: &str) -> Option<(&str, &str)> {
    counter.split_once(':')
}

/// One program's page: per counter (or partition) its share of reports over the weeks with the
/// Wilson interval, then the splits by version, OS and arch.
pub fn program_page(program: &str, weeks: &[ProgramWeek]) -> String {
    let mut weeks: Vec<&ProgramWeek> = weeks.iter().collect();
    weeks.sort_by_key(|w| w.week);
    let x_labels: Vec<String> = weeks.iter().map(|w| w.week.to_string()).collect();
    let title = format!("{program}: tally dashboard");

    let mut body = String::new();
    let _ = write!(
        body,
        "<header><p><a href=\"../\">← all programs</a></p><h1 data-program=\"{p}\">{p}</h1>",
        p = escape(program)
    );
    let threshold = weeks.iter().map(|w| w.threshold).max().unwrap_or(0);
    let _ = writeln!(
        body,
        "<p class=\"note\">Each chart shows the share of this program's reports in which a counter \
         was above zero, with its 95% Wilson interval as a band. {}</p></header>",
        threshold_note(threshold)
    );
    if weeks.is_empty() {
        body.push_str("<p class=\"empty\">No published data for this program.</p>\n");
        return page(&title, &body);
    }

    body.push_str("<div class=\"table-wrap\"><table class=\"weeks\"><thead><tr><th>week (Monday)</th><th class=\"num\">reports</th><th class=\"num\">counters shown</th></tr></thead><tbody>");
    for week in weeks.iter().rev() {
        let _ = write!(
            body,
            "<tr data-week=\"{w}\"><td>{w}</td><td class=\"num\" data-reports=\"{r}\">{r}</td><td class=\"num\">{c}</td></tr>",
            w = week.week,
            r = week.reports,
            c = week.counters.len()
        );
    }
    body.push_str("</tbody></table></div>\n");

    // Group counters: a partition's buckets share one chart; other counters get one each.
    let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for week in &weeks {
        for counter in &week.counters {
            let group = partition_of(&counter.name).map_or(counter.name.as_str(), |(p, _)| p);
            groups
                .entry(group)
                .or_default()
                .insert(counter.name.as_str());
        }
    }
    let (partitions, singles): (Vec<_>, Vec<_>) = groups
        .iter()
        .partition(|(group, names)| names.iter().any(|n| n != *group));

    if !partitions.is_empty() {
        body.push_str("<h2>Partitions</h2><div class=\"grid\">");
        for (group, names) in &partitions {
            let series = names
                .iter()
                .map(|name| counter_series(name, &weeks))
                .collect();
            body.push_str(&line_chart(&LineChart {
                kind: "partition",
                title: format!("{group}: share of reports per bucket"),
                x_labels: x_labels.clone(),
                series,
                scale: Scale::Share,
            }));
        }
        body.push_str("</div>\n");
    }
    if !singles.is_empty() {
        body.push_str("<h2>Counters</h2><div class=\"grid\">");
        for (name, _) in &singles {
            body.push_str(&line_chart(&LineChart {
                kind: "counter",
                title: format!("{name}: share of reports"),
                x_labels: x_labels.clone(),
                series: vec![counter_series(name, &weeks)],
                scale: Scale::Share,
            }));
        }
        body.push_str("</div>\n");
    }

    body.push_str("<h2>Reports by version, OS and arch</h2><div class=\"grid\">");
    type SplitOf = fn(&ProgramWeek) -> &BTreeMap<String, u64>;
    let splits: [(&str, SplitOf); 3] = [
        ("version", |w| &w.versions),
        ("os", |w| &w.os),
        ("arch", |w| &w.arch),
    ];
    for (split, of) in splits {
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
        body.push_str(&stacked_columns(&StackedColumns {
            kind: split_kind(split),
            title: format!("Reports by {split}"),
            x_labels: x_labels.clone(),
            stacks,
        }));
    }
    body.push_str("</div>\n");
    page(&title, &body)
}

fn split_kind(split: &str) -> &'static str {
    match split {
        "version" => "split-version",
        "os" => "split-os",
        _ => "split-arch",
    }
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

/// One counter's share over the weeks; weeks where it was withheld or absent are gaps.
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
                .map(|c| Point {
                    value: c.share,
                    band: Some((c.low, c.high)),
                    detail: format!(
                        "in {} of {} reports, {} events",
                        c.reports_with, week.reports, c.total
                    ),
                })
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
