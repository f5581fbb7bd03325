//! Uploading against a real HTTP collector on loopback: what leaves the machine, when, and
//! what becomes of each report. Time moves only through `TALLY_NOW`.
//!
//! The schedule used throughout (weeks start on Monday): consent on 2026-11-04, inside the
//! week of 2026-11-02, which is therefore never sent; the week of 2026-11-09 began after
//! consent and may be sent once it has ended, from 2026-11-16 on.

use std::process::{Command, Stdio};

use crate::support::{Collector, Fixture, cli_exe};
use tally_protocol::Report;
use tally_test_support::collector::{FakeCollector, silent_collector, unreachable_url};

const CONSENT: &str = "2026-11-04";
const BEFORE_CONSENT_DAY: &str = "2026-11-05";
const AFTER_CONSENT_DAY: &str = "2026-11-10";
const UPLOAD_DAY: &str = "2026-11-17";
const SENDABLE_WEEK: &str = "2026-11-09";

/// A data directory in mode `on` (consent on [`CONSENT`]) pointed at `server`, which serves a
/// config signed by `collector` that wants `counters` at `sample_rate`; and counts in the week
/// before consent and the week after.
/// A collector serving a config that wants [`wanted`] at `sample_rate`, and a data directory
/// [`consented`] to it.
fn consented_to_wanted(sample_rate: f64) -> (FakeCollector, Collector, Fixture) {
    let server = FakeCollector::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, sample_rate, &wanted());
    (server, collector, fx)
}

fn consented(
    server: &FakeCollector,
    collector: &Collector,
    sample_rate: f64,
    counters: &[(&str, f64)],
) -> Fixture {
    let fx = Fixture::new();
    let config = collector.config(1, "2027-01-01", sample_rate, counters);
    collector.publish(server, &config);
    fx.turn_on(CONSENT, &server.url, collector);
    fx.count(
        BEFORE_CONSENT_DAY,
        "cargo",
        "1.95.0",
        &[("cargo/invocations", 3), ("cargo/subcommand:build", 2)],
    );
    fx.count(
        AFTER_CONSENT_DAY,
        "cargo",
        "1.95.0",
        &[
            ("cargo/invocations", 5),
            ("cargo/subcommand:build", 4),
            ("cargo/build/flag:--release", 1),
        ],
    );
    fx
}

fn wanted() -> Vec<(&'static str, f64)> {
    vec![
        ("cargo/invocations", 1.0),
        ("cargo/subcommand:{build,test}", 1.0),
    ]
}

/// Runs the real CLI program with only the given environment.
fn run_process(
    fx: &Fixture,
    today: &str,
    extra: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let mut command = Command::new(cli_exe());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TALLY_DIR", fx.root())
        .env("TALLY_NOW", today);
    for (k, v) in extra {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn on_sends_only_weeks_after_consent_and_only_wanted_counters() {
    let (server, _, fx) = consented_to_wanted(1.0);

    let out = run_process(&fx, UPLOAD_DAY, &[], &["upload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Upload: 1 sent."), "{stdout}");
    assert!(
        stdout.contains("Week of 2026-11-02: not uploaded"),
        "{stdout}"
    );
    assert!(stderr.contains("accepted (HTTP 200)"), "{stderr}");

    let uploads = server.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].path, format!("/upload/{SENDABLE_WEEK}"));
    let report = Report::parse(&uploads[0].body).unwrap();
    assert_eq!(report.week.to_string(), SENDABLE_WEEK);
    assert_eq!(report.config_version, Some(1));
    assert_eq!(report.programs.len(), 1);
    let counters: Vec<(&str, u64)> = report.programs[0]
        .counters
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        counters,
        [("cargo/invocations", 5), ("cargo/subcommand:build", 4)]
    );

    // Filed as sent, byte for byte what went out; both weeks kept locally in full.
    assert_eq!(fx.reports("sent"), [format!("{SENDABLE_WEEK}.json")]);
    let sent = fx
        .report_text("sent", &format!("{SENDABLE_WEEK}.json"))
        .into_bytes();
    assert_eq!(sent, uploads[0].body);
    assert!(fx.reports("pending").is_empty());
    assert_eq!(fx.reports("local"), ["2026-11-02.json", "2026-11-09.json"]);

    // The daily gate was touched and the run recorded for `tally status`.
    assert!(fx.root().join("upload.token").exists());
    let status = fx.run(UPLOAD_DAY, &[], &["status"]);
    status.assert_stdout_has("Last upload:  2026-11-17: 1 sent");

    // Nothing is sent twice.
    fx.run_ok("2026-11-18", &["upload"]);
    assert_eq!(server.uploads().len(), 1);
}

