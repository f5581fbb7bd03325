//! The client's side of DAP: a measurement becomes a report (Prio3 shares, one sealed to each
//! aggregator), and the report is uploaded to the leader. Blocking (ureq), no async runtime:
//! it runs in tally's detached, at-most-daily uploader.
//!
//! What leaves the machine is exactly the draft's `Report`: a random report ID, the time
//! rounded down to the task's time precision, the public share (the joint-randomness parts
//! Prio3 needs to check the proof), and two HPKE ciphertexts. Each ciphertext opens only with
//! one aggregator's private key, and each share alone is indistinguishable from random.
//!
//! Promises: [`ReportBuilder::build`] refuses a measurement of the wrong length or with an
//! entry other than 0 or 1 (prio's own check); [`fetch_hpke_config`] accepts only the exact
//! media type and a bounded body; [`upload`] follows no redirect and classifies the answer as
//! accepted, refused (4xx: sending again would not help, with DAP's problem type when given)
//! or retry (5xx or no answer).

use std::time::Duration;

use prio::vdaf::Client as _;
use serde::Deserialize;

use crate::config::{AggregationConfig, AggregationConfigError};
use crate::draft::messages::{
    Encode, HpkeConfig, HpkeConfigList, PlaintextInputShare, Report, ReportId, ReportMetadata,
    Role, TaskId, Time,
};
use crate::draft::{self, Label, Vdaf, VdafParams};

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the measurement has {got} entries, the task's vector {want}")]
    Length { got: usize, want: usize },
    #[error("prio refused the measurement: {0}")]
    Shard(#[from] prio::vdaf::VdafError),
    #[error("encoding the report failed: {0}")]
    Codec(#[from] prio::codec::CodecError),
    #[error("encrypting a share failed: {0}")]
    Hpke(#[from] draft::HpkeError),
    #[error("the time {0} cannot be rounded to the task's time precision")]
    Time(u64),
}

/// Builds reports for one task.
#[derive(Debug, Clone)]
pub struct ReportBuilder {
    task_id: TaskId,
    vdaf: Vdaf,
    length: usize,
    time_precision: u64,
}

impl ReportBuilder {
    /// A builder for `task_id` with the VDAF `params` and `time_precision` seconds.
    pub fn new(
        task_id: TaskId,
        params: &VdafParams,
        time_precision: u64,
    ) -> Result<ReportBuilder, String> {
        if time_precision == 0 {
            return Err("time_precision is 0".into());
        }
        Ok(ReportBuilder {
            task_id,
            vdaf: draft::vdaf(params)?,
            length: params.length() as usize,
            time_precision,
        })
    }

    /// A builder for the task a verified config section names.
    pub fn from_config(
        config: &AggregationConfig,
    ) -> Result<ReportBuilder, AggregationConfigError> {
        ReportBuilder::new(draft::task_id(config)?, &config.vdaf, config.time_precision)
            .map_err(AggregationConfigError::Vdaf)
    }

    /// The task.
    pub fn task_id(&self) -> &TaskId {
        &self.task_id
    }

    /// A report of `measurement` at `time` (seconds since the epoch, rounded down to the
    /// task's precision), its input shares sealed to `leader` and `helper`.
    pub fn build(
        &self,
        measurement: &[u128],
        time: u64,
        leader: &HpkeConfig,
        helper: &HpkeConfig,
    ) -> Result<Report, BuildError> {
        if measurement.len() != self.length {
            return Err(BuildError::Length {
                got: measurement.len(),
                want: self.length,
            });
        }
        let report_id: ReportId = rand::random();
        let (public_share, input_shares) =
            self.vdaf.shard(&measurement.to_vec(), report_id.as_ref())?;
        let rounded = time
            .checked_div(self.time_precision)
            .and_then(|n| n.checked_mul(self.time_precision))
            .ok_or(BuildError::Time(time))?;
        let metadata = ReportMetadata::new(report_id, Time::from_seconds_since_epoch(rounded));
        let public_share = public_share.get_encoded()?;
        let aad = draft::input_share_aad(self.task_id, &metadata, &public_share)?;
        let mut sealed = Vec::with_capacity(2);
        for ((config, role), share) in [(leader, Role::Leader), (helper, Role::Helper)]
            .into_iter()
            .zip(input_shares)
        {
            let plaintext =
                PlaintextInputShare::new(Vec::new(), share.get_encoded()?).get_encoded()?;
            let info = draft::application_info(Label::InputShare, Role::Client, role);
            sealed.push(draft::seal(config, &info, &plaintext, &aad)?);
        }
        let helper_share = sealed.pop().expect("two shares");
        let leader_share = sealed.pop().expect("two shares");
        Ok(Report::new(
            metadata,
            public_share,
            leader_share,
            helper_share,
        ))
    }
}

/// The DAP time of a tally report for the week that starts on `week`: midnight UTC of the
/// Monday of its calendar week. Every report of a calendar week carries the same time, so the
/// time says no more than the week (installations start their weeks on different weekdays).
pub fn report_time(week: tally_protocol::Day) -> u64 {
    let monday = tally_protocol::aggregate::bucket_week(week);
    u64::try_from(monday.to_unix_days()).unwrap_or(0) * 86_400
}

/// How long one request may take, from connecting to reading the answer.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer that is read.
pub const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// An HTTP agent for DAP: timeouts, no redirects, statuses returned rather than raised.
pub fn agent(total: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(total.min(Duration::from_secs(10))))
        .timeout_global(Some(total))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("tally-dap/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Why an aggregator's HPKE config could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no answer from {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered with Content-Type {got:?}, not application/dap-hpke-config-list")]
    MediaType { url: String, got: String },
    #[error("{url} sent an HPKE config list that does not decode: {reason}")]
    Decode { url: String, reason: String },
    #[error("{url} advertises no HPKE config this build supports")]
    NoSupportedConfig { url: String },
}

