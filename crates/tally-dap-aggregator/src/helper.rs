//! The helper: prepares the leader's aggregation jobs with its own share of each report, and
//! hands its aggregate share of a batch over once.
//!
//! Promises:
//!
//! - **Only the leader** (its token) can send jobs or ask for a share.
//! - **A job is processed once.** Its result (`agg_jobs/<id>.json`: the request's digest, the
//!   answer, the slot sums, the report IDs) is written before it is answered; the same job sent
//!   again (the leader retrying after a crash) is answered from the record and counted nothing
//!   more; another request under the same job ID is refused (409).
//! - **Each report is prepared at most once**: an ID seen in an earlier job is
//!   `report_replayed`; a report in a collected batch is `batch_collected`; one too far in the
//!   future `report_too_early`, one past the replay horizon `report_dropped`; a share that does
//!   not open or decode, or whose proof fails, is rejected with DAP's prepare error and not
//!   summed. Nothing else in the job is affected.
//! - **A batch's share is released once**, only if the leader's report count and checksum match
//!   the helper's own and the count is at least `min_batch_size`; a repeat of that request gets
//!   the same answer, any other overlapping request is refused, and no later job adds to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prio::topology::ping_pong::{PingPongState, PingPongTopology};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tally_dap::draft::messages::{
    AggregateShare as AggregateShareMsg, AggregateShareAad, AggregateShareReq, AggregationJobId,
    AggregationJobInitializeReq, AggregationJobResp, DapProblemType, Decode, Encode, PrepareError,
    PrepareResp, PrepareStepResult, ReportId, Role, TaskId, TimeInterval,
};
use tally_dap::draft::{self, Label};

use crate::auth;
use crate::batch::{self, Shares, StoredSlot, bounds, interval_name, overlaps};
use crate::prep::{self, error_label};
use crate::problem::ApiError;
use crate::server::{self, Common, unix_now};
use crate::store::{Created, MAX_COLLECTION_BYTES, MAX_JOB_BYTES};
use crate::task::{Task, decode_hex32, hex};

/// Largest aggregation job body: 64 MiB (the leader sends at most `job_size` reports, each a
/// few hundred bytes here: the helper's share is a seed).
const MAX_JOB_REQUEST_BYTES: usize = 64 << 20;

/// Largest body any request to the helper may have (an aggregation job): what is read before a
/// handler runs.
pub const MAX_BODY_BYTES: usize = MAX_JOB_REQUEST_BYTES;

struct Helper {
    common: Arc<Common>,
    tasks: HashMap<TaskId, Arc<HelperTask>>,
}

struct HelperTask {
    task: Arc<Task>,
    state: Mutex<HState>,
}

#[derive(Default)]
struct HState {
    /// Report ID → time, for every report prepared (or being prepared).
    seen: HashMap<ReportId, u64>,
    /// Finished jobs: the digest of their request.
    jobs: HashMap<AggregationJobId, [u8; 32]>,
    /// Jobs being processed: their request digest.
    in_progress: HashMap<AggregationJobId, [u8; 32]>,
    /// Slot → reports of jobs being processed.
    reserved: BTreeMap<u64, u64>,
    aggregated: Shares,
    /// Released batches: start → end.
    collected: BTreeMap<u64, u64>,
    /// Every job record in the store: the end of its newest slot (or when it was written, for a
    /// record without reports), so that compaction knows which are past the replay horizon
    /// without reading them.
    records: BTreeMap<AggregationJobId, u64>,
}

impl HState {
    fn is_collected(&self, time: u64) -> bool {
        self.collected
            .range(..=time)
            .next_back()
            .is_some_and(|(_, end)| time < *end)
    }
}

/// `agg_jobs/<id>.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRecord {
    /// SHA-256 of the request, hex.
    request: String,
    /// The encoded `AggregationJobResp`, unpadded base64url.
    response: String,
    slots: Vec<StoredSlot>,
    /// The reports prepared in this job: (ID in base64url, time).
    reports: Vec<(String, u64)>,
    /// When the record was written (seconds since the epoch).
    #[serde(default)]
    written: u64,
}

/// `aggregate_shares/<start>-<duration>`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareRecord {
    count: u64,
    /// Hex.
    checksum: String,
    /// The encoded `AggregateShare` message, unpadded base64url.
    response: String,
}

