//! Keeps `config-schema/*.schema.json` and the Rust types in step.
//!
//! Three promises, each a test below:
//! 1. The committed schemas are exactly what `schemars` generates from the types today, so a
//!    field added, renamed or re-typed in Rust without regenerating the schema fails CI.
//!    Regenerate with `TALLY_BLESS_SCHEMAS=1 cargo test -p tally-protocol schema`.
//! 2. The committed examples validate against the schemas and parse in Rust.
//! 3. Both directions agree on many generated documents: whatever Rust accepts, the schema
//!    accepts, and whatever the schema accepts, Rust accepts (for the config, except a semver
//!    range the schema cannot express). Hand-picked invalid documents are refused by both.
//!    What JSON Schema cannot express (duplicate keys in an object, two report sections with
//!    the same program, version, os and arch) Rust refuses alone: `report.rs` tests it. The
//!    private-aggregation section has its own such rules ([`rust_only`]), each shown refused by
//!    Rust below.

use std::path::PathBuf;

use proptest::prelude::*;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::config::aggregation::{AggregationConfig, AggregationConfigError, VdafParams};
use crate::config::layout::{CounterLayout, Layout, LayoutError, ProgramLayout};
use crate::config::{ConfigError, expand_pattern};
use crate::{Report, UploadConfig};

const CONFIG_SCHEMA_FILE: &str = "upload-config.schema.json";
const REPORT_SCHEMA_FILE: &str = "report.schema.json";

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config-schema")
}

fn generate<T: schemars::JsonSchema>() -> Value {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    serde_json::to_value(schema).expect("a generated schema is JSON")
}

fn committed(file: &str) -> Value {
    let path = schema_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("the committed schema is a valid draft 2020-12 schema")
}

fn config_validator() -> jsonschema::Validator {
    validator(&committed(CONFIG_SCHEMA_FILE))
}

fn report_validator() -> jsonschema::Validator {
    validator(&committed(REPORT_SCHEMA_FILE))
}

fn example(file: &str) -> Value {
    committed(file)
}

#[test]
fn committed_schemas_match_the_rust_types() {
    let bless = tally_env::var_os(tally_env::TALLY_BLESS_SCHEMAS).is_some_and(|v| v == "1");
    for (file, generated) in [
        (CONFIG_SCHEMA_FILE, generate::<UploadConfig>()),
        (REPORT_SCHEMA_FILE, generate::<Report>()),
    ] {
        let path = schema_dir().join(file);
        if bless {
            let mut text = serde_json::to_string_pretty(&generated).unwrap();
            text.push('\n');
            std::fs::write(&path, text).unwrap();
        }
        assert_eq!(
            committed(file),
            generated,
            "{} has drifted from the Rust types; regenerate it with \
             `TALLY_BLESS_SCHEMAS=1 cargo test -p tally-protocol schema` and review the diff",
            path.display()
        );
    }
}

#[test]
fn committed_schemas_declare_draft_2020_12() {
    for file in [CONFIG_SCHEMA_FILE, REPORT_SCHEMA_FILE] {
        assert_eq!(
            committed(file)["$schema"],
            "https://json-schema.org/draft/2020-12/schema",
            "{file}"
        );
    }
}

#[test]
fn examples_validate_against_the_schemas_and_parse() {
    let config = example("example-config.json");
    assert!(config_validator().is_valid(&config));
    let plain = UploadConfig::parse(config.to_string().as_bytes()).unwrap();
    assert_eq!(plain.aggregation, None);
    // Without the section, a config serialises exactly as before the section existed.
    assert!(
        !serde_json::to_string(&plain)
            .unwrap()
            .contains("aggregation")
    );

    let private = example("example-config-aggregation.json");
    assert!(config_validator().is_valid(&private));
    let parsed = UploadConfig::parse(private.to_string().as_bytes()).unwrap();
    let section = parsed
        .aggregation
        .as_ref()
        .expect("the example has a section");
    assert_eq!(
        section.vdaf,
        VdafParams::sum_vec(section.layout.len() as u32)
    );
    // Apart from the section (and its version), it is the plain example.
    let mut without = private.clone();
    without.as_object_mut().unwrap().remove("aggregation");
    without["version"] = config["version"].clone();
    assert_eq!(without, config);

    let report = example("example-report.json");
    assert!(report_validator().is_valid(&report));
    Report::parse(report.to_string().as_bytes()).unwrap();
}

