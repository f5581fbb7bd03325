//! tally-server: the collector.
//!
//! It serves the collector's signed upload config byte for byte, accepts weekly reports that
//! the config allows (and refuses everything else with a one-line 400), stores each accepted
//! report once in an [`object_store`] (local directory or S3), merges them per calendar week and
//! program, and publishes the merged aggregates (JSON API and dashboard) with every count seen in
//! fewer than `threshold` distinct reports withheld.
//!
//! [`app`] is the whole HTTP surface as an `axum::Router`, usable without a socket;
//! [`serve::serve`] runs it on a listener with bounded connections, read and write timeouts and
//! shedding of stalled connections; the binary (`src/main.rs`) adds the command line. Promises
//! kept here (`docs/reliability.md` lists the tests that hold each):
//!
//! - a report answered 2xx is durable in the store and counted exactly once, across restarts
//!   and crashes (the merged aggregates are rebuilt from the raw reports whenever they disagree),
//!   also with several servers on one store;
//! - a report is stored under exactly the `x` it was sent with, and any report that passes
//!   validation can be stored: what the server refuses it refuses with a 4xx and a reason, and
//!   a 5xx means only that the store failed (the client retries);
//! - the server never sees client addresses: the accept loop drops them and nothing logs them;
//! - nothing under the publication threshold appears in any public output.

#![forbid(unsafe_code)]

pub mod clock;
pub mod dashboard;
pub mod merge;
pub mod plan;
pub mod serve;
pub mod signing;
pub mod store;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex, bucket_week};
use tally_protocol::{Day, MAX_REPORT_AGE_DAYS, MAX_REPORT_BYTES, Report, UploadConfig};

use crate::clock::Clock;
use crate::merge::MergedWeek;
use crate::store::{Created, Store, config_keys, merged_key, report_key};

/// Default publication threshold: counts seen in fewer distinct reports are withheld.
pub const DEFAULT_THRESHOLD: u64 = 5;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Publication threshold k (at least 1).
    pub threshold: u64,
    /// Where "today" comes from (`TALLY_NOW` in tests).
    pub clock: Clock,
    /// Longest time a client may take to send an upload's body.
    pub body_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threshold: DEFAULT_THRESHOLD,
            clock: Clock::System,
            body_timeout: Duration::from_secs(10),
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
pub struct AppState(Arc<Inner>);

struct Inner {
    store: Store,
    current: SignedConfig,
    /// Every config version known to have been served, by version.
    configs: RwLock<HashMap<u64, Arc<UploadConfig>>>,
    weeks: RwLock<BTreeMap<Day, Arc<WeekSlot>>>,
    options: Options,
}

/// One calendar week's merge. Uploads hold `gate` shared from before their write until they
/// are merged; a rebuild from the store holds it exclusively, so every report is in exactly
/// one of "listed by the rebuild" or "merged after it".
struct WeekSlot {
    gate: tokio::sync::RwLock<()>,
    merged: Mutex<MergedWeek>,
    dirty: AtomicBool,
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
        let state = AppState(Arc::new(Inner {
            store,
            current,
            configs: RwLock::new(HashMap::new()),
            weeks: RwLock::new(BTreeMap::new()),
            options,
        }));
        state.register_current_config().await?;
        state.reconcile(None).await?;
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
        match self.0.store.get(&json_key).await? {
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
        self.0
            .configs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version, current.config.clone());
        Ok(())
    }

    /// The config of `version`, from memory or from the store (another server sharing the
    /// store may have served it). `Ok(None)` if it was never served.
    async fn config(&self, version: u64) -> anyhow::Result<Option<Arc<UploadConfig>>> {
        if let Some(config) = self
            .0
            .configs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&version)
        {
            return Ok(Some(config.clone()));
        }
        let (json_key, _) = config_keys(version);
        let Some(bytes) = self.0.store.get(&json_key).await? else {
            return Ok(None);
        };
        let config = Arc::new(
            UploadConfig::parse(&bytes)
                .with_context(|| format!("stored config {json_key} does not parse"))?,
        );
        self.0
            .configs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version, config.clone());
        Ok(Some(config))
    }

    fn slot(&self, monday: Day) -> Arc<WeekSlot> {
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
                    gate: tokio::sync::RwLock::new(()),
                    merged: Mutex::new(MergedWeek::new(monday)),
                    dirty: AtomicBool::new(false),
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
        let config = match self.config(version).await {
            Ok(Some(config)) => config,
            Ok(None) => {
                return Err(bad_request(format!(
                    "config version {version} was never served here"
                )));
            }
            Err(e) => return Err(storage_error(e)),
        };
        validate::check_against_config(&report, &config).map_err(bad_request)?;
        let monday = bucket_week(report.week);
        let slot = self.slot(monday);
        let _gate = slot.gate.read().await;
        // Stored canonical: only what validation saw, in a fixed form, is ever written.
        let canonical = Bytes::from(report.to_canonical_json());
        match self
            .0
            .store
            .create(&report_key(report.week, report.x), canonical, report.week)
            .await
        {
            Ok(Created::New) => {
                slot.merged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(&report);
                slot.dirty.store(true, Ordering::Release);
                Ok(true)
            }
            Ok(Created::AlreadyThere) => Ok(false),
            Err(e) => Err(storage_error(e)),
        }
    }

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
            .filter_map(|slot| {
                slot.merged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .summary(threshold)
            })
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
        let merged = slot.merged.lock().unwrap_or_else(|e| e.into_inner());
        merged.publish(program, self.threshold())
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

