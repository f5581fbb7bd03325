//! A deployment for tests: the real `tally-server` binary as two processes (`dap leader` and
//! `dap helper`, each with its own store and log), on loopback ports, with a task provisioned
//! by the binary's own `dap collector-keygen` and `dap provision`. The stores are directories,
//! or prefixes of a moto (S3) bucket.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tally_dap::AggregationConfig;
use tally_dap::draft::messages::{
    Decode, HpkeConfig, HpkeConfigList, Interval, Report, TaskId, Time,
};
use tally_dap::layout::{CounterLayout, Layout, ProgramLayout};
use tally_dap_aggregator::provision::CollectorCredential;

pub const BIN: &str = env!("CARGO_BIN_EXE_tally-server");

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
        let _ = std::fs::remove_file(&address_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["dap", self.role, "--store", &self.store])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--address-file")
            .arg(&address_file)
            .args(["--key-reload-secs", "1"])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !address_file.exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} exited with {status}: {}",
                    self.role,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "{} did not start", self.role);
            std::thread::sleep(Duration::from_millis(20));
        }
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
        let text = ureq::get(&format!("{}metrics", self.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        tally_dap_aggregator::metrics::parse(&text)
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
    Layout {
        os: vec!["linux".into()],
        arch: vec!["x86_64".into()],
        programs: vec![ProgramLayout {
            name: "cargo".into(),
            versions: vec![],
            counters: (0..counters)
                .map(|i| CounterLayout {
                    name: format!("cargo/c{i}"),
                    rate: 1.0,
                    count_bits: 0,
                })
                .collect(),
            by_version: vec![],
        }],
    }
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
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tally-server {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn run(args: &[&str]) -> String {
    run_with(args, &[])
}

pub fn deploy(options: Options) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_owned();
    run(&[
        "dap",
        "collector-keygen",
        "--credential-out",
        &s(&p("collector.json")),
        "--public-out",
        &s(&p("collector-public.json")),
    ]);
    std::fs::write(
        p("layout.json"),
        serde_json::to_vec(&options.layout).unwrap(),
    )
    .unwrap();
    let (leader_port, helper_port) = (free_port(), free_port());
    let (leader_store, helper_store, env) = match &options.s3 {
        None => (s(&p("leader")), s(&p("helper")), vec![]),
        Some((endpoint, prefix)) => (
            format!("s3://{}/{prefix}/leader", tally_service::testing::BUCKET),
            format!("s3://{}/{prefix}/helper", tally_service::testing::BUCKET),
            tally_service::testing::moto_env(endpoint)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ),
    };
    run_with(
        &[
            "dap",
            "provision",
            "--leader-store",
            &leader_store,
            "--helper-store",
            &helper_store,
            "--leader-url",
            &format!("http://127.0.0.1:{leader_port}/"),
            "--helper-url",
            &format!("http://127.0.0.1:{helper_port}/"),
            "--collector-public",
            &s(&p("collector-public.json")),
            "--layout",
            &s(&p("layout.json")),
            "--min-batch-size",
            &options.min_batch_size.to_string(),
            "--time-precision",
            &options.time_precision.to_string(),
            "--config-out",
            &s(&p("aggregation.json")),
        ],
        &env,
    );
    let config = AggregationConfig::parse(&std::fs::read(p("aggregation.json")).unwrap()).unwrap();
    let credential: CollectorCredential =
        serde_json::from_slice(&std::fs::read(p("collector.json")).unwrap()).unwrap();
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
        credential_path: p("collector.json"),
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
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let m = self.leader.metrics();
            let done: u64 = m
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("tally_dap_reports_aggregated")
                        || k.starts_with("tally_dap_reports_rejected")
                })
                .map(|(_, v)| *v)
                .sum();
            if done >= reports {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {done} of {reports} reports aggregated: {m:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
pub fn now() -> u64 {
    tally_dap_aggregator::server::unix_now()
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
