//! The state every handler shares: the store, the config being served (and every earlier
//! version, for uploads made under it), and each calendar week's running merge.
//!
//! [`AppState`] is what a server is: [`AppState::open`] verifies the signed config, records it
//! in the store and loads the merged weeks; [`AppState::accept_upload`] validates one upload,
//! stores it canonically and adds it to its week's merge; [`AppState::weeks_index`],
//! [`AppState::program_week`] and [`AppState::week_data`] publish the merges, thresholded.
//! The weeks themselves, and keeping their merges in step with the store (checkpoints, the open
//! generation, retention, the timer), are `background.rs`'s [`Weeks`], with the protocol of
//! `checkpoint.rs`; [`AppState::flush`], [`AppState::reconcile`],
//! [`AppState::apply_retention`] and [`AppState::spawn_background`] run that work.
//!
//! Promises: while the served config asks for private aggregation (its `aggregation` section),
//! every plain upload is refused (409) unread; an upload answered `Ok` is in the store, in a generation that was not sealed when
//! it was written (so in the next checkpoint), and in its week's merge exactly once; a refusal
//! is a 4xx with a one-line reason and writes nothing; a 5xx means only that the store failed.
//! Nothing under the threshold leaves through the publishing methods.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::http::StatusCode;
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex, bucket_week};
use tally_protocol::{Day, UploadConfig};
use tokio::task::JoinHandle;

