//! From a chart config to a served config with private aggregation, with the real binary:
//! `dap provision --charts` makes the task for the layout the charts need, `config generate`
//! puts its section into the upload config, `serve --charts` accepts it, and the aggregators
//! take a report built from it; a change to the charts' layout is refused until a new task is
//! provisioned.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tally_dap::client::UploadOutcome;
use tally_protocol::UploadConfig;

use crate::support::{Aggregator, BIN, free_port, now, run};
use tally_test_support::command::spawn_listening;

const EXAMPLE: &str = include_str!("../../../../config-schema/example-charts-aggregation.toml");

/// `tally-server ARGS`, expected to fail: its standard error.
fn refused(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(!out.status.success(), "tally-server {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// Whether `tally-server serve` starts on this config and chart file (then it is stopped).
fn serves(dir: &Path, charts: &Path) -> Result<(), String> {
    let started = spawn_listening(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--store"])
            .arg(dir.join("collector"))
            .arg("--config")
            .arg(dir.join("config.json"))
            .arg("--key")
            .arg(dir.join("tally-server.pub"))
            .arg("--charts")
            .arg(charts)
            .stderr(Stdio::piped()),
    );
    let mut child = started.child;
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    if started.port.is_some() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_chart_config_provisions_generates_and_serves_private_aggregation() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |name: &str| p(name).to_str().unwrap().to_owned();
    let (leader_port, helper_port) = (free_port(), free_port());
    let charts = EXAMPLE
        .replace(
            "https://leader.example/",
            &format!("http://127.0.0.1:{leader_port}/"),
        )
        .replace(
            "https://helper.example.org/dap/",
            &format!("http://127.0.0.1:{helper_port}/"),
        );
    std::fs::write(p("charts.toml"), &charts).unwrap();

    // Before provisioning, `config generate` says what to do.
    let generate_first = ["config", "generate", &s("charts.toml"), "--first"];
    let generate_first = [&generate_first[..], &["--expected-reports", "50000"]].concat();
    let said = refused(&generate_first);
    assert!(said.contains("dap provision --charts"), "{said}");

    run(&[
        "dap",
        "collector-keygen",
        "--credential-out",
        &s("collector.json"),
        "--public-out",
        &s("collector-public.json"),
    ]);
    let task_id = run(&[
        "dap",
        "provision",
        "--charts",
        &s("charts.toml"),
        "--leader-store",
        &s("leader"),
        "--helper-store",
        &s("helper"),
        "--collector-public",
        &s("collector-public.json"),
    ]);
    let task_id = task_id.trim();
    // The section went where the chart file's [aggregation] table says.
    assert!(p("aggregation.json").is_file());

    run(&[
        "keygen",
        "--no-password",
        "-p",
        &s("tally-server.pub"),
        "-s",
        &s("tally-server.key"),
    ]);
    run(&[&generate_first[..], &["-o", &s("config.json")]].concat());
    let config = UploadConfig::parse(&std::fs::read(p("config.json")).unwrap()).unwrap();
    let section = config
        .aggregation
        .clone()
        .expect("the generated config has the section");
    assert_eq!(section.task_id, task_id);
    let charts_file = tally_server::charts_config::ChartsFile::read(&p("charts.toml")).unwrap();
    assert_eq!(Some(section.layout.clone()), charts_file.layout());
    run(&["sign", &s("config.json"), "-s", &s("tally-server.key")]);
    serves(dir.path(), &p("charts.toml")).unwrap();

    // The aggregators take a report built from the generated config, as a client would build it.
    let mut helper = Aggregator::new("helper", &p("helper"), p("helper.log"), helper_port);
    let mut leader = Aggregator::new("leader", &p("leader"), p("leader.log"), leader_port);
    helper.start();
    leader.start();
    let week = tally_protocol::Report::parse(
        br#"{"week": "2026-11-16", "x": 0.25, "programs": [
            {"program": "rustc", "version": "1.95.0", "os": "linux", "arch": "x86_64",
             "counters": {"rustc/outcome:ok": 40, "rustc/outcome:ice": 1}}]}"#,
    )
    .unwrap();
    let measurement = section.layout.measurement(&week);
    let agent = tally_dap::client::agent(Duration::from_secs(10));
    let task = tally_dap::draft::task_id(&section).unwrap();
    let leader_config =
        tally_dap::client::fetch_hpke_config(&agent, &section.leader, &task).unwrap();
    let helper_config =
        tally_dap::client::fetch_hpke_config(&agent, &section.helper, &task).unwrap();
    let report = tally_dap::client::ReportBuilder::from_config(&section)
        .unwrap()
        .build(&measurement, now() - 3600, &leader_config, &helper_config)
        .unwrap();
    assert_eq!(
        tally_dap::client::upload(&agent, &section.leader, &task, &report).unwrap(),
        UploadOutcome::Accepted
    );

    // One more counter in a chart: another layout, which the provisioned task does not fit.
    let grown = charts.replacen("doc,other}", "doc,miri,other}", 1);
    assert_ne!(grown, charts);
    std::fs::write(p("grown.toml"), grown).unwrap();
    let said = refused(&[
        "config",
        "generate",
        &s("grown.toml"),
        "--first",
        "--expected-reports",
        "50000",
    ]);
    assert!(said.contains("provision a new one"), "{said}");
    let said = serves(dir.path(), &p("grown.toml")).unwrap_err();
    assert!(said.contains("which the chart file does not"), "{said}");
    // Another version bucket: the same counters, another layout. The served config's section
    // is not the one these charts ask for.
    let rebucketed = charts.replacen("\"1.95\"]", "\"1.95\", \"1.96\"]", 1);
    assert_ne!(rebucketed, charts);
    std::fs::write(p("rebucketed.toml"), rebucketed).unwrap();
    let said = serves(dir.path(), &p("rebucketed.toml")).unwrap_err();
    assert!(said.contains("provision a new one"), "{said}");
}
