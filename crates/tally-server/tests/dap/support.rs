//! A deployment for tests: the real `tally-server` binary as two processes (`dap leader` and
//! `dap helper`, each with its own store and log), on loopback ports, with a task provisioned
//! by the binary's own `dap collector-keygen` and `dap provision`. The stores are directories,
//! or prefixes of a moto (S3) bucket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tally_dap::AggregationConfig;
use tally_dap::draft::messages::{
    Decode, HpkeConfig, HpkeConfigList, Interval, Report, TaskId, Time,
};
use tally_dap::layout::Layout;
use tally_dap_aggregator::provision::CollectorCredential;
use tally_test_support::dap;

pub const BIN: &str = env!("CARGO_BIN_EXE_tally-server");

pub use tally_test_support::free_port;

/// One aggregator process.
pub struct Aggregator {
    pub role: &'static str,
    /// The store: a directory, or `s3://…`.
    pub store: String,
    pub log: PathBuf,
    pub port: u16,
    pub extra: Vec<String>,
    /// The process's environment beyond this one's (the S3 endpoint, `TALLY_NOW`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Aggregator {
    /// An aggregator not started yet, on a local store.
    pub fn new(role: &'static str, store: &Path, log: PathBuf, port: u16) -> Aggregator {
        Aggregator {
            role,
            store: store.to_str().unwrap().to_owned(),
            log,
            port,
            extra: vec![],
            env: vec![],
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Starts the process and waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.role);
        let address_file = self.log.with_extension("address");
        let child = self.spawn(&address_file, &[]);
        let child = self.child.insert(child);
        dap::wait_until_listening(child, self.role, &address_file, &self.log);
    }

    /// Spawns a process of this aggregator with `args` beyond its own, writing its address to
    /// `address_file` (removed first) and its standard error to the end of the log.
    fn spawn(&self, address_file: &Path, args: &[&str]) -> Child {
        let _ = std::fs::remove_file(address_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        dap::aggregator_command(
            Path::new(BIN),
            self.role,
            &self.store,
            self.port,
            address_file,
        )
        .args(["--key-reload-secs", "1"])
        .args(args)
        .args(&self.extra)
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .stderr(log)
        .spawn()
        .unwrap()
    }

    /// Starts a standby of this aggregator (`--standby`: the same store and port, its standard
    /// error appended to the same log). It waits for the store's lease without listening;
    /// [`Aggregator::adopt`] makes it this aggregator's process once it has taken over.
    pub fn start_standby(&self) -> Standby {
        let address_file = self.log.with_extension("standby.address");
        Standby {
            child: Some(self.spawn(&address_file, &["--standby"])),
            address_file,
        }
    }

    /// Waits until `standby` listens (it took the store's lease over), and makes it this
    /// aggregator's process.
    pub fn adopt(&mut self, mut standby: Standby) {
        assert!(self.child.is_none(), "{} still running", self.role);
        let mut child = standby.child.take().expect("running");
        dap::wait_until_listening(&mut child, self.role, &standby.address_file, &self.log);
        self.child = Some(child);
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The running process's ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Starts another process of this role on this aggregator's store (on another port) and
    /// waits up to `within` for it to exit: its exit status and standard error, or a panic if
    /// it is still running then (it would be a second process serving the same store).
    pub fn second_process(&self, within: Duration) -> (std::process::ExitStatus, String) {
        let log = self.log.with_extension("second.log");
        let mut child = Command::new(BIN)
            .args([
                "dap",
                self.role,
                "--store",
                &self.store,
                "--listen",
                "127.0.0.1:0",
            ])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, std::fs::read_to_string(&log).unwrap());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "a second {} ran on the store {} for {within:?}: {}",
                    self.role,
                    self.store,
                    std::fs::read_to_string(&log).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for the process to stop on its own; its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait().unwrap()
    }

    /// The process's counters.
    pub fn metrics(&self) -> BTreeMap<String, u64> {
        dap::metrics(&self.url())
    }

    pub fn metric(&self, name: &str, reason: &str) -> u64 {
        let key = if reason.is_empty() {
            format!("tally_dap_{name}")
        } else {
            format!("tally_dap_{name}{{reason=\"{reason}\"}}")
        };
        self.metrics().get(&key).copied().unwrap_or(0)
    }
}

/// A standby aggregator process (`--standby`), killed when dropped unless adopted.
pub struct Standby {
    child: Option<Child>,
    address_file: PathBuf,
}

impl Standby {
    /// Running, and not listening: it has not taken over.
    pub fn is_standing_by(&mut self) -> bool {
        let child = self.child.as_mut().expect("not adopted");
        child.try_wait().unwrap().is_none() && !self.address_file.exists()
    }

