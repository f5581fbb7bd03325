//! Three `tally-server serve` replicas on one store (a local directory, and S3 on moto): uploads
//! to all of them at once, some reports sent to two replicas, one replica SIGKILLed mid-stream
//! and restarted. Every report is answered 2xx (a client whose replica died sends it again to
//! another, as the uploader retries), and every replica, and a restart after SIGKILL of all
//! three, counts each report exactly once: the published report count and the counter total
//! are both exact (a report counted twice would add to the total).

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tally_protocol::aggregate::ProgramWeek;

use crate::s3::{BUCKET, Reaped, start_moto};
use crate::support::*;
use tally_test_support::command::spawn_listening;
use tally_test_support::moto::moto_env;

/// One replica: its process and port.
struct Replica {
    /// SIGKILLed when the replica is dropped.
    _process: Reaped,
    port: u16,
}

/// Starts `tally-server serve` on `store` with `env`, re-reading the store every second and
/// checkpointing every 200 ms.
fn replica(collector: &Collector, store: &str, env: &[(&str, String)]) -> Replica {
    replica_with(collector, store, env, TODAY, &[])
}

/// [`replica`] with its clock at `now` and more arguments.
fn replica_with(
    collector: &Collector,
    store: &str,
    env: &[(&str, String)],
    now: &str,
    extra: &[&str],
) -> Replica {
    let mut command = serve_command(collector, store, &collector.public_key);
    command
        .args([
            "--threshold",
            "1",
            "--flush-ms",
            "200",
            "--reconcile-secs",
            "1",
        ])
        .args(extra)
        .env("TALLY_NOW", now)
        .env_remove("AWS_ENDPOINT")
        .stderr(Stdio::inherit());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut started = spawn_listening(&mut command);
    let port = started.port();
    Replica {
        _process: Reaped(started.drain_stdout()),
        port,
    }
}

/// (reports, total of `cargo/invocations`) published by the replica on `port`.
fn counted(agent: &ureq::Agent, port: u16) -> (u64, u64) {
    let Ok(mut response) = agent
        .get(&format!("http://127.0.0.1:{port}/api/weeks/{WEEK}/cargo"))
        .call()
    else {
        return (0, 0);
    };
    if response.status() != 200 {
        return (0, 0);
    }
    let week: ProgramWeek = response.body_mut().read_json().unwrap();
    let total = week
        .counters
        .iter()
        .find(|c| c.name == "cargo/invocations")
        .and_then(|c| c.total)
        .unwrap_or(0);
    (week.reports, total)
}

/// Report `i`, counting `cargo/invocations` `i % 5 + 1` times.
fn numbered(i: u64) -> tally_protocol::Report {
    report(
        (i + 1) as f64 / 100_000.0,
        "1.95.0",
        &[("cargo/invocations", i % 5 + 1)],
    )
}

