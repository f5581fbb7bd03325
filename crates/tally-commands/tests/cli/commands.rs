//! The commands' behaviour and output: `on`, `local`, `off`, `clean`, `show`, `status`,
//! `preview`, `config`. Output is pinned with insta snapshots, with the temporary data
//! directory, the loopback port, key ids and random numbers filtered out. Time moves only
//! through `TALLY_NOW`.

use crate::support::{Collector, Fixture};
use tally_test_support::collector::FakeCollector;

const CONSENT: &str = "2026-11-04";

/// Filters for everything that differs between runs.
fn filters(fx: &Fixture, server: Option<&FakeCollector>) -> Vec<(String, String)> {
    let mut filters = vec![
        (
            regex_escape(&fx.root().display().to_string()),
            "[DATA]".to_string(),
        ),
        (r#""x": 0\.\d+"#.to_string(), r#""x": [X]"#.to_string()),
        // Key ids print as minisign does: up to 16 hex digits, no zero padding.
        (
            r"\bkey [0-9A-F]{1,16}\b".to_string(),
            "key [KEYID]".to_string(),
        ),
        (
            r"these \d+ bytes".to_string(),
            "these [N] bytes".to_string(),
        ),
        (r"RW[A-Za-z0-9+/=]{54}".to_string(), "[PUBKEY]".to_string()),
        // The shims block depends on this machine's PATH.
        (
            r"(?m)^Shims:.*\n(  .*\n)*".to_string(),
            "[SHIMS]\n".to_string(),
        ),
        (
            r"(?m)^Under cargo:.*$".to_string(),
            "[UNDER CARGO]".to_string(),
        ),
        // Counter files record the platform they were made on.
        (format!(r"\b{}\b", std::env::consts::OS), "[OS]".to_string()),
        (
            format!(r"\b{}\b", std::env::consts::ARCH),
            "[ARCH]".to_string(),
        ),
    ];
    if let Some(server) = server {
        filters.insert(0, (regex_escape(&server.url), "[COLLECTOR]".to_string()));
    }
    filters
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

macro_rules! snapshot {
    ($filters:expr, $name:expr, $text:expr) => {{
        let filters: Vec<(String, String)> = $filters;
        let refs: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        insta::with_settings!({ filters => refs, prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $text);
        });
    }};
}

/// A data directory with counts in two weeks: 2026-11-09 (ended by 2026-11-17, turned into a
/// local report by an upload run) and 2026-11-16 (in progress).
fn counted() -> Fixture {
    let fx = Fixture::new();
    fx.count_cargo_builds("2026-11-10");
    fx.count(
        "2026-11-11",
        "rustc",
        "1.95.0",
        &[("rustc/invocations", 40), ("rustc/edition:2021", 40)],
    );
    fx.run_ok("2026-11-17", &["upload"]);
    fx.count(
        "2026-11-17",
        "cargo",
        "1.95.0",
        &[("cargo/invocations", 2), ("cargo/subcommand:test", 2)],
    );
    fx.count(
        "2026-11-18",
        "go",
        "go1.19.8",
        &[("go/invocations", 1), ("go/subcommand:build", 1)],
    );
    fx
}

#[test]
fn show_prints_every_counter_per_week_and_program() {
    let fx = counted();
    let text = fx.run("2026-11-18", &[], &["show"]);
    assert!(text.ok() && text.stderr.is_empty(), "{text:?}");
    snapshot!(filters(&fx, None), "show_text", text.stdout);

    let json = fx.run("2026-11-18", &[], &["show", "--json"]);
    snapshot!(filters(&fx, None), "show_json", json.stdout);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["weeks"].as_array().unwrap().len(), 2);

    let csv = fx.run("2026-11-18", &[], &["show", "--csv"]);
    snapshot!(filters(&fx, None), "show_csv", csv.stdout);

    let week = fx.run("2026-11-18", &[], &["show", "--week", "2026-11-12"]);
    assert!(
        week.stdout
            .contains("Week 2026-11-09 to 2026-11-15 (ended; local report)")
    );
    assert!(!week.stdout.contains("2026-11-16"), "{}", week.stdout);
    let empty = fx.run("2026-11-18", &[], &["show", "--week", "2026-10-01"]);
    assert_eq!(
        empty.stdout,
        "tally holds no counts for the week of 2026-10-01.\n"
    );
    let bad = fx.run("2026-11-18", &[], &["show", "--week", "last week"]);
    assert!(!bad.ok());
    bad.assert_stderr_has("give a day as YYYY-MM-DD");
}

