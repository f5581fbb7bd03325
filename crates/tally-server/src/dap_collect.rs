//! The collector's own collection loop in private-aggregation mode: `tally-server serve`, when
//! its signed config has an `aggregation` section and it is given the collector's credential
//! (`--dap-credential`), collects every ended week from the leader and publishes it.
//!
//! Each pass looks at the weeks whose collection day has come (`--collect-after-days` after
//! their Monday; by default the day after the week closes to uploads, so that no client's late
//! report is refused for a batch already spent) and that are still inside the aggregators'
//! replay horizon ([`COLLECT_WITHIN_DAYS`]). For each week not yet published it takes the
//! week's collection job ([`dap_week::week_job`], recorded once in the store before the leader
//! sees it), starts or repeats it and polls it ([`dap_week::collect`]); a finished collection
//! is stored as the week's merged copy (`merged/<monday>.json`, where `export` and every
//! replica read it) and published as the week's merge.
//!
//! Promises:
//!
//! - **Never partial data**: a week is published only from a finished collection, which the
//!   aggregators release only for at least `min_batch_size` reports. A week with fewer is not
//!   an error: the log says so, nothing is spent or published, and the next pass tries again.
//! - **One collection job per week**, across restarts and replicas: the job's ID is in the
//!   store before it is started, and a restart polls that job (the leader answers a repeated
//!   start as the same job).
//! - **The leader unreachable does not stop serving**: the log says so and the pass is retried
//!   with a backoff that doubles from [`MIN_BACKOFF`] up to the pass interval.
//! - A refusal the leader will likely repeat (the batch spent by another job, a job that
//!   failed, the token refused) leaves the week unpublished; it is logged, and the week asked
//!   for again only after [`REFUSED_RETRY`] (or at a restart), in case an operator mended the
//!   cause at the leader.
//! - A week for which the collector holds plain reports (sent before its config asked for
//!   private aggregation) is published from them and not collected.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use tally_dap::collector::Collector;
use tally_dap::layout::Layout;
use tally_dap_aggregator::provision::CollectorCredential;
use tally_protocol::aggregate::bucket_week;
use tally_protocol::{Day, MAX_REPORT_AGE_DAYS};

use crate::dap_week::{self, Step, StepError};
use crate::state::AppState;
use crate::store::merged_key;

/// Days after its Monday a week is collected by default: the day after the last day a report
/// of it is accepted in the plain mode (its Sunday plus [`MAX_REPORT_AGE_DAYS`]).
pub const DEFAULT_COLLECT_AFTER_DAYS: u32 = 7 + MAX_REPORT_AGE_DAYS as u32;

/// Weeks whose Monday is further back are not collected: both aggregators forget reports (and
/// refuse their batches) past their replay horizon, `dap provision --report-expiry-days`,
/// whose default this is.
pub const COLLECT_WITHIN_DAYS: i64 = 35;

/// Default seconds between passes.
pub const DEFAULT_COLLECT_EVERY_SECS: u64 = 600;

/// First wait after the leader did not answer; it doubles on each failure after.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// How long a week the leader refused is left alone before it is asked for again.
pub const REFUSED_RETRY: Duration = Duration::from_secs(24 * 3600);

/// Wait between polls of a collection the aggregators are working on (the leader's
/// `Retry-After`).
const POLL_EVERY: Duration = Duration::from_secs(1);

/// How long one request to the leader may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The collection loop of one server.
pub struct WeekCollector {
    state: AppState,
    collector: Collector,
    layout: Layout,
    leader: String,
    min_batch_size: u64,
    after_days: u32,
    every: Duration,
}

/// How a pass ended, by how soon the next one should come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pass {
    /// Nothing to wait for: the next pass at the interval.
    Idle,
    /// A collection is running: poll soon.
    Pending,
    /// The leader (or the store) did not answer: back off.
    Unreachable,
}

/// The Mondays of the weeks due for collection as of `today`, oldest first: those whose Monday
/// is at least `after_days` back (so at least 7: ended), and at most [`COLLECT_WITHIN_DAYS`].
pub fn due(today: Day, after_days: u32) -> Vec<Day> {
    let Some(newest) = today.plus_days(-i64::from(after_days)).map(bucket_week) else {
        return Vec::new();
    };
    let mut mondays = Vec::new();
    let mut monday = newest;
    while today.days_since(monday) <= COLLECT_WITHIN_DAYS {
        mondays.push(monday);
        match monday.plus_days(-7) {
            Some(earlier) => monday = earlier,
            None => break,
        }
    }
    mondays.reverse();
    mondays
}

/// Reads the collector's credential (`tally-server dap collector-keygen --credential-out`).
pub fn read_credential(path: &Path) -> anyhow::Result<CollectorCredential> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the collector's credential {}; write it with `tally-server dap collector-keygen --credential-out`",
            path.display()
        )
    })?;
    let credential: CollectorCredential = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a collector credential (the JSON `tally-server dap collector-keygen` writes)",
            path.display()
        )
    })?;
    credential
        .keypair()
        .with_context(|| format!("the collector credential {} is unusable", path.display()))?;
    Ok(credential)
}