/// The scenario, on the store `store` (with `env` for every replica), with `reports` reports.
fn three_replicas_count_every_report_once(store: &str, env: &[(&str, String)], reports: u64) {
    let collector = Collector::new();
    let replicas: Vec<Replica> = (0..3).map(|_| replica(&collector, store, env)).collect();
    let ports = Arc::new(RwLock::new(
        replicas.iter().map(|r| r.port).collect::<Vec<_>>(),
    ));
    let mut replicas: Vec<Option<Replica>> = replicas.into_iter().map(Some).collect();
    let sent = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let (ports, sent) = (ports.clone(), sent.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut resent = 0;
                for i in (t..reports).step_by(6) {
                    let body = body(&numbered(i));
                    // Every fourth report goes to two replicas.
                    let copies = if i % 4 == 0 { 2 } else { 1 };
                    for copy in 0..copies {
                        let mut target = (i as usize + copy) % 3;
                        let began = Instant::now();
                        loop {
                            let port = ports.read().unwrap()[target];
                            let answer = agent
                                .post(&format!("http://127.0.0.1:{port}/upload/{WEEK}"))
                                .send(&body[..]);
                            match answer {
                                Ok(mut response) if response.status() == 200 => {
                                    let text = response.body_mut().read_to_string().unwrap();
                                    assert!(text == "stored\n" || text == "already stored\n");
                                    break;
                                }
                                Ok(response) => assert!(
                                    response.status().is_server_error(),
                                    "report {i}: {}",
                                    response.status()
                                ),
                                Err(_) => {}
                            }
                            // The replica is down (or its store failed): send it to the next.
                            resent += 1;
                            target = (target + 1) % 3;
                            assert!(
                                began.elapsed() < Duration::from_secs(30),
                                "report {i} found no replica to take it"
                            );
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                resent
            })
        })
        .collect();
    // SIGKILL replica 0 once a third of the reports are in, and start it again.
    let began = Instant::now();
    while sent.load(Ordering::SeqCst) < reports as usize / 3 {
        assert!(began.elapsed() < Duration::from_secs(60), "uploads stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(replicas[0].take()); // SIGKILL
    std::thread::sleep(Duration::from_millis(300));
    let again = replica(&collector, store, env);
    ports.write().unwrap()[0] = again.port;
    replicas[0] = Some(again);
    let resent: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("{reports} reports uploaded, {resent} sends retried on another replica");

    let agent = agent();
    let want = (reports, (0..reports).map(|i| i % 5 + 1).sum::<u64>());
    let began = Instant::now();
    loop {
        let seen: Vec<_> = ports
            .read()
            .unwrap()
            .iter()
            .map(|port| counted(&agent, *port))
            .collect();
        if seen.iter().all(|s| *s == want) {
            eprintln!(
                "all three replicas count {want:?} within {:?}",
                began.elapsed()
            );
            break;
        }
        assert!(
            seen.iter().all(|(n, _)| *n <= reports),
            "a replica counts more reports than were sent: {seen:?}"
        );
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the replicas count {seen:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGKILL all three; a restart counts the same.
    drop(replicas);
    let restarted = replica(&collector, store, env);
    assert_eq!(counted(&agent, restarted.port), want);
}

#[test]
fn three_replicas_on_a_local_store_count_every_report_once() {
    let store = tempfile::tempdir().unwrap();
    three_replicas_count_every_report_once(store.path().to_str().unwrap(), &[], 900);
}

#[test]
fn three_replicas_on_s3_count_every_report_once() {
    let Some((_moto, endpoint)) = start_moto() else {
        return;
    };
    let env = moto_env(&endpoint);
    three_replicas_count_every_report_once(&format!("s3://{BUCKET}/replicas"), &env, 300);
}

/// Retention on S3: raw reports go once their week is merged and the retention period is over
/// (here 0 weeks), whether or not they were in a checkpoint; the checkpoints stay, and the
/// week is still published, exactly, also by a replica started afterwards.
#[test]
fn retention_deletes_raw_reports_on_s3_and_keeps_the_aggregates() {
    let Some((_moto, endpoint)) = start_moto() else {
        return;
    };
    let env = moto_env(&endpoint);
    let store = format!("s3://{BUCKET}/retention");
    let collector = Collector::new();
    let agent = agent();
    let first = replica(&collector, &store, &env);
    for i in 0..20 {
        let response = agent
            .post(&format!("http://127.0.0.1:{}/upload/{WEEK}", first.port))
            .send(&body(&numbered(i))[..])
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let want = (20, (0..20).map(|i| i % 5 + 1).sum::<u64>());
    assert_eq!(counted(&agent, first.port), want);
    drop(first); // SIGKILL: some reports may be in no checkpoint yet.
    let keys = |prefix: &str| -> usize {
        agent
            .get(&format!(
                "{endpoint}/{BUCKET}?list-type=2&prefix=retention/{prefix}"
            ))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
            .matches("<Key>")
            .count()
    };
    assert!(keys("reports/2026-11-16/") >= 20);

    // 2026-12-14: the week closed to uploads; with --retention-weeks 0 its raw reports go.
    let later = replica_with(
        &collector,
        &store,
        &env,
        "2026-12-14",
        &["--retention-weeks", "0"],
    );
    let began = Instant::now();
    loop {
        let status: tally_server::Status = agent
            .get(&format!("http://127.0.0.1:{}/status", later.port))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        assert_eq!(status.retention_weeks, 0);
        if status.weeks[0].raw_reports_deleted {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "raw reports not deleted: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(keys("reports/"), 0);
    assert!(keys("merged/2026-11-16/") >= 1);
    assert_eq!(counted(&agent, later.port), want);
    drop(later);
    let restarted = replica_with(&collector, &store, &env, "2026-12-14", &[]);
    assert_eq!(counted(&agent, restarted.port), want);
}