    /// SIGTERM, then wait for the process to stop on its own; its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("not adopted");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait().unwrap()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Leader, helper, the task's config section and the collector's credential.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub leader: Aggregator,
    pub helper: Aggregator,
    pub config: AggregationConfig,
    pub credential: CollectorCredential,
    pub credential_path: PathBuf,
}

/// A small layout: `len` counters of one program, presence only.
pub fn layout(counters: usize) -> Layout {
    serde_json::from_value(dap::presence_layout(counters)).unwrap()
}

pub struct Options {
    pub layout: Layout,
    pub min_batch_size: u64,
    pub time_precision: u64,
    pub leader_args: Vec<String>,
    pub helper_args: Vec<String>,
    /// Where the stores are: `None` for directories, `Some((endpoint, prefix))` for prefixes of
    /// the moto bucket at `endpoint`.
    pub s3: Option<(String, String)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            layout: layout(12),
            min_batch_size: 5,
            time_precision: 3600,
            leader_args: vec![],
            helper_args: vec![],
            s3: None,
        }
    }
}

/// Runs `tally-server ARGS` with `env`; its standard output.
pub fn run_with(args: &[&str], env: &[(String, String)]) -> String {
    let out = tally_test_support::command::ok(
        Command::new(BIN)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v))),
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn run(args: &[&str]) -> String {
    run_with(args, &[])
}

pub fn deploy(options: Options) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |path: PathBuf| path.to_str().unwrap().to_owned();
    let (leader_store, helper_store, env) = match &options.s3 {
        None => (s(p("leader")), s(p("helper")), vec![]),
        Some((endpoint, prefix)) => (
            format!("s3://{}/{prefix}/leader", tally_test_support::moto::BUCKET),
            format!("s3://{}/{prefix}/helper", tally_test_support::moto::BUCKET),
            tally_test_support::moto::moto_env(endpoint)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ),
    };
    let task = dap::provision(
        Path::new(BIN),
        dir.path(),
        &dap::TaskSpec {
            layout: &serde_json::to_vec(&options.layout).unwrap(),
            min_batch_size: options.min_batch_size,
            time_precision: options.time_precision,
            leader_store: &leader_store,
            helper_store: &helper_store,
            env: &env,
        },
    );
    let (leader_port, helper_port) = (task.leader_port, task.helper_port);
    let config = AggregationConfig::parse(&std::fs::read(&task.section).unwrap()).unwrap();
    let credential: CollectorCredential =
        serde_json::from_slice(&std::fs::read(&task.credential).unwrap()).unwrap();
    let mut helper = Aggregator {
        role: "helper",
        store: helper_store,
        log: p("helper.log"),
        port: helper_port,
        extra: options.helper_args,
        env: env.clone(),
        child: None,
    };
    let mut leader = Aggregator {
        role: "leader",
        store: leader_store,
        log: p("leader.log"),
        port: leader_port,
        extra: options.leader_args,
        env,
        child: None,
    };
    helper.start();
    leader.start();
    Deployment {
        credential_path: task.credential,
        dir,
        leader,
        helper,
        config,
        credential,
    }
}

impl Deployment {
    pub fn task_id(&self) -> TaskId {
        tally_dap::draft::task_id(&self.config).unwrap()
    }

    /// The start of the time slot `back` time precisions before now.
    pub fn slot_ago(&self, back: u64) -> u64 {
        let precision = self.config.time_precision;
        (now() - back * precision) / precision * precision
    }

    /// tally's own collector for this deployment's task.
    pub fn our_collector(&self) -> tally_dap::collector::Collector {
        tally_dap::collector::Collector::new(
            &self.config.leader,
            self.task_id(),
            self.credential.token.clone(),
            self.credential.keypair().unwrap(),
            tally_dap::draft::vdaf(&self.config.vdaf).unwrap(),
            Duration::from_secs(10),
        )
    }

    /// The upstream client (Divvi Up's `janus_client`, unmodified) for this deployment's task.
    pub async fn janus_client(&self) -> janus_client::Client<tally_dap::draft::Vdaf> {
        janus_client::Client::builder(
            self.task_id(),
            url::Url::parse(&self.config.leader).unwrap(),
            url::Url::parse(&self.config.helper).unwrap(),
            tally_dap::draft::messages::Duration::from_seconds(self.config.time_precision),
            tally_dap::draft::vdaf(&self.config.vdaf).unwrap(),
        )
        .build()
        .await
        .unwrap()
    }

    /// The current HPKE config each aggregator advertises.
    pub fn hpke_configs(&self) -> (HpkeConfig, HpkeConfig) {
        let agent = tally_dap::client::agent(Duration::from_secs(10));
        let get =
            |url: &str| tally_dap::client::fetch_hpke_config(&agent, url, &self.task_id()).unwrap();
        (get(&self.config.leader), get(&self.config.helper))
    }

