use std::collections::BTreeMap;

use crate::{ProgramReport, Report};
use proptest::prelude::*;

use super::*;

fn layout() -> Layout {
    Layout {
        os: vec!["linux".into(), "macos".into()],
        arch: vec!["x86_64".into()],
        programs: vec![
            ProgramLayout {
                name: "rustc".into(),
                versions: vec!["1.94".into(), "1.95".into()],
                counters: vec![
                    CounterLayout {
                        name: "rustc/outcome:{ok,ice}".into(),
                        rate: 1.0,
                        count_bits: 3,
                    },
                    CounterLayout {
                        name: "rustc/lint:dead_code:warn".into(),
                        rate: 0.5,
                        count_bits: 0,
                    },
                ],
                by_version: vec!["rustc/outcome:ice".into()],
            },
            ProgramLayout {
                name: "go".into(),
                versions: vec![],
                counters: vec![CounterLayout {
                    name: "go/subcommand:build".into(),
                    rate: 1.0,
                    count_bits: 0,
                }],
                by_version: vec![],
            },
        ],
    }
}

fn section(program: &str, version: &str, os: &str, counters: &[(&str, u64)]) -> ProgramReport {
    ProgramReport {
        program: program.into(),
        version: version.into(),
        os: os.into(),
        arch: "x86_64".into(),
        counters: counters.iter().map(|(n, c)| ((*n).into(), *c)).collect(),
    }
}

fn report(x: f64, programs: Vec<ProgramReport>) -> Report {
    Report {
        week: "2026-11-18".parse().unwrap(),
        x,
        config_version: Some(1),
        programs,
    }
}

#[test]
fn entries_are_numbered_in_the_documented_order() {
    let layout = layout();
    layout.validate().unwrap();
    let names: Vec<String> = layout
        .entries()
        .iter()
        .map(|e| {
            assert_eq!(
                e.index,
                layout.entries().iter().position(|x| x == e).unwrap()
            );
            format!("{} {}", e.program, serde_json::to_string(&e.kind).unwrap())
        })
        .collect();
    let expected = [
        r#"rustc {"kind":"reports"}"#,
        r#"rustc {"kind":"sampled","rate":0.5}"#,
        r#"rustc {"kind":"version","bucket":"1.94"}"#,
        r#"rustc {"kind":"version","bucket":"1.95"}"#,
        r#"rustc {"kind":"version","bucket":"other"}"#,
        r#"rustc {"kind":"os","os":"linux"}"#,
        r#"rustc {"kind":"os","os":"macos"}"#,
        r#"rustc {"kind":"arch","arch":"x86_64"}"#,
        r#"rustc {"kind":"presence","counter":"rustc/outcome:ok"}"#,
        r#"rustc {"kind":"count_bit","counter":"rustc/outcome:ok","bit":0}"#,
        r#"rustc {"kind":"count_bit","counter":"rustc/outcome:ok","bit":1}"#,
        r#"rustc {"kind":"count_bit","counter":"rustc/outcome:ok","bit":2}"#,
        r#"rustc {"kind":"presence","counter":"rustc/outcome:ice"}"#,
        r#"rustc {"kind":"count_bit","counter":"rustc/outcome:ice","bit":0}"#,
        r#"rustc {"kind":"count_bit","counter":"rustc/outcome:ice","bit":1}"#,
        r#"rustc {"kind":"count_bit","counter":"rustc/outcome:ice","bit":2}"#,
        r#"rustc {"kind":"presence","counter":"rustc/lint:dead_code:warn"}"#,
        r#"rustc {"kind":"version_presence","counter":"rustc/outcome:ice","bucket":"1.94"}"#,
        r#"rustc {"kind":"version_presence","counter":"rustc/outcome:ice","bucket":"1.95"}"#,
        r#"rustc {"kind":"version_presence","counter":"rustc/outcome:ice","bucket":"other"}"#,
        r#"go {"kind":"reports"}"#,
        r#"go {"kind":"version","bucket":"other"}"#,
        r#"go {"kind":"os","os":"linux"}"#,
        r#"go {"kind":"os","os":"macos"}"#,
        r#"go {"kind":"arch","arch":"x86_64"}"#,
        r#"go {"kind":"presence","counter":"go/subcommand:build"}"#,
    ];
    assert_eq!(names, expected);
    assert_eq!(layout.len(), expected.len());
}