fn jobs_dir(task: &TaskId) -> String {
    format!("tasks/{task}/agg_jobs")
}

fn shares_dir(task: &TaskId) -> String {
    format!("tasks/{task}/aggregate_shares")
}

/// Starts the helper: recovers each task's state from the store and returns the routes.
pub async fn start(common: Arc<Common>) -> anyhow::Result<Router> {
    let mut tasks = HashMap::new();
    for (id, task) in &common.tasks {
        let state = recover(&common, task).await?;
        tasks.insert(
            *id,
            Arc::new(HelperTask {
                task: Arc::clone(task),
                state: Mutex::new(state),
            }),
        );
    }
    let helper = Arc::new(Helper {
        common: Arc::clone(&common),
        tasks,
    });
    for ht in helper.tasks.values() {
        compact(&helper, ht).await?;
    }
    tokio::spawn(compaction_loop(Arc::clone(&helper)));
    Ok(Router::new()
        .route(
            "/hpke_config",
            get(server::hpke_config).with_state(Arc::clone(&common)),
        )
        .route("/metrics", get(server::metrics).with_state(common))
        .route(
            "/tasks/{task_id}/aggregation_jobs/{job_id}",
            put(aggregation_job).layer(DefaultBodyLimit::max(MAX_JOB_REQUEST_BYTES)),
        )
        .route(
            "/tasks/{task_id}/aggregate_shares",
            post(aggregate_share).layer(DefaultBodyLimit::max(64 << 10)),
        )
        .with_state(helper))
}

/// How often job records past the replay horizon are looked for (also once at start).
const COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

async fn compaction_loop(helper: Arc<Helper>) {
    loop {
        tokio::time::sleep(COMPACT_EVERY).await;
        for ht in helper.tasks.values() {
            if let Err(e) = compact(&helper, ht).await {
                eprintln!(
                    "tally-server: compacting the job records of task {}: {e:#}; retrying later",
                    ht.task.id
                );
            }
        }
    }
}

/// Deletes the job records whose every report is past the replay horizon, and forgets their
/// sums, report IDs and request digests: reports that old are dropped anyway
/// (`report_dropped`), and their batches can no longer be collected (`Task::is_past_horizon`).
/// A restart then reads only the horizon's records.
async fn compact(helper: &Helper, ht: &HelperTask) -> anyhow::Result<()> {
    let task = &ht.task;
    let now = unix_now();
    let old: Vec<AggregationJobId> = {
        let mut state = ht.state.lock().expect("state lock");
        let old: Vec<AggregationJobId> = state
            .records
            .iter()
            .filter(|(_, end)| task.is_past_horizon(**end, now))
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            state.records.remove(id);
            state.jobs.remove(id);
        }
        state.aggregated.forget_before(task.first_slot_kept(now));
        let horizon = task.report_expiry_age;
        state
            .seen
            .retain(|_, time| time.saturating_add(horizon) >= now);
        old
    };
    let dir = jobs_dir(&task.id);
    for id in &old {
        helper
            .common
            .store
            .delete(&format!("{dir}/{id}.json"))
            .await?;
        helper.common.metrics.count("job_records_deleted", "");
    }
    Ok(())
}

/// The end of the newest slot a job record holds a report of, or its writing time.
fn record_end(task: &Task, record: &JobRecord) -> u64 {
    let newest = record.reports.iter().map(|(_, time)| *time).max();
    match newest {
        Some(time) => (time - time % task.time_precision).saturating_add(task.time_precision),
        None => record.written,
    }
}

