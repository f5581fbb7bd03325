//! The private-aggregation section of the signed upload config (`aggregation`): which two
//! aggregators receive the shares, the DAP task, the VDAF, and the measurement layout
//! ([`super::layout`]).
//!
//! When a verified config carries this section, the client sends DAP reports and no plain
//! report; a config without it is exactly the plain mode's. Like the rest of the config it is
//! JSON, signed by the collector; unknown fields are refused here (and in the layout), so a
//! field a newer collector adds is never silently ignored by an older client.
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
//! Beyond the shape, [`AggregationConfig::validate`] checks: the protocol is one this build
//! speaks ([`PROTOCOL`]), both URLs are absolute `https` (or `http` to a loopback address, for
//! tests and the local demo) and differ, the task ID is 32 bytes of unpadded base64url, the
//! VDAF is 1-bit Prio3SumVec whose length is the layout's, the time precision divides a day,
//! the minimum batch size is at least 1, and the layout is valid. What the JSON Schema cannot
//! say (the URLs' hosts, the two lengths agreeing, the divisor, duplicates in the layout) only
//! Rust checks; `schema_tests.rs` lists it.
//!
//! The draft's own code (messages, HPKE, Prio3 itself) is `tally-dap`'s; this module is only
//! the section's shape, so that the client can verify and show it without linking any of it.

use serde::{Deserialize, Serialize};

use super::layout::Layout;

/// The protocol name a config section carries for the draft tally speaks: DAP-09
/// (draft-ietf-ppm-dap-09) with VDAF-08's Prio3, as Divvi Up's Janus 0.7 speaks it.
pub const PROTOCOL: &str = "dap-09";

/// Largest vector a task may have (defined with the layout, which is bound by it too).
pub use super::layout::MAX_LENGTH;

/// The private-aggregation section of the upload config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct AggregationConfig {
    /// The DAP draft both aggregators speak: `"dap-09"`.
    #[cfg_attr(test, schemars(regex(pattern = r"^dap-09$")))]
    pub protocol: String,
    /// The leader's base URL, `https` (or `http` to a loopback address): reports are uploaded
    /// to `{leader}tasks/{task_id}/reports`.
    #[cfg_attr(test, schemars(regex(pattern = AGGREGATOR_URL_REGEX)))]
    pub leader: String,
    /// The helper's base URL, run by another organisation than the leader.
    #[cfg_attr(test, schemars(regex(pattern = AGGREGATOR_URL_REGEX)))]
    pub helper: String,
    /// The DAP task ID, 32 bytes in unpadded base64url.
    #[cfg_attr(test, schemars(regex(pattern = TASK_ID_REGEX)))]
    pub task_id: String,
    /// The VDAF and its parameters.
    pub vdaf: VdafParams,
    /// Seconds; report times are rounded down to a multiple of it. A divisor of 86,400.
    #[cfg_attr(test, schemars(range(min = 1, max = 86_400)))]
    pub time_precision: u64,
    /// The fewest reports a batch may be collected with: the collector's publication threshold,
    /// enforced by both aggregators.
    #[cfg_attr(test, schemars(range(min = 1)))]
    pub min_batch_size: u64,
    /// How a week's counters become the vector.
    pub layout: Layout,
}

/// What the JSON Schema says of an aggregator URL (Rust also checks the host, and that there
/// are no credentials, query or fragment).
pub const AGGREGATOR_URL_REGEX: &str = r"^https?://[^\s/?#@]+(/[^\s?#]*)?$";

/// A task ID in the JSON Schema: 43 characters of base64url whose last one carries 4 bits.
pub const TASK_ID_REGEX: &str = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$";

/// VDAF parameters, as a config section and a task carry them. Field names follow Janus's
/// `VdafInstance::Prio3SumVec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "type")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub enum VdafParams {
    /// Prio3SumVec (VDAF-08 §7.4.3): `length` entries of `bits` bits each, proven in chunks of
    /// `chunk_length`.
    Prio3SumVec {
        /// Bits per entry. tally uses 1 (a count wider than one bit is laid out as its binary
        /// digits, each its own entry, in the layout).
        #[cfg_attr(test, schemars(range(min = 1, max = 1)))]
        bits: u8,
        /// Number of entries: the layout's length.
        #[cfg_attr(test, schemars(range(min = 1, max = 100_000)))]
        length: u32,
        /// Entries per gadget call in the proof (prio's optimal chunk length for the length), at
        /// most the length.
        #[cfg_attr(test, schemars(range(min = 1, max = 100_000)))]
        chunk_length: u32,
    },
}

