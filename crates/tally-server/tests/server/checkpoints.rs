//! Generations, seals, checkpoints and retention on a local store, with servers in this process
//! sharing one store directory.

use axum::http::StatusCode;
use tally_protocol::Day;
use tally_server::clock::Clock;
use tally_server::store::Store;
use tally_server::{AppState, Options};

use crate::support::*;

fn monday() -> Day {
    WEEK.parse().unwrap()
}

/// A server on `store` whose clock says `today`, publishing from one report on.
async fn server(collector: &Collector, store: &std::path::Path, today: Day) -> AppState {
    server_keeping(
        collector,
        store,
        today,
        tally_server::DEFAULT_RETENTION_WEEKS,
    )
    .await
}

async fn server_keeping(
    collector: &Collector,
    store: &std::path::Path,
    today: Day,
    retention_weeks: u32,
) -> AppState {
    let (json, sig) = collector.config_bytes();
    let options = Options {
        threshold: 1,
        clock: Clock::Fixed(today),
        retention_weeks,
        ..Options::default()
    };
    AppState::open(
        Store::open(store.to_str().unwrap()).unwrap(),
        json,
        sig,
        &collector.public_key(),
        options,
    )
    .await
    .unwrap()
}

/// (reports, total of `cargo/invocations`) as `state` publishes them for the week.
fn counted(state: &AppState) -> (u64, u64) {
    match state.program_week(monday(), "cargo") {
        Some(week) => (
            week.reports,
            week.counters
                .iter()
                .find(|c| c.name == "cargo/invocations")
                .and_then(|c| c.total)
                .unwrap_or(0),
        ),
        None => (0, 0),
    }
}

/// Report `i`, counting `cargo/invocations` `i % 5 + 1` times.
fn numbered(i: u64) -> tally_protocol::Report {
    report(
        (i + 1) as f64 / 1000.0,
        "1.95.0",
        &[("cargo/invocations", i % 5 + 1)],
    )
}

fn invocations(range: std::ops::Range<u64>) -> u64 {
    range.map(|i| i % 5 + 1).sum()
}

