//! Uploading against a real HTTP collector on loopback: what leaves the machine, when, and
//! what becomes of each report. Time moves only through `TALLY_NOW`.
//!
//! The schedule used throughout (weeks start on Monday): consent on 2026-11-04, inside the
//! week of 2026-11-02, which is therefore never sent; the week of 2026-11-09 began after
//! consent and may be sent once it has ended, from 2026-11-16 on.

use std::process::{Command, Stdio};

use crate::support::{Collector, Fixture, Server, cli_exe};
use tally_protocol::Report;

const CONSENT: &str = "2026-11-04";
const BEFORE_CONSENT_DAY: &str = "2026-11-05";
const AFTER_CONSENT_DAY: &str = "2026-11-10";
const UPLOAD_DAY: &str = "2026-11-17";
const SENDABLE_WEEK: &str = "2026-11-09";

/// A data directory in mode `on` (consent on [`CONSENT`]) pointed at `server`, which serves a
/// config signed by `collector` that wants `counters` at `sample_rate`; and counts in the week
/// before consent and the week after.
fn consented(
    server: &Server,
    collector: &Collector,
    sample_rate: f64,
    counters: &[(&str, f64)],
) -> Fixture {
    let fx = Fixture::new();
    let config = collector.config(1, "2027-01-01", sample_rate, counters);
    server.set_config(&config, &collector.sign(&config));
    let on = fx.run(
        CONSENT,
        &[],
        &[
            "on",
            "--endpoint",
            &server.url,
            "--key",
            &collector.key.public_base64,
        ],
    );
    assert!(on.ok(), "{on:?}");
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
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());

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
    let sent = std::fs::read(
        fx.home
            .reports_dir()
            .join("sent")
            .join(format!("{SENDABLE_WEEK}.json")),
    )
    .unwrap();
    assert_eq!(sent, uploads[0].body);
    assert!(fx.reports("pending").is_empty());
    assert_eq!(fx.reports("local"), ["2026-11-02.json", "2026-11-09.json"]);

    // The daily gate was touched and the run recorded for `tally status`.
    assert!(fx.root().join("upload.token").exists());
    let status = fx.run(UPLOAD_DAY, &[], &["status"]);
    assert!(
        status.stdout.contains("Last upload:  2026-11-17: 1 sent"),
        "{}",
        status.stdout
    );

    // Nothing is sent twice.
    let again = fx.run("2026-11-18", &[], &["upload"]);
    assert!(again.ok(), "{again:?}");
    assert_eq!(server.uploads().len(), 1);
}

#[test]
fn mode_local_sends_nothing_and_fetches_nothing() {
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    let local = fx.run(UPLOAD_DAY, &[], &["local"]);
    assert!(local.ok(), "{local:?}");

    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(out.ok(), "{out:?}");
    assert!(out.stdout.contains("the mode is local"), "{}", out.stdout);
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
    assert!(out.stdout.contains("TALLY=local"), "{}", out.stdout);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn counters_are_kept_only_when_x_is_at_most_their_rate() {
    let server = Server::start();
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
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(out.ok(), "{out:?}");
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
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 0.0, &wanted());
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(out.ok(), "{out:?}");
    assert!(out.stdout.contains("sampled out"), "{}", out.stdout);
    assert!(server.uploads().is_empty());
    assert!(fx.reports("pending").is_empty());
}