#[test]
fn show_skips_and_quarantines_a_corrupt_counter_file() {
    let fx = counted();
    let corrupt = fx
        .home
        .counters_dir()
        .join("cargo@1.95.0-linux-x86_64-2026-11-16.v1.count.bad.count");
    std::fs::write(&corrupt, b"# not a counter file\x00\xff").unwrap();
    let out = fx.run_ok("2026-11-18", &["show"]);
    out.assert_stderr_has("tally: skipped");
    out.assert_stderr_has("it was moved to");
    assert!(!corrupt.exists());
    assert!(
        out.stdout.contains("cargo/subcommand:test"),
        "the good files are still shown"
    );
    let quarantined: Vec<_> = std::fs::read_dir(fx.home.quarantine_dir())
        .unwrap()
        .collect();
    assert_eq!(quarantined.len(), 2, "the file and its .reason");

    // In mode off nothing is moved: the message alone.
    std::fs::write(&corrupt, b"garbage").unwrap();
    let off = fx.run("2026-11-18", &[("TALLY", "off")], &["show"]);
    assert!(off.ok());
    off.assert_stderr_has("tally: skipped");
    assert!(corrupt.exists());
}

#[test]
fn status_says_where_everything_stands() {
    let server = FakeCollector::start();
    let collector = Collector::new();
    let config = collector.config(7, "2027-01-01", 1.0, &[("cargo/invocations", 1.0)]);
    collector.publish(&server, &config);
    let fx = counted();
    let before = fx.run("2026-11-17", &[], &["status"]);
    snapshot!(filters(&fx, None), "status_local", before.stdout);

    fx.turn_on(CONSENT, &server.url, &collector);
    fx.run_ok("2026-11-18", &["upload"]);
    let status = fx.run_ok("2026-11-18", &["status"]);
    snapshot!(filters(&fx, Some(&server)), "status_on", status.stdout);

    let json = fx.run("2026-11-18", &[], &["status", "--json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["mode"], "on");
    assert_eq!(parsed["since"], CONSENT);
    assert_eq!(parsed["config"]["verified"], true);
    assert_eq!(parsed["config"]["version"], 7);
    assert_eq!(parsed["this_week"]["counts"], 6);
    assert_eq!(parsed["last_upload"]["day"], "2026-11-18");

    let config = fx.run_ok("2026-11-18", &["config"]);
    config.assert_stdout_has("Verified:  yes, signed by key");
    config.assert_stdout_has("Version:   7");
    assert!(
        config.stdout.contains("\"cargo/invocations\""),
        "the config itself is shown"
    );

    // The environment lowering the mode is said plainly.
    let lowered = fx.run("2026-11-18", &[("TALLY", "local")], &["status"]);
    lowered.assert_stdout_has("but TALLY=local in this environment");
    let forced = fx.run("2026-11-18", &[("DO_NOT_TRACK", "1")], &["status"]);
    forced.assert_stdout_has("Mode:         off");

    // A tampered cache is reported, not trusted.
    let cached = fx.home.config_dir().join("config.json");
    let body = std::fs::read_to_string(&cached).unwrap();
    std::fs::write(
        &cached,
        body.replacen("\"version\": 7", "\"version\": 8", 1),
    )
    .unwrap();
    let tampered = fx.run("2026-11-18", &[], &["status"]);
    tampered.assert_stdout_has("Config:       not usable, nothing is uploaded");
}

#[test]
fn status_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("never-created");
    let env = tally_home::Env::from_pairs([
        ("TALLY_DIR".into(), root.clone().into()),
        ("TALLY_NOW".into(), "2026-11-18".into()),
    ]);
    let out = crate::support::run_in_process(&env, &["status"]);
    assert!(out.ok(), "{out:?}");
    out.assert_stdout_has("This week:    nothing counted yet");
    assert!(!root.exists(), "status created the data directory");
}

#[test]
fn preview_shows_the_exact_bytes_or_why_nothing() {
    let server = FakeCollector::start();
    let collector = Collector::new();
    // Counters carry the chart they are collected for; preview names it.
    let config = collector
        .config(
            3,
            "2027-01-01",
            1.0,
            &[("cargo/invocations", 1.0), ("cargo/subcommand:build", 1.0)],
        )
        .replacen(
            "\"rate\": 1.0",
            "\"rate\": 1.0, \"chart\": \"cargo-usage\"",
            1,
        );
    collector.publish(&server, &config);
    let fx = Fixture::new();
    let local = fx.run("2026-11-10", &[], &["preview"]);
    snapshot!(filters(&fx, None), "preview_nothing_counted", local.stdout);

    fx.turn_on(CONSENT, &server.url, &collector);
    fx.count("2026-11-05", "cargo", "1.95.0", &[("cargo/invocations", 3)]);
    fx.count_cargo_builds("2026-11-10");
    // Fetch the config without anything being due yet.
    fx.run_ok("2026-11-08", &["upload"]);

    let preview = fx.run_ok("2026-11-17", &["preview"]);
    snapshot!(filters(&fx, Some(&server)), "preview_on", preview.stdout);
    // The bytes shown are the bytes that will be sent.
    let pending =
        std::fs::read_to_string(fx.home.reports_dir().join("pending/2026-11-09.json")).unwrap();
    assert!(preview.stdout.contains(&pending));
    fx.run_ok("2026-11-17", &["upload"]);
    assert_eq!(server.uploads()[0].body, pending.as_bytes());
    assert!(server.uploads().len() == 1);

    let forced = fx.run("2026-11-17", &[("DO_NOT_TRACK", "true")], &["preview"]);
    assert!(
        forced
            .stdout
            .starts_with("Nothing would be sent: TALLY=off or DO_NOT_TRACK"),
        "{}",
        forced.stdout
    );
}

#[test]
fn on_needs_a_collector_and_says_what_will_be_sent() {
    let fx = Fixture::new();
    let collector = Collector::new();
    let missing = fx.run(CONSENT, &[], &["on"]);
    assert!(!missing.ok());
    missing.assert_stderr_has("tally on --endpoint https://tally.example.org --key RW");
    let bad_key = fx.run(
        CONSENT,
        &[],
        &["on", "--endpoint", "https://c.example", "--key", "hunter2"],
    );
    assert!(!bad_key.ok());
    bad_key.assert_stderr_has("is not a minisign public key");
    let bad_url = fx.on(CONSENT, &[], "c.example", &collector);
    bad_url.assert_stderr_has("is not a collector URL");
    assert!(
        !fx.root().join("mode").exists(),
        "a failed `on` changes nothing"
    );

    let on = fx.turn_on(CONSENT, "https://c.example/", &collector);
    snapshot!(filters(&fx, None), "on", on.stdout);
    assert_eq!(
        std::fs::read_to_string(fx.root().join("mode")).unwrap(),
        "on 2026-11-04\n"
    );

    // Again later, same collector: the first consent date stands.
    let again = fx.run("2026-11-20", &[], &["on"]);
    again.assert_stdout_has("tally is on (since 2026-11-04)");
    assert_eq!(
        std::fs::read_to_string(fx.root().join("mode")).unwrap(),
        "on 2026-11-04\n"
    );
    // Another collector is new consent.
    let other = fx.on("2026-11-20", &[], "https://d.example", &collector);
    assert!(other.ok(), "{other:?}");
    assert_eq!(
        std::fs::read_to_string(fx.root().join("mode")).unwrap(),
        "on 2026-11-20\n"
    );
    let insecure = fx.on("2026-11-20", &[], "http://d.example", &collector);
    insecure.assert_stderr_has("unencrypted");
}

#[test]
fn modes_are_refused_or_skipped_when_the_environment_forces_off() {
    let fx = Fixture::new();
    let collector = Collector::new();
    let before = fx.all_files();
    for (name, value) in [("DO_NOT_TRACK", "1"), ("TALLY", "off")] {
        let on = fx.on(CONSENT, &[(name, value)], "https://c.example", &collector);
        assert!(!on.ok());
        on.assert_stderr_has("run the command again without them");
        let local = fx.run(CONSENT, &[(name, value)], &["local"]);
        assert!(!local.ok());
        let off = fx.run(CONSENT, &[(name, value)], &["off"]);
        assert!(off.ok());
        off.assert_stdout_has("already off in this environment");
    }
    assert_eq!(fx.all_files(), before);

    let off = fx.run(CONSENT, &[], &["off"]);
    assert!(off.ok());
    assert_eq!(
        std::fs::read_to_string(fx.root().join("mode")).unwrap(),
        "off\n"
    );
    let local = fx.run(CONSENT, &[], &["local"]);
    assert!(local.ok());
    assert_eq!(
        std::fs::read_to_string(fx.root().join("mode")).unwrap(),
        "local\n"
    );
}

#[test]
fn clean_asks_and_removes_only_tally_files() {
    let fx = counted();
    let foreign = fx.root().join("my-notes.txt");
    std::fs::write(&foreign, "not tally's").unwrap();
    // One inside a directory of tally's, too.
    let local = fx.root().join("reports/local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("2026-11-09.json"), "{}").unwrap();
    std::fs::write(local.join("keep.txt"), "not tally's either").unwrap();
    // The wrapper links the cargo shim makes (one per user RUSTC_WRAPPER) are tally's too; the
    // binary they point at is not.
    let wrappers = fx.root().join("wrappers");
    std::fs::create_dir(&wrappers).unwrap();
    let binary = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::symlink(binary.path(), wrappers.join("tally-00000000000000aa")).unwrap();

    let refused = fx.run("2026-11-18", &[], &["clean"]);
    assert!(!refused.ok());
    refused.assert_stderr_has("run `tally clean --yes`");
    assert!(fx.home.counters_dir().exists());

    let off = fx.run("2026-11-18", &[], &["off"]);
    assert!(off.ok());
    let clean = fx.run_ok("2026-11-18", &["clean", "--yes"]);
    clean.assert_stdout_has("tally stays off");
    clean.assert_stdout_has(
        "Kept 2 entries that tally did not make: my-notes.txt, reports/local/keep.txt.",
    );
    let mut files = fx.all_files();
    files.sort();
    assert_eq!(files, ["mode", "my-notes.txt", "reports/local/keep.txt"]);
    assert!(binary.path().exists());
    let show = fx.run("2026-11-18", &[], &["show"]);
    assert!(
        show.stdout.starts_with("tally holds no counts yet"),
        "{}",
        show.stdout
    );

    let local = fx.run("2026-11-18", &[], &["local"]);
    assert!(local.ok());
    let clean = fx.run("2026-11-18", &[], &["clean", "-y"]);
    clean.assert_stdout_has("back to the default mode, local");
    let mut files = fx.all_files();
    files.sort();
    assert_eq!(files, ["my-notes.txt", "reports/local/keep.txt"]);
}

#[test]
fn config_verify_checks_any_file() {
    let fx = Fixture::new();
    let collector = Collector::new();
    let dir = tempfile::tempdir().unwrap();
    let config = collector.config(
        4,
        "2027-01-01",
        0.5,
        &[("cargo/subcommand:{build,test}", 1.0)],
    );
    let file = dir.path().join("config.json");
    let sig = dir.path().join("config.json.minisig");
    std::fs::write(&file, &config).unwrap();
    std::fs::write(&sig, collector.sign(&config)).unwrap();
    let (file_arg, sig_arg) = (file.to_str().unwrap(), sig.to_str().unwrap());

    let verify_with_key = |key: &str| {
        let args = ["config", "verify", file_arg, sig_arg, "--key", key];
        fx.run(CONSENT, &[], &args)
    };
    let ok = verify_with_key(&collector.key.public_base64);
    assert!(ok.ok(), "{ok:?}");
    ok.assert_stdout_has("the signature verifies and the config is valid");
    ok.assert_stdout_has("Program:   cargo >=1.0.0 (2 counters)");

    let none_pinned = fx.run(CONSENT, &[], &["config", "verify", file_arg, sig_arg]);
    assert!(!none_pinned.ok());
    none_pinned.assert_stderr_has("give a key with --key KEY");

    let other = Collector::new();
    let wrong_key = verify_with_key(&other.key.public_base64);
    assert!(!wrong_key.ok());
    wrong_key.assert_stderr_has("which is not pinned");

    std::fs::write(&file, config.replacen("0.5", "0.6", 1)).unwrap();
    let on = fx.on(CONSENT, &[], "https://c.example", &collector);
    assert!(on.ok());
    let tampered = fx.run(CONSENT, &[], &["config", "verify", file_arg, sig_arg]);
    assert!(!tampered.ok());
    tampered.assert_stderr_has("does not match the config");

    let expired = fx.run("2027-01-02", &[], &["config", "verify", file_arg, sig_arg]);
    assert!(!expired.ok());

    let missing = fx.run(
        CONSENT,
        &[],
        &["config", "verify", "/nonexistent/c.json", sig_arg],
    );
    missing.assert_stderr_has("cannot open /nonexistent/c.json; check the path");

    let show = fx.run(CONSENT, &[], &["config"]);
    assert!(show.ok());
    show.assert_stdout_has("Endpoint:  https://c.example");
    show.assert_stdout_has("Verified:  no: no config has been fetched");
}

#[test]
fn help_lists_the_environment_and_usage_errors_exit_2() {
    let fx = Fixture::new();
    let help = fx.run(CONSENT, &[], &["status", "--help"]);
    assert!(help.ok());
    for var in tally_home::env::VARS {
        assert!(
            help.stdout.contains(var.name),
            "{} missing from:\n{}",
            var.name,
            help.stdout
        );
    }
    let usage = fx.run(CONSENT, &[], &["show", "--json", "--csv"]);
    assert_eq!(usage.code, std::process::ExitCode::from(2));
    usage.assert_stderr_has("cannot be used with");
    let unknown = fx.run(CONSENT, &[], &["frobnicate"]);
    assert_eq!(unknown.code, std::process::ExitCode::from(2));
}

/// Runs the real CLI on a pseudo-terminal (util-linux `script`), typing `input`.
fn on_a_terminal(fx: &Fixture, args: &str, input: &str) -> Option<String> {
    use std::process::Command;
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is needed to give the CLI a terminal");
        return None;
    }
    let out = tally_test_support::command::run_with_input(
        Command::new("script")
            .args([
                "-qec",
                &format!("{} {args}", crate::support::cli_exe().display()),
                "/dev/null",
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TALLY_DIR", fx.root())
            .env("TALLY_NOW", CONSENT),
        input.as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn clean_on_a_terminal_asks_first() {
    let fx = counted();
    let Some(declined) = on_a_terminal(&fx, "clean", "n\n") else {
        return;
    };
    assert!(
        declined.contains("Delete everything tally holds in"),
        "{declined}"
    );
    assert!(declined.contains("Nothing deleted."), "{declined}");
    assert!(fx.home.counters_dir().exists());

    let accepted = on_a_terminal(&fx, "clean", "y\n").unwrap();
    assert!(accepted.contains("Deleted"), "{accepted}");
    assert!(fx.all_files().is_empty(), "{:?}", fx.all_files());
}

/// Text from outside (a signed config's trusted comment and fields, a report's contents) never
/// reaches the terminal raw: escape sequences are printed escaped.
#[test]
fn control_characters_from_outside_are_escaped() {
    let fx = Fixture::new();
    let collector = Collector::new();
    let dir = tempfile::tempdir().unwrap();
    let config = collector.config(4, "2027-01-01", 0.5, &[("cargo/subcommand:build", 1.0)]);
    let file = dir.path().join("config.json");
    let sig = dir.path().join("config.json.minisig");
    std::fs::write(&file, &config).unwrap();
    std::fs::write(
        &sig,
        collector.key.sign(
            config.as_bytes(),
            "signed \u{1b}]0;pwned\u{7}\u{1b}[31mred\u{9b}2J",
        ),
    )
    .unwrap();
    let out = fx.run(
        CONSENT,
        &[],
        &[
            "config",
            "verify",
            file.to_str().unwrap(),
            sig.to_str().unwrap(),
            "--key",
            &collector.key.public_base64,
        ],
    );
    let printed = format!("{}{}", out.stdout, out.stderr);
    assert!(
        printed.contains("Comment:   signed \\u001b]0;pwned\\u0007\\u001b[31mred\\u009b2J"),
        "{printed}"
    );
    assert!(
        !printed.contains(['\u{1b}', '\u{7}', '\u{9b}']),
        "{printed:?}"
    );

    // A local report holding an escape sequence in a counter name, as `tally show` reads it.
    let local = fx.home.reports_dir().join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(
        local.join("2026-11-09.json"),
        r#"{"week":"2026-11-09","x":0.5,"programs":[{"program":"cargo","version":"1.95.0","os":"linux","arch":"x86_64","counters":{"cargo/\u001b[2Jx":3}}]}"#,
    )
    .unwrap();
    for args in [&["show"][..], &["show", "--csv"], &["show", "--json"]] {
        let out = fx.run(CONSENT, &[], args);
        assert!(
            out.stdout.contains("cargo/\\u001b[2Jx"),
            "{args:?}: {}",
            out.stdout
        );
        assert!(!out.stdout.contains('\u{1b}'), "{args:?}: {:?}", out.stdout);
    }
}

/// Plain http:// to another machine is refused unless forced; to this machine it is fine.
#[test]
fn plain_http_to_another_machine_needs_allow_http() {
    let fx = Fixture::new();
    let key = Collector::new().key.public_base64;
    let refused = fx.run(
        CONSENT,
        &[],
        &["on", "--endpoint", "http://c.example", "--key", &key],
    );
    assert!(!refused.ok());
    refused.assert_stderr_has("--allow-http");
    assert_eq!(fx.home.stored_mode().unwrap(), tally_home::Mode::Local);
    let forced = fx.run(
        CONSENT,
        &[],
        &[
            "on",
            "--endpoint",
            "http://c.example",
            "--key",
            &key,
            "--allow-http",
        ],
    );
    assert!(forced.ok(), "{forced:?}");
    // Kept for the same URL without the flag.
    fx.run_ok(CONSENT, &["on"]);
    let local = fx.run(
        CONSENT,
        &[],
        &["on", "--endpoint", "http://127.0.0.1:9", "--key", &key],
    );
    assert!(local.ok(), "{local:?}");
}
