//! The "How your compiles fared" part of `tally view`: the compile counters the
//! `RUSTC_WRAPPER` wrote into `rustc`'s sections (outcome, time bucket, error codes, lints),
//! summed over the weeks shown by `tally_grammar::compiles`. Nothing when none was counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tally_grammar::compiles::CompileSummary;
use tally_grammar::outcome::{BUCKET_LABELS, Driver, Outcome};

use crate::html::escape;
use crate::svg::{HorizontalBars, horizontal_bars};
use crate::user_data::UserWeek;

/// The most frequent error codes and lints drawn.
const TOP: usize = 10;

/// The compile counters of `weeks`, summed.
pub fn summarize(weeks: &[&UserWeek]) -> CompileSummary {
    CompileSummary::of_sections(weeks.iter().flat_map(|week| {
        let sections = week.programs.iter();
        sections.map(|s| (week.week, &*s.program, &*s.version, &s.counters))
    }))
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
    body.push_str(&horizontal_bars(&HorizontalBars {
        kind: "user-outcomes",
        title: "Outcome of each compile".to_string(),
        rows: outcome_rows(&summary.outcomes),
    }));
    // Apart from the user's compiles: the probes build scripts run (autocfg and the like).
    if !summary.build_scripts.is_empty() {
        body.push_str(&horizontal_bars(&HorizontalBars {
            kind: "user-build-scripts",
            title: "Outcome of each compile a build script ran".to_string(),
            rows: outcome_rows(&summary.build_scripts),
        }));
    }
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
    let errors = errors.into_iter().map(|(code, n)| (code.to_string(), n));
    body.push_str(&ranking_bars(
        "user-errors",
        "Most frequent error codes",
        errors.collect(),
    ));
    body.push_str(&ranking_bars(
        "user-lints",
        "Most frequent lints",
        summary.top_lints(TOP),
    ));
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

/// One bar per driver and outcome with a compile.
fn outcome_rows(rows: &BTreeMap<Driver, [u64; Outcome::ALL.len()]>) -> Vec<(String, u64)> {
    let mut bars = Vec::new();
    for (driver, row) in rows {
        for outcome in Outcome::ALL {
            let n = row[outcome as usize];
            if n > 0 {
                bars.push((format!("{} {}", driver.name(), outcome.label()), n));
            }
        }
    }
    bars
}

/// A ranking as bars, most frequent first; nothing when it is empty.
fn ranking_bars(kind: &'static str, title: &str, rows: Vec<(String, u64)>) -> String {
    if rows.is_empty() {
        return String::new();
    }
    horizontal_bars(&HorizontalBars {
        kind,
        title: title.to_string(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiles build scripts ran are a chart of their own, drawn only when there were any;
    /// the user's outcome chart holds only the user's compiles.
    #[test]
    fn build_script_compiles_are_a_chart_of_their_own() {
        let mut summary = CompileSummary::default();
        summary.add_section("2026-11-16", "rustc", "1.95.0", [("rustc/outcome:ok", 3)]);
        assert!(!section(&summary).contains("user-build-scripts"));
        summary.add_section(
            "2026-11-16",
            "rustc",
            "1.95.0",
            [("rustc/build-script-outcome:error", 2)],
        );
        let html = section(&summary);
        let (user, scripts) = html.split_once("user-build-scripts").expect(&html);
        assert!(scripts.contains("rustc error"), "{html}");
        assert!(!user.contains("rustc error"), "{html}");
    }
}
