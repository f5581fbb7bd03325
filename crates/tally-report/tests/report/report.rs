//! Weekly reports on a real data directory with real counter files.

use std::path::{Path, PathBuf};

use crate::support::install_config;
use tally_home::{Home, Mode, counter_file_name};
use tally_protocol::{Day, Report};
use tally_report::{BuildError, Withheld, build_due_reports, build_due_reports_with, preview};
use tally_sys::{CounterFile, FileMeta};

fn day(s: &str) -> Day {
    s.parse().unwrap()
}

fn on_since(s: &str) -> Mode {
    Mode::On { since: day(s) }
}

const WEEK: &str = "2026-11-09";
const WEEK_END: &str = "2026-11-16";

/// Writes a counter file for (program, version, linux, x86_64, week) with these counts.
fn counter_file(
    home: &Home,
    program: &str,
    version: &str,
    week: &str,
    counts: &[(&str, u64)],
) -> PathBuf {
    let start = day(week);
    let meta = FileMeta {
        program: program.into(),
        version: version.into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        week_start: start.to_string(),
        week_end: start.plus_days(7).unwrap().to_string(),
    };
    std::fs::create_dir_all(home.counters_dir()).unwrap();
    let path = home.counters_dir().join(counter_file_name(&meta));
    let (file, _) = CounterFile::open_or_create(&path, &meta).unwrap();
    for (name, n) in counts {
        file.add(name, *n).unwrap();
    }
    path
}

const CONFIG: &str = r#"{
  "version": 9,
  "expires": "2027-06-30",
  "sample_rate": 0.5,
  "os": ["linux"],
  "arch": ["x86_64"],
  "programs": [
    { "name": "cargo", "versions": ">=1.70.0",
      "counters": [
        { "name": "cargo/invocations", "rate": 0.5 },
        { "name": "cargo/subcommand:{build,test}", "rate": 0.25 }
      ] }
  ]
}"#;

fn read_report(path: &Path) -> Report {
    Report::parse(&std::fs::read(path).unwrap()).unwrap()
}

fn local_path(home: &Home, week: &str) -> PathBuf {
    home.reports_dir()
        .join("local")
        .join(format!("{week}.json"))
}

fn pending_path(home: &Home, week: &str) -> PathBuf {
    home.reports_dir()
        .join("pending")
        .join(format!("{week}.json"))
}

fn setup() -> (tempfile::TempDir, Home) {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("tally"));
    (dir, home)
}

fn typical_week(home: &Home) -> Vec<PathBuf> {
    vec![
        counter_file(
            home,
            "cargo",
            "1.95.0",
            WEEK,
            &[
                ("cargo/invocations", 12),
                ("cargo/subcommand:build", 9),
                ("cargo/subcommand:run", 3),
            ],
        ),
        counter_file(home, "rustc", "1.95.0", WEEK, &[("rustc/invocations", 40)]),
    ]
}

/// A home holding [`typical_week`] (its files returned) and the collector's [`CONFIG`],
/// installed on `today`.
fn configured_typical_week(today: Day) -> (tempfile::TempDir, Home, Vec<PathBuf>) {
    let (dir, home) = setup();
    let files = typical_week(&home);
    install_config(&home, CONFIG, today);
    (dir, home, files)
}

#[test]
fn an_ended_week_becomes_a_local_report_and_a_filtered_upload_copy() {
    let today = day("2026-11-17");
    let (_d, home, files) = configured_typical_week(today);

    let summary =
        build_due_reports_with(&home, on_since("2026-11-01"), today, &mut || 0.2).unwrap();
    assert_eq!(summary.built.len(), 1);
    assert_eq!(summary.built[0].files, 2);
    assert!(
        files.iter().all(|f| !f.exists()),
        "counter files are removed once reported"
    );

    let local = read_report(&local_path(&home, WEEK));
    assert_eq!(local.week, day(WEEK));
    assert_eq!(local.x, 0.2);
    assert_eq!(local.config_version, None);
    assert_eq!(local.programs.len(), 2, "the local copy holds everything");
    assert_eq!(local.programs[0].counters["cargo/subcommand:run"], 3);

    let upload = read_report(&pending_path(&home, WEEK));
    assert_eq!(upload.x, 0.2, "both copies share x");
    assert_eq!(upload.config_version, Some(9));
    assert_eq!(upload.programs.len(), 1, "rustc is not in the config");
    // x = 0.2 <= 0.25: both configured counters; `run` is not named by the config.
    let wanted = [("cargo/invocations", 12), ("cargo/subcommand:build", 9)];
    assert_eq!(
        upload.programs[0].counters,
        wanted.map(|(name, n)| (name.to_string(), n)).into()
    );
    // Exactly the canonical bytes are on disk (what preview shows, what is sent).
    assert_eq!(
        std::fs::read(pending_path(&home, WEEK)).unwrap(),
        upload.to_canonical_json()
    );

    // Running again changes nothing.
    let again = build_due_reports(&home, on_since("2026-11-01"), today).unwrap();
    assert!(again.built.is_empty() && again.pending_written.is_empty());
    assert_eq!(read_report(&local_path(&home, WEEK)).x, 0.2);
}

