//! A real S3-compatible server, moto, on a loopback port, for the tests of the stores and roles
//! that run on `tally-service`.
//!
//! [`start_moto`] skips with a message when moto is not installed, unless `TALLY_REQUIRE_S3=1`
//! (CI), where a missing moto is a failure.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::command::Reaped;

/// The bucket [`start_moto`] creates.
pub const BUCKET: &str = "tally-test";

/// A moto server with the bucket [`BUCKET`], and its endpoint; `None` (with a message) when
/// moto is not installed and `TALLY_REQUIRE_S3` is not 1.
pub fn start_moto() -> Option<(Reaped, String)> {
    let required = crate::required(tally_env::TALLY_REQUIRE_S3);
    let probe = Command::new("python3")
        .args(["-c", "import moto.server"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        assert!(
            !required,
            "TALLY_REQUIRE_S3=1 but moto is not installed (python3 -m pip install 'moto[server]')"
        );
        println!(
            "skipping: moto is not installed (python3 -m pip install 'moto[server]'); set TALLY_REQUIRE_S3=1 to fail instead"
        );
        return None;
    }
    let port = crate::free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto");
    let moto = Reaped(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let began = Instant::now();
    loop {
        if let Ok(response) = agent.put(&format!("{endpoint}/{BUCKET}")).send_empty() {
            assert_eq!(response.status(), 200, "creating the bucket");
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "moto did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((moto, endpoint))
}

/// The environment that points a `tally-server` process at the moto server at `endpoint`.
pub fn moto_env(endpoint: &str) -> [(&'static str, String); 4] {
    [
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", endpoint.into()),
    ]
}
