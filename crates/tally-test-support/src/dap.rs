//! Private aggregation set up as a user of the real `tally-server` binary sets it up, for the
//! aggregators' tests, the client's end-to-end tests and the throughput benchmark: the
//! collector's key made by `dap collector-keygen`, a task provisioned by `dap provision`,
//! `dap leader` and `dap helper` processes started and waited for, and their `/metrics` read.
//!
//! Nothing here knows the DAP types: layouts are JSON as `--layout` takes them, the task's
//! config section is the file `dap provision` wrote, so that the benchmark and every test
//! parse what a real deployment would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What to provision: the layout (JSON as `dap provision --layout` reads it), the task's
/// settings, the stores (a directory or `s3://…` each) and the environment of the commands.
pub struct TaskSpec<'a> {
    pub layout: &'a [u8],
    pub min_batch_size: u64,
    pub time_precision: u64,
    pub leader_store: &'a str,
    pub helper_store: &'a str,
    /// The environment beyond this process's (the S3 endpoint of the stores).
    pub env: &'a [(String, String)],
}

/// A task `dap provision` wrote into both stores, for aggregators yet to start on its ports.
pub struct Task {
    pub leader_port: u16,
    pub helper_port: u16,
    /// The collector's credential (`collector.json`: key pair and token).
    pub credential: PathBuf,
    /// The config's `aggregation` section (`aggregation.json`).
    pub section: PathBuf,
}

/// Makes the collector's key and provisions a task on both stores with `server` (the
/// `tally-server` binary), its files in `dir`; the aggregators' ports are free loopback ports.
pub fn provision(server: &Path, dir: &Path, spec: &TaskSpec) -> Task {
    let p = |name: &str| dir.join(name);
    let s = |path: PathBuf| path.to_str().expect("a UTF-8 path").to_owned();
    let run = |args: &[&str]| {
        crate::command::ok(
            Command::new(server)
                .args(args)
                .envs(spec.env.iter().cloned()),
        );
    };
    run(&[
        "dap",
        "collector-keygen",
        "--credential-out",
        &s(p("collector.json")),
        "--public-out",
        &s(p("collector-public.json")),
    ]);
    std::fs::write(p("layout.json"), spec.layout).unwrap();
    let (leader_port, helper_port) = (crate::free_port(), crate::free_port());
    run(&[
        "dap",
        "provision",
        "--leader-store",
        spec.leader_store,
        "--helper-store",
        spec.helper_store,
        "--leader-url",
        &format!("http://127.0.0.1:{leader_port}/"),
        "--helper-url",
        &format!("http://127.0.0.1:{helper_port}/"),
        "--collector-public",
        &s(p("collector-public.json")),
        "--layout",
        &s(p("layout.json")),
        "--min-batch-size",
        &spec.min_batch_size.to_string(),
        "--time-precision",
        &spec.time_precision.to_string(),
        "--config-out",
        &s(p("aggregation.json")),
    ]);
    Task {
        leader_port,
        helper_port,
        credential: p("collector.json"),
        section: p("aggregation.json"),
    }
}

/// A layout of one program, `cargo`, with `counters` presence-only counters `cargo/c0`… at
/// the full rate (as `tally_dap::layout::Layout` writes it).
pub fn presence_layout(counters: usize) -> serde_json::Value {
    let counters: Vec<_> = (0..counters)
        .map(|i| serde_json::json!({ "name": format!("cargo/c{i}") }))
        .collect();
    serde_json::json!({
        "os": ["linux"],
        "arch": ["x86_64"],
        "programs": [{ "name": "cargo", "versions": [], "counters": counters }]
    })
}

/// `tally-server dap ROLE --store STORE --listen 127.0.0.1:PORT --address-file FILE`, with
/// standard output discarded; the caller adds its own arguments and where standard error goes.
pub fn aggregator_command(
    server: &Path,
    role: &str,
    store: &str,
    port: u16,
    address_file: &Path,
) -> Command {
    let mut command = Command::new(server);
    command
        .args(["dap", role, "--store", store])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--address-file")
        .arg(address_file)
        .stdout(Stdio::null());
    command
}

/// Waits until the aggregator `child` has written `address_file` (it listens then), failing
/// the test with its log if it exits first or does not start within 30 s.
pub fn wait_until_listening(child: &mut Child, role: &str, address_file: &Path, log: &Path) {
    crate::wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{role} exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if address_file.exists() {
            Ok(())
        } else {
            Err(format!("{role} did not start"))
        }
    });
}

/// The counters an aggregator at `url` serves on `/metrics`.
pub fn metrics(url: &str) -> BTreeMap<String, u64> {
    let text = ureq::get(&format!("{url}metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    parse_metrics(&text)
}

/// Parses the aggregators' metrics text: `name{reason="x"} value` or `name value` lines (and
/// `#` comments) to a map from `name{reason="x"}` or `name` to value.
pub fn parse_metrics(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the counters in `metrics` whose names start with `prefix` (every reason of one
/// counter, or several counters).
pub fn sum_of(metrics: &BTreeMap<String, u64>, prefix: &str) -> u64 {
    metrics
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, value)| value)
        .sum()
}
