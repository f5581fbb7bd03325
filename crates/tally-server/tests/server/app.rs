//! The HTTP surface through `app()`, without a socket (tower's `oneshot`).

use crate::support::*;
use axum::http::StatusCode;
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex};

/// A collector's server with `threshold` on a fresh store (kept while the directory lives).
async fn serving(threshold: u64) -> (Collector, tempfile::TempDir, tally_server::AppState) {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let state = collector.state(store.path(), threshold).await.unwrap();
    (collector, store, state)
}

#[tokio::test]
async fn serves_the_signed_config_byte_for_byte() {
    let (collector, store, state) = serving(5).await;
    let (json, sig) = collector.config_bytes();
    assert_eq!(
        call(&state, "GET", "/config.json", vec![]).await,
        (StatusCode::OK, json.to_vec())
    );
    assert_eq!(
        call(&state, "GET", "/config.json.minisig", vec![]).await,
        (StatusCode::OK, sig.to_vec())
    );
    assert_eq!(
        call(&state, "GET", "/healthz", vec![]).await.0,
        StatusCode::OK
    );
    // Every served version is kept in the store.
    assert_eq!(
        std::fs::read(store.path().join("configs/1.json")).unwrap(),
        json.to_vec()
    );
    assert_eq!(
        std::fs::read(store.path().join("configs/1.json.minisig")).unwrap(),
        sig.to_vec()
    );
}

