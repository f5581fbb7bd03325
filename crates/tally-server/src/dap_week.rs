//! A calendar week collected by private aggregation: the seam between the leader's collection
//! and the collector's merges.
//!
//! A batch is collected once (the leader refuses a second job for it), so the collection job
//! that spends a week's batch is recorded in the store before it is started
//! (`dap/weeks/<monday>.json`, created once): a collector that restarts, or a second replica
//! asking at the same time, polls the same job instead of losing the week. [`collect`] turns
//! the finished collection into the week's [`MergedWeek`] through the layout of the signed
//! config, and from there the week is published as a plain one is.

use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tally_dap::collector::{CollectError, Collector};
use tally_dap::draft::messages::{CollectionJobId, Duration as DapDuration, Interval, Time};
use tally_dap::layout::Layout;
use tally_protocol::Day;

use crate::merge::MergedWeek;
use crate::store::{Created, MAX_NOTE_BYTES, Read, Store};

/// Seconds in a calendar week.
const WEEK_SECONDS: u64 = 7 * 86_400;

/// A week's collection job, as recorded: `dap/weeks/<monday>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeekJob {
    /// The collection job's ID, as DAP spells it (unpadded base64url).
    pub job: String,
    /// The batch interval: the week, Monday 00:00 UTC, in seconds since the epoch.
    pub start: u64,
    pub duration: u64,
}

impl WeekJob {
    /// The job's ID and its batch interval.
    pub fn parts(&self) -> anyhow::Result<(CollectionJobId, Interval)> {
        let job = self
            .job
            .parse()
            .map_err(|_| anyhow::anyhow!("{:?} is not a collection job ID", self.job))?;
        let interval = Interval::new(
            Time::from_seconds_since_epoch(self.start),
            DapDuration::from_seconds(self.duration),
        )
        .map_err(|e| anyhow::anyhow!("the week's interval is invalid: {e}"))?;
        Ok((job, interval))
    }
}

fn week_key(monday: Day) -> Path {
    Path::from(format!("dap/weeks/{monday}.json"))
}

/// The collection job of the week starting on `monday`: the one recorded in the store, or a new
/// one, recorded (create-if-absent) before anyone may start it.
pub async fn week_job(store: &Store, monday: Day) -> anyhow::Result<WeekJob> {
    let key = week_key(monday);
    let start = u64::try_from(monday.to_unix_days())
        .map_err(|_| anyhow::anyhow!("the week of {monday} is before 1970"))?
        * 86_400;
    let fresh = WeekJob {
        job: rand::random::<CollectionJobId>().to_string(),
        start,
        duration: WEEK_SECONDS,
    };
    match store
        .create(&key, serde_json::to_vec(&fresh)?.into(), None)
        .await?
    {
        Created::New => Ok(fresh),
        Created::AlreadyThere => match store.read(&key, MAX_NOTE_BYTES).await? {
            Read::Found(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{key} in the store is not a week's collection job ({e}); delete it only if the leader never saw the job"
                )
            }),
            other => anyhow::bail!("{key} in the store cannot be read: {other:?}"),
        },
    }
}

/// Where a week's collection stands after one [`collect`].
#[derive(Debug)]
pub enum Step {
    /// The aggregators are still working on it: poll again.
    Pending,
    /// Done: the week's merge.
    Collected(MergedWeek),
}

/// Why one [`collect`] did not finish the week, by what the collector does next.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The leader holds fewer than the minimum batch size of the week's reports. Nothing was
    /// spent: the same job may be started later, once more reports arrived.
    #[error("the leader holds fewer reports of the week than the minimum batch size")]
    TooSmall,
    /// No answer, or one a retry may change (the leader down, a 5xx): try again later.
    #[error("{0}")]
    Unreachable(CollectError),
    /// The leader refused the week for good (the batch spent by another job, the job failed,
    /// the token refused, a collection that does not open): retrying cannot change it.
    #[error("{0}")]
    Refused(CollectError),
}

/// Starts (or repeats: the leader answers an identical request again) the week's collection
/// and polls it once: [`Step::Pending`] while the aggregators work, then the week's merge, read
/// through `layout`.
pub fn collect(
    collector: &Collector,
    layout: &Layout,
    monday: Day,
    week: &WeekJob,
) -> Result<Step, StepError> {
    let (job, interval) = week
        .parts()
        .map_err(|e| StepError::Refused(CollectError::Invalid(e.to_string())))?;
    collector.start(&job, interval).map_err(|e| match e {
        CollectError::Refused { ref problem, .. }
            if problem
                .as_deref()
                .is_some_and(|p| p.ends_with(":invalidBatchSize")) =>
        {
            StepError::TooSmall
        }
        e => transient_or_final(e),
    })?;
    let Some(collected) = collector.poll(&job, interval).map_err(transient_or_final)? else {
        return Ok(Step::Pending);
    };
    let programs = layout.interpret(&collected.aggregate).ok_or_else(|| {
        StepError::Refused(CollectError::Invalid(format!(
            "the aggregate has {} entries, the config's layout {}",
            collected.aggregate.len(),
            layout.len()
        )))
    })?;
    Ok(Step::Collected(MergedWeek::from_aggregate(
        monday,
        collected.report_count,
        &programs,
    )))
}

