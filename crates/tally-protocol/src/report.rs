//! The weekly report: one installation-week of counts.
//!
//! The client writes a local copy holding everything, and, in mode `on`, an upload copy holding
//! only what the verified config allows. Both have this shape (schema:
//! `config-schema/report.schema.json`):
//!
//! ```json
//! {
//!   "week": "2026-11-16",
//!   "x": 0.4231,
//!   "config_version": 3,
//!   "programs": [
//!     { "program": "cargo", "version": "1.95.0", "os": "linux", "arch": "x86_64",
//!       "counters": { "cargo/invocations": 12, "cargo/subcommand:build": 9 } }
//!   ]
//! }
//! ```
//!
//! Privacy promise: a report holds no identifier and no time finer than its week's first day.
//! `x` is drawn afresh for every report, so it links nothing across weeks.
//!
//! Parsing promises, beyond the schema's shape: `x` is read exactly (serde_json's
//! `float_roundtrip`: the f64 parsed is the one nearest the digits sent, so a report re-sent or
//! re-read has the same `x` to the bit), a report has at least one section, no two sections
//! share program, version, OS and arch, and no counter name appears twice in a section (JSON
//! allows duplicate keys; serde would silently keep the last). The last two the JSON Schema
//! cannot express.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::Day;

/// One installation-week of counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// First day of the week the counts were made in (weeks are [`crate::WEEK_DAYS`] long).
    pub week: Day,
    /// The report's random number, uniform in `(0, 1)`, drawn once per report; the server
    /// refuses any other value.
    #[cfg_attr(test, schemars(extend("exclusiveMinimum" = 0, "exclusiveMaximum" = 1)))]
    pub x: f64,
    /// The version of the config the upload copy was filtered by; `None` in a local copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<u64>,
    /// One section per (program, version, os, arch) seen during the week; at least one, and no
    /// two with the same four.
    #[serde(deserialize_with = "sections")]
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub programs: Vec<ProgramReport>,
}

/// The counts of one program version on one OS and architecture during the week.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProgramReport {
    /// Program name (`cargo`, `rustc`, `rustfmt`, `cargo-fmt`, `go`, `gofmt`, or a tool that
    /// counts through the `tally-counter` library): 1 to 64 lowercase ASCII letters, digits,
    /// `-` and `_`, starting with a letter or digit (`tally_protocol::is_program_name`).
    #[cfg_attr(test, schemars(regex(pattern = crate::program::PROGRAM_NAME_REGEX)))]
    pub program: String,
    /// The tool's version as tally read it (`1.95.0`, `go1.19.8`, `unknown`).
    pub version: String,
    /// Rust's `std::env::consts::OS` name.
    pub os: String,
    /// Rust's `std::env::consts::ARCH` name.
    pub arch: String,
    /// Counter name to count. Names come from tally's fixed vocabulary (`tally-grammar`); each
    /// appears once.
    #[serde(deserialize_with = "unique_counters")]
    pub counters: BTreeMap<String, u64>,
}

/// What tells a report's sections apart: (program, version, os, arch), the order they are
/// sorted in.
pub type SectionKey = (String, String, String, String);

impl From<(SectionKey, BTreeMap<String, u64>)> for ProgramReport {
    fn from(((program, version, os, arch), counters): (SectionKey, BTreeMap<String, u64>)) -> Self {
        ProgramReport {
            program,
            version,
            os,
            arch,
            counters,
        }
    }
}

/// The `programs` list: refused when empty, when a program name breaks the rule
/// ([`crate::is_program_name`]) or when two sections have the same key.
fn sections<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ProgramReport>, D::Error> {
    let sections = Vec::<ProgramReport>::deserialize(d)?;
    if sections.is_empty() {
        return Err(D::Error::custom(
            "programs is empty; a report has at least one section",
        ));
    }
    let mut seen = BTreeSet::new();
    for s in &sections {
        if !crate::is_program_name(&s.program) {
            return Err(D::Error::custom(format_args!(
                "program {:?} is not 1 to 64 lowercase ASCII letters, digits, `-` and `_` \
                 starting with a letter or digit",
                s.program.chars().take(80).collect::<String>()
            )));
        }
        if !seen.insert((&s.program, &s.version, &s.os, &s.arch)) {
            return Err(D::Error::custom(
                "two sections of programs have the same program, version, os and arch",
            ));
        }
    }
    Ok(sections)
}

/// A `counters` map, refused when a name appears twice.
fn unique_counters<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
    struct Counters;
    impl<'de> Visitor<'de> for Counters {
        type Value = BTreeMap<String, u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of counter names to non-negative integer counts")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut counters = BTreeMap::new();
            while let Some((name, count)) = map.next_entry::<String, u64>()? {
                if counters.contains_key(&name) {
                    return Err(A::Error::custom(format_args!(
                        "counter {name:?} appears twice in one section"
                    )));
                }
                counters.insert(name, count);
            }
            Ok(counters)
        }
    }
    d.deserialize_map(Counters)
}