#[test]
fn a_week_that_has_not_ended_is_left_alone_and_ends_on_its_end_day() {
    let (_d, home) = setup();
    let files = typical_week(&home);
    let summary = build_due_reports(&home, Mode::Local, day("2026-11-15")).unwrap();
    assert!(summary.built.is_empty());
    assert!(files.iter().all(|f| f.exists()));
    let summary = build_due_reports(&home, Mode::Local, day(WEEK_END)).unwrap();
    assert_eq!(summary.built.len(), 1);
}

#[test]
fn consent_must_predate_the_week() {
    for (since, sent) in [
        ("2026-11-08", true),
        ("2026-11-09", false),
        ("2026-11-12", false),
    ] {
        let today = day("2026-11-17");
        let (_d, home, _) = configured_typical_week(today);
        let summary = build_due_reports_with(&home, on_since(since), today, &mut || 0.1).unwrap();
        assert_eq!(
            pending_path(&home, WEEK).exists(),
            sent,
            "consent on {since}"
        );
        if !sent {
            assert_eq!(
                summary.withheld,
                [(
                    day(WEEK),
                    Withheld::ConsentNotBeforeWeek {
                        since: day(since),
                        week: day(WEEK)
                    }
                )]
            );
        }
    }
}

#[test]
fn sampling_x_against_the_sample_rate_and_each_counter_rate() {
    // sample_rate 0.5; cargo/invocations 0.5; the subcommands 0.25.
    let cases: [(f64, Option<&[&str]>); 4] = [
        (0.1, Some(&["cargo/invocations", "cargo/subcommand:build"])),
        (0.25, Some(&["cargo/invocations", "cargo/subcommand:build"])),
        (0.4, Some(&["cargo/invocations"])),
        (0.7, None),
    ];
    for (x, expected) in cases {
        let today = day("2026-11-17");
        let (_d, home, _) = configured_typical_week(today);
        let summary =
            build_due_reports_with(&home, on_since("2026-11-01"), today, &mut || x).unwrap();
        match expected {
            Some(names) => {
                let upload = read_report(&pending_path(&home, WEEK));
                let kept: Vec<&str> = upload.programs[0]
                    .counters
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(kept, names, "x = {x}");
            }
            None => {
                assert!(!pending_path(&home, WEEK).exists());
                assert_eq!(
                    summary.withheld,
                    [(
                        day(WEEK),
                        Withheld::SampledOut {
                            x,
                            sample_rate: 0.5
                        }
                    )]
                );
                assert!(summary.withheld[0].1.to_string().contains("x = 0.7000"));
            }
        }
    }
}

#[test]
fn local_and_off_modes_send_nothing_and_off_writes_nothing() {
    let today = day("2026-11-17");
    let (_d, home, files) = configured_typical_week(today);
    let summary = build_due_reports(&home, Mode::Off, today).unwrap();
    assert!(summary.built.is_empty());
    assert!(files.iter().all(|f| f.exists()));
    assert!(!home.reports_dir().exists(), "mode off creates nothing");

    let summary = build_due_reports(&home, Mode::Local, today).unwrap();
    assert_eq!(summary.built.len(), 1);
    assert!(local_path(&home, WEEK).exists());
    assert!(!home.reports_dir().join("pending").exists());
    assert_eq!(
        summary.withheld,
        [(day(WEEK), Withheld::ModeNotOn(Mode::Local))]
    );
}