impl WeekCollector {
    /// The loop for `state`'s served config, with the collector's `credential`: `None` if the
    /// config does not ask for private aggregation.
    pub fn new(
        state: &AppState,
        credential: &CollectorCredential,
        after_days: u32,
        every: Duration,
    ) -> anyhow::Result<Option<WeekCollector>> {
        let config = state.served_config();
        let Some(section) = &config.aggregation else {
            return Ok(None);
        };
        if after_days < 7 {
            anyhow::bail!(
                "--collect-after-days {after_days} would collect a week before it ends: give at least 7"
            );
        }
        let task_id = tally_dap::draft::task_id(section)
            .context("the served config's aggregation section has an unusable task ID")?;
        let vdaf = tally_dap::draft::vdaf(&section.vdaf).map_err(|e| {
            anyhow::anyhow!("the served config's aggregation section has an unusable VDAF: {e}")
        })?;
        let collector = Collector::new(
            &section.leader,
            task_id,
            credential.token.clone(),
            credential.keypair()?,
            vdaf,
            REQUEST_TIMEOUT,
        );
        Ok(Some(WeekCollector {
            state: state.clone(),
            collector,
            layout: section.layout.clone(),
            leader: section.leader.clone(),
            min_batch_size: section.min_batch_size,
            after_days,
            every: every.max(POLL_EVERY),
        }))
    }

    /// Runs forever: a pass, then the wait its outcome calls for.
    pub async fn run(self) {
        let mut left_alone = BTreeMap::new();
        let mut backoff: Option<Duration> = None;
        loop {
            let wait = match self.pass(&mut left_alone).await {
                Pass::Idle => {
                    backoff = None;
                    self.every
                }
                Pass::Pending => {
                    backoff = None;
                    POLL_EVERY
                }
                Pass::Unreachable => {
                    let next = backoff.map_or(MIN_BACKOFF, |b| (b * 2).min(self.every));
                    backoff = Some(next);
                    eprintln!("tally-server: collecting again in {}s", next.as_secs());
                    next
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One look at every week due: collects what it can. `left_alone` holds the weeks not to
    /// ask for before an instant (`None`: never, as long as this server runs).
    async fn pass(&self, left_alone: &mut BTreeMap<Day, Option<Instant>>) -> Pass {
        let weeks = &self.state.0.weeks;
        let today = self.state.0.options.clock.today();
        let mut outcome = Pass::Idle;
        for monday in due(today, self.after_days) {
            let waiting = left_alone
                .get(&monday)
                .is_some_and(|until| until.is_none_or(|until| Instant::now() < until));
            if waiting || weeks.is_collected(monday) {
                continue;
            }
            if weeks.has_plain_reports(monday) {
                eprintln!(
                    "tally-server: the week of {monday} holds plain reports (sent before the config asked for private aggregation): it is published from them and not collected"
                );
                left_alone.insert(monday, None);
                continue;
            }
            let week = match dap_week::week_job(self.state.store(), monday).await {
                Ok(week) => week,
                Err(e) => {
                    eprintln!(
                        "tally-server: cannot record the collection job of the week of {monday}: {e:#}"
                    );
                    return Pass::Unreachable;
                }
            };
            let (collector, layout) = (self.collector.clone(), self.layout.clone());
            let step = tokio::task::spawn_blocking(move || {
                dap_week::collect(&collector, &layout, monday, &week)
            })
            .await;
            let step = match step {
                Ok(step) => step,
                Err(e) => {
                    eprintln!("tally-server: collecting the week of {monday} stopped: {e}");
                    return Pass::Unreachable;
                }
            };
            match step {
                Ok(Step::Collected(merged)) => {
                    let reports = merged.reports;
                    let stored = match serde_json::to_vec(&merged) {
                        Ok(json) => {
                            self.state
                                .store()
                                .put(&merged_key(monday), Bytes::from(json), Some(monday))
                                .await
                        }
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = stored {
                        // Published only once stored: a restart or a replica must find it.
                        eprintln!(
                            "tally-server: the collected week of {monday} cannot be stored (will retry): {e:#}"
                        );
                        return Pass::Unreachable;
                    }
                    weeks.publish_collected(merged);
                    eprintln!(
                        "tally-server: collected the week of {monday} from the leader: {reports} reports"
                    );
                }
                Ok(Step::Pending) => outcome = outcome.max(Pass::Pending),
                Err(StepError::TooSmall) => eprintln!(
                    "tally-server: the week of {monday} has fewer than {} reports at the leader (min_batch_size); nothing is published for it yet, and it is tried again in {}s",
                    self.min_batch_size,
                    self.every.as_secs()
                ),
                Err(StepError::Unreachable(e)) => {
                    eprintln!(
                        "tally-server: the leader {} did not answer for the week of {monday}: {e}",
                        self.leader
                    );
                    return Pass::Unreachable;
                }
                Err(StepError::Refused(e)) => {
                    eprintln!(
                        "tally-server: the leader refused to collect the week of {monday}, which stays unpublished; asking again in {}h (or at a restart): {e}",
                        REFUSED_RETRY.as_secs() / 3600
                    );
                    left_alone.insert(monday, Some(Instant::now() + REFUSED_RETRY));
                }
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(list: &[&str]) -> Vec<Day> {
        list.iter().map(|d| d.parse().unwrap()).collect()
    }

    #[test]
    fn weeks_are_due_once_ended_and_until_the_horizon() {
        let monday: Day = "2026-12-14".parse().unwrap();
        // On a Monday, the week that ended yesterday is due, and four before it (35 days).
        assert_eq!(
            due(monday, 7),
            days(&[
                "2026-11-09",
                "2026-11-16",
                "2026-11-23",
                "2026-11-30",
                "2026-12-07"
            ])
        );
        // On the Sunday before, that week has not ended.
        let sunday = monday.plus_days(-1).unwrap();
        assert_eq!(due(sunday, 7).last(), Some(&"2026-11-30".parse().unwrap()));
        // By default a week waits until it is closed to uploads: 28 days after its Monday.
        assert_eq!(
            due(monday, DEFAULT_COLLECT_AFTER_DAYS),
            days(&["2026-11-09", "2026-11-16"])
        );
        assert_eq!(DEFAULT_COLLECT_AFTER_DAYS, 28);
    }
}
