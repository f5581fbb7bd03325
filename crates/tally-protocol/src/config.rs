//! The upload config: what a collector asks clients to send.
//!
//! A config is JSON (schema: `config-schema/upload-config.schema.json`), signed by the collector
//! with minisign. Nothing in it is trusted until `tally-config` has verified the signature; this
//! module only parses and checks its shape.
//!
//! ```json
//! {
//!   "version": 3,
//!   "expires": "2027-03-01",
//!   "sample_rate": 0.5,
//!   "os": ["linux", "macos"],
//!   "arch": ["x86_64", "aarch64"],
//!   "programs": [
//!     { "name": "cargo", "versions": ">=1.70.0",
//!       "counters": [ { "name": "cargo/subcommand:{build,test,other}", "rate": 1.0 } ] }
//!   ]
//! }
//! ```
//!
//! A counter pattern `prefix:{a,b,c}` stands for the three counters `prefix:a`, `prefix:b` and
//! `prefix:c` (a partition: its buckets are charted together). A report keeps a counter only if
//! the report's random `x` is at most the counter's `rate`, and is not sent at all if `x`
//! exceeds `sample_rate`. Because every report draws one `x`, smaller rates select nested
//! subsets of the reports that carry larger ones.
//!
//! A collector that chooses private aggregation adds the optional `aggregation` section
//! ([`aggregation::AggregationConfig`], with its measurement [`layout`]): then the client sends
//! each week as a DAP report to the two aggregators it names, and no plain report.

pub mod aggregation;
pub mod layout;

use std::collections::BTreeMap;

use semver::VersionReq;
use serde::{Deserialize, Serialize};

use crate::Day;

/// A collector's upload config, signed with minisign by the collector. In Rust, construct it
/// with `UploadConfig::parse`, which also checks the rules this schema cannot express.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct UploadConfig {
    /// Monotonic version. A client never accepts a lower version than one it has accepted
    /// before from the same key (rollback protection).
    pub version: u64,
    /// Last day on which the config may be used (freeze protection).
    pub expires: Day,
    /// Fraction of reports, in `[0, 1]`, that are uploaded at all.
    #[cfg_attr(test, schemars(range(min = 0.0, max = 1.0)))]
    pub sample_rate: f64,
    /// Operating systems whose reports are wanted (Rust's `std::env::consts::OS` names).
    pub os: Vec<String>,
    /// Architectures whose reports are wanted (Rust's `std::env::consts::ARCH` names).
    pub arch: Vec<String>,
    /// The programs wanted, each with its versions and counters.
    pub programs: Vec<ProgramConfig>,
    /// Private aggregation: when present, the client sends each week as a DAP report (secret
    /// shares for two aggregators, laid out as the section says) and no plain report. Absent:
    /// the plain mode, and the config is exactly what it was before the section existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<aggregation::AggregationConfig>,
}

/// What the collector wants of one program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct ProgramConfig {
    /// Program name: `cargo`, `rustc`, `rustfmt`, `cargo-fmt`, `go`, `gofmt`, or a tool that
    /// counts through the `tally-counter` library. 1 to 64 lowercase ASCII letters, digits,
    /// `-` and `_`, starting with a letter or digit (`tally_protocol::is_program_name`).
    #[cfg_attr(test, schemars(regex(pattern = crate::program::PROGRAM_NAME_REGEX)))]
    pub name: String,
    /// A semver range (`>=1.70.0`, `1.95.*`). Tool versions match by their numeric
    /// `major.minor.patch` (`go1.19.8` and `1.96.0-nightly` too); `unknown` matches nothing.
    pub versions: String,
    /// The counters wanted, each with its own rate.
    pub counters: Vec<CounterConfig>,
}

/// One counter, or one partition of counters, and the rate at which it is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct CounterConfig {
    /// A counter name, or a pattern `prefix:{a,b,c}`.
    #[cfg_attr(test, schemars(regex(pattern = COUNTER_PATTERN_REGEX)))]
    pub name: String,
    /// Fraction in `[0, 1]`: the counter is kept in a report whose `x` is at most this.
    #[cfg_attr(test, schemars(range(min = 0.0, max = 1.0)))]
    pub rate: f64,
    /// The chart this counter is collected for: the `id` of a chart in the collector's chart
    /// config, described on the collector's public `/config` page (`/config#<id>`). Optional:
    /// configs written before charts named their counters, or by hand, leave it out, and a
    /// counter needed by two charts appears once per chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub chart: Option<String>,
}