#[test]
fn a_refusal_is_kept_with_its_reason_and_never_retried() {
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    server.answer_uploads_with(400, "unknown counter\nin report");

    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(out.ok(), "{out:?}");
    assert!(
        out.stderr.contains("refused by the collector, not retried"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fx.reports("refused"),
        [
            format!("{SENDABLE_WEEK}.json"),
            format!("{SENDABLE_WEEK}.json.reason")
        ]
    );
    let reason = std::fs::read_to_string(
        fx.home
            .reports_dir()
            .join("refused")
            .join(format!("{SENDABLE_WEEK}.json.reason")),
    )
    .unwrap();
    assert_eq!(reason, "HTTP 400: unknown counter in report\n");

    for day in ["2026-11-18", "2026-11-19"] {
        let again = fx.run(day, &[], &["upload"]);
        assert!(again.ok(), "{again:?}");
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
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    server.answer_uploads_with(503, "busy");

    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(!out.ok(), "a failed delivery is a failed command: {out:?}");
    assert!(
        out.stderr
            .contains("tried again on a later run: HTTP 503: busy"),
        "{}",
        out.stderr
    );
    assert_eq!(fx.reports("pending"), [format!("{SENDABLE_WEEK}.json")]);
    let status = fx.run(UPLOAD_DAY, &[], &["status"]);
    assert!(
        status.stdout.contains("1 kept for a later try"),
        "{}",
        status.stdout
    );

    let later = fx.run("2026-11-18", &[], &["upload"]);
    assert!(later.ok(), "{later:?}");
    let uploads = server.uploads();
    assert_eq!(uploads.len(), 2);
    assert_eq!(
        uploads[0].body, uploads[1].body,
        "the retry sends the same bytes (same x)"
    );
    assert_eq!(fx.reports("sent"), [format!("{SENDABLE_WEEK}.json")]);

    // No network at all is the same: kept.
    let fx = consented(&server, &collector, 1.0, &wanted());
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let repoint = fx.run(
        CONSENT,
        &[],
        &[
            "on",
            "--endpoint",
            &dead,
            "--key",
            &collector.key.public_base64,
        ],
    );
    assert!(repoint.ok(), "{repoint:?}");
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(!out.ok());
    // Without a reachable collector there is no config, so nothing was even built for upload.
    assert!(fx.reports("sent").is_empty());
}

#[test]
fn a_tampered_config_sends_nothing() {
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    let config = collector.config(2, "2027-01-01", 1.0, &wanted());
    let signature = collector.sign(&config);
    server.set_config(&config.replacen("1.0", "0.9", 1), &signature);

    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(!out.ok(), "{out:?}");
    assert!(
        out.stdout.contains("does not match the config"),
        "{}",
        out.stdout
    );
    assert!(server.uploads().is_empty());
    assert!(fx.reports("pending").is_empty());
    let status = fx.run(UPLOAD_DAY, &[], &["status"]);
    assert!(
        status.stdout.contains("Config:       not usable"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("Last upload:  2026-11-17: nothing sent: the collector's config was refused"),
        "{}",
        status.stdout
    );
}

#[test]
fn a_config_signed_by_another_key_sends_nothing() {
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    let impostor = Collector::new();
    let config = impostor.config(2, "2027-01-01", 1.0, &wanted());
    server.set_config(&config, &impostor.sign(&config));
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(out.stdout.contains("not pinned"), "{}", out.stdout);
    assert!(server.uploads().is_empty());
}

#[test]
fn an_expired_config_sends_nothing() {
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    let config = collector.config(1, "2026-11-16", 1.0, &wanted());
    server.set_config(&config, &collector.sign(&config));
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(!out.ok(), "{out:?}");
    assert!(out.stdout.contains("expired"), "{}", out.stdout);
    assert!(server.uploads().is_empty());
}

#[test]
fn a_rolled_back_config_sends_nothing() {
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    let v5 = collector.config(5, "2027-01-01", 1.0, &wanted());
    server.set_config(&v5, &collector.sign(&v5));
    // An upload run during the week fetches and accepts version 5 (nothing is due yet).
    let early = fx.run("2026-11-12", &[], &["upload"]);
    assert!(early.ok(), "{early:?}");
    assert!(server.uploads().is_empty());

    let v3 = collector.config(3, "2027-01-01", 1.0, &wanted());
    server.set_config(&v3, &collector.sign(&v3));
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(!out.ok(), "{out:?}");
    assert!(out.stdout.contains("lower than"), "{}", out.stdout);
    assert!(server.uploads().is_empty(), "{:?}", server.uploads());
}

#[test]
fn do_not_track_sends_nothing_and_writes_nothing() {
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
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
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    let out = fx.run(UPLOAD_DAY, &[("TALLY_DEBUG_UPLOAD", "1")], &["upload"]);
    assert!(out.ok(), "{out:?}");
    assert!(server.uploads().is_empty());
    let pending = std::fs::read_to_string(
        fx.home
            .reports_dir()
            .join("pending")
            .join(format!("{SENDABLE_WEEK}.json")),
    )
    .unwrap();
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
    assert!(dry.stdout.contains("dry run: would send"), "{}", dry.stdout);
    assert!(server.uploads().is_empty());
    assert_eq!(fx.reports("pending").len(), 1);
}

#[test]
fn two_uploaders_never_send_the_same_report() {
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    let held = tally_upload::lock::try_lock(fx.root())
        .unwrap()
        .expect("lock is free");
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(
        out.stdout.contains("another tally upload is running"),
        "{}",
        out.stdout
    );
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
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    let out = run_process(&fx, UPLOAD_DAY, &[], &["upload", "--background"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(server.uploads().len(), 1);
    assert!(fx.root().join("upload.token").exists());
}

#[test]
fn reports_older_than_three_weeks_are_never_sent() {
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
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
    let server = Server::start();
    let collector = Collector::new();
    let fx = consented(&server, &collector, 1.0, &wanted());
    let dry = fx.run(UPLOAD_DAY, &[], &["upload", "--dry-run"]);
    assert!(dry.ok(), "{dry:?}");
    assert_eq!(fx.reports("pending").len(), 1);
    let off = fx.run(UPLOAD_DAY, &[], &["off"]);
    assert!(off.stdout.contains("Deleted 1 report(s)"), "{}", off.stdout);
    assert!(fx.reports("pending").is_empty());

    // Turning on again is new consent: the old week stays unsent.
    let on = fx.run(UPLOAD_DAY, &[], &["on"]);
    assert!(on.ok(), "{on:?}");
    assert!(
        on.stdout.contains("for weeks that begin after 2026-11-17"),
        "{}",
        on.stdout
    );
    let out = fx.run("2026-11-18", &[], &["upload"]);
    assert!(out.ok(), "{out:?}");
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
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let collector = Collector::new();
    let fx = Fixture::new();
    let on = fx.run(
        CONSENT,
        &[],
        &[
            "on",
            "--endpoint",
            &url,
            "--key",
            &collector.key.public_base64,
        ],
    );
    assert!(on.ok(), "{on:?}");
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
    let old = fx.run("2026-09-08", &[], &["upload"]);
    assert!(old.ok(), "{old:?}");
    assert_eq!(fx.reports("local"), ["2026-08-31.json"]);
    fx.count("2026-11-10", "cargo", "1.95.0", &[("cargo/invocations", 2)]);

    // Eight weeks after its end, the old week goes; the recent one stays.
    let out = fx.run(UPLOAD_DAY, &[], &["upload"]);
    assert!(out.ok(), "{out:?}");
    assert!(
        out.stderr
            .contains("deleted 1 file(s) of weeks older than 8 weeks"),
        "{}",
        out.stderr
    );
    assert_eq!(fx.reports("local"), ["2026-11-09.json"]);
}