impl VdafParams {
    /// The parameters tally uses for a vector of `length` one-bit entries.
    pub fn sum_vec(length: u32) -> VdafParams {
        VdafParams::Prio3SumVec {
            bits: 1,
            length,
            chunk_length: optimal_chunk_length(length),
        }
    }

    /// The vector length.
    pub fn length(&self) -> u32 {
        match self {
            VdafParams::Prio3SumVec { length, .. } => *length,
        }
    }

    /// Checks the parameters: 1-bit entries, a length in `1..=MAX_LENGTH`, a chunk length in
    /// `1..=length`.
    pub fn validate(&self) -> Result<(), String> {
        let VdafParams::Prio3SumVec {
            bits,
            length,
            chunk_length,
        } = *self;
        if bits != 1 {
            return Err(format!(
                "vdaf.bits is {bits}; tally's layout uses 1-bit entries (wider counts are laid out as their binary digits)"
            ));
        }
        if length == 0 || length > MAX_LENGTH {
            return Err(format!("vdaf.length is {length}, outside 1..={MAX_LENGTH}"));
        }
        if chunk_length == 0 || chunk_length > length {
            return Err(format!(
                "vdaf.chunk_length is {chunk_length}, outside 1..={length} (use {})",
                optimal_chunk_length(length)
            ));
        }
        Ok(())
    }
}

/// The chunk length that makes the proof of `length` one-bit entries shortest: `prio`'s rule
/// (`prio::vdaf::prio3::optimal_chunk_length` in 0.16.8, which `tally-dap` checks this against),
/// written out here so that the config's shape needs no VDAF code.
pub fn optimal_chunk_length(length: u32) -> u32 {
    let length = length as usize;
    if length <= 1 {
        return 1;
    }
    let max_log2 = (length + 1).ilog2();
    let best = (1..=max_log2)
        .rev()
        .map(|log2| {
            let gadget_calls = (1usize << log2) - 1;
            let chunk_length = length.div_ceil(gadget_calls);
            (gadget_calls, chunk_length)
        })
        .min_by_key(|(gadget_calls, chunk_length)| {
            // The proof's length in field elements.
            chunk_length * 2 + 2 * ((1 + gadget_calls).next_power_of_two() - 1)
        })
        .expect("at least one candidate");
    best.1 as u32
}

/// Why a section was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AggregationConfigError {
    #[error("aggregation section is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("aggregation protocol {0:?} is not one this build speaks ({PROTOCOL})")]
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
    Layout(#[from] super::layout::LayoutError),
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
        if self.protocol != PROTOCOL {
            return Err(AggregationConfigError::Protocol(self.protocol.clone()));
        }
        check_url("leader", &self.leader)?;
        check_url("helper", &self.helper)?;
        if self.leader.trim_end_matches('/') == self.helper.trim_end_matches('/') {
            return Err(AggregationConfigError::SameAggregator);
        }
        self.task_id_bytes()?;
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

    /// The task ID's 32 bytes (`tally_dap::draft::task_id` makes the draft's `TaskId` of
    /// them).
    pub fn task_id_bytes(&self) -> Result<[u8; 32], AggregationConfigError> {
        decode_task_id(&self.task_id)
            .ok_or_else(|| AggregationConfigError::TaskId(self.task_id.clone()))
    }
}

/// 32 bytes from 43 characters of unpadded base64url (the canonical encoding only: the last
/// character's two unused bits are zero).
fn decode_task_id(text: &str) -> Option<[u8; 32]> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        }))
    }
    let text = text.as_bytes();
    if text.len() != 43 {
        return None;
    }
    let mut out = [0u8; 32];
    let (mut acc, mut bits, mut n) = (0u32, 0u32, 0usize);
    for &c in text {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    // 43 × 6 = 258 bits: 32 bytes and two bits left over, which must be zero.
    (n == 32 && acc == 0).then_some(out)
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
        let bytes = config.task_id_bytes().unwrap();
        assert_eq!(bytes[0], 0xf0);
        // The last character carries 4 bits: one that sets the unused two is refused.
        let mut odd = example();
        odd["task_id"] = "8BY0RzZMzxvA46_8ymhzycOB9krN-QIGYvg_RsByGeb".into();
        assert!(parse(&odd).is_err());
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
