//! The leader: takes the clients' uploads, drives aggregation with the helper, and answers the
//! collector.
//!
//! ```text
//! PUT /tasks/{t}/reports ──▶ checks ──▶ group commit: reports/<n> (one segment per write)
//!                                               │ (background: aggregation loop)
//!                                               ▼
//!        jobs/<j>.plan (segments) ──▶ leader prep ──▶ PUT helper /tasks/{t}/aggregation_jobs/{j}
//!                                               ▼
//!        jobs/<j>.done (slot sums, report ids) ──▶ in memory: sums, pending counts
//! PUT /tasks/{t}/collection_jobs/{c} ──▶ collections/<c>, batches/<interval> (once per batch)
//!        (background: collection loop) ──▶ POST helper /tasks/{t}/aggregate_shares
//! POST /tasks/{t}/collection_jobs/{c} ──▶ 202 until done, then the encrypted shares
//! ```
//!
//! Promises:
//!
//! - **An upload answered 2xx is durable** (its segment is written and synced first) **and is
//!   counted exactly once**, whatever the leader or the helper is killed in the middle of: a
//!   job's plan is written before the job is sent, so a restart sends the very same job (same
//!   ID, same reports, same deterministic preparation) and the helper answers a repeat from its
//!   record; a job's result (`.done`) is written once, and only then are its segments deleted.
//! - **Replays are refused**, also across restarts: every report ID within the replay horizon
//!   is known (from segments and job results); the same report sent again (a client's retry)
//!   is answered 200 and counted once, another report with a known ID is `reportRejected`;
//!   reports older than the horizon (`report_expiry_age`) are refused, as their IDs may have
//!   been forgotten.
//! - **A batch is collected at most once**: the first collection job for an interval consumes
//!   it (`batches/<interval>`, created once); another job for it is `batchQueriedTooManyTimes`,
//!   an overlapping one `batchOverlap`, and uploads into it are refused from then on. A
//!   collection with fewer reports than `min_batch_size` is refused without consuming the
//!   batch; if reports fail preparation and fewer than that remain, the job fails and nothing is
//!   released.
//! - The store holds reports only as the clients sealed them, and sums; nothing is logged about
//!   a report.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prio::topology::ping_pong::{PingPongContinuedValue, PingPongTopology};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tally_dap::draft::messages::{
    AggregateShare as AggregateShareMsg, AggregateShareAad, AggregateShareReq, AggregationJobId,
    AggregationJobInitializeReq, AggregationJobResp, BatchSelector, Collection as CollectionMsg,
    CollectionJobId, CollectionReq, DapProblemType, Decode, Duration as DapDuration, Encode,
    Interval, PartialBatchSelector, PrepareError, PrepareInit, PrepareStepResult, Report, ReportId,
    ReportShare, Role, TaskId, Time, TimeInterval,
};
use tally_dap::draft::{self, Label};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::batch::{self, Shares, StoredSlot, bounds, interval_name, overlaps};
use crate::common::{self, Common, unix_now};
use crate::prep::{self, error_label};
use crate::problem::ApiError;
use crate::request;
use crate::store::{
    Created, MAX_COLLECTION_BYTES, MAX_JOB_BYTES, MAX_SEGMENT_BYTES, MAX_SMALL_BYTES,
    SEGMENT_TARGET_BYTES,
};
use crate::task::{Task, hex};

/// How the leader batches its work.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    /// Most reports in one aggregation job.
    pub job_size: usize,
    /// How long reports wait for more to fill a job before a smaller one is sent.
    pub job_linger: Duration,
    /// Aggregation jobs sent to the helper at once (per task).
    pub jobs_in_flight: usize,
    /// How long one request to the helper may take.
    pub helper_timeout: Duration,
    /// Most bytes of committed reports kept in memory for aggregation; beyond it, reports are
    /// read back from their segments.
    pub max_cached_bytes: usize,
    /// Most reports one segment (one synced write) holds.
    pub segment_size: usize,
}

impl Default for LeaderOptions {
    fn default() -> LeaderOptions {
        LeaderOptions {
            job_size: 1000,
            job_linger: Duration::from_millis(250),
            jobs_in_flight: 2,
            helper_timeout: Duration::from_secs(120),
            max_cached_bytes: 256 << 20,
            segment_size: 2000,
        }
    }
}

/// Largest upload body: a report of the largest vector a task allows, with room to spare.
const MAX_REPORT_BYTES: usize = 4 << 20;

/// Largest body any request to the leader may have (an upload; collection requests are far
/// smaller, and their routes say so): what is read before a handler runs.
pub const MAX_BODY_BYTES: usize = MAX_REPORT_BYTES;

/// The leader's state, shared by handlers and its background loops.
pub struct Leader {
    common: Arc<Common>,
    tasks: HashMap<TaskId, Arc<LeaderTask>>,
    writer: mpsc::Sender<Upload>,
    wake_aggregation: Notify,
    wake_collection: Notify,
    options: LeaderOptions,
    agent: ureq::Agent,
}

struct LeaderTask {
    task: Arc<Task>,
    state: Mutex<TaskState>,
}

/// A report the leader knows the ID of.
#[derive(Debug, Clone, Copy)]
struct Seen {
    time: u64,
    /// The first 8 bytes of SHA-256 of the upload, to tell a client's retry from a replay.
    digest: u64,
    /// Written to a segment (false while its write is in progress).
    committed: bool,
}

/// A committed segment not yet in an aggregation job.
#[derive(Debug, Clone)]
struct Segment {
    name: String,
    /// The reports, if kept in memory.
    reports: Option<Arc<Vec<Bytes>>>,
    /// When it was written, for lingering (see [`LeaderOptions::job_linger`]).
    written: std::time::Instant,
    len: usize,
    bytes: usize,
}

#[derive(Default)]
struct TaskState {
    seen: HashMap<ReportId, Seen>,
    /// Consumed batches: start → end.
    collected: BTreeMap<u64, u64>,
    /// Slot → reports accepted and not yet through aggregation.
    pending: BTreeMap<u64, u64>,
    /// Sums of every finished job.
    aggregated: Shares,
    queue: VecDeque<Segment>,
    cached_bytes: usize,
    jobs_in_flight: usize,
    next_segment: u64,
    collections: BTreeMap<CollectionJobId, CollectionRecord>,
    /// Every job result in the store (`jobs/<id>.done`): the end of its newest slot, so that
    /// compaction knows which are past the replay horizon without reading them.
    results: BTreeMap<String, u64>,
}

impl TaskState {
    fn pending_in(&self, start: u64, end: u64) -> u64 {
        self.pending.range(start..end).map(|(_, n)| n).sum()
    }