/// Applies `edit` to a copy of `doc` at the JSON pointer `pointer`.
fn with(doc: &Value, pointer: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut doc = doc.clone();
    edit(
        doc.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("no {pointer} in example")),
    );
    doc
}

fn without(doc: &Value, parent: &str, key: &str) -> Value {
    with(doc, parent, |v| {
        v.as_object_mut().unwrap().remove(key);
    })
}

#[test]
fn invalid_configs_are_refused_by_both() {
    let good = example("example-config.json");
    let set = |pointer: &str, value: Value| with(&good, pointer, |v| *v = value);
    let cases = [
        ("sample_rate above 1", set("/sample_rate", json!(1.5))),
        ("sample_rate negative", set("/sample_rate", json!(-0.1))),
        ("rate above 1", set("/programs/0/counters/0/rate", json!(2))),
        (
            "rate as string",
            set("/programs/0/counters/0/rate", json!("1")),
        ),
        ("version negative", set("/version", json!(-1))),
        ("version fractional", set("/version", json!(1.5))),
        ("expires not a day", set("/expires", json!("2027-13-01"))),
        (
            "expires with time",
            set("/expires", json!("2027-01-01T00:00:00Z")),
        ),
        ("os not a list", set("/os", json!("linux"))),
        (
            "program without counters",
            without(&good, "/programs/0", "counters"),
        ),
        ("missing expires", without(&good, "", "expires")),
        ("missing version", without(&good, "", "version")),
        (
            "empty alternative",
            set("/programs/0/counters/1/name", json!("cargo/x:{a,,b}")),
        ),
        (
            "text after brace",
            set("/programs/0/counters/1/name", json!("cargo/x:{a,b}c")),
        ),
        (
            "nested braces",
            set("/programs/0/counters/1/name", json!("cargo/x:{a,{b}}")),
        ),
        (
            "empty chart name",
            set("/programs/0/counters/1/chart", json!("")),
        ),
        (
            "chart name not a string",
            set("/programs/0/counters/1/chart", json!(7)),
        ),
        (
            "empty counter name",
            set("/programs/0/counters/1/name", json!("")),
        ),
        ("empty program name", set("/programs/0/name", json!(""))),
        (
            "program name with a capital",
            set("/programs/0/name", json!("Cargo")),
        ),
        (
            "program name a path",
            set("/programs/0/name", json!("/usr/bin/cargo")),
        ),
        (
            "program name too long",
            set("/programs/0/name", json!("a".repeat(65))),
        ),
        ("not an object", json!([1, 2, 3])),
    ];
    let schema = config_validator();
    for (why, doc) in cases {
        assert!(
            !schema.is_valid(&doc),
            "schema accepted a config with {why}"
        );
        assert!(
            UploadConfig::parse(doc.to_string().as_bytes()).is_err(),
            "Rust accepted a config with {why}"
        );
    }
    // The one thing only Rust can check: a versions string that is not a semver range.
    let bad_range = set("/programs/0/versions", json!(">=banana"));
    assert!(matches!(
        UploadConfig::parse(bad_range.to_string().as_bytes()),
        Err(ConfigError::BadVersions { .. })
    ));
}