/// The HTTP surface. Applies the body limit and body read timeout itself; connection limits
/// and header timeouts belong to [`serve::serve`].
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard_page))
        .route("/programs/{program}", get(dashboard::program))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/config.json", get(config_json))
        .route("/config.json.minisig", get(config_signature))
        .route("/upload/{week}", post(upload))
        .route("/api/weeks", get(api_weeks))
        .route("/api/weeks/{week}/{program}", get(api_program_week))
        .with_state(state)
}

async fn config_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.0.current.json.clone(),
    )
        .into_response()
}

async fn config_signature(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.0.current.signature.clone(),
    )
        .into_response()
}

async fn upload(
    State(state): State<AppState>,
    Path(week): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > MAX_REPORT_BYTES as u64) {
        return reason(
            StatusCode::BAD_REQUEST,
            format!("report is {declared} bytes, over the {MAX_REPORT_BYTES} byte limit"),
        );
    }
    let timeout = state.0.options.body_timeout;
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_REPORT_BYTES))
        .await
    {
        Err(_) => {
            return reason(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the report body did not arrive within {} seconds",
                    timeout.as_secs_f64()
                ),
            );
        }
        Ok(Err(_)) => {
            return reason(
                StatusCode::BAD_REQUEST,
                format!("the report body was cut off or is over the {MAX_REPORT_BYTES} byte limit"),
            );
        }
        Ok(Ok(bytes)) => bytes,
    };
    // Its own task: a connection closed mid-upload (the client gave up, or the server cut a
    // stalled connection off) must not stop a report between its write and its merge.
    let accepting = tokio::spawn(async move { state.accept_upload(&week, &bytes).await });
    match accepting.await {
        Ok(Ok(true)) => reason(StatusCode::OK, "stored".into()),
        Ok(Ok(false)) => reason(StatusCode::OK, "already stored".into()),
        Ok(Err((status, why))) => reason(status, why),
        Err(e) => {
            eprintln!("tally-server: an upload task failed: {e}");
            reason(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the upload could not be processed; retry later".into(),
            )
        }
    }
}

fn reason(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

async fn api_weeks(State(state): State<AppState>) -> Response {
    axum::Json(state.weeks_index()).into_response()
}

async fn api_program_week(
    State(state): State<AppState>,
    Path((week, program)): Path<(String, String)>,
) -> Response {
    let Ok(day) = week.parse::<Day>() else {
        return reason(
            StatusCode::BAD_REQUEST,
            "week is not a YYYY-MM-DD day".into(),
        );
    };
    match state.program_week(day, &program) {
        Some(published) => axum::Json(published).into_response(),
        None => reason(
            StatusCode::NOT_FOUND,
            format!(
                "nothing published for this program in the week of {} (no reports, or fewer than {})",
                bucket_week(day),
                state.threshold()
            ),
        ),
    }
}

async fn dashboard_page(State(state): State<AppState>) -> Response {
    // Program details live on `/programs/{program}`; the index needs only the weeks.
    let page = dashboard::page(&state.weeks_index(), &[]);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                tally_charts::CONTENT_SECURITY_POLICY,
            ),
        ],
        page,
    )
        .into_response()
}
