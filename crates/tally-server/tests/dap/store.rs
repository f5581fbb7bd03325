//! The aggregators on the collector's storage layer: one process serves a store (a second one
//! is refused, on the local disk and on S3, or stands by with `--standby` and takes over when
//! the first stops), and leader and helper on S3 (moto) counting every report once across a
//! kill -9.

use std::path::Path;
use std::time::{Duration, Instant};

use tally_dap::client::UploadOutcome;
use tally_dap::draft::messages::{Encode, Interval};

use crate::collect;
use crate::support::{Deployment, Options, deploy, interval, now, random_measurements, sum};

/// A second process on either store is refused at once, naming the first; the store can
/// still be administered (`rotate-key` needs no lease); after a kill -9 the next process
/// starts at once (the kernel released the lock).
#[test]
fn a_second_process_on_one_local_store_is_refused() {
    let mut d = deploy(Options::default());
    for aggregator in [&d.leader, &d.helper] {
        let began = Instant::now();
        let (status, said) = aggregator.second_process(Duration::from_secs(10));
        assert!(!status.success(), "{said}");
        let holder = format!(
            "is in use by tally-server dap {}, pid {}",
            aggregator.role,
            aggregator.pid()
        );
        assert!(
            said.contains(&holder) && said.contains("one process per store"),
            "{said}"
        );
        assert!(began.elapsed() < Duration::from_secs(5));
    }
    crate::support::run_with(&["dap", "rotate-key", "--store", &d.leader.store], &[]);
    d.leader.kill9();
    let began = Instant::now();
    d.leader.start();
    assert!(began.elapsed() < Duration::from_secs(5));
    // And it serves: a report is accepted.
    let len = d.config.layout.len();
    let report = d.report(&vec![1; len], now() - 2 * d.config.time_precision);
    assert_eq!(d.put_report(&report.get_encoded().unwrap()), (200, None));
}

/// A standby of each aggregator (`--standby`, same store, same port) waits without listening
/// while the serving process runs; when that one is killed, the standby takes over at once
/// (the kernel released the lock), and every report, uploaded before and after each takeover,
/// is counted exactly once. A standby stopped with SIGTERM while it waits exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_a_killed_aggregator_and_every_report_counts_once() {
    let mut d = deploy(Options::default());
    let precision = d.config.time_precision;
    let slot = d.slot_ago(2);
    let measurements = random_measurements(30, d.config.layout.len());
    let mut leader_standby = d.leader.start_standby();
    let mut helper_standby = d.helper.start_standby();
    upload(&d, &measurements[..10], slot + 5);
    d.wait_aggregated(10);
    tally_test_support::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        if d.logs().matches("standing by").count() == 2 {
            Ok(())
        } else {
            Err(format!(
                "the standbys did not say they stand by: {}",
                d.logs()
            ))
        }
    });
    assert!(leader_standby.is_standing_by() && helper_standby.is_standing_by());

    // The helper dies; its standby serves the next jobs, and the leader's too.
    d.helper.kill9();
    d.helper.adopt(helper_standby);
    upload(&d, &measurements[10..20], slot + 5);
    d.wait_aggregated(20);
    assert!(leader_standby.is_standing_by());

    d.leader.kill9();
    let began = Instant::now();
    d.leader.adopt(leader_standby);
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    upload(&d, &measurements[20..], slot + 5);
    d.wait_aggregated(10);

    collects_exactly(&d, interval(slot, precision, 1), &measurements).await;

    // A standby beside the new leader stops cleanly on SIGTERM; the lease stays the leader's.
    let mut idle = d.leader.start_standby();
    std::thread::sleep(Duration::from_millis(500));
    assert!(idle.is_standing_by());
    let status = idle.stop();
    assert!(status.success(), "{status}{}", d.logs());
    assert!(
        d.logs().contains("stopped while standing by"),
        "{}",
        d.logs()
    );
    let lease = std::fs::read_to_string(Path::new(&d.leader.store).join("lease")).unwrap();
    assert!(
        lease.contains(&format!("leader, pid {}", d.leader.pid())),
        "{lease}"
    );
}

/// The unmodified collector collects `interval`: exactly `measurements`, each once.
async fn collects_exactly(d: &Deployment, interval: Interval, measurements: &[Vec<u128>]) {
    let collection = collect(d, interval)
        .await
        .unwrap_or_else(|e| panic!("{e}{}", d.logs()));
    assert_eq!(collection.report_count(), measurements.len() as u64);
    assert_eq!(collection.aggregate_result(), &sum(measurements));
}

fn upload(d: &Deployment, measurements: &[Vec<u128>], time: u64) {
    let agent = tally_dap::client::agent(Duration::from_secs(10));
    for m in measurements {
        let report = d.report(m, time);
        let outcome =
            tally_dap::client::upload(&agent, &d.config.leader, &d.task_id(), &report).unwrap();
        assert_eq!(outcome, UploadOutcome::Accepted);
    }
}

/// Leader and helper on S3 (moto): the unmodified collector gets the exact sum; a kill -9 of
/// the leader loses and doubles nothing (its standby waits for the dead process's lease to
/// lapse, then takes it over); a second leader beside a live one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_and_helper_on_s3_count_every_report_once() {
    let Some((_moto, endpoint)) = tally_test_support::moto::start_moto() else {
        return;
    };
    let lease = vec!["--lease-secs".to_owned(), "2".to_owned()];
    let mut d = deploy(Options {
        s3: Some((endpoint.clone(), "dap".into())),
        leader_args: lease.clone(),
        helper_args: lease,
        ..Options::default()
    });
    assert!(d.leader.store.starts_with("s3://"));
    let precision = d.config.time_precision;
    let slot = d.slot_ago(2);
    let measurements = random_measurements(24, d.config.layout.len());
    let mut standby = d.leader.start_standby();
    upload(&d, &measurements[..12], slot + 5);
    d.wait_aggregated(12);

    // A second leader is refused while this one renews its lease (within about a renewal).
    let began = Instant::now();
    let (status, said) = d.leader.second_process(Duration::from_secs(20));
    assert!(!status.success(), "{said}");
    assert!(
        said.contains("in use by another process (tally-server dap leader, pid"),
        "{said}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );

    // The standby waited through all of that (many renewals), without listening.
    assert!(standby.is_standing_by());
    // kill -9: the lease object stays; the standby takes it over once it has lapsed.
    d.leader.kill9();
    let began = Instant::now();
    d.leader.adopt(standby);
    // The lease went unrenewed for its 2 s since the standby saw its last renewal, which came
    // at most a renewal period (2/3 s) before the kill.
    assert!(
        began.elapsed() >= Duration::from_secs_f64(4.0 / 3.0),
        "{:?}",
        began.elapsed()
    );
    upload(&d, &measurements[12..], slot + 5);
    d.wait_aggregated(12);

    collects_exactly(&d, interval(slot, precision, 1), &measurements).await;

    // Everything is in the bucket, under each aggregator's prefix.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let listing = agent
        .get(&format!(
            "{endpoint}/{}?list-type=2&prefix=dap/",
            tally_test_support::moto::BUCKET
        ))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for key in [
        "dap/leader/lease",
        "dap/helper/lease",
        "dap/leader/keys/",
        "/agg_jobs/",
    ] {
        assert!(
            listing.contains(key),
            "{key} is not in the bucket: {listing}"
        );
    }
}