/// Invalid aggregation sections the schema can tell: refused by both.
#[test]
fn invalid_aggregation_sections_are_refused_by_both() {
    let good = example("example-config-aggregation.json");
    let set = |pointer: &str, value: Value| {
        with(&good, &format!("/aggregation{pointer}"), |v| *v = value)
    };
    let add = |pointer: &str, key: &str, value: Value| {
        with(&good, &format!("/aggregation{pointer}"), |v| {
            v.as_object_mut().unwrap().insert(key.to_string(), value);
        })
    };
    let cases = [
        (
            "an unknown field",
            add("", "collector", json!("https://c.example/")),
        ),
        ("an unknown layout field", add("/layout", "extra", json!(1))),
        (
            "an unknown counter field",
            add("/layout/programs/0/counters/0", "bits", json!(1)),
        ),
        ("another protocol", set("/protocol", json!("dap-13"))),
        (
            "a leader that is not a URL",
            set("/leader", json!("leader.example")),
        ),
        (
            "an ftp helper",
            set("/helper", json!("ftp://helper.example/")),
        ),
        (
            "credentials in the leader",
            set("/leader", json!("https://u:p@leader.example/")),
        ),
        (
            "a query in the helper",
            set("/helper", json!("https://helper.example/?x=1")),
        ),
        (
            "a short task ID",
            set("/task_id", json!("8BY0RzZMzxvA46_8")),
        ),
        (
            "a padded task ID",
            set(
                "/task_id",
                json!("8BY0RzZMzxvA46_8ymhzycOB9krN-QIGYvg_RsByGec="),
            ),
        ),
        ("2-bit entries", set("/vdaf/bits", json!(2))),
        ("another VDAF", set("/vdaf/type", json!("Prio3Histogram"))),
        ("a zero length", set("/vdaf/length", json!(0))),
        (
            "a length over the maximum",
            set("/vdaf/length", json!(100_001)),
        ),
        ("a zero time precision", set("/time_precision", json!(0))),
        (
            "a time precision over a day",
            set("/time_precision", json!(172_800)),
        ),
        ("a zero minimum batch", set("/min_batch_size", json!(0))),
        ("no layout", without(&good, "/aggregation", "layout")),
        ("no programs", set("/layout/programs", json!([]))),
        ("an empty OS", set("/layout/os", json!([""]))),
        ("an OS twice", set("/layout/os", json!(["linux", "linux"]))),
        (
            "a bad program name",
            set("/layout/programs/0/name", json!("Cargo")),
        ),
        (
            "a version bucket twice",
            set("/layout/programs/0/versions", json!(["1.95", "1.95"])),
        ),
        (
            "a malformed pattern",
            set(
                "/layout/programs/0/counters/0/name",
                json!("cargo/x:{a,,b}"),
            ),
        ),
        (
            "a zero rate",
            set("/layout/programs/1/counters/2/rate", json!(0.0)),
        ),
        (
            "a rate above 1",
            set("/layout/programs/1/counters/2/rate", json!(1.5)),
        ),
        (
            "17 count bits",
            set("/layout/programs/1/counters/1/count_bits", json!(17)),
        ),
        ("a section that is not an object", set("", json!("dap"))),
    ];
    let schema = config_validator();
    for (why, doc) in cases {
        assert!(
            !schema.is_valid(&doc),
            "schema accepted a section with {why}"
        );
        assert!(
            UploadConfig::parse(doc.to_string().as_bytes()).is_err(),
            "Rust accepted a section with {why}"
        );
    }
    // What only Rust can check: each is refused by Rust, with the reason.
    let rust_alone = [
        (
            "plain http to another host",
            set("/leader", json!("http://leader.example/")),
            "loopback",
        ),
        (
            "the same aggregator twice",
            set("/helper", json!("https://leader.example")),
            "same URL",
        ),
        (
            "a length that is not the layout's",
            set("/vdaf/length", json!(84)),
            "layout has 83",
        ),
        (
            "a chunk longer than the vector",
            set("/vdaf/chunk_length", json!(90)),
            "chunk_length",
        ),
        (
            "a precision that does not divide a day",
            set("/time_precision", json!(7)),
            "divisor",
        ),
        (
            "the implicit bucket listed",
            set("/layout/programs/0/versions", json!(["other"])),
            "implicit",
        ),
        (
            "a counter twice",
            set(
                "/layout/programs/0/counters",
                json!([{"name": "cargo/a"}, {"name": "cargo/a"}]),
            ),
            "twice",
        ),
        (
            "a program twice",
            set("/layout/programs/1/name", json!("cargo")),
            "twice",
        ),
        (
            "an unknown crossing",
            set("/layout/programs/1/by_version", json!(["rustc/nothing"])),
            "by_version",
        ),
    ];
    for (why, doc, says) in rust_alone {
        assert!(
            schema.is_valid(&doc),
            "the schema can say {why} after all: move it up"
        );
        let e = UploadConfig::parse(doc.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Aggregation(a) if rust_only(a)),
            "{why}: {e}"
        );
        assert!(e.to_string().contains(says), "{why}: {e}");
    }
}

/// The section's rules JSON Schema cannot state (or states only in part): hosts in URLs, two
/// parts agreeing, divisors, duplicates and cross-references in the layout.
fn rust_only(e: &AggregationConfigError) -> bool {
    use AggregationConfigError as E;
    matches!(
        e,
        E::Url { .. }
            | E::SameAggregator
            | E::Vdaf(_)
            | E::LengthMismatch { .. }
            | E::TimePrecision(_)
            | E::Layout(
                LayoutError::BadBucket { .. }
                    | LayoutError::DuplicateProgram(_)
                    | LayoutError::DuplicateCounter { .. }
                    | LayoutError::UnknownByVersion { .. }
                    | LayoutError::TooLong(_)
            )
    )
}

