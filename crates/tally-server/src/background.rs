//! Every calendar week this server holds, with its running merge, and the work that keeps those
//! merges in step with the store outside requests: re-reading it, checkpointing, deleting raw
//! reports once retention allows, and the timer that does all of it.
//!
//! [`Weeks`] is that part of the server's state. It knows the store, the served configs (what
//! a report read back is checked against) and the retention period, nothing of requests; the
//! state the handlers share (`state.rs`) holds one and publishes from it.
//!
//! - [`Weeks::reconcile`] brings weeks up to date with the store (at start-up every week, on
//!   the timer the weeks still open to uploads): the newest checkpoint, then the reports of the
//!   open generation this server does not hold yet (`checkpoint.rs` says why that is enough);
//!   [`Weeks::load_week`] does the same for one week, once, before its first upload here;
//! - [`Weeks::flush`] makes the next checkpoint of every week with reports beyond its
//!   checkpoint;
//! - [`Weeks::apply_retention`] deletes the raw reports of weeks merged more than
//!   `retention_weeks` weeks ago, once a checkpoint holds every one of them;
//! - [`Weeks::run_background`] is the timer: all of the above, forever. Connections' tasks
//!   belong to `serve.rs`, blocking file I/O to `store.rs`.
//!
//! Promises: on the timer, a failure is logged and retried on the next tick, never fatal to
//! serving (at start-up, `AppState::open` fails instead); a server killed at any point leaves
//! the store in a state any server continues from (a seal without its checkpoint is finished by
//! the next server that checkpoints; a checkpoint without its `latest` hint is found past it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use tally_protocol::aggregate::bucket_week;
use tally_protocol::{Day, MAX_REPORT_AGE_DAYS};

use crate::checkpoint::{self, Checkpoint, WeekState, id_of_key};
use crate::clock::Clock;
use crate::configs::Configs;
use crate::merge::MergedWeek;
use crate::store::{
    Created, MAX_CHECKPOINT_BYTES, Store, checkpoint_key, latest_key, merged_key, seal_key,
};

/// Most checkpoints retention makes of one week before it gives up for this tick (more means
/// reports are still arriving for a week that should be closed).
const MAX_FINAL_CHECKPOINTS: usize = 4;

/// The calendar weeks this server holds, by Monday, and what keeps them in step with the store.
pub(crate) struct Weeks {
    store: Store,
    /// Every config version served from the store: what reports read back are checked against.
    configs: Configs,
    slots: RwLock<BTreeMap<Day, Arc<WeekSlot>>>,
    /// Weeks raw reports are kept after their week is merged (`Options::retention_weeks`).
    retention_weeks: u32,
}

/// One calendar week on this server. Every change to `state` is idempotent (a report is added
/// only if its id is not counted yet, a checkpoint adopted only if newer), so uploads, store
/// re-reads and checkpoints need no ordering among themselves beyond `state`'s lock.
pub(crate) struct WeekSlot {
    state: Mutex<WeekState>,
    /// Held while re-reading the store or making a checkpoint, so that this server does each
    /// once at a time per week.
    work: tokio::sync::Mutex<()>,
    /// Set once the week has been read from the store by this server.
    loaded: AtomicBool,
    /// Set once retention has deleted the week's raw reports (or found them deleted).
    raw_deleted: AtomicBool,
    /// Set once the week is published from a private-aggregation collection
    /// ([`Weeks::publish_collected`]): its merge came from the aggregators, not from reports.
    collected: AtomicBool,
}

impl WeekSlot {
    pub(crate) fn state(&self) -> MutexGuard<'_, WeekState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether retention has deleted the week's raw reports (its merged aggregate stays).
    pub(crate) fn raw_deleted(&self) -> bool {
        self.raw_deleted.load(Ordering::Acquire)
    }
}

impl Weeks {
    /// No week yet: [`Weeks::reconcile`] reads them from the store.
    pub(crate) fn new(store: Store, configs: Configs, retention_weeks: u32) -> Weeks {
        Weeks {
            store,
            configs,
            slots: RwLock::new(BTreeMap::new()),
            retention_weeks,
        }
    }

