//! Sessions with a given environment and clock (no process-wide state), counting into real
//! counter files in a temporary data directory.

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use tally_home::{Day, Env, Home, Mode};

use crate::Counter;
use crate::session::{OFF, Session, Source};

const PROGRAM: crate::Program = crate::Program::new("greet", "0.3.1-beta.2+build.7");

fn env(pairs: &[(&str, &Path)]) -> Env {
    Env::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), v.as_os_str().to_os_string())),
    )
}

fn day(s: &str) -> i64 {
    s.parse::<Day>().unwrap().to_unix_days()
}

fn fixed_day() -> i64 {
    day("2026-11-24")
}

fn session(env: Env, days: fn() -> i64) -> &'static Session {
    let session = Box::leak(Box::new(Session::new(Source::Given { env, days })));
    assert!(session.open(PROGRAM));
    session
}

/// One counter file: program, version, week start, counters.
type FileCounts = (String, String, String, Vec<(String, u64)>);

/// Every counter of every file in the data directory.
fn files(root: &Path) -> Vec<FileCounts> {
    Home::at(root)
        .counter_store()
        .list()
        .into_iter()
        .map(|(_, s)| {
            let s = s.unwrap();
            (
                s.meta.program,
                s.meta.version,
                s.meta.week_start,
                s.counters.into_iter().collect(),
            )
        })
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[test]
fn counts_into_the_weeks_file_the_shims_would_use() {
    let tmp = tempfile::tempdir().unwrap();
    let s = session(env(&[("TALLY_DIR", tmp.path())]), fixed_day);
    let hello = Counter::new("greet/hello");
    for _ in 0..1000 {
        hello.add_in(s, 1);
    }
    Counter::new("greet/flag:--loud").add_in(s, 5);
    let found = files(tmp.path());
    assert_eq!(found.len(), 1);
    let (program, version, week, counters) = &found[0];
    assert_eq!(
        (program.as_str(), version.as_str()),
        ("greet", "0.3.1-beta.2")
    );
    // The same file the shims' store names for this program, version and week.
    let home = Home::at(tmp.path());
    let today = Day::from_unix_days(fixed_day()).unwrap();
    assert_eq!(week, &home.week_of(today).unwrap().start.to_string());
    assert_eq!(
        counters,
        &counts(&[("greet/flag:--loud", 5), ("greet/hello", 1000)])
    );
}

#[test]
fn a_name_that_breaks_the_rule_or_belongs_elsewhere_counts_as_other() {
    let tmp = tempfile::tempdir().unwrap();
    let s = session(env(&[("TALLY_DIR", tmp.path())]), fixed_day);
    for name in [
        "greet/notes.txt",
        "/home/alice",
        "cargo/invocations",
        "greeting/x",
        "greet/Alice",
        "",
    ] {
        Counter::new(name).add_in(s, 1);
    }
    assert_eq!(files(tmp.path())[0].3, counts(&[("greet/other", 6)]));
}

#[test]
fn nothing_is_touched_when_tally_is_absent_or_off() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("not-installed");
    let off = tmp.path().join("off");
    std::fs::create_dir(&off).unwrap();
    Home::at(&off).set_mode(Mode::Off).unwrap();
    let on = tmp.path().join("on");
    std::fs::create_dir(&on).unwrap();
    let cases = [
        env(&[("TALLY_DIR", &missing)]),
        env(&[("TALLY_DIR", &off)]),
        env(&[("TALLY_DIR", &on), ("TALLY", Path::new("off"))]),
        env(&[("TALLY_DIR", &on), ("DO_NOT_TRACK", Path::new("1"))]),
        env(&[("TALLY_DIR", Path::new("relative/dir"))]),
        env(&[]),
    ];
    for e in cases {
        let s = session(e.clone(), fixed_day);
        let c = Counter::new("greet/hello");
        c.add_in(s, 1);
        c.add_in(s, 1);
        assert_eq!(s.current(), OFF, "{e:?}");
    }
    assert!(!missing.exists(), "the data directory is never created");
    let listing = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    assert_eq!(listing(&off), ["mode"]);
    assert!(listing(&on).is_empty());
}

