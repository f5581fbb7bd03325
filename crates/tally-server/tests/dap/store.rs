//! The aggregators on the collector's storage layer: one process per store (a second one is
//! refused, on the local disk and on S3), and leader and helper on S3 (moto) counting every
//! report once across a kill -9.

use std::time::{Duration, Instant};

use tally_dap::client::UploadOutcome;
use tally_dap::draft::messages::Encode;

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
/// the leader loses and doubles nothing (its restart waits for the dead process's lease to
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

    // kill -9: the lease object stays; the restart takes it over once it has lapsed.
    d.leader.kill9();
    let began = Instant::now();
    d.leader.start();
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    upload(&d, &measurements[12..], slot + 5);
    d.wait_aggregated(12);

    let collection = collect(&d, interval(slot, precision, 1))
        .await
        .unwrap_or_else(|e| panic!("{e}{}", d.logs()));
    assert_eq!(collection.report_count(), 24);
    assert_eq!(collection.aggregate_result(), &sum(&measurements));

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
