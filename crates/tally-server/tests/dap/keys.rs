//! HPKE key rotation on a running leader: the new key is advertised, a report sealed to the
//! previous key is accepted during the grace period and refused (`outdatedConfig`) after it.

use std::time::{Duration, Instant};

use tally_dap::draft::messages::Encode;

use crate::collect;
use crate::support::{config_list, deploy_min_batch, interval, now};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_for_its_grace_period_then_refused() {
    let d = deploy_min_batch(2);
    let precision = d.config.time_precision;
    let len = d.config.layout.len();
    let slot = d.slot_ago(2);
    let (old_leader, helper) = d.hpke_configs();
    let builder = tally_dap::client::ReportBuilder::from_config(&d.config).unwrap();
    let sealed_to_old = |m: &[u128]| {
        builder
            .build(m, slot, &old_leader, &helper)
            .unwrap()
            .get_encoded()
            .unwrap()
    };
    // Built before the rotation, sent after it (a client that cached the config).
    let early = sealed_to_old(&vec![1; len]);
    let late = sealed_to_old(&vec![1; len]);

    // Rotate while the leader runs, with a grace period of a few seconds.
    let store = crate::support::open_store(&d.leader);
    let grace = 4;
    let new_id = tally_dap_aggregator::keys::rotate(&store, now(), grace)
        .await
        .unwrap();
    let rotated_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = config_list(&d.leader.url());
        if u8::from(*list.hpke_configs()[0].id()) == new_id {
            assert_eq!(
                list.hpke_configs().len(),
                1,
                "only the current key is advertised"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never advertised the new key"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.put_report(&early), (200, None));
    let fresh = d.report(&vec![1; len], slot);
    assert_eq!(d.put_report(&fresh.get_encoded().unwrap()), (200, None));
    assert_eq!(
        u8::from(*fresh.leader_encrypted_input_share().config_id()),
        new_id
    );

    std::thread::sleep(Duration::from_secs(grace + 2).saturating_sub(rotated_at.elapsed()));
    assert_eq!(d.put_report(&late), (400, Some("outdatedConfig".into())));

    d.wait_aggregated(2);
    let collection = collect(&d, interval(slot, precision, 1)).await.unwrap();
    assert_eq!(collection.report_count(), 2);
    assert_eq!(collection.aggregate_result(), &vec![2; len]);
}