async fn recover(common: &Common, task: &Task) -> anyhow::Result<HState> {
    let store = &common.store;
    let mut state = HState::default();
    let dir = jobs_dir(&task.id);
    for name in store.list(&dir).await? {
        let Some(job) = name.strip_suffix(".json") else {
            continue;
        };
        let job_id: AggregationJobId = job
            .parse()
            .map_err(|_| anyhow::anyhow!("{dir}/{name}: not a job ID"))?;
        let bytes = store
            .get(&format!("{dir}/{name}"), MAX_JOB_BYTES)
            .await?
            .context("a job record vanished")?;
        let record: JobRecord = serde_json::from_slice(&bytes)
            .with_context(|| format!("{dir}/{name} is not a job record"))?;
        let digest = decode_hex32(&record.request)
            .with_context(|| format!("{dir}/{name}: request is not 64 hex digits"))?;
        state.jobs.insert(job_id, digest);
        state.records.insert(job_id, record_end(task, &record));
        common.metrics.count("recovered_job_records", "");
        state
            .aggregated
            .merge(&Shares::from_stored(&task.vdaf, &record.slots)?);
        for (id, time) in record.reports {
            let bytes = URL_SAFE_NO_PAD
                .decode(&id)
                .map_err(|_| anyhow::anyhow!("{dir}/{name}: a report ID is not base64url"))?;
            let id = ReportId::try_from(bytes.as_slice())
                .map_err(|_| anyhow::anyhow!("{dir}/{name}: a report ID is not 16 bytes"))?;
            state.seen.insert(id, time);
        }
    }
    for name in store.list(&shares_dir(&task.id)).await? {
        if let Some((start, duration)) = name.split_once('-')
            && let (Ok(start), Ok(duration)) = (start.parse::<u64>(), duration.parse::<u64>())
        {
            state
                .collected
                .insert(start, start.saturating_add(duration));
        }
    }
    let now = unix_now();
    state
        .seen
        .retain(|_, time| time.saturating_add(task.report_expiry_age) >= now);
    Ok(state)
}

impl Helper {
    fn task(&self, id: &str) -> Result<&Arc<HelperTask>, ApiError> {
        let id: TaskId = id.parse().map_err(|_| {
            ApiError::problem(
                DapProblemType::InvalidMessage,
                None,
                "the path names no valid task ID",
            )
        })?;
        self.tasks.get(&id).ok_or_else(|| {
            ApiError::problem(
                DapProblemType::UnrecognizedTask,
                Some(&id),
                "no such task here",
            )
        })
    }
}

fn check_leader(ht: &HelperTask, headers: &HeaderMap) -> Result<(), ApiError> {
    if auth::is_authorized(headers, &ht.task.peer_token_sha256) {
        Ok(())
    } else {
        Err(ApiError::problem(
            DapProblemType::UnauthorizedRequest,
            Some(&ht.task.id),
            "the leader's token is missing or wrong",
        ))
    }
}

fn check_media_type(headers: &HeaderMap, want: &str, task: &TaskId) -> Result<(), ApiError> {
    let got = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if got != want {
        return Err(ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(task),
            format!("Content-Type must be {want}"),
        ));
    }
    Ok(())
}

fn encoded_response(body: Vec<u8>, media_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    response
}

