//! Many real processes on one file at once: exact totals, and SIGKILL at any moment leaves a
//! file that parses with no count gone backwards.
//!
//! The workers are this test binary itself, re-run with `TALLY_COUNTER_TEST_ROLE` set: the
//! `worker` test below does the work in the child and returns at once in a normal run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tally_sys::{CounterFile, FileMeta, Snapshot, read_file};

const ROLE: &str = "TALLY_COUNTER_TEST_ROLE";
const PROCESSES: usize = 16;
/// Increments of the shared names per process (the product's "16 x 100,000").
const SHARED_INCREMENTS: u64 = 100_000;
const SHARED_NAMES: usize = 8;
/// Names every process creates at the same moment (insertion races).
const RACED_NAMES: usize = 200;
/// Names only one process creates (growth over several pages).
const OWN_NAMES: usize = 100;

fn meta() -> FileMeta {
    FileMeta {
        program: "cargo".into(),
        version: "1.91.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        week_start: "2026-11-24".into(),
        week_end: "2026-12-01".into(),
    }
}

/// Kills and reaps every worker when dropped, so a failing assertion never leaves workers behind.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Workers {
    /// [`PROCESSES`] workers in `role` on the counter file `path`, each told to go once all
    /// are running, so they race from the start.
    fn started(role: &str, path: &Path) -> Workers {
        let mut workers = Workers(
            (0..PROCESSES)
                .map(|i| spawn_worker(role, path, i))
                .collect(),
        );
        for child in &mut workers.0 {
            child.stdin.take().unwrap().write_all(b"g").unwrap();
        }
        workers
    }
}

fn spawn_worker(role: &str, path: &Path, index: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("--exact")
        .arg(crate::test_name(module_path!(), "worker"))
        .args(["--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("TALLY_COUNTER_TEST_FILE", path)
        .env("TALLY_COUNTER_TEST_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn worker process")
}

/// The child side. In a normal test run (no role) it does nothing.
#[test]
fn worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let path = std::path::PathBuf::from(std::env::var_os("TALLY_COUNTER_TEST_FILE").unwrap());
    let index: usize = std::env::var("TALLY_COUNTER_TEST_INDEX")
        .unwrap()
        .parse()
        .unwrap();
    // Wait for the parent's go signal so that all workers start at once.
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).unwrap();
    let (file, _) = CounterFile::open_or_create(&path, &meta()).unwrap();
    match role.as_str() {
        "hammer" => {
            for round in 0..SHARED_INCREMENTS {
                let shared = format!("shared-{}", round as usize % SHARED_NAMES);
                file.add(&shared, 1).unwrap();
                let step = round as usize;
                if step < RACED_NAMES {
                    file.add(&format!("raced-{step}"), 1).unwrap();
                }
                if step < OWN_NAMES {
                    file.add(&format!("own-{index}-{step}-{}", "x".repeat(step % 64)), 3)
                        .unwrap();
                }
            }
            println!("done");
        }
        "forever" => {
            println!("ready");
            std::io::stdout().flush().unwrap();
            // Bounded in count and time: the parent kills us long before either ends.
            let started = std::time::Instant::now();
            for round in 0..200_000_000u64 {
                if round % 1_000_000 == 0 && started.elapsed().as_secs() > 120 {
                    break;
                }
                file.add("always", 1).unwrap();
                if round % 1024 == 0 {
                    file.add(&format!("w{index}-{}", round / 1024), 1).unwrap();
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn sixteen_processes_exact_totals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hammer.v1.count");
    let mut workers = Workers::started("hammer", &path);
    for child in &mut workers.0 {
        let status = child.wait().unwrap();
        assert!(status.success(), "worker failed: {status}");
    }
    let snap = read_file(&path).unwrap();
    assert_eq!(snap.dropped, 0);
    let n = PROCESSES as u64;
    for s in 0..SHARED_NAMES {
        assert_eq!(
            snap.counters[&format!("shared-{s}")],
            n * SHARED_INCREMENTS / SHARED_NAMES as u64
        );
    }
    for r in 0..RACED_NAMES {
        assert_eq!(snap.counters[&format!("raced-{r}")], n, "raced-{r}");
    }
    for i in 0..PROCESSES {
        for step in 0..OWN_NAMES {
            let name = format!("own-{i}-{step}-{}", "x".repeat(step % 64));
            assert_eq!(snap.counters[&name], 3, "{name}");
        }
    }
    assert_eq!(
        snap.counters.len(),
        SHARED_NAMES + RACED_NAMES + PROCESSES * OWN_NAMES
    );
    let total: u64 = snap.counters.values().sum();
    assert_eq!(
        total,
        n * SHARED_INCREMENTS + n * RACED_NAMES as u64 + 3 * n * OWN_NAMES as u64
    );
    // The file grew over several pages.
    assert!(std::fs::metadata(&path).unwrap().len() > 4 * 16 * 1024);
}

fn assert_not_backwards(before: &Snapshot, after: &Snapshot) {
    assert!(after.dropped >= before.dropped);
    for (name, &count) in &before.counters {
        let now = after.counters.get(name).copied();
        assert!(
            now.is_some_and(|n| n >= count),
            "{name} went from {count} to {now:?}"
        );
    }
}

#[test]
fn sigkill_mid_run_leaves_a_parsable_file_and_no_count_goes_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.v1.count");
    let mut workers = Workers::started("forever", &path);
    for child in &mut workers.0 {
        // The test harness prints its own lines first; ours is "ready".
        let reader = BufReader::new(child.stdout.as_mut().unwrap());
        let ready = reader
            .lines()
            .map_while(Result::ok)
            .any(|line| line.trim_end().ends_with("ready"));
        assert!(ready, "worker exited before it was ready");
    }
    let mut previous = read_file(&path).unwrap();
    let mut seen_names = BTreeMap::new();
    // Kill one worker between snapshots, while the others keep inserting and counting.
    for child in &mut workers.0 {
        for _ in 0..5 {
            let next = read_file(&path).unwrap();
            assert_not_backwards(&previous, &next);
            previous = next;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let next = read_file(&path).unwrap();
        assert_not_backwards(&previous, &next);
        seen_names.extend(next.counters.clone());
        previous = next;
    }
    let last = read_file(&path).unwrap();
    assert_not_backwards(&previous, &last);
    assert!(last.counters["always"] > 0);
    // After the carnage the file still takes new names and counts.
    let (file, _) = CounterFile::open_or_create(&path, &meta()).unwrap();
    file.add("after-the-kill", 2).unwrap();
    let after = read_file(&path).unwrap();
    assert_not_backwards(&last, &after);
    assert!(after.counters.get("after-the-kill") == Some(&2) || after.dropped > last.dropped);
}
