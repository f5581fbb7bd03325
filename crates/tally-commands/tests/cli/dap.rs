//! Private aggregation from the client's side, end to end: a signed upload config with an
//! `aggregation` section, a real leader and helper (`tally-server dap leader|helper`, their task
//! provisioned by `tally-server dap collector-keygen` and `dap provision`) on loopback, the real
//! `tally upload`, and tally's own DAP collector reading the sum.
//!
//! The aggregators check report times against the real clock, so the client's days here are
//! counted back from the real today: consent 20 days ago, counts 8 days ago (a week that began
//! after consent and has ended), the upload today.
//!
//! `tally-server` is built by the test (`cargo build -p tally-server`, the `CARGO` that runs
//! the test, same profile and target dir), as `demo_e2e` builds it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use tally_dap::collector::Collector as DapCollector;
use tally_dap::draft::HpkeKeypair;
use tally_dap::draft::messages::{
    HpkeAeadId, HpkeConfig, HpkeConfigId, HpkeKdfId, HpkeKemId, HpkePublicKey, Interval, Time,
};
use tally_protocol::config::aggregation::AggregationConfig;
use tally_protocol::{Day, Report};

use crate::support::{Collector, Fixture};
use tally_test_support::collector::FakeCollector;
use tally_test_support::command::Reaped;
use tally_test_support::dap;

/// `<target>/<profile>/tally-server`, built now.
fn tally_server() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps")
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut build = Command::new(cargo);
    build
        .current_dir(&root)
        .args(["build", "-p", "tally-server", "--bin", "tally-server"])
        .env("CARGO_TARGET_DIR", profile.parent().expect("target dir"));
    if profile.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    assert!(
        build.status().expect("run cargo build").success(),
        "cargo build of tally-server failed"
    );
    profile.join("tally-server")
}

/// One aggregator process, killed when dropped.
struct Aggregator {
    process: Reaped,
    url: String,
    log: PathBuf,
}

