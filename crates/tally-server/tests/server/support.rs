//! Shared fixtures: a collector key pair, a signed config, reports, and an in-process server.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tally_protocol::{Day, Report};
use tally_server::clock::Clock;
use tally_server::store::Store;
use tally_server::{AppState, Options, signing};
use tower::ServiceExt;

/// The example config from `config-schema/` (version 1, cargo/rustc/go, sample rate 1).
pub const EXAMPLE_CONFIG: &str = include_str!("../../../../config-schema/example-config.json");

/// "Today" for every test: reports for the week of 2026-11-16 are ended and recent.
pub const TODAY: &str = "2026-11-24";
pub const WEEK: &str = "2026-11-16";

pub fn today() -> Day {
    TODAY.parse().unwrap()
}

/// A collector: a key pair and a signed config in a temporary directory.
pub struct Collector {
    pub dir: tempfile::TempDir,
    pub public_key: PathBuf,
    pub secret_key: PathBuf,
    pub config: PathBuf,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::with_config(EXAMPLE_CONFIG)
    }

    pub fn with_config(config: &str) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let public_key = dir.path().join("collector.pub");
        let secret_key = dir.path().join("collector.key");
        signing::keygen(&public_key, &secret_key, None, false).unwrap();
        let collector = Collector {
            public_key,
            secret_key,
            config: dir.path().join("config.json"),
            dir,
        };
        collector.write_config(config);
        collector
    }

    /// Replaces the config and signs it.
    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.config, config).unwrap();
        signing::sign_config(&self.config, &self.secret_key, None).unwrap();
    }

    pub fn public_key(&self) -> minisign_verify::PublicKey {
        signing::parse_public_key(&std::fs::read_to_string(&self.public_key).unwrap()).unwrap()
    }

    pub fn config_bytes(&self) -> (Bytes, Bytes) {
        let json = std::fs::read(&self.config).unwrap();
        let sig = std::fs::read(signing::signature_path(&self.config)).unwrap();
        (json.into(), sig.into())
    }

    /// Opens server state on `store_dir` with threshold `k`.
    pub async fn state(&self, store_dir: &Path, k: u64) -> anyhow::Result<AppState> {
        let (json, sig) = self.config_bytes();
        let options = Options {
            threshold: k,
            clock: Clock::Fixed(today()),
            ..Options::default()
        };
        AppState::open(
            Store::open(store_dir.to_str().unwrap())?,
            json,
            sig,
            &self.public_key(),
            options,
        )
        .await
    }
}

/// A valid report for the example config.
pub fn report(x: f64, version: &str, counters: &[(&str, u64)]) -> Report {
    let cargo = tally_test_support::reports::section("cargo", version, counters);
    tally_test_support::reports::report(WEEK, x, vec![cargo])
}

pub fn body(report: &Report) -> Vec<u8> {
    report.to_canonical_json()
}

/// Sends one request to the app without a socket.
pub async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .unwrap();
    let response = tally_server::app(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, bytes)
}

pub async fn upload(state: &AppState, report: &Report) -> (StatusCode, String) {
    let (status, bytes) = call(
        state,
        "POST",
        &format!("/upload/{}", report.week),
        body(report),
    )
    .await;
    (status, String::from_utf8(bytes).unwrap())
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Asserts that no file under `store` holds the address the tests' clients come from
/// (127.0.0.1): the server keeps no client address.
pub fn assert_no_client_address_stored(store: &Path) {
    for file in files_under(store) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(
            !text.contains("127.0.0.1"),
            "{} holds a client address",
            file.display()
        );
    }
}

/// Stored report files.
pub fn stored_reports(store: &Path) -> Vec<PathBuf> {
    files_under(&store.join("reports"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect()
}

/// A blocking HTTP client that hands back every status as an answer, 10 s at most a request.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into()
}

/// `POST /upload/<WEEK>` of `body` to the server at `base` over HTTP: the answer's status and
/// text.
pub fn post_upload(agent: &ureq::Agent, base: &str, body: &[u8]) -> (u16, String) {
    let mut response = agent
        .post(&format!("{base}/upload/{WEEK}"))
        .send(body)
        .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), text)
}

/// The built `tally-server`.
pub const BIN: &str = env!("CARGO_BIN_EXE_tally-server");

/// `tally-server serve` on a free loopback port with this store, the collector's config and
/// the public key file `key`, its clock at [`TODAY`]; the caller adds the rest.
pub fn serve_command(collector: &Collector, store: &str, key: &Path) -> std::process::Command {
    serve_config_command(&collector.config, store, key)
}

/// [`serve_command`] with the config file `config`.
pub fn serve_config_command(config: &Path, store: &str, key: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(BIN);
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--store", store])
        .arg("--config")
        .arg(config)
        .arg("--key")
        .arg(key)
        .env("TALLY_NOW", TODAY);
    command
}

/// `GET /api/weeks` of the server on `port`: the weeks it publishes.
pub fn weeks_index(agent: &ureq::Agent, port: u16) -> tally_protocol::aggregate::WeeksIndex {
    agent
        .get(&format!("http://127.0.0.1:{port}/api/weeks"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}
