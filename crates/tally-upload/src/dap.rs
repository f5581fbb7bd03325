//! The private-aggregation path of the uploader, taken when the verified upload config carries
//! an `aggregation` section: each pending week becomes the layout's vector
//! ([`tally_protocol::config::layout::Layout::measurement`] of the week's upload copy), split
//! into two Prio3 shares sealed to the leader and the helper ([`tally_dap::client`]), and
//! uploaded to the leader. No plain report is sent in this mode.
//!
//! Promises: the vector is computed from exactly the pending upload copy (so every rule that
//! decided that copy, consent, age, the sample number and the config's filter, holds for the
//! vector too, and the layout's per-counter rates apply on top); the aggregators' HPKE configs
//! are fetched once per run, and a failure to get them leaves every week pending for a later
//! run; the leader's answer is classified as the plain path's is (2xx sent, 4xx refused and never
//! retried, anything else retried).

use tally_dap::client::{self, ReportBuilder, UploadOutcome};
use tally_dap::draft::messages::{Encode, HpkeConfig};
use tally_protocol::Report;
use tally_protocol::config::aggregation::AggregationConfig;

use crate::http::PostOutcome;

/// The suffix of the note written beside a week sent in this mode (`reports/sent/<week>.json.dap`):
/// the report itself was not sent, only the vector the note holds.
pub const SENT_NOTE_SUFFIX: &str = ".dap";

/// What the uploader keeps for one run in private-aggregation mode.
pub struct DapSender<'a> {
    config: &'a AggregationConfig,
    agent: ureq::Agent,
    /// The aggregators' keys, fetched at the first report that needs them.
    keys: Option<Result<(HpkeConfig, HpkeConfig), String>>,
}

impl<'a> DapSender<'a> {
    /// A sender for the task `config` names.
    pub fn new(config: &'a AggregationConfig) -> DapSender<'a> {
        DapSender {
            config,
            agent: client::agent(client::TOTAL_TIMEOUT),
            keys: None,
        }
    }

    /// The vector `report` (a pending upload copy) is shared as.
    pub fn measurement(&self, report: &Report) -> Vec<u128> {
        self.config.layout.measurement(report)
    }

    /// Where reports go, for progress lines: the leader, and the helper that gets the other
    /// share.
    pub fn describe(&self) -> String {
        format!(
            "the DAP leader {} (helper {})",
            self.config.leader, self.config.helper
        )
    }

    /// Builds the report of `report`'s week and uploads it to the leader.
    pub fn send(&mut self, report: &Report) -> PostOutcome {
        let builder = match ReportBuilder::from_config(self.config) {
            Ok(builder) => builder,
            // The section verified, so this is a build that cannot use it: keep the week.
            Err(e) => {
                return PostOutcome::Retry {
                    reason: format!("the config's aggregation section is unusable: {e}"),
                };
            }
        };
        let keys = self
            .keys
            .get_or_insert_with(|| {
                let fetch = |url: &str| {
                    client::fetch_hpke_config(&self.agent, url, builder.task_id())
                        .map_err(|e| e.to_string())
                };
                Ok((fetch(&self.config.leader)?, fetch(&self.config.helper)?))
            })
            .clone();
        let (leader, helper) = match keys {
            Ok(keys) => keys,
            Err(reason) => {
                return PostOutcome::Retry {
                    reason: format!("cannot get the aggregators' keys: {reason}"),
                };
            }
        };
        let measurement = self.measurement(report);
        let time = client::report_time(report.week);
        let encoded = match builder
            .build(&measurement, time, &leader, &helper)
            .map_err(|e| e.to_string())
            .and_then(|r| r.get_encoded().map_err(|e| e.to_string()))
        {
            Ok(encoded) => encoded,
            // Not a report this config can carry: sending it again would not help.
            Err(reason) => {
                return PostOutcome::Refused {
                    status: 0,
                    reason: format!("no DAP report could be built: {reason}"),
                };
            }
        };
        match client::upload_encoded(
            &self.agent,
            &self.config.leader,
            builder.task_id(),
            &encoded,
        ) {
            UploadOutcome::Accepted => PostOutcome::Accepted { status: 200 },
            UploadOutcome::Refused {
                status,
                problem,
                detail,
            } => PostOutcome::Refused {
                status,
                reason: format!(
                    "the DAP leader {} answered HTTP {status}{}{}",
                    self.config.leader,
                    problem.map(|p| format!(" ({p})")).unwrap_or_default(),
                    detail.map(|d| format!(": {d}")).unwrap_or_default(),
                ),
            },
            UploadOutcome::Retry { reason } => PostOutcome::Retry { reason },
        }
    }
}

/// A week's report in this mode, as JSON: the aggregators, the task and the exact vector (each
/// entry: its index, program, what its bit means, and the value). What `tally upload --dry-run`
/// and `TALLY_DEBUG_UPLOAD` show, and the note filed beside a sent week
/// ([`SENT_NOTE_SUFFIX`]).
pub fn vector_json(config: &AggregationConfig, report: &Report) -> Vec<u8> {
    let measurement = config.layout.measurement(report);
    let entries: Vec<serde_json::Value> = config
        .layout
        .entries()
        .iter()
        .zip(&measurement)
        .map(|(entry, value)| {
            let mut shown = serde_json::to_value(entry).unwrap_or_default();
            shown["value"] = serde_json::Value::from(u64::try_from(*value).unwrap_or(u64::MAX));
            shown
        })
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&serde_json::json!({
        "mode": "private aggregation (DAP)",
        "leader": config.leader,
        "helper": config.helper,
        "task_id": config.task_id,
        "week": report.week.to_string(),
        "vector": entries,
    }))
    .unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
