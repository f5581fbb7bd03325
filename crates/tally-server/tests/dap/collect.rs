//! `tally-server serve` in private-aggregation mode collects each ended week itself: a real
//! leader and helper (`tally-server dap`), reports built by tally's client from plain weeks
//! through the served config's layout and uploaded over DAP, and the collector (`serve
//! --dap-credential`, its clock a week on with `TALLY_NOW`) publishing the aggregate on its
//! API, its dashboard, `/data/` and `export`; then the failure cases: the leader down, a batch
//! below the minimum, a restart in the middle of a collection.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tally_dap::client::UploadOutcome;
use tally_protocol::Day;
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex, bucket_week};

use crate::support::{BIN, Deployment, Options, deploy, now, run};
use tally_test_support::command::spawn_listening;

const EXAMPLE: &str = include_str!("../../../../config-schema/example-config-aggregation.json");

/// The calendar week of now (the aggregators' clock), and the day the collector is told it is:
/// the Monday after it, so that the week has ended.
fn this_week() -> (Day, Day) {
    let today = Day::from_unix_days((now() / 86_400) as i64).unwrap();
    let monday = bucket_week(today);
    (monday, monday.plus_days(7).unwrap())
}

/// A deployment whose task has the example config's layout, and that config, carrying the
/// provisioned section, signed with a fresh key.
fn deploy_with_config(min_batch_size: u64) -> Deployment {
    let example: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    let layout = serde_json::from_value(example["aggregation"]["layout"].clone()).unwrap();
    let d = deploy(Options {
        layout,
        min_batch_size,
        time_precision: 86_400,
        ..Options::default()
    });
    let mut config = example;
    config["aggregation"] = serde_json::to_value(&d.config).unwrap();
    let p = |name: &str| d.dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(
        p("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    run(&[
        "keygen",
        "--no-password",
        "-p",
        &p("tally-server.pub"),
        "-s",
        &p("tally-server.key"),
    ]);
    run(&["sign", &p("config.json"), "-s", &p("tally-server.key")]);
    d
}

/// Installation `i`'s week: cargo in every one (`build` in all, `test` in all but the first,
/// `check` in the first only), rustc in the first five (with `outcome:ok` counts 1, 11, 21…).
fn week_of(i: u64, monday: Day) -> tally_protocol::Report {
    let mut cargo = serde_json::json!({"cargo/subcommand:build": i + 1});
    if i > 0 {
        cargo["cargo/subcommand:test"] = 1.into();
    } else {
        cargo["cargo/subcommand:check"] = 2.into();
    }
    let mut programs = vec![serde_json::json!({
        "program": "cargo", "version": "1.95.0", "os": "linux", "arch": "x86_64",
        "counters": cargo,
    })];
    if i < 5 {
        programs.push(serde_json::json!({
            "program": "rustc", "version": "1.94.1", "os": "linux", "arch": "aarch64",
            "counters": {"rustc/outcome:ok": 10 * i + 1, "rustc/edition:2021": 1},
        }));
    }
    let report = serde_json::json!({
        "week": monday.to_string(), "x": 0.1 + 0.1 * i as f64, "config_version": 2,
        "programs": programs,
    });
    tally_protocol::Report::parse(report.to_string().as_bytes()).unwrap()
}

/// A deployment with a minimum batch size of 5 and `reports` installations' weeks of this week
/// uploaded and aggregated; this week's Monday, and the Monday after it (the collector's today).
fn with_reports_aggregated(reports: u64) -> (Deployment, Day, Day) {
    let d = deploy_with_config(5);
    let (monday, next_monday) = this_week();
    upload(&d, 0..reports, monday);
    d.wait_aggregated(reports);
    (d, monday, next_monday)
}

