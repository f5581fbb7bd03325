//! Rendering tests: the pages hold the expected charts and series, every name is escaped
//! (hostile names included, and random ones by property test), and the chart SVG is pinned by
//! snapshots.

use crate::support::{self as fixtures, WEEKS, cargo_weeks, day, section};
use proptest::prelude::*;
use tally_charts::svg::{LineChart, Point, Scale, Series, line_chart};
use tally_charts::{UserData, UserWeek, dashboard_index, program_page, user_view};

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn program_page_draws_partitions_counters_and_splits() {
    let page = program_page("cargo", &cargo_weeks(), 5);
    // One chart for the whole cargo/subcommand partition, with one series per bucket.
    assert_eq!(
        count(&page, "<svg class=\"chart\" data-chart=\"partition\""),
        2,
        "subcommand and flag partitions"
    );
    for bucket in ["build", "test", "other"] {
        assert!(
            page.contains(&format!("data-series=\"cargo/subcommand:{bucket}\"")),
            "{bucket}"
        );
    }
    // cargo/invocations stands alone.
    assert_eq!(
        count(&page, "<svg class=\"chart\" data-chart=\"counter\""),
        1
    );
    assert!(page.contains("data-series=\"cargo/invocations\" data-points=\"3\""));
    // The withheld week leaves a gap: two points, no line across it.
    assert!(page.contains("data-series=\"cargo/flag:--offline\" data-points=\"2\""));
    // Each point carries its share and Wilson interval; the band is drawn.
    assert!(page.contains("data-week=\"2026-11-16\" data-value=\"1\""));
    assert!(page.contains("class=\"band\""));
    for split in ["split-version", "split-os", "split-arch"] {
        assert_eq!(
            count(
                &page,
                &format!("<svg class=\"chart\" data-chart=\"{split}\"")
            ),
            1,
            "{split}"
        );
    }
    assert!(page.contains("data-series=\"1.95.0\""));
    assert!(page.contains("data-series=\"aarch64\""));
    assert!(
        page.contains("data-week=\"2026-11-16\" data-value=\"8\""),
        "aarch64 in the last week"
    );
}

#[test]
fn index_lists_programs_weeks_and_reports() {
    let page = dashboard_index(&fixtures::index());
    assert!(page.contains("href=\"programs/cargo\""));
    assert!(page.contains("href=\"programs/rustc\""));
    for (week, reports) in WEEKS.iter().zip([44, 59, 65]) {
        assert!(page.contains(&format!("<tr data-week=\"{week}\"><td>{week}</td><td class=\"num\" data-reports=\"{reports}\">")), "{week}");
    }
    assert!(page.contains("data-series=\"all reports\" data-points=\"3\""));
    assert!(page.contains("data-threshold=\"5\""));
}

#[test]
fn empty_inputs_render_an_explanation() {
    let empty = tally_protocol::aggregate::WeeksIndex {
        threshold: 5,
        weeks: vec![],
    };
    assert!(dashboard_index(&empty).contains("No published data yet"));
    assert!(program_page("go", &[], 5).contains("No published data for this program"));
    assert!(user_view(&UserData::default()).contains("Nothing counted yet"));
}

#[test]
fn pages_are_self_contained() {
    let pages = [
        dashboard_index(&fixtures::index()),
        program_page("cargo", &cargo_weeks(), 5),
        user_view(&user_data()),
    ];
    for page in pages {
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("Content-Security-Policy"));
        assert!(!page.contains("<script"), "no script");
        assert!(
            !page.contains("http://")
                || !page
                    .replace("http://www.w3.org/2000/svg", "")
                    .contains("http://"),
            "no remote asset"
        );
        assert!(!page.contains("https://"), "no remote asset");
        assert!(page.contains("name=\"viewport\""), "phone-width layout");
    }
}

fn user_data() -> UserData {
    UserData {
        data_dir: "/home/u/.local/state/tally".to_owned(),
        mode: "local".to_owned(),
        weeks: vec![
            UserWeek {
                week: day("2026-11-12"),
                in_progress: false,
                programs: vec![
                    section(
                        "cargo",
                        &[("cargo/invocations", 9), ("cargo/subcommand:build", 7)],
                    ),
                    section(
                        "rustc",
                        &[("rustc/invocations", 120), ("rustc/edition:2021", 118)],
                    ),
                ],
            },
            UserWeek {
                week: day("2026-11-19"),
                in_progress: true,
                programs: vec![section(
                    "cargo",
                    &[("cargo/invocations", 3), ("cargo/subcommand:test", 3)],
                )],
            },
        ],
    }
}