    /// A report of `measurement` at `time` from tally's own client.
    pub fn report(&self, measurement: &[u128], time: u64) -> Report {
        let (leader, helper) = self.hpke_configs();
        let builder = tally_dap::client::ReportBuilder::from_config(&self.config).unwrap();
        builder.build(measurement, time, &leader, &helper).unwrap()
    }

    /// PUTs encoded bytes to the leader's upload endpoint: (status, problem type).
    pub fn put_report(&self, body: &[u8]) -> (u16, Option<String>) {
        self.raw(
            "PUT",
            &format!("tasks/{}/reports", self.task_id()),
            Report::MEDIA_TYPE,
            None,
            body,
        )
    }

    /// A raw request to the leader: (status, DAP problem type if any).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        media_type: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, Option<String>) {
        raw(
            &format!("{}{path}", self.leader.url()),
            method,
            media_type,
            token,
            body,
        )
    }

    /// Waits until the leader has aggregated (or rejected) every accepted report.
    pub fn wait_aggregated(&self, reports: u64) {
        tally_test_support::wait_for(Duration::from_secs(120), Duration::from_millis(50), || {
            let m = self.leader.metrics();
            let done = dap::sum_of(&m, "tally_dap_reports_aggregated")
                + dap::sum_of(&m, "tally_dap_reports_rejected");
            if done >= reports {
                Ok(())
            } else {
                Err(format!(
                    "only {done} of {reports} reports aggregated: {m:?}"
                ))
            }
        });
    }

    /// Both logs, for a failing test's message.
    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "\n--- leader log ---\n{}\n--- helper log ---\n{}",
            read(&self.leader.log),
            read(&self.helper.log)
        )
    }

    /// Every file in both stores and both logs, as (path, bytes).
    pub fn everything_written(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![
            PathBuf::from(&self.leader.store),
            PathBuf::from(&self.helper.store),
        ];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let kind = entry.file_type().unwrap();
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file() {
                    out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
                }
            }
        }
        for log in [&self.leader.log, &self.helper.log] {
            out.push((log.clone(), std::fs::read(log).unwrap_or_default()));
        }
        out
    }
}

/// A raw HTTP request: (status, DAP problem type if the answer is a problem document).
pub fn raw(
    url: &str,
    method: &str,
    media_type: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Option<String>) {
    let agent = tally_dap::client::agent(Duration::from_secs(30));
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if !media_type.is_empty() {
        request = request.header("content-type", media_type);
    }
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = agent.run(request.body(body.to_vec()).unwrap()).unwrap();
    let status = response.status().as_u16();
    let is_problem = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/problem+json");
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let problem = is_problem
        .then(|| serde_json::from_str::<serde_json::Value>(&text).ok())
        .flatten()
        .and_then(|v| {
            v["type"]
                .as_str()
                .map(|t| t.rsplit(':').next().unwrap().to_owned())
        });
    (status, problem)
}

/// The interval of `slots` time-precision slots starting at the slot of `time`.
pub fn interval(time: u64, precision: u64, slots: u64) -> Interval {
    Interval::new(
        Time::from_seconds_since_epoch(time - time % precision),
        tally_dap::draft::messages::Duration::from_seconds(precision * slots),
    )
    .unwrap()
}

/// Now, in seconds since the epoch (this process does not set `TALLY_NOW`).
/// A deployment whose task collects batches of at least `min_batch_size` reports.
pub fn deploy_min_batch(min_batch_size: u64) -> Deployment {
    deploy(Options {
        min_batch_size,
        ..Options::default()
    })
}

pub fn now() -> u64 {
    tally_dap_aggregator::common::unix_now()
}

/// The local store of an aggregator, opened in this process.
pub fn open_store(aggregator: &Aggregator) -> tally_dap_aggregator::store::Store {
    tally_dap_aggregator::store::Store::open(
        &aggregator.store,
        tally_dap_aggregator::store::Durability::ProcessCrash,
    )
    .unwrap()
}

/// `count` random 0/1 vectors of length `len`.
pub fn random_measurements(count: usize, len: usize) -> Vec<Vec<u128>> {
    (0..count)
        .map(|_| {
            (0..len)
                .map(|_| u128::from(rand::random::<bool>()))
                .collect()
        })
        .collect()
}

/// Entry-wise sums.
pub fn sum(measurements: &[Vec<u128>]) -> Vec<u128> {
    let mut out = vec![0; measurements[0].len()];
    for m in measurements {
        for (o, v) in out.iter_mut().zip(m) {
            *o += v;
        }
    }
    out
}

/// An HPKE config list as the leader serves it (for checks on the wire format).
pub fn config_list(url: &str) -> (String, HpkeConfigList) {
    let mut response = ureq::get(&format!("{url}hpke_config")).call().unwrap();
    let media_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.body_mut().read_to_vec().unwrap();
    (media_type, HpkeConfigList::get_decoded(&body).unwrap())
}