/// `PUT /tasks/{t}/aggregation_jobs/{j}`.
async fn aggregation_job(
    State(helper): State<Arc<Helper>>,
    Path((task_id, job)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let shared = Arc::clone(&helper);
    server::detached(
        async move { aggregation_job_inner(&shared, &task_id, &job, &headers, body).await },
    )
    .await
    .map_err(|e| helper.common.refused("aggregation_jobs_refused", e))
}

/// One report's fate before preparation.
enum Admission {
    Prepare,
    Reject(PrepareError),
}

async fn aggregation_job_inner(
    helper: &Arc<Helper>,
    task_id: &str,
    job: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ht = Arc::clone(helper.task(task_id)?);
    let task = Arc::clone(&ht.task);
    check_leader(&ht, headers)?;
    let job_id: AggregationJobId = job.parse().map_err(|_| {
        ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(&task.id),
            "the path names no valid aggregation job ID",
        )
    })?;
    check_media_type(
        headers,
        AggregationJobInitializeReq::<TimeInterval>::MEDIA_TYPE,
        &task.id,
    )?;
    let request = AggregationJobInitializeReq::<TimeInterval>::get_decoded(&body).map_err(|e| {
        ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(&task.id),
            format!("the aggregation job does not decode: {e}"),
        )
    })?;
    if !batch::check_empty_agg_param(request.aggregation_parameter()) {
        return Err(ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(&task.id),
            "Prio3 takes no aggregation parameter",
        ));
    }
    let digest: [u8; 32] = Sha256::digest(&body).into();
    let mut unique = HashSet::new();
    if !request
        .prepare_inits()
        .iter()
        .all(|p| unique.insert(*p.report_share().metadata().id()))
    {
        return Err(ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(&task.id),
            "a report ID appears twice in the job",
        ));
    }
    let now = unix_now();
    let admissions: Option<Vec<Admission>> = {
        let mut state = ht.state.lock().expect("state lock");
        if let Some(done) = state.jobs.get(&job_id) {
            if *done != digest {
                return Err(ApiError::Status(
                    StatusCode::CONFLICT,
                    "this aggregation job exists with another request".into(),
                ));
            }
            None
        } else {
            Some(admit(&mut state, &task, &request, job_id, digest, now)?)
        }
    };
    let Some(admissions) = admissions else {
        return repeat_answer(helper, &task, &job_id).await;
    };
    let keys = helper.common.keys();
    let prep_task = Arc::clone(&task);
    let prepared = tokio::task::spawn_blocking(move || {
        let task = prep_task;
        let mut delta = Shares::default();
        let mut resps = Vec::with_capacity(admissions.len());
        let mut reports = Vec::new();
        let mut outcomes = Vec::new();
        for (p, admission) in request.prepare_inits().iter().zip(&admissions) {
            let share = p.report_share();
            let metadata = share.metadata();
            let result = match admission {
                Admission::Reject(e) => Err(*e),
                Admission::Prepare => {
                    reports.push((
                        URL_SAFE_NO_PAD.encode(metadata.id().as_ref()),
                        metadata.time().as_seconds_since_epoch(),
                    ));
                    prep::open_share(
                        &task,
                        &keys,
                        now,
                        Role::Helper,
                        metadata,
                        share.public_share(),
                        share.encrypted_input_share(),
                    )
                    .and_then(|(public_share, input_share)| {
                        task.vdaf
                            .helper_initialized(
                                &task.verify_key,
                                &(),
                                metadata.id().as_ref(),
                                &public_share,
                                &input_share,
                                p.message(),
                            )
                            .and_then(|transition| transition.evaluate(&task.vdaf))
                            .map_err(|_| PrepareError::VdafPrepError)
                    })
                    .and_then(|(state, message)| match state {
                        PingPongState::Finished(output) => {
                            delta.add(task.slot(metadata.time()), &output, metadata.id());
                            Ok(message)
                        }
                        // One-round Prio3 finishes at the helper's first step.
                        PingPongState::Continued(_) => Err(PrepareError::VdafPrepError),
                    })
                }
            };
            outcomes.push(result.as_ref().map(|_| ()).map_err(|e| *e));
            resps.push(PrepareResp::new(
                *metadata.id(),
                match result {
                    Ok(message) => PrepareStepResult::Continue { message },
                    Err(e) => PrepareStepResult::Reject(e),
                },
            ));
        }
        let slots: Vec<u64> = request
            .prepare_inits()
            .iter()
            .zip(&admissions)
            .filter(|(_, a)| matches!(a, Admission::Prepare))
            .map(|(p, _)| task.slot(p.report_share().metadata().time()))
            .collect();
        (
            AggregationJobResp::new(resps),
            delta,
            reports,
            outcomes,
            slots,
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("preparation failed: {e}"))?;
    let (response, delta, reports, outcomes, slots) = prepared;
    let stored = async {
        let response = response.get_encoded()?;
        let record = JobRecord {
            request: hex(&digest),
            response: URL_SAFE_NO_PAD.encode(&response),
            slots: delta.to_stored(),
            reports: reports.clone(),
            written: now,
        };
        let end = record_end(&task, &record);
        let key = format!("{}/{job_id}.json", jobs_dir(&task.id));
        match helper
            .common
            .store
            .create(&key, serde_json::to_vec(&record)?)
            .await?
        {
            Created::New => Ok((response, end)),
            Created::AlreadyThere => anyhow::bail!("{key} exists already"),
        }
    }
    .await;
    let mut state = ht.state.lock().expect("state lock");
    state.in_progress.remove(&job_id);
    for slot in &slots {
        if let Some(n) = state.reserved.get_mut(slot) {
            *n -= 1;
            if *n == 0 {
                state.reserved.remove(slot);
            }
        }
    }
    match stored {
        Ok((response, end)) => {
            state.aggregated.merge(&delta);
            state.jobs.insert(job_id, digest);
            state.records.insert(job_id, end);
            drop(state);
            let metrics = &helper.common.metrics;
            metrics.count("aggregation_jobs", "");
            for outcome in outcomes {
                match outcome {
                    Ok(()) => metrics.count("reports_aggregated", ""),
                    Err(e) => metrics.count("reports_rejected", error_label(e)),
                }
            }
            Ok(encoded_response(response, AggregationJobResp::MEDIA_TYPE))
        }
        Err(e) => {
            // Nothing of the job happened: its reports may come again.
            for (id, _) in &reports {
                if let Ok(bytes) = URL_SAFE_NO_PAD.decode(id)
                    && let Ok(id) = ReportId::try_from(bytes.as_slice())
                {
                    state.seen.remove(&id);
                }
            }
            Err(ApiError::Internal(e))
        }
    }
}

/// Decides, under the state lock, which reports of a new job are prepared, and reserves them.
fn admit(
    state: &mut HState,
    task: &Task,
    request: &AggregationJobInitializeReq<TimeInterval>,
    job_id: AggregationJobId,
    digest: [u8; 32],
    now: u64,
) -> Result<Vec<Admission>, ApiError> {
    if state.in_progress.contains_key(&job_id) {
        return Err(ApiError::Status(
            StatusCode::SERVICE_UNAVAILABLE,
            "this aggregation job is being processed".into(),
        ));
    }
    let admissions = request
        .prepare_inits()
        .iter()
        .map(|p| {
            let metadata = p.report_share().metadata();
            let time = metadata.time().as_seconds_since_epoch();
            if state.is_collected(time) {
                Admission::Reject(PrepareError::BatchCollected)
            } else if state.seen.contains_key(metadata.id()) {
                Admission::Reject(PrepareError::ReportReplayed)
            } else if task.is_too_early(metadata.time(), now) {
                Admission::Reject(PrepareError::ReportTooEarly)
            } else if task.is_expired(metadata.time(), now) {
                Admission::Reject(PrepareError::ReportDropped)
            } else {
                state.seen.insert(*metadata.id(), time);
                *state
                    .reserved
                    .entry(task.slot(metadata.time()))
                    .or_insert(0) += 1;
                Admission::Prepare
            }
        })
        .collect();
    state.in_progress.insert(job_id, digest);
    Ok(admissions)
}

async fn repeat_answer(
    helper: &Helper,
    task: &Task,
    job_id: &AggregationJobId,
) -> Result<Response, ApiError> {
    let key = format!("{}/{job_id}.json", jobs_dir(&task.id));
    let bytes = helper
        .common
        .store
        .get(&key, MAX_JOB_BYTES)
        .await?
        .with_context(|| format!("{key} is missing"))?;
    let record: JobRecord = serde_json::from_slice(&bytes).map_err(anyhow::Error::from)?;
    let response = URL_SAFE_NO_PAD
        .decode(&record.response)
        .map_err(|_| anyhow::anyhow!("{key}: response is not base64url"))?;
    helper.common.metrics.count("aggregation_jobs_repeated", "");
    Ok(encoded_response(response, AggregationJobResp::MEDIA_TYPE))
}

/// `POST /tasks/{t}/aggregate_shares`.
async fn aggregate_share(
    State(helper): State<Arc<Helper>>,
    Path(task_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let shared = Arc::clone(&helper);
    server::detached(async move { aggregate_share_inner(&shared, &task_id, &headers, &body).await })
        .await
        .map_err(|e| helper.common.refused("aggregate_shares_refused", e))
}

async fn aggregate_share_inner(
    helper: &Arc<Helper>,
    task_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let ht = Arc::clone(helper.task(task_id)?);
    let task = Arc::clone(&ht.task);
    check_leader(&ht, headers)?;
    check_media_type(
        headers,
        AggregateShareReq::<TimeInterval>::MEDIA_TYPE,
        &task.id,
    )?;
    let request = AggregateShareReq::<TimeInterval>::get_decoded(body).map_err(|e| {
        ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(&task.id),
            format!("the request does not decode: {e}"),
        )
    })?;
    if !batch::check_empty_agg_param(request.aggregation_parameter()) {
        return Err(ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(&task.id),
            "Prio3 takes no aggregation parameter",
        ));
    }
    let interval = *request.batch_selector().batch_interval();
    if !task.is_valid_batch(&interval) {
        return Err(ApiError::problem(
            DapProblemType::BatchInvalid,
            Some(&task.id),
            "the interval must start and end on multiples of the time precision",
        ));
    }
    let (start, end) = bounds(&interval);
    let key = format!("{}/{}", shares_dir(&task.id), interval_name(&interval));
    let mismatch = |own_count: u64, own_checksum: &[u8]| {
        ApiError::problem(
            DapProblemType::BatchMismatch,
            Some(&task.id),
            format!(
                "the leader counts {} reports (checksum {}), the helper {own_count} (checksum {})",
                request.report_count(),
                hex(request.checksum().as_ref()),
                hex(own_checksum)
            ),
        )
    };
    enum Decision {
        Repeat,
        Release(batch::BatchTotal),
    }
    let decision = {
        let mut state = ht.state.lock().expect("state lock");
        if state.collected.get(&start) == Some(&end) {
            Decision::Repeat
        } else {
            if state
                .collected
                .iter()
                .any(|(s, e)| overlaps((*s, *e), (start, end)))
            {
                return Err(ApiError::problem(
                    DapProblemType::BatchOverlap,
                    Some(&task.id),
                    "the interval overlaps a batch whose share was released",
                ));
            }
            if unix_now() > end.saturating_add(task.report_expiry_age) {
                return Err(ApiError::problem(
                    DapProblemType::BatchInvalid,
                    Some(&task.id),
                    "the batch ended longer ago than the report expiry age; its report IDs may be forgotten",
                ));
            }
            if state.reserved.range(start..end).next().is_some() {
                return Err(ApiError::Status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "jobs with reports in this batch are being processed".into(),
                ));
            }
            let total = state.aggregated.total(&interval, task.time_precision);
            if total.count != request.report_count() || total.checksum != *request.checksum() {
                return Err(mismatch(total.count, total.checksum.as_ref()));
            }
            if total.count < task.min_batch_size {
                return Err(ApiError::problem(
                    DapProblemType::InvalidBatchSize,
                    Some(&task.id),
                    format!(
                        "the batch holds {} reports, fewer than the minimum batch size {}",
                        total.count, task.min_batch_size
                    ),
                ));
            }
            // Closed to new jobs from now on; reopened below if the share cannot be stored.
            state.collected.insert(start, end);
            Decision::Release(total)
        }
    };
    let total = match decision {
        Decision::Release(total) => total,
        Decision::Repeat => {
            let bytes = helper
                .common
                .store
                .get(&key, MAX_COLLECTION_BYTES)
                .await?
                .with_context(|| format!("{key} is missing"))?;
            let record: ShareRecord =
                serde_json::from_slice(&bytes).map_err(anyhow::Error::from)?;
            let checksum =
                decode_hex32(&record.checksum).with_context(|| format!("{key}: checksum"))?;
            if record.count != request.report_count() || checksum != request.checksum().as_ref() {
                return Err(mismatch(record.count, &checksum));
            }
            let response = URL_SAFE_NO_PAD
                .decode(&record.response)
                .map_err(|_| anyhow::anyhow!("{key}: response is not base64url"))?;
            return Ok(encoded_response(response, AggregateShareMsg::MEDIA_TYPE));
        }
    };
    let released = async {
        let share = total.share.context("a non-empty batch without a share")?;
        let agg_param = ().get_encoded()?;
        let aad = AggregateShareAad::new(task.id, agg_param, request.batch_selector().clone())
            .get_encoded()?;
        let info = draft::application_info(Label::AggregateShare, Role::Helper, Role::Collector);
        let sealed = draft::seal(
            &task.collector_hpke_config,
            &info,
            &share.get_encoded()?,
            &aad,
        )?;
        let response = AggregateShareMsg::new(sealed).get_encoded()?;
        let record = ShareRecord {
            count: total.count,
            checksum: hex(total.checksum.as_ref()),
            response: URL_SAFE_NO_PAD.encode(&response),
        };
        match helper
            .common
            .store
            .create(&key, serde_json::to_vec(&record)?)
            .await?
        {
            Created::New => Ok(response),
            Created::AlreadyThere => anyhow::bail!("{key} exists already"),
        }
    }
    .await;
    match released {
        Ok(response) => {
            helper.common.metrics.count("aggregate_shares_released", "");
            Ok(encoded_response(response, AggregateShareMsg::MEDIA_TYPE))
        }
        Err(e) => {
            ht.state
                .lock()
                .expect("state lock")
                .collected
                .remove(&start);
            Err(ApiError::Internal(e))
        }
    }
}