#[test]
fn invalid_reports_are_refused_by_both() {
    let good = example("example-report.json");
    let set = |pointer: &str, value: Value| with(&good, pointer, |v| *v = value);
    let add = |pointer: &str, key: &str, value: Value| {
        with(&good, pointer, |v| {
            v.as_object_mut().unwrap().insert(key.to_string(), value);
        })
    };
    let cases = [
        ("x zero", set("/x", json!(0))),
        ("x one", set("/x", json!(1))),
        ("x above one", set("/x", json!(1.5))),
        ("x negative", set("/x", json!(-0.5))),
        ("x missing", without(&good, "", "x")),
        ("week missing", without(&good, "", "week")),
        (
            "week with a time",
            set("/week", json!("2026-11-16T10:00:00Z")),
        ),
        ("week not a day", set("/week", json!("2026-02-30"))),
        (
            "negative count",
            set("/programs/0/counters/cargo~1invocations", json!(-12)),
        ),
        (
            "fractional count",
            set("/programs/0/counters/cargo~1invocations", json!(1.5)),
        ),
        (
            "count as string",
            set("/programs/0/counters/cargo~1invocations", json!("12")),
        ),
        ("an identifier field", add("", "hostname", json!("me"))),
        (
            "an identifier in a section",
            add("/programs/0", "user", json!("me")),
        ),
        ("section without os", without(&good, "/programs/0", "os")),
        (
            "program name with a space",
            set("/programs/0/program", json!("cargo fmt")),
        ),
        (
            "program name a path",
            set("/programs/0/program", json!("../cargo")),
        ),
        ("config_version negative", set("/config_version", json!(-1))),
        ("programs not a list", set("/programs", json!({}))),
        ("programs empty", set("/programs", json!([]))),
    ];
    let schema = report_validator();
    for (why, doc) in cases {
        assert!(
            !schema.is_valid(&doc),
            "schema accepted a report with {why}"
        );
        assert!(
            Report::parse(doc.to_string().as_bytes()).is_err(),
            "Rust accepted a report with {why}"
        );
    }
}

// ---- generated documents -------------------------------------------------------------------

fn day_strategy() -> impl Strategy<Value = String> {
    (2000i32..2100, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

fn program_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,15}"
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9/_:.-]{0,15}"
}

fn counter_pattern_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        name_strategy(),
        (
            "[a-z/:_-]{0,10}",
            proptest::collection::vec("[a-z0-9_.-]{1,6}", 1..5)
        )
            .prop_map(|(prefix, alts)| format!("{prefix}{{{}}}", alts.join(","))),
    ]
}

fn versions_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (0u64..3, 0u64..100, 0u64..10).prop_map(|(a, b, c)| format!(">={a}.{b}.{c}")),
        (0u64..3, 0u64..100).prop_map(|(a, b)| format!("{a}.{b}.*")),
        (0u64..3, 0u64..100, 0u64..100)
            .prop_map(|(a, b, c)| format!(">={a}.{b}.0, <{a}.{}.0", b + c + 1)),
    ]
}

fn rate_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0]
}

/// A valid layout: distinct programs, counters, buckets; `by_version` among the counters.
fn valid_layout_strategy() -> impl Strategy<Value = Layout> {
    let counter = (
        counter_pattern_strategy(),
        prop_oneof![Just(1.0), (1u32..=1000).prop_map(|n| f64::from(n) / 1000.0)],
        0u8..=16,
    )
        .prop_map(|(name, rate, count_bits)| CounterLayout {
            name,
            rate,
            count_bits,
        });
    let program = (
        program_strategy(),
        proptest::collection::btree_set("[0-9]\\.[0-9]{1,2}", 0..4),
        proptest::collection::vec(counter, 1..4),
        any::<bool>(),
    )
        .prop_map(|(name, versions, counters, cross)| {
            let by_version = if cross {
                expand_pattern(&counters[0].name).unwrap()[..1].to_vec()
            } else {
                vec![]
            };
            ProgramLayout {
                name,
                versions: versions.into_iter().collect(),
                counters,
                by_version,
            }
        });
    (
        proptest::collection::btree_set("[a-z0-9_]{1,8}", 0..4),
        proptest::collection::btree_set("[a-z0-9_]{1,8}", 0..4),
        proptest::collection::vec(program, 1..3),
    )
        .prop_map(|(os, arch, programs)| Layout {
            os: os.into_iter().collect(),
            arch: arch.into_iter().collect(),
            programs,
        })
        .prop_filter("a valid layout (distinct names once expanded)", |l| {
            l.validate().is_ok()
        })
}

