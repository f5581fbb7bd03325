//! The "How your compiles fared" part of `tally view`: the compile counters the
//! `RUSTC_WRAPPER` wrote into `rustc`'s sections (outcome, time bucket, error codes, lints),
//! summed over the weeks shown by `tally_grammar::compiles`. Nothing when none was counted.

use std::fmt::Write as _;

use tally_grammar::compiles::CompileSummary;
use tally_grammar::outcome::{BUCKET_LABELS, Outcome};

use crate::html::escape;
use crate::svg::{HorizontalBars, horizontal_bars};
use crate::user_data::UserWeek;

/// The most frequent error codes and lints drawn.
const TOP: usize = 10;

/// The compile counters of `weeks`, summed.
pub fn summarize(weeks: &[&UserWeek]) -> CompileSummary {
    let mut summary = CompileSummary::default();
    for week in weeks {
        let key = week.week.to_string();
        for section in &week.programs {
            summary.add_section(
                &key,
                &section.program,
                &section.version,
                section.counters.iter().map(|(n, c)| (n.as_str(), *c)),
            );
        }
    }
    summary
}

/// The section's HTML, or an empty string when no compile was counted.
pub fn section(summary: &CompileSummary) -> String {
    if summary.is_empty() {
        return String::new();
    }
    let mut body = String::new();
    let _ = write!(
        body,
        "<section class=\"compiles\" data-section=\"compiles\"><h2>How your compiles fared</h2>\
         <p class=\"note\">{} compiles under cargo, over the weeks above.</p><div class=\"grid\">",
        summary.compiles()
    );
    let mut outcomes = Vec::new();
    for (driver, row) in &summary.outcomes {
        for outcome in Outcome::ALL {
            let n = row[outcome as usize];
            if n > 0 {
                outcomes.push((format!("{} {}", driver.name(), outcome.label()), n));
            }
        }
    }
    body.push_str(&horizontal_bars(&HorizontalBars {
        kind: "user-outcomes",
        title: "Outcome of each compile".to_string(),
        rows: outcomes,
    }));
    for ((driver, kind), row) in &summary.times {
        body.push_str(&horizontal_bars(&HorizontalBars {
            kind: "user-times",
            title: format!("Time per compile: {} {kind}", driver.name()),
            rows: BUCKET_LABELS
                .iter()
                .zip(row)
                .map(|(bucket, n)| ((*bucket).to_string(), *n))
                .collect(),
        }));
    }
    let errors = summary.top_errors(TOP);
    if !errors.is_empty() {
        body.push_str(&horizontal_bars(&HorizontalBars {
            kind: "user-errors",
            title: "Most frequent error codes".to_string(),
            rows: errors
                .into_iter()
                .map(|(code, n)| (code.to_string(), n))
                .collect(),
        }));
    }
    let lints = summary.top_lints(TOP);
    if !lints.is_empty() {
        body.push_str(&horizontal_bars(&HorizontalBars {
            kind: "user-lints",
            title: "Most frequent lints".to_string(),
            rows: lints,
        }));
    }
    body.push_str("</div>");
    let versions = summary.version_weeks();
    if !versions.is_empty() {
        body.push_str(
            "<div class=\"table-wrap\"><table class=\"crash-weeks\"><thead><tr><th>rustc version</th>\
             <th class=\"num\">weeks with compiles</th><th class=\"num\">weeks with a compiler crash</th>\
             </tr></thead><tbody>",
        );
        for (version, weeks) in versions {
            let _ = write!(
                body,
                "<tr data-version=\"{v}\" data-ice-weeks=\"{ice}\" data-weeks=\"{all}\"><td>{v}</td>\
                 <td class=\"num\">{all}</td><td class=\"num\">{ice}</td></tr>",
                v = escape(version),
                ice = weeks.ice_weeks,
                all = weeks.weeks,
            );
        }
        body.push_str("</tbody></table></div>");
    }
    if summary.capped > 0 {
        let _ = write!(
            body,
            "<p class=\"note\">{} compile(s) wrote more diagnostics than tally reads; the rest \
             went uncounted.</p>",
            summary.capped
        );
    }
    body.push_str("</section>\n");
    body
}
