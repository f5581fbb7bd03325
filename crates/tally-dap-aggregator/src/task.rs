//! A DAP task as one aggregator holds it: `tasks/<task id>/task.json` in its store, written by
//! `provision` and never changed afterwards (DAP task parameters are immutable: a change is a
//! new task).
//!
//! The leader's copy holds the helper's URL and the token it presents there, and the digest of
//! the collector's token; the helper's copy holds the digest of the leader's token. Both hold
//! the VDAF verification key, which neither the clients nor the collector may know (it is what
//! makes a forged proof fail), so the file is mode 0600 like every object in the store.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tally_dap::draft::messages::{Decode, Encode, HpkeConfig, Interval, TaskId, Time};
use tally_dap::draft::{self, VERIFY_KEY_LEN, Vdaf, VdafParams};

/// Which of the two aggregators a task file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregatorRole {
    /// Receives uploads, drives aggregation and collection.
    Leader,
    /// Prepares the leader's jobs, hands its aggregate share over once per batch.
    Helper,
}

impl std::fmt::Display for AggregatorRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AggregatorRole::Leader => "leader",
            AggregatorRole::Helper => "helper",
        })
    }
}

/// A task file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    /// 32 bytes, unpadded base64url.
    pub task_id: String,
    /// The aggregator this file is for.
    pub role: AggregatorRole,
    /// The VDAF.
    pub vdaf: VdafParams,
    /// The VDAF verification key, 16 bytes, unpadded base64url. Secret.
    pub verify_key: String,
    /// Seconds; batch intervals are multiples of it.
    pub time_precision: u64,
    /// Fewest reports a batch is collected with.
    pub min_batch_size: u64,
    /// Seconds: reports older than this are refused, and their IDs may be forgotten.
    pub report_expiry_age: u64,
    /// Seconds: how far in the future a report's time may be.
    pub tolerable_clock_skew: u64,
    /// The collector's HPKE config, DAP-encoded, unpadded base64url.
    pub collector_hpke_config: String,
    /// Leader only: the helper's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper_url: Option<String>,
    /// Leader only: the token the leader presents to the helper. Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper_token: Option<String>,
    /// Leader only: SHA-256 of the collector's token, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector_token_sha256: Option<String>,
    /// Helper only: SHA-256 of the leader's token, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_token_sha256: Option<String>,
}

/// A task, parsed and checked.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: TaskId,
    pub role: AggregatorRole,
    pub params: VdafParams,
    pub vdaf: Vdaf,
    pub verify_key: [u8; VERIFY_KEY_LEN],
    pub time_precision: u64,
    pub min_batch_size: u64,
    pub report_expiry_age: u64,
    pub tolerable_clock_skew: u64,
    pub collector_hpke_config: HpkeConfig,
    /// Leader: the helper's URL (with a trailing slash) and the token presented there.
    pub helper: Option<(String, String)>,
    /// Leader: the collector's token digest. Helper: the leader's.
    pub peer_token_sha256: [u8; 32],
    /// The file as stored.
    pub file: TaskFile,
}

/// The key of a task's file.
pub fn task_key(task_id: &TaskId) -> String {
    format!("tasks/{task_id}/task.json")
}