/// A valid aggregation section around a valid layout.
fn valid_section_strategy() -> impl Strategy<Value = Value> {
    (
        valid_layout_strategy(),
        any::<[u8; 32]>(),
        prop::sample::select(vec![60u64, 3600, 86_400]),
        1u64..1000,
    )
        .prop_map(|(layout, task, time_precision, min_batch_size)| {
            let task_id: String = task
                .iter()
                .map(|b| format!("{b:08b}"))
                .collect::<String>()
                .as_bytes()
                .chunks(6)
                .map(|bits| {
                    let mut v = 0usize;
                    for (i, b) in bits.iter().enumerate() {
                        v |= usize::from(*b == b'1') << (5 - i);
                    }
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[v] as char
                })
                .collect();
            let section = AggregationConfig {
                protocol: "dap-09".into(),
                leader: "https://leader.example/".into(),
                helper: "http://127.0.0.1:8081/dap/".into(),
                task_id,
                vdaf: VdafParams::sum_vec(layout.len() as u32),
                time_precision,
                min_batch_size,
                layout,
            };
            section.validate().expect("a generated section is valid");
            serde_json::to_value(section).unwrap()
        })
}

fn valid_config_strategy() -> impl Strategy<Value = Value> {
    let counter = (
        counter_pattern_strategy(),
        rate_strategy(),
        proptest::option::of(name_strategy()),
    )
        .prop_map(|(name, rate, chart)| match chart {
            Some(chart) => json!({ "name": name, "rate": rate, "chart": chart }),
            None => json!({ "name": name, "rate": rate }),
        });
    let program = (program_strategy(), versions_strategy(), proptest::collection::vec(counter, 0..4))
        .prop_map(|(name, versions, counters)| {
            json!({ "name": name, "versions": versions, "counters": counters })
        });
    (
        any::<u64>(),
        day_strategy(),
        rate_strategy(),
        proptest::collection::vec("[a-z0-9_]{1,8}", 0..4),
        proptest::collection::vec("[a-z0-9_]{1,8}", 0..4),
        proptest::collection::vec(program, 0..4),
        proptest::option::weighted(0.3, valid_section_strategy()),
    )
        .prop_map(
            |(version, expires, sample_rate, os, arch, programs, section)| {
                let mut doc = json!({
                    "version": version, "expires": expires, "sample_rate": sample_rate,
                    "os": os, "arch": arch, "programs": programs,
                });
                if let Some(section) = section {
                    doc["aggregation"] = section;
                }
                doc
            },
        )
}

fn valid_report_strategy() -> impl Strategy<Value = Value> {
    let section = (
        program_strategy(),
        "[a-z0-9.-]{1,12}",
        "[a-z0-9_]{1,8}",
        "[a-z0-9_]{1,8}",
        proptest::collection::btree_map(name_strategy(), any::<u64>(), 0..6),
    )
        .prop_map(|(program, version, os, arch, counters)| {
            json!({ "program": program, "version": version, "os": os, "arch": arch,
                    "counters": counters })
        });
    (
        day_strategy(),
        (1u64..u64::from(u32::MAX)).prop_map(|n| n as f64 / f64::from(u32::MAX)),
        proptest::option::of(any::<u64>()),
        proptest::collection::vec(section, 1..4).prop_filter(
            "sections have distinct keys",
            |sections| {
                let keys: std::collections::BTreeSet<_> = sections
                    .iter()
                    .map(|s| (&s["program"], &s["version"], &s["os"], &s["arch"]))
                    .map(|(p, v, o, a)| format!("{p}{v}{o}{a}"))
                    .collect();
                keys.len() == sections.len()
            },
        ),
    )
        .prop_map(|(week, x, config_version, programs)| {
            let mut doc = json!({ "week": week, "x": x, "programs": programs });
            if let Some(v) = config_version {
                doc["config_version"] = json!(v);
            }
            doc
        })
}

