//! The state every handler shares: the store, the config being served (and every earlier
//! version, for uploads made under it), and each calendar week's running merge.
//!
//! [`AppState`] is what a server is: [`AppState::open`] verifies the signed config, records it
//! in the store and loads the merged weeks; [`AppState::accept_upload`] validates one upload,
//! stores it canonically and adds it to its week's merge; [`AppState::weeks_index`] and
//! [`AppState::program_week`] publish the merges, thresholded. Keeping the merges in step with
//! the store (checkpoints, the open generation, retention, the timer) is `background.rs`'s work
//! on the same state, with the protocol of `checkpoint.rs`.
//!
//! Promises: an upload answered `Ok` is in the store, in a generation that was not sealed when
//! it was written (so in the next checkpoint), and in its week's merge exactly once; a refusal
//! is a 4xx with a one-line reason and writes nothing; a 5xx means only that the store failed.
//! Nothing under the threshold leaves through the publishing methods.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::http::StatusCode;
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex, bucket_week};
use tally_protocol::{Day, UploadConfig};

use crate::checkpoint::{WeekState, report_id};
use crate::clock::Clock;
use crate::configs::{Configs, Served};
use crate::signing;
use crate::store::{MAX_CONFIG_BYTES, Store, config_keys};
use crate::validate;

/// Default publication threshold: counts seen in fewer distinct reports are withheld.
pub const DEFAULT_THRESHOLD: u64 = 5;

/// Default number of weeks raw reports are kept after their week is merged.
pub const DEFAULT_RETENTION_WEEKS: u32 = 8;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Publication threshold k (at least 1).
    pub threshold: u64,
    /// Where "today" comes from (`TALLY_NOW` in tests).
    pub clock: Clock,
    /// Longest time a client may take to send an upload's body.
    pub body_timeout: Duration,
    /// Weeks raw reports are kept after their week is merged (closed to uploads and in a
    /// checkpoint); the merged aggregates are kept.
    pub retention_weeks: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threshold: DEFAULT_THRESHOLD,
            clock: Clock::System,
            body_timeout: Duration::from_secs(10),
            retention_weeks: DEFAULT_RETENTION_WEEKS,
        }
    }
}

/// The config being served: its exact bytes and signature, and its parsed form.
#[derive(Debug, Clone)]
pub struct SignedConfig {
    pub json: Bytes,
    pub signature: Bytes,
    pub config: Arc<UploadConfig>,
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) current: SignedConfig,
    /// Every config version served from the store.
    pub(crate) configs: Configs,
    pub(crate) weeks: RwLock<BTreeMap<Day, Arc<WeekSlot>>>,
    pub(crate) options: Options,
    /// Weeks raw reports are kept after their week is merged (`Options::retention_weeks`).
    pub(crate) retention_weeks: u32,
}

/// One calendar week on this server. Every change to `state` is idempotent (a report is added
/// only if its id is not counted yet, a checkpoint adopted only if newer), so uploads, store
/// re-reads and checkpoints need no ordering among themselves beyond `state`'s lock.
pub(crate) struct WeekSlot {
    pub(crate) state: Mutex<WeekState>,
    /// Held while re-reading the store or making a checkpoint, so that this server does each
    /// once at a time per week.
    pub(crate) work: tokio::sync::Mutex<()>,
    /// Set once the week has been read from the store by this server.
    pub(crate) loaded: AtomicBool,
    /// Set once retention has deleted the week's raw reports (or found them deleted).
    pub(crate) raw_deleted: AtomicBool,
}

impl WeekSlot {
    pub(crate) fn state(&self) -> MutexGuard<'_, WeekState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AppState {
    /// Opens the server state: verifies the config against `public_key`, records it in the
    /// store beside every earlier version (refusing a version number reused with different
    /// contents, or lower than one already served), and loads the merged weeks, rebuilding any
    /// whose stored merge disagrees with the raw reports.
    pub async fn open(
        store: Store,
        config_json: Bytes,
        signature: Bytes,
        public_key: &minisign_verify::PublicKey,
        options: Options,
    ) -> anyhow::Result<AppState> {
        if options.threshold == 0 {
            bail!("--threshold must be at least 1");
        }
        let signature_text = std::str::from_utf8(&signature).context(
            "the config signature is not text; pass the .minisig written by `tally-server sign`",
        )?;
        let config = Arc::new(signing::verify_config(
            &config_json,
            signature_text,
            public_key,
        )?);
        let current = SignedConfig {
            json: config_json,
            signature,
            config,
        };
        let store_name = format!("{store:?}");
        let state = AppState(Arc::new(Inner {
            configs: Configs::new(store.clone()),
            store,
            current,
            weeks: RwLock::new(BTreeMap::new()),
            retention_weeks: options.retention_weeks,
            options,
        }));
        state
            .register_current_config()
            .await
            .with_context(|| format!("cannot record the config in the store {store_name}"))?;
        state
            .reconcile(None)
            .await
            .with_context(|| format!("cannot read the store {store_name}"))?;
        Ok(state)
    }

    /// The store this server writes to.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The publication threshold.
    pub fn threshold(&self) -> u64 {
        self.0.options.threshold
    }

    /// Weeks raw reports are kept after their week is merged.
    pub fn retention_weeks(&self) -> u32 {
        self.0.retention_weeks
    }

