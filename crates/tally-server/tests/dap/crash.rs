//! kill -9 of the leader or the helper in the middle of uploads and aggregation, then a
//! restart: every accepted report is counted exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tally_dap::client::UploadOutcome;
use tally_dap::draft::messages::Encode;

use crate::collect;
use crate::support::{Deployment, Options, deploy, interval, layout, random_measurements, sum};

fn options() -> Options {
    Options {
        // Long vectors and small jobs: aggregation takes a while, so a kill lands inside it.
        layout: layout(300),
        min_batch_size: 10,
        leader_args: vec![
            "--job-size".into(),
            "8".into(),
            "--jobs-in-flight".into(),
            "1".into(),
        ],
        ..Options::default()
    }
}

/// Uploads in the background, into one time slot two precisions ago.
struct Uploads {
    slot: u64,
    measurements: Vec<Vec<u128>>,
    /// How many the leader has accepted so far.
    accepted: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// Every upload answered.
struct Uploaded {
    slot: u64,
    measurements: Vec<Vec<u128>>,
}

impl Uploads {
    /// Waits until every upload is answered.
    fn finish(self) -> Uploaded {
        self.thread.join().unwrap();
        Uploaded {
            slot: self.slot,
            measurements: self.measurements,
        }
    }
}

impl Uploaded {
    /// Collects the slot's batch: every measurement uploaded counted once, none twice.
    async fn assert_each_collected_once(&self, d: &Deployment) {
        let precision = d.config.time_precision;
        let collection = collect(d, interval(self.slot, precision, 1))
            .await
            .unwrap_or_else(|e| panic!("{e}{}", d.logs()));
        assert_eq!(collection.report_count(), self.measurements.len() as u64);
        assert_eq!(collection.aggregate_result(), &sum(&self.measurements));
    }
}

/// Starts uploading `count` random measurements in the background ([`upload_all`]).
fn start_uploading(d: &Deployment, count: usize) -> Uploads {
    let slot = d.slot_ago(2);
    let measurements = random_measurements(count, d.config.layout.len());
    let reports: Vec<Vec<u8>> = measurements
        .iter()
        .map(|m| d.report(m, slot).get_encoded().unwrap())
        .collect();
    let accepted = Arc::new(AtomicUsize::new(0));
    let thread = upload_all(d, reports, Arc::clone(&accepted));
    Uploads {
        slot,
        measurements,
        accepted,
        thread,
    }
}

/// Uploads every report from 3 threads, retrying each (the same bytes) until the leader
/// answers 2xx, as tally's uploader does; `accepted` counts answers.
fn upload_all(
    d: &Deployment,
    reports: Vec<Vec<u8>>,
    accepted: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let leader = d.config.leader.clone();
    let task = d.task_id();
    std::thread::spawn(move || {
        let reports = Arc::new(reports);
        let threads: Vec<_> = (0..3)
            .map(|t| {
                let reports = Arc::clone(&reports);
                let accepted = Arc::clone(&accepted);
                let leader = leader.clone();
                std::thread::spawn(move || {
                    let agent = tally_dap::client::agent(Duration::from_secs(10));
                    for report in reports.iter().skip(t).step_by(3) {
                        let deadline = Instant::now() + Duration::from_secs(120);
                        loop {
                            match tally_dap::client::upload_encoded(&agent, &leader, &task, report)
                            {
                                UploadOutcome::Accepted => break,
                                UploadOutcome::Retry { .. } => {
                                    assert!(
                                        Instant::now() < deadline,
                                        "the leader never came back"
                                    );
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                                refused => panic!("{refused:?}"),
                            }
                        }
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    })
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    tally_test_support::wait_for(Duration::from_secs(120), Duration::from_millis(10), || {
        if done() {
            Ok(())
        } else {
            Err(format!("timed out waiting for {what}"))
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_upload_and_mid_aggregation_loses_and_doubles_nothing() {
    let mut d = deploy(options());
    let uploads = start_uploading(&d, 150);

    let mut recovered = 0;
    wait_for("50 uploads", || {
        uploads.accepted.load(Ordering::SeqCst) >= 50
    });
    d.leader.kill9();
    std::thread::sleep(Duration::from_millis(300));
    d.leader.start();
    recovered += d.leader.metric("recovered_reports", "");
    let uploads = uploads.finish();
    // Every upload answered; aggregation is under way. Kill again, twice.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(150));
        d.leader.kill9();
        d.leader.start();
        recovered += d.leader.metric("recovered_reports", "");
    }
    assert!(
        recovered > 0,
        "no kill hit unaggregated reports; the test proves nothing"
    );

    uploads.assert_each_collected_once(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_helper_mid_aggregation_loses_and_doubles_nothing() {
    let mut d = deploy(options());
    let uploads = start_uploading(&d, 120);
    let mut kills = 0;
    for _ in 0..3 {
        wait_for("the helper to be busy", || {
            d.helper.metric("aggregation_jobs", "") > 0
        });
        std::thread::sleep(Duration::from_millis(100));
        d.helper.kill9();
        kills += 1;
        std::thread::sleep(Duration::from_millis(300));
        d.helper.start();
    }
    let uploads = uploads.finish();
    assert_eq!(kills, 3);
    assert!(
        d.leader.metric("aggregation_job_retries", "") > 0,
        "the leader never found the helper gone mid-job; the test proves nothing"
    );
    uploads.assert_each_collected_once(&d).await;
}

#[test]
fn replays_are_refused_after_a_restart_too() {
    let mut d = deploy(Options::default());
    let len = d.config.layout.len();
    let slot = d.slot_ago(2);
    let aggregated = d.report(&vec![1; len], slot);
    let waiting = d.report(&vec![1; len], slot);
    let others = [d.report(&vec![0; len], slot), d.report(&vec![0; len], slot)];
    assert_eq!(
        d.put_report(&aggregated.get_encoded().unwrap()),
        (200, None)
    );
    d.wait_aggregated(1);
    // Stop the helper, so that the second report is stored but not aggregated when the leader
    // is killed: the leader must know both IDs after its restart, from a job result and from a
    // segment.
    d.helper.kill9();
    assert_eq!(d.put_report(&waiting.get_encoded().unwrap()), (200, None));
    d.leader.kill9();
    d.leader.start();
    for (original, other) in [&aggregated, &waiting].into_iter().zip(&others) {
        let replay = tally_dap::draft::messages::Report::new(
            original.metadata().clone(),
            other.public_share().to_vec(),
            other.leader_encrypted_input_share().clone(),
            other.helper_encrypted_input_share().clone(),
        );
        assert_eq!(
            d.put_report(&replay.get_encoded().unwrap()),
            (400, Some("reportRejected".into()))
        );
        assert_eq!(d.put_report(&original.get_encoded().unwrap()), (200, None));
    }
    assert_eq!(d.leader.metric("uploads_accepted", "duplicate"), 2);
    d.helper.start();
    d.wait_aggregated(1);
}