/// Why a report body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("report is {0} bytes, over the {max} byte limit", max = crate::MAX_REPORT_BYTES)]
    TooLarge(usize),
    #[error("report is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("report x is {0}, not in (0, 1)")]
    BadX(f64),
}

impl Report {
    /// Parses a report body and checks its shape (size, JSON, `x` in `(0, 1)`). Whether its
    /// contents are allowed is the server's business (it knows the config). Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Report, ReportError> {
        if bytes.len() > crate::MAX_REPORT_BYTES {
            return Err(ReportError::TooLarge(bytes.len()));
        }
        let report: Report =
            serde_json::from_slice(bytes).map_err(|e| ReportError::Json(e.to_string()))?;
        if !(report.x > 0.0 && report.x < 1.0) {
            return Err(ReportError::BadX(report.x));
        }
        Ok(report)
    }

    /// The canonical serialized form (pretty JSON, keys in a fixed order, trailing newline).
    /// `tally preview` prints exactly these bytes and the uploader sends exactly these bytes.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a Report always serializes");
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config-schema/example-report.json");

    #[test]
    fn example_report_round_trips() {
        let report = Report::parse(EXAMPLE.as_bytes()).unwrap();
        let again = Report::parse(&report.to_canonical_json()).unwrap();
        assert_eq!(report, again);
    }

    #[test]
    fn rejects_bad_reports() {
        assert!(matches!(
            Report::parse(&vec![b' '; 200 * 1024]),
            Err(ReportError::TooLarge(_))
        ));
        let bad_x = EXAMPLE.replacen("0.4231", "1.5", 1);
        assert!(matches!(
            Report::parse(bad_x.as_bytes()),
            Err(ReportError::BadX(_))
        ));
        let extra = EXAMPLE.replacen("{", "{\"hostname\": \"me\",", 1);
        assert!(Report::parse(extra.as_bytes()).is_err());
        let negative = EXAMPLE.replacen(": 12", ": -12", 1);
        assert!(Report::parse(negative.as_bytes()).is_err());
    }

    /// What JSON allows and the schema's shape cannot rule out, each refused with its reason.
    #[test]
    fn refuses_empty_duplicate_and_twice_counted() {
        let report = Report::parse(EXAMPLE.as_bytes()).unwrap();
        let cases = [
            (
                EXAMPLE.replacen(
                    "\"cargo/invocations\": 12,",
                    "\"cargo/invocations\": 12, \"cargo/invocations\": 1,",
                    1,
                ),
                "appears twice",
            ),
            (
                {
                    let mut twice = report.clone();
                    twice.programs.push(twice.programs[0].clone());
                    String::from_utf8(twice.to_canonical_json()).unwrap()
                },
                "same program, version, os and arch",
            ),
            (
                {
                    let mut empty = report.clone();
                    empty.programs.clear();
                    String::from_utf8(empty.to_canonical_json()).unwrap()
                },
                "programs is empty",
            ),
        ];
        for (text, want) in cases {
            match Report::parse(text.as_bytes()) {
                Err(ReportError::Json(why)) => assert!(why.contains(want), "{why}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        // Sections that differ in any one of the four are distinct.
        let mut two = report.clone();
        let mut other = two.programs[0].clone();
        other.arch = "aarch64".into();
        two.programs.push(other);
        assert_eq!(Report::parse(&two.to_canonical_json()).unwrap(), two);
    }

    /// `x` comes back to the bit from its JSON text, for any f64 in (0, 1): the server keys and
    /// stores by it, and the client re-reads its own reports.
    #[test]
    fn x_round_trips_exactly() {
        for x in [
            0.9999999999999999,
            1.0 - f64::EPSILON / 2.0,
            f64::MIN_POSITIVE,
            5e-324,
            1e-300,
            0.1,
            0.4231,
        ] {
            let mut report = Report::parse(EXAMPLE.as_bytes()).unwrap();
            report.x = x;
            let again = Report::parse(&report.to_canonical_json()).unwrap();
            assert_eq!(again.x.to_bits(), x.to_bits(), "{x:e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn random_x_round_trips_exactly(bits in 1u64..0x3ff0_0000_0000_0000) {
            let x = f64::from_bits(bits);
            let mut report = Report::parse(EXAMPLE.as_bytes()).unwrap();
            report.x = x;
            let again = Report::parse(&report.to_canonical_json()).unwrap();
            proptest::prop_assert_eq!(again.x.to_bits(), bits, "{:e}", x);
        }

        #[test]
        fn uniform_x_round_trips_exactly(n in 1u64..(1 << 53)) {
            // What the client draws: a multiple of 2^-53.
            let x = n as f64 / (1u64 << 53) as f64;
            let mut report = Report::parse(EXAMPLE.as_bytes()).unwrap();
            report.x = x;
            let again = Report::parse(&report.to_canonical_json()).unwrap();
            proptest::prop_assert_eq!(again.x.to_bits(), x.to_bits(), "{:e}", x);
        }
    }
}