#[test]
fn user_view_shows_each_week_and_program() {
    let page = user_view(&user_data());
    assert_eq!(
        count(&page, "data-chart=\"user-week\"><figcaption>"),
        3,
        "cargo twice, rustc once"
    );
    assert!(page.contains("cargo, week of 2026-11-19 (in progress)"));
    assert!(page.contains("data-series=\"rustc/edition:2021\""));
    assert!(page.contains("data-value=\"118\""));
    // Trend chart across the two weeks, including a zero where a counter was absent.
    assert!(page.contains("data-series=\"cargo/invocations\" data-points=\"2\""));
    assert!(
        page.contains("data-week=\"2026-11-19\" data-value=\"0\""),
        "build absent in week 2"
    );
    // The weeks table: each program's invocations, a dash where it did not run.
    assert!(page.contains(
        "<tr data-week=\"2026-11-19\"><td>2026-11-19</td><td>in progress</td><td class=\"num\">3</td><td class=\"num muted\">–</td></tr>"
    ));
    assert!(page.contains(
        "<tr data-week=\"2026-11-12\"><td>2026-11-12</td><td>ended</td><td class=\"num\">9</td><td class=\"num\">120</td></tr>"
    ));
}

#[test]
fn user_view_shows_how_compiles_fared() {
    // Without compile counters there is no such section.
    assert!(!user_view(&user_data()).contains("data-section=\"compiles\""));

    let mut data = user_data();
    data.weeks[0].programs[1].counters.extend(
        [
            ("rustc/outcome:ok", 100),
            ("rustc/outcome:error", 19),
            ("rustc/outcome:ice", 1),
            ("rustc/time/check-unopt:<1s", 90),
            ("rustc/time/check-unopt:<10s", 30),
            ("rustc/error:E0308", 12),
            ("rustc/lint:unused_variables:warn", 40),
            // Not a compile counter: left out of the section.
            ("rustc/lint:made_up_lint:warn", 7),
        ]
        .map(|(n, c)| (n.to_owned(), c)),
    );
    data.weeks[1]
        .programs
        .push(section("rustc", &[("rustc/outcome:ok", 5)]));
    let page = user_view(&data);
    assert!(page.contains("125 compiles under cargo"), "{page}");
    assert!(page.contains("data-chart=\"user-outcomes\""));
    assert!(page.contains("data-series=\"rustc ice\""));
    // The histogram keeps the buckets in order, the empty ones included.
    let times = &page[page
        .find("data-chart=\"user-times\"")
        .expect("a time chart")..];
    let order: Vec<usize> = [
        "\"&lt;0.1s\"",
        "\"&lt;1s\"",
        "\"&lt;10s\"",
        "\"&lt;60s\"",
        "\"&gt;=60s\"",
    ]
    .iter()
    .map(|b| times.find(&format!("data-series={b}")).expect(b))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(page.contains("data-series=\"E0308\""));
    assert!(page.contains("data-series=\"rustc/lint:unused_variables:warn\""));
    let compiles = &page[page.find("data-section=\"compiles\"").unwrap()..];
    let compiles = &compiles[..compiles.find("</section>").unwrap()];
    assert!(!compiles.contains("made_up_lint"), "{compiles}");
    // One of the two weeks 1.95.0 compiled in had a crash.
    assert!(page.contains("data-version=\"1.95.0\" data-ice-weeks=\"1\" data-weeks=\"2\""));
}

const HOSTILE: &str = "\"><script>alert('x')</script><img src=x onerror=alert(1)>&amp;";