use crate::background::{Weeks, raw_deleted_on};
use crate::checkpoint::report_id;
use crate::clock::Clock;
use crate::configs::{Configs, Served};
use crate::open_data::WeekData;
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
    /// Every calendar week this server holds, kept in step with the store.
    pub(crate) weeks: Weeks,
    pub(crate) options: Options,
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
        let configs = Configs::new(store.clone());
        let state = AppState(Arc::new(Inner {
            weeks: Weeks::new(store.clone(), configs.clone(), options.retention_weeks),
            configs,
            store,
            current,
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

    /// The config being served.
    pub fn served_config(&self) -> Arc<UploadConfig> {
        self.0.current.config.clone()
    }

    /// The publication threshold.
    pub fn threshold(&self) -> u64 {
        self.0.options.threshold
    }

    /// Weeks raw reports are kept after their week is merged.
    pub fn retention_weeks(&self) -> u32 {
        self.0.options.retention_weeks
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

    /// Validates and stores one upload. `Ok(true)` if stored now, `Ok(false)` if it was
    /// already stored; `Err((status, reason))` otherwise.
    pub async fn accept_upload(
        &self,
        url_week: &str,
        body: &[u8],
    ) -> Result<bool, (StatusCode, String)> {
        if let Some(section) = &self.0.current.config.aggregation {
            // A plain report would show the collector one installation's week in the clear,
            // which is what the config's private aggregation promises its clients it never sees.
            return Err((
                StatusCode::CONFLICT,
                format!(
                    "this collector's config (version {}) asks for private aggregation: send the week as a DAP report to the leader {}, not as a plain report",
                    self.0.current.config.version, section.leader
                ),
            ));
        }
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
        let slot = self.0.weeks.slot(monday);
        self.0
            .weeks
            .load_week(monday, &slot)
            .await
            .map_err(storage_error)?;
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
        let mut weeks: Vec<_> = self
            .0
            .weeks
            .all()
            .iter()
            .filter_map(|(_, slot)| slot.state().live().summary(threshold))
            .collect();
        weeks.sort_by_key(|summary| std::cmp::Reverse(summary.week));
        WeeksIndex { threshold, weeks }
    }

    /// `GET /api/weeks/{week}/{program}`: `None` when nothing is published for it.
    pub fn program_week(&self, week: Day, program: &str) -> Option<ProgramWeek> {
        let slot = self.0.weeks.get(bucket_week(week))?;
        let state = slot.state();
        state.live().publish(program, self.threshold())
    }

    /// `GET /data/{monday}.json` and `.csv`: the week of `monday` as the open data publishes it
    /// (`simulated` when the store's reports are), or `None` when it publishes nothing.
    pub fn week_data(&self, monday: Day, simulated: bool) -> Option<WeekData> {
        let slot = self.0.weeks.get(monday)?;
        let state = slot.state();
        WeekData::from_merged(
            state.live(),
            self.threshold(),
            self.0.options.clock.today(),
            simulated,
        )
    }

    /// Brings every calendar week with data in the store up to date: all weeks, or those from
    /// `since` (a Monday) on. Weeks whose raw reports retention deleted are read from their
    /// checkpoints.
    pub async fn reconcile(&self, since: Option<Day>) -> anyhow::Result<()> {
        self.0.weeks.reconcile(since).await
    }

    /// Makes the next checkpoint of every week with reports beyond its checkpoint. Returns
    /// how many weeks got one (made here or adopted from another server that made it first). A
    /// week that fails does not keep the others from theirs: the first failure is returned
    /// after all were tried, the others are logged.
    pub async fn flush(&self) -> anyhow::Result<usize> {
        self.0.weeks.flush().await
    }

    /// Deletes the raw reports of every week closed to uploads more than `retention_weeks`
    /// weeks before `today`, once a checkpoint holds all of them ([`raw_deleted_on`]); the
    /// merged aggregates are kept. Returns the weeks deleted.
    pub async fn apply_retention(&self, today: Day) -> anyhow::Result<Vec<Day>> {
        self.0.weeks.apply_retention(today).await
    }

    /// [`AppState::run_background`] on its own task; abort the handle to stop it.
    pub fn spawn_background(
        &self,
        flush_every: Duration,
        reconcile_every: Duration,
    ) -> JoinHandle<()> {
        tokio::spawn(self.clone().run_background(flush_every, reconcile_every))
    }

    /// Runs forever: checkpoints every `flush_every`; every `reconcile_every` picks up reports
    /// that other servers sharing the store have written in the weeks still open to uploads,
    /// and applies retention.
    pub async fn run_background(self, flush_every: Duration, reconcile_every: Duration) {
        self.0
            .weeks
            .run_background(self.0.options.clock, flush_every, reconcile_every)
            .await;
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
            .map(|summary| WeekStatus {
                week: summary.week,
                raw_reports_deleted: self
                    .0
                    .weeks
                    .get(summary.week)
                    .is_some_and(|slot| slot.raw_deleted()),
                raw_reports_deleted_on: raw_deleted_on(summary.week, retention_weeks),
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

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN_CONFIG: &str = include_str!("../../../config-schema/example-config.json");
    const PRIVATE_CONFIG: &str =
        include_str!("../../../config-schema/example-config-aggregation.json");
    const REPORT: &str = include_str!("../../../config-schema/example-report.json");

    /// A server on a fresh local store serving `config`, signed with a fresh key, on the day
    /// after the example report's week ended.
    async fn serving(config: &str) -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let (public, secret) = (dir.path().join("key.pub"), dir.path().join("key.sec"));
        signing::keygen(&public, &secret, None, false).unwrap();
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config).unwrap();
        let signature =
            std::fs::read(signing::sign_config(&config_path, &secret, None).unwrap()).unwrap();
        let public_key =
            signing::parse_public_key(&std::fs::read_to_string(&public).unwrap()).unwrap();
        let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
        let options = Options {
            clock: Clock::Fixed("2026-11-24".parse().unwrap()),
            ..Options::default()
        };
        let state = AppState::open(
            store,
            Bytes::from(config.to_owned()),
            Bytes::from(signature),
            &public_key,
            options,
        )
        .await
        .unwrap();
        (dir, state)
    }

    #[tokio::test]
    async fn plain_uploads_are_refused_while_the_config_asks_for_private_aggregation() {
        let (_dir, plain) = serving(PLAIN_CONFIG).await;
        assert_eq!(
            plain.accept_upload("2026-11-16", REPORT.as_bytes()).await,
            Ok(true)
        );

        let (dir, private) = serving(PRIVATE_CONFIG).await;
        // The same report, made under the private config's version: valid but for the mode.
        let report = REPORT.replace("\"config_version\": 1", "\"config_version\": 2");
        let (status, reason) = private
            .accept_upload("2026-11-16", report.as_bytes())
            .await
            .unwrap_err();
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            reason.contains("private aggregation") && reason.contains("https://"),
            "{reason}"
        );
        // Nothing of it was written.
        let reports = dir.path().join("store/reports");
        assert!(
            !reports.exists() || walk(&reports).is_empty(),
            "{:?}",
            walk(&reports)
        );
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