/// Uploads installations `range`'s weeks as DAP reports, with tally's client, as the uploader
/// does: the vector from the served config's layout, the report time the week's Monday.
fn upload(d: &Deployment, range: std::ops::Range<u64>, monday: Day) {
    let task = d.task_id();
    let agent = tally_dap::client::agent(Duration::from_secs(10));
    let time = tally_dap::client::report_time(monday);
    for i in range {
        let measurement = d.config.layout.measurement(&week_of(i, monday));
        let report = d.report(&measurement, time);
        assert_eq!(
            tally_dap::client::upload(&agent, &d.config.leader, &task, &report).unwrap(),
            UploadOutcome::Accepted
        );
    }
}

/// `tally-server serve` as the collector, its log in `collector.log`.
struct Collector {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Collector {
    fn start(d: &Deployment, today: Day, credential: bool) -> Collector {
        Collector::start_every(d, today, credential, 1)
    }

    /// With `--collect-every-secs every`.
    fn start_every(d: &Deployment, today: Day, credential: bool, every: u64) -> Collector {
        let p = |name: &str| d.dir.path().join(name);
        let log = p("collector.log");
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--store"])
            .arg(p("collector"))
            .arg("--config")
            .arg(p("config.json"))
            .arg("--key")
            .arg(p("tally-server.pub"))
            .args(["--collect-after-days", "7", "--collect-every-secs"])
            .arg(every.to_string())
            .env(tally_server::clock::NOW_ENV, today.to_string())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        if credential {
            command.arg("--dap-credential").arg(&d.credential_path);
        }
        let mut started = spawn_listening(&mut command);
        let port = started.port();
        Collector {
            child: Some(started.drain_stdout()),
            port,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&self.url(path)).call().unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    fn weeks(&self) -> WeeksIndex {
        serde_json::from_str(&self.get("/api/weeks").1).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` `times` times.
    fn wait_log(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log_text().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} ×{times} in the collector's log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the week of `monday` is published.
    fn wait_published(&self, monday: Day) -> WeeksIndex {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let weeks = self.weeks();
            if weeks.weeks.iter().any(|w| w.week == monday) {
                return weeks;
            }
            assert!(
                Instant::now() < deadline,
                "the week of {monday} was not published:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The collection jobs the leader holds for the task.
fn leader_collection_jobs(d: &Deployment) -> Vec<String> {
    let dir = Path::new(&d.leader.store).join(format!("tasks/{}/collections", d.task_id()));
    let mut jobs: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    jobs.sort();
    jobs
}

/// The collection job the collector recorded for the week of `monday`.
fn recorded_job(d: &Deployment, monday: Day) -> String {
    let record = d
        .dir
        .path()
        .join(format!("collector/dap/weeks/{monday}.json"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    record["job"].as_str().unwrap().to_owned()
}

#[test]
fn serve_collects_an_ended_week_and_publishes_it_from_the_aggregate() {
    let (d, monday, next_monday) = with_reports_aggregated(6);

    // Before the week ends (by the collector's clock) nothing is collected.
    let early = Collector::start(&d, monday.plus_days(6).unwrap(), true);
    std::thread::sleep(Duration::from_secs(2));
    assert!(early.weeks().weeks.is_empty(), "{}", early.log_text());
    assert!(leader_collection_jobs(&d).is_empty());
    drop(early);

    let collector = Collector::start(&d, next_monday, true);
    let weeks = collector.wait_published(monday);
    let week = &weeks.weeks[0];
    // The report count is DAP's; rustc has 5 reports, cargo 6.
    assert_eq!((week.week, week.reports), (monday, 6), "{weeks:?}");
    assert_eq!(week.programs["cargo"], 6);
    assert_eq!(week.programs["rustc"], 5);
    let cargo: ProgramWeek =
        serde_json::from_str(&collector.get(&format!("/api/weeks/{monday}/cargo")).1).unwrap();
    let counter = |week: &ProgramWeek, name: &str| {
        week.counters
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.reports_with, c.total))
    };
    // Presence only in the layout: its share, and no total (not a 0 nobody counted).
    assert_eq!(counter(&cargo, "cargo/subcommand:build"), Some((6, None)));
    assert_eq!(
        counter(&cargo, "cargo/subcommand:test").map(|c| c.0),
        Some(5)
    );
    // In one report only: withheld by the threshold, as a plain week's would be.
    assert_eq!(counter(&cargo, "cargo/subcommand:check"), None);
    assert_eq!(cargo.versions["1.95"], 6, "{cargo:?}");
    assert_eq!(cargo.os["linux"], 6);
    let rustc: ProgramWeek =
        serde_json::from_str(&collector.get(&format!("/api/weeks/{monday}/rustc")).1).unwrap();
    // The clipped counts summed (count_bits 8): 1 + 11 + 21 + 31 + 41.
    assert_eq!(counter(&rustc, "rustc/outcome:ok"), Some((5, Some(105))));
    assert_eq!(rustc.arch["aarch64"], 5);
    // The chart pages, the open data and the config page come from it too.
    let (status, page) = collector.get("/programs/rustc");
    assert_eq!(status, 200);
    assert!(page.contains(&monday.to_string()), "{page}");
    let (status, data) = collector.get(&format!("/data/{monday}.json"));
    assert_eq!(status, 200, "{data}");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["reports"], 6, "{data}");
    let build = data["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"] == "cargo")
        .and_then(|p| {
            p["counters"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == "cargo/subcommand:build")
        })
        .unwrap_or_else(|| panic!("{data}"));
    assert!(build["total"].is_null(), "{build}");
    let (status, csv) = collector.get(&format!("/data/{monday}.csv"));
    assert_eq!(status, 200);
    let row = csv
        .lines()
        .find(|l| l.contains(",counter,,cargo/subcommand:build,"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(row.ends_with(','), "the total is not empty: {row}");
    assert_eq!(collector.get("/config").0, 200);
    assert!(
        collector.log_text().contains(&format!(
            "collected the week of {monday} from the leader: 6 reports"
        )),
        "{}",
        collector.log_text()
    );
    // One collection job, the one recorded in the store before it was started.
    assert_eq!(
        leader_collection_jobs(&d),
        vec![format!("{}.json", recorded_job(&d, monday))]
    );

    // `export` reads the week from the store, as `/data/` serves it.
    let exported = run(&[
        "export",
        "--store",
        d.dir.path().join("collector").to_str().unwrap(),
        "--since",
        &monday.to_string(),
        "--format",
        "json",
    ]);
    let exported: serde_json::Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(exported[0]["reports"], 6, "{exported}");
    assert_eq!(exported[0]["week"], monday.to_string());

    // A restart publishes the week from the store: the leader is not asked again (it is down).
    drop(collector);
    let mut d = d;
    d.leader.stop();
    let restarted = Collector::start(&d, next_monday, true);
    let weeks = restarted.weeks();
    assert_eq!(weeks.weeks.len(), 1, "{}", restarted.log_text());
    assert_eq!(weeks.weeks[0].reports, 6);
    // So does a server without the credential on the same store (a replica that does not
    // collect), and it says so.
    drop(restarted);
    let replica = Collector::start(&d, next_monday, false);
    assert_eq!(replica.weeks().weeks.len(), 1, "{}", replica.log_text());
}

#[test]
fn a_small_batch_and_an_unreachable_leader_publish_nothing_until_the_week_can_be_collected() {
    let (mut d, monday, next_monday) = with_reports_aggregated(3);

    // The leader down: the collector says so, backs off, and keeps serving.
    d.leader.stop();
    let collector = Collector::start_every(&d, next_monday, true, 4);
    collector.wait_log("did not answer for the week of", 4);
    // The backoff doubles up to the pass interval.
    let log = collector.log_text();
    let waits: Vec<&str> = log
        .lines()
        .filter_map(|line| line.strip_prefix("tally-server: collecting again in "))
        .take(4)
        .collect();
    assert_eq!(waits, ["1s", "2s", "4s", "4s"], "{log}");
    assert_eq!(collector.get("/healthz").0, 200);
    assert_eq!(collector.get("/config.json").0, 200);
    assert!(collector.weeks().weeks.is_empty());

    // The leader back with 3 reports of 5: not an error, nothing spent, nothing published.
    d.leader.start();
    collector.wait_log(
        &format!("the week of {monday} has fewer than 5 reports at the leader"),
        2,
    );
    assert!(collector.weeks().weeks.is_empty());
    assert_eq!(collector.get(&format!("/data/{monday}.json")).0, 404);
    assert!(
        !d.dir
            .path()
            .join(format!("collector/merged/{monday}.json"))
            .exists()
    );
    assert!(leader_collection_jobs(&d).is_empty());

    // Two more reports: the next try collects all five.
    upload(&d, 3..5, monday);
    let weeks = collector.wait_published(monday);
    assert_eq!(weeks.weeks[0].reports, 5, "{}", collector.log_text());
    assert_eq!(leader_collection_jobs(&d).len(), 1);
}

#[test]
fn a_collector_killed_mid_collection_polls_the_same_job_after_its_restart() {
    let (mut d, monday, next_monday) = with_reports_aggregated(6);

    // The helper down: the leader takes the collection job but cannot finish it.
    d.helper.stop();
    let mut collector = Collector::start(&d, next_monday, true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while leader_collection_jobs(&d).is_empty() {
        assert!(Instant::now() < deadline, "{}", collector.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(collector.weeks().weeks.is_empty());
    let job = recorded_job(&d, monday);
    collector.kill9();

    d.helper.start();
    let restarted = Collector::start(&d, next_monday, true);
    let weeks = restarted.wait_published(monday);
    assert_eq!(weeks.weeks[0].reports, 6, "{}", restarted.log_text());
    // No second job: the restart polled the one recorded before the first start.
    assert_eq!(recorded_job(&d, monday), job);
    assert_eq!(leader_collection_jobs(&d), vec![format!("{job}.json")]);
    assert!(
        !restarted.log_text().contains("refused"),
        "{}",
        restarted.log_text()
    );
}

/// A refusal the leader would repeat (here the collector's token is wrong): logged once, the
/// week left unpublished and not asked for again at the next passes (only a day later, or at a
/// restart), and the server serves on. A restart with the right credential publishes the week.
#[test]
fn a_refused_week_is_left_alone_until_a_restart_asks_again() {
    let (d, monday, next_monday) = with_reports_aggregated(6);
    let right = std::fs::read(&d.credential_path).unwrap();
    let mut wrong: serde_json::Value = serde_json::from_slice(&right).unwrap();
    wrong["token"] = "not-the-collectors-token".into();
    std::fs::write(&d.credential_path, serde_json::to_vec(&wrong).unwrap()).unwrap();

    // A pass every second.
    let mut collector = Collector::start(&d, next_monday, true);
    let refused = format!("the leader refused to collect the week of {monday}");
    collector.wait_log(&refused, 1);
    std::thread::sleep(Duration::from_secs(4));
    let log = collector.log_text();
    assert_eq!(log.matches(&refused).count(), 1, "{log}");
    assert!(log.contains("asking again in 24h"), "{log}");
    assert_eq!(collector.get("/healthz").0, 200);
    assert!(collector.weeks().weeks.is_empty());
    assert!(leader_collection_jobs(&d).is_empty());
    collector.kill9();

    std::fs::write(&d.credential_path, &right).unwrap();
    let restarted = Collector::start(&d, next_monday, true);
    let weeks = restarted.wait_published(monday);
    assert_eq!(weeks.weeks[0].reports, 6, "{}", restarted.log_text());
    assert_eq!(leader_collection_jobs(&d).len(), 1);
}