#[test]
fn hostile_names_are_escaped_everywhere() {
    let mut weeks = cargo_weeks();
    for week in &mut weeks {
        week.program = HOSTILE.to_owned();
        week.counters.push(fixtures::counter(
            &format!("evil:{HOSTILE}"),
            9,
            week.reports,
            9,
        ));
        week.counters
            .push(fixtures::counter(HOSTILE, 9, week.reports, 9));
        week.versions.insert(HOSTILE.to_owned(), 9);
        week.os.insert(format!("{HOSTILE}\u{0}"), 9);
    }
    let mut index = fixtures::index();
    index.weeks[0].programs.insert(HOSTILE.to_owned(), 9);
    let user = UserData {
        data_dir: HOSTILE.to_owned(),
        mode: HOSTILE.to_owned(),
        weeks: vec![UserWeek {
            week: day("2026-11-12"),
            in_progress: false,
            programs: vec![section(HOSTILE, &[(HOSTILE, 1), ("x:</svg>", 2)])],
        }],
    };
    for page in [
        program_page(HOSTILE, &weeks, 5),
        dashboard_index(&index),
        user_view(&user),
    ] {
        assert!(!page.contains("<script"), "raw script tag");
        assert!(!page.contains("<img"), "raw img tag");
        assert!(!page.contains("'x'"), "raw quote");
        assert!(!page.contains('\u{0}'), "raw NUL");
        assert!(page.contains("&lt;script&gt;"), "escaped form present");
        assert!(
            !page.contains("href=\"programs/\"><"),
            "link target encoded"
        );
    }
    let index_page = dashboard_index(&index);
    assert!(
        index_page.contains("href=\"programs/%22%3E%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E")
    );
}

/// The markup skeleton of a page: everything but text and attribute contents, which is what a
/// name could corrupt if escaping failed.
fn structure(page: &str) -> (usize, usize, usize) {
    (count(page, "<"), count(page, ">"), count(page, "\""))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any program name and bucket name, however hostile, leaves the page's markup exactly as it
    /// is with a plain name: same number of tags and attribute quotes.
    #[test]
    fn random_names_never_change_the_markup(program in "\\PC{0,24}", bucket in "\\PC{1,24}") {
        let render = |program: &str, bucket: &str| {
            let mut weeks = cargo_weeks();
            for week in &mut weeks {
                week.program = program.to_owned();
                week.counters.push(fixtures::counter(&format!("cargo/zz:{bucket}"), 9, week.reports, 9));
                week.os.insert(format!("os {bucket}"), 3);
            }
            let user = UserData {
                data_dir: program.to_owned(),
                mode: bucket.to_owned(),
                weeks: vec![UserWeek {
                    week: day("2026-11-12"),
                    in_progress: true,
                    programs: vec![section(program, &[(bucket, 4)])],
                }],
            };
            (program_page(program, &weeks, 5), user_view(&user))
        };
        let (plain_program, plain_user) = render("p", "b");
        let (program_page, user_page) = render(&program, &bucket);
        prop_assert_eq!(structure(&program_page), structure(&plain_program));
        prop_assert_eq!(structure(&user_page), structure(&plain_user));
    }
}

#[test]
fn line_chart_svg_snapshot() {
    let point = |value: f64, low: f64, high: f64| {
        Some(Point {
            value,
            band: Some((low, high)),
            detail: "3 of 12 reports".to_owned(),
        })
    };
    let chart = LineChart {
        kind: "partition",
        title: "rustc/edition: share of reports per bucket".to_owned(),
        x_labels: vec![
            "2026-11-02".to_owned(),
            "2026-11-09".to_owned(),
            "2026-11-16".to_owned(),
        ],
        series: vec![
            Series {
                name: "rustc/edition:2021".to_owned(),
                label: "2021".to_owned(),
                points: vec![point(0.6, 0.5, 0.7), point(0.55, 0.45, 0.65), None],
            },
            Series {
                name: "rustc/edition:2024".to_owned(),
                label: "2024".to_owned(),
                points: vec![
                    point(0.3, 0.2, 0.4),
                    point(0.4, 0.3, 0.5),
                    point(0.5, 0.4, 0.6),
                ],
            },
        ],
        scale: Scale::Share,
    };
    insta::assert_snapshot!(line_chart(&chart).replace("><", ">\n<"));
}

#[test]
fn split_chart_snapshot() {
    let weeks = cargo_weeks();
    let page = program_page("cargo", &weeks[..1], 5);
    let start = page
        .find("<figure class=\"chart\" data-chart=\"split-os\"")
        .expect("os chart");
    let end = start + page[start..].find("</figure>").expect("figure end") + "</figure>".len();
    insta::assert_snapshot!(page[start..end].replace("><", ">\n<"));
}