#[test]
fn mode_local_sends_nothing_and_fetches_nothing() {
    let (server, collector, fx) = consented_to_wanted(1.0);
    fx.run_ok(UPLOAD_DAY, &["local"]);

    let out = fx.run_ok(UPLOAD_DAY, &["upload"]);
    out.assert_stdout_has("the mode is local");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(fx.reports("pending").is_empty());
    assert_eq!(
        fx.reports("local").len(),
        2,
        "reports are still built locally"
    );

    // TALLY=local lowers a stored `on` the same way.
    let fx = consented(&server, &collector, 1.0, &wanted());
    let out = fx.run(UPLOAD_DAY, &[("TALLY", "local")], &["upload"]);
    out.assert_stdout_has("TALLY=local");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn counters_are_kept_only_when_x_is_at_most_their_rate() {
    let server = FakeCollector::start();
    let collector = Collector::new();
    let fx = consented(
        &server,
        &collector,
        1.0,
        &[
            ("cargo/invocations", 1.0),
            ("cargo/subcommand:build", 0.0),
            ("cargo/build/flag:--release", 0.5),
        ],
    );
    fx.run_ok(UPLOAD_DAY, &["upload"]);
    let uploads = server.uploads();
    assert_eq!(uploads.len(), 1);
    let report = Report::parse(&uploads[0].body).unwrap();
    let counters = &report.programs[0].counters;
    assert_eq!(counters.get("cargo/invocations"), Some(&5));
    assert_eq!(
        counters.get("cargo/subcommand:build"),
        None,
        "rate 0 keeps nothing (x > 0)"
    );
    assert_eq!(
        counters.contains_key("cargo/build/flag:--release"),
        report.x <= 0.5,
        "x = {} against rate 0.5",
        report.x
    );
}

#[test]
fn a_report_whose_x_exceeds_the_sample_rate_is_not_sent() {
    let (server, _, fx) = consented_to_wanted(0.0);
    let out = fx.run_ok(UPLOAD_DAY, &["upload"]);
    out.assert_stdout_has("sampled out");
    assert!(server.uploads().is_empty());
    assert!(fx.reports("pending").is_empty());
}

#[test]
fn a_refusal_is_kept_with_its_reason_and_never_retried() {
    let (server, _, fx) = consented_to_wanted(1.0);
    server.answer_uploads_with(400, "unknown counter\nin report");

    let out = fx.run_ok(UPLOAD_DAY, &["upload"]);
    out.assert_stderr_has("refused by the collector, not retried");
    assert_eq!(
        fx.reports("refused"),
        [
            format!("{SENDABLE_WEEK}.json"),
            format!("{SENDABLE_WEEK}.json.reason")
        ]
    );
    let reason = fx.report_text("refused", &format!("{SENDABLE_WEEK}.json.reason"));
    assert_eq!(reason, "HTTP 400: unknown counter in report\n");

    for day in ["2026-11-18", "2026-11-19"] {
        fx.run_ok(day, &["upload"]);
    }
    assert_eq!(
        server.uploads().len(),
        1,
        "a refused report is never sent again"
    );
    assert!(fx.reports("pending").is_empty());
}

#[test]
fn a_server_error_keeps_the_report_for_a_later_run() {
    let (server, collector, fx) = consented_to_wanted(1.0);
    server.answer_uploads_with(503, "busy");

    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(!out.ok(), "a failed delivery is a failed command: {out:?}");
    out.assert_stderr_has("tried again on a later run: HTTP 503: busy");
    assert_eq!(fx.reports("pending"), [format!("{SENDABLE_WEEK}.json")]);
    let status = fx.run(UPLOAD_DAY, &[], &["status"]);
    status.assert_stdout_has("1 kept for a later try");

    fx.run_ok("2026-11-18", &["upload"]);
    let uploads = server.uploads();
    assert_eq!(uploads.len(), 2);
    assert_eq!(
        uploads[0].body, uploads[1].body,
        "the retry sends the same bytes (same x)"
    );
    assert_eq!(fx.reports("sent"), [format!("{SENDABLE_WEEK}.json")]);

    // No network at all is the same: kept.
    let fx = consented(&server, &collector, 1.0, &wanted());
    fx.turn_on(CONSENT, &unreachable_url(), &collector);
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(!out.ok());
    // Without a reachable collector there is no config, so nothing was even built for upload.
    assert!(fx.reports("sent").is_empty());
}

/// Publishes on `server` version `version` of the config that wants [`wanted`] from every
/// client, expiring on `expires`, signed by `signer`.
fn publish_wanted(server: &FakeCollector, signer: &Collector, version: u64, expires: &str) {
    signer.publish(server, &signer.config(version, expires, 1.0, &wanted()));
}

/// Runs `tally upload` on [`UPLOAD_DAY`] with the config `server` now publishes: it fails, says
/// `why`, and sends nothing.
fn assert_config_refused(server: &FakeCollector, fx: &Fixture, why: &str) {
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(!out.ok(), "{out:?}");
    out.assert_stdout_has(why);
    assert!(server.uploads().is_empty(), "{:?}", server.uploads());
}

#[test]
fn a_tampered_config_sends_nothing() {
    let (server, collector, fx) = consented_to_wanted(1.0);
    let config = collector.config(2, "2027-01-01", 1.0, &wanted());
    let signature = collector.sign(&config);
    server.publish(config.replacen("1.0", "0.9", 1), &signature);

    assert_config_refused(&server, &fx, "does not match the config");
    assert!(fx.reports("pending").is_empty());
    let status = fx.run(UPLOAD_DAY, &[], &["status"]);
    status.assert_stdout_has("Config:       not usable");
    status.assert_stdout_has(
        "Last upload:  2026-11-17: nothing sent: the collector's config was refused",
    );
}

#[test]
fn a_config_signed_by_another_key_sends_nothing() {
    let (server, _, fx) = consented_to_wanted(1.0);
    let impostor = Collector::new();
    publish_wanted(&server, &impostor, 2, "2027-01-01");
    assert_config_refused(&server, &fx, "not pinned");
}

#[test]
fn an_expired_config_sends_nothing() {
    let (server, collector, fx) = consented_to_wanted(1.0);
    publish_wanted(&server, &collector, 1, "2026-11-16");
    assert_config_refused(&server, &fx, "expired");
}

#[test]
fn a_rolled_back_config_sends_nothing() {
    let (server, collector, fx) = consented_to_wanted(1.0);
    publish_wanted(&server, &collector, 5, "2027-01-01");
    // An upload run during the week fetches and accepts version 5 (nothing is due yet).
    fx.run_ok("2026-11-12", &["upload"]);
    assert!(server.uploads().is_empty());

    publish_wanted(&server, &collector, 3, "2027-01-01");
    assert_config_refused(&server, &fx, "lower than");
}

#[test]
fn do_not_track_sends_nothing_and_writes_nothing() {
    let (server, _, fx) = consented_to_wanted(1.0);
    let before = fx.all_files();
    let requests_before = server.requests().len();
    for (name, value) in [("DO_NOT_TRACK", "1"), ("TALLY", "off")] {
        for args in [&["upload"][..], &["preview"], &["show"], &["status"]] {
            let out = fx.run(UPLOAD_DAY, &[(name, value)], args);
            assert!(out.ok(), "{args:?}: {out:?}");
        }
        let out = run_process(
            &fx,
            UPLOAD_DAY,
            &[(name, value)],
            &["upload", "--background"],
        );
        assert!(out.status.success());
    }
    assert_eq!(fx.all_files(), before, "nothing created, moved or removed");
    assert_eq!(server.requests().len(), requests_before);
}

#[test]
fn debug_upload_prints_the_report_and_sends_nothing() {
    let (server, _, fx) = consented_to_wanted(1.0);
    let out = fx.run(UPLOAD_DAY, &[("TALLY_DEBUG_UPLOAD", "1")], &["upload"]);
    assert!(out.ok(), "{out:?}");
    assert!(server.uploads().is_empty());
    let pending = fx.report_text("pending", &format!("{SENDABLE_WEEK}.json"));
    assert!(
        out.stdout.contains(&format!(
            "TALLY_DEBUG_UPLOAD is set: would send these {} bytes to {}/upload/{SENDABLE_WEEK}, and sent nothing:\n{pending}",
            pending.len(),
            server.url
        )),
        "{}",
        out.stdout
    );
    assert!(!fx.root().join("upload.last.json").exists());

    // --dry-run is the same from the command line.
    let dry = fx.run(UPLOAD_DAY, &[], &["upload", "--dry-run"]);
    dry.assert_stdout_has("dry run: would send");
    assert!(server.uploads().is_empty());
    assert_eq!(fx.reports("pending").len(), 1);
}

#[test]
fn two_uploaders_never_send_the_same_report() {
    let (server, _, fx) = consented_to_wanted(1.0);
    let held = tally_upload::lock::try_lock(fx.root())
        .unwrap()
        .expect("lock is free");
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    out.assert_stdout_has("another tally upload is running");
    assert!(server.uploads().is_empty());
    drop(held);

    // Many real processes at once: the report goes out exactly once.
    let children: Vec<_> = (0..6)
        .map(|_| {
            Command::new(cli_exe())
                .arg("upload")
                .env_clear()
                .env("TALLY_DIR", fx.root())
                .env("TALLY_NOW", UPLOAD_DAY)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        child.wait().unwrap();
    }
    assert_eq!(server.uploads().len(), 1);
    assert_eq!(fx.reports("sent"), [format!("{SENDABLE_WEEK}.json")]);
}

#[test]
fn the_background_run_is_quiet_and_uploads() {
    let (server, _, fx) = consented_to_wanted(1.0);
    let out = run_process(&fx, UPLOAD_DAY, &[], &["upload", "--background"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(server.uploads().len(), 1);
    assert!(fx.root().join("upload.token").exists());
}

#[test]
fn reports_older_than_three_weeks_are_never_sent() {
    let (server, _, fx) = consented_to_wanted(1.0);
    server.answer_uploads_with(503, "down");
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(!out.ok());
    assert_eq!(fx.reports("pending").len(), 1);
    // 22 days after the week began, the pending report is dropped, not sent.
    let late = fx.run("2026-12-01", &[], &["upload"]);
    assert!(late.stderr.contains("dropped unsent"), "{late:?}");
    assert_eq!(server.uploads().len(), 1, "only the first, failed attempt");
    assert!(fx.reports("pending").is_empty());
}

#[test]
fn withdrawing_consent_deletes_waiting_reports() {
    let (server, _, fx) = consented_to_wanted(1.0);
    fx.run_ok(UPLOAD_DAY, &["upload", "--dry-run"]);
    assert_eq!(fx.reports("pending").len(), 1);
    let off = fx.run(UPLOAD_DAY, &[], &["off"]);
    off.assert_stdout_has("Deleted 1 report(s)");
    assert!(fx.reports("pending").is_empty());

    // Turning on again is new consent: the old week stays unsent.
    let on = fx.run_ok(UPLOAD_DAY, &["on"]);
    on.assert_stdout_has("for weeks that begin after 2026-11-17");
    fx.run_ok("2026-11-18", &["upload"]);
    assert!(server.uploads().is_empty());
}

/// The session id of a running process, from `/proc/<pid>/stat` (Linux).
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session …`; comm may hold spaces, so skip past its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn the_background_run_leaves_the_callers_session_first() {
    if !std::path::Path::new("/proc/self/stat").exists() {
        eprintln!("skipped: no /proc to read session ids from");
        return;
    }
    // A collector that accepts connections and never answers keeps the run busy.
    let (_silent, url) = silent_collector();
    let collector = Collector::new();
    let fx = Fixture::new();
    fx.turn_on(CONSENT, &url, &collector);
    let mut child = Command::new(cli_exe())
        .args(["upload", "--background"])
        .env_clear()
        .env("TALLY_DIR", fx.root())
        .env("TALLY_NOW", UPLOAD_DAY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut own_session = false;
    // Bounded wait: the child calls setsid before anything else.
    for _ in 0..100 {
        if session_of(pid) == Some(pid) {
            own_session = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        own_session,
        "the background run did not start its own session"
    );
    assert_ne!(session_of(std::process::id()), Some(pid));
}

#[test]
fn the_upload_run_deletes_weeks_past_retention() {
    let fx = Fixture::new();
    fx.count("2026-09-01", "cargo", "1.95.0", &[("cargo/invocations", 1)]);
    fx.run_ok("2026-09-08", &["upload"]);
    assert_eq!(fx.reports("local"), ["2026-08-31.json"]);
    fx.count("2026-11-10", "cargo", "1.95.0", &[("cargo/invocations", 2)]);

    // Eight weeks after its end, the old week goes; the recent one stays.
    let out = fx.run_ok(UPLOAD_DAY, &["upload"]);
    out.assert_stderr_has("deleted 1 file(s) of weeks older than 8 weeks");
    assert_eq!(fx.reports("local"), ["2026-11-09.json"]);
}
