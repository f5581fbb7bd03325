//! The layout of the repository's example chart config (`config-schema/example-charts.toml`),
//! for the size figures in `docs/private-aggregation.md` and the client benchmark.

use std::collections::BTreeMap;

use tally_dap::layout::{ChartCounters, ChartKind, Layout, for_charts};

/// The example chart config, as the repository has it.
pub const EXAMPLE_CHARTS: &str = include_str!("../../../../config-schema/example-charts.toml");

/// The version buckets the example assumes: the four latest Rust minors, three of Go.
pub fn example_versions() -> BTreeMap<String, Vec<String>> {
    let rust: Vec<String> = ["1.92", "1.93", "1.94", "1.95"].map(String::from).to_vec();
    BTreeMap::from([
        ("cargo".to_owned(), rust.clone()),
        ("rustc".to_owned(), rust),
        (
            "go".to_owned(),
            ["1.23", "1.24", "1.25"].map(String::from).to_vec(),
        ),
    ])
}

/// The example chart config's layout.
pub fn example_layout() -> Layout {
    let charts: toml::Value = toml::from_str(EXAMPLE_CHARTS).unwrap();
    let strings = |v: &toml::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let charts_list: Vec<ChartCounters> = charts["chart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| ChartCounters {
            program: c["program"].as_str().unwrap().to_owned(),
            counters: strings(&c["counters"]),
            kind: match c["kind"].as_str().unwrap() {
                "partition" => ChartKind::Partition,
                "share-over-time" => ChartKind::ShareOverTime,
                "histogram" => ChartKind::Histogram,
                other => panic!("unknown chart kind {other}"),
            },
        })
        .collect();
    let layout = for_charts(
        &strings(&charts["os"]),
        &strings(&charts["arch"]),
        &charts_list,
        &example_versions(),
    );
    layout.validate().unwrap();
    layout
}