/// The language [`expand_pattern`] accepts, as a regular expression, for the JSON Schema: a
/// non-empty name without braces, or a brace-free prefix followed by `{alt,alt,...}` at the end
/// with non-empty, brace-free alternatives.
pub const COUNTER_PATTERN_REGEX: &str = r"^([^{}]+|[^{}]*\{[^{},]+(,[^{},]+)*\})$";

/// Why a config body was refused before its contents were used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("config is {0} bytes, over the {max} byte limit", max = crate::MAX_CONFIG_BYTES)]
    TooLarge(usize),
    #[error("config is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("config field {field} is {value}, outside [0, 1]")]
    RateOutOfRange { field: String, value: f64 },
    #[error("program {program}: versions {versions:?} is not a semver range: {reason}")]
    BadVersions {
        program: String,
        versions: String,
        reason: String,
    },
    #[error(
        "program name {0:?} is not 1 to 64 lowercase ASCII letters, digits, `-` and `_` starting with a letter or digit (e.g. \"cargo\", \"cargo-nextest\")"
    )]
    BadProgramName(String),
    #[error("program {program}: counter pattern {pattern:?} is malformed")]
    BadPattern { program: String, pattern: String },
    #[error("program {program}: counter {pattern:?} names an empty chart")]
    EmptyChart { program: String, pattern: String },
    #[error("{0}")]
    Aggregation(#[from] aggregation::AggregationConfigError),
}

impl UploadConfig {
    /// Parses and validates a config body. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<UploadConfig, ConfigError> {
        if bytes.len() > crate::MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge(bytes.len()));
        }
        let config: UploadConfig =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants a parsed config must satisfy.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_rate("sample_rate", self.sample_rate)?;
        for program in &self.programs {
            if !crate::is_program_name(&program.name) {
                return Err(ConfigError::BadProgramName(
                    program.name.chars().take(80).collect(),
                ));
            }
            VersionReq::parse(&program.versions).map_err(|e| ConfigError::BadVersions {
                program: program.name.clone(),
                versions: program.versions.clone(),
                reason: e.to_string(),
            })?;
            for counter in &program.counters {
                check_rate(
                    &format!("{}: {}.rate", program.name, counter.name),
                    counter.rate,
                )?;
                if counter.chart.as_deref() == Some("") {
                    return Err(ConfigError::EmptyChart {
                        program: program.name.clone(),
                        pattern: counter.name.clone(),
                    });
                }
                if expand_pattern(&counter.name).is_none() {
                    return Err(ConfigError::BadPattern {
                        program: program.name.clone(),
                        pattern: counter.name.clone(),
                    });
                }
            }
        }
        if let Some(section) = &self.aggregation {
            section.validate()?;
        }
        Ok(())
    }

    /// The config for `program`, if the collector wants it at all.
    pub fn program(&self, program: &str) -> Option<&ProgramConfig> {
        self.programs.iter().find(|p| p.name == program)
    }

    /// Whether a report section for this program, version, OS and arch is wanted.
    pub fn allows(&self, program: &str, version: &str, os: &str, arch: &str) -> bool {
        self.os.iter().any(|o| o == os)
            && self.arch.iter().any(|a| a == arch)
            && self
                .program(program)
                .is_some_and(|p| p.allows_version(version))
    }
}

impl ProgramConfig {
    /// Whether `version` is in this program's range. An unreadable version never is.
    pub fn allows_version(&self, version: &str) -> bool {
        VersionReq::parse(&self.versions).is_ok_and(|req| crate::version::matches(&req, version))
    }

    /// The charts each counter name is collected for (patterns expanded), in config order;
    /// counters without a chart are left out.
    pub fn counter_charts(&self) -> BTreeMap<String, Vec<String>> {
        let mut charts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for counter in &self.counters {
            let Some(chart) = &counter.chart else {
                continue;
            };
            for name in expand_pattern(&counter.name).unwrap_or_default() {
                let entry = charts.entry(name).or_default();
                if !entry.contains(chart) {
                    entry.push(chart.clone());
                }
            }
        }
        charts
    }

    /// Every counter name this program's config names, with its rate (patterns expanded).
    /// When a name appears twice, the larger rate wins.
    pub fn counter_rates(&self) -> BTreeMap<String, f64> {
        let mut rates = BTreeMap::new();
        for counter in &self.counters {
            for name in expand_pattern(&counter.name).unwrap_or_default() {
                let rate = rates.entry(name).or_insert(counter.rate);
                if counter.rate > *rate {
                    *rate = counter.rate;
                }
            }
        }
        rates
    }
}