/// A JSON value to drop into a document. Numbers that are integral but written as floats
/// (`2.0`) and integers beyond `u64` are left out: JSON Schema calls them integers while serde
/// refuses them, a known and harmless gap (Rust, the stricter side, is what the server runs).
fn junk_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3.0f64..3.0)
            .prop_filter("non-integral", |f| f.fract() != 0.0)
            .prop_map(Value::from),
        "[a-z0-9{},:. -]{0,12}".prop_map(Value::from),
        day_strategy().prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!(["linux"])),
    ]
}

/// Every JSON pointer inside `doc` (including the root's children, not the root itself).
fn pointers(doc: &Value, here: String, out: &mut Vec<String>) {
    match doc {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{here}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{here}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        _ => {}
    }
}

/// Replaces the value at a chosen pointer with junk, or removes it, or adds an unknown field.
fn mutate(doc: &Value, choice: usize, junk: Value, action: u8) -> Value {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let mut doc = doc.clone();
    if all.is_empty() {
        return junk;
    }
    let target = &all[choice % all.len()];
    let (parent, key) = target.rsplit_once('/').unwrap();
    match action % 3 {
        0 => *doc.pointer_mut(target).unwrap() = junk,
        1 => match doc
            .pointer_mut(if parent.is_empty() { "" } else { parent })
            .unwrap()
        {
            Value::Object(map) => {
                map.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
            Value::Array(items) => {
                items.remove(key.parse::<usize>().unwrap());
            }
            _ => unreachable!(),
        },
        _ => {
            if let Some(Value::Object(map)) = doc.pointer_mut(target) {
                map.insert("unexpected".into(), junk);
            } else if let Value::Object(map) = &mut doc {
                map.insert("unexpected".into(), junk);
            }
        }
    }
    doc
}

fn rust_accepts_config(doc: &Value) -> Result<(), ConfigError> {
    UploadConfig::parse(doc.to_string().as_bytes()).map(drop)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn generated_valid_configs_are_accepted_by_both(doc in valid_config_strategy()) {
        prop_assert!(config_validator().is_valid(&doc), "schema refused {doc}");
        prop_assert!(rust_accepts_config(&doc).is_ok(), "Rust refused {doc}");
    }

    #[test]
    fn generated_valid_reports_are_accepted_by_both(doc in valid_report_strategy()) {
        prop_assert!(report_validator().is_valid(&doc), "schema refused {doc}");
        let parsed = Report::parse(doc.to_string().as_bytes());
        prop_assert!(parsed.is_ok(), "Rust refused {doc}: {parsed:?}");
    }

    #[test]
    fn mutated_configs_get_the_same_verdict(
        doc in valid_config_strategy(), choice in any::<usize>(), junk in junk_strategy(),
        action in any::<u8>(),
    ) {
        let doc = mutate(&doc, choice, junk, action);
        let schema_ok = config_validator().is_valid(&doc);
        match rust_accepts_config(&doc) {
            Ok(()) => prop_assert!(schema_ok, "Rust accepted but schema refused {doc}"),
            // Semver ranges, and the section's rules in `rust_only`, are checked by Rust alone.
            Err(ConfigError::BadVersions { .. }) => {}
            Err(ConfigError::Aggregation(e)) if rust_only(&e) => {}
            Err(e) => prop_assert!(!schema_ok, "schema accepted but Rust refused ({e}) {doc}"),
        }
    }

    #[test]
    fn mutated_reports_get_the_same_verdict(
        doc in valid_report_strategy(), choice in any::<usize>(), junk in junk_strategy(),
        action in any::<u8>(),
    ) {
        let doc = mutate(&doc, choice, junk, action);
        let schema_ok = report_validator().is_valid(&doc);
        let rust = Report::parse(doc.to_string().as_bytes());
        prop_assert_eq!(schema_ok, rust.is_ok(), "schema {} Rust {:?} on {}", schema_ok, rust, doc);
    }

    /// The schema's counter-name regex and `expand_pattern` accept exactly the same names.
    #[test]
    fn counter_pattern_regex_matches_expand_pattern(name in "[a-b{},]{0,7}") {
        let doc = json!({
            "version": 1, "expires": "2030-01-01", "sample_rate": 1.0, "os": [], "arch": [],
            "programs": [{ "name": "p", "versions": "*", "counters": [{ "name": name, "rate": 1 }] }],
        });
        prop_assert_eq!(config_validator().is_valid(&doc), expand_pattern(&name).is_some());
    }
}
