//! Bad input of every message type: each refused with DAP's problem type (or, for a report
//! that only preparation can judge, rejected with DAP's prepare error), counted, and nothing
//! else affected: the honest reports around them are collected exactly.

use std::time::Duration;

use prio::field::{Field128, FieldElement};
use prio::topology::ping_pong::PingPongTopology;
use prio::vdaf::Client as _;
use tally_dap::draft::messages::{
    AggregateShareReq, AggregationJobId, AggregationJobInitializeReq, AggregationJobResp,
    BatchSelector, CollectionReq, Decode, Encode, HpkeConfig, InputShareAad, PartialBatchSelector,
    PlaintextInputShare, PrepareError, PrepareInit, PrepareStepResult, Query, Report, ReportId,
    ReportIdChecksum, ReportMetadata, ReportShare, Role, TaskId, Time, TimeInterval,
};
use tally_dap::draft::{self, HpkeKeypair, Label};
use tally_dap_aggregator::task::TaskFile;

use crate::collect;
use crate::support::{self, Deployment, Options, deploy, deploy_min_batch, interval, now, raw};

/// A report built by hand, as a misbehaving client would: `tamper` may change the leader's
/// encoded input share before it is sealed.
fn forged_report(
    d: &Deployment,
    measurement: &[u128],
    time: u64,
    leader: &HpkeConfig,
    helper: &HpkeConfig,
    tamper: impl Fn(&mut [u8]),
) -> Report {
    let vdaf = draft::vdaf(&d.config.vdaf).unwrap();
    let id: ReportId = rand::random();
    let (public_share, shares) = vdaf.shard(&measurement.to_vec(), id.as_ref()).unwrap();
    let metadata = ReportMetadata::new(id, Time::from_seconds_since_epoch(time));
    let public_share = public_share.get_encoded().unwrap();
    let aad = InputShareAad::new(d.task_id(), metadata.clone(), public_share.clone())
        .get_encoded()
        .unwrap();
    let mut sealed = Vec::new();
    for (i, ((config, role), share)) in [(leader, Role::Leader), (helper, Role::Helper)]
        .into_iter()
        .zip(shares)
        .enumerate()
    {
        let mut payload = share.get_encoded().unwrap();
        if i == 0 {
            tamper(&mut payload);
        }
        let plaintext = PlaintextInputShare::new(vec![], payload)
            .get_encoded()
            .unwrap();
        let info = draft::application_info(Label::InputShare, Role::Client, role);
        sealed.push(draft::seal(config, &info, &plaintext, &aad).unwrap());
    }
    let helper_share = sealed.pop().unwrap();
    Report::new(metadata, public_share, sealed.pop().unwrap(), helper_share)
}

/// An HTTP status and DAP problem type.
type Answer = (u16, Option<String>);