/// A restart reads the newest checkpoint and the open generation only: with every raw report
/// of the sealed generations made unreadable, it still counts them all (it would count none of
/// them if it rebuilt from the raw reports).
#[tokio::test]
async fn a_restart_reads_the_checkpoint_and_the_open_generation_only() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let state = server(&collector, store.path(), today()).await;
    for i in 0..50 {
        assert_eq!(upload(&state, &numbered(i)).await.0, StatusCode::OK);
    }
    assert_eq!(state.flush().await.unwrap(), 1);
    assert_eq!(state.flush().await.unwrap(), 0, "nothing new to checkpoint");
    for i in 50..55 {
        assert_eq!(upload(&state, &numbered(i)).await.0, StatusCode::OK);
    }
    assert_eq!(counted(&state), (55, invocations(0..55)));
    drop(state);
    let sealed = store.path().join("reports/2026-11-16/0");
    assert!(sealed.join("sealed").exists());
    // A report both in checkpoint 1 and in the open generation (its writer wrote it into
    // generation 0 just before the listing, then found the seal and wrote it again) is one.
    std::fs::copy(
        sealed.join("2026-11-16_0.004.json"),
        store
            .path()
            .join("reports/2026-11-16/1/2026-11-16_0.004.json"),
    )
    .unwrap();
    let mut garbled = 0;
    for file in files_under(&sealed) {
        if file.extension().is_some_and(|e| e == "json") {
            std::fs::write(&file, b"garbage").unwrap();
            garbled += 1;
        }
    }
    assert_eq!(garbled, 50);
    assert_eq!(
        files_under(&store.path().join("reports/2026-11-16/1")).len(),
        6
    );
    let restarted = server(&collector, store.path(), today()).await;
    assert_eq!(counted(&restarted), (55, invocations(0..55)));
    // The copy for tools that read the store holds the checkpoint's merge.
    let copy: tally_server::merge::MergedWeek = serde_json::from_slice(
        &std::fs::read(store.path().join("merged/2026-11-16.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(copy.reports, 50);
    // A re-sent report of a sealed generation is still "already stored", and counted once.
    let (status, reply) = upload(&restarted, &numbered(7)).await;
    assert_eq!(
        (status, reply.as_str()),
        (StatusCode::OK, "already stored\n")
    );
    assert_eq!(counted(&restarted), (55, invocations(0..55)));
}

/// A server that has not seen another's checkpoint writes into a sealed generation: it finds
/// the seal, writes the report again into the next generation, and every server (and a
/// restart) counts it once.
#[tokio::test]
async fn a_write_behind_a_seal_moves_on_and_is_counted_once() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let a = server(&collector, store.path(), today()).await;
    let b = server(&collector, store.path(), today()).await;
    assert_eq!(upload(&a, &numbered(0)).await.0, StatusCode::OK);
    // b learns of it and checkpoints generation 0; a still writes to generation 0.
    b.reconcile(None).await.unwrap();
    assert_eq!(b.flush().await.unwrap(), 1);
    let (status, reply) = upload(&a, &numbered(1)).await;
    assert_eq!((status, reply.as_str()), (StatusCode::OK, "stored\n"));
    let name = "2026-11-16_0.002.json";
    for generation in ["0", "1"] {
        assert!(
            store
                .path()
                .join("reports/2026-11-16")
                .join(generation)
                .join(name)
                .exists(),
            "generation {generation}"
        );
    }
    assert_eq!(counted(&a), (2, invocations(0..2)));
    for server in [&a, &b] {
        server.reconcile(None).await.unwrap();
        assert_eq!(counted(server), (2, invocations(0..2)));
    }
    // Checkpointing again (the copy left in generation 0 is not in checkpoint 1; the one in
    // generation 1 goes into checkpoint 2) and restarting: still once.
    assert_eq!(a.flush().await.unwrap(), 1);
    b.reconcile(None).await.unwrap();
    assert_eq!(counted(&b), (2, invocations(0..2)));
    drop((a, b));
    let restarted = server(&collector, store.path(), today()).await;
    assert_eq!(counted(&restarted), (2, invocations(0..2)));
}

/// Servers checkpointing the same week at once: one checkpoint is written, the others adopt
/// it, and every report uploaded meanwhile to any of them is counted once by all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_and_checkpoints_count_every_report_once() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let servers = [
        server(&collector, store.path(), today()).await,
        server(&collector, store.path(), today()).await,
        server(&collector, store.path(), today()).await,
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (s, server) in servers.iter().enumerate() {
        let server = server.clone();
        tasks.spawn(async move {
            for round in 0..10u64 {
                // Every report goes to two servers; each server checkpoints after each round.
                for j in 0..10u64 {
                    let i = round * 30 + (s as u64) * 10 + j;
                    assert_eq!(upload(&server, &numbered(i)).await.0, StatusCode::OK);
                    let twin = round * 30 + ((s as u64 + 1) % 3) * 10 + j;
                    assert_eq!(upload(&server, &numbered(twin)).await.0, StatusCode::OK);
                }
                server.flush().await.unwrap();
                server.reconcile(None).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    for server in &servers {
        server.reconcile(None).await.unwrap();
        assert_eq!(counted(server), (300, invocations(0..300)));
    }
    for server in &servers {
        server.flush().await.unwrap();
    }
    drop(servers);
    let restarted = server(&collector, store.path(), today()).await;
    assert_eq!(counted(&restarted), (300, invocations(0..300)));
}

/// Retention: nothing is deleted before `retention_weeks` weeks after the week closed; then the
/// raw reports go (the week is checkpointed first, so reports never checkpointed still count)
/// and the merged aggregate stays, also across a restart; `/status` says so.
#[tokio::test]
async fn retention_deletes_raw_reports_and_keeps_the_aggregates() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let state = server_keeping(&collector, store.path(), today(), 2).await;
    for i in 0..6 {
        assert_eq!(upload(&state, &numbered(i)).await.0, StatusCode::OK);
    }
    assert_eq!(state.flush().await.unwrap(), 1);
    // Two more, never checkpointed (as after a kill).
    for i in 6..8 {
        assert_eq!(upload(&state, &numbered(i)).await.0, StatusCode::OK);
    }
    drop(state);
    // The week's last day is 2026-11-22; its reports are accepted until 2026-12-13; kept two
    // weeks more.
    let due = tally_server::raw_deleted_on(monday(), 2).unwrap();
    assert_eq!(due, "2026-12-28".parse().unwrap());
    let day_before = due.plus_days(-1).unwrap();
    let state = server_keeping(&collector, store.path(), day_before, 2).await;
    assert!(state.apply_retention(day_before).await.unwrap().is_empty());
    assert!(!stored_reports(store.path()).is_empty());
    let (_, status) = call(&state, "GET", "/status", vec![]).await;
    let status: tally_server::Status = serde_json::from_slice(&status).unwrap();
    assert_eq!(
        status,
        tally_server::Status {
            retention_weeks: 2,
            weeks: vec![tally_server::WeekStatus {
                week: monday(),
                raw_reports_deleted: false,
                raw_reports_deleted_on: Some(due),
            }],
        }
    );
    drop(state);

    let state = server_keeping(&collector, store.path(), due, 2).await;
    assert_eq!(state.apply_retention(due).await.unwrap(), [monday()]);
    assert!(!store.path().join("reports/2026-11-16").exists());
    assert!(stored_reports(store.path()).is_empty());
    assert_eq!(counted(&state), (8, invocations(0..8)));
    assert!(state.status().weeks[0].raw_reports_deleted);
    drop(state);
    let restarted = server_keeping(&collector, store.path(), due, 2).await;
    assert_eq!(counted(&restarted), (8, invocations(0..8)));
    assert!(restarted.status().weeks[0].raw_reports_deleted);
    let copy: tally_server::merge::MergedWeek = serde_json::from_slice(
        &std::fs::read(store.path().join("merged/2026-11-16.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(copy.reports, 8);
}
