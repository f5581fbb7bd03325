//! Throughput of private aggregation on this machine, beside prio's own cost, in one run.
//!
//! Starts the real `tally-server` binary as DAP leader and helper (`tally-server dap leader`,
//! `dap helper`: each its own process and store, loopback, the stores on the local disk through
//! `tally-service`, synced before an upload is answered), provisions a task whose vector has `--entries`
//! one-bit entries, builds `--reports` reports with tally's client (before the clock starts),
//! uploads them over `--connections` keep-alive connections, and stops the clock when the leader
//! has aggregated every one with the helper. Then, in the same process, it times prio's own
//! preparation of the same reports on one core: both aggregators' preparation steps alone, and
//! with the HPKE opening of each share. The ratio of the aggregators' CPU time per report to
//! that cost is what DAP's protocol, HTTP and storage add.
//!
//! With `--takeovers N`, it then times a standby replica's takeover N times per role: a
//! `--standby` process started beside the serving one, which is killed -9; the time from the
//! kill until the standby listens (it took the store's lease and read the store, which holds
//! the run's job records).
//!
//! `bench/dap/run.sh` builds and runs it; usage:
//! `dap_throughput --server PATH [--reports N] [--entries N] [--connections N] [--takeovers N]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prio::topology::ping_pong::{PingPongContinuedValue, PingPongState, PingPongTopology};
use prio::vdaf::Vdaf as _;
use tally_dap::client::{ReportBuilder, UploadOutcome};
use tally_dap::draft::messages::{
    Decode, Encode, ParameterizedDecode, PlaintextInputShare, Report, Role, TaskId,
};
use tally_dap::draft::{self, HpkeKeypair, Label};
use tally_dap::layout::Layout;
use tally_test_support::command::Reaped;
use tally_test_support::dap;

struct Args {
    server: PathBuf,
    reports: usize,
    entries: usize,
    connections: usize,
    takeovers: usize,
}

fn args() -> Args {
    let mut args = Args {
        server: PathBuf::new(),
        reports: 20_000,
        entries: 1_000,
        connections: 32,
        takeovers: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => args.server = value.into(),
            "--reports" => args.reports = value.parse().unwrap(),
            "--entries" => args.entries = value.parse().unwrap(),
            "--connections" => args.connections = value.parse().unwrap(),
            "--takeovers" => args.takeovers = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        args.server.exists(),
        "--server must name the tally-server binary"
    );
    args
}

fn start(bin: &Path, role: &str, store: &Path, port: u16, log: &Path) -> Reaped {
    let (mut child, address) = spawn(bin, role, store, port, log, &[]);
    dap::wait_until_listening(&mut child, role, &address, log);
    Reaped(child)
}

