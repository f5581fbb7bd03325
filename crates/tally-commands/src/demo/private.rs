//! `tally demo --private-aggregation`: the demo's loop with the collector never seeing a
//! report. Beside the collector, a DAP leader and helper (`tally-server dap leader|helper`,
//! separate processes with separate stores, on loopback ports), a task provisioned for the
//! layout the demo's charts need (`dap collector-keygen`, `dap provision --charts`), and the
//! upload config carrying its section; the simulated installations' weeks are uploaded to the
//! leader as DAP reports (tally's own client, the vector the signed layout makes of each week),
//! the real client sends its week the same way, and the collector (`serve --dap-credential`)
//! collects each ended week from the leader and publishes the aggregate.
//!
//! Promises: as the plain demo's (every process on loopback, everything in the demo's temporary
//! directory, the aggregators stopped when the demo ends); only weeks inside the aggregators'
//! replay horizon are simulated, since older reports are refused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tally_dap::AggregationConfig;
use tally_home::Day;
use tally_protocol::Report;

/// The demo task's minimum batch size: the demo's publication threshold, as a real collector's.
pub const MIN_BATCH_SIZE: u64 = super::DEMO_THRESHOLD;

/// Weeks are collected this many days after their Monday: as soon as they have ended (a real
/// collector waits until the week is closed to uploads, 28 days).
pub const COLLECT_AFTER_DAYS: u32 = 7;

/// Simulated weeks start no more than this many days before today: the aggregators refuse
/// reports older than their replay horizon (35 days, `dap provision`'s default).
const HORIZON_DAYS: i64 = 28;

/// Longest wait for an aggregator to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The leader and the helper, running; stopped when dropped.
pub struct Aggregators {
    children: Vec<Child>,
    pub leader_url: String,
    pub helper_url: String,
    /// The collector's credential (`dap collector-keygen`).
    pub credential: PathBuf,
}

impl Drop for Aggregators {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free loopback port (bound, then released for the aggregator to take).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Ports for the leader and the helper, and the chart config's `[aggregation]` table naming
/// them (appended to the demo's chart config).
pub fn aggregation_table() -> anyhow::Result<(u16, u16, String)> {
    let (leader, helper) = (free_port()?, free_port()?);
    let table = format!(
        "\n[aggregation]\nleader = \"http://127.0.0.1:{leader}/\"\nhelper = \"http://127.0.0.1:{helper}/\"\nmin_batch_size = {MIN_BATCH_SIZE}\ntime_precision = 86400\nsection = \"aggregation.json\"\n"
    );
    Ok((leader, helper, table))
}

/// The collector's key, the task on both aggregators' stores (under `root`), for the layout of
/// the chart config `charts`; then both aggregators started on `leader_port` and
/// `helper_port`.
pub fn provision_and_start(
    server_bin: &Path,
    root: &Path,
    charts: &Path,
    (leader_port, helper_port): (u16, u16),
) -> anyhow::Result<Aggregators> {
    let keys = charts.parent().context("the chart config's directory")?;
    let credential = keys.join("collector-credential.json");
    let public = keys.join("collector-public.json");
    let mut keygen = Command::new(server_bin);
    keygen
        .args(["dap", "collector-keygen", "--credential-out"])
        .arg(&credential)
        .arg("--public-out")
        .arg(&public);
    super::run_quiet(&mut keygen, "tally-server dap collector-keygen")?;
    let (leader_store, helper_store) = (root.join("leader"), root.join("helper"));
    let mut provision = Command::new(server_bin);
    provision
        .args(["dap", "provision", "--charts"])
        .arg(charts)
        .arg("--leader-store")
        .arg(&leader_store)
        .arg("--helper-store")
        .arg(&helper_store)
        .arg("--collector-public")
        .arg(&public);
    super::run_quiet(&mut provision, "tally-server dap provision")?;
    let mut aggregators = Aggregators {
        children: Vec::new(),
        leader_url: format!("http://127.0.0.1:{leader_port}/"),
        helper_url: format!("http://127.0.0.1:{helper_port}/"),
        credential,
    };
    for (role, store, port) in [
        ("helper", &helper_store, helper_port),
        ("leader", &leader_store, leader_port),
    ] {
        let child = start(server_bin, role, store, port, keys)?;
        aggregators.children.push(child);
    }
    Ok(aggregators)
}

/// `tally-server dap ROLE` on `store` and `127.0.0.1:port`, its log in `logs/ROLE.log`; waits
/// until it listens.
fn start(
    server_bin: &Path,
    role: &str,
    store: &Path,
    port: u16,
    logs: &Path,
) -> anyhow::Result<Child> {
    let log_path = logs.join(format!("{role}.log"));
    let address_file = logs.join(format!("{role}.address"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut child = Command::new(server_bin)
        .args(["dap", role, "--store"])
        .arg(store)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--address-file"])
        .arg(&address_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("could not start {}", server_bin.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !address_file.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("tally-server dap {role} exited ({status}):\n{log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("tally-server dap {role} did not start within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// The Mondays of `mondays` the aggregators accept reports of as of `today`.
pub fn within_horizon(mondays: &[Day], today: Day) -> Vec<Day> {
    mondays
        .iter()
        .copied()
        .filter(|monday| today.days_since(*monday) <= HORIZON_DAYS)
        .collect()
}

/// Uploads `reports` to the leader of `section` as DAP reports, each the vector the section's
/// layout makes of it, at its week's report time, as `tally upload` sends a week.
pub fn upload_simulated(section: &AggregationConfig, reports: &[Report]) -> anyhow::Result<()> {
    let agent = tally_dap::client::agent(Duration::from_secs(30));
    let task = tally_dap::draft::task_id(section)?;
    let leader = tally_dap::client::fetch_hpke_config(&agent, &section.leader, &task)
        .map_err(|e| anyhow::anyhow!("the demo leader's HPKE config: {e}"))?;
    let helper = tally_dap::client::fetch_hpke_config(&agent, &section.helper, &task)
        .map_err(|e| anyhow::anyhow!("the demo helper's HPKE config: {e}"))?;
    let builder = tally_dap::client::ReportBuilder::from_config(section)?;
    for report in reports {
        let monday = tally_protocol::aggregate::bucket_week(report.week);
        let measurement = section.layout.measurement(report);
        let sealed = builder
            .build(
                &measurement,
                tally_dap::client::report_time(monday),
                &leader,
                &helper,
            )
            .map_err(|e| anyhow::anyhow!("a simulated report cannot be sealed: {e}"))?;
        let outcome = tally_dap::client::upload(&agent, &section.leader, &task, &sealed)
            .map_err(|e| anyhow::anyhow!("the demo leader refused a simulated report: {e}"))?;
        if outcome != tally_dap::client::UploadOutcome::Accepted {
            bail!("the demo leader did not accept a simulated report: {outcome:?}");
        }
    }
    Ok(())
}

/// Reads the config section `dap provision` wrote beside the chart config.
pub fn read_section(keys: &Path) -> anyhow::Result<AggregationConfig> {
    let path = keys.join("aggregation.json");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    AggregationConfig::parse(&bytes).with_context(|| format!("{} is not a section", path.display()))
}
