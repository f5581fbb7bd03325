//! The same server on an S3-compatible store: a real moto server on 127.0.0.1.
//!
//! Skips with a message when moto is not installed, unless `TALLY_REQUIRE_S3=1` (CI), where a
//! missing moto is a failure.

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

pub(crate) use tally_test_support::command::Reaped;
use tally_test_support::command::spawn_listening;
pub(crate) use tally_test_support::moto::{BUCKET, moto_env, start_moto};

fn serve_on_s3(collector: &Collector, endpoint: &str) -> (Reaped, u16) {
    let store = format!("s3://{BUCKET}/collector/one");
    let mut started = spawn_listening(
        serve_command(collector, &store, &collector.public_key)
            .args(["--threshold", "2"])
            .envs(moto_env(endpoint))
            .env_remove("AWS_ENDPOINT")
            .stderr(Stdio::inherit()),
    );
    let port = started.port();
    (Reaped(started.child), port)
}

#[test]
fn stores_counts_and_survives_restarts_on_s3() {
    let Some((_moto, endpoint)) = start_moto() else {
        return;
    };
    let collector = Collector::new();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let (server, port) = serve_on_s3(&collector, &endpoint);
    let base = format!("http://127.0.0.1:{port}");
    let mut config = agent.get(&format!("{base}/config.json")).call().unwrap();
    assert_eq!(
        config.body_mut().read_to_vec().unwrap(),
        collector.config_bytes().0.to_vec()
    );

    for i in 0..3 {
        let r = report(0.2 + i as f64 / 10.0, "1.95.0", &[("cargo/invocations", 2)]);
        assert_eq!(
            post_upload(&agent, &base, &body(&r)),
            (200, "stored\n".to_string())
        );
    }
    let again = report(0.2, "1.95.0", &[("cargo/invocations", 2)]);
    assert_eq!(
        post_upload(&agent, &base, &body(&again)),
        (200, "already stored\n".to_string())
    );
    let bad = report(0.7, "1.95.0", &[("cargo/not-collected", 2)]);
    assert_eq!(post_upload(&agent, &base, &body(&bad)).0, 400);

    // The objects are in the bucket under the prefix.
    let listing = agent
        .get(&format!(
            "{endpoint}/{BUCKET}?list-type=2&prefix=collector/one/"
        ))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(
        listing.matches("collector/one/reports/2026-11-16/").count(),
        3,
        "{listing}"
    );
    assert!(
        listing.contains("collector/one/configs/1.json"),
        "{listing}"
    );
    drop(server); // SIGKILL: the merged aggregate may not be written; the restart rebuilds it.

    let (_server, port) = serve_on_s3(&collector, &endpoint);
    let index = weeks_index(&agent, port);
    assert_eq!(index.weeks.len(), 1);
    assert_eq!(index.weeks[0].reports, 3);
    assert_eq!(index.weeks[0].programs["cargo"], 3);
}
