//! The counter library stays light to depend on: its normal dependency tree (`cargo tree -e
//! normal`, default features) has no serde, serde_json or semver, and holds exactly as many
//! crates as its README says.

use std::collections::BTreeSet;
use std::path::Path;

use tally_test_support::command::cargo_tree_packages;

/// The packages (`name`) in the normal dependency tree of tally-counter, itself included.
fn tree(features: &[&str]) -> BTreeSet<String> {
    let args = [&["-e", "normal", "-p", "tally-counter"], features].concat();
    cargo_tree_packages(&args, Path::new(env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn dependencies_have_no_serde_and_match_the_readme() {
    let crates = tree(&[]);
    assert!(crates.contains("tally-home"), "{crates:?}");
    let heavy: Vec<&str> = ["serde", "serde_core", "serde_json", "semver"]
        .into_iter()
        .filter(|c| crates.contains(*c))
        .collect();
    assert!(
        heavy.is_empty(),
        "{heavy:?} entered tally-counter's dependencies: keep tally-protocol's `wire` feature \
         (and anything else that brings them) out of tally-home and tally-counter"
    );
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("crates/tally-counter/README.md");
    let written = format!("**{} crates** besides this one", crates.len() - 1);
    assert!(
        readme.contains(&written),
        "README.md should say {written:?}: the dependencies are now {crates:?}"
    );
    // The clap feature adds clap, and still no serde.
    let with_clap = tree(&["--features", "clap"]);
    assert!(with_clap.contains("clap_builder"), "{with_clap:?}");
    assert!(!with_clap.contains("serde"), "{with_clap:?}");
    let added = with_clap.len() - crates.len() - 1;
    assert!(
        readme.contains(&format!("adds `clap` and the {added} crates it depends on")),
        "README.md: the clap feature adds clap and {added} more: {with_clap:?}"
    );
}