/// Adds 1 to the first entry of the leader's measurement share: the client sends 2 where the
/// layout allows only 0 or 1.
fn two_in_a_one_bit_slot(payload: &mut [u8]) {
    let first = Field128::get_decoded(&payload[..16]).unwrap() + Field128::one();
    payload[..16].copy_from_slice(&first.get_encoded().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_counted_and_harmless() {
    let d = deploy_min_batch(3);
    let precision = d.config.time_precision;
    let len = d.config.layout.len();
    let slot = d.slot_ago(2);
    let (leader_config, helper_config) = d.hpke_configs();
    let honest: Vec<Vec<u128>> = support::random_measurements(4, len);
    let mut first = None;
    for m in &honest {
        let report = d.report(m, slot + 5);
        assert_eq!(d.put_report(&report.get_encoded().unwrap()), (200, None));
        first.get_or_insert(report);
    }
    let first = first.unwrap();
    let first_bytes = first.get_encoded().unwrap();
    let task = d.task_id();

    let mut cases: Vec<(&str, Answer, &str)> = Vec::new();
    let mut check = |what: &'static str, got: Answer, want: &'static str| {
        cases.push((what, got, want));
    };
    let other_task: TaskId = rand::random();
    check(
        "unknown task",
        raw(
            &format!("{}tasks/{other_task}/reports", d.leader.url()),
            "PUT",
            Report::MEDIA_TYPE,
            None,
            &first_bytes,
        ),
        "unrecognizedTask",
    );
    check(
        "task ID that is not one",
        raw(
            &format!("{}tasks/not-a-task/reports", d.leader.url()),
            "PUT",
            Report::MEDIA_TYPE,
            None,
            &first_bytes,
        ),
        "invalidMessage",
    );
    check(
        "wrong media type",
        d.raw(
            "PUT",
            &format!("tasks/{task}/reports"),
            "application/json",
            None,
            &first_bytes,
        ),
        "invalidMessage",
    );
    check(
        "garbage",
        d.put_report(b"\x00\x01 not a report"),
        "invalidMessage",
    );
    check(
        "truncated",
        d.put_report(&first_bytes[..first_bytes.len() - 9]),
        "invalidMessage",
    );
    check(
        "trailing bytes",
        d.put_report(&[first_bytes.as_slice(), b"x"].concat()),
        "invalidMessage",
    );
    let future = d.report(&honest[0], now() + 3 * 3600);
    check(
        "clock skew: from the future",
        d.put_report(&future.get_encoded().unwrap()),
        "reportTooEarly",
    );
    let old = d.report(&honest[0], now() - 40 * 86_400);
    check(
        "older than the replay horizon",
        d.put_report(&old.get_encoded().unwrap()),
        "reportRejected",
    );
    let stranger = HpkeKeypair::generate(u8::from(*leader_config.id()).wrapping_add(100));
    let outdated = forged_report(
        &d,
        &honest[0],
        slot,
        &stranger.config,
        &helper_config,
        |_| {},
    );
    check(
        "sealed to an unknown leader key",
        d.put_report(&outdated.get_encoded().unwrap()),
        "outdatedConfig",
    );
    let bad_public = Report::new(
        first.metadata().clone(),
        b"not a public share".to_vec(),
        first.leader_encrypted_input_share().clone(),
        first.helper_encrypted_input_share().clone(),
    );
    check(
        "public share that does not decode",
        d.put_report(&bad_public.get_encoded().unwrap()),
        "invalidMessage",
    );
    let other = d.report(&honest[1], slot + 5);
    let replay = Report::new(
        first.metadata().clone(),
        other.public_share().to_vec(),
        other.leader_encrypted_input_share().clone(),
        other.helper_encrypted_input_share().clone(),
    );
    check(
        "a known report ID with other content",
        d.put_report(&replay.get_encoded().unwrap()),
        "reportRejected",
    );
    check(
        "HPKE config for a task ID that is not one",
        raw(
            &format!("{}hpke_config?task_id=nope", d.leader.url()),
            "GET",
            "",
            None,
            b"",
        ),
        "invalidMessage",
    );
    check(
        "HPKE config for an unknown task",
        raw(
            &format!("{}hpke_config?task_id={other_task}", d.helper.url()),
            "GET",
            "",
            None,
            b"",
        ),
        "unrecognizedTask",
    );
    for (what, got, want) in &cases {
        assert_eq!((got.0, got.1.as_deref()), (400, Some(*want)), "{what}");
    }
    // A client's retry of the very same report is not an error, and is counted once.
    assert_eq!(d.put_report(&first_bytes), (200, None));

    // Reports only preparation can judge: accepted at upload, rejected when prepared.
    let two = forged_report(
        &d,
        &vec![1; len],
        slot,
        &leader_config,
        &helper_config,
        two_in_a_one_bit_slot,
    );
    assert_eq!(d.put_report(&two.get_encoded().unwrap()), (200, None));
    let unknown_helper_key = forged_report(
        &d,
        &honest[0],
        slot,
        &leader_config,
        &stranger.config,
        |_| {},
    );
    assert_eq!(
        d.put_report(&unknown_helper_key.get_encoded().unwrap()),
        (200, None)
    );
    let mut corrupt = forged_report(&d, &honest[0], slot, &leader_config, &helper_config, |_| {});
    corrupt = {
        let ct = corrupt.leader_encrypted_input_share();
        let mut payload = ct.payload().to_vec();
        payload[0] ^= 1;
        Report::new(
            corrupt.metadata().clone(),
            corrupt.public_share().to_vec(),
            tally_dap::draft::messages::HpkeCiphertext::new(
                *ct.config_id(),
                ct.encapsulated_key().to_vec(),
                payload,
            ),
            corrupt.helper_encrypted_input_share().clone(),
        )
    };
    assert_eq!(d.put_report(&corrupt.get_encoded().unwrap()), (200, None));

    d.wait_aggregated(7);
    let leader_refused = |reason: &str| d.leader.metric("uploads_refused", reason);
    assert_eq!(leader_refused("unrecognizedTask"), 1);
    assert_eq!(leader_refused("invalidMessage"), 6);
    assert_eq!(leader_refused("reportTooEarly"), 1);
    assert_eq!(leader_refused("reportRejected"), 2);
    assert_eq!(leader_refused("outdatedConfig"), 1);
    assert_eq!(d.leader.metric("uploads_accepted", "duplicate"), 1);
    assert_eq!(d.leader.metric("reports_rejected", "vdaf_prep_error"), 1);
    assert_eq!(
        d.leader
            .metric("reports_rejected", "hpke_unknown_config_id"),
        1
    );
    assert_eq!(d.leader.metric("reports_rejected", "hpke_decrypt_error"), 1);
    assert_eq!(d.helper.metric("reports_rejected", "vdaf_prep_error"), 1);
    assert_eq!(
        d.helper
            .metric("reports_rejected", "hpke_unknown_config_id"),
        1
    );

    // Nothing else affected: the honest reports, each once.
    let collection = collect(&d, interval(slot, precision, 1)).await.unwrap();
    assert_eq!(collection.report_count(), 4);
    assert_eq!(collection.aggregate_result(), &support::sum(&honest));
}

#[test]
fn bad_collection_requests_are_refused_with_dap_problems() {
    let d = deploy(Options::default());
    let precision = d.config.time_precision;
    let task = d.task_id();
    let token = d.credential.token.clone();
    let slot = d.slot_ago(2);
    let request = |start: u64, duration: u64| {
        CollectionReq::<TimeInterval>::new(
            Query::new_time_interval(
                tally_dap::draft::messages::Interval::new(
                    Time::from_seconds_since_epoch(start),
                    tally_dap::draft::messages::Duration::from_seconds(duration),
                )
                .unwrap(),
            ),
            vec![],
        )
        .get_encoded()
        .unwrap()
    };
    let job = |id: &str| format!("tasks/{task}/collection_jobs/{id}");
    let job_id = "AAAAAAAAAAAAAAAAAAAAAA";
    let media = CollectionReq::<TimeInterval>::MEDIA_TYPE;
    let good = request(slot, precision);
    type Expected = (u16, Option<&'static str>);
    let cases: Vec<(&str, Answer, Expected)> = vec![
        (
            "no token",
            d.raw("PUT", &job(job_id), media, None, &good),
            (403, Some("unauthorizedRequest")),
        ),
        (
            "wrong token",
            d.raw("PUT", &job(job_id), media, Some("wrong-token"), &good),
            (403, Some("unauthorizedRequest")),
        ),
        (
            "garbage",
            d.raw("PUT", &job(job_id), media, Some(&token), b"junk"),
            (400, Some("invalidMessage")),
        ),
        (
            "wrong media type",
            d.raw("PUT", &job(job_id), "application/json", Some(&token), &good),
            (400, Some("invalidMessage")),
        ),
        (
            "unaligned interval",
            d.raw(
                "PUT",
                &job(job_id),
                media,
                Some(&token),
                &request(slot + 1, precision),
            ),
            (400, Some("batchInvalid")),
        ),
        (
            "shorter than the precision",
            d.raw(
                "PUT",
                &job(job_id),
                media,
                Some(&token),
                &request(slot, precision / 2),
            ),
            (400, Some("batchInvalid")),
        ),
        (
            "an aggregation parameter",
            d.raw("PUT", &job(job_id), media, Some(&token), &{
                let mut r = good.clone();
                let n = r.len();
                r[n - 1] = 1;
                r.push(0);
                r
            }),
            (400, Some("invalidMessage")),
        ),
        (
            "job ID that is not one",
            d.raw("PUT", &job("short"), media, Some(&token), &good),
            (400, Some("invalidMessage")),
        ),
        (
            "unknown job",
            d.raw("POST", &job(job_id), "", Some(&token), b""),
            (404, None),
        ),
        (
            "unknown job, deleted",
            d.raw("DELETE", &job(job_id), "", Some(&token), b""),
            (404, None),
        ),
        (
            "empty batch",
            d.raw("PUT", &job(job_id), media, Some(&token), &good),
            (400, Some("invalidBatchSize")),
        ),
    ];
    for (what, got, want) in cases {
        assert_eq!((got.0, got.1.as_deref()), want, "{what}");
    }
    assert_eq!(
        d.leader
            .metric("collection_jobs_refused", "unauthorizedRequest"),
        2
    );
    assert_eq!(
        d.leader.metric("collection_jobs_refused", "batchInvalid"),
        2
    );
}

/// The leader's secrets, read from its store, to speak to the helper as the leader would.
pub(crate) struct AsLeader {
    task: tally_dap_aggregator::task::Task,
    keys: tally_dap_aggregator::keys::KeySet,
}

pub(crate) async fn as_leader(d: &Deployment) -> AsLeader {
    let store = crate::support::open_store(&d.leader);
    let file: TaskFile = serde_json::from_slice(
        &store
            .get(&format!("tasks/{}/task.json", d.task_id()), 1 << 20)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    AsLeader {
        task: file.parse().unwrap(),
        keys: tally_dap_aggregator::keys::load(&store).await.unwrap(),
    }
}

impl AsLeader {
    pub(crate) fn init(&self, report: &Report) -> PrepareInit {
        let (public, input) = tally_dap_aggregator::prep::open_share(
            &self.task,
            &self.keys,
            now(),
            Role::Leader,
            report.metadata(),
            report.public_share(),
            report.leader_encrypted_input_share(),
        )
        .unwrap();
        let (_, message) = self
            .task
            .vdaf
            .leader_initialized(
                &self.task.verify_key,
                &(),
                report.metadata().id().as_ref(),
                &public,
                &input,
            )
            .unwrap();
        PrepareInit::new(
            ReportShare::new(
                report.metadata().clone(),
                report.public_share().to_vec(),
                report.helper_encrypted_input_share().clone(),
            ),
            message,
        )
    }

    pub(crate) fn job(&self, inits: Vec<PrepareInit>) -> Vec<u8> {
        AggregationJobInitializeReq::<TimeInterval>::new(
            vec![],
            PartialBatchSelector::new_time_interval(),
            inits,
        )
        .get_encoded()
        .unwrap()
    }

    pub(crate) fn token(&self) -> String {
        self.task.helper.as_ref().unwrap().1.clone()
    }
}

pub(crate) fn put_job(
    d: &Deployment,
    job: &AggregationJobId,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let url = format!(
        "{}tasks/{}/aggregation_jobs/{job}",
        d.helper.url(),
        d.task_id()
    );
    let agent = tally_dap::client::agent(Duration::from_secs(30));
    let mut request = ureq::http::Request::builder()
        .method("PUT")
        .uri(url)
        .header(
            "content-type",
            AggregationJobInitializeReq::<TimeInterval>::MEDIA_TYPE,
        );
    if let Some(token) = token {
        request = request.header("dap-auth-token", token);
    }
    let mut response = agent.run(request.body(body.to_vec()).unwrap()).unwrap();
    (
        response.status().as_u16(),
        response.body_mut().read_to_vec().unwrap(),
    )
}

/// Sends a job and closes the connection at once, as a leader killed mid-request does.
fn hang_up_after_sending(d: &Deployment, job: &AggregationJobId, token: &str, body: &[u8]) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", d.helper.port)).unwrap();
    let head = format!(
        "PUT /tasks/{}/aggregation_jobs/{job} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {}\r\ndap-auth-token: {token}\r\ncontent-length: {}\r\n\r\n",
        d.task_id(),
        AggregationJobInitializeReq::<TimeInterval>::MEDIA_TYPE,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
    // Let the helper start on it, then hang up.
    std::thread::sleep(Duration::from_millis(20));
    drop(stream);
}

fn problem(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    value["type"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_refuses_bad_jobs_and_replays_and_answers_a_repeat_from_its_record() {
    let d = deploy_min_batch(2);
    let leader = as_leader(&d).await;
    let token = leader.token();
    let precision = d.config.time_precision;
    let len = d.config.layout.len();
    let slot = d.slot_ago(2);
    let a = d.report(&vec![1; len], slot);
    let b = d.report(&vec![0; len], slot);

    let job1: AggregationJobId = rand::random();
    let body1 = leader.job(vec![leader.init(&a), leader.init(&b)]);
    let (status, _) = put_job(&d, &job1, None, &body1);
    assert_eq!(status, 403);
    let (status, body) = put_job(&d, &job1, Some("not the token"), &body1);
    assert_eq!(
        (status, problem(&body).as_str()),
        (403, "unauthorizedRequest")
    );
    let (status, body) = put_job(&d, &job1, Some(&token), b"junk");
    assert_eq!((status, problem(&body).as_str()), (400, "invalidMessage"));
    let twice = leader.job(vec![leader.init(&a), leader.init(&a)]);
    let (status, body) = put_job(&d, &rand::random(), Some(&token), &twice);
    assert_eq!((status, problem(&body).as_str()), (400, "invalidMessage"));

    let (status, first) = put_job(&d, &job1, Some(&token), &body1);
    assert_eq!(status, 200);
    let resp = AggregationJobResp::get_decoded(&first).unwrap();
    assert!(
        resp.prepare_resps()
            .iter()
            .all(|r| matches!(r.result(), PrepareStepResult::Continue { .. }))
    );
    // The leader sending the same job again (after a crash) gets the same answer, and the
    // reports are not counted twice; the same job ID with other content is a conflict.
    let (status, repeat) = put_job(&d, &job1, Some(&token), &body1);
    assert_eq!((status, repeat), (200, first));
    let (status, _) = put_job(&d, &job1, Some(&token), &leader.job(vec![leader.init(&b)]));
    assert_eq!(status, 409);
    // A report from an earlier job in a new one is a replay.
    let c = d.report(&vec![1; len], slot);
    let (status, body) = put_job(
        &d,
        &rand::random(),
        Some(&token),
        &leader.job(vec![leader.init(&c), leader.init(&a)]),
    );
    assert_eq!(status, 200);
    let results: Vec<_> = AggregationJobResp::get_decoded(&body)
        .unwrap()
        .prepare_resps()
        .iter()
        .map(|r| r.result().clone())
        .collect();
    assert!(matches!(results[0], PrepareStepResult::Continue { .. }));
    assert_eq!(
        results[1],
        PrepareStepResult::Reject(PrepareError::ReportReplayed)
    );
    assert_eq!(d.helper.metric("reports_aggregated", ""), 3);
    assert_eq!(d.helper.metric("reports_rejected", "report_replayed"), 1);
    assert_eq!(d.helper.metric("aggregation_jobs_repeated", ""), 1);

    // A leader that hangs up while the helper works on its job (it was killed) sends the job
    // again after its restart, and gets the answer: the job was not left half done.
    let many: Vec<_> = (0..40)
        .map(|_| leader.init(&d.report(&vec![1; len], slot)))
        .collect();
    let job2: AggregationJobId = rand::random();
    let body2 = leader.job(many);
    hang_up_after_sending(&d, &job2, &token, &body2);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = put_job(&d, &job2, Some(&token), &body2);
        if status == 200 {
            let resp = AggregationJobResp::get_decoded(&body).unwrap();
            assert!(
                resp.prepare_resps()
                    .iter()
                    .all(|r| matches!(r.result(), PrepareStepResult::Continue { .. }))
            );
            break;
        }
        assert_eq!(
            status, 503,
            "a job being processed is 503 (retry), nothing else"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned job never finished"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.helper.metric("reports_aggregated", ""), 43);

    // Aggregate share requests: unauthenticated, malformed, or disagreeing with the helper.
    let shares_url = format!("{}tasks/{}/aggregate_shares", d.helper.url(), d.task_id());
    let media = AggregateShareReq::<TimeInterval>::MEDIA_TYPE;
    let share_request = |count: u64| {
        AggregateShareReq::<TimeInterval>::new(
            BatchSelector::new_time_interval(interval(slot, precision, 1)),
            vec![],
            count,
            ReportIdChecksum::default(),
        )
        .get_encoded()
        .unwrap()
    };
    assert_eq!(
        raw(&shares_url, "POST", media, None, &share_request(3)),
        (403, Some("unauthorizedRequest".into()))
    );
    assert_eq!(
        raw(&shares_url, "POST", media, Some(&token), b"junk"),
        (400, Some("invalidMessage".into()))
    );
    assert_eq!(
        raw(&shares_url, "POST", media, Some(&token), &share_request(3)),
        (400, Some("batchMismatch".into()))
    );
    assert_eq!(d.helper.metric("aggregate_shares_released", ""), 0);
    let unknown: TaskId = rand::random();
    assert_eq!(
        raw(
            &format!("{}tasks/{unknown}/aggregate_shares", d.helper.url()),
            "POST",
            media,
            Some(&token),
            &share_request(3)
        ),
        (400, Some("unrecognizedTask".into()))
    );
}
