//! `tally view`: the user's own counts, from their local files, drawn with the same charts as the
//! dashboard.
//!
//! The input is plain data ([`UserData`], in `user_data.rs`) so this module does no I/O: the CLI
//! reads the local reports and the current week's counter files and hands them over. Counts here are the user's
//! own events (not shares of reports), so the charts are bars of counts per week and lines of
//! counts over the weeks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use tally_protocol::Day;

use crate::html::{count_cell, escape, page};
use crate::svg::{HorizontalBars, LineChart, Point, Scale, Series, horizontal_bars, line_chart};
use crate::user_data::{UserData, UserWeek};

/// At most this many counters get a line in a program's over-the-weeks chart (the busiest).
const MAX_LINES: usize = 8;

/// A program's counts: week → counter → count, summed over versions, OS and arch.
type ByWeek<'a> = BTreeMap<Day, BTreeMap<&'a str, u64>>;

/// The `tally view` page.
pub fn user_view(data: &UserData) -> String {
    let mut weeks: Vec<&UserWeek> = data.weeks.iter().collect();
    weeks.sort_by_key(|w| w.week);

    let mut body = user_header(data);
    if weeks.is_empty() {
        body.push_str("<p class=\"empty\">Nothing counted yet.</p>\n");
        return page("tally view", &body);
    }
    let (merged, versions) = by_program(&weeks);
    body.push_str(&user_weeks_table(&weeks, &merged));
    body.push_str(&crate::user_compiles::section(
        &crate::user_compiles::summarize(&weeks),
    ));
    let x_labels: Vec<String> = weeks.iter().map(|w| w.week.to_string()).collect();
    for (program, by_week) in &merged {
        body.push_str(&program_section(
            program,
            by_week,
            versions.get(program),
            &weeks,
            &x_labels,
        ));
    }
    page("tally view", &body)
}

/// The page's header: where the data was read from and the mode.
fn user_header(data: &UserData) -> String {
    let mut body = String::new();
    body.push_str("<header><h1>tally: what tally holds about you</h1>");
    let _ = writeln!(
        body,
        "<p class=\"note\">Read from <code>{dir}</code>. Mode: <span data-mode>{mode}</span>. \
         These are the counts kept on this machine; <code>tally preview</code> shows the exact \
         bytes an upload would send.</p></header>",
        dir = escape(&data.data_dir),
        mode = escape(&data.mode),
    );
    body
}

/// Each program's counts by week, and the (version, OS, arch) it was seen as.
fn by_program<'a>(
    weeks: &[&'a UserWeek],
) -> (
    BTreeMap<&'a str, ByWeek<'a>>,
    BTreeMap<&'a str, BTreeSet<String>>,
) {
    let mut merged: BTreeMap<&str, ByWeek<'_>> = BTreeMap::new();
    let mut versions: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for week in weeks {
        for section in &week.programs {
            let counters = merged
                .entry(section.program.as_str())
                .or_default()
                .entry(week.week)
                .or_default();
            for (name, count) in &section.counters {
                let slot = counters.entry(name.as_str()).or_default();
                *slot = slot.saturating_add(*count);
            }
            versions
                .entry(section.program.as_str())
                .or_default()
                .insert(format!(
                    "{} {} {}",
                    section.version, section.os, section.arch
                ));
        }
    }
    (merged, versions)
}

/// The weeks, newest first: whether each has ended, and how many times each program ran.
fn user_weeks_table(weeks: &[&UserWeek], merged: &BTreeMap<&str, ByWeek<'_>>) -> String {
    let mut body = String::new();
    body.push_str("<h2>Weeks</h2><div class=\"table-wrap\"><table class=\"weeks\"><thead><tr><th>week</th><th>status</th>");
    for program in merged.keys() {
        let _ = write!(body, "<th class=\"num\">{}</th>", escape(program));
    }
    body.push_str("</tr></thead><tbody>");
    for week in weeks.iter().rev() {
        let status = if week.in_progress {
            "in progress"
        } else {
            "ended"
        };
        let _ = write!(
            body,
            "<tr data-week=\"{w}\"><td>{w}</td><td>{status}</td>",
            w = week.week
        );
        for (program, by_week) in merged {
            let invocations = by_week
                .get(&week.week)
                .and_then(|c| c.get(format!("{program}/invocations").as_str()));
            count_cell(&mut body, invocations.copied());
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table></div><p class=\"note\">Numbers in the table are how many times each program ran that week.</p>\n");
    body
}

/// One program's section: what it was seen as, its busiest counters over the weeks (with more
/// than one week), and each week's counts, newest first.
fn program_section(
    program: &str,
    by_week: &ByWeek<'_>,
    seen: Option<&BTreeSet<String>>,
    weeks: &[&UserWeek],
    x_labels: &[String],
) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<section class=\"program\" data-program=\"{p}\"><h2>{p}</h2>",
        p = escape(program)
    );
    if let Some(seen) = seen {
        let list: Vec<String> = seen.iter().map(|v| escape(v)).collect();
        let _ = write!(body, "<p class=\"note\">Seen as: {}</p>", list.join(", "));
    }
    body.push_str("<div class=\"grid\">");
    if weeks.len() > 1 {
        body.push_str(&busiest_counters(program, by_week, weeks, x_labels));
    }
    for week in weeks.iter().rev() {
        let Some(counters) = by_week.get(&week.week) else {
            continue;
        };
        let rows = counters
            .iter()
            .map(|(n, c)| ((*n).to_owned(), *c))
            .collect();
        let suffix = if week.in_progress {
            " (in progress)"
        } else {
            ""
        };
        body.push_str(&horizontal_bars(&HorizontalBars {
            kind: "user-week",
            title: format!("{program}, week of {}{suffix}", week.week),
            rows,
        }));
    }
    body.push_str("</div></section>\n");
    body
}

/// The program's [`MAX_LINES`] busiest counters (most counted over all the weeks), one line
/// each over the weeks.
fn busiest_counters(
    program: &str,
    by_week: &ByWeek<'_>,
    weeks: &[&UserWeek],
    x_labels: &[String],
) -> String {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for counters in by_week.values() {
        for (name, count) in counters {
            let slot = totals.entry(name).or_default();
            *slot = slot.saturating_add(*count);
        }
    }
    let mut busiest: Vec<(&str, u64)> = totals.into_iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let series = busiest
        .iter()
        .take(MAX_LINES)
        .map(|(name, _)| Series {
            name: (*name).to_owned(),
            label: (*name).to_owned(),
            points: weeks
                .iter()
                .map(|w| {
                    let count = by_week.get(&w.week).and_then(|c| c.get(name)).copied();
                    Some(Point {
                        value: count.unwrap_or(0) as f64,
                        band: None,
                        detail: String::new(),
                    })
                })
                .collect(),
        })
        .collect();
    line_chart(&LineChart {
        kind: "user-trend",
        title: format!("{program}: busiest counters over the weeks"),
        x_labels: x_labels.to_vec(),
        series,
        scale: Scale::Count,
    })
}
