//! What this binary's tests share: a config body and days. Keys, signatures and the fake
//! collector come from `tally-test-support`.

use tally_protocol::Day;

pub fn day(s: &str) -> Day {
    s.parse().unwrap()
}

/// A valid config body with the given version and expiry.
pub fn config_body(version: u64, expires: &str) -> Vec<u8> {
    format!(
        r#"{{
  "version": {version},
  "expires": "{expires}",
  "sample_rate": 0.5,
  "os": ["linux"],
  "arch": ["x86_64"],
  "programs": [
    {{ "name": "cargo", "versions": ">=1.70.0",
      "counters": [ {{ "name": "cargo/subcommand:{{build,test}}", "rate": 0.25 }} ] }}
  ]
}}
"#
    )
    .into_bytes()
}