#[test]
fn old_weeks_are_never_queued() {
    let (_d, home) = setup();
    typical_week(&home);
    let today = day(WEEK).plus_days(22).unwrap();
    install_config(&home, CONFIG, today);
    let summary =
        build_due_reports_with(&home, on_since("2026-11-01"), today, &mut || 0.1).unwrap();
    assert!(!pending_path(&home, WEEK).exists());
    assert_eq!(
        summary.withheld,
        [(
            day(WEEK),
            Withheld::TooOld {
                week: day(WEEK),
                age_days: 22
            }
        )]
    );
    // 21 days is still fine.
    let (_d2, home) = setup();
    typical_week(&home);
    let today = day(WEEK).plus_days(21).unwrap();
    install_config(&home, CONFIG, today);
    build_due_reports_with(&home, on_since("2026-11-01"), today, &mut || 0.1).unwrap();
    assert!(pending_path(&home, WEEK).exists());
}

#[test]
fn without_a_config_nothing_is_queued_until_one_verifies_then_with_the_same_x() {
    let (_d, home) = setup();
    let today = day("2026-11-17");
    typical_week(&home);
    let summary =
        build_due_reports_with(&home, on_since("2026-11-01"), today, &mut || 0.2).unwrap();
    assert!(!pending_path(&home, WEEK).exists());
    assert!(matches!(&summary.withheld[0].1, Withheld::NoConfig(r) if r.contains("endpoint")));

    // A config that verifies but names nothing counted.
    let unrelated = CONFIG.replace("\"cargo\"", "\"gofmt\"");
    install_config(&home, &unrelated, today);
    let summary = build_due_reports(&home, on_since("2026-11-01"), today).unwrap();
    assert_eq!(
        summary.withheld,
        [(day(WEEK), Withheld::NothingAllowed { config_version: 9 })]
    );

    install_config(&home, CONFIG, today);
    let summary = build_due_reports(&home, on_since("2026-11-01"), today).unwrap();
    assert_eq!(summary.pending_written.len(), 1);
    assert_eq!(read_report(&pending_path(&home, WEEK)).x, 0.2);
}

#[test]
fn a_tampered_cached_config_queues_nothing() {
    let today = day("2026-11-17");
    let (_d, home, _) = configured_typical_week(today);
    let cached = home.config_dir().join("config.json");
    let text = std::fs::read_to_string(&cached)
        .unwrap()
        .replace("0.5,", "1.0,");
    std::fs::write(&cached, text).unwrap();
    let summary =
        build_due_reports_with(&home, on_since("2026-11-01"), today, &mut || 0.2).unwrap();
    assert!(!pending_path(&home, WEEK).exists());
    assert!(
        matches!(&summary.withheld[0].1, Withheld::NoConfig(r) if r.contains("does not match"))
    );
}

#[test]
fn a_failing_write_keeps_the_counter_files() {
    let (_d, home) = setup();
    let files = typical_week(&home);
    // `reports` is a file, so no report can be written under it, and it cannot be moved aside
    // either: `quarantine` is a file too.
    std::fs::create_dir_all(home.root()).unwrap();
    std::fs::write(home.reports_dir(), "in the way").unwrap();
    std::fs::write(home.quarantine_dir(), "in the way").unwrap();
    let err = build_due_reports(&home, Mode::Local, day("2026-11-17")).unwrap_err();
    assert!(matches!(err, BuildError::Write { .. }));
    assert!(err.to_string().contains("counter files were kept"), "{err}");
    assert!(files.iter().all(|f| f.exists()));
    // Once the obstacle is gone, the week is reported in full.
    std::fs::remove_file(home.reports_dir()).unwrap();
    std::fs::remove_file(home.quarantine_dir()).unwrap();
    build_due_reports(&home, Mode::Local, day("2026-11-17")).unwrap();
    let local = read_report(&local_path(&home, WEEK));
    assert_eq!(
        local
            .programs
            .iter()
            .map(|p| p.counters.values().sum::<u64>())
            .sum::<u64>(),
        64
    );
}

#[test]
fn leftovers_of_an_interrupted_run_are_not_counted_twice() {
    let (_d, home) = setup();
    let today = day("2026-11-17");
    typical_week(&home);
    build_due_reports(&home, Mode::Local, today).unwrap();
    let before = std::fs::read(local_path(&home, WEEK)).unwrap();
    // As if a run had crashed after writing the report but before removing the files.
    let again = typical_week(&home);
    let summary = build_due_reports(&home, Mode::Local, today).unwrap();
    assert!(summary.built.is_empty());
    assert!(again.iter().all(|f| !f.exists()));
    assert_eq!(std::fs::read(local_path(&home, WEEK)).unwrap(), before);
}