/// The `data-value` of each drawn datum of `series` in the chart `kind`, in drawing order.
fn values_in(page: &str, kind: &str, series: &str) -> Vec<String> {
    let start = page
        .find(&format!("<svg class=\"chart\" data-chart=\"{kind}\""))
        .unwrap_or_else(|| panic!("no {kind} chart"));
    let chart = &page[start..start + page[start..].find("</svg>").unwrap()];
    let marker = format!("data-series=\"{series}\"");
    chart
        .split(&marker)
        .skip(1)
        .flat_map(|g| {
            let g = &g[..g.find("</g>").unwrap()];
            g.split("data-value=\"")
                .skip(1)
                .map(|v| v[..v.find('"').unwrap()].to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `data-series` of a chart `kind` whose title starts with `title`, in drawing order.
fn series_of(page: &str, kind: &str, title: &str) -> Vec<String> {
    let marker = format!(
        "<svg class=\"chart\" data-chart=\"{kind}\" data-title=\"{}",
        title.replace('<', "&lt;")
    );
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {kind} chart titled {title}"));
    let chart = &page[start..start + page[start..].find("</svg>").unwrap()];
    chart
        .split("data-series=\"")
        .skip(1)
        .map(|s| {
            s[..s.find('"').unwrap()]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
        })
        .collect()
}

#[test]
fn compiler_pages_show_how_compiles_fare() {
    let weeks = fixtures::rustc_weeks(30);
    let latest = weeks.last().unwrap().clone();
    let page = program_page("rustc", &weeks, 5);
    // Crashes per version: newest version first, each the share of that version's reports.
    assert_eq!(
        series_of(&page, "ice-by-version", "rustc:"),
        ["1.100.0", "1.95.0", "1.94.0"]
    );
    let ice = &latest.by_version["1.100.0"][0];
    assert_eq!(
        values_in(&page, "ice-by-version", "1.100.0"),
        [ice.share.to_string()]
    );
    // The outcome mix: shares of compiles (events), summing to one.
    let mix: f64 = ["ok", "error", "ice"]
        .iter()
        .map(|o| {
            values_in(&page, "outcome-mix", &format!("rustc/outcome:{o}"))[0]
                .parse::<f64>()
                .unwrap()
        })
        .sum();
    assert!((mix - 1.0).abs() < 1e-12, "{mix}");
    // The histogram's buckets in bucket order, not name order.
    let histogram = &page[page.find("data-chart=\"histogram\"").unwrap()..];
    let labels: Vec<&str> = ["&lt;0.1s", "&lt;1s", "&lt;10s", "&gt;=60s"]
        .iter()
        .map(|l| {
            let at = histogram
                .find(&format!(">{l}</text>"))
                .unwrap_or_else(|| panic!("{l}"));
            &histogram[at..at + 1]
        })
        .collect();
    assert_eq!(labels.len(), 4);
    let position = |l: &str| histogram.find(&format!(">{l}</text>")).unwrap();
    assert!(
        position("&lt;0.1s") < position("&lt;1s")
            && position("&lt;1s") < position("&lt;10s")
            && position("&lt;10s") < position("&gt;=60s")
    );
    assert_eq!(
        series_of(&page, "histogram-weeks", "rustc/time/codegen-unopt"),
        [
            "rustc/time/codegen-unopt:<0.1s",
            "rustc/time/codegen-unopt:<1s",
            "rustc/time/codegen-unopt:<10s",
            "rustc/time/codegen-unopt:>=60s"
        ]
    );
    // The most frequent error codes: the 15 largest, largest first, the rest said.
    let errors = series_of(&page, "latest", "Most frequent error codes (rustc/error)");
    assert_eq!(errors.len(), 15);
    assert_eq!(errors[0], "rustc/error:E0319");
    assert!(page.contains("5 smaller buckets not drawn."));
    let lints = series_of(&page, "latest", "Most frequent lints (rustc/lint)");
    assert_eq!(lints[0], "rustc/lint:unused_variables:warn");
    // Over the weeks, the 8 largest error codes.
    assert_eq!(
        series_of(
            &page,
            "partition",
            "rustc/error: share of reports per bucket (the 8 largest of 20)"
        )
        .len(),
        8
    );
    // Many weeks: the table lists the latest 12, the charts all 30.
    assert_eq!(count(&page, "<tr data-week="), 12);
    assert!(page.contains("The latest 12 of 30 weeks"));
    assert!(page.contains("data-series=\"rustc/error:E0319\" data-points=\"30\""));

    // No crash published for any version: no empty crash chart, the outcome mix stays.
    let mut quiet = weeks.clone();
    for week in &mut quiet {
        week.by_version.clear();
    }
    let page = program_page("rustc", &quiet, 5);
    assert!(!page.contains("data-chart=\"ice-by-version\""));
    assert!(page.contains("data-chart=\"outcome-mix\""));
}

/// The colour each drawn datum of `series` has, in every chart of `page` (bars, lines, points,
/// segments), and the colour of its legend entry labelled `legend`, if any.
fn colours_of(page: &str, series: &str, legend: &str) -> Vec<String> {
    let mut colours = Vec::new();
    let marker = format!("data-series=\"{series}\"");
    for group in page.split(&marker).skip(1) {
        let group = &group[..group.find("</g>").unwrap()];
        for element in group.split('<').skip(1) {
            let drawn = [
                "class=\"bar\"",
                "class=\"line\"",
                "class=\"point\"",
                "class=\"segment\"",
            ]
            .iter()
            .any(|class| element.contains(class));
            if !drawn {
                continue;
            }
            for attribute in ["fill=\"", "stroke=\""] {
                if let Some(at) = element.find(attribute) {
                    let value = &element[at + attribute.len()..];
                    colours.push(value[..value.find('"').unwrap()].to_owned());
                }
            }
        }
    }
    let swatch = "<span class=\"swatch\" style=\"background:";
    for entry in page.split(swatch).skip(1) {
        let (colour, rest) = entry.split_once('"').unwrap();
        if rest
            .strip_prefix("></span>")
            .is_some_and(|r| r.starts_with(&format!("{legend}<")))
        {
            colours.push(colour.to_owned());
        }
    }
    colours
}

#[test]
fn every_chart_draws_an_outcome_in_its_own_colour_and_success_not_in_red() {
    // A compiler page with rustc's outcomes and clippy's, which list different outcomes (so a
    // colour by position would differ between them).
    let mut weeks = fixtures::rustc_weeks(6);
    for week in &mut weeks {
        week.counters.extend([
            fixtures::counter("clippy/outcome:ok", 20, 40, 900),
            fixtures::counter("clippy/outcome:error", 5, 40, 30),
        ]);
    }
    let page = program_page("rustc", &weeks, 5);
    let mut data = user_data();
    data.weeks[0].programs[1].counters.extend(
        [
            ("rustc/outcome:ok", 100),
            ("rustc/outcome:error", 19),
            ("clippy/outcome:ok", 7),
        ]
        .map(|(n, c)| (n.to_owned(), c)),
    );
    let view = user_view(&data);
    let mut seen = std::collections::BTreeMap::new();
    for outcome in ["ok", "error", "ice"] {
        let mut colours = colours_of(&page, &format!("rustc/outcome:{outcome}"), outcome);
        colours.extend(colours_of(
            &page,
            &format!("clippy/outcome:{outcome}"),
            outcome,
        ));
        colours.extend(colours_of(&view, &format!("rustc {outcome}"), outcome));
        colours.extend(colours_of(&view, &format!("clippy {outcome}"), outcome));
        // The mix, the weeks (line and legend) for both drivers, and the user's view.
        assert!(colours.len() >= 4, "{outcome}: {colours:?}");
        colours.dedup();
        assert_eq!(
            colours.len(),
            1,
            "{outcome} in more than one colour: {colours:?}"
        );
        seen.insert(outcome, colours[0].clone());
    }
    let red = "#e15759";
    assert_ne!(seen["ok"], red, "success drawn in the alarm colour");
    assert_eq!(seen["error"], red);
    let distinct: std::collections::BTreeSet<&String> = seen.values().collect();
    assert_eq!(distinct.len(), seen.len(), "{seen:?}");
    // Crashes per version: bars of the crash outcome's colour.
    let crashes = &page[page
        .find("<svg class=\"chart\" data-chart=\"ice-by-version\"")
        .expect("a crash chart")..];
    let crashes = &crashes[..crashes.find("</svg>").unwrap()];
    let fills: Vec<&str> = crashes
        .split("class=\"bar\" fill=\"")
        .skip(1)
        .map(|f| &f[..f.find('"').unwrap()])
        .collect();
    assert!(!fills.is_empty());
    assert!(fills.iter().all(|f| *f == seen["ice"]), "{fills:?}");
}
