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
//! `bench/dap/run.sh` builds and runs it; usage:
//! `dap_throughput --server PATH [--reports N] [--entries N] [--connections N]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prio::topology::ping_pong::{PingPongContinuedValue, PingPongState, PingPongTopology};
use prio::vdaf::Vdaf as _;
use tally_dap::client::{ReportBuilder, UploadOutcome};
use tally_dap::draft::messages::{
    Decode, Encode, InputShareAad, ParameterizedDecode, PlaintextInputShare, Report, Role,
};
use tally_dap::draft::{self, HpkeKeypair, Label};
use tally_dap::layout::{CounterLayout, Layout, ProgramLayout};

struct Args {
    server: PathBuf,
    reports: usize,
    entries: usize,
    connections: usize,
}

fn args() -> Args {
    let mut args = Args {
        server: PathBuf::new(),
        reports: 20_000,
        entries: 1_000,
        connections: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => args.server = value.into(),
            "--reports" => args.reports = value.parse().unwrap(),
            "--entries" => args.entries = value.parse().unwrap(),
            "--connections" => args.connections = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        args.server.exists(),
        "--server must name the tally-server binary"
    );
    args
}

fn run(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(bin: &Path, role: &str, store: &Path, port: u16, log: &Path) -> Process {
    let address = store.with_extension("address");
    let child = Command::new(bin)
        .args(["dap", role, "--store"])
        .arg(store)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--address-file"])
        .arg(&address)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !address.exists() {
        assert!(Instant::now() < deadline, "{role} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Process(child)
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn metrics(url: &str) -> BTreeMap<String, u64> {
    let text = ureq::get(&format!("{url}metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn main() {
    let args = args();
    let dir = tempfile_dir();
    let p = |name: &str| dir.join(name);
    let s = |path: PathBuf| path.to_str().unwrap().to_owned();
    run(
        &args.server,
        &[
            "dap",
            "collector-keygen",
            "--credential-out",
            &s(p("collector.json")),
            "--public-out",
            &s(p("collector-public.json")),
        ],
    );
    // A vector of exactly `entries`: one program's 4 fixed entries, then counters.
    let layout = Layout {
        os: vec!["linux".into()],
        arch: vec!["x86_64".into()],
        programs: vec![ProgramLayout {
            name: "cargo".into(),
            versions: vec![],
            counters: (0..args.entries - 4)
                .map(|i| CounterLayout {
                    name: format!("cargo/c{i}"),
                    rate: 1.0,
                    count_bits: 0,
                })
                .collect(),
            by_version: vec![],
        }],
    };
    assert_eq!(layout.len(), args.entries);
    std::fs::write(p("layout.json"), serde_json::to_vec(&layout).unwrap()).unwrap();
    let (leader_port, helper_port) = (free_port(), free_port());
    run(
        &args.server,
        &[
            "dap",
            "provision",
            "--leader-store",
            &s(p("leader")),
            "--helper-store",
            &s(p("helper")),
            "--leader-url",
            &format!("http://127.0.0.1:{leader_port}/"),
            "--helper-url",
            &format!("http://127.0.0.1:{helper_port}/"),
            "--collector-public",
            &s(p("collector-public.json")),
            "--layout",
            &s(p("layout.json")),
            "--min-batch-size",
            "100",
            "--time-precision",
            "3600",
            "--config-out",
            &s(p("aggregation.json")),
        ],
    );
    let config =
        tally_dap::AggregationConfig::parse(&std::fs::read(p("aggregation.json")).unwrap())
            .unwrap();
    let helper = start(
        &args.server,
        "helper",
        &p("helper"),
        helper_port,
        &p("helper.log"),
    );
    let leader = start(
        &args.server,
        "leader",
        &p("leader"),
        leader_port,
        &p("leader.log"),
    );
    let task_id = tally_dap::draft::task_id(&config).unwrap();
    let agent = tally_dap::client::agent(Duration::from_secs(60));
    let leader_config =
        tally_dap::client::fetch_hpke_config(&agent, &config.leader, &task_id).unwrap();
    let helper_config =
        tally_dap::client::fetch_hpke_config(&agent, &config.helper, &task_id).unwrap();
    let builder = ReportBuilder::from_config(&config).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Reports, built before the clock starts (their cost is the client benchmark's).
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
    let build_time = started.elapsed();
    let report_bytes = reports[0].len();

    // Throughput: upload everything, wait until everything is aggregated.
    let reports = Arc::new(reports);
    let cpu_before = (
        cpu_seconds(leader.0.id()),
        cpu_seconds(helper.0.id()),
        cpu_seconds(std::process::id()),
    );
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let uploaders: Vec<_> = (0..args.connections)
        .map(|_| {
            let (reports, next) = (Arc::clone(&reports), Arc::clone(&next));
            let (leader_url, task_id) = (config.leader.clone(), task_id);
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
    let leader_url = config.leader.clone();
    let (aggregated, rejected) = loop {
        let m = metrics(&leader_url);
        let aggregated = m.get("tally_dap_reports_aggregated").copied().unwrap_or(0);
        let rejected: u64 = m
            .iter()
            .filter(|(k, _)| k.starts_with("tally_dap_reports_rejected"))
            .map(|(_, v)| *v)
            .sum();
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
    let cpu_after = (
        cpu_seconds(leader.0.id()),
        cpu_seconds(helper.0.id()),
        cpu_seconds(std::process::id()),
    );
    let helper_aggregated = metrics(&config.helper)
        .get("tally_dap_reports_aggregated")
        .copied()
        .unwrap_or(0);
    let jobs = metrics(&leader_url)
        .get("tally_dap_aggregation_jobs")
        .copied()
        .unwrap_or(0);

    // prio's own cost, on one core, for a sample of the same reports: both aggregators'
    // preparation (shares already opened and decoded), and the same with the HPKE opening.
    let (leader_keys, helper_keys) = (keypair(&p("leader")), keypair(&p("helper")));
    let task_file: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p(&format!("leader/tasks/{task_id}/task.json"))).unwrap(),
    )
    .unwrap();
    let verify_key: [u8; 16] = base64_decode(task_file["verify_key"].as_str().unwrap())
        .try_into()
        .unwrap();
    let vdaf = draft::vdaf(&config.vdaf).unwrap();
    let sample: Vec<&Vec<u8>> = reports.iter().take(2000).collect();
    let open = |report: &Report, keys: &HpkeKeypair, role: Role| {
        let ct = if role == Role::Leader {
            report.leader_encrypted_input_share()
        } else {
            report.helper_encrypted_input_share()
        };
        let aad = InputShareAad::new(
            task_id,
            report.metadata().clone(),
            report.public_share().to_vec(),
        )
        .get_encoded()
        .unwrap();
        let plain = keys
            .open(
                &draft::application_info(Label::InputShare, Role::Client, role),
                ct,
                &aad,
            )
            .unwrap();
        let plain = PlaintextInputShare::get_decoded(&plain).unwrap();
        <draft::Vdaf as prio::vdaf::Vdaf>::InputShare::get_decoded_with_param(
            &(&vdaf, role.index().unwrap()),
            plain.payload(),
        )
        .unwrap()
    };
    let decoded: Vec<_> = sample
        .iter()
        .map(|bytes| {
            let report = Report::get_decoded(bytes).unwrap();
            let public = <draft::Vdaf as prio::vdaf::Vdaf>::PublicShare::get_decoded_with_param(
                &vdaf,
                report.public_share(),
            )
            .unwrap();
            let l = open(&report, &leader_keys, Role::Leader);
            let h = open(&report, &helper_keys, Role::Helper);
            (report, public, l, h)
        })
        .collect();
    let started = thread_cpu();
    for (report, public, l, h) in &decoded {
        std::hint::black_box(prep(&vdaf, &verify_key, report, public, l, h));
    }
    let prio_only = (thread_cpu() - started) / decoded.len() as f64;
    let started = thread_cpu();
    for bytes in &sample {
        let report = Report::get_decoded(bytes).unwrap();
        let public = <draft::Vdaf as prio::vdaf::Vdaf>::PublicShare::get_decoded_with_param(
            &vdaf,
            report.public_share(),
        )
        .unwrap();
        let l = open(&report, &leader_keys, Role::Leader);
        let h = open(&report, &helper_keys, Role::Helper);
        std::hint::black_box(prep(&vdaf, &verify_key, &report, &public, &l, &h));
    }
    let prio_hpke = (thread_cpu() - started) / sample.len() as f64;
    assert_eq!(vdaf.num_aggregators(), 2);

    let n = args.reports as f64;
    let leader_cpu = (cpu_after.0 - cpu_before.0) / n;
    let helper_cpu = (cpu_after.1 - cpu_before.1) / n;
    let loadgen_cpu = (cpu_after.2 - cpu_before.2) / n;
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
    assert_eq!(rejected, 0);
    assert_eq!(aggregated, args.reports as u64);
    drop((leader, helper));
    let _ = std::fs::remove_dir_all(&dir);
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