    fn is_collected(&self, time: u64) -> bool {
        batch::is_in_batch(&self.collected, time)
    }
}

struct Upload {
    task: Arc<LeaderTask>,
    id: ReportId,
    bytes: Bytes,
    done: oneshot::Sender<anyhow::Result<()>>,
}

fn digest64(bytes: &[u8]) -> u64 {
    let d = Sha256::digest(bytes);
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

fn segments_key(task: &TaskId) -> String {
    format!("tasks/{task}/reports")
}

fn jobs_key(task: &TaskId) -> String {
    format!("tasks/{task}/jobs")
}

const SEGMENT_MAGIC: &[u8] = b"tally-dap segment 1\n";

fn encode_segment(reports: &[&[u8]]) -> Vec<u8> {
    let total: usize = reports.iter().map(|r| r.len() + 4).sum();
    let mut out = Vec::with_capacity(SEGMENT_MAGIC.len() + total);
    out.extend_from_slice(SEGMENT_MAGIC);
    for report in reports {
        out.extend_from_slice(&(report.len() as u32).to_be_bytes());
        out.extend_from_slice(report);
    }
    out
}

fn decode_segment(bytes: &[u8]) -> anyhow::Result<Vec<Bytes>> {
    let mut rest = bytes
        .strip_prefix(SEGMENT_MAGIC)
        .context("not a tally-dap segment")?;
    let mut reports = Vec::new();
    while !rest.is_empty() {
        anyhow::ensure!(rest.len() >= 4, "a segment ends inside a length");
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        anyhow::ensure!(rest.len() >= 4 + len, "a segment ends inside a report");
        reports.push(Bytes::copy_from_slice(&rest[4..4 + len]));
        rest = &rest[4 + len..];
    }
    Ok(reports)
}

/// What a finished aggregation job stored: `jobs/<id>.done`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobDone {
    /// The segments the job consumed.
    segments: Vec<String>,
    /// Sums of the reports that finished, by slot.
    slots: Vec<StoredSlot>,
    /// Every report of the job: ID, time, digest, and `finished` or its prepare error.
    reports: Vec<JobReport>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobReport {
    id: String,
    time: u64,
    digest: u64,
    outcome: String,
}

/// What a job will hold: `jobs/<id>.plan`, written before the job is sent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobPlan {
    segments: Vec<String>,
}

/// A collection job as stored: `collections/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectionRecord {
    start: u64,
    duration: u64,
    /// SHA-256 of the request body, hex: a repeat must be identical.
    request: String,
    state: CollectionState,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "state", deny_unknown_fields)]
enum CollectionState {
    Pending,
    /// The encoded `Collection` message, unpadded base64url.
    Finished {
        collection: String,
    },
    /// Nothing was released: DAP's problem type (its last segment) and a detail.
    Failed {
        problem: String,
        detail: String,
    },
    Deleted,
}

/// The batch a collection job consumed: `batches/<start>-<duration>`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRecord {
    collection_job: String,
}

/// Starts the leader: recovers every task's state from the store, starts the writer and the
/// aggregation and collection loops, and returns the routes.
pub async fn start(common: Arc<Common>, options: LeaderOptions) -> anyhow::Result<Router> {
    let (writer, uploads) = mpsc::channel(8192);
    let mut tasks = HashMap::new();
    let mut recovered_jobs = Vec::new();
    for (id, task) in &common.tasks {
        let (state, plans) = recover(&common, task).await?;
        let lt = Arc::new(LeaderTask {
            task: Arc::clone(task),
            state: Mutex::new(state),
        });
        for plan in plans {
            recovered_jobs.push((Arc::clone(&lt), plan));
        }
        tasks.insert(*id, lt);
    }
    let agent = tally_dap::client::agent(options.helper_timeout);
    let leader = Arc::new(Leader {
        common,
        tasks,
        writer,
        wake_aggregation: Notify::new(),
        wake_collection: Notify::new(),
        options,
        agent,
    });
    tokio::spawn(write_segments(Arc::clone(&leader), uploads));
    // What a restart found unfinished: reports accepted but not through aggregation, and jobs
    // planned but without a result (sent again below).
    for lt in leader.tasks.values() {
        let pending: u64 = lt.state.lock().expect("state lock").pending.values().sum();
        leader.common.metrics.add("recovered_reports", "", pending);
    }
    leader
        .common
        .metrics
        .add("recovered_jobs", "", recovered_jobs.len() as u64);
    for (task, (job_id, segments)) in recovered_jobs {
        task.state.lock().expect("state lock").jobs_in_flight += 1;
        tokio::spawn(run_job(Arc::clone(&leader), task, job_id, segments));
    }
    let task_ids = leader.tasks.keys().copied().collect();
    common::start_compaction(&leader, task_ids, "job results", compact).await?;
    tokio::spawn(aggregation_loop(Arc::clone(&leader)));
    tokio::spawn(collection_loop(Arc::clone(&leader)));
    Ok(common::routes(Arc::clone(&leader.common))
        .route(
            "/tasks/{task_id}/reports",
            put(upload).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)),
        )
        .route(
            "/tasks/{task_id}/collection_jobs/{job_id}",
            put(collection_put)
                .post(collection_post)
                .delete(collection_delete)
                .layer(DefaultBodyLimit::max(64 << 10)),
        )
        .with_state(leader))
}

type Plan = (AggregationJobId, Vec<Segment>);

/// Rebuilds a task's state from its store: job results into sums and known IDs, plans without
/// a result to send again, segments in no plan back into the queue, collections and batches.
/// Compaction keeps what there is to read to the replay horizon.
async fn recover(common: &Common, task: &Task) -> anyhow::Result<(TaskState, Vec<Plan>)> {
    let mut state = TaskState::default();
    let now = unix_now();
    let done_segments = recover_results(common, task, &mut state).await?;
    let plans = recover_plans(common, task).await?;
    let planned: HashSet<&str> = plans
        .iter()
        .flat_map(|(_, segments)| segments.iter().map(|s| s.name.as_str()))
        .collect();
    recover_segments(common, task, &mut state, &done_segments, &planned).await?;
    recover_collections(common, task, &mut state).await?;
    state
        .seen
        .retain(|_, s| s.time.saturating_add(task.report_expiry_age) >= now);
    Ok((state, plans))
}