#[tokio::test]
async fn refuses_to_serve_a_config_signed_by_another_key() {
    let collector = Collector::new();
    let other = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let (json, sig) = collector.config_bytes();
    let options = tally_server::Options::default();
    let store_handle = tally_server::store::Store::open(store.path().to_str().unwrap()).unwrap();
    let err = tally_server::AppState::open(store_handle, json, sig, &other.public_key(), options)
        .await
        .err()
        .expect("a config signed by another key must be refused");
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
    // A tampered config with its original signature is refused too.
    let (json, sig) = collector.config_bytes();
    let tampered = String::from_utf8(json.to_vec())
        .unwrap()
        .replace("\"sample_rate\": 1.0", "\"sample_rate\": 0.9");
    let store_handle = tally_server::store::Store::open(store.path().to_str().unwrap()).unwrap();
    let options = tally_server::Options::default();
    assert!(
        tally_server::AppState::open(
            store_handle,
            tampered.into(),
            sig,
            &collector.public_key(),
            options
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn stores_a_valid_report_once() {
    let (_collector, store, state) = serving(1).await;
    let r = report(0.25, "1.95.0", &[("cargo/invocations", 3)]);
    assert_eq!(
        upload(&state, &r).await,
        (StatusCode::OK, "stored\n".into())
    );
    assert_eq!(
        upload(&state, &r).await,
        (StatusCode::OK, "already stored\n".into())
    );
    // Same week and x, different counts: still the first one, counted once.
    let changed = report(0.25, "1.95.0", &[("cargo/invocations", 99)]);
    assert_eq!(upload(&state, &changed).await.0, StatusCode::OK);
    let files = stored_reports(store.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), r.to_canonical_json());
    let index: WeeksIndex =
        serde_json::from_slice(&call(&state, "GET", "/api/weeks", vec![]).await.1).unwrap();
    assert_eq!(index.weeks.len(), 1);
    assert_eq!(index.weeks[0].reports, 1);
    assert_eq!(index.weeks[0].week.to_string(), WEEK);
    let (status, bytes) = call(&state, "GET", &format!("/api/weeks/{WEEK}/cargo"), vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let cargo: ProgramWeek = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(cargo.counters[0].total, Some(3));
}

#[tokio::test]
async fn refuses_invalid_uploads_and_stores_nothing() {
    let (_collector, store, state) = serving(1).await;
    let good = report(0.5, "1.95.0", &[("cargo/invocations", 1)]);
    let good_text = String::from_utf8(body(&good)).unwrap();
    let mut unknown_version = good.clone();
    unknown_version.config_version = Some(7);
    // The good report with one piece of its text replaced, and what the refusal names.
    let edits = [
        ("cargo/invocations", "cargo/secret-flag", "counter"),
        ("linux", "plan9", "not collected"),
        ("\"cargo\"", "\"ghc\"", "program"),
        ("1.95.0", "0.9.0", "not collected"),
        ("0.5", "1.0", "not in (0, 1)"),
        (": 1\n", ": -1\n", "not a valid report"),
    ];
    let mut cases: Vec<(String, Vec<u8>, &str)> = edits
        .iter()
        .map(|&(from, to, want)| (WEEK.into(), good_text.replace(from, to).into_bytes(), want))
        .collect();
    cases.extend([
        (WEEK.into(), body(&unknown_version), "never served"),
        ("2026-11-17".into(), body(&good), "does not match"),
        ("not-a-day".into(), body(&good), "not a YYYY-MM-DD"),
        (WEEK.into(), b"{".to_vec(), "not a valid report"),
        (WEEK.into(), vec![b' '; 100 * 1024 + 1], "byte limit"),
        (WEEK.into(), vec![0xff, 0xfe, 0x00], "not a valid report"),
    ]);
    for (week, bytes, want) in cases {
        let (status, reply) = call(&state, "POST", &format!("/upload/{week}"), bytes).await;
        let reply = String::from_utf8(reply).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{want}: {reply}");
        assert!(reply.contains(want), "{reply:?} should mention {want:?}");
        assert_eq!(reply.lines().count(), 1, "{reply:?} is one line");
    }
    // Not ended, and too old, judged by the server's clock.
    let mut current = good.clone();
    current.week = "2026-11-20".parse().unwrap();
    assert!(upload(&state, &current).await.1.contains("not ended"));
    let mut old = good.clone();
    old.week = "2026-10-26".parse().unwrap();
    assert!(
        upload(&state, &old)
            .await
            .1
            .contains("more than the 21 days")
    );
    assert!(stored_reports(store.path()).is_empty());
    assert_eq!(state.weeks_index().weeks.len(), 0);
}

/// A program page with nothing published (an unknown program, or one under the threshold)
/// is a 404 that states the server's threshold. Fails if the page takes the threshold from the
/// published weeks: with none, it says "Publication threshold 0: everything is shown".
#[tokio::test]
async fn a_program_page_with_nothing_published_states_the_real_threshold() {
    let (_collector, _store, state) = serving(5).await;
    let r = report(0.5, "1.95.0", &[("cargo/invocations", 1)]);
    assert_eq!(upload(&state, &r).await.0, StatusCode::OK);
    for program in ["cargo", "nothing-here"] {
        let (status, page) = call(&state, "GET", &format!("/programs/{program}"), vec![]).await;
        let page = String::from_utf8(page).unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{program}");
        assert!(page.contains("data-threshold=\"5\""), "{program}: {page}");
        assert!(!page.contains("everything is shown"), "{program}: {page}");
    }
}

#[tokio::test]
async fn withholds_everything_under_the_threshold_from_every_public_output() {
    let (_collector, _store, state) = serving(5).await;
    // Four reports: nothing about the week may be published.
    for i in 0..4 {
        let r = report(
            0.1 + i as f64 / 100.0,
            "1.95.0",
            &[("cargo/invocations", 1)],
        );
        assert_eq!(upload(&state, &r).await.0, StatusCode::OK);
    }
    let (_, weeks) = call(&state, "GET", "/api/weeks", vec![]).await;
    let index: WeeksIndex = serde_json::from_slice(&weeks).unwrap();
    assert!(index.weeks.is_empty(), "{index:?}");
    assert_eq!(
        call(&state, "GET", &format!("/api/weeks/{WEEK}/cargo"), vec![])
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, page) = call(&state, "GET", "/", vec![]).await;
    assert!(!String::from_utf8_lossy(&page).contains("cargo/invocations"));
    assert_eq!(
        call(&state, "GET", "/programs/cargo", vec![]).await.0,
        StatusCode::NOT_FOUND
    );

    // The fifth report publishes the program and the counter all five have, but not the rare
    // counter (1 report) nor the rare version (1 report).
    let rare = report(
        0.9,
        "1.96.0",
        &[("cargo/invocations", 1), ("cargo/subcommand:doc", 1)],
    );
    assert_eq!(upload(&state, &rare).await.0, StatusCode::OK);
    let (status, bytes) = call(&state, "GET", &format!("/api/weeks/{WEEK}/cargo"), vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let cargo: ProgramWeek = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(cargo.reports, 5);
    assert_eq!(cargo.counters.len(), 1);
    assert_eq!(cargo.counters[0].name, "cargo/invocations");
    assert!(!cargo.versions.contains_key("1.96.0") && !cargo.versions.contains_key("1.95.0"));
    assert_eq!(cargo.os["linux"], 5);
    for (path, what) in [
        ("/api/weeks".to_string(), "index"),
        (format!("/api/weeks/{WEEK}/cargo"), "program api"),
        ("/".to_string(), "dashboard"),
        ("/programs/cargo".to_string(), "program page"),
    ] {
        let (status, bytes) = call(&state, "GET", &path, vec![]).await;
        assert_eq!(status, StatusCode::OK, "{what}");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("subcommand:doc"),
            "{what} leaks a counter seen in 1 report"
        );
        assert!(
            !text.contains("1.96.0"),
            "{what} leaks a version seen in 1 report"
        );
    }
    let (_, page) = call(&state, "GET", "/programs/cargo", vec![]).await;
    assert!(
        String::from_utf8_lossy(&page).contains("cargo/invocations")
            || String::from_utf8_lossy(&page).contains("invocations")
    );
}

#[tokio::test]
async fn merged_results_survive_a_restart_and_are_rebuilt_when_stale() {
    let (collector, store, state) = serving(1).await;
    for i in 0..6 {
        let r = report(0.1 + i as f64 / 10.0, "1.95.0", &[("cargo/invocations", 2)]);
        assert_eq!(upload(&state, &r).await.0, StatusCode::OK);
    }
    assert_eq!(state.flush().await.unwrap(), 1);
    let merged_path = store.path().join("merged/2026-11-16.json");
    assert!(merged_path.exists());
    let before = state.weeks_index();
    drop(state);

    let again = collector.state(store.path(), 1).await.unwrap();
    assert_eq!(again.weeks_index(), before);

    // A stale merge (a crash after a write, before the flush) is rebuilt from the raw reports.
    let r = report(0.95, "1.95.0", &[("cargo/invocations", 2)]);
    assert_eq!(upload(&again, &r).await.0, StatusCode::OK);
    drop(again);
    let restarted = collector.state(store.path(), 1).await.unwrap();
    assert_eq!(restarted.weeks_index().weeks[0].reports, 7);
    let cargo = restarted
        .program_week(WEEK.parse().unwrap(), "cargo")
        .unwrap();
    assert_eq!(cargo.counters[0].total, Some(14));
    // A corrupt merge is rebuilt too.
    std::fs::write(&merged_path, b"garbage").unwrap();
    drop(restarted);
    let rebuilt = collector.state(store.path(), 1).await.unwrap();
    assert_eq!(rebuilt.weeks_index().weeks[0].reports, 7);
}

#[tokio::test]
async fn keeps_every_config_version_and_refuses_rollbacks() {
    let (collector, store, state) = serving(1).await;
    drop(state);
    // Version 2 drops go; a report filtered by version 1 is still judged by version 1.
    let v2 = EXAMPLE_CONFIG.replacen("\"version\": 1", "\"version\": 2", 1);
    collector.write_config(&v2);
    let state = collector.state(store.path(), 1).await.unwrap();
    assert!(
        store.path().join("configs/1.json").exists()
            && store.path().join("configs/2.json").exists()
    );
    let mut r = report(0.3, "1.95.0", &[("cargo/invocations", 1)]);
    assert_eq!(
        upload(&state, &r).await.0,
        StatusCode::OK,
        "version 1 is still accepted"
    );
    r.config_version = Some(2);
    r.x = 0.31;
    assert_eq!(upload(&state, &r).await.0, StatusCode::OK);
    drop(state);
    // Going back to version 1 is refused, and so is a changed version 2.
    collector.write_config(EXAMPLE_CONFIG);
    let err = collector.state(store.path(), 1).await.err().unwrap();
    assert!(
        format!("{err:#}").contains("lower than version 2"),
        "{err:#}"
    );
    let changed = v2.replace("\"sample_rate\": 1.0", "\"sample_rate\": 0.5");
    collector.write_config(&changed);
    let err = collector.state(store.path(), 1).await.err().unwrap();
    assert!(format!("{err:#}").contains("different contents"), "{err:#}");
}

#[tokio::test]
async fn refuses_reports_above_the_sample_rate() {
    let config = EXAMPLE_CONFIG.replace("\"sample_rate\": 1.0", "\"sample_rate\": 0.2");
    let collector = Collector::with_config(&config);
    let store = tempfile::tempdir().unwrap();
    let state = collector.state(store.path(), 1).await.unwrap();
    let (status, reason) =
        upload(&state, &report(0.5, "1.95.0", &[("cargo/invocations", 1)])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reason.contains("sample_rate"), "{reason}");
    assert_eq!(
        upload(&state, &report(0.1, "1.95.0", &[("cargo/invocations", 1)]))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_report_spanning_programs_is_one_report() {
    let (_collector, _store, state) = serving(1).await;
    let mut r = report(0.4, "1.95.0", &[("cargo/invocations", 1)]);
    r.programs.push(tally_protocol::ProgramReport {
        program: "rustc".into(),
        version: "1.95.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        counters: [("rustc/edition:2021".to_string(), 4)].into(),
    });
    assert_eq!(upload(&state, &r).await.0, StatusCode::OK);
    let index = state.weeks_index();
    assert_eq!(index.weeks[0].reports, 1);
    assert_eq!(index.weeks[0].programs.len(), 2);
    let (status, bytes) = call(&state, "GET", &format!("/api/weeks/{WEEK}/rustc"), vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let rustc: ProgramWeek = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(rustc.counters[0].name, "rustc/edition:2021");
    assert_eq!(
        call(&state, "GET", "/api/weeks/bad/rustc", vec![]).await.0,
        StatusCode::BAD_REQUEST
    );
}

/// A report body for the example config with `x` written as `x_text`, exactly.
fn body_with_x(x_text: &str) -> Vec<u8> {
    let text =
        String::from_utf8(body(&report(0.5, "1.95.0", &[("cargo/invocations", 1)]))).unwrap();
    assert!(text.contains("\"x\": 0.5,"));
    text.replace("\"x\": 0.5,", &format!("\"x\": {x_text},"))
        .into_bytes()
}

/// Every `x` in (0, 1) is stored, under a key of bounded length that names exactly the f64 the
/// sent digits denote; equal numbers written differently are one report.
#[tokio::test]
async fn stores_each_report_under_exactly_the_x_it_sent() {
    let (_collector, store, state) = serving(1).await;
    let key_name = |x: f64| {
        let key = tally_server::store::report_key(WEEK.parse().unwrap(), x, 0);
        assert!(key.as_ref().len() <= tally_server::store::MAX_REPORT_KEY_LEN);
        assert!(key.filename().unwrap().len() <= tally_server::store::MAX_REPORT_NAME_LEN);
        key.filename().unwrap().to_string()
    };
    let name_exists = |name: &str| {
        stored_reports(store.path())
            .iter()
            .any(|p| p.file_name().unwrap().to_str() == Some(name))
    };
    for (sent, name, reply) in [
        (
            "0.9999999999999999",
            "2026-11-16_0.9999999999999999.json",
            "stored",
        ),
        ("1e-300", "2026-11-16_1e-300.json", "stored"),
        ("5e-324", "2026-11-16_5e-324.json", "stored"),
        ("0.25", "2026-11-16_0.25.json", "stored"),
        ("2.5e-1", "2026-11-16_0.25.json", "already stored"),
        ("0.250", "2026-11-16_0.25.json", "already stored"),
        ("0.0000999", "2026-11-16_9.99e-5.json", "stored"),
    ] {
        let (status, text) = call(
            &state,
            "POST",
            &format!("/upload/{WEEK}"),
            body_with_x(sent),
        )
        .await;
        assert_eq!(
            (status, String::from_utf8(text).unwrap()),
            (StatusCode::OK, format!("{reply}\n")),
            "x = {sent}"
        );
        assert!(name_exists(name), "x = {sent}: no {name}");
    }
    // Random 17-digit x: the stored key parses back to the f64 the sent text denotes (the
    // audit found about one in nine one digit off).
    let mut rng = fastrand::Rng::with_seed(15);
    let mut sent = 0;
    for _ in 0..300 {
        let digits: String = (0..17).map(|_| char::from(b'0' + rng.u8(0..10))).collect();
        let text = format!("0.{digits}");
        let x: f64 = text.parse().unwrap();
        if x == 0.0 {
            continue;
        }
        let (status, reply) = call(
            &state,
            "POST",
            &format!("/upload/{WEEK}"),
            body_with_x(&text),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply)
        );
        let name = key_name(x);
        assert!(name_exists(&name), "x = {text} is not stored as {name}");
        let stored = std::fs::read(store.path().join("reports/2026-11-16/0").join(&name)).unwrap();
        let stored = tally_protocol::Report::parse(&stored).unwrap();
        assert_eq!(stored.x.to_bits(), x.to_bits(), "x = {text}");
        sent += 1;
    }
    let index: WeeksIndex =
        serde_json::from_slice(&call(&state, "GET", "/api/weeks", vec![]).await.1).unwrap();
    assert_eq!(index.weeks[0].reports, 5 + sent);
}

/// Versions that are not one canonical spelling of a real-looking version, reports without
/// sections, sections without counts, zero counts and names given twice are refused with a 400
/// and change no aggregate.
#[tokio::test]
async fn refuses_reports_that_would_pollute_the_aggregates() {
    let (_collector, store, state) = serving(1).await;
    let good = String::from_utf8(body(&report(
        0.5,
        "1.95.0",
        &[("cargo/invocations", 2), ("cargo/subcommand:build", 1)],
    )))
    .unwrap();
    let mut twice = report(0.5, "1.95.0", &[("cargo/invocations", 2)]);
    twice.programs.push(twice.programs[0].clone());
    let mut empty_section = report(0.5, "1.95.0", &[]);
    empty_section.programs[0].counters.clear();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            good.replace("1.95.0", "01.95.0").into_bytes(),
            "not MAJOR.MINOR.PATCH",
        ),
        (
            good.replace("1.95.0", "99999.99999.99999").into_bytes(),
            "not MAJOR.MINOR.PATCH",
        ),
        (
            good.replace("1.95.0", "1.095.0").into_bytes(),
            "not MAJOR.MINOR.PATCH",
        ),
        (
            good.replace("1.95.0", "1.69.0").into_bytes(),
            "not collected by config",
        ),
        (
            format!(
                "{{\"week\": \"{WEEK}\", \"x\": 0.5, \"config_version\": 1, \"programs\": []}}"
            )
            .into_bytes(),
            "programs is empty",
        ),
        (
            good.replace(
                "\"cargo/invocations\": 2,",
                "\"cargo/invocations\": 2, \"cargo/invocations\": 7,",
            )
            .into_bytes(),
            "appears twice",
        ),
        (body(&twice), "same program, version, os and arch"),
        (body(&empty_section), "has no counters"),
        (good.replace(": 2,", ": 0,").into_bytes(), "count 0"),
    ];
    for (bytes, want) in cases {
        let (status, reply) = call(&state, "POST", &format!("/upload/{WEEK}"), bytes).await;
        let reply = String::from_utf8(reply).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{want}: {reply}");
        assert!(reply.contains(want), "{reply:?} should mention {want:?}");
    }
    assert!(stored_reports(store.path()).is_empty());
    assert!(state.weeks_index().weeks.is_empty());
}
