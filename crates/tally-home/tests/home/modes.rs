//! Modes, the environment, the data directory's location and the week schedule.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

use tally_home::{CountOutcome, Day, Env, Home, Mode, count_invocation, effective_mode};

fn env_with(pairs: &[(&str, &OsString)]) -> Env {
    Env::from_pairs(pairs.iter().map(|(k, v)| (OsString::from(k), (*v).clone())))
}

fn dir_env(root: &Path, extra: &[(&str, &str)]) -> Env {
    let mut pairs: Vec<(OsString, OsString)> = vec![
        ("TALLY_DIR".into(), root.as_os_str().to_owned()),
        ("TALLY_NOW".into(), "2026-11-24".into()),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    Env::from_pairs(pairs)
}

fn everything_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            found.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

#[test]
fn off_by_environment_creates_nothing_not_even_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("state/tally");
    for extra in [
        [("TALLY", "off")],
        [("DO_NOT_TRACK", "1")],
        [("DO_NOT_TRACK", "true")],
    ] {
        let env = dir_env(&root, &extra);
        let outcome = count_invocation(&env, "cargo", "1.91.0", &["cargo/build"]).unwrap();
        assert_eq!(outcome, CountOutcome::Skipped);
        assert!(everything_under(tmp.path()).is_empty(), "{extra:?}");
    }
}

#[test]
fn do_not_track_zero_or_false_still_counts() {
    for value in ["0", "false", ""] {
        let tmp = tempfile::tempdir().unwrap();
        let env = dir_env(tmp.path(), &[("DO_NOT_TRACK", value)]);
        let outcome = count_invocation(&env, "cargo", "1.91.0", &["cargo/build"]).unwrap();
        assert_eq!(
            outcome,
            CountOutcome::Counted { created_file: true },
            "{value:?}"
        );
    }
}

#[test]
fn stored_off_writes_nothing_more() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path());
    home.set_mode(Mode::Off).unwrap();
    let before = everything_under(tmp.path());
    let env = dir_env(tmp.path(), &[]);
    let outcome = count_invocation(&env, "go", "go1.19", &["go/build"]).unwrap();
    assert_eq!(outcome, CountOutcome::Skipped);
    assert_eq!(everything_under(tmp.path()), before);
}

#[test]
fn default_mode_is_local_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path());
    assert_eq!(home.stored_mode().unwrap(), Mode::Local);
    let env = dir_env(tmp.path(), &[]);
    assert_eq!(effective_mode(&env, Some(&home)), Mode::Local);
    let first = count_invocation(&env, "rustc", "1.91.0", &["rustc/a", "rustc/b"]).unwrap();
    let second = count_invocation(&env, "rustc", "1.91.0", &["rustc/a"]).unwrap();
    assert_eq!(first, CountOutcome::Counted { created_file: true });
    assert_eq!(
        second,
        CountOutcome::Counted {
            created_file: false
        }
    );
    let listed = home.counter_store().list();
    assert_eq!(listed.len(), 1);
    let snap = listed[0].1.as_ref().unwrap();
    assert_eq!(snap.counters["rustc/a"], 2);
    assert_eq!(snap.counters["rustc/b"], 1);
    assert_eq!(snap.meta.program, "rustc");
    assert_eq!(snap.meta.os, std::env::consts::OS);
    let week = home.week_of("2026-11-24".parse().unwrap()).unwrap();
    assert_eq!(snap.meta.week_start, week.start.to_string());
    assert_eq!(snap.meta.week_end, week.end.to_string());
    let name = listed[0].0.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        name,
        format!(
            "rustc@1.91.0-{}-{}-{}.v1.count",
            std::env::consts::OS,
            std::env::consts::ARCH,
            week.start
        )
    );
}

#[test]
fn environment_only_lowers_the_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path());
    let since: Day = "2026-11-20".parse().unwrap();
    home.set_mode(Mode::On { since }).unwrap();
    assert_eq!(
        std::fs::read_to_string(home.mode_path()).unwrap(),
        "on 2026-11-20\n"
    );
    let plain = dir_env(tmp.path(), &[]);
    assert_eq!(effective_mode(&plain, Some(&home)), Mode::On { since });
    let local = dir_env(tmp.path(), &[("TALLY", "local")]);
    assert_eq!(effective_mode(&local, Some(&home)), Mode::Local);
    let off = dir_env(tmp.path(), &[("TALLY", "off")]);
    assert_eq!(effective_mode(&off, Some(&home)), Mode::Off);

    // TALLY=on never raises.
    home.set_mode(Mode::Local).unwrap();
    let on = dir_env(tmp.path(), &[("TALLY", "on")]);
    assert_eq!(effective_mode(&on, Some(&home)), Mode::Local);
    home.set_mode(Mode::Off).unwrap();
    assert_eq!(effective_mode(&on, Some(&home)), Mode::Off);
    let local_over_off = dir_env(tmp.path(), &[("TALLY", "local")]);
    assert_eq!(effective_mode(&local_over_off, Some(&home)), Mode::Off);
}

#[test]
fn bad_mode_file_is_a_clear_error_and_counts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path());
    std::fs::write(home.mode_path(), "yes please\n").unwrap();
    let err = home.stored_mode().unwrap_err().to_string();
    assert!(
        err.contains("yes please") && err.contains("tally off"),
        "{err}"
    );
    let env = dir_env(tmp.path(), &[]);
    assert_eq!(effective_mode(&env, Some(&home)), Mode::Off);
    let before = everything_under(tmp.path());
    let err = count_invocation(&env, "go", "go1.19", &["go/build"]).unwrap_err();
    assert!(err.to_string().contains("yes please"), "{err}");
    assert_eq!(everything_under(tmp.path()), before, "nothing counted");
}