    async fn register_current_config(&self) -> anyhow::Result<()> {
        let current = &self.0.current;
        let version = current.config.version;
        let (json_key, sig_key) = config_keys(version);
        let (served, _) = self.0.store.list_dir("configs").await?;
        let highest = served
            .iter()
            .filter_map(|key| key.filename()?.strip_suffix(".json")?.parse::<u64>().ok())
            .max();
        if let Some(highest) = highest.filter(|h| *h > version) {
            bail!(
                "config version {version} is lower than version {highest} already served from this store; clients refuse rollbacks, so give it a version above {highest}"
            );
        }
        // A record that cannot be read (a FIFO, a link…) is named in the log and replaced.
        match self.0.store.get(&json_key, MAX_CONFIG_BYTES).await? {
            Some(existing) if existing != current.json => bail!(
                "config version {version} was already served from this store with different contents; give the new config a higher version and sign it again"
            ),
            // Re-signing the same bytes is fine: keep the first signature served beside them.
            Some(_) => {}
            None => {
                // Signature first: a config key that exists always has its signature beside it.
                self.0
                    .store
                    .put(&sig_key, current.signature.clone(), None)
                    .await?;
                self.0
                    .store
                    .put(&json_key, current.json.clone(), None)
                    .await?;
            }
        }
        self.0.configs.insert(current.config.clone());
        Ok(())
    }

    /// The slot of the calendar week starting on `monday`, created empty on first use.
    pub(crate) fn slot(&self, monday: Day) -> Arc<WeekSlot> {
        if let Some(slot) = self
            .0
            .weeks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&monday)
        {
            return slot.clone();
        }
        let mut weeks = self.0.weeks.write().unwrap_or_else(|e| e.into_inner());
        weeks
            .entry(monday)
            .or_insert_with(|| {
                Arc::new(WeekSlot {
                    state: Mutex::new(WeekState::new(monday)),
                    work: tokio::sync::Mutex::new(()),
                    loaded: AtomicBool::new(false),
                    raw_deleted: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Validates and stores one upload. `Ok(true)` if stored now, `Ok(false)` if it was
    /// already stored; `Err((status, reason))` otherwise.
    pub async fn accept_upload(
        &self,
        url_week: &str,
        body: &[u8],
    ) -> Result<bool, (StatusCode, String)> {
        let today = self.0.options.clock.today();
        let report = validate::parse_upload(url_week, body, today).map_err(bad_request)?;
        let version = report.config_version.unwrap_or_default();
        let config = match self.0.configs.lookup(version).await {
            Ok(Served::Config(config)) => config,
            Ok(Served::Never) => {
                return Err(bad_request(format!(
                    "config version {version} was never served here"
                )));
            }
            // The store's record of a served config is damaged: the operator's to repair, and
            // the client's to retry meanwhile.
            Ok(Served::Unusable(why)) => return Err(storage_error(anyhow::anyhow!(why))),
            Err(e) => return Err(storage_error(e)),
        };
        validate::check_against_config(&report, &config).map_err(bad_request)?;
        let monday = bucket_week(report.week);
        let slot = self.slot(monday);
        self.load_week(monday, &slot).await.map_err(storage_error)?;
        let id = report_id(report.week, report.x);
        let generation = {
            let state = slot.state();
            if state.contains(id) {
                return Ok(false);
            }
            state.open_generation()
        };
        // Stored canonical: only what validation saw, in a fixed form, is ever written.
        let canonical = Bytes::from(report.to_canonical_json());
        let (created, generation) =
            crate::checkpoint::store_report(&self.0.store, &report, canonical, generation)
                .await
                .map_err(storage_error)?;
        slot.state().add(generation, &report);
        Ok(created)
    }

    /// `GET /api/weeks`: every week with published data, newest first.
    pub fn weeks_index(&self) -> WeeksIndex {
        let threshold = self.threshold();
        let slots: Vec<_> = self
            .0
            .weeks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut weeks: Vec<_> = slots
            .iter()
            .filter_map(|slot| slot.state().live().summary(threshold))
            .collect();
        weeks.sort_by_key(|summary| std::cmp::Reverse(summary.week));
        WeeksIndex { threshold, weeks }
    }

    /// `GET /api/weeks/{week}/{program}`: `None` when nothing is published for it.
    pub fn program_week(&self, week: Day, program: &str) -> Option<ProgramWeek> {
        let slot = self
            .0
            .weeks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&bucket_week(week))?
            .clone();
        let state = slot.state();
        state.live().publish(program, self.threshold())
    }
}

/// `GET /status`: what the server keeps and for how long.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// Weeks raw reports are kept after their week is merged.
    pub retention_weeks: u32,
    /// Every week with published data, newest first.
    pub weeks: Vec<WeekStatus>,
}

/// One published week in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeekStatus {
    pub week: Day,
    /// Whether the week's raw reports have been deleted (its merged aggregate stays).
    pub raw_reports_deleted: bool,
    /// The first day retention deletes them.
    pub raw_reports_deleted_on: Option<Day>,
}

impl AppState {
    /// `GET /status`: the retention period and, for each published week (only those: a week
    /// under the threshold is not named), whether and when its raw reports go.
    pub fn status(&self) -> Status {
        let retention_weeks = self.retention_weeks();
        let weeks = self
            .weeks_index()
            .weeks
            .iter()
            .map(|summary| {
                let raw_reports_deleted = self
                    .0
                    .weeks
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&summary.week)
                    .is_some_and(|slot| slot.raw_deleted.load(Ordering::Acquire));
                WeekStatus {
                    week: summary.week,
                    raw_reports_deleted,
                    raw_reports_deleted_on: crate::background::raw_deleted_on(
                        summary.week,
                        retention_weeks,
                    ),
                }
            })
            .collect();
        Status {
            retention_weeks,
            weeks,
        }
    }
}

fn bad_request(reason: String) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, reason)
}

fn storage_error(e: anyhow::Error) -> (StatusCode, String) {
    eprintln!("tally-server: storage error: {e:#}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is unavailable; retry later".to_string(),
    )
}