#[test]
fn nothing_is_counted_before_open_or_for_a_shimmed_tool() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Box::leak(Box::new(Session::new(Source::Given {
        env: env(&[("TALLY_DIR", tmp.path())]),
        days: fixed_day,
    })));
    let c = Counter::new("greet/hello");
    c.add_in(s, 1);
    assert_eq!(s.current(), 0, "not decided before open");
    assert!(s.open(crate::Program::new("cargo", "1.95.0")));
    assert!(!s.open(PROGRAM), "one program per process");
    c.add_in(s, 1);
    assert_eq!(s.current(), OFF);
    assert!(files(tmp.path()).is_empty());
}

static CLOCK: AtomicI64 = AtomicI64::new(0);

fn moving_clock() -> i64 {
    CLOCK.load(Ordering::SeqCst)
}

/// A process that outlives its week moves to the next week's file within
/// `TICKS_PER_CLOCK_LOOK` increments, through the counters it already resolved.
#[test]
fn a_long_running_process_moves_to_the_next_week() {
    let tmp = tempfile::tempdir().unwrap();
    CLOCK.store(day("2026-11-24"), Ordering::SeqCst);
    let s = session(env(&[("TALLY_DIR", tmp.path())]), moving_clock);
    let c = Counter::new("greet/hello");
    for _ in 0..10 {
        c.add_in(s, 1);
    }
    let first = s.current();
    // Six days on: same week (weeks are seven days from the installation's weekday).
    let home = Home::at(tmp.path());
    let week = home
        .week_of(Day::from_unix_days(moving_clock()).unwrap())
        .unwrap();
    CLOCK.store(week.end.to_unix_days() - 1, Ordering::SeqCst);
    for _ in 0..1000 {
        c.add_in(s, 1);
    }
    assert_eq!(s.current(), first, "the week has not ended");
    CLOCK.store(week.end.to_unix_days(), Ordering::SeqCst);
    let ticks = crate::TICKS_PER_CLOCK_LOOK as u64;
    for _ in 0..(ticks + 10) {
        c.add_in(s, 1);
    }
    assert_ne!(s.current(), first);
    let found = files(tmp.path());
    assert_eq!(found.len(), 2, "{found:?}");
    let total: u64 = found.iter().map(|f| f.3[0].1).sum();
    assert_eq!(total, 10 + 1000 + ticks + 10, "no increment lost");
    assert_eq!(found[0].2, week.start.to_string());
    assert_eq!(found[1].2, week.end.to_string());
    assert!(found[1].3[0].1 >= 10, "{found:?}");
}

/// The mode is read again when a week ends: `tally off` stops a long-running process then.
#[test]
fn a_new_week_reads_the_mode_again() {
    static LATER: AtomicI64 = AtomicI64::new(0);
    fn clock() -> i64 {
        LATER.load(Ordering::SeqCst)
    }
    let tmp = tempfile::tempdir().unwrap();
    LATER.store(day("2026-11-24"), Ordering::SeqCst);
    let s = session(env(&[("TALLY_DIR", tmp.path())]), clock);
    let c = Counter::new("greet/hello");
    c.add_in(s, 1);
    assert!(s.current() != 0 && s.current() != OFF);
    Home::at(tmp.path()).set_mode(Mode::Off).unwrap();
    LATER.store(day("2026-12-24"), Ordering::SeqCst);
    for _ in 0..=crate::TICKS_PER_CLOCK_LOOK {
        c.add_in(s, 1);
    }
    assert_eq!(s.current(), OFF);
    assert_eq!(files(tmp.path()).len(), 1);
}

/// A file found corrupt while counting (another program wrote over its table) stops counting
/// for the process: no panic, no endless retries, nothing more written.
#[test]
fn a_file_found_corrupt_stops_counting_quietly() {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let s = session(env(&[("TALLY_DIR", tmp.path())]), fixed_day);
    Counter::new("greet/hello").add_in(s, 1);
    assert!(s.current() != 0 && s.current() != OFF);
    let (path, _) = Home::at(tmp.path()).counter_store().list().remove(0);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&path)
        .unwrap();
    let mut header_len = [0u8; 4];
    file.read_exact_at(&mut header_len, 12).unwrap();
    let table = u64::from(u32::from_le_bytes(header_len));
    file.write_all_at(&[0xff; 2048], table).unwrap();
    let other = Counter::new("greet/bye");
    other.add_in(s, 1);
    other.add_in(s, 1);
    assert_eq!(s.current(), OFF);
}