    /// The slot of the calendar week starting on `monday`, created empty on first use.
    pub(crate) fn slot(&self, monday: Day) -> Arc<WeekSlot> {
        if let Some(slot) = self.get(monday) {
            return slot;
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(monday)
            .or_insert_with(|| {
                Arc::new(WeekSlot {
                    state: Mutex::new(WeekState::new(monday)),
                    work: tokio::sync::Mutex::new(()),
                    loaded: AtomicBool::new(false),
                    raw_deleted: AtomicBool::new(false),
                    collected: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// The slot of the week starting on `monday`, if this server holds it.
    pub(crate) fn get(&self, monday: Day) -> Option<Arc<WeekSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&monday)
            .cloned()
    }

    /// Every week this server holds, oldest first.
    pub(crate) fn all(&self) -> Vec<(Day, Arc<WeekSlot>)> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(monday, slot)| (*monday, slot.clone()))
            .collect()
    }

    /// Brings every calendar week with data in the store up to date: all weeks, or those from
    /// `since` (a Monday) on. Weeks whose raw reports retention deleted are read from their
    /// checkpoints.
    pub(crate) async fn reconcile(&self, since: Option<Day>) -> anyhow::Result<()> {
        let (_, raw_dirs) = self.store.list_dir("reports").await?;
        let (_, merged_dirs) = self.store.list_dir("merged").await?;
        let mondays = |dirs: Vec<object_store::path::Path>| -> Vec<Day> {
            dirs.iter()
                .filter_map(|dir| dir.filename()?.parse::<Day>().ok())
                .filter(|monday| since.is_none_or(|since| *monday >= since))
                .collect()
        };
        let raw = mondays(raw_dirs);
        let mut all = raw.clone();
        all.extend(mondays(merged_dirs));
        all.sort();
        all.dedup();
        for monday in &all {
            let slot = self.slot(*monday);
            self.refresh_week(*monday, &slot).await?;
            if !raw.contains(monday) {
                slot.raw_deleted.store(true, Ordering::Release);
            }
        }
        // Weeks collected by private aggregation (here or by another server on the store):
        // their merge, once stored, is the week. A week with plain reports or checkpoints is
        // published from those.
        let (records, _) = self.store.list_dir("dap/weeks").await?;
        for monday in records.iter().filter_map(|key| {
            key.filename()?
                .strip_suffix(".json")?
                .parse::<Day>()
                .ok()
                .filter(|monday| since.is_none_or(|since| *monday >= since))
                .filter(|monday| !all.contains(monday))
        }) {
            if self.is_collected(monday) {
                continue;
            }
            match crate::open_data::stored_merge(
                &self.store,
                &self.configs,
                &merged_key(monday),
                monday,
            )
            .await
            {
                Ok(Some(merged)) => self.publish_collected(merged),
                // Its collection has not finished yet.
                Ok(None) => {}
                Err(why) => eprintln!(
                    "tally-server: the collected week of {monday} is not published: {why}"
                ),
            }
        }
        Ok(())
    }

    /// Publishes `merged`, a week collected by private aggregation, as the week's merge: it
    /// becomes the week's checkpoint, in memory (stored as the merged copy,
    /// `merged/<monday>.json`, by whoever collected it).
    pub(crate) fn publish_collected(&self, merged: MergedWeek) {
        let slot = self.slot(merged.week);
        slot.state().adopt(Arc::new(Checkpoint {
            covers: 1,
            merged,
            ids: Default::default(),
        }));
        slot.loaded.store(true, Ordering::Release);
        slot.collected.store(true, Ordering::Release);
    }

    /// Whether the week of `monday` is published from a collection ([`Weeks::publish_collected`]).
    pub(crate) fn is_collected(&self, monday: Day) -> bool {
        self.get(monday)
            .is_some_and(|slot| slot.collected.load(Ordering::Acquire))
    }

    /// Whether this server holds plain reports of the week of `monday`.
    pub(crate) fn has_plain_reports(&self, monday: Day) -> bool {
        self.get(monday).is_some_and(|slot| {
            let state = slot.state();
            !state.base().ids.is_empty() || state.pending() > 0
        })
    }

    /// Reads the week from the store unless this server has already.
    pub(crate) async fn load_week(&self, monday: Day, slot: &WeekSlot) -> anyhow::Result<()> {
        if slot.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let _work = slot.work.lock().await;
        if slot.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        self.refresh_locked(monday, slot).await
    }

    async fn refresh_week(&self, monday: Day, slot: &WeekSlot) -> anyhow::Result<()> {
        let _work = slot.work.lock().await;
        self.refresh_locked(monday, slot).await
    }

    /// The newest checkpoint, then every report of the open generation (and of the ones after
    /// it, while the one before is sealed) that this server does not count yet.
    async fn refresh_locked(&self, monday: Day, slot: &WeekSlot) -> anyhow::Result<()> {
        let store = &self.store;
        let have = slot.state().open_generation();
        if let Some(newer) = checkpoint::find_newer(store, &self.configs, monday, have).await? {
            slot.state().adopt(Arc::new(newer));
        }
        let mut generation = slot.state().open_generation();
        loop {
            let keys = checkpoint::list_generation(store, monday, generation).await?;
            let missing: Vec<_> = {
                let state = slot.state();
                keys.into_iter()
                    .filter(|key| id_of_key(key).is_some_and(|id| !state.contains(id)))
                    .collect()
            };
            let reports = checkpoint::fetch(store, &self.configs, monday, missing).await?;
            {
                let mut state = slot.state();
                for report in &reports {
                    state.add(generation, report);
                }
            }
            if !store.exists(&seal_key(monday, generation)).await? {
                break;
            }
            generation += 1;
        }
        slot.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes the next checkpoint of every week with reports beyond its checkpoint. Returns
    /// how many weeks got one (made here or adopted from another server that made it first). A
    /// week that fails does not keep the others from theirs: the first failure is returned
    /// after all were tried, the others are logged.
    pub(crate) async fn flush(&self) -> anyhow::Result<usize> {
        let slots = self.all();
        let mut written = 0;
        let mut failed = None;
        for (monday, slot) in slots {
            if slot.state().pending() == 0 {
                continue;
            }
            match self.checkpoint_week(monday, &slot).await {
                Ok(true) => written += 1,
                Ok(false) => {}
                Err(e) => {
                    let e = e.context(format!("checkpointing the week of {monday}"));
                    if failed.is_none() {
                        failed = Some(e);
                    } else {
                        eprintln!("tally-server: {e:#}");
                    }
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Seals the open generation, merges it into the checkpoint, and writes that as the next
    /// checkpoint, unless another server wrote it first (then adopts theirs). `Ok(false)` if
    /// there was nothing to merge.
    async fn checkpoint_week(&self, monday: Day, slot: &WeekSlot) -> anyhow::Result<bool> {
        let store = &self.store;
        let _work = slot.work.lock().await;
        let have = slot.state().open_generation();
        if let Some(newer) = checkpoint::find_newer(store, &self.configs, monday, have).await? {
            slot.state().adopt(Arc::new(newer));
        }
        let base = {
            let state = slot.state();
            if state.pending() == 0 {
                return Ok(false);
            }
            state.base().clone()
        };
        let open = base.covers;
        checkpoint::seal(store, monday, open).await?;
        // Listed after the seal: every report answered 2xx for this generation is here.
        let keys = checkpoint::list_generation(store, monday, open).await?;
        let mut next = Checkpoint {
            covers: open + 1,
            merged: base.merged.clone(),
            ids: base.ids.clone(),
        };
        let mut missing = Vec::new();
        {
            let state = slot.state();
            for key in keys {
                let Some(id) = id_of_key(&key) else { continue };
                if next.ids.contains(&id) {
                    continue;
                }
                match state.pending_report(id) {
                    Some(report) => {
                        next.merged.add(report);
                        next.ids.insert(id);
                    }
                    None => missing.push(key),
                }
            }
        }
        for report in checkpoint::fetch(store, &self.configs, monday, missing).await? {
            if next
                .ids
                .insert(checkpoint::report_id(report.week, report.x))
            {
                next.merged.add(&report);
            }
        }
        let key = checkpoint_key(monday, next.covers);
        let adopted = match store
            .create(&key, Bytes::from(next.to_bytes()), monday)
            .await?
        {
            Created::New => {
                // Hints for readers; a crash before them costs readers a few more requests.
                store
                    .put(
                        &latest_key(monday),
                        Bytes::from(next.covers.to_string()),
                        Some(monday),
                    )
                    .await?;
                let merged = serde_json::to_vec(&next.merged)?;
                store
                    .put(&merged_key(monday), Bytes::from(merged), Some(monday))
                    .await?;
                // Two checkpoints stay: a reader that has just found the older one can still
                // read it.
                if open >= 2 {
                    store.delete(&checkpoint_key(monday, open - 1)).await?;
                }
                next
            }
            Created::AlreadyThere => {
                let Some(bytes) = store.get(&key, MAX_CHECKPOINT_BYTES).await? else {
                    anyhow::bail!("checkpoint {key} vanished just after it was written");
                };
                let theirs = Checkpoint::parse(&bytes, monday, open + 1)
                    .with_context(|| format!("checkpoint {key} is unreadable"))?;
                if let Err(why) = self.configs.check_merged(&theirs.merged).await? {
                    anyhow::bail!(
                        "checkpoint {key} holds what no upload could have brought: {why}; remove it"
                    );
                }
                theirs
            }
        };
        slot.state().adopt(Arc::new(adopted));
        Ok(true)
    }

    /// Deletes the raw reports of every week closed to uploads (its last day plus
    /// `MAX_REPORT_AGE_DAYS`) more than `retention_weeks` weeks before `today`, once a
    /// checkpoint holds all of them: the week's open generation is sealed and found empty
    /// first. The checkpoints (the merged aggregates) are kept. Returns the weeks deleted.
    pub(crate) async fn apply_retention(&self, today: Day) -> anyhow::Result<Vec<Day>> {
        let (_, week_dirs) = self.store.list_dir("reports").await?;
        let mut deleted = Vec::new();
        for dir in week_dirs {
            let Some(monday) = dir.filename().and_then(|name| name.parse::<Day>().ok()) else {
                continue;
            };
            if raw_deleted_on(monday, self.retention_weeks).is_none_or(|day| today < day) {
                continue;
            }
            let slot = self.slot(monday);
            if !self.finish_week(monday, &slot).await? {
                eprintln!(
                    "tally-server: the week of {monday} still receives reports; its raw reports are kept for now"
                );
                continue;
            }
            self.delete_raw(monday).await?;
            slot.raw_deleted.store(true, Ordering::Release);
            deleted.push(monday);
        }
        Ok(deleted)
    }

    /// Checkpoints the week until a checkpoint holds every report stored for it, with the open
    /// generation sealed: `Ok(false)` if reports kept arriving.
    async fn finish_week(&self, monday: Day, slot: &WeekSlot) -> anyhow::Result<bool> {
        for _ in 0..MAX_FINAL_CHECKPOINTS {
            self.refresh_week(monday, slot).await?;
            if slot.state().pending() > 0 {
                self.checkpoint_week(monday, slot).await?;
                continue;
            }
            let open = slot.state().open_generation();
            checkpoint::seal(&self.store, monday, open).await?;
            // Anything written to it before the seal, or to the next one after, is found now.
            self.refresh_week(monday, slot).await?;
            if slot.state().pending() == 0 {
                // The copy for tools that read the store: the final merge, whatever order
                // servers wrote it in while the week was open.
                let merged = serde_json::to_vec(&slot.state().base().merged)?;
                self.store
                    .put(&merged_key(monday), Bytes::from(merged), Some(monday))
                    .await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Deletes everything under `reports/<monday>/`, 16 deletions at a time.
    async fn delete_raw(&self, monday: Day) -> anyhow::Result<()> {
        let store = &self.store;
        let week = format!("reports/{monday}");
        let (mut keys, generations) = store.list_dir(&week).await?;
        for generation in generations {
            keys.extend(store.list_dir(generation.as_ref()).await?.0);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in keys.chunks(keys.len().div_ceil(16).max(1)) {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tasks.spawn(async move {
                for key in chunk {
                    store.delete(&key).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        Ok(())
    }

    /// Runs forever: checkpoints every `flush_every`; every `reconcile_every` picks up reports
    /// that other servers sharing the store have written in the weeks still open to uploads,
    /// and applies retention as of `clock`'s today.
    pub(crate) async fn run_background(
        &self,
        clock: Clock,
        flush_every: Duration,
        reconcile_every: Duration,
    ) {
        let mut flush = tokio::time::interval(flush_every);
        let mut reconcile = tokio::time::interval(reconcile_every);
        reconcile.tick().await;
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    if let Err(e) = self.flush().await {
                        eprintln!("tally-server: writing a checkpoint failed (will retry): {e:#}");
                    }
                }
                _ = reconcile.tick() => {
                    let today = clock.today();
                    let since = today.plus_days(-MAX_REPORT_AGE_DAYS).map(bucket_week);
                    if let Err(e) = self.reconcile(since).await {
                        eprintln!("tally-server: reconciling with the store failed (will retry): {e:#}");
                    }
                    if let Err(e) = self.apply_retention(today).await {
                        eprintln!("tally-server: deleting old raw reports failed (will retry): {e:#}");
                    }
                }
            }
        }
    }
}

/// The first day the raw reports of the week of `monday` may be deleted: `retention_weeks`
/// weeks after the week closes to uploads (its Sunday plus `MAX_REPORT_AGE_DAYS`, the last day
/// a report of it is accepted, plus one); `None` if that is past the calendar's end.
pub fn raw_deleted_on(monday: Day, retention_weeks: u32) -> Option<Day> {
    let closed = 7 + MAX_REPORT_AGE_DAYS;
    monday.plus_days(closed + 7 * i64::from(retention_weeks))
}