#[test]
fn a_week_becomes_bits_as_documented() {
    let layout = layout();
    // Two rustc versions this week (an update mid-week), on a listed and an unlisted OS.
    let week = report(
        0.7,
        vec![
            section(
                "rustc",
                "1.95.0",
                "linux",
                &[
                    ("rustc/outcome:ok", 5),
                    ("rustc/outcome:ice", 1),
                    ("rustc/lint:dead_code:warn", 3),
                ],
            ),
            section(
                "rustc",
                "1.96.0-nightly",
                "linux",
                &[("rustc/outcome:ok", 9)],
            ),
            section("rustc", "1.94.1", "freebsd", &[("rustc/outcome:ok", 100)]),
        ],
    );
    let v = layout.measurement(&week);
    assert_eq!(v.len(), layout.len());
    #[rustfmt::skip]
    let expected: Vec<u128> = vec![
        1,          // reports
        0,          // sampled 0.5: x = 0.7
        0, 1, 1,    // versions 1.94 (only on freebsd: not measured), 1.95, other (1.96)
        1, 0,       // linux, macos
        1,          // x86_64
        1, 1, 1, 1, // ok: 5 + 9 = 14, clipped to 7 = 0b111
        1, 1, 0, 0, // ice: 1
        0,          // dead_code: x above its rate 0.5
        0, 1, 0,    // ice per version
        0, 0, 0, 0, 0, 0, // go: absent
    ];
    assert_eq!(v, expected);
    let sums = layout.interpret(&v).unwrap();
    let rustc = &sums["rustc"];
    assert_eq!(rustc.counters["rustc/outcome:ok"].total, Some(7));
    assert_eq!(rustc.counters["rustc/lint:dead_code:warn"].of, 0);
    assert_eq!(rustc.by_version["1.95"]["rustc/outcome:ice"], 1);
    assert_eq!(sums["go"].reports, 0);
    assert!(layout.interpret(&v[1..]).is_none());
}

#[test]
fn invalid_layouts_are_refused_with_the_reason() {
    type Breaker = fn(&mut Layout);
    let cases: Vec<(Breaker, &str)> = vec![
        (|l| l.programs.clear(), "no programs"),
        (
            |l| l.programs[0].name = "Rust C".into(),
            "not a program name",
        ),
        (|l| l.programs[1].name = "rustc".into(), "appears twice"),
        (|l| l.os.push("linux".into()), "appears twice or is empty"),
        (|l| l.programs[0].versions.push("other".into()), "implicit"),
        (
            |l| l.programs[0].counters[0].name = "a:{b".into(),
            "malformed",
        ),
        (
            |l| l.programs[0].counters[1].name = "rustc/outcome:ok".into(),
            "appears twice",
        ),
        (|l| l.programs[0].counters[0].rate = 0.0, "outside (0, 1]"),
        (
            |l| l.programs[0].counters[0].rate = f64::NAN,
            "outside (0, 1]",
        ),
        (|l| l.programs[0].counters[0].count_bits = 17, "over 16"),
        (
            |l| l.programs[0].by_version.push("rustc/nope".into()),
            "not one of its counters",
        ),
        (
            |l| {
                l.programs[0].by_version.clear();
                l.programs[0].counters[0].count_bits = 16;
                for i in 0..7000 {
                    l.programs[0].counters.push(CounterLayout {
                        name: format!("c{i}"),
                        rate: 1.0,
                        count_bits: 16,
                    });
                }
            },
            "entries, over",
        ),
    ];
    for (break_it, reason) in cases {
        let mut l = layout();
        break_it(&mut l);
        let e = l.validate().unwrap_err().to_string();
        assert!(e.contains(reason), "{reason}: {e}");
    }
    let json = serde_json::to_vec(&layout()).unwrap();
    assert_eq!(Layout::from_json(&json).unwrap(), layout());
    let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    value["programs"][0]["counters"][0]["bits"] = 1.into();
    assert!(Layout::from_json(value.to_string().as_bytes()).is_err());
}

#[test]
fn a_program_config_becomes_a_program_layout() {
    let config = crate::UploadConfig::parse(include_bytes!(
        "../../../../../config-schema/example-config.json"
    ))
    .unwrap();
    let rustc = config.program("rustc").unwrap();
    let layout = ProgramLayout::from_program_config(
        rustc,
        vec!["1.95".into()],
        |name| if name.contains("/outcome:") { 8 } else { 0 },
        &["rustc/outcome:ice".into(), "not/there".into()],
    );
    assert_eq!(layout.by_version, ["rustc/outcome:ice"]);
    let rate_and_bits = |name: &str| {
        let counter = layout.counters.iter().find(|c| c.name == name).unwrap();
        (counter.rate, counter.count_bits)
    };
    assert_eq!(rate_and_bits("rustc/lint:dead_code:warn"), (0.5, 0));
    assert_eq!(rate_and_bits("rustc/outcome:ice"), (1.0, 8));
    let expanded: usize = rustc
        .counters
        .iter()
        .map(|c| crate::config::expand_pattern(&c.name).unwrap().len())
        .sum();
    assert_eq!(layout.counters.len(), expanded);
}

