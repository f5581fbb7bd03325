//! Compaction: job records past the replay horizon are deleted, so that a restart reads only
//! the horizon's records, and replays inside the horizon are still refused after it. Time moves
//! through `TALLY_NOW` in the aggregators' environment.

use tally_dap::draft::messages::{
    AggregationJobId, AggregationJobResp, Decode, Encode, PrepareError, PrepareStepResult, Report,
};

use crate::bad_input::{as_leader, put_job};
use crate::support::{Aggregator, Options, deploy, now};

const DAY: u64 = 86_400;

/// The objects in `dir` of a task in an aggregator's (local) store.
fn objects(a: &Aggregator, task: &str, dir: &str) -> Vec<String> {
    let path = std::path::Path::new(&a.store)
        .join("tasks")
        .join(task)
        .join(dir);
    let mut names: Vec<String> = match std::fs::read_dir(&path) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => vec![],
    };
    names.sort();
    names
}

/// Restarts `a` with its clock at `at` (seconds since the epoch).
fn restart_at(a: &mut Aggregator, at: u64) {
    assert!(a.stop().success(), "{} did not stop cleanly", a.role);
    let rfc3339 = time::OffsetDateTime::from_unix_timestamp(at as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    a.env.retain(|(k, _)| k != "TALLY_NOW");
    a.env.push(("TALLY_NOW".into(), rfc3339));
    a.start();
}

/// A report like `original` (same ID and time) with other content: a replay.
fn replay_of(original: &Report, other: &Report) -> Vec<u8> {
    Report::new(
        original.metadata().clone(),
        other.public_share().to_vec(),
        other.leader_encrypted_input_share().clone(),
        other.helper_encrypted_input_share().clone(),
    )
    .get_encoded()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_compaction_still_refuses_replays_inside_the_horizon() {
    let mut d = deploy(Options::default());
    let task = d.task_id().to_string();
    let len = d.config.layout.len();
    let precision = d.config.time_precision;
    let start = now();
    // 30 days old: inside the 35-day horizon now, past it ten days from now.
    let old = d.report(&vec![1; len], start - 30 * DAY);
    let recent = d.report(&vec![0; len], start - 2 * precision);
    assert_eq!(d.put_report(&old.get_encoded().unwrap()), (200, None));
    d.wait_aggregated(1);
    assert_eq!(d.put_report(&recent.get_encoded().unwrap()), (200, None));
    d.wait_aggregated(2);
    assert_eq!(objects(&d.leader, &task, "jobs").len(), 2, "{}", d.logs());
    assert_eq!(objects(&d.helper, &task, "agg_jobs").len(), 2);

    // Ten days later: the old report's job records are past the horizon and deleted at start.
    let later = start + 10 * DAY;
    restart_at(&mut d.helper, later);
    restart_at(&mut d.leader, later);
    assert_eq!(
        d.leader.metric("job_results_deleted", ""),
        1,
        "{}",
        d.logs()
    );
    assert_eq!(d.helper.metric("job_records_deleted", ""), 1);
    assert_eq!(objects(&d.leader, &task, "jobs").len(), 1);
    assert_eq!(objects(&d.helper, &task, "agg_jobs").len(), 1);

    // The next restart reads only the recent records.
    restart_at(&mut d.helper, later);
    restart_at(&mut d.leader, later);
    assert_eq!(d.leader.metric("recovered_job_results", ""), 1);
    assert_eq!(d.helper.metric("recovered_job_records", ""), 1);

    // Inside the horizon, replays are still refused: at the leader another report under the
    // recent report's ID is refused, the same report again is a duplicate counted once; the
    // old report is refused as too old.
    let other = d.report(&vec![1; len], start - 2 * precision);
    assert_eq!(
        d.put_report(&replay_of(&recent, &other)),
        (400, Some("reportRejected".into()))
    );
    assert_eq!(d.put_report(&recent.get_encoded().unwrap()), (200, None));
    assert_eq!(d.leader.metric("uploads_accepted", "duplicate"), 1);
    assert_eq!(
        d.put_report(&old.get_encoded().unwrap()),
        (400, Some("reportRejected".into()))
    );
    // At the helper, the recent report's share in a new job is a replay; a fresh report in the
    // same job is prepared.
    let leader = as_leader(&d).await;
    let fresh = d.report(&vec![1; len], start - 2 * precision);
    let job: AggregationJobId = rand::random();
    let (status, body) = put_job(
        &d,
        &job,
        Some(&leader.token()),
        &leader.job(vec![leader.init(&recent), leader.init(&fresh)]),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let resp = AggregationJobResp::get_decoded(&body).unwrap();
    assert_eq!(
        resp.prepare_resps()[0].result(),
        &PrepareStepResult::Reject(PrepareError::ReportReplayed)
    );
    assert!(matches!(
        resp.prepare_resps()[1].result(),
        PrepareStepResult::Continue { .. }
    ));
}