#[test]
fn corrupt_counter_files_are_quarantined_and_reported() {
    let (_d, home) = setup();
    typical_week(&home);
    let bad = home
        .counters_dir()
        .join("cargo@1.0.0-linux-x86_64-2026-11-09.v1.count");
    std::fs::write(&bad, b"this is not a counter file").unwrap();
    let summary = build_due_reports(&home, Mode::Local, day("2026-11-17")).unwrap();
    assert_eq!(summary.quarantined.len(), 1);
    let (moved, reason) = &summary.quarantined[0];
    assert!(moved.starts_with(home.quarantine_dir()) && moved.exists());
    assert!(!reason.is_empty());
    assert!(!bad.exists());
    assert_eq!(summary.built.len(), 1, "the valid files are still reported");
}

/// Any program that follows the shared name rule is reported like the shimmed tools (a tool
/// counting through `tally-counter`); a file whose header names something else is moved aside,
/// and the report still reads back (`Report::parse` refuses such a name).
#[test]
fn third_party_programs_are_reported_and_bad_program_names_quarantined() {
    let (_d, home) = setup();
    typical_week(&home);
    counter_file(
        &home,
        "cargo-nextest",
        "0.9.3",
        WEEK,
        &[("cargo-nextest/run", 2)],
    );
    let bad = counter_file(&home, "Secret Project", "1.0.0", WEEK, &[("x/y", 1)]);
    let summary = build_due_reports(&home, Mode::Local, day("2026-11-17")).unwrap();
    assert_eq!(summary.quarantined.len(), 1, "{:?}", summary.quarantined);
    let (_, reason) = &summary.quarantined[0];
    assert!(!reason.contains("Secret"), "{reason}");
    assert!(!bad.exists());
    let report = read_report(&local_path(&home, WEEK));
    let programs: Vec<&str> = report.programs.iter().map(|p| p.program.as_str()).collect();
    assert_eq!(programs, ["cargo", "cargo-nextest", "rustc"]);
    assert_eq!(report.programs[1].counters["cargo-nextest/run"], 2);
}

#[test]
fn sections_with_the_same_key_are_merged_and_weeks_kept_apart() {
    let (_d, home) = setup();
    typical_week(&home);
    counter_file(
        &home,
        "cargo",
        "1.95.0",
        "2026-11-02",
        &[("cargo/invocations", 5)],
    );
    let summary = build_due_reports(&home, Mode::Local, day("2026-11-17")).unwrap();
    let weeks: Vec<Day> = summary.built.iter().map(|b| b.week).collect();
    assert_eq!(weeks, [day("2026-11-02"), day(WEEK)]);
    assert_eq!(
        read_report(&local_path(&home, "2026-11-02")).programs[0].counters["cargo/invocations"],
        5
    );
}

#[test]
fn preview_shows_the_exact_bytes_or_why_not() {
    let (_d, home) = setup();
    let today = day("2026-11-17");

    // Nothing counted yet.
    let p = preview(&home, Mode::Local, today).unwrap();
    assert!(p.to_send().is_empty());
    assert!(
        p.explain().contains("no counted week has ended"),
        "{}",
        p.explain()
    );

    // Counting this week: says when the report is due.
    counter_file(
        &home,
        "cargo",
        "1.95.0",
        "2026-11-16",
        &[("cargo/invocations", 1)],
    );
    let p = preview(&home, Mode::Local, today).unwrap();
    assert!(
        p.explain().contains("built on 2026-11-23"),
        "{}",
        p.explain()
    );

    // Off: nothing is touched.
    typical_week(&home);
    let p = preview(&home, Mode::Off, today).unwrap();
    assert!(p.explain().contains("tally is off"));
    assert!(!home.reports_dir().exists());

    // Local: the reason is the mode.
    let p = preview(&home, Mode::Local, today).unwrap();
    assert_eq!(p.weeks.len(), 1);
    assert_eq!(
        p.weeks[0].outcome.as_ref().unwrap_err(),
        &Withheld::ModeNotOn(Mode::Local)
    );
    assert!(p.explain().contains("the mode is local"), "{}", p.explain());

    // On with a config: built in local mode, the week's x is fixed; it may be sampled out or
    // sent, and preview agrees with the pending file byte for byte.
    install_config(
        &home,
        &CONFIG.replace("0.5", "1.0").replace("0.25", "1.0"),
        today,
    );
    let p = preview(&home, on_since("2026-11-01"), today).unwrap();
    let sent = p.to_send();
    assert_eq!(sent.len(), 1, "{}", p.explain());
    assert_eq!(sent[0].1, std::fs::read(pending_path(&home, WEEK)).unwrap());
    assert!(p.explain().contains("would send"));

    // Once sent, it is no longer previewed.
    std::fs::create_dir_all(home.reports_dir().join("sent")).unwrap();
    std::fs::rename(
        pending_path(&home, WEEK),
        home.reports_dir().join("sent").join(format!("{WEEK}.json")),
    )
    .unwrap();
    let p = preview(&home, on_since("2026-11-01"), today).unwrap();
    assert!(p.weeks.is_empty());
}

