//! What a tool might pass where a name goes, by mistake or by building a name from input at
//! run time: paths, URLs, e-mail addresses, `KEY=value` pairs, tokens, digests, sentences,
//! addresses, non-ASCII text. None of it reaches any file: such names count as
//! `<program>/other`, and a command line's values are never named.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;

use clap::{Arg, ArgAction};
use proptest::prelude::*;
use tally_counter::{Counter, Histogram};

use crate::{PROGRAM, World};

/// Applies every misuse to each NUL-separated value on stdin.
pub fn misuse_worker() {
    assert!(tally_counter::open(PROGRAM));
    let input = crate::stdin_bytes();
    let command = clap::Command::new("counter-probe")
        .arg(Arg::new("name").long("name").action(ArgAction::Set))
        .arg(Arg::new("file").action(ArgAction::Set))
        .allow_external_subcommands(true);
    for value in input.split(|&b| b == 0).filter(|v| !v.is_empty()) {
        let value = String::from_utf8(value.to_vec()).unwrap();
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        Counter::new(leak(value.clone())).inc();
        Counter::new(leak(format!("counter-probe/{value}"))).inc();
        Counter::new(leak(format!("counter-probe/flag:{value}"))).inc();
        Counter::new(leak(format!("counter-probe/{value}/x"))).inc();
        Histogram::values(leak(format!("counter-probe/{value}")), &[10]).observe_value(3);
        tally_counter::cli::count_flags(&format!("counter-probe/{value}:"), &command, &{
            command
                .clone()
                .get_matches_from(["counter-probe", "--name", &value])
        });
        let matches = command
            .clone()
            .get_matches_from(["counter-probe", "--name", &value, &value]);
        tally_counter::cli::count_command("counter-probe/", &command, &matches);
        let matches = command
            .clone()
            .get_matches_from(["counter-probe", "--", &value, &value]);
        tally_counter::cli::count_command("counter-probe/", &command, &matches);
    }
}

/// Sensitive values, each of a shape a tool sees in its input.
fn sensitive() -> impl Strategy<Value = String> {
    prop_oneof![
        "/(home|Users|tmp|srv)/[a-z]{3,8}/[a-zA-Z0-9_.-]{1,12}",
        "[a-z]{2,8}/[a-z]{2,8}\\.[a-z]{1,4}",
        "~/[a-z]{2,10}",
        "C:\\\\Users\\\\[a-z]{3,8}",
        "https://[a-z]{3,10}\\.(com|org)/[a-z]{0,8}",
        "[a-z]{3,8}@[a-z]{3,8}\\.com",
        "[A-Z_]{3,10}=[a-zA-Z0-9]{1,10}",
        "(ghp_|AKIA|xoxb-)[A-Za-z0-9]{4,20}[A-Z][A-Za-z0-9]{0,5}",
        "[0-9a-f]{40,64}",
        "[a-zA-Z0-9+/]{40,60}={0,2}",
        "[a-z]{2,8} [a-z]{2,8}( [a-z]{2,8}){0,3}",
        "[a-z]{1,5}[éü日ß][a-z]{0,5}",
        "(10|192)\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        "[A-Z][a-z]{3,10}",
    ]
}

/// The only names any misuse may leave.
fn allowed() -> BTreeSet<&'static str> {
    [
        "counter-probe/other",
        "counter-probe/flag:--name",
        "counter-probe/subcommand:other",
    ]
    .into_iter()
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn misused_values_never_reach_a_file(values in proptest::collection::vec(sensitive(), 1..24)) {
        let world = World::installed();
        let mut child = world
            .worker("misuse", &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = Vec::new();
        for v in &values {
            input.extend_from_slice(v.as_bytes());
            input.push(0);
        }
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        prop_assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        let counters = world.counters();
        let names: BTreeSet<&str> = counters["counter-probe"].keys().map(String::as_str).collect();
        prop_assert!(names.is_subset(&allowed()), "{:?}", names);
        prop_assert!(names.contains("counter-probe/other"));
        for (path, bytes) in world.files() {
            let path_text = path.to_string_lossy();
            let text = String::from_utf8_lossy(&bytes);
            for v in &values {
                prop_assert!(!text.contains(v.as_str()), "{v:?} in {path_text}");
                prop_assert!(!path_text.contains(v.as_str()), "{v:?} names {path_text}");
            }
        }
    }
}
