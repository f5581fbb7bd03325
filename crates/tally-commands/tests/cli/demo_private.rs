//! End to end: `tally demo --private-aggregation` with the real `tally` and `tally-server`
//! binaries (built as `demo_e2e` builds them): a leader, a helper and a collector on loopback,
//! the simulated installations' weeks and the real client's week sent to the leader as DAP
//! reports, and the collector's charts published from the aggregate it collected: every number
//! checked against the plain weeks that were sent, and no report in the collector's store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tally_commands::demo::DEMO_THRESHOLD;
use tally_protocol::Report;
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex, bucket_week};

use crate::demo_e2e::{build_binaries, get_json, reports_in, start_demo, stop_demo};

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    files
}

#[test]
fn demo_with_private_aggregation_publishes_the_aggregate_of_every_week_sent() {
    let (tally, _server) = build_binaries();
    let mut started = start_demo(&tally, &["--private-aggregation"]);
    let (dashboard, home) = (started.dashboard.clone(), started.home.clone());
    let output = started.output.join("\n");
    let root = home.parent().unwrap().to_path_buf();
    assert!(
        output.contains("Private aggregation: a DAP leader on"),
        "{output}"
    );
    assert!(
        output.contains("as a private-aggregation report to the DAP leader"),
        "{output}"
    );
    assert!(output.contains("from the aggregate"), "{output}");

    // The real week went to the leader, once.
    let sent = reports_in(&home.join("reports/sent"));
    assert_eq!(sent.len(), 1, "one ended week was sent");
    let mine = bucket_week(sent[0].week);

    // Every published week is the aggregate of exactly what was sent for it: the simulated
    // installations' weeks, and the real one in its week.
    let simulated = reports_in(&root.join("collector/simulated-sent"));
    let index: WeeksIndex = get_json(&format!("{dashboard}/api/weeks"));
    assert_eq!(index.threshold, DEMO_THRESHOLD);
    assert!(index.weeks.iter().any(|w| w.week == mine), "{index:?}");
    for week in &index.weeks {
        let mut sent_in_week: Vec<&Report> = simulated
            .iter()
            .filter(|r| bucket_week(r.week) == week.week)
            .collect();
        if week.week == mine {
            sent_in_week.push(&sent[0]);
        }
        assert_eq!(week.reports, sent_in_week.len() as u64, "{week:?}");
        let mut sections: BTreeMap<String, u64> = BTreeMap::new();
        for report in &sent_in_week {
            for section in &report.programs {
                *sections.entry(section.program.clone()).or_default() += 1;
            }
        }
        // Programs in fewer reports than the threshold are withheld.
        sections.retain(|_, n| *n >= DEMO_THRESHOLD);
        assert_eq!(week.programs, sections, "{}", week.week);
    }
    // The chart pages and the open data are served from it.
    let cargo: ProgramWeek = get_json(&format!("{dashboard}/api/weeks/{mine}/cargo"));
    assert!(!cargo.counters.is_empty(), "{cargo:?}");
    let page = ureq::get(&format!("{dashboard}/programs/cargo"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(page.contains(&mine.to_string()));
    let data: serde_json::Value = get_json(&format!("{dashboard}/data/{mine}.json"));
    assert_eq!(data["simulated"], true, "{data}");

    // The collector never stored a report: its store holds configs, the simulated mark, the
    // collection jobs and the collected merges, nothing else.
    let store = root.join("collector/store");
    for file in files_under(&store) {
        let first = file.components().next().unwrap().as_os_str().to_owned();
        assert!(
            ["configs", "dap", "merged", "SIMULATED.txt"]
                .iter()
                .any(|allowed| first == *allowed),
            "the collector's store holds {}",
            file.display()
        );
    }
    assert!(store.join(format!("dap/weeks/{mine}.json")).is_file());
    assert!(store.join(format!("merged/{mine}.json")).is_file());
    // The leader holds one collection job per published week.
    let collections: Vec<PathBuf> = files_under(&root.join("leader"))
        .into_iter()
        .filter(|f| f.parent().is_some_and(|p| p.ends_with("collections")))
        .collect();
    assert_eq!(collections.len(), index.weeks.len(), "{collections:?}");

    // Closing stdin stops the demo: the collector and both aggregators are stopped, the
    // directory removed.
    let leader = std::fs::read_to_string(root.join("collector/aggregation.json")).unwrap();
    let leader = tally_protocol::config::aggregation::AggregationConfig::parse(leader.as_bytes())
        .unwrap()
        .leader;
    let status = stop_demo(&mut started.demo);
    assert!(status.success(), "{status}");
    assert!(!root.exists(), "the demo removed {}", root.display());
    assert!(
        ureq::get(&format!("{dashboard}/healthz")).call().is_err(),
        "the collector is stopped"
    );
    let leader_addr = leader.trim_start_matches("http://").trim_end_matches('/');
    assert!(
        std::net::TcpStream::connect(leader_addr).is_err(),
        "the leader at {leader_addr} is stopped"
    );
}
