//! The layout of real chart configs: the repository's example, and one of 1,000 counters.

mod example;

use tally_dap::client::ReportBuilder;
use tally_dap::draft::messages::Encode;
use tally_dap::draft::{HpkeKeypair, VdafParams};

/// Builds one report of `len` one-bit entries and returns its encoded size.
fn report_size(len: usize) -> usize {
    let builder =
        ReportBuilder::new(rand::random(), &VdafParams::sum_vec(len as u32), 86_400).unwrap();
    let (leader, helper) = (HpkeKeypair::generate(1), HpkeKeypair::generate(2));
    let measurement: Vec<u128> = (0..len).map(|i| (i % 2) as u128).collect();
    builder
        .build(&measurement, 0, &leader.config, &helper.config)
        .unwrap()
        .get_encoded()
        .unwrap()
        .len()
}

/// The figures `docs/private-aggregation.md` states: if the example config or the encoding
/// changes, this fails and the page must be updated with it.
#[test]
fn the_documented_sizes_hold() {
    let layout = example::example_layout();
    let per_program: Vec<(String, usize, usize)> = layout
        .programs
        .iter()
        .map(|p| {
            let single = tally_dap::Layout {
                programs: vec![p.clone()],
                ..layout.clone()
            };
            (p.name.clone(), p.counters.len(), single.len())
        })
        .collect();
    assert_eq!(
        per_program,
        [
            ("cargo".to_owned(), 12, 23),
            ("rustc".to_owned(), 39, 220),
            ("go".to_owned(), 7, 17),
        ]
    );
    assert_eq!(layout.len(), 260);
    assert_eq!(report_size(layout.len()), 5_478);
    assert_eq!(report_size(1_000), 18_310);
}

/// The config section shown in `docs/private-aggregation.md` is one a client accepts.
#[test]
fn the_documented_config_section_parses() {
    let page = include_str!("../../../../docs/private-aggregation.md");
    let start = page.find("```json\n").expect("a JSON example") + "```json\n".len();
    let end = start + page[start..].find("```").unwrap();
    let config = tally_dap::AggregationConfig::parse(&page.as_bytes()[start..end])
        .unwrap_or_else(|e| panic!("the documented section: {e}"));
    assert_eq!(
        config.vdaf,
        tally_dap::draft::VdafParams::sum_vec(config.layout.len() as u32)
    );
}
