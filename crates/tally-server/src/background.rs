//! The server's work outside requests: keeping each week's in-memory merge in step with the
//! store, and the tasks that must outlive the connection that started them.
//!
//! - [`AppState::reconcile`] rebuilds, from the raw reports, every week whose merge disagrees
//!   with the store (at start-up, and on the timer to pick up what other servers sharing the
//!   store wrote); a rebuild holds its week's gate exclusively, so a concurrent upload is either
//!   listed by it or merged after it, never both or neither;
//! - [`AppState::flush`] writes every changed merge to `merged/<monday>.json`; a failed write
//!   leaves the week marked changed for the next flush;
//! - [`AppState::spawn_background`] (the timer: flush and reconcile, forever) and
//!   [`accept_detached`] (one upload, run to its end even when its connection closes) start the
//!   app's own tasks; connections' tasks belong to `serve.rs`, blocking file I/O to `store.rs`.
//!
//! Promises: on the timer, a failure is logged and retried on the next tick, never fatal to
//! serving (at start-up, [`AppState::open`] fails instead); a stored merge is only a cache of the
//! raw reports, so losing or corrupting one costs a rebuild, not a count.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::http::StatusCode;
use tally_protocol::aggregate::bucket_week;
use tally_protocol::{Day, MAX_REPORT_AGE_DAYS, Report};
use tokio::task::JoinHandle;

use crate::merge::MergedWeek;
use crate::state::AppState;
use crate::store::merged_key;

impl AppState {
    /// Rebuilds, from the raw reports, every calendar week whose merge disagrees with the
    /// store: all weeks, or those from `since` (a Monday) on.
    pub async fn reconcile(&self, since: Option<Day>) -> anyhow::Result<()> {
        let (_, week_dirs) = self.0.store.list_dir("reports").await?;
        for dir in week_dirs {
            let Some(monday) = dir.filename().and_then(|name| name.parse::<Day>().ok()) else {
                continue;
            };
            if since.is_some_and(|since| monday < since) {
                continue;
            }
            self.reconcile_week(monday).await?;
        }
        Ok(())
    }

    async fn reconcile_week(&self, monday: Day) -> anyhow::Result<()> {
        let slot = self.slot(monday);
        let _gate = slot.gate.write().await;
        let (keys, _) = self.0.store.list_dir(&format!("reports/{monday}")).await?;
        let keys: Vec<_> = keys
            .into_iter()
            .filter(|k| k.as_ref().ends_with(".json"))
            .collect();
        let stored = keys.len() as u64;
        if slot
            .merged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reports
            == stored
        {
            return Ok(());
        }
        if let Some(bytes) = self.0.store.get(&merged_key(monday)).await?
            && let Ok(merged) = serde_json::from_slice::<MergedWeek>(&bytes)
            && merged.week == monday
            && merged.reports == stored
        {
            *slot.merged.lock().unwrap_or_else(|e| e.into_inner()) = merged;
            return Ok(());
        }
        let mut rebuilt = MergedWeek::new(monday);
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in keys.chunks(keys.len().div_ceil(16).max(1)) {
            let store = self.0.store.clone();
            let chunk = chunk.to_vec();
            tasks.spawn(async move {
                let mut reports = Vec::with_capacity(chunk.len());
                for key in chunk {
                    let Some(bytes) = store.get(&key).await? else {
                        continue;
                    };
                    match Report::parse(&bytes) {
                        Ok(report) if bucket_week(report.week) == monday => reports.push(report),
                        _ => eprintln!("tally-server: skipping unreadable stored report {key}"),
                    }
                }
                anyhow::Ok(reports)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            for report in joined.context("a rebuild task failed")?? {
                rebuilt.add(&report);
            }
        }
        *slot.merged.lock().unwrap_or_else(|e| e.into_inner()) = rebuilt;
        slot.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes every changed week's merge to `merged/<monday>.json`. Returns how many.
    pub async fn flush(&self) -> anyhow::Result<usize> {
        let slots: Vec<_> = self
            .0
            .weeks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut written = 0;
        for slot in slots {
            if !slot.dirty.swap(false, Ordering::AcqRel) {
                continue;
            }
            let (monday, bytes) = {
                let merged = slot.merged.lock().unwrap_or_else(|e| e.into_inner());
                (
                    merged.week,
                    serde_json::to_vec(&*merged).context("serializing a merged week")?,
                )
            };
            if let Err(e) = self
                .0
                .store
                .put(&merged_key(monday), Bytes::from(bytes), Some(monday))
                .await
            {
                slot.dirty.store(true, Ordering::Release);
                return Err(e);
            }
            written += 1;
        }
        Ok(written)
    }

    /// [`AppState::run_background`] on its own task; abort the handle to stop it.
    pub fn spawn_background(
        &self,
        flush_every: Duration,
        reconcile_every: Duration,
    ) -> JoinHandle<()> {
        tokio::spawn(self.clone().run_background(flush_every, reconcile_every))
    }

    /// Runs forever: flushes merges every `flush_every`, and every `reconcile_every` picks up
    /// reports that other servers sharing the store have written in the weeks still open to
    /// uploads.
    pub async fn run_background(self, flush_every: Duration, reconcile_every: Duration) {
        let mut flush = tokio::time::interval(flush_every);
        let mut reconcile = tokio::time::interval(reconcile_every);
        reconcile.tick().await;
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    if let Err(e) = self.flush().await {
                        eprintln!("tally-server: writing merged aggregates failed (will retry): {e:#}");
                    }
                }
                _ = reconcile.tick() => {
                    let today = self.0.options.clock.today();
                    let since = today.plus_days(-MAX_REPORT_AGE_DAYS).map(bucket_week);
                    if let Err(e) = self.reconcile(since).await {
                        eprintln!("tally-server: reconciling with the store failed (will retry): {e:#}");
                    }
                }
            }
        }
    }
}

/// Validates, stores and merges one upload ([`AppState::accept_upload`]) on its own task: a
/// connection closed mid-upload (the client gave up, or the server cut a stalled connection off)
/// must not stop a report between its write and its merge.
pub(crate) fn accept_detached(
    state: AppState,
    week: String,
    body: Bytes,
) -> JoinHandle<Result<bool, (StatusCode, String)>> {
    tokio::spawn(async move { state.accept_upload(&week, &body).await })
}