#[test]
fn preview_names_the_sampling_numbers() {
    let today = day("2026-11-17");
    let (_d, home, _) = configured_typical_week(today);
    build_due_reports_with(&home, on_since("2026-11-01"), today, &mut || 0.9).unwrap();
    let p = preview(&home, on_since("2026-11-01"), today).unwrap();
    let text = p.explain();
    assert!(
        text.contains("x = 0.9000") && text.contains("sample rate 0.5"),
        "{text}"
    );
}

#[test]
fn a_local_report_over_the_upload_limit_still_yields_an_upload_copy() {
    let (_d, home) = setup();
    let today = day("2026-11-17");
    let many: Vec<(String, u64)> = (0..4000)
        .map(|i| (format!("cargo/flag:--some-long-flag-name-{i:05}"), 1))
        .collect();
    let many: Vec<(&str, u64)> = many.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    counter_file(&home, "cargo", "1.95.0", WEEK, &many);
    counter_file(&home, "cargo", "1.95.0", WEEK, &[("cargo/invocations", 2)]);
    install_config(&home, CONFIG, today);
    let summary =
        build_due_reports_with(&home, on_since("2026-11-01"), today, &mut || 0.2).unwrap();
    assert!(summary.problems.is_empty(), "{:?}", summary.problems);
    let local_len = std::fs::metadata(local_path(&home, WEEK)).unwrap().len();
    assert!(
        local_len > tally_protocol::MAX_REPORT_BYTES as u64,
        "{local_len}"
    );
    let upload = read_report(&pending_path(&home, WEEK));
    assert_eq!(upload.programs[0].counters["cargo/invocations"], 2);
}

/// A `reports/` that is a link, or a link planted as a week's local report, is never written
/// or read through: the link is moved aside and the week reported in a real directory.
#[test]
fn links_in_the_reports_folders_are_never_followed() {
    let (d, home) = setup();
    typical_week(&home);
    std::fs::create_dir_all(home.root()).unwrap();
    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, home.reports_dir()).unwrap();
    build_due_reports(&home, Mode::Local, day("2026-11-17")).unwrap();
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(
        std::fs::symlink_metadata(home.reports_dir())
            .unwrap()
            .is_dir()
    );
    assert!(local_path(&home, WEEK).is_file());
    // A link where a week's local report is read: refused with a message, target untouched.
    let outside = d.path().join("outside.json");
    std::fs::write(&outside, "{}").unwrap();
    let week: Day = "2026-11-02".parse().unwrap();
    std::os::unix::fs::symlink(&outside, local_path(&home, "2026-11-02")).unwrap();
    let err = tally_report::build::read_local(&home, week).unwrap_err();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "{}");
}

/// A counter file an older tally wrote with a tool's raw version text: the local report keeps
/// only the normalised version.
#[test]
fn local_reports_hold_only_normalised_versions() {
    let meta = FileMeta {
        program: "go".into(),
        version: "go1.19.8-qzcustom /home/qzalice".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        week_start: WEEK.into(),
        week_end: WEEK_END.into(),
    };
    let snapshot = tally_home::Snapshot {
        meta,
        counters: [("go/invocations".to_string(), 2)].into(),
        dropped: 0,
    };
    let report = tally_report::merge(day(WEEK), 0.5, [snapshot]);
    assert_eq!(report.programs[0].version, "1.19.8");
    assert!(
        !String::from_utf8(report.to_canonical_json())
            .unwrap()
            .contains("qz")
    );
}