/// Spawns an aggregator with `args` beyond the usual, its standard error appended to `log`;
/// the child and the file it writes its address to once it listens.
fn spawn(
    bin: &Path,
    role: &str,
    store: &Path,
    port: u16,
    log: &Path,
    args: &[&str],
) -> (std::process::Child, PathBuf) {
    let address = store.with_extension("address");
    let _ = std::fs::remove_file(&address);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = dap::aggregator_command(bin, role, store.to_str().unwrap(), port, &address)
        .args(args)
        .stderr(log)
        .spawn()
        .unwrap();
    (child, address)
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    let args = args();
    let deployment = deploy(&args);
    let (reports, build_time) = build_reports(&args, &deployment);
    let report_bytes = reports[0].len();
    let reports = Arc::new(reports);
    let throughput = measure_throughput(&args, &deployment, &reports);
    let prio = measure_prio(&deployment, &reports);
    print_results(&args, report_bytes, build_time, &throughput, &prio);
    assert_eq!(throughput.rejected, 0);
    assert_eq!(throughput.aggregated, args.reports as u64);
    let mut deployment = deployment;
    if args.takeovers > 0 {
        measure_takeovers(&args, &mut deployment);
    }
    let Deployment {
        dir,
        leader,
        helper,
        ..
    } = deployment;
    drop((leader, helper));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A leader and a helper running on loopback with one task, and what a client needs of it.
struct Deployment {
    dir: PathBuf,
    config: tally_dap::AggregationConfig,
    task_id: TaskId,
    leader: Reaped,
    helper: Reaped,
    /// The leader's and the helper's ports.
    ports: (u16, u16),
}

impl Deployment {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Makes the collector's keys, provisions a task whose vector has exactly `--entries`
/// entries on both aggregators, and starts them.
fn deploy(args: &Args) -> Deployment {
    let dir = tempfile_dir();
    let p = |name: &str| dir.join(name);
    let (leader_store, helper_store) = (p("leader"), p("helper"));
    let task = dap::provision(
        &args.server,
        &dir,
        &dap::TaskSpec {
            layout: &serde_json::to_vec(&layout_of(args.entries)).unwrap(),
            min_batch_size: 100,
            time_precision: 3600,
            leader_store: leader_store.to_str().unwrap(),
            helper_store: helper_store.to_str().unwrap(),
            env: &[],
        },
    );
    let config =
        tally_dap::AggregationConfig::parse(&std::fs::read(&task.section).unwrap()).unwrap();
    let start_role = |role: &str, port: u16| {
        start(
            &args.server,
            role,
            &p(role),
            port,
            &p(&format!("{role}.log")),
        )
    };
    let helper = start_role("helper", task.helper_port);
    let leader = start_role("leader", task.leader_port);
    let task_id = tally_dap::draft::task_id(&config).unwrap();
    Deployment {
        dir,
        config,
        task_id,
        leader,
        helper,
        ports: (task.leader_port, task.helper_port),
    }
}

/// `--takeovers` times per role: a standby beside the serving process, the serving process
/// killed -9, and the time until the standby listens on its port; printed as the median and
/// the range.
fn measure_takeovers(args: &Args, deployment: &mut Deployment) {
    for role in ["helper", "leader"] {
        let mut times = Vec::new();
        for _ in 0..args.takeovers {
            let (store, log) = (
                deployment.path(role),
                deployment.path(&format!("{role}.log")),
            );
            let port = if role == "leader" {
                deployment.ports.0
            } else {
                deployment.ports.1
            };
            let said = std::fs::read_to_string(&log).unwrap().len();
            let (mut standby, address) =
                spawn(&args.server, role, &store, port, &log, &["--standby"]);
            // Standing by once it says so.
            while !std::fs::read_to_string(&log).unwrap()[said..].contains("standing by") {
                assert!(standby.try_wait().unwrap().is_none(), "the standby exited");
                std::thread::sleep(Duration::from_millis(10));
            }
            let serving = if role == "leader" {
                &mut deployment.leader
            } else {
                &mut deployment.helper
            };
            let killed = Instant::now();
            serving.0.kill().unwrap();
            serving.0.wait().unwrap();
            dap::wait_until_listening(&mut standby, role, &address, &log);
            times.push(killed.elapsed());
            *serving = Reaped(standby);
        }
        times.sort();
        println!(
            "takeover by a standby, {role}: median {:.0} ms (from {:.0} to {:.0} ms, {} kills), the store holding {} job records",
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            times.len(),
            job_records(&deployment.path(role)),
        );
    }
}

/// Job records in an aggregator's store (`tasks/<t>/jobs/` or `agg_jobs/`).
fn job_records(store: &Path) -> usize {
    let Ok(tasks) = std::fs::read_dir(store.join("tasks")) else {
        return 0;
    };
    tasks
        .flatten()
        .flat_map(|task| {
            ["jobs", "agg_jobs"]
                .into_iter()
                .filter_map(move |dir| std::fs::read_dir(task.path().join(dir)).ok())
        })
        .map(|entries| entries.count())
        .sum()
}

/// A vector of exactly `entries`: one program's 4 fixed entries, then counters.
fn layout_of(entries: usize) -> Layout {
    let layout: Layout = serde_json::from_value(dap::presence_layout(entries - 4)).unwrap();
    assert_eq!(layout.len(), entries);
    layout
}

/// `--reports` reports of random measurements, built on two threads with tally's client before
/// the clock starts (their cost is the client benchmark's); how long that took.
fn build_reports(args: &Args, deployment: &Deployment) -> (Vec<Vec<u8>>, Duration) {
    let config = &deployment.config;
    let agent = tally_dap::client::agent(Duration::from_secs(60));
    let leader_config =
        tally_dap::client::fetch_hpke_config(&agent, &config.leader, &deployment.task_id).unwrap();
    let helper_config =
        tally_dap::client::fetch_hpke_config(&agent, &config.helper, &deployment.task_id).unwrap();
    let builder = ReportBuilder::from_config(config).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = Instant::now();
    let per_thread = args.reports.div_ceil(2);
    let reports: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (builder, leader_config, helper_config) =
                    (&builder, &leader_config, &helper_config);
                let entries = args.entries;
                let count = per_thread.min(args.reports - t * per_thread);
                scope.spawn(move || {
                    (0..count)
                        .map(|_| {
                            let m: Vec<u128> = (0..entries)
                                .map(|_| u128::from(rand::random::<bool>()))
                                .collect();
                            builder
                                .build(&m, now - 3600, leader_config, helper_config)
                                .unwrap()
                                .get_encoded()
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    (reports, started.elapsed())
}

/// What the throughput run measured.
struct Throughput {
    uploaded: Duration,
    /// Until every report was aggregated.
    total: Duration,
    aggregated: u64,
    rejected: u64,
    helper_aggregated: u64,
    jobs: u64,
    /// CPU seconds per report: leader, helper, this load generator.
    cpu: (f64, f64, f64),
}

/// Uploads every report over `--connections` keep-alive connections and waits until the
/// leader has aggregated every one with the helper.
fn measure_throughput(
    args: &Args,
    deployment: &Deployment,
    reports: &Arc<Vec<Vec<u8>>>,
) -> Throughput {
    let pids = [
        deployment.leader.0.id(),
        deployment.helper.0.id(),
        std::process::id(),
    ];
    let cpu_before = pids.map(cpu_seconds);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let uploaders: Vec<_> = (0..args.connections)
        .map(|_| {
            let (reports, next) = (Arc::clone(reports), Arc::clone(&next));
            let (leader_url, task_id) = (deployment.config.leader.clone(), deployment.task_id);
            std::thread::spawn(move || {
                let agent = tally_dap::client::agent(Duration::from_secs(60));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(report) = reports.get(i) else { break };
                    match tally_dap::client::upload_encoded(&agent, &leader_url, &task_id, report) {
                        UploadOutcome::Accepted => {}
                        other => panic!("upload {i}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for u in uploaders {
        u.join().unwrap();
    }
    let uploaded = started.elapsed();
    let leader_url = &deployment.config.leader;
    let (aggregated, rejected) = loop {
        let m = dap::metrics(leader_url);
        let aggregated = counter(&m, "tally_dap_reports_aggregated");
        let rejected = dap::sum_of(&m, "tally_dap_reports_rejected");
        if aggregated + rejected >= args.reports as u64 {
            break (aggregated, rejected);
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "aggregation stalled: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let total = started.elapsed();
    let cpu_after = pids.map(cpu_seconds);
    let n = args.reports as f64;
    let per_report = |i: usize| (cpu_after[i] - cpu_before[i]) / n;
    Throughput {
        uploaded,
        total,
        aggregated,
        rejected,
        helper_aggregated: counter(
            &dap::metrics(&deployment.config.helper),
            "tally_dap_reports_aggregated",
        ),
        jobs: counter(&dap::metrics(leader_url), "tally_dap_aggregation_jobs"),
        cpu: (per_report(0), per_report(1), per_report(2)),
    }
}

fn counter(metrics: &BTreeMap<String, u64>, name: &str) -> u64 {
    metrics.get(name).copied().unwrap_or(0)
}

/// prio's own cost per report on one core, in CPU seconds.
struct PrioCost {
    /// Both aggregators' preparation, shares already opened and decoded.
    preparation: f64,
    /// The same with the HPKE opening and decoding of both shares.
    with_hpke: f64,
}

/// What opening a report's shares takes: the task, the VDAF, both aggregators' keys.
struct Opener {
    task_id: TaskId,
    vdaf: draft::Vdaf,
    leader_keys: HpkeKeypair,
    helper_keys: HpkeKeypair,
}

/// A report with its public share and both input shares decoded.
type Opened = (Report, PublicShare, InputShare, InputShare);

impl Opener {
    fn input_share(&self, report: &Report, role: Role) -> InputShare {
        let (ct, keys) = if role == Role::Leader {
            (report.leader_encrypted_input_share(), &self.leader_keys)
        } else {
            (report.helper_encrypted_input_share(), &self.helper_keys)
        };
        let aad =
            draft::input_share_aad(self.task_id, report.metadata(), report.public_share()).unwrap();
        let plain = keys
            .open(
                &draft::application_info(Label::InputShare, Role::Client, role),
                ct,
                &aad,
            )
            .unwrap();
        let plain = PlaintextInputShare::get_decoded(&plain).unwrap();
        InputShare::get_decoded_with_param(&(&self.vdaf, role.index().unwrap()), plain.payload())
            .unwrap()
    }

    fn open(&self, bytes: &[u8]) -> Opened {
        let report = Report::get_decoded(bytes).unwrap();
        let public =
            PublicShare::get_decoded_with_param(&self.vdaf, report.public_share()).unwrap();
        let leader = self.input_share(&report, Role::Leader);
        let helper = self.input_share(&report, Role::Helper);
        (report, public, leader, helper)
    }

    fn prep(&self, verify_key: &[u8; 16], (report, public, leader, helper): &Opened) {
        std::hint::black_box(prep(&self.vdaf, verify_key, report, public, leader, helper));
    }
}

/// prio's own cost, on one core, for a sample of the same reports: both aggregators'
/// preparation (shares already opened and decoded), and the same with the HPKE opening.
fn measure_prio(deployment: &Deployment, reports: &[Vec<u8>]) -> PrioCost {
    let task_id = deployment.task_id;
    let task_file: serde_json::Value = serde_json::from_slice(
        &std::fs::read(deployment.path(&format!("leader/tasks/{task_id}/task.json"))).unwrap(),
    )
    .unwrap();
    let verify_key: [u8; 16] = base64_decode(task_file["verify_key"].as_str().unwrap())
        .try_into()
        .unwrap();
    let opener = Opener {
        task_id,
        vdaf: draft::vdaf(&deployment.config.vdaf).unwrap(),
        leader_keys: keypair(&deployment.path("leader")),
        helper_keys: keypair(&deployment.path("helper")),
    };
    let sample: Vec<&Vec<u8>> = reports.iter().take(2000).collect();
    let decoded: Vec<Opened> = sample.iter().map(|bytes| opener.open(bytes)).collect();
    let started = thread_cpu();
    for opened in &decoded {
        opener.prep(&verify_key, opened);
    }
    let preparation = (thread_cpu() - started) / decoded.len() as f64;
    let started = thread_cpu();
    for bytes in &sample {
        opener.prep(&verify_key, &opener.open(bytes));
    }
    let with_hpke = (thread_cpu() - started) / sample.len() as f64;
    assert_eq!(opener.vdaf.num_aggregators(), 2);
    PrioCost {
        preparation,
        with_hpke,
    }
}

fn print_results(
    args: &Args,
    report_bytes: usize,
    build_time: Duration,
    throughput: &Throughput,
    prio: &PrioCost,
) {
    let n = args.reports as f64;
    let Throughput {
        uploaded,
        total,
        aggregated,
        rejected,
        helper_aggregated,
        jobs,
        cpu: (leader_cpu, helper_cpu, loadgen_cpu),
    } = *throughput;
    let PrioCost {
        preparation: prio_only,
        with_hpke: prio_hpke,
    } = *prio;
    println!(
        "reports: {} of {} entries, {report_bytes} bytes each; {jobs} aggregation jobs; {} connections",
        args.reports, args.entries, args.connections
    );
    println!(
        "built in {:.1} s before the clock started ({:.2} ms per report per thread)",
        build_time.as_secs_f64(),
        build_time.as_secs_f64() * 2000.0 / n
    );
    println!(
        "uploaded:               {:>8.0} reports/s ({:.2} s)",
        n / uploaded.as_secs_f64(),
        uploaded.as_secs_f64()
    );
    println!(
        "uploaded + aggregated:  {:>8.0} reports/s ({:.2} s); leader aggregated {aggregated}, rejected {rejected}; helper aggregated {helper_aggregated}",
        n / total.as_secs_f64(),
        total.as_secs_f64()
    );
    println!(
        "CPU per report:         leader {:.3} ms, helper {:.3} ms, load generator {:.3} ms",
        leader_cpu * 1e3,
        helper_cpu * 1e3,
        loadgen_cpu * 1e3
    );
    println!(
        "prio, CPU per report:   {:.3} ms (both aggregators' preparation), {:.3} ms with the HPKE opening of both shares",
        prio_only * 1e3,
        prio_hpke * 1e3
    );
    println!(
        "prio alone on 2 cores:  {:>8.0} reports/s (preparation), {:.0} reports/s (with HPKE)",
        2.0 / prio_only,
        2.0 / prio_hpke
    );
    println!(
        "aggregators' CPU / prio's: {:.2}x of preparation, {:.2}x of preparation with HPKE",
        (leader_cpu + helper_cpu) / prio_only,
        (leader_cpu + helper_cpu) / prio_hpke
    );
}

type PublicShare = <draft::Vdaf as prio::vdaf::Vdaf>::PublicShare;
type InputShare = <draft::Vdaf as prio::vdaf::Vdaf>::InputShare;

/// Both aggregators' preparation of one report, as the ping-pong topology runs it.
fn prep(
    vdaf: &draft::Vdaf,
    verify_key: &[u8; 16],
    report: &Report,
    public: &PublicShare,
    leader: &InputShare,
    helper: &InputShare,
) -> <draft::Vdaf as prio::vdaf::Vdaf>::OutputShare {
    let nonce = report.metadata().id().as_ref();
    let (state, message) = vdaf
        .leader_initialized(verify_key, &(), nonce, public, leader)
        .unwrap();
    let transition = vdaf
        .helper_initialized(verify_key, &(), nonce, public, helper, &message)
        .unwrap();
    let (helper_state, reply) = transition.evaluate(vdaf).unwrap();
    assert!(matches!(helper_state, PingPongState::Finished(_)));
    match vdaf.leader_continued(state, &(), &reply).unwrap() {
        PingPongContinuedValue::FinishedNoMessage { output_share } => output_share,
        _ => panic!("one-round Prio3 finishes"),
    }
}

/// CPU seconds this thread has used (so that other load on the machine does not count).
fn thread_cpu() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD).unwrap();
    let (user, system) = (usage.user_time(), usage.system_time());
    user.tv_sec() as f64 + system.tv_sec() as f64 + (user.tv_usec() + system.tv_usec()) as f64 / 1e6
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// The one key pair in an aggregator's store.
fn keypair(store: &Path) -> HpkeKeypair {
    let entry = std::fs::read_dir(store.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
    let config = base64_decode(key["config"].as_str().unwrap());
    HpkeKeypair {
        config: tally_dap::draft::messages::HpkeConfig::get_decoded(&config).unwrap(),
        private_key: base64_decode(key["private_key"].as_str().unwrap()),
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-dap-throughput-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