/// What the plain mode's merge would publish for the same reports, computed directly, to
/// check that the vector's sums mean the same.
fn reference(layout: &Layout, reports: &[Report]) -> BTreeMap<String, ProgramSums> {
    let mut out = BTreeMap::new();
    for p in &layout.programs {
        let mut sums = ProgramSums::default();
        let expanded = expand(p).unwrap();
        let buckets = version_buckets(p);
        for b in &buckets {
            sums.versions.insert((*b).into(), 0);
        }
        for os in &layout.os {
            sums.os.insert(os.clone(), 0);
        }
        for arch in &layout.arch {
            sums.arch.insert(arch.clone(), 0);
        }
        for (name, _, bits) in &expanded.counters {
            sums.counters.insert(
                name.clone(),
                CounterSums {
                    total: (*bits > 0).then_some(0),
                    ..CounterSums::default()
                },
            );
        }
        for c in &p.by_version {
            for b in &buckets {
                sums.by_version
                    .entry((*b).into())
                    .or_default()
                    .insert(c.clone(), 0);
            }
        }
        for r in reports {
            let sections: Vec<_> = r
                .programs
                .iter()
                .filter(|s| {
                    s.program == p.name
                        && layout.os.contains(&s.os)
                        && layout.arch.contains(&s.arch)
                })
                .collect();
            if sections.is_empty() {
                continue;
            }
            sums.reports += 1;
            for (b, n) in sums.versions.iter_mut() {
                if sections.iter().any(|s| bucket_of(p, &s.version) == b) {
                    *n += 1;
                }
            }
            for (os, n) in sums.os.iter_mut() {
                if sections.iter().any(|s| &s.os == os) {
                    *n += 1;
                }
            }
            for (arch, n) in sums.arch.iter_mut() {
                if sections.iter().any(|s| &s.arch == arch) {
                    *n += 1;
                }
            }
            for (name, rate, bits) in &expanded.counters {
                if r.x > *rate {
                    continue;
                }
                let c = sums.counters.get_mut(name).unwrap();
                c.of += 1;
                let sum = sections
                    .iter()
                    .filter_map(|s| s.counters.get(name))
                    .fold(0u64, |a, c| a.saturating_add(*c));
                if sum > 0 {
                    c.reports_with += 1;
                }
                if let Some(total) = &mut c.total {
                    *total += sum.min((1 << bits) - 1);
                }
                if p.by_version.contains(name) {
                    for b in &buckets {
                        let in_bucket = sections
                            .iter()
                            .filter(|s| bucket_of(p, &s.version) == *b)
                            .filter_map(|s| s.counters.get(name))
                            .fold(0u64, |a, c| a.saturating_add(*c));
                        if in_bucket > 0 {
                            *sums.by_version.get_mut(*b).unwrap().get_mut(name).unwrap() += 1;
                        }
                    }
                }
            }
        }
        out.insert(p.name.clone(), sums);
    }
    out
}

fn arb_section() -> impl Strategy<Value = ProgramReport> {
    (
        prop::sample::select(vec!["rustc", "go", "cargo"]),
        prop::sample::select(vec![
            "1.94.0",
            "1.95.2",
            "1.96.0-beta.1",
            "go1.22.1",
            "unknown",
        ]),
        prop::sample::select(vec!["linux", "macos", "windows"]),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "rustc/outcome:ok",
                "rustc/outcome:ice",
                "rustc/lint:dead_code:warn",
                "go/subcommand:build",
                "rustc/not-in-layout",
            ]),
            prop_oneof![Just(0u64), 1u64..4, 5u64..20, Just(u64::MAX)],
            0..5,
        ),
    )
        .prop_map(|(program, version, os, counters)| ProgramReport {
            program: program.into(),
            version: version.into(),
            os: os.into(),
            arch: "x86_64".into(),
            counters: counters.into_iter().map(|(n, c)| (n.into(), c)).collect(),
        })
}

proptest! {
    /// The sum of many weeks' vectors reads back as what the plain mode would publish for
    /// the same weeks: the layout loses nothing a chart needs and invents nothing.
    #[test]
    fn summed_vectors_read_back_as_the_plain_merge(
        weeks in prop::collection::vec(
            (0.01f64..1.0, prop::collection::vec(arb_section(), 1..4)), 1..30)
    ) {
        let layout = layout();
        let reports: Vec<Report> = weeks
            .into_iter()
            .map(|(x, sections)| report(x, sections))
            .collect();
        let mut sums = vec![0u128; layout.len()];
        for r in &reports {
            let v = layout.measurement(r);
            prop_assert!(v.iter().all(|b| *b <= 1));
            for (s, b) in sums.iter_mut().zip(v) {
                *s += b;
            }
        }
        let got = layout.interpret(&sums).unwrap();
        let want = reference(&layout, &reports);
        prop_assert_eq!(got, want);
    }
}
