//! The public `/config` page: every counter the served config collects, grouped by the chart it
//! is collected for, with the chart's title, question, proposal, rate and versions, and how long
//! raw reports are kept.
//!
//! The counters, rates and versions come from the served (signed) config itself, so the page
//! cannot list less than what clients are asked for; titles, descriptions and proposals come
//! from the chart config the served config was generated from (`serve --charts`, checked by
//! `charts_config::check_served` at start-up). A counter the config names without a chart is
//! listed under "Counters without a chart", never left out.

use std::fmt::Write as _;

use tally_charts::html::{escape, page};
use tally_protocol::UploadConfig;
use tally_protocol::config::expand_pattern;

use crate::charts_config::ChartsFile;

/// What the public pages need beyond the published aggregates and the server's state: the chart
/// config, and whether the store's reports are simulated.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// The chart config the served config was generated from, if the server was given one.
    pub charts: Option<ChartsFile>,
    /// Set when the store holds simulated reports (`tally demo`): said on every page.
    pub simulated: Option<String>,
}

impl Site {
    /// The banner every page shows when the data is simulated (HTML).
    pub fn banner(&self) -> String {
        match &self.simulated {
            Some(how) => format!(
                "<p class=\"simulated\" data-simulated>SIMULATED DATA: {} Nothing here comes from real installations.</p>",
                escape(how.trim())
            ),
            None => String::new(),
        }
    }
}

/// One group of the page: a chart (or the chartless counters) and its counters.
struct Group<'a> {
    /// The chart's id, or `None` for the counters the config names without a chart.
    chart: Option<&'a str>,
    /// (program, versions, counter pattern, rate)
    counters: Vec<(&'a str, &'a str, &'a str, f64)>,
}

/// The `/config` page for the served `config`.
pub fn render(site: &Site, config: &UploadConfig, threshold: u64, retention_weeks: u32) -> String {
    let groups = chart_groups(site, config);
    let mut body = header(site, config, threshold, retention_weeks);
    let counters_total: usize = groups
        .iter()
        .flat_map(|g| g.counters.iter())
        .map(|(_, _, pattern, _)| expand_pattern(pattern).map_or(0, |n| n.len()))
        .sum();
    let _ = write!(
        body,
        "<p>{} charts, <span data-counters-total=\"{counters_total}\">{counters_total}</span> counters.</p>",
        groups.iter().filter(|g| g.chart.is_some()).count()
    );
    for group in &groups {
        body.push_str(&group_section(site, group));
    }
    page("tally: what this collector collects", &body)
}

/// The config's counters grouped by chart: charts in the chart file's order, then any the file
/// does not know, then the chartless counters; within a group, in the config's order.
fn chart_groups<'a>(site: &Site, config: &'a UploadConfig) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    for program in &config.programs {
        for counter in &program.counters {
            let chart = counter.chart.as_deref();
            let at = match groups.iter().position(|g| g.chart == chart) {
                Some(at) => at,
                None => {
                    groups.push(Group {
                        chart,
                        counters: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            groups[at].counters.push((
                &program.name,
                &program.versions,
                &counter.name,
                counter.rate,
            ));
        }
    }
    if let Some(charts) = &site.charts {
        groups.sort_by_key(|group| match group.chart {
            Some(id) => (
                0,
                charts
                    .charts
                    .iter()
                    .position(|c| c.id == id)
                    .unwrap_or(usize::MAX),
            ),
            None => (1, 0),
        });
    } else {
        groups.sort_by_key(|group| group.chart.is_none());
    }
    groups
}

/// The page's header: links, the banner, what the config asks of clients, retention and the
/// publication threshold.
fn header(site: &Site, config: &UploadConfig, threshold: u64, retention_weeks: u32) -> String {
    let mut body = String::new();
    body.push_str("<header><p><a href=\"./\">← dashboard</a> · <a href=\"data/\">open data</a></p><h1>What this collector collects, and why</h1>");
    body.push_str(&site.banner());
    let _ = write!(
        body,
        "<p class=\"note\">This page is generated from the same chart config as the upload config \
         clients verify and follow: <a href=\"config.json\">config.json</a> \
         (<a href=\"config.json.minisig\">signature</a>). Config version \
         <span data-config-version=\"{version}\">{version}</span>, valid until {expires}. A client \
         sends a report at all with probability <span data-sample-rate=\"{sample}\">{sample}</span> \
         (its random <code>x</code> at most the sample rate), and each counter only if <code>x</code> \
         is at most the counter's rate. Reports are wanted from {os} on {arch}.</p>",
        version = config.version,
        expires = config.expires,
        sample = config.sample_rate,
        os = escape(&config.os.join(", ")),
        arch = escape(&config.arch.join(", ")),
    );
    let _ = write!(
        body,
        "<p class=\"note\" data-retention-weeks=\"{weeks}\">Retention: raw reports are deleted \
         {weeks} weeks after their week is merged; the merged weekly aggregates are kept. \
         Publication: anything seen in fewer than {threshold} reports is withheld from every page \
         and download.</p></header>",
        weeks = retention_weeks,
    );
    body
}

/// One group's section: the chart's title, description and proposal (or what is known without
/// the chart config), then every counter with its program, versions and rate.
fn group_section(site: &Site, group: &Group<'_>) -> String {
    let mut body = String::new();
    let chart = group.chart.and_then(|id| site.charts.as_ref()?.chart(id));
    match (group.chart, chart) {
        (Some(id), Some(chart)) => {
            let _ = write!(
                body,
                "<section class=\"chart-config\" id=\"{id}\" data-chart-id=\"{id}\"><h2>{title}</h2>\
                 <p>{description}</p><p class=\"note\">Proposal: <a href=\"{proposal}\" rel=\"nofollow\">{proposal}</a> · \
                 {kind} · wanted margin ±{margin} points · {program} {versions}</p>",
                id = escape(id),
                title = escape(&chart.title),
                description = escape(&chart.description),
                proposal = escape(&chart.proposal),
                kind = chart.kind.label(),
                margin = chart.margin * 100.0,
                program = escape(&chart.program),
                versions = escape(&chart.versions),
            );
        }
        (Some(id), None) => {
            let _ = write!(
                body,
                "<section class=\"chart-config\" id=\"{id}\" data-chart-id=\"{id}\"><h2>Chart {id}</h2>\
                 <p class=\"note\">This server was started without its chart config, so only the chart's id is known.</p>",
                id = escape(id)
            );
        }
        (None, _) => body.push_str(
            "<section class=\"chart-config\" data-chart-id=\"\"><h2>Counters without a chart</h2>\
             <p class=\"note\">The served config names these without saying which chart needs them.</p>",
        ),
    }
    body.push_str("<div class=\"table-wrap\"><table class=\"counters\"><thead><tr><th>counter</th><th>program</th><th>versions</th><th class=\"num\">rate</th></tr></thead><tbody>");
    for (program, versions, pattern, rate) in &group.counters {
        for name in expand_pattern(pattern).unwrap_or_default() {
            let _ = write!(
                body,
                "<tr data-counter=\"{n}\" data-rate=\"{rate}\"><td><code>{n}</code></td><td>{p}</td><td>{v}</td><td class=\"num\">{rate}</td></tr>",
                n = escape(&name),
                p = escape(program),
                v = escape(versions),
            );
        }
    }
    body.push_str("</tbody></table></div></section>\n");
    body
}
