//! The unmodified upstream client uploads to our leader, tally's own client does too, and the
//! unmodified upstream collector collects: each aggregate is the sum of what was measured.

use std::time::Duration;

use tally_dap::client::UploadOutcome;
use tally_dap::draft::messages::{HpkeConfigList, Time};

use crate::support::{self, Options, deploy, interval, random_measurements, sum};
use crate::{assert_collection_refused, collect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_client_and_tally_client_upload_janus_collector_collects_the_exact_sum() {
    let d = deploy(Options::default());
    let precision = d.config.time_precision;
    let len = d.config.layout.len();
    // Two past slots: the upstream client's reports in the first, tally's in the second.
    let slot_a = d.slot_ago(3);
    let slot_b = slot_a + precision;
    let measurements = random_measurements(8, len);

    let (media_type, list) = support::config_list(&d.leader.url());
    assert_eq!(media_type, HpkeConfigList::MEDIA_TYPE);
    assert_eq!(list.hpke_configs().len(), 1);

    let janus = d.janus_client().await;
    for m in &measurements {
        janus
            .upload_with_time(m, Time::from_seconds_since_epoch(slot_a + 17))
            .await
            .unwrap();
    }

    let agent = tally_dap::client::agent(Duration::from_secs(10));
    for m in &measurements {
        let report = d.report(m, slot_b + 17);
        let outcome =
            tally_dap::client::upload(&agent, &d.config.leader, &d.task_id(), &report).unwrap();
        assert_eq!(outcome, UploadOutcome::Accepted);
    }
    d.wait_aggregated(16);

    let want = sum(&measurements);
    for slot in [slot_a, slot_b] {
        let collection = collect(&d, interval(slot, precision, 1)).await.unwrap();
        assert_eq!(collection.report_count(), 8);
        assert_eq!(collection.aggregate_result(), &want);
        assert_eq!(collection.interval().0.timestamp() as u64, slot);
        assert_eq!(collection.interval().1.num_seconds() as u64, precision);
    }
    assert_eq!(d.leader.metric("reports_aggregated", ""), 16);
    assert_eq!(d.helper.metric("reports_aggregated", ""), 16);
    assert_eq!(d.helper.metric("aggregate_shares_released", ""), 2);

    // tally's own collector gets the same from a batch both clients uploaded to.
    let slot_c = slot_b + precision;
    for (i, m) in measurements.iter().enumerate() {
        if i % 2 == 0 {
            janus
                .upload_with_time(m, Time::from_seconds_since_epoch(slot_c))
                .await
                .unwrap();
        } else {
            let report = d.report(m, slot_c);
            tally_dap::client::upload(&agent, &d.config.leader, &d.task_id(), &report).unwrap();
        }
    }
    d.wait_aggregated(24);
    let ours = d.our_collector();
    let collected = tokio::task::spawn_blocking(move || {
        ours.collect(
            interval(slot_c, precision, 1),
            Duration::from_millis(50),
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(collected.report_count, 8);
    assert_eq!(collected.aggregate, want);
    assert_eq!(collected.interval, interval(slot_c, precision, 1));

    // The batch is spent: the same interval again, with a new collection job, is refused.
    assert_collection_refused(
        &d,
        interval(slot_a, precision, 1),
        "batchQueriedTooManyTimes",
    )
    .await;
}
