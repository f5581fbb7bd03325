//! The same server on an S3-compatible store: a real moto server on 127.0.0.1.
//!
//! Skips with a message when moto is not installed, unless `TALLY_REQUIRE_S3=1` (CI), where a
//! missing moto is a failure.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_tally-server");
pub(crate) use tally_service::testing::{BUCKET, Reaped, start_moto};

fn serve_on_s3(collector: &Collector, endpoint: &str) -> (Reaped, u16) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--store",
            &format!("s3://{BUCKET}/collector/one"),
            "--config",
            collector.config.to_str().unwrap(),
            "--key",
            collector.public_key.to_str().unwrap(),
            "--threshold",
            "2",
        ])
        .env("TALLY_NOW", TODAY)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("AWS_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("tally-server: listening on port ")
        .expect("server started")
        .parse()
        .unwrap();
    (Reaped(child), port)
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
        let mut response = agent
            .post(&format!("{base}/upload/{WEEK}"))
            .send(&body(&r)[..])
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body_mut().read_to_string().unwrap(), "stored\n");
    }
    let again = report(0.2, "1.95.0", &[("cargo/invocations", 2)]);
    let mut response = agent
        .post(&format!("{base}/upload/{WEEK}"))
        .send(&body(&again)[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.body_mut().read_to_string().unwrap(),
        "already stored\n"
    );
    let bad = report(0.7, "1.95.0", &[("cargo/not-collected", 2)]);
    assert_eq!(
        agent
            .post(&format!("{base}/upload/{WEEK}"))
            .send(&body(&bad)[..])
            .unwrap()
            .status(),
        400
    );

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
    let index: tally_protocol::aggregate::WeeksIndex = agent
        .get(&format!("http://127.0.0.1:{port}/api/weeks"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(index.weeks.len(), 1);
    assert_eq!(index.weeks[0].reports, 3);
    assert_eq!(index.weeks[0].programs["cargo"], 3);
}