/// Every job result (`jobs/<j>.done`) into the sums and the known report IDs; the segments the
/// results consumed.
async fn recover_results(
    common: &Common,
    task: &Task,
    state: &mut TaskState,
) -> anyhow::Result<HashSet<String>> {
    let store = &common.store;
    let jobs_dir = jobs_key(&task.id);
    let mut done_segments = HashSet::new();
    for job in store.stems(&jobs_dir, ".done").await? {
        let key = format!("{jobs_dir}/{job}.done");
        let done: JobDone = store.read_json(&key, MAX_JOB_BYTES, "a job result").await?;
        state
            .aggregated
            .merge(&Shares::from_stored(&task.vdaf, &done.slots)?);
        for r in &done.reports {
            let id = batch::report_id_from_text(&r.id).with_context(|| key.clone())?;
            state.seen.insert(
                id,
                Seen {
                    time: r.time,
                    digest: r.digest,
                    committed: true,
                },
            );
        }
        state.results.insert(job, result_end(task, &done));
        done_segments.extend(done.segments);
        common.metrics.count("recovered_job_results", "");
    }
    Ok(done_segments)
}

/// The plans without a result (`jobs/<j>.plan`): jobs to send again. A plan whose result was
/// written is deleted.
async fn recover_plans(common: &Common, task: &Task) -> anyhow::Result<Vec<Plan>> {
    let store = &common.store;
    let jobs_dir = jobs_key(&task.id);
    let done = store.stems(&jobs_dir, ".done").await?;
    let mut plans = Vec::new();
    for job in store.stems(&jobs_dir, ".plan").await? {
        let key = format!("{jobs_dir}/{job}.plan");
        if done.contains(&job) {
            store.delete(&key).await?;
            continue;
        }
        let plan: JobPlan = store.read_json(&key, MAX_JOB_BYTES, "a job plan").await?;
        let job_id: AggregationJobId = job
            .parse()
            .map_err(|_| anyhow::anyhow!("{key}: not a job ID"))?;
        let segments = plan
            .segments
            .into_iter()
            .map(|name| Segment {
                name,
                reports: None,
                len: 0,
                bytes: 0,
                written: std::time::Instant::now(),
            })
            .collect();
        plans.push((job_id, segments));
    }
    Ok(plans)
}

/// Every segment (`reports/<n>`): its reports known and pending, and back into the queue unless
/// a plan holds it; a segment a result consumed is deleted.
async fn recover_segments(
    common: &Common,
    task: &Task,
    state: &mut TaskState,
    done_segments: &HashSet<String>,
    planned: &HashSet<&str>,
) -> anyhow::Result<()> {
    let store = &common.store;
    let seg_dir = segments_key(&task.id);
    for name in store.list(&seg_dir).await? {
        let number: u64 = name.parse().unwrap_or(0);
        state.next_segment = state.next_segment.max(number + 1);
        if done_segments.contains(&name) {
            store.delete(&format!("{seg_dir}/{name}")).await?;
            continue;
        }
        let bytes = store
            .get(&format!("{seg_dir}/{name}"), MAX_SEGMENT_BYTES)
            .await?
            .context("a segment vanished")?;
        let reports = decode_segment(&bytes).with_context(|| format!("{seg_dir}/{name}"))?;
        for bytes in &reports {
            let report = Report::get_decoded(bytes)
                .map_err(|e| anyhow::anyhow!("{seg_dir}/{name}: a report does not decode: {e}"))?;
            let time = report.metadata().time().as_seconds_since_epoch();
            state.seen.insert(
                *report.metadata().id(),
                Seen {
                    time,
                    digest: digest64(bytes),
                    committed: true,
                },
            );
            *state
                .pending
                .entry(task.slot(report.metadata().time()))
                .or_insert(0) += 1;
        }
        if !planned.contains(name.as_str()) {
            state.queue.push_back(Segment {
                name,
                len: reports.len(),
                bytes: 0,
                reports: None,
                written: std::time::Instant::now(),
            });
        }
    }
    Ok(())
}

/// Collection jobs and consumed batches; a pending job whose batch was not written yet (a crash
/// between the two) consumes it now.
async fn recover_collections(
    common: &Common,
    task: &Task,
    state: &mut TaskState,
) -> anyhow::Result<()> {
    let store = &common.store;
    let col_dir = format!("tasks/{}/collections", task.id);
    for job in store.stems(&col_dir, ".json").await? {
        let key = format!("{col_dir}/{job}.json");
        let id: CollectionJobId = job
            .parse()
            .map_err(|_| anyhow::anyhow!("{key}: not a collection job ID"))?;
        let record: CollectionRecord = store
            .read_json(&key, MAX_COLLECTION_BYTES, "a collection record")
            .await?;
        state.collections.insert(id, record);
    }
    state.collected = store
        .read_batches(&format!("tasks/{}/batches", task.id))
        .await?;
    for (id, record) in &state.collections {
        if record.state == CollectionState::Pending {
            let interval = interval_of(record)?;
            claim_batch(common, task, &interval, id).await?;
            state
                .collected
                .insert(record.start, record.start.saturating_add(record.duration));
        }
    }
    Ok(())
}

/// The end of the newest slot a job result holds a report of.
fn result_end(task: &Task, done: &JobDone) -> u64 {
    task.slot_end(done.reports.iter().map(|r| r.time).max().unwrap_or(0))
}

/// Deletes the job results whose every report is past the replay horizon, and forgets their
/// sums and report IDs: such reports are refused anyway, and their batches can no longer be
/// collected (see `Task::is_past_horizon`). A restart then reads only the horizon's results.
async fn compact(leader: Arc<Leader>, id: TaskId) -> anyhow::Result<()> {
    let lt = &leader.tasks[&id];
    let task = &lt.task;
    let now = unix_now();
    let old: Vec<String> = {
        let mut state = lt.state.lock().expect("state lock");
        let old = task.take_past_horizon(&mut state.results, now);
        state.aggregated.forget_before(task.first_slot_kept(now));
        let horizon = task.report_expiry_age;
        state
            .seen
            .retain(|_, s| !s.committed || s.time.saturating_add(horizon) >= now);
        old
    };
    let jobs_dir = jobs_key(&task.id);
    let keys = old
        .iter()
        .map(|name| format!("{jobs_dir}/{name}.done"))
        .collect();
    leader.common.delete_each(keys, "job_results_deleted").await
}

fn interval_of(record: &CollectionRecord) -> anyhow::Result<Interval> {
    Interval::new(
        Time::from_seconds_since_epoch(record.start),
        DapDuration::from_seconds(record.duration),
    )
    .map_err(|e| anyhow::anyhow!("a stored interval is invalid: {e}"))
}

