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
//!    the same program, version, os and arch) Rust refuses alone: `report.rs` tests it.

use std::path::PathBuf;

use proptest::prelude::*;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

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
    UploadConfig::parse(config.to_string().as_bytes()).unwrap();

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
    )
        .prop_map(|(version, expires, sample_rate, os, arch, programs)| {
            json!({
                "version": version, "expires": expires, "sample_rate": sample_rate,
                "os": os, "arch": arch, "programs": programs,
            })
        })
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
            // Semver ranges are checked by Rust alone.
            Err(ConfigError::BadVersions { .. }) => {}
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