impl TaskFile {
    /// Checks the file and parses its values.
    pub fn parse(self) -> anyhow::Result<Task> {
        use anyhow::{Context, bail};
        let id: TaskId = self.task_id.parse().map_err(|_| {
            anyhow::anyhow!("task_id {:?} is not 32 bytes of base64url", self.task_id)
        })?;
        let vdaf = draft::vdaf(&self.vdaf).map_err(|e| anyhow::anyhow!("task {id}: {e}"))?;
        let verify_key: [u8; VERIFY_KEY_LEN] = URL_SAFE_NO_PAD
            .decode(&self.verify_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .with_context(|| {
                format!("task {id}: verify_key is not {VERIFY_KEY_LEN} bytes of base64url")
            })?;
        if self.time_precision == 0 || self.min_batch_size == 0 {
            bail!("task {id}: time_precision and min_batch_size must be at least 1");
        }
        if self.report_expiry_age < self.time_precision {
            bail!("task {id}: report_expiry_age must be at least time_precision");
        }
        let collector_hpke_config = decode_hpke_config(&self.collector_hpke_config)
            .with_context(|| format!("task {id}: collector_hpke_config"))?;
        if !draft::is_supported(&collector_hpke_config) {
            bail!("task {id}: the collector's HPKE config uses an algorithm this build lacks");
        }
        let hash = |field: &Option<String>, name: &str| -> anyhow::Result<[u8; 32]> {
            let hex = field
                .as_deref()
                .with_context(|| format!("task {id}: a {} task needs {name}", self.role))?;
            decode_hex32(hex).with_context(|| format!("task {id}: {name} is not 64 hex digits"))
        };
        let (helper, peer_token_sha256) = match self.role {
            AggregatorRole::Leader => {
                let url = self
                    .helper_url
                    .as_deref()
                    .with_context(|| format!("task {id}: a leader task needs helper_url"))?;
                let token = self
                    .helper_token
                    .clone()
                    .with_context(|| format!("task {id}: a leader task needs helper_token"))?;
                (
                    Some((tally_dap::client::with_slash(url), token)),
                    hash(&self.collector_token_sha256, "collector_token_sha256")?,
                )
            }
            AggregatorRole::Helper => {
                if self.helper_url.is_some() || self.helper_token.is_some() {
                    bail!("task {id}: a helper task holds no helper_url or helper_token");
                }
                (
                    None,
                    hash(&self.leader_token_sha256, "leader_token_sha256")?,
                )
            }
        };
        Ok(Task {
            id,
            role: self.role,
            params: self.vdaf,
            vdaf,
            verify_key,
            time_precision: self.time_precision,
            min_batch_size: self.min_batch_size,
            report_expiry_age: self.report_expiry_age,
            tolerable_clock_skew: self.tolerable_clock_skew,
            collector_hpke_config,
            helper,
            peer_token_sha256,
            file: self,
        })
    }
}

impl Task {
    /// The start of the time slot (a multiple of the time precision) that `time` falls in.
    pub fn slot(&self, time: &Time) -> u64 {
        let t = time.as_seconds_since_epoch();
        t - t % self.time_precision
    }

    /// Whether a collection interval is a valid batch: aligned to the time precision and at
    /// least one precision long.
    pub fn is_valid_batch(&self, interval: &Interval) -> bool {
        let start = interval.start().as_seconds_since_epoch();
        let duration = interval.duration().as_seconds();
        duration >= self.time_precision
            && start.is_multiple_of(self.time_precision)
            && duration.is_multiple_of(self.time_precision)
            && start.checked_add(duration).is_some()
    }

    /// Whether `time` is older than the replay horizon at `now`: such reports are refused,
    /// because their IDs may have been forgotten.
    pub fn is_expired(&self, time: &Time, now: u64) -> bool {
        time.as_seconds_since_epoch()
            .saturating_add(self.report_expiry_age)
            < now
    }

    /// Whether everything of a slot ending at `slot_end` is past the replay horizon at `now`:
    /// its reports are refused as too old, its batch can no longer be collected (the helper
    /// refuses a batch that ended longer ago than the horizon), so its sums and the IDs of its
    /// reports need no keeping. Job records whose newest slot is past it are deleted.
    pub fn is_past_horizon(&self, slot_end: u64, now: u64) -> bool {
        slot_end.saturating_add(self.report_expiry_age) < now
    }

    /// Takes out of `ends` (a record → the end of its newest slot) every record past the
    /// horizon at `now`, and returns them: their sums and IDs are forgotten, their objects
    /// deleted.
    pub fn take_past_horizon<K: Ord + Clone>(
        &self,
        ends: &mut std::collections::BTreeMap<K, u64>,
        now: u64,
    ) -> Vec<K> {
        let old: Vec<K> = ends
            .iter()
            .filter(|(_, end)| self.is_past_horizon(**end, now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &old {
            ends.remove(key);
        }
        old
    }

    /// The end of the slot that `time` (seconds since the epoch) falls in.
    pub fn slot_end(&self, time: u64) -> u64 {
        (time - time % self.time_precision).saturating_add(self.time_precision)
    }

    /// The first slot start not past the horizon at `now` (see [`Task::is_past_horizon`]).
    pub fn first_slot_kept(&self, now: u64) -> u64 {
        now.saturating_sub(self.report_expiry_age)
            .saturating_sub(self.time_precision)
    }

    /// Whether `time` is further in the future than the tolerated clock skew at `now`.
    pub fn is_too_early(&self, time: &Time, now: u64) -> bool {
        time.as_seconds_since_epoch() > now.saturating_add(self.tolerable_clock_skew)
    }
}

/// An HPKE config from unpadded base64url of its DAP encoding.
pub fn decode_hpke_config(text: &str) -> anyhow::Result<HpkeConfig> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("not unpadded base64url"))?;
    HpkeConfig::get_decoded(&bytes).map_err(|e| anyhow::anyhow!("not a DAP HPKE config: {e}"))
}

/// Unpadded base64url of an HPKE config's DAP encoding.
pub fn encode_hpke_config(config: &HpkeConfig) -> String {
    URL_SAFE_NO_PAD.encode(config.get_encoded().expect("an HPKE config encodes"))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from 64 hex digits.
pub fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