/// `GET {aggregator}hpke_config?task_id=…`: the first config in the list this build can seal
/// to (the list is ordered by the aggregator's preference).
pub fn fetch_hpke_config(
    agent: &ureq::Agent,
    aggregator: &str,
    task_id: &TaskId,
) -> Result<HpkeConfig, FetchError> {
    let url = format!("{}hpke_config?task_id={task_id}", with_slash(aggregator));
    let mut response = agent.get(&url).call().map_err(|e| FetchError::Transport {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(FetchError::Status { url, status });
    }
    let media_type = header(&response, "content-type");
    if media_type != HpkeConfigList::MEDIA_TYPE {
        return Err(FetchError::MediaType {
            url,
            got: media_type,
        });
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| FetchError::Transport {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let list = <HpkeConfigList as draft::messages::Decode>::get_decoded(&body).map_err(|e| {
        FetchError::Decode {
            url: url.clone(),
            reason: e.to_string(),
        }
    })?;
    list.hpke_configs()
        .iter()
        .find(|c| draft::is_supported(c))
        .cloned()
        .ok_or(FetchError::NoSupportedConfig { url })
}

/// What became of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// 2xx: the leader has the report.
    Accepted,
    /// 4xx: refused; sending the same report again would not help. `problem` is DAP's problem
    /// type (`urn:ietf:params:ppm:dap:error:…`) when the leader gave one.
    Refused {
        status: u16,
        problem: Option<String>,
        detail: Option<String>,
    },
    /// 5xx, a redirect, or no answer: try again later.
    Retry { reason: String },
}

#[derive(Deserialize)]
struct Problem {
    #[serde(rename = "type")]
    problem_type: Option<String>,
    detail: Option<String>,
}

/// `PUT {leader}tasks/{task}/reports` with the encoded report.
pub fn upload(
    agent: &ureq::Agent,
    leader: &str,
    task_id: &TaskId,
    report: &Report,
) -> Result<UploadOutcome, prio::codec::CodecError> {
    let body = report.get_encoded()?;
    Ok(upload_encoded(agent, leader, task_id, &body))
}

/// [`upload`] of a report already encoded.
pub fn upload_encoded(
    agent: &ureq::Agent,
    leader: &str,
    task_id: &TaskId,
    body: &[u8],
) -> UploadOutcome {
    let url = format!("{}tasks/{task_id}/reports", with_slash(leader));
    let mut response = match agent
        .put(&url)
        .header("content-type", Report::MEDIA_TYPE)
        .send(body)
    {
        Ok(response) => response,
        Err(e) => {
            return UploadOutcome::Retry {
                reason: format!("no answer from {url}: {e}"),
            };
        }
    };
    let status = response.status().as_u16();
    let is_problem = header(&response, "content-type") == draft::PROBLEM_MEDIA_TYPE;
    let answer = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .unwrap_or_default();
    match status {
        200..=299 => UploadOutcome::Accepted,
        400..=499 => {
            let problem = is_problem
                .then(|| serde_json::from_slice::<Problem>(&answer).ok())
                .flatten();
            UploadOutcome::Refused {
                status,
                problem: problem.as_ref().and_then(|p| p.problem_type.clone()),
                detail: problem.and_then(|p| p.detail),
            }
        }
        _ => UploadOutcome::Retry {
            reason: format!("{url} answered HTTP {status}"),
        },
    }
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// `url` with exactly one trailing slash, so that relative paths join below it (a base URL may
/// have a path: `https://example.com/dap/`).
pub fn with_slash(url: &str) -> String {
    format!("{}/", url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draft::HpkeKeypair;
    use crate::draft::messages::Decode;

    #[test]
    fn a_report_opens_for_each_aggregator_and_only_there() {
        let params = VdafParams::sum_vec(10);
        let task_id: TaskId = rand::random();
        let builder = ReportBuilder::new(task_id, &params, 3600).unwrap();
        let leader = HpkeKeypair::generate(1);
        let helper = HpkeKeypair::generate(2);
        let measurement = [1, 0, 1, 1, 0, 0, 0, 1, 0, 1];
        let report = builder
            .build(&measurement, 7_200 + 1_234, &leader.config, &helper.config)
            .unwrap();
        assert_eq!(report.metadata().time().as_seconds_since_epoch(), 7_200);
        let encoded = report.get_encoded().unwrap();
        let report = Report::get_decoded(&encoded).unwrap();
        let aad =
            draft::input_share_aad(task_id, report.metadata(), report.public_share()).unwrap();
        let to_leader = draft::application_info(Label::InputShare, Role::Client, Role::Leader);
        let to_helper = draft::application_info(Label::InputShare, Role::Client, Role::Helper);
        let leader_plain = leader
            .open(&to_leader, report.leader_encrypted_input_share(), &aad)
            .unwrap();
        assert!(PlaintextInputShare::get_decoded(&leader_plain).is_ok());
        assert!(
            helper
                .open(&to_helper, report.helper_encrypted_input_share(), &aad)
                .is_ok()
        );
        assert!(
            helper
                .open(&to_helper, report.leader_encrypted_input_share(), &aad)
                .is_err()
        );
    }

    #[test]
    fn bad_measurements_are_refused() {
        let params = VdafParams::sum_vec(3);
        let builder = ReportBuilder::new(rand::random(), &params, 60).unwrap();
        let key = HpkeKeypair::generate(1);
        assert!(matches!(
            builder.build(&[1, 0], 0, &key.config, &key.config),
            Err(BuildError::Length { got: 2, want: 3 })
        ));
        assert!(matches!(
            builder.build(&[1, 2, 0], 0, &key.config, &key.config),
            Err(BuildError::Shard(_))
        ));
    }

    #[test]
    fn report_time_is_the_monday_of_the_week() {
        // 2026-11-25 is a Wednesday; its Monday is 2026-11-23 = day 20,780 since the epoch.
        let wednesday: tally_protocol::Day = "2026-11-25".parse().unwrap();
        assert_eq!(report_time(wednesday), 20_780 * 86_400);
        assert_eq!(with_slash("https://x/dap"), "https://x/dap/");
        assert_eq!(with_slash("https://x/dap//"), "https://x/dap/");
    }
}
