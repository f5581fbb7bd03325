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
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{post, put};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prio::topology::ping_pong::{PingPongMessage, PingPongState, PingPongTopology};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tally_dap::draft::messages::{
    AggregateShare as AggregateShareMsg, AggregateShareAad, AggregateShareReq, AggregationJobId,
    AggregationJobInitializeReq, AggregationJobResp, DapProblemType, Encode, Interval,
    PrepareError, PrepareInit, PrepareResp, PrepareStepResult, ReportId, Role, TaskId,
    TimeInterval,
};
use tally_dap::draft::{self, Label};

use crate::batch::{self, Shares, StoredSlot, bounds, interval_name, overlaps};
use crate::common::{self, Common, unix_now};
use crate::keys::KeySet;
use crate::prep::{self, error_label};
use crate::problem::ApiError;
use crate::request;
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
        batch::is_in_batch(&self.collected, time)
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
    let task_ids = helper.tasks.keys().copied().collect();
    common::start_compaction(&helper, task_ids, "job records", compact).await?;
    Ok(common::routes(common)
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

/// Deletes the job records whose every report is past the replay horizon, and forgets their
/// sums, report IDs and request digests: reports that old are dropped anyway
/// (`report_dropped`), and their batches can no longer be collected (`Task::is_past_horizon`).
/// A restart then reads only the horizon's records.
async fn compact(helper: Arc<Helper>, id: TaskId) -> anyhow::Result<()> {
    let ht = &helper.tasks[&id];
    let task = &ht.task;
    let now = unix_now();
    let old: Vec<AggregationJobId> = {
        let mut state = ht.state.lock().expect("state lock");
        let old = task.take_past_horizon(&mut state.records, now);
        for id in &old {
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
    let keys = old.iter().map(|id| format!("{dir}/{id}.json")).collect();
    helper.common.delete_each(keys, "job_records_deleted").await
}

/// The end of the newest slot a job record holds a report of, or its writing time.
fn record_end(task: &Task, record: &JobRecord) -> u64 {
    let newest = record.reports.iter().map(|(_, time)| *time).max();
    newest.map_or(record.written, |time| task.slot_end(time))
}

async fn recover(common: &Common, task: &Task) -> anyhow::Result<HState> {
    let store = &common.store;
    let mut state = HState::default();
    let dir = jobs_dir(&task.id);
    for job in store.stems(&dir, ".json").await? {
        let key = format!("{dir}/{job}.json");
        let job_id: AggregationJobId = job
            .parse()
            .map_err(|_| anyhow::anyhow!("{key}: not a job ID"))?;
        let record: JobRecord = store.read_json(&key, MAX_JOB_BYTES, "a job record").await?;
        let digest = decode_hex32(&record.request)
            .with_context(|| format!("{key}: request is not 64 hex digits"))?;
        state.jobs.insert(job_id, digest);
        state.records.insert(job_id, record_end(task, &record));
        common.metrics.count("recovered_job_records", "");
        state
            .aggregated
            .merge(&Shares::from_stored(&task.vdaf, &record.slots)?);
        for (id, time) in record.reports {
            let id = batch::report_id_from_text(&id).with_context(|| key.clone())?;
            state.seen.insert(id, time);
        }
    }
    state.collected = store.read_batches(&shares_dir(&task.id)).await?;
    let now = unix_now();
    state
        .seen
        .retain(|_, time| time.saturating_add(task.report_expiry_age) >= now);
    Ok(state)
}

impl Helper {
    fn task(&self, id: &str) -> Result<&Arc<HelperTask>, ApiError> {
        let id: TaskId = request::path_id(id, None, "task ID")?;
        self.tasks.get(&id).ok_or_else(|| {
            ApiError::problem(
                DapProblemType::UnrecognizedTask,
                Some(&id),
                "no such task here",
            )
        })
    }
}

/// `PUT /tasks/{t}/aggregation_jobs/{j}`.
async fn aggregation_job(
    State(helper): State<Arc<Helper>>,
    Path((task_id, job)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let shared = Arc::clone(&helper);
    common::detached(
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

/// An aggregation job's request, checked.
struct JobRequest {
    job_id: AggregationJobId,
    request: AggregationJobInitializeReq<TimeInterval>,
    /// SHA-256 of the body: the same job sent again must be identical.
    digest: [u8; 32],
}

/// What preparing a job's reports gave, before it is stored.
struct PreparedJob {
    response: AggregationJobResp,
    delta: Shares,
    /// The reports prepared: (ID in base64url, time).
    reports: Vec<(String, u64)>,
    outcomes: Vec<Result<(), PrepareError>>,
    /// The slot of each report admitted, whose reservation the job holds.
    slots: Vec<u64>,
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
    request::check_peer(&task, headers, "leader")?;
    let JobRequest {
        job_id,
        request: job_request,
        digest,
    } = check_job_request(&task, job, headers, &body)?;
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
            Some(admit(&mut state, &task, &job_request, job_id, digest, now)?)
        }
    };
    let Some(admissions) = admissions else {
        return repeat_answer(helper, &task, &job_id).await;
    };
    let keys = helper.common.keys();
    let prep_task = Arc::clone(&task);
    let prepared = tokio::task::spawn_blocking(move || {
        prepare_job(&prep_task, &keys, now, &job_request, &admissions)
    })
    .await
    .map_err(|e| anyhow::anyhow!("preparation failed: {e}"))?;
    let stored = store_job_record(helper, &task, job_id, digest, now, &prepared).await;
    finish_job(helper, &ht, job_id, digest, prepared, stored)
}

/// The job's path, media type and body: a job ID, a request that decodes without an
/// aggregation parameter, and no report twice.
fn check_job_request(
    task: &Task,
    job: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<JobRequest, ApiError> {
    let job_id: AggregationJobId = request::path_id(job, Some(&task.id), "aggregation job ID")?;
    let job_request: AggregationJobInitializeReq<TimeInterval> =
        request::decode_prio3_request(headers, body, &task.id, "aggregation job")?;
    let digest: [u8; 32] = Sha256::digest(body).into();
    let mut unique = HashSet::new();
    if !job_request
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
    Ok(JobRequest {
        job_id,
        request: job_request,
        digest,
    })
}

/// The helper's half of preparing every admitted report of a job (CPU work: run off the async
/// threads), and the answer to the leader.
fn prepare_job(
    task: &Task,
    keys: &KeySet,
    now: u64,
    job_request: &AggregationJobInitializeReq<TimeInterval>,
    admissions: &[Admission],
) -> PreparedJob {
    let mut delta = Shares::default();
    let mut resps = Vec::with_capacity(admissions.len());
    let mut reports = Vec::new();
    let mut outcomes = Vec::new();
    for (p, admission) in job_request.prepare_inits().iter().zip(admissions) {
        let metadata = p.report_share().metadata();
        let result = match admission {
            Admission::Reject(e) => Err(*e),
            Admission::Prepare => {
                reports.push((
                    batch::report_id_text(metadata.id()),
                    metadata.time().as_seconds_since_epoch(),
                ));
                prepare_report(task, keys, now, p).map(|(output, message)| {
                    delta.add(task.slot(metadata.time()), &output, metadata.id());
                    message
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
    let slots: Vec<u64> = job_request
        .prepare_inits()
        .iter()
        .zip(admissions)
        .filter(|(_, a)| matches!(a, Admission::Prepare))
        .map(|(p, _)| task.slot(p.report_share().metadata().time()))
        .collect();
    PreparedJob {
        response: AggregationJobResp::new(resps),
        delta,
        reports,
        outcomes,
        slots,
    }
}

/// Opens the helper's share of one report and takes the one preparation step of Prio3: the
/// output share and the message for the leader, or DAP's prepare error.
fn prepare_report(
    task: &Task,
    keys: &KeySet,
    now: u64,
    init: &PrepareInit,
) -> Result<(batch::OutputShare, PingPongMessage), PrepareError> {
    let share = init.report_share();
    let metadata = share.metadata();
    let (public_share, input_share) = prep::open_share(
        task,
        keys,
        now,
        Role::Helper,
        metadata,
        share.public_share(),
        share.encrypted_input_share(),
    )?;
    let (state, message) = task
        .vdaf
        .helper_initialized(
            &task.verify_key,
            &(),
            metadata.id().as_ref(),
            &public_share,
            &input_share,
            init.message(),
        )
        .and_then(|transition| transition.evaluate(&task.vdaf))
        .map_err(|_| PrepareError::VdafPrepError)?;
    match state {
        PingPongState::Finished(output) => Ok((output, message)),
        // One-round Prio3 finishes at the helper's first step.
        PingPongState::Continued(_) => Err(PrepareError::VdafPrepError),
    }
}

/// Writes the job's record (once: a record already there is an error); its encoded answer
/// and the end of its newest slot.
async fn store_job_record(
    helper: &Helper,
    task: &Task,
    job_id: AggregationJobId,
    digest: [u8; 32],
    now: u64,
    prepared: &PreparedJob,
) -> anyhow::Result<(Vec<u8>, u64)> {
    let response = prepared.response.get_encoded()?;
    let record = JobRecord {
        request: hex(&digest),
        response: URL_SAFE_NO_PAD.encode(&response),
        slots: prepared.delta.to_stored(),
        reports: prepared.reports.clone(),
        written: now,
    };
    let end = record_end(task, &record);
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

/// Ends a job under the state lock: its reservations released, and either its sums and
/// record taken in (stored) or its reports forgotten so that they may come again (not stored).
fn finish_job(
    helper: &Helper,
    ht: &HelperTask,
    job_id: AggregationJobId,
    digest: [u8; 32],
    prepared: PreparedJob,
    stored: anyhow::Result<(Vec<u8>, u64)>,
) -> Result<Response, ApiError> {
    let mut state = ht.state.lock().expect("state lock");
    state.in_progress.remove(&job_id);
    for slot in &prepared.slots {
        batch::release_one(&mut state.reserved, *slot);
    }
    match stored {
        Ok((response, end)) => {
            state.aggregated.merge(&prepared.delta);
            state.jobs.insert(job_id, digest);
            state.records.insert(job_id, end);
            drop(state);
            let metrics = &helper.common.metrics;
            metrics.count("aggregation_jobs", "");
            for outcome in prepared.outcomes {
                match outcome {
                    Ok(()) => metrics.count("reports_aggregated", ""),
                    Err(e) => metrics.count("reports_rejected", error_label(e)),
                }
            }
            Ok(request::encoded(
                StatusCode::OK,
                response,
                AggregationJobResp::MEDIA_TYPE,
            ))
        }
        Err(e) => {
            // Nothing of the job happened: its reports may come again.
            for (id, _) in &prepared.reports {
                if let Ok(id) = batch::report_id_from_text(id) {
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
    let record: JobRecord = helper
        .common
        .store
        .read_json(&key, MAX_JOB_BYTES, "a job record")
        .await?;
    let response = URL_SAFE_NO_PAD
        .decode(&record.response)
        .map_err(|_| anyhow::anyhow!("{key}: response is not base64url"))?;
    helper.common.metrics.count("aggregation_jobs_repeated", "");
    Ok(request::encoded(
        StatusCode::OK,
        response,
        AggregationJobResp::MEDIA_TYPE,
    ))
}

/// `POST /tasks/{t}/aggregate_shares`.
async fn aggregate_share(
    State(helper): State<Arc<Helper>>,
    Path(task_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let shared = Arc::clone(&helper);
    common::detached(async move { aggregate_share_inner(&shared, &task_id, &headers, &body).await })
        .await
        .map_err(|e| helper.common.refused("aggregate_shares_refused", e))
}

/// What to do with a request for a batch's share.
enum Decision {
    /// Answer again what was released for this very batch.
    Repeat,
    /// Release the batch's share, closed to new jobs from now on.
    Release(batch::BatchTotal),
}

async fn aggregate_share_inner(
    helper: &Arc<Helper>,
    task_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let ht = Arc::clone(helper.task(task_id)?);
    let task = Arc::clone(&ht.task);
    request::check_peer(&task, headers, "leader")?;
    let share_request: AggregateShareReq<TimeInterval> =
        request::decode_prio3_request(headers, body, &task.id, "request")?;
    let interval = *share_request.batch_selector().batch_interval();
    request::check_batch(&task, &interval)?;
    let key = format!("{}/{}", shares_dir(&task.id), interval_name(&interval));
    match decide_release(&ht, &share_request, &interval)? {
        Decision::Repeat => repeat_share(helper, &task, &key, &share_request).await,
        Decision::Release(total) => {
            release_share(helper, &ht, &key, &share_request, &interval, total).await
        }
    }
}

/// The leader's count and checksum of a batch differ from the helper's own.
fn mismatch(
    task: &Task,
    share_request: &AggregateShareReq<TimeInterval>,
    own_count: u64,
    own_checksum: &[u8],
) -> ApiError {
    ApiError::problem(
        DapProblemType::BatchMismatch,
        Some(&task.id),
        format!(
            "the leader counts {} reports (checksum {}), the helper {own_count} (checksum {})",
            share_request.report_count(),
            hex(share_request.checksum().as_ref()),
            hex(own_checksum)
        ),
    )
}

/// Decides, under the state lock, whether the batch's share is answered again, released (and
/// the batch closed), or refused.
fn decide_release(
    ht: &HelperTask,
    share_request: &AggregateShareReq<TimeInterval>,
    interval: &Interval,
) -> Result<Decision, ApiError> {
    let task = &ht.task;
    let (start, end) = bounds(interval);
    let mut state = ht.state.lock().expect("state lock");
    if state.collected.get(&start) == Some(&end) {
        return Ok(Decision::Repeat);
    }
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
    let total = state.aggregated.total(interval, task.time_precision);
    if total.count != share_request.report_count() || total.checksum != *share_request.checksum() {
        return Err(mismatch(
            task,
            share_request,
            total.count,
            total.checksum.as_ref(),
        ));
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
    // Closed to new jobs from now on; reopened if the share cannot be stored.
    state.collected.insert(start, end);
    Ok(Decision::Release(total))
}

/// The share released before for this batch, if the leader's count and checksum still match.
async fn repeat_share(
    helper: &Helper,
    task: &Task,
    key: &str,
    share_request: &AggregateShareReq<TimeInterval>,
) -> Result<Response, ApiError> {
    let record: ShareRecord = helper
        .common
        .store
        .read_json(key, MAX_COLLECTION_BYTES, "a released share")
        .await?;
    let checksum = decode_hex32(&record.checksum).with_context(|| format!("{key}: checksum"))?;
    if record.count != share_request.report_count() || checksum != share_request.checksum().as_ref()
    {
        return Err(mismatch(task, share_request, record.count, &checksum));
    }
    let response = URL_SAFE_NO_PAD
        .decode(&record.response)
        .map_err(|_| anyhow::anyhow!("{key}: response is not base64url"))?;
    Ok(request::encoded(
        StatusCode::OK,
        response,
        AggregateShareMsg::MEDIA_TYPE,
    ))
}

/// Seals the batch's share to the collector and stores it (once) before answering; if it
/// cannot be stored, the batch is reopened.
async fn release_share(
    helper: &Helper,
    ht: &HelperTask,
    key: &str,
    share_request: &AggregateShareReq<TimeInterval>,
    interval: &Interval,
    total: batch::BatchTotal,
) -> Result<Response, ApiError> {
    let task = &ht.task;
    let released = async {
        let share = total.share.context("a non-empty batch without a share")?;
        let agg_param = ().get_encoded()?;
        let aad =
            AggregateShareAad::new(task.id, agg_param, share_request.batch_selector().clone())
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
            .create(key, serde_json::to_vec(&record)?)
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
            Ok(request::encoded(
                StatusCode::OK,
                response,
                AggregateShareMsg::MEDIA_TYPE,
            ))
        }
        Err(e) => {
            let (start, _) = bounds(interval);
            ht.state
                .lock()
                .expect("state lock")
                .collected
                .remove(&start);
            Err(ApiError::Internal(e))
        }
    }
}
