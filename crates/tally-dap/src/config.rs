//! The private-aggregation section of the signed upload config: which two aggregators receive
//! the shares, the DAP task, the VDAF, and the measurement layout.
//!
//! When a verified config carries this section, the client sends DAP reports and no plain
//! report. Like the rest of the config it is JSON, signed by the collector; unknown fields are
//! refused, so a field a newer collector adds is never silently ignored by an older client.
//!
//! ```json
//! {
//!   "protocol": "dap-09",
//!   "leader": "https://leader.example/",
//!   "helper": "https://helper.example.org/dap/",
//!   "task_id": "8BY0RzZMzxvA46_8ymhzycOB9krN-QIGYvg_RsByGec",
//!   "vdaf": { "type": "Prio3SumVec", "bits": 1, "length": 58, "chunk_length": 9 },
//!   "time_precision": 86400,
//!   "min_batch_size": 100,
//!   "layout": { "os": ["linux"], "arch": ["x86_64"], "programs": [ … ] }
//! }
//! ```
//!
//! Beyond the shape, [`AggregationConfig::parse`] checks: the protocol is one this build speaks
//! ([`crate::draft::PROTOCOL`]), both URLs are absolute `https` (or `http` to a loopback
//! address, for tests and the local demo) and differ, the task ID is 32 bytes of base64url, the
//! VDAF's length is the layout's, the time precision divides a day, and the minimum batch size
//! is at least 1.

use serde::{Deserialize, Serialize};

use crate::draft::{self, VdafParams, messages::TaskId};
use crate::layout::Layout;

/// The private-aggregation section of the upload config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationConfig {
    /// The DAP draft both aggregators speak: `"dap-09"`.
    pub protocol: String,
    /// The leader's base URL: reports are uploaded to `{leader}tasks/{task_id}/reports`.
    pub leader: String,
    /// The helper's base URL, run by another organisation than the leader.
    pub helper: String,
    /// The DAP task ID, 32 bytes in unpadded base64url.
    pub task_id: String,
    /// The VDAF and its parameters.
    pub vdaf: VdafParams,
    /// Seconds; report times are rounded down to a multiple of it. A divisor of 86,400.
    pub time_precision: u64,
    /// The fewest reports a batch may be collected with: the collector's publication threshold,
    /// enforced by both aggregators.
    pub min_batch_size: u64,
    /// How a week's counters become the vector.
    pub layout: Layout,
}

/// Why a section was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AggregationConfigError {
    #[error("aggregation section is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("aggregation protocol {0:?} is not one this build speaks ({p})", p = draft::PROTOCOL)]
    Protocol(String),
    #[error("aggregation {field} URL {url:?}: {reason}")]
    Url {
        field: &'static str,
        url: String,
        reason: &'static str,
    },
    #[error("aggregation leader and helper are the same URL; they must be two parties")]
    SameAggregator,
    #[error("aggregation task_id {0:?} is not 32 bytes of unpadded base64url")]
    TaskId(String),
    #[error("aggregation vdaf: {0}")]
    Vdaf(String),
    #[error("aggregation vdaf.length is {vdaf}, but the layout has {layout} entries")]
    LengthMismatch { vdaf: u32, layout: usize },
    #[error("aggregation time_precision {0} is not a positive divisor of 86400 seconds")]
    TimePrecision(u64),
    #[error("aggregation min_batch_size must be at least 1")]
    MinBatchSize,
    #[error("aggregation layout: {0}")]
    Layout(#[from] crate::layout::LayoutError),
}