impl Aggregator {
    fn start(bin: &Path, role: &str, store: &Path, port: u16, dir: &Path) -> Aggregator {
        let address_file = dir.join(format!("{role}.address"));
        let log = dir.join(format!("{role}.log"));
        let _ = std::fs::remove_file(&address_file);
        let mut child =
            dap::aggregator_command(bin, role, store.to_str().unwrap(), port, &address_file)
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
        dap::wait_until_listening(&mut child, role, &address_file, &log);
        Aggregator {
            process: Reaped(child),
            url: format!("http://127.0.0.1:{port}/"),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of the process's counters whose names start with `prefix`.
    fn metric(&self, prefix: &str) -> u64 {
        dap::sum_of(&dap::metrics(&self.url), prefix)
    }
}

/// The layout the collector asks for: cargo's invocations (presence and a 4-bit count), builds
/// (presence), and release builds at a per-counter rate of one half.
fn layout() -> serde_json::Value {
    serde_json::json!({
        "os": [std::env::consts::OS],
        "arch": [std::env::consts::ARCH],
        "programs": [{
            "name": "cargo",
            "versions": ["1.95"],
            "counters": [
                { "name": "cargo/invocations", "count_bits": 4 },
                { "name": "cargo/subcommand:build" },
                { "name": "cargo/build/flag:--release", "rate": 0.5 }
            ],
            "by_version": []
        }]
    })
}

/// The collector's key pair and token, from the credential `dap collector-keygen` wrote.
fn collector_credential(path: &Path) -> (HpkeKeypair, String) {
    let credential: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let decode = |field: &str| {
        URL_SAFE_NO_PAD
            .decode(credential[field].as_str().unwrap())
            .unwrap()
    };
    let keypair = HpkeKeypair {
        config: HpkeConfig::new(
            HpkeConfigId::from(u8::try_from(credential["id"].as_u64().unwrap()).unwrap()),
            HpkeKemId::X25519HkdfSha256,
            HpkeKdfId::HkdfSha256,
            HpkeAeadId::Aes128Gcm,
            HpkePublicKey::from(decode("public_key")),
        ),
        private_key: decode("private_key"),
    };
    (keypair, credential["token"].as_str().unwrap().to_owned())
}

fn today() -> Day {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Day::from_unix_days(i64::try_from(secs / 86_400).unwrap()).unwrap()
}

/// A task on a running leader and helper, and a plain collector that serves a config signed
/// with its section (and records every request it gets).
struct Deployment {
    dir: tempfile::TempDir,
    bin: PathBuf,
    leader: Aggregator,
    /// Kept running (and killed when the deployment is dropped).
    _helper: Aggregator,
    leader_port: u16,
    section: AggregationConfig,
    server: FakeCollector,
    collector: Collector,
    consent: String,
    counted: String,
    upload_day: String,
}

impl Deployment {
    fn new() -> Deployment {
        let bin = tally_server();
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);

        // The collector's key, a task on both aggregators, and the aggregators running.
        let (leader_store, helper_store) = (p("leader"), p("helper"));
        let task = dap::provision(
            &bin,
            dir.path(),
            &dap::TaskSpec {
                layout: layout().to_string().as_bytes(),
                min_batch_size: 2,
                time_precision: 86_400,
                leader_store: leader_store.to_str().unwrap(),
                helper_store: helper_store.to_str().unwrap(),
                env: &[],
            },
        );
        let leader_port = task.leader_port;
        let section_bytes = std::fs::read(&task.section).unwrap();
        let section = AggregationConfig::parse(&section_bytes).unwrap();
        let helper = Aggregator::start(&bin, "helper", &helper_store, task.helper_port, dir.path());
        let leader = Aggregator::start(&bin, "leader", &leader_store, leader_port, dir.path());

        let server = FakeCollector::start();
        let collector = Collector::new();
        let mut config: serde_json::Value = serde_json::from_str(&collector.config(
            1,
            "2099-01-01",
            1.0,
            &[
                ("cargo/invocations", 1.0),
                ("cargo/subcommand:build", 1.0),
                ("cargo/build/flag:--release", 0.5),
            ],
        ))
        .unwrap();
        config["aggregation"] = serde_json::from_slice(&section_bytes).unwrap();
        let config = serde_json::to_string_pretty(&config).unwrap();
        collector.publish(&server, &config);

        let today = today();
        let day = |back: i64| today.plus_days(-back).unwrap().to_string();
        Deployment {
            dir,
            bin,
            leader,
            _helper: helper,
            leader_port,
            section,
            server,
            collector,
            consent: day(20),
            counted: day(8),
            upload_day: today.to_string(),
        }
    }

    /// A data directory that ran `tally on` with this collector on the consent day, then the
    /// `mode` command if one is given.
    fn home(&self, mode: &[&str]) -> Fixture {
        let fx = Fixture::new();
        let on = fx.run(
            &self.consent,
            &[],
            &[
                "on",
                "--endpoint",
                &self.server.url,
                "--key",
                &self.collector.key.public_base64,
            ],
        );
        assert!(on.ok(), "{on:?}");
        if !mode.is_empty() {
            let changed = fx.run(&self.consent, &[], mode);
            assert!(changed.ok(), "{changed:?}");
        }
        fx
    }

    fn restart_leader(&mut self) {
        let store = self.dir.path().join("leader");
        self.leader = Aggregator::start(
            &self.bin,
            "leader",
            &store,
            self.leader_port,
            self.dir.path(),
        );
    }
}

#[test]
fn with_aggregation_in_the_config_but_tally_local_or_off_nothing_is_sent() {
    let d = Deployment::new();
    for mode in [&["local"][..], &["off"][..]] {
        let fx = d.home(mode);
        fx.count(&d.counted, "cargo", "1.95.0", &[("cargo/invocations", 3)]);
        let out = fx.run(&d.upload_day, &[], &["upload"]);
        assert!(out.ok(), "{out:?}");
        assert!(fx.reports("sent").is_empty(), "{out:?}");
        assert!(fx.reports("pending").is_empty(), "{out:?}");
    }
    assert_eq!(
        d.leader.metric("tally_dap_uploads"),
        0,
        "{}",
        d.leader.log_text()
    );
    assert!(d.server.uploads().is_empty());
    // The control: an installation in mode on reaches the leader.
    let fx = d.home(&[]);
    fx.count(&d.counted, "cargo", "1.95.0", &[("cargo/invocations", 3)]);
    let out = fx.run(&d.upload_day, &[], &["upload"]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(d.leader.metric("tally_dap_uploads_accepted"), 1);
}

#[test]
fn a_config_with_aggregation_sends_only_a_dap_report_and_the_collector_gets_the_exact_sum() {
    let mut d = Deployment::new();
    let (counted, upload_day) = (d.counted.clone(), d.upload_day.clone());
    let section = d.section.clone();

    // Two installations in mode on count different things in the same week.
    let counts: [&[(&str, u64)]; 2] = [
        &[
            ("cargo/invocations", 5),
            ("cargo/subcommand:build", 4),
            ("cargo/build/flag:--release", 1),
        ],
        &[("cargo/invocations", 20), ("cargo/build/flag:--release", 2)],
    ];
    let mut pending_reports = Vec::new();
    let mut homes = Vec::new();
    for counters in counts {
        let fx = d.home(&[]);
        fx.count(&counted, "cargo", "1.95.0", counters);
        let uploads_before = leader_uploads(&d);
        // A dry run builds the week's report and shows the vector, sending nothing.
        let dry = fx.run(&upload_day, &[], &["upload", "--dry-run"]);
        assert!(dry.ok(), "{dry:?}");
        assert!(dry.stdout.contains(&section.leader), "{}", dry.stdout);
        assert!(!dry.stdout.contains("/upload/"), "{}", dry.stdout);
        assert!(dry.stdout.contains(&section.helper), "{}", dry.stdout);
        assert_eq!(leader_uploads(&d), uploads_before);
        let pending = fx.reports("pending");
        assert_eq!(pending.len(), 1, "{dry:?}");
        let bytes = std::fs::read(fx.home.reports_dir().join("pending").join(&pending[0])).unwrap();
        let report = Report::parse(&bytes).unwrap();

        // `tally status` names the mode and both aggregators; `tally preview` shows the exact
        // vector, entry by entry, and names both aggregators.
        let status = fx.run(&upload_day, &[], &["status"]);
        assert!(status.ok(), "{status:?}");
        let mode_line = status
            .stdout
            .lines()
            .find(|l| l.starts_with("Upload mode:"))
            .unwrap_or_else(|| panic!("{}", status.stdout));
        assert!(mode_line.contains("private aggregation"), "{mode_line}");
        assert!(mode_line.contains(&section.leader), "{mode_line}");
        assert!(mode_line.contains(&section.helper), "{mode_line}");
        let preview = fx.run(&upload_day, &[], &["preview"]);
        assert!(preview.ok(), "{preview:?}");
        assert!(
            preview.stdout.contains(&section.leader),
            "{}",
            preview.stdout
        );
        assert!(
            preview.stdout.contains(&section.helper),
            "{}",
            preview.stdout
        );
        let shown: Vec<(usize, u128)> = preview
            .stdout
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.trim().split("  ").collect();
                Some((fields.first()?.parse().ok()?, fields.last()?.parse().ok()?))
            })
            .collect();
        let vector = section.layout.measurement(&report);
        assert_eq!(
            shown,
            vector.iter().copied().enumerate().collect::<Vec<_>>(),
            "{}",
            preview.stdout
        );
        assert_eq!(leader_uploads(&d), uploads_before);
        pending_reports.push(report);

        let out = fx.run(&upload_day, &[], &["upload"]);
        assert!(out.ok(), "{out:?}");
        // Filed as sent, with the vector that was sent noted beside it.
        let note = format!("{}.dap", pending[0]);
        assert_eq!(
            fx.reports("sent"),
            [pending[0].clone(), note.clone()],
            "{out:?}"
        );
        let noted: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fx.home.reports_dir().join("sent").join(&note)).unwrap(),
        )
        .unwrap();
        let noted_vector: Vec<u64> = noted["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["value"].as_u64().unwrap())
            .collect();
        assert_eq!(
            noted_vector,
            vector.iter().map(|v| *v as u64).collect::<Vec<_>>()
        );
        assert_eq!(noted["leader"], section.leader.as_str());
        assert!(fx.reports("pending").is_empty());
        // Sent once: the next run sends nothing more.
        let again = fx.run(&upload_day, &[], &["upload"]);
        assert!(again.ok(), "{again:?}");
        homes.push(fx);
    }
    assert_eq!(
        d.leader.metric("tally_dap_uploads_accepted"),
        2,
        "{}",
        d.leader.log_text()
    );
    // No plain report reached the plain endpoint: it served the config, nothing else.
    let requests = d.server.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.method == "GET" && r.path.starts_with("/config.json")),
        "{:?}",
        requests
            .iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    );

    // The collector collects the week and gets exactly the two installations' sum.
    tally_test_support::wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        if d.leader.metric("tally_dap_reports_aggregated") >= 2 {
            Ok(())
        } else {
            Err(d.leader.log_text())
        }
    });
    let week = pending_reports[0].week;
    let (keypair, token) = collector_credential(&d.dir.path().join("collector.json"));
    let dap = DapCollector::new(
        &section.leader,
        tally_dap::draft::task_id(&section).unwrap(),
        token,
        keypair,
        tally_dap::draft::vdaf(&section.vdaf).unwrap(),
        Duration::from_secs(30),
    );
    let interval = Interval::new(
        Time::from_seconds_since_epoch(tally_dap::client::report_time(week)),
        tally_dap::draft::messages::Duration::from_seconds(7 * 86_400),
    )
    .unwrap();
    let collected = dap
        .collect(
            interval,
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}: {}", d.leader.log_text()));
    assert_eq!(collected.report_count, 2);

    let layout = &section.layout;
    let mut expected = vec![0u128; layout.len()];
    for report in &pending_reports {
        for (sum, bit) in expected.iter_mut().zip(layout.measurement(report)) {
            *sum += bit;
        }
    }
    assert_eq!(collected.aggregate, expected);
    // And what the sum means, from the counts themselves: both reported cargo, 5 + 15 (20
    // clipped to 4 bits) invocations, one build; release builds as the per-counter rate of
    // one half says, counted only for reports whose x is at most 0.5.
    let sums = layout.interpret(&collected.aggregate).unwrap();
    let cargo = &sums["cargo"];
    assert_eq!(cargo.reports, 2);
    let invocations = &cargo.counters["cargo/invocations"];
    assert_eq!(
        (invocations.reports_with, invocations.total),
        (2, Some(5 + 15))
    );
    assert_eq!(cargo.counters["cargo/subcommand:build"].reports_with, 1);
    let sampled = pending_reports.iter().filter(|r| r.x <= 0.5).count() as u64;
    let release = &cargo.counters["cargo/build/flag:--release"];
    assert_eq!((release.reports_with, release.of), (sampled, sampled));

    // A third installation of the same week: with the leader down its week stays pending and
    // is tried on the next run; by then the week's batch has been collected, so the leader
    // refuses it (reportRejected), and the refused week is filed away and never sent again.
    let late = d.home(&[]);
    late.count(&counted, "cargo", "1.95.0", &[("cargo/invocations", 1)]);
    d.leader.process.0.kill().unwrap();
    d.leader.process.0.wait().unwrap();
    let out = late.run(&upload_day, &[], &["upload"]);
    assert!(out.stdout.contains("1 kept for a later try"), "{out:?}");
    assert!(out.stderr.contains("tried again on a later run"), "{out:?}");
    assert_eq!(late.reports("pending").len(), 1, "{out:?}");
    d.restart_leader();
    let out = late.run(&upload_day, &[], &["upload"]);
    assert!(out.ok(), "{out:?}");
    assert!(late.reports("pending").is_empty(), "{out:?}");
    let refused = late.reports("refused");
    assert_eq!(refused.len(), 2, "the report and its reason: {refused:?}");
    let reason = std::fs::read_to_string(
        late.home
            .reports_dir()
            .join("refused")
            .join(format!("{}.reason", pending_name(&refused))),
    )
    .unwrap();
    assert!(reason.contains("reportRejected"), "{reason}");
    let rejected = d.leader.metric("tally_dap_uploads_refused");
    assert_eq!(rejected, 1, "{}", d.leader.log_text());
    let out = late.run(&upload_day, &[], &["upload"]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(d.leader.metric("tally_dap_uploads_refused"), rejected);
    assert_eq!(
        d.leader.metric("tally_dap_uploads_accepted"),
        0,
        "a new process"
    );
    assert!(d.server.uploads().is_empty());
    drop(homes);
}

