//! Privacy and sampling properties of the upload copy, over random inputs.
//!
//! - Nothing outside the config's vocabulary reaches an upload copy: random program names,
//!   versions (with paths and secrets in them), platforms and counter names, mixed with allowed
//!   ones, never survive unless the config names them, and versions leave only in canonical
//!   form.
//! - Sampling nests: whenever a report keeps a counter of rate r, it keeps every counter of a
//!   higher rate, and a report sent at sample rate s is also sent at any s' >= s.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tally_home::Mode;
use tally_protocol::config::expand_pattern;
use tally_protocol::{Day, ProgramReport, Report, UploadConfig};
use tally_report::upload_copy;

fn config() -> UploadConfig {
    UploadConfig::parse(
        br#"{
  "version": 2, "expires": "2030-01-01", "sample_rate": 0.8,
  "os": ["linux", "macos"], "arch": ["x86_64"],
  "programs": [
    { "name": "cargo", "versions": ">=1.70.0", "counters": [
        { "name": "cargo/invocations", "rate": 0.8 },
        { "name": "cargo/subcommand:{build,test,other}", "rate": 0.4 },
        { "name": "cargo/flag:--release", "rate": 0.1 } ] },
    { "name": "go", "versions": ">=1.19.0", "counters": [
        { "name": "go/subcommand:{build,vet}", "rate": 0.6 } ] }
  ]
}"#,
    )
    .unwrap()
}

fn vocabulary(config: &UploadConfig) -> BTreeSet<String> {
    let mut words: BTreeSet<String> = config.os.iter().chain(&config.arch).cloned().collect();
    for p in &config.programs {
        words.insert(p.name.clone());
        for c in &p.counters {
            words.extend(expand_pattern(&c.name).unwrap());
        }
    }
    words
}

fn is_canonical_version(v: &str) -> bool {
    let (core, channel) = v.split_once('-').unwrap_or((v, ""));
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && (channel.is_empty()
            || ["nightly", "beta", "dev"].contains(&channel)
            || channel.strip_prefix("beta.").is_some_and(|n| {
                (1..=3).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit())
            }))
}

/// A string that is either from the config's vocabulary or random (possibly secret-looking).
fn word(allowed: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(allowed).prop_map(str::to_string),
        "[ -~]{0,24}",
        "/home/[a-z]{3,8}/secret-[0-9a-f]{8}",
    ]
}

fn version() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1.95.0".to_string()),
        Just("go1.19.8".to_string()),
        "1\\.[0-9]{2}\\.[0-9]",
        "0?[0-9]{1,6}\\.0?[0-9]{1,6}\\.[0-9]{1,6}",
        "1\\.9[0-9]\\.0-(nightly|beta\\.[0-9]|dev|[a-z/]{1,12})( \\([ -~]{0,20}\\))?",
        "[ -~]{0,20}",
    ]
}

fn section() -> impl Strategy<Value = ProgramReport> {
    const PROGRAMS: &[&str] = &["cargo", "go", "rustc"];
    const OS: &[&str] = &["linux", "macos", "windows"];
    const ARCH: &[&str] = &["x86_64", "aarch64"];
    const COUNTERS: &[&str] = &[
        "cargo/invocations",
        "cargo/subcommand:build",
        "cargo/subcommand:other",
        "cargo/flag:--release",
        "go/subcommand:vet",
        "rustc/edition:2021",
    ];
    (
        word(PROGRAMS),
        version(),
        word(OS),
        word(ARCH),
        proptest::collection::btree_map(word(COUNTERS), 0u64..1000, 0..8),
    )
        .prop_map(|(program, version, os, arch, counters)| ProgramReport {
            program,
            version,
            os,
            arch,
            counters,
        })
}

/// A local report with random sections, plus always one allowed section whose version and
/// counters carry secrets next to allowed names, so that most cases produce an upload copy.
fn local_report() -> impl Strategy<Value = Report> {
    (proptest::collection::vec(section(), 0..6), 1u32..10_000).prop_map(|(mut programs, n)| {
        programs.push(ProgramReport {
            program: "cargo".into(),
            version: "1.95.0-dev (/home/alice/secret-1234abcd)".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            counters: [
                ("cargo/invocations".to_string(), 1),
                ("/home/alice/secret".to_string(), 3),
            ]
            .into_iter()
            .collect(),
        });
        Report {
            week: "2026-11-09".parse().unwrap(),
            x: f64::from(n) / 10_000.0,
            config_version: None,
            programs,
        }
    })
}

fn today() -> Day {
    "2026-11-17".parse().unwrap()
}

fn mode() -> Mode {
    Mode::On {
        since: "2026-11-01".parse().unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn nothing_outside_the_vocabulary_is_uploaded(local in local_report()) {
        let config = config();
        let words = vocabulary(&config);
        let Ok(upload) = upload_copy(&local, mode(), Ok(&config), today()) else {
            // The always-present allowed section makes this the sampled-out case only.
            prop_assert!(local.x > config.sample_rate);
            return Ok(());
        };
        let bytes = String::from_utf8(upload.to_canonical_json()).unwrap();
        let reparsed = Report::parse(bytes.as_bytes()).unwrap();
        prop_assert_eq!(&reparsed, &upload);
        for s in &upload.programs {
            prop_assert!(words.contains(&s.program), "program {:?}", s.program);
            prop_assert!(words.contains(&s.os), "os {:?}", s.os);
            prop_assert!(words.contains(&s.arch), "arch {:?}", s.arch);
            prop_assert!(is_canonical_version(&s.version), "version {:?}", s.version);
            // The collector refuses any other version, and sections without counts.
            prop_assert!(
                tally_protocol::version::is_canonical(&s.version),
                "version {:?}",
                s.version
            );
            prop_assert!(!s.counters.is_empty());
            for (name, count) in &s.counters {
                prop_assert!(words.contains(name), "counter {:?}", name);
                prop_assert!(*count > 0);
            }
        }
        // And nothing secret-looking anywhere in the bytes.
        prop_assert!(!bytes.contains("/home/"), "{}", bytes);
        prop_assert!(!bytes.contains("secret"), "{}", bytes);
    }

    #[test]
    fn sampling_nests(local in local_report()) {
        let config = config();
        let rates: BTreeMap<String, f64> =
            config.programs.iter().flat_map(|p| p.counter_rates()).collect();
        if let Ok(upload) = upload_copy(&local, mode(), Ok(&config), today()) {
            prop_assert!(local.x <= config.sample_rate);
            let kept: BTreeSet<&String> = upload.programs.iter().flat_map(|s| s.counters.keys()).collect();
            for name in &kept {
                prop_assert!(local.x <= rates[*name]);
            }
            // Raising the sample rate and every counter rate never removes anything.
            let mut generous = config.clone();
            generous.sample_rate = 1.0;
            for p in &mut generous.programs {
                for c in &mut p.counters {
                    c.rate = (c.rate + 0.3).min(1.0);
                }
            }
            let more = upload_copy(&local, mode(), Ok(&generous), today()).unwrap();
            let kept_more: BTreeSet<&String> = more.programs.iter().flat_map(|s| s.counters.keys()).collect();
            prop_assert!(kept.is_subset(&kept_more));
        } else {
            prop_assert!(local.x > config.sample_rate, "withheld although x is in the sample");
        }
    }
}