/// No answer or a 5xx may pass; any other refusal is the leader's last word on the job (a job
/// that failed keeps failing, and its batch is spent).
fn transient_or_final(e: CollectError) -> StepError {
    match e {
        CollectError::Transport { .. } => StepError::Unreachable(e),
        CollectError::Unexpected { status, .. } if status >= 500 => StepError::Unreachable(e),
        e => StepError::Refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_week_has_one_collection_job_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let monday: Day = "2026-11-16".parse().unwrap();
        let first = week_job(&store, monday).await.unwrap();
        let (_, interval) = first.parts().unwrap();
        assert_eq!(interval.start().as_seconds_since_epoch(), 1_794_787_200);
        assert_eq!(interval.duration().as_seconds(), WEEK_SECONDS);
        // A restart (another process on the same store) gets the same job, not a new one.
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(week_job(&store, monday).await.unwrap(), first);
        // Another week, another job.
        let next = week_job(&store, "2026-11-23".parse().unwrap())
            .await
            .unwrap();
        assert_ne!(next.job, first.job);
        assert_eq!(next.start, first.start + WEEK_SECONDS);
        // A damaged record is an error that names it, not a fresh job.
        std::fs::write(dir.path().join("dap/weeks/2026-11-23.json"), "{").unwrap();
        let error = week_job(&store, "2026-11-23".parse().unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("dap/weeks/2026-11-23.json"), "{error}");
    }

    /// The whole seam, in one process: a leader and a helper on loopback, six reports of this
    /// week uploaded by tally's client, and the week collected into a merge that counts them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_collected_week_merges_every_report() {
        use std::time::Duration;
        use tally_dap::layout::{CounterLayout, ProgramLayout};
        use tally_dap_aggregator::provision::{self, HelperTarget, TaskSettings};
        use tally_dap_aggregator::server::{ServeOptions, serve};
        use tally_dap_aggregator::task::AggregatorRole;

        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (leader_port, helper_port) = (free_port(), free_port());
        let (credential, public) = provision::collector_keygen();
        let layout = Layout {
            os: vec!["linux".into()],
            arch: vec!["x86_64".into()],
            programs: vec![ProgramLayout {
                name: "cargo".into(),
                versions: vec![],
                counters: vec![CounterLayout {
                    name: "cargo/invocations".into(),
                    rate: 1.0,
                    count_bits: 4,
                }],
                by_version: vec![],
            }],
        };
        let settings = TaskSettings {
            leader_url: format!("http://127.0.0.1:{leader_port}/"),
            helper_url: format!("http://127.0.0.1:{helper_port}/"),
            time_precision: 3600,
            min_batch_size: 5,
            report_expiry_age: 30 * 86_400,
            tolerable_clock_skew: 600,
        };
        let provisioned = provision::provision(
            &path("leader"),
            &HelperTarget::Store(path("helper")),
            &public,
            layout.clone(),
            &settings,
        )
        .await
        .unwrap();
        for (role, port) in [
            (AggregatorRole::Helper, helper_port),
            (AggregatorRole::Leader, leader_port),
        ] {
            let address_file = dir.path().join(format!("{role}.address"));
            tokio::spawn(serve(ServeOptions {
                role,
                store: path(&role.to_string()),
                listen: format!("127.0.0.1:{port}").parse().unwrap(),
                address_file: Some(address_file.clone()),
                durability: crate::store::Durability::ProcessCrash,
                key_reload: Duration::from_secs(60),
                limits: Default::default(),
                body_timeout: Duration::from_secs(10),
                lease_ttl: Duration::from_secs(30),
                standby: false,
                leader: Default::default(),
            }));
            while !address_file.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let config = provisioned.config;
        let now = tally_dap_aggregator::common::unix_now();
        let today = Day::from_unix_days((now / 86_400) as i64).unwrap();
        let monday = tally_protocol::aggregate::bucket_week(today);
        // Within this week and not in the future, whatever the hour.
        let time = now.max(u64::try_from(monday.to_unix_days()).unwrap() * 86_400);
        let counts = [1u128, 3, 0, 7, 2, 15];
        let collector = Collector::new(
            &config.leader,
            provisioned.task_id,
            credential.token.clone(),
            credential.keypair().unwrap(),
            tally_dap::draft::vdaf(&config.vdaf).unwrap(),
            Duration::from_secs(30),
        );
        let merged = tokio::task::spawn_blocking(move || {
            let agent = tally_dap::client::agent(Duration::from_secs(30));
            let task_id = provisioned.task_id;
            let leader_key =
                tally_dap::client::fetch_hpke_config(&agent, &config.leader, &task_id).unwrap();
            let helper_key =
                tally_dap::client::fetch_hpke_config(&agent, &config.helper, &task_id).unwrap();
            let builder = tally_dap::client::ReportBuilder::from_config(&config).unwrap();
            for count in counts {
                // Present, then the count's four bits (the layout's order).
                let mut measurement = vec![1, 1, 1, 1, u128::from(count > 0)];
                measurement.extend((0..4).map(|bit| (count >> bit) & 1));
                assert_eq!(measurement.len(), layout.len());
                let report = builder
                    .build(&measurement, time, &leader_key, &helper_key)
                    .unwrap();
                let outcome = tally_dap::client::upload(&agent, &config.leader, &task_id, &report);
                assert!(
                    matches!(outcome, Ok(tally_dap::client::UploadOutcome::Accepted)),
                    "{outcome:?}"
                );
            }
            let week = WeekJob {
                job: rand::random::<CollectionJobId>().to_string(),
                start: u64::try_from(monday.to_unix_days()).unwrap() * 86_400,
                duration: WEEK_SECONDS,
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                if let Step::Collected(merged) =
                    collect(&collector, &layout, monday, &week).unwrap()
                {
                    return merged;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the collection did not finish"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .await
        .unwrap();
        assert_eq!((merged.week, merged.reports), (monday, 6));
        let cargo = &merged.programs["cargo"];
        assert_eq!(cargo.reports, 6);
        let invocations = cargo.counters["cargo/invocations"];
        assert_eq!((invocations.reports_with, invocations.total), (5, Some(28)));
        assert_eq!(cargo.os["linux"], 6);
    }
}
