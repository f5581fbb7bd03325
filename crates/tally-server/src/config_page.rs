//! The public `/config` page: every counter the served config collects, grouped by the chart it
//! is collected for, with the chart's title, question, proposal, rate and versions, and how long
//! raw reports are kept.
//!
//! The counters, rates and versions come from the served (signed) config itself, so the page
//! cannot list less than what clients are asked for; titles, descriptions and proposals come
//! from the chart config the served config was generated from (`serve --charts`, checked by
//! `charts_config::check_served` at start-up). A counter the config names without a chart is
//! listed under "Counters without a chart", never left out.

use std::collections::BTreeMap;
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
    /// (program, versions, counter pattern, rate)
    counters: Vec<(&'a str, &'a str, &'a str, f64)>,
}

/// The `/config` page for the served `config`.
pub fn render(site: &Site, config: &UploadConfig, threshold: u64, retention_weeks: u32) -> String {
    let mut groups: BTreeMap<Option<&str>, Group<'_>> = BTreeMap::new();
    let mut order: Vec<Option<&str>> = Vec::new();
    for program in &config.programs {
        for counter in &program.counters {
            let key = counter.chart.as_deref();
            if !order.contains(&key) {
                order.push(key);
            }
            groups
                .entry(key)
                .or_insert_with(|| Group {
                    counters: Vec::new(),
                })
                .counters
                .push((
                    &program.name,
                    &program.versions,
                    &counter.name,
                    counter.rate,
                ));
        }
    }
    // Charts in the chart file's order, then any the file does not know, then chartless.
    if let Some(charts) = &site.charts {
        order.sort_by_key(|key| match key {
            Some(id) => (
                0,
                charts
                    .charts
                    .iter()
                    .position(|c| c.id == *id)
                    .unwrap_or(usize::MAX),
            ),
            None => (1, 0),
        });
    } else {
        order.sort_by_key(|key| key.is_none());
    }

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
    let counters_total: usize = groups
        .values()
        .flat_map(|g| g.counters.iter())
        .map(|(_, _, pattern, _)| expand_pattern(pattern).map_or(0, |n| n.len()))
        .sum();
    let _ = write!(
        body,
        "<p>{} charts, <span data-counters-total=\"{counters_total}\">{counters_total}</span> counters.</p>",
        order.iter().filter(|k| k.is_some()).count()
    );
    for key in order {
        let Some(group) = groups.get(&key) else {
            continue;
        };
        let chart = key.and_then(|id| site.charts.as_ref()?.chart(id));
        match (key, chart) {
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
    }
    page("tally: what this collector collects", &body)
}