#[test]
fn data_directory_location() {
    let v = |s: &str| OsString::from(s);
    let home = Home::locate(&env_with(&[
        ("TALLY_DIR", &v("/x/tally")),
        ("XDG_STATE_HOME", &v("/y")),
        ("HOME", &v("/z")),
    ]))
    .unwrap();
    assert_eq!(home.root(), Path::new("/x/tally"));
    let home = Home::locate(&env_with(&[
        ("XDG_STATE_HOME", &v("/y")),
        ("HOME", &v("/z")),
    ]))
    .unwrap();
    assert_eq!(home.root(), Path::new("/y/tally"));
    let home = Home::locate(&env_with(&[
        ("XDG_STATE_HOME", &v("rel")),
        ("HOME", &v("/z")),
    ]))
    .unwrap();
    assert_eq!(home.root(), Path::new("/z/.local/state/tally"));
    assert_eq!(
        Home::locate(&env_with(&[("TALLY_DIR", &v("relative"))])),
        None
    );
    assert_eq!(Home::locate(&env_with(&[])), None);
    assert_eq!(Home::locate(&env_with(&[("HOME", &v(""))])), None);
}

#[test]
fn missing_home_counts_nothing_and_does_not_fail() {
    let env = Env::from_pairs([(OsString::from("TALLY_NOW"), OsString::from("2026-11-24"))]);
    assert_eq!(
        count_invocation(&env, "cargo", "1.91.0", &["cargo/build"]).unwrap(),
        CountOutcome::Skipped
    );
}

#[test]
fn weekday_choice_is_agreed_by_racing_threads() {
    for _ in 0..20 {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(tmp.path().join("fresh"));
        let barrier = Arc::new(Barrier::new(16));
        let choices: Vec<time::Weekday> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let home = home.clone();
                    let barrier = barrier.clone();
                    s.spawn(move || {
                        barrier.wait();
                        home.weekday().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(choices.iter().all(|w| *w == choices[0]), "{choices:?}");
        assert_eq!(home.stored_weekday().unwrap(), Some(choices[0]));
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(home.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("weekday")]);
    }
}

const ROLE: &str = "TALLY_HOME_TEST_ROLE";

/// Child side of the process race: prints the weekday this process got.
#[test]
fn weekday_worker() {
    if std::env::var(ROLE).as_deref() != Ok("weekday") {
        return;
    }
    let env = Env::from_process();
    let home = Home::locate(&env).unwrap();
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).unwrap();
    let week = home.week_of(env.today()).unwrap();
    println!("\nweek-start={}", week.start);
}

#[test]
fn weekday_choice_is_agreed_by_racing_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    let mut children: Vec<_> = (0..16)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .arg("--exact")
                .arg(crate::test_name(module_path!(), "weekday_worker"))
                .args(["--nocapture", "--test-threads=1"])
                .env(ROLE, "weekday")
                .env("TALLY_DIR", &root)
                .env("TALLY_NOW", "2026-11-24")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        c.stdin.take().unwrap().write_all(b"g").unwrap();
    }
    let starts: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("week-start=").map(str::to_string))
                .expect("worker printed its week")
        })
        .collect();
    assert!(starts.iter().all(|s| *s == starts[0]), "{starts:?}");
    let home = Home::at(&root);
    let w = home.stored_weekday().unwrap().unwrap();
    let day: Day = starts[0].parse().unwrap();
    assert_eq!(day.0.weekday(), w);
}

#[test]
fn bad_weekday_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path());
    std::fs::write(home.weekday_path(), "someday\n").unwrap();
    let err = home
        .week_of("2026-11-24".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("someday") && err.contains("delete it"),
        "{err}"
    );
}

#[test]
fn a_new_weeks_file_sweeps_expired_weeks_in_mode_local() {
    // Mode local never runs the daily uploader, so the hot path itself must keep the footprint
    // bounded: creating a new week's file sweeps weeks past retention.
    let tmp = tempfile::tempdir().unwrap();
    let old = dir_env(tmp.path(), &[("TALLY_NOW", "2026-01-05")]);
    count_invocation(&old, "cargo", "1.91.0", &["cargo/build"]).unwrap();
    let home = Home::at(tmp.path());
    assert_eq!(home.counter_store().list().len(), 1);

    // The week-start weekday is random per install: go far enough past any week end.
    let later = 14 + tally_home::retention::RETAIN_WEEKS * 7;
    let today = "2026-01-05"
        .parse::<Day>()
        .unwrap()
        .plus_days(later)
        .unwrap();
    let new = dir_env(tmp.path(), &[("TALLY_NOW", &today.to_string())]);
    let outcome = count_invocation(&new, "cargo", "1.91.0", &["cargo/build"]).unwrap();
    assert_eq!(outcome, CountOutcome::Counted { created_file: true });
    let left: Vec<_> = home.counter_store().list();
    assert_eq!(left.len(), 1, "the expired week is gone, the new one stays");
    let snapshot = left[0].1.as_ref().unwrap();
    assert!(snapshot.meta.week_end.parse::<Day>().unwrap() > today);
}