impl Leader {
    fn task(&self, id: &TaskId) -> Result<&Arc<LeaderTask>, ApiError> {
        self.tasks.get(id).ok_or_else(|| {
            ApiError::problem(
                DapProblemType::UnrecognizedTask,
                Some(id),
                "no such task here",
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Uploads

/// `PUT /tasks/{t}/reports`.
async fn upload(
    State(leader): State<Arc<Leader>>,
    Path(task_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let shared = Arc::clone(&leader);
    let work = async move { upload_inner(&shared, &task_id, &headers, body).await };
    common::counted(&leader.common, "uploads_accepted", "uploads_refused", work).await?;
    Ok(StatusCode::OK)
}

async fn upload_inner(
    leader: &Arc<Leader>,
    task_id: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<&'static str, ApiError> {
    let task_id: TaskId = request::path_id(task_id, None, "task ID")?;
    let lt = Arc::clone(leader.task(&task_id)?);
    let report: Report =
        request::decode_body(headers, &body, Report::MEDIA_TYPE, &task_id, "report")?;
    check_report(leader, &lt.task, &report)?;
    let metadata = report.metadata();
    let id = *metadata.id();
    let slot = lt.task.slot(metadata.time());
    let time = metadata.time().as_seconds_since_epoch();
    if let Some(outcome) = reserve(&lt, id, time, slot, digest64(&body))? {
        return Ok(outcome);
    }
    match commit(leader, &lt, id, body).await {
        Ok(()) => Ok("new"),
        Err(e) => {
            let mut state = lt.state.lock().expect("state lock");
            state.seen.remove(&id);
            batch::release_one(&mut state.pending, slot);
            Err(ApiError::Internal(e))
        }
    }
}

/// `ReportRejected` with `detail`.
fn rejected(task: &Task, detail: &str) -> ApiError {
    ApiError::problem(DapProblemType::ReportRejected, Some(&task.id), detail)
}

/// What can be checked of a report without the state: its time within the window, its key
/// still accepted, its public share decodable.
fn check_report(leader: &Leader, task: &Task, report: &Report) -> Result<(), ApiError> {
    let now = unix_now();
    let metadata = report.metadata();
    if task.is_too_early(metadata.time(), now) {
        return Err(ApiError::problem(
            DapProblemType::ReportTooEarly,
            Some(&task.id),
            "the report's time is further in the future than the tolerated clock skew",
        ));
    }
    if task.is_expired(metadata.time(), now) {
        return Err(rejected(
            task,
            "the report is older than the task's report expiry age",
        ));
    }
    let config_id = u8::from(*report.leader_encrypted_input_share().config_id());
    if leader.common.keys().accepted(config_id, now).is_none() {
        return Err(ApiError::problem(
            DapProblemType::OutdatedConfig,
            Some(&task.id),
            "the report is sealed to an HPKE config this leader no longer accepts; fetch /hpke_config again",
        ));
    }
    if prep::decode_public_share(&task.vdaf, report.public_share()).is_err() {
        return Err(ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(&task.id),
            "the public share does not decode for this task's VDAF",
        ));
    }
    Ok(())
}

/// Takes the report's ID under the state lock (and counts it pending), or tells what it is:
/// `Some("duplicate")` for a client's retry of a stored report, an error for a replay, a
/// report in a collected batch, or one whose store is in progress.
fn reserve(
    lt: &LeaderTask,
    id: ReportId,
    time: u64,
    slot: u64,
    digest: u64,
) -> Result<Option<&'static str>, ApiError> {
    let mut state = lt.state.lock().expect("state lock");
    if state.is_collected(time) {
        return Err(rejected(&lt.task, "the report's batch has been collected"));
    }
    match state.seen.get(&id) {
        Some(seen) if seen.digest == digest && seen.committed => return Ok(Some("duplicate")),
        Some(seen) if seen.digest == digest => {
            return Err(ApiError::Status(
                StatusCode::SERVICE_UNAVAILABLE,
                "the same report is being stored; retry".into(),
            ));
        }
        Some(_) => {
            return Err(rejected(
                &lt.task,
                "a report with this ID was received before",
            ));
        }
        None => {}
    }
    state.seen.insert(
        id,
        Seen {
            time,
            digest,
            committed: false,
        },
    );
    *state.pending.entry(slot).or_insert(0) += 1;
    Ok(None)
}

/// Hands the report to the group commit and waits until its segment is written.
async fn commit(
    leader: &Leader,
    lt: &Arc<LeaderTask>,
    id: ReportId,
    bytes: Bytes,
) -> anyhow::Result<()> {
    let (done, stored) = oneshot::channel();
    let sent = leader
        .writer
        .send(Upload {
            task: Arc::clone(lt),
            id,
            bytes,
            done,
        })
        .await;
    match sent {
        Ok(()) => stored
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the writer stopped"))),
        Err(_) => Err(anyhow::anyhow!("the writer stopped")),
    }
}

/// The group commit: every upload waiting when a write starts goes into one segment per task,
/// written and synced once; then all of them are answered.
async fn write_segments(leader: Arc<Leader>, mut uploads: mpsc::Receiver<Upload>) {
    while let Some(first) = uploads.recv().await {
        let mut bytes = first.bytes.len();
        let mut batch = vec![first];
        // At most `segment_size` uploads and about SEGMENT_TARGET_BYTES, so that a segment
        // is read back within MAX_SEGMENT_BYTES.
        while batch.len() < leader.options.segment_size && bytes < SEGMENT_TARGET_BYTES {
            match uploads.try_recv() {
                Ok(upload) => {
                    bytes += upload.bytes.len();
                    batch.push(upload);
                }
                Err(_) => break,
            }
        }
        let mut by_task: HashMap<TaskId, Vec<Upload>> = HashMap::new();
        for upload in batch {
            by_task.entry(upload.task.task.id).or_default().push(upload);
        }
        for (task_id, uploads) in by_task {
            let lt = Arc::clone(&uploads[0].task);
            let number = {
                let mut state = lt.state.lock().expect("state lock");
                state.next_segment += 1;
                state.next_segment - 1
            };
            let name = format!("{number:020}");
            let encoded =
                encode_segment(&uploads.iter().map(|u| u.bytes.as_ref()).collect::<Vec<_>>());
            let bytes = encoded.len();
            let result = match leader
                .common
                .store
                .create(&format!("{}/{name}", segments_key(&task_id)), encoded)
                .await
            {
                Ok(Created::New) => Ok(()),
                Ok(Created::AlreadyThere) => Err(anyhow::anyhow!("segment {name} exists already")),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    {
                        let mut state = lt.state.lock().expect("state lock");
                        for u in &uploads {
                            if let Some(seen) = state.seen.get_mut(&u.id) {
                                seen.committed = true;
                            }
                        }
                        let keep = state.cached_bytes + bytes <= leader.options.max_cached_bytes;
                        let reports: Vec<Bytes> = uploads.iter().map(|u| u.bytes.clone()).collect();
                        if keep {
                            state.cached_bytes += bytes;
                        }
                        state.queue.push_back(Segment {
                            name,
                            len: reports.len(),
                            bytes: if keep { bytes } else { 0 },
                            reports: keep.then(|| Arc::new(reports)),
                            written: std::time::Instant::now(),
                        });
                    }
                    leader.wake_aggregation.notify_one();
                    for u in uploads {
                        let _ = u.done.send(Ok(()));
                    }
                }
                Err(e) => {
                    eprintln!(
                        "tally-server: writing a segment of {} uploads failed: {e:#}",
                        uploads.len()
                    );
                    for u in uploads {
                        let _ = u
                            .done
                            .send(Err(anyhow::anyhow!("storing the report failed")));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Aggregation

async fn aggregation_loop(leader: Arc<Leader>) {
    loop {
        tokio::select! {
            _ = leader.wake_aggregation.notified() => {}
            _ = tokio::time::sleep(leader.options.job_linger / 4 + Duration::from_millis(1)) => {}
        }
        for lt in leader.tasks.values() {
            loop {
                let segments = {
                    let mut state = lt.state.lock().expect("state lock");
                    if state.jobs_in_flight >= leader.options.jobs_in_flight {
                        break;
                    }
                    // A full job goes at once; a smaller one waits for more reports until its
                    // oldest has lingered: fewer, larger jobs cost less per report.
                    let queued: usize = state.queue.iter().map(|s| s.len).sum();
                    let oldest = state.queue.front().map(|s| s.written.elapsed());
                    match oldest {
                        None => break,
                        Some(age)
                            if queued < leader.options.job_size
                                && age < leader.options.job_linger =>
                        {
                            break;
                        }
                        Some(_) => {}
                    }
                    let mut taken = Vec::new();
                    let mut reports = 0;
                    while let Some(front) = state.queue.front() {
                        if !taken.is_empty() && reports + front.len > leader.options.job_size {
                            break;
                        }
                        reports += front.len;
                        let segment = state.queue.pop_front().expect("a front");
                        state.cached_bytes -= segment.bytes;
                        taken.push(segment);
                    }
                    state.jobs_in_flight += 1;
                    taken
                };
                let job_id: AggregationJobId = rand::random();
                tokio::spawn(run_job(
                    Arc::clone(&leader),
                    Arc::clone(lt),
                    job_id,
                    segments,
                ));
            }
        }
    }
}

/// One report of a job, after the leader's preparation.
struct Prepared {
    id: ReportId,
    time: u64,
    slot: u64,
    digest: u64,
    outcome: Result<LeaderPrep, PrepareError>,
}

struct LeaderPrep {
    state: <draft::Vdaf as PingPongTopology<16, 16>>::State,
    init: PrepareInit,
}

/// Runs one aggregation job to its end: plan, prepare, send (retrying until the helper
/// answers), finish, record. Never gives up on a job, so that every accepted report is
/// counted; a restart sends it again.
async fn run_job(
    leader: Arc<Leader>,
    lt: Arc<LeaderTask>,
    job_id: AggregationJobId,
    segments: Vec<Segment>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match try_job(&leader, &lt, job_id, &segments).await {
            Ok(()) => break,
            Err(e) => {
                eprintln!(
                    "tally-server: aggregation job {job_id} of task {}: {e:#}; retrying in {delay:?}",
                    lt.task.id
                );
                leader.common.metrics.count("aggregation_job_retries", "");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    lt.state.lock().expect("state lock").jobs_in_flight -= 1;
    leader.wake_aggregation.notify_one();
    leader.wake_collection.notify_one();
}

async fn try_job(
    leader: &Arc<Leader>,
    lt: &Arc<LeaderTask>,
    job_id: AggregationJobId,
    segments: &[Segment],
) -> anyhow::Result<()> {
    let task = Arc::clone(&lt.task);
    let plan = JobPlan {
        segments: segments.iter().map(|s| s.name.clone()).collect(),
    };
    let reports = write_plan(leader, &task, job_id, &plan, segments).await?;
    let keys = leader.common.keys();
    let now = unix_now();
    let prep_task = Arc::clone(&task);
    let prepared: Vec<Prepared> = tokio::task::spawn_blocking(move || {
        reports
            .iter()
            .filter_map(|bytes| leader_prepare(&prep_task, &keys, now, bytes))
            .collect()
    })
    .await?;
    let outcomes = exchange_with_helper(leader, &task, job_id, &prepared).await?;
    record_job(leader, lt, job_id, &plan, &prepared, &outcomes).await
}

/// Writes the job's plan (before anything is sent, so that a restart sends the same job) and
/// reads its reports: from memory where the segments are cached, else from the store.
async fn write_plan(
    leader: &Leader,
    task: &Task,
    job_id: AggregationJobId,
    plan: &JobPlan,
    segments: &[Segment],
) -> anyhow::Result<Vec<Bytes>> {
    let store = &leader.common.store;
    store
        .create(
            &format!("{}/{job_id}.plan", jobs_key(&task.id)),
            serde_json::to_vec(plan)?,
        )
        .await?;
    let mut reports = Vec::new();
    for segment in segments {
        match &segment.reports {
            Some(cached) => reports.extend(cached.iter().cloned()),
            None => {
                let key = format!("{}/{}", segments_key(&task.id), segment.name);
                let bytes = store
                    .get(&key, MAX_SEGMENT_BYTES)
                    .await?
                    .with_context(|| format!("segment {key} is missing"))?;
                reports.extend(decode_segment(&bytes)?);
            }
        }
    }
    Ok(reports)
}

/// Sends the reports the leader prepared to the helper as one aggregation job, and finishes
/// each with the helper's answer: an output share, or DAP's prepare error. A report that failed
/// at the leader keeps its error; with none left to send, the helper is not asked.
async fn exchange_with_helper(
    leader: &Leader,
    task: &Task,
    job_id: AggregationJobId,
    prepared: &[Prepared],
) -> anyhow::Result<Vec<Result<batch::OutputShare, PrepareError>>> {
    let inits: Vec<PrepareInit> = prepared
        .iter()
        .filter_map(|p| p.outcome.as_ref().ok().map(|o| o.init.clone()))
        .collect();
    if inits.is_empty() {
        return Ok(prepared
            .iter()
            .map(|p| Err(*p.outcome.as_ref().err().expect("all failed")))
            .collect());
    }
    let request = AggregationJobInitializeReq::<TimeInterval>::new(
        ().get_encoded()?,
        PartialBatchSelector::new_time_interval(),
        inits,
    )
    .get_encoded()?;
    let answer = ask_helper(
        leader,
        task,
        "PUT",
        &format!("aggregation_jobs/{job_id}"),
        AggregationJobInitializeReq::<TimeInterval>::MEDIA_TYPE,
        request,
    )
    .await?;
    let response = match answer {
        HelperAnswer::Ok(body) => AggregationJobResp::get_decoded(&body)
            .map_err(|e| anyhow::anyhow!("the helper's answer does not decode: {e}"))?,
        HelperAnswer::Refused(status, problem) => {
            anyhow::bail!("the helper refused the job: HTTP {status} {problem}")
        }
    };
    let sent: Vec<&Prepared> = prepared.iter().filter(|p| p.outcome.is_ok()).collect();
    anyhow::ensure!(
        response.prepare_resps().len() == sent.len()
            && response
                .prepare_resps()
                .iter()
                .zip(&sent)
                .all(|(r, p)| *r.report_id() == p.id),
        "the helper answered for other reports than were sent"
    );
    let mut answers = response.prepare_resps().iter();
    Ok(prepared
        .iter()
        .map(|p| match &p.outcome {
            Err(e) => Err(*e),
            Ok(prep) => {
                let answer = answers.next().expect("lengths checked");
                leader_finish(&task.vdaf, prep, answer.result())
            }
        })
        .collect())
}

/// The leader's last preparation step for one report, with the helper's answer for it.
fn leader_finish(
    vdaf: &draft::Vdaf,
    prep: &LeaderPrep,
    answer: &PrepareStepResult,
) -> Result<batch::OutputShare, PrepareError> {
    match answer {
        PrepareStepResult::Continue { message } => {
            match vdaf.leader_continued(prep.state.clone(), &(), message) {
                Ok(PingPongContinuedValue::FinishedNoMessage { output_share }) => Ok(output_share),
                // One-round Prio3 finishes here; anything else is the helper misbehaving, and
                // the report is not counted.
                Ok(PingPongContinuedValue::WithMessage { .. }) | Err(_) => {
                    Err(PrepareError::VdafPrepError)
                }
            }
        }
        PrepareStepResult::Finished => Err(PrepareError::VdafPrepError),
        PrepareStepResult::Reject(e) => Err(*e),
    }
}

/// Records a job's result (`.done`, once), takes its sums in, and only then deletes its
/// segments and plan.
async fn record_job(
    leader: &Leader,
    lt: &LeaderTask,
    job_id: AggregationJobId,
    plan: &JobPlan,
    prepared: &[Prepared],
    outcomes: &[Result<batch::OutputShare, PrepareError>],
) -> anyhow::Result<()> {
    let store = &leader.common.store;
    let task = &lt.task;
    let jobs_dir = jobs_key(&task.id);
    let mut delta = Shares::default();
    let mut records = Vec::with_capacity(prepared.len());
    for (p, outcome) in prepared.iter().zip(outcomes) {
        let label = match outcome {
            Ok(output) => {
                delta.add(p.slot, output, &p.id);
                "finished"
            }
            Err(e) => error_label(*e),
        };
        records.push(JobReport {
            id: batch::report_id_text(&p.id),
            time: p.time,
            digest: p.digest,
            outcome: label.to_owned(),
        });
    }
    let done = JobDone {
        segments: plan.segments.clone(),
        slots: delta.to_stored(),
        reports: records,
    };
    store
        .create(
            &format!("{jobs_dir}/{job_id}.done"),
            serde_json::to_vec(&done)?,
        )
        .await?;
    {
        let mut state = lt.state.lock().expect("state lock");
        state.aggregated.merge(&delta);
        for p in prepared {
            batch::release_one(&mut state.pending, p.slot);
        }
        state
            .results
            .insert(job_id.to_string(), result_end(task, &done));
    }
    let metrics = &leader.common.metrics;
    metrics.count("aggregation_jobs", "");
    for outcome in outcomes {
        match outcome {
            Ok(_) => metrics.count("reports_aggregated", ""),
            Err(e) => metrics.count("reports_rejected", error_label(*e)),
        }
    }
    for segment in &plan.segments {
        store
            .delete(&format!("{}/{segment}", segments_key(&task.id)))
            .await?;
    }
    store.delete(&format!("{jobs_dir}/{job_id}.plan")).await?;
    Ok(())
}

/// The leader's half of preparing one report; `None` for bytes that are not a report (cannot
/// happen for what the upload handler stored).
fn leader_prepare(
    task: &Task,
    keys: &crate::keys::KeySet,
    now: u64,
    bytes: &[u8],
) -> Option<Prepared> {
    let report = Report::get_decoded(bytes).ok()?;
    let metadata = report.metadata().clone();
    let outcome = prep::open_share(
        task,
        keys,
        now,
        Role::Leader,
        &metadata,
        report.public_share(),
        report.leader_encrypted_input_share(),
    )
    .and_then(|(public_share, input_share)| {
        task.vdaf
            .leader_initialized(
                &task.verify_key,
                &(),
                metadata.id().as_ref(),
                &public_share,
                &input_share,
            )
            .map_err(|_| PrepareError::VdafPrepError)
    })
    .map(|(state, message)| LeaderPrep {
        state,
        init: PrepareInit::new(
            ReportShare::new(
                metadata.clone(),
                report.public_share().to_vec(),
                report.helper_encrypted_input_share().clone(),
            ),
            message,
        ),
    });
    Some(Prepared {
        id: *metadata.id(),
        time: metadata.time().as_seconds_since_epoch(),
        slot: task.slot(metadata.time()),
        digest: digest64(bytes),
        outcome,
    })
}

/// What the helper answered.
enum HelperAnswer {
    Ok(Vec<u8>),
    /// A 4xx answer: the status and DAP's problem type if given.
    Refused(u16, String),
}

/// One request to the helper of `task`, at `tasks/{t}/{path}`, off the async threads.
async fn ask_helper(
    leader: &Leader,
    task: &Task,
    method: &'static str,
    path: &str,
    media_type: &'static str,
    body: Vec<u8>,
) -> anyhow::Result<HelperAnswer> {
    let (helper_url, token) = task
        .helper
        .clone()
        .context("a leader task without a helper")?;
    let url = format!("{helper_url}tasks/{}/{path}", task.id);
    let agent = leader.agent.clone();
    tokio::task::spawn_blocking(move || send(&agent, method, &url, &token, media_type, &body))
        .await?
}

/// One request to the helper. Transport errors and 5xx are errors (the caller retries); 4xx is
/// an answer.
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    media_type: &str,
    body: &[u8],
) -> anyhow::Result<HelperAnswer> {
    let request = match method {
        "PUT" => agent.put(url),
        _ => agent.post(url),
    };
    let mut response = request
        .header("content-type", media_type)
        .header("authorization", &format!("Bearer {token}"))
        .send(body)
        .with_context(|| format!("no answer from the helper at {url}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .with_context(|| format!("reading the helper's answer from {url}"))?;
    match status {
        200..=299 => Ok(HelperAnswer::Ok(body)),
        400..=499 => {
            let problem = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
                .unwrap_or_default();
            Ok(HelperAnswer::Refused(status, problem))
        }
        _ => anyhow::bail!("the helper at {url} answered HTTP {status}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Collection

fn collection_key(task: &TaskId, job: &CollectionJobId) -> String {
    format!("tasks/{task}/collections/{job}.json")
}

/// Consumes the batch `interval` for collection job `job` (create-if-absent; the same job
/// claiming it again is fine). `false` if another job consumed it.
async fn claim_batch(
    common: &Common,
    task: &Task,
    interval: &Interval,
    job: &CollectionJobId,
) -> anyhow::Result<bool> {
    let key = format!("tasks/{}/batches/{}", task.id, interval_name(interval));
    let record = serde_json::to_vec(&BatchRecord {
        collection_job: job.to_string(),
    })?;
    match common.store.create(&key, record).await? {
        Created::New => Ok(true),
        Created::AlreadyThere => {
            let bytes = common
                .store
                .get(&key, MAX_SMALL_BYTES)
                .await?
                .unwrap_or_default();
            let existing: Option<BatchRecord> = serde_json::from_slice(&bytes).ok();
            Ok(existing.is_some_and(|b| b.collection_job == job.to_string()))
        }
    }
}

/// `PUT /tasks/{t}/collection_jobs/{c}`: 201 when the job is created (or repeated exactly).
async fn collection_put(
    State(leader): State<Arc<Leader>>,
    Path((task_id, job)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let shared = Arc::clone(&leader);
    let work = async move {
        collection_put_inner(&shared, &task_id, &job, &headers, &body).await?;
        Ok("")
    };
    common::counted(
        &leader.common,
        "collection_jobs_created",
        "collection_jobs_refused",
        work,
    )
    .await?;
    Ok(StatusCode::CREATED)
}

async fn collection_put_inner(
    leader: &Arc<Leader>,
    task_id: &str,
    job: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let task_id: TaskId = request::path_id(task_id, None, "task ID")?;
    let lt = leader.task(&task_id)?;
    let task = &lt.task;
    request::check_peer(&lt.task, headers, "collector")?;
    let job_id: CollectionJobId = request::path_id(job, None, "collection job ID")?;
    let collection_request: CollectionReq<TimeInterval> =
        request::decode_prio3_request(headers, body, &task_id, "collection request")?;
    let interval = *collection_request.query().batch_interval();
    request::check_batch(task, &interval)?;
    let request_digest = hex(&Sha256::digest(body));
    let (start, end) = bounds(&interval);
    if check_collectable(lt, &job_id, &request_digest, start, end)? {
        return Ok(());
    }
    let record = CollectionRecord {
        start,
        duration: end - start,
        request: request_digest,
        state: CollectionState::Pending,
    };
    let key = collection_key(&task_id, &job_id);
    leader
        .common
        .store
        .put(
            &key,
            serde_json::to_vec(&record).map_err(anyhow::Error::from)?,
        )
        .await?;
    if !claim_batch(&leader.common, task, &interval, &job_id).await? {
        leader.common.store.delete(&key).await?;
        return Err(collected_once(task));
    }
    {
        let mut state = lt.state.lock().expect("state lock");
        state.collected.insert(start, end);
        state.collections.insert(job_id, record);
    }
    leader.wake_collection.notify_one();
    Ok(())
}

/// `batchQueriedTooManyTimes`.
fn collected_once(task: &Task) -> ApiError {
    ApiError::problem(
        DapProblemType::BatchQueriedTooManyTimes,
        Some(&task.id),
        "this batch has been collected; a batch is collected once",
    )
}

/// Whether a new collection job may consume `[start, end)`, under the state lock: `true` if
/// this very job exists already (a repeat, answered as created), `false` if it may; an error
/// for another request under the job's ID, a batch collected or overlapping one, or fewer
/// reports than the minimum batch size.
fn check_collectable(
    lt: &LeaderTask,
    job_id: &CollectionJobId,
    request_digest: &str,
    start: u64,
    end: u64,
) -> Result<bool, ApiError> {
    let task = &lt.task;
    let state = lt.state.lock().expect("state lock");
    if let Some(existing) = state.collections.get(job_id) {
        return if existing.request == request_digest {
            Ok(true)
        } else {
            Err(ApiError::Status(
                StatusCode::CONFLICT,
                "a collection job with this ID exists with another request".into(),
            ))
        };
    }
    for (s, e) in &state.collected {
        if (*s, *e) == (start, end) {
            return Err(collected_once(task));
        }
        if overlaps((*s, *e), (start, end)) {
            return Err(ApiError::problem(
                DapProblemType::BatchOverlap,
                Some(&task.id),
                "the interval overlaps a batch that has been collected",
            ));
        }
    }
    let reports = state.aggregated.count_in(start, end) + state.pending_in(start, end);
    if reports < task.min_batch_size {
        return Err(ApiError::problem(
            DapProblemType::InvalidBatchSize,
            Some(&task.id),
            format!(
                "the batch holds {reports} reports, fewer than the minimum batch size {}; nothing was consumed",
                task.min_batch_size
            ),
        ));
    }
    Ok(false)
}

/// `POST /tasks/{t}/collection_jobs/{c}`: 202 while the job runs, 200 with the collection.
async fn collection_post(
    State(leader): State<Arc<Leader>>,
    Path((task_id, job)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let result = (|| {
        let task_id: TaskId = request::path_id(&task_id, None, "task ID")?;
        let lt = leader.task(&task_id)?;
        request::check_peer(&lt.task, &headers, "collector")?;
        let job_id: CollectionJobId = request::path_id(&job, None, "collection job ID")?;
        let state = lt.state.lock().expect("state lock");
        let record = state.collections.get(&job_id).ok_or_else(|| {
            ApiError::Status(StatusCode::NOT_FOUND, "no such collection job".into())
        })?;
        match &record.state {
            CollectionState::Pending => {
                let mut response = StatusCode::ACCEPTED.into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Ok(response)
            }
            CollectionState::Finished { collection } => {
                let body = URL_SAFE_NO_PAD
                    .decode(collection)
                    .map_err(|_| anyhow::anyhow!("a stored collection is not base64url"))?;
                let mut response = (StatusCode::OK, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(CollectionMsg::<TimeInterval>::MEDIA_TYPE),
                );
                Ok(response)
            }
            CollectionState::Failed { problem, detail } => Err(ApiError::problem(
                problem_type(problem.as_str()),
                Some(&task_id),
                detail.clone(),
            )),
            CollectionState::Deleted => Err(ApiError::Status(
                StatusCode::NOT_FOUND,
                "the collection job was deleted".into(),
            )),
        }
    })();
    result.map_err(|e| leader.common.refused("collection_polls_refused", e))
}

fn problem_type(name: &str) -> DapProblemType {
    format!("urn:ietf:params:ppm:dap:error:{name}")
        .parse()
        .unwrap_or(DapProblemType::InvalidMessage)
}

/// `DELETE /tasks/{t}/collection_jobs/{c}`: 204; the batch stays consumed.
async fn collection_delete(
    State(leader): State<Arc<Leader>>,
    Path((task_id, job)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let shared = Arc::clone(&leader);
    let result = common::detached(async move {
        let leader = shared;
        let task_id: TaskId = request::path_id(&task_id, None, "task ID")?;
        let lt = leader.task(&task_id)?;
        request::check_peer(&lt.task, &headers, "collector")?;
        let job_id: CollectionJobId = request::path_id(&job, None, "collection job ID")?;
        let record = {
            let mut state = lt.state.lock().expect("state lock");
            let record = state.collections.get_mut(&job_id).ok_or_else(|| {
                ApiError::Status(StatusCode::NOT_FOUND, "no such collection job".into())
            })?;
            record.state = CollectionState::Deleted;
            record.clone()
        };
        leader
            .common
            .store
            .put(
                &collection_key(&task_id, &job_id),
                serde_json::to_vec(&record).map_err(anyhow::Error::from)?,
            )
            .await?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await;
    result.map_err(|e| leader.common.refused("collection_deletes_refused", e))
}

async fn collection_loop(leader: Arc<Leader>) {
    loop {
        tokio::select! {
            _ = leader.wake_collection.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for lt in leader.tasks.values() {
            let ready: Vec<(CollectionJobId, CollectionRecord)> = {
                let state = lt.state.lock().expect("state lock");
                state
                    .collections
                    .iter()
                    .filter(|(_, r)| r.state == CollectionState::Pending)
                    .filter(|(_, r)| {
                        state.pending_in(r.start, r.start.saturating_add(r.duration)) == 0
                    })
                    .map(|(id, r)| (*id, r.clone()))
                    .collect()
            };
            for (job_id, record) in ready {
                let outcome = finish_collection(&leader, lt, &job_id, &record).await;
                let new_state = match outcome {
                    Ok(state) => state,
                    Err(e) => {
                        eprintln!(
                            "tally-server: collection job {job_id} of task {}: {e:#}; retrying",
                            lt.task.id
                        );
                        continue;
                    }
                };
                let label = match &new_state {
                    CollectionState::Finished { .. } => "finished".to_owned(),
                    CollectionState::Failed { problem, .. } => problem.clone(),
                    _ => "other".to_owned(),
                };
                leader.common.metrics.count("collection_jobs_ended", &label);
                let record = CollectionRecord {
                    state: new_state,
                    ..record
                };
                let stored = match serde_json::to_vec(&record) {
                    Ok(bytes) => {
                        leader
                            .common
                            .store
                            .put(&collection_key(&lt.task.id, &job_id), bytes)
                            .await
                    }
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = stored {
                    eprintln!("tally-server: storing collection job {job_id}: {e:#}; retrying");
                    continue;
                }
                let mut state = lt.state.lock().expect("state lock");
                if let Some(r) = state.collections.get_mut(&job_id)
                    && r.state == CollectionState::Pending
                {
                    *r = record;
                }
            }
        }
    }
}

/// Gets the helper's share and builds the collection, or the reason it fails. `Err` only for
/// what a retry can fix (the helper unreachable, storage).
async fn finish_collection(
    leader: &Arc<Leader>,
    lt: &LeaderTask,
    job_id: &CollectionJobId,
    record: &CollectionRecord,
) -> anyhow::Result<CollectionState> {
    let task = &lt.task;
    let interval = interval_of(record)?;
    let total = lt
        .state
        .lock()
        .expect("state lock")
        .aggregated
        .total(&interval, task.time_precision);
    if total.count < task.min_batch_size {
        return Ok(CollectionState::Failed {
            problem: "invalidBatchSize".into(),
            detail: format!(
                "{} reports were aggregated, fewer than the minimum batch size {}; nothing was released",
                total.count, task.min_batch_size
            ),
        });
    }
    let (share, (span_start, span_end)) = match (total.share, total.spanned) {
        (Some(share), Some(span)) => (share, span),
        _ => anyhow::bail!("a non-empty batch without a share"),
    };
    let agg_param = ().get_encoded()?;
    let selector = BatchSelector::<TimeInterval>::new_time_interval(interval);
    let request = AggregateShareReq::<TimeInterval>::new(
        selector.clone(),
        agg_param.clone(),
        total.count,
        total.checksum,
    )
    .get_encoded()?;
    let answer = ask_helper(
        leader,
        task,
        "POST",
        "aggregate_shares",
        AggregateShareReq::<TimeInterval>::MEDIA_TYPE,
        request,
    )
    .await?;
    let helper_share = match answer {
        HelperAnswer::Ok(body) => AggregateShareMsg::get_decoded(&body)
            .map_err(|e| anyhow::anyhow!("the helper's aggregate share does not decode: {e}"))?,
        HelperAnswer::Refused(status, problem)
            if status == 403 || problem.ends_with(":unrecognizedTask") =>
        {
            anyhow::bail!("the helper refused the aggregate share request: HTTP {status} {problem}")
        }
        HelperAnswer::Refused(status, problem) => {
            let name = problem.rsplit(':').next().unwrap_or("").to_owned();
            return Ok(CollectionState::Failed {
                problem: if name.is_empty() {
                    "invalidMessage".into()
                } else {
                    name
                },
                detail: format!(
                    "the helper refused its aggregate share (HTTP {status}); nothing was released"
                ),
            });
        }
    };
    let aad = AggregateShareAad::new(task.id, agg_param, selector).get_encoded()?;
    let info = draft::application_info(Label::AggregateShare, Role::Leader, Role::Collector);
    let leader_share = draft::seal(
        &task.collector_hpke_config,
        &info,
        &share.get_encoded()?,
        &aad,
    )?;
    let spanned = Interval::new(
        Time::from_seconds_since_epoch(span_start),
        DapDuration::from_seconds(span_end - span_start),
    )?;
    let collection = CollectionMsg::<TimeInterval>::new(
        PartialBatchSelector::new_time_interval(),
        total.count,
        spanned,
        leader_share,
        helper_share.encrypted_aggregate_share().clone(),
    )
    .get_encoded()?;
    let _ = job_id;
    Ok(CollectionState::Finished {
        collection: URL_SAFE_NO_PAD.encode(collection),
    })
}