impl AggregationConfig {
    /// Parses and validates a section.
    pub fn parse(bytes: &[u8]) -> Result<AggregationConfig, AggregationConfigError> {
        let config: AggregationConfig = serde_json::from_slice(bytes)
            .map_err(|e| AggregationConfigError::Json(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot (see the module docs).
    pub fn validate(&self) -> Result<(), AggregationConfigError> {
        if self.protocol != draft::PROTOCOL {
            return Err(AggregationConfigError::Protocol(self.protocol.clone()));
        }
        check_url("leader", &self.leader)?;
        check_url("helper", &self.helper)?;
        if self.leader.trim_end_matches('/') == self.helper.trim_end_matches('/') {
            return Err(AggregationConfigError::SameAggregator);
        }
        self.task_id()?;
        self.vdaf.validate().map_err(AggregationConfigError::Vdaf)?;
        if self.time_precision == 0 || 86_400 % self.time_precision != 0 {
            return Err(AggregationConfigError::TimePrecision(self.time_precision));
        }
        if self.min_batch_size == 0 {
            return Err(AggregationConfigError::MinBatchSize);
        }
        self.layout.validate()?;
        if self.vdaf.length() as usize != self.layout.len() {
            return Err(AggregationConfigError::LengthMismatch {
                vdaf: self.vdaf.length(),
                layout: self.layout.len(),
            });
        }
        Ok(())
    }

    /// The task ID.
    pub fn task_id(&self) -> Result<TaskId, AggregationConfigError> {
        self.task_id
            .parse()
            .map_err(|_| AggregationConfigError::TaskId(self.task_id.clone()))
    }
}

/// An aggregator URL: absolute, `https`, or `http` to a loopback host; no credentials, query
/// or fragment.
fn check_url(field: &'static str, url: &str) -> Result<(), AggregationConfigError> {
    let bad = |reason| AggregationConfigError::Url {
        field,
        url: url.chars().take(200).collect(),
        reason,
    };
    let (scheme, rest) = url.split_once("://").ok_or(bad("not an absolute URL"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains('@') {
        return Err(bad("credentials in a URL are not allowed"));
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "a query, fragment, space or control character is not allowed",
        ));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(bad("plain http is allowed only to a loopback address")),
        _ => Err(bad("the scheme must be https")),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> serde_json::Value {
        serde_json::json!({
            "protocol": "dap-09",
            "leader": "https://leader.example/",
            "helper": "https://helper.example.org/dap/",
            "task_id": "8BY0RzZMzxvA46_8ymhzycOB9krN-QIGYvg_RsByGec",
            "vdaf": { "type": "Prio3SumVec", "bits": 1, "length": 6, "chunk_length": 2 },
            "time_precision": 86400,
            "min_batch_size": 100,
            "layout": {
                "os": ["linux"], "arch": ["x86_64"],
                "programs": [{ "name": "cargo", "versions": [],
                               "counters": [{ "name": "cargo/subcommand:{build,test}" }] }]
            }
        })
    }

    fn parse(value: &serde_json::Value) -> Result<AggregationConfig, AggregationConfigError> {
        AggregationConfig::parse(value.to_string().as_bytes())
    }

    #[test]
    fn the_documented_example_parses() {
        let config = parse(&example()).unwrap();
        assert_eq!(config.layout.len(), 6);
        assert_eq!(config.task_id().unwrap().to_string(), config.task_id);
    }

    #[test]
    fn each_rule_refuses_what_it_should() {
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("unknown field", serde_json::json!({"extra": 1})),
            ("protocol", serde_json::json!({"protocol": "dap-13"})),
            (
                "leader http",
                serde_json::json!({"leader": "http://leader.example/"}),
            ),
            (
                "leader ftp",
                serde_json::json!({"leader": "ftp://leader.example/"}),
            ),
            (
                "leader creds",
                serde_json::json!({"leader": "https://a:b@leader.example/"}),
            ),
            (
                "leader query",
                serde_json::json!({"leader": "https://leader.example/?x"}),
            ),
            (
                "same",
                serde_json::json!({"helper": "https://leader.example"}),
            ),
            ("task id", serde_json::json!({"task_id": "short"})),
            (
                "vdaf bits",
                serde_json::json!({"vdaf": {"type": "Prio3SumVec", "bits": 2, "length": 6, "chunk_length": 2}}),
            ),
            (
                "length",
                serde_json::json!({"vdaf": {"type": "Prio3SumVec", "bits": 1, "length": 7, "chunk_length": 2}}),
            ),
            ("precision", serde_json::json!({"time_precision": 7})),
            ("batch", serde_json::json!({"min_batch_size": 0})),
            (
                "layout",
                serde_json::json!({"layout": {"os": [], "arch": [], "programs": []}}),
            ),
        ];
        for (what, patch) in cases {
            let mut value = example();
            for (k, v) in patch.as_object().unwrap() {
                value[k] = v.clone();
            }
            assert!(parse(&value).is_err(), "{what} was accepted");
        }
        let mut loopback = example();
        loopback["leader"] = "http://127.0.0.1:8080/".into();
        loopback["helper"] = "http://[::1]:8081/".into();
        parse(&loopback).unwrap();
    }
}