/// Every upload the leader has answered, accepted or not.
fn leader_uploads(d: &Deployment) -> u64 {
    d.leader.metric("tally_dap_uploads")
}

/// The report's name among a folder's files (`<week>.json`, beside its `.reason`).
fn pending_name(names: &[String]) -> &str {
    names
        .iter()
        .find(|n| n.ends_with(".json"))
        .expect("a report")
}

/// Every file under `dir`, read as text (lossily).
fn texts_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Counter names made of random secrets (as if a grammar had leaked an argument), in a week
    /// sent by private aggregation: no secret reaches any file the client writes (reports,
    /// the sent vector's note, the last upload's record), what it prints, the plain endpoint,
    /// or any file of either aggregator's store or log.
    #[test]
    fn secrets_in_counter_names_reach_no_file_in_private_aggregation_mode(
        secrets in proptest::collection::vec("[A-Za-z0-9]{12,24}".prop_map(|s| format!("ghp_{s}")), 1..3),
        count in 1u64..1000,
    ) {
        let d = Deployment::new();
        let fx = d.home(&[]);
        let mut counters: Vec<(String, u64)> = vec![("cargo/invocations".into(), count)];
        for secret in &secrets {
            counters.push((format!("cargo/build/flag:--token={secret}"), count));
            counters.push((secret.clone(), count));
        }
        let refs: Vec<(&str, u64)> = counters.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        fx.count(&d.counted, "cargo", "1.95.0", &refs);
        let preview = fx.run(&d.upload_day, &[], &["preview"]);
        let out = fx.run(&d.upload_day, &[], &["upload"]);
        prop_assert!(out.ok(), "{:?}", out);
        prop_assert_eq!(fx.reports("sent").len(), 2);
        prop_assert!(d.server.uploads().is_empty());

        let mut written = texts_under(fx.root());
        written.extend(texts_under(d.dir.path()));
        written.push(("preview".into(), preview.stdout + &preview.stderr));
        written.push(("upload".into(), out.stdout + &out.stderr));
        prop_assert!(written.iter().any(|(p, _)| p.ends_with("leader.log")));
        for (path, text) in &written {
            // The counter files and the local report hold what was counted, on this machine
            // only; nothing else may.
            if path.starts_with(fx.home.counters_dir())
                || path.starts_with(fx.home.reports_dir().join("local"))
            {
                continue;
            }
            for secret in &secrets {
                prop_assert!(!text.contains(secret.as_str()), "secret {:?} in {}", secret, path.display());
            }
        }
    }
}