fn check_rate(field: &str, value: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::RateOutOfRange {
            field: field.to_string(),
            value,
        })
    }
}

/// Expands `prefix:{a,b,c}` into `prefix:a`, `prefix:b`, `prefix:c`; a name without braces
/// stands for itself. Returns `None` for a malformed pattern (unbalanced or nested braces,
/// empty alternatives, text after the closing brace, an empty name).
pub fn expand_pattern(pattern: &str) -> Option<Vec<String>> {
    if pattern.is_empty() {
        return None;
    }
    let Some(open) = pattern.find('{') else {
        return (!pattern.contains('}')).then(|| vec![pattern.to_string()]);
    };
    let prefix = &pattern[..open];
    let rest = &pattern[open + 1..];
    let body = rest.strip_suffix('}')?;
    if body.contains(['{', '}']) || prefix.contains('}') {
        return None;
    }
    let names: Vec<String> = body
        .split(',')
        .map(|alt| format!("{prefix}{alt}"))
        .collect();
    if body.split(',').any(str::is_empty) {
        return None;
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config-schema/example-config.json");

    #[test]
    fn expands_partitions() {
        assert_eq!(
            expand_pattern("rustc/edition:{2018,2021,2024}").unwrap(),
            [
                "rustc/edition:2018",
                "rustc/edition:2021",
                "rustc/edition:2024"
            ]
        );
        assert_eq!(
            expand_pattern("cargo/invocations").unwrap(),
            ["cargo/invocations"]
        );
        for bad in ["", "a:{", "a:{}", "a:{b,}", "a:{b}c", "a:{b{c}}", "a}"] {
            assert_eq!(expand_pattern(bad), None, "{bad}");
        }
    }

    #[test]
    fn example_config_parses_and_filters() {
        let config = UploadConfig::parse(EXAMPLE.as_bytes()).unwrap();
        assert!(config.allows("cargo", "1.95.0", "linux", "x86_64"));
        assert!(!config.allows("cargo", "unknown", "linux", "x86_64"));
        assert!(!config.allows("cargo", "1.95.0", "plan9", "x86_64"));
        assert!(!config.allows("ghc", "9.4.0", "linux", "x86_64"));
        let rates = config.program("rustc").unwrap().counter_rates();
        assert!(rates.contains_key("rustc/edition:2021"));
    }

    #[test]
    fn chart_names_are_optional_and_travel_with_their_counters() {
        let config = UploadConfig::parse(EXAMPLE.as_bytes()).unwrap();
        let cargo = config.program("cargo").unwrap();
        assert_eq!(
            cargo.counter_charts()["cargo/subcommand:build"],
            ["cargo-subcommands"]
        );
        // An entry without a chart (a config from before chart names) still parses, and its
        // counters have no chart.
        assert!(!cargo.counter_charts().contains_key("cargo/invocations"));
        assert!(cargo.counters.iter().any(|c| c.chart.is_none()));
        // Serialised back, a counter without a chart has no `chart` key at all, so a config
        // written by this version is byte-compatible with one written before the field.
        let json = serde_json::to_string(&CounterConfig {
            name: "cargo/invocations".into(),
            rate: 1.0,
            chart: None,
        })
        .unwrap();
        assert_eq!(json, r#"{"name":"cargo/invocations","rate":1.0}"#);
        let empty = EXAMPLE.replacen("\"chart\": \"cargo-subcommands\"", "\"chart\": \"\"", 1);
        assert!(matches!(
            UploadConfig::parse(empty.as_bytes()),
            Err(ConfigError::EmptyChart { .. })
        ));
    }

    #[test]
    fn rejects_bad_configs() {
        let too_big = vec![b' '; crate::MAX_CONFIG_BYTES + 1];
        assert!(matches!(
            UploadConfig::parse(&too_big),
            Err(ConfigError::TooLarge(_))
        ));
        let rate = EXAMPLE.replacen("\"sample_rate\": 1.0", "\"sample_rate\": 1.5", 1);
        assert!(matches!(
            UploadConfig::parse(rate.as_bytes()),
            Err(ConfigError::RateOutOfRange { .. })
        ));
        assert!(UploadConfig::parse(b"{}").is_err());
        assert!(UploadConfig::parse(b"\xff\xfe").is_err());
    }
}
