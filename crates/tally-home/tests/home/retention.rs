//! Retention: old weeks and old quarantined files go; recent ones and unknown files stay.

use std::time::{Duration, SystemTime};

use tally_home::retention::{QUARANTINE_WEEKS, RETAIN_WEEKS, sweep};
use tally_home::{Day, Home};

fn day(s: &str) -> Day {
    s.parse().unwrap()
}

#[test]
fn deletes_expired_weeks_and_old_quarantine_only() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path());
    let store = home.counter_store();
    let today = day("2026-11-24");
    let old_day = today.plus_days(-(RETAIN_WEEKS * 7) - 8).unwrap();
    let recent_day = today.plus_days(-(RETAIN_WEEKS * 7) + 8).unwrap();
    let (old, _) = store.open_current("cargo", "1.91.0", old_day).unwrap();
    let (recent, _) = store.open_current("cargo", "1.91.0", recent_day).unwrap();
    let (current, _) = store.open_current("cargo", "1.91.0", today).unwrap();
    for f in [&old, &recent, &current] {
        f.add("cargo/build", 1).unwrap();
    }
    let (old_path, recent_path, current_path) = (
        old.path().to_path_buf(),
        recent.path().to_path_buf(),
        current.path().to_path_buf(),
    );
    drop((old, recent, current));

    // A counter file that does not parse is quarantined, not deleted.
    let broken = home
        .counters_dir()
        .join("broken@1-linux-x86_64-2026-11-24.v1.count");
    std::fs::write(&broken, b"garbage").unwrap();

    let local = home.reports_dir().join("local");
    let sent = home.reports_dir().join("sent");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&sent).unwrap();
    let old_report = local.join(format!("{old_day}.json"));
    let old_reason = sent.join(format!("{old_day}.json.reason"));
    let recent_report = local.join(format!("{recent_day}.json"));
    let not_ours = local.join("notes.txt");
    for p in [&old_report, &old_reason, &recent_report, &not_ours] {
        std::fs::write(p, b"{}").unwrap();
    }

    std::fs::create_dir_all(home.quarantine_dir()).unwrap();
    let stale_q = home.quarantine_dir().join("stale.count");
    let fresh_q = home.quarantine_dir().join("fresh.count");
    std::fs::write(&stale_q, b"x").unwrap();
    std::fs::write(&fresh_q, b"x").unwrap();
    // Modification times relative to `today` (the clock override), not the wall clock.
    let today_time =
        SystemTime::UNIX_EPOCH + Duration::from_secs(today.to_unix_days() as u64 * 86_400);
    let stale_time = today_time - Duration::from_secs((QUARANTINE_WEEKS as u64 * 7 + 1) * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&stale_q)
        .unwrap()
        .set_modified(stale_time)
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&fresh_q)
        .unwrap()
        .set_modified(today_time)
        .unwrap();

    let summary = sweep(&home, today).unwrap();
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    assert_eq!(summary.deleted_counter_files, vec![old_path.clone()]);
    assert!(!old_path.exists() && recent_path.exists() && current_path.exists());
    assert_eq!(summary.deleted_reports.len(), 2);
    assert!(!old_report.exists() && !old_reason.exists());
    assert!(recent_report.exists() && not_ours.exists());
    assert_eq!(summary.deleted_quarantined, vec![stale_q.clone()]);
    assert!(fresh_q.exists());
    assert_eq!(summary.quarantined.len(), 1);
    assert!(!broken.exists() && summary.quarantined[0].exists());

    // A second sweep finds nothing more to do.
    let again = sweep(&home, today).unwrap();
    assert!(again.deleted_counter_files.is_empty() && again.deleted_reports.is_empty());
}

#[test]
fn sweeping_a_missing_home_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path().join("never-made"));
    let summary = sweep(&home, day("2026-11-24")).unwrap();
    assert_eq!(summary, Default::default());
    assert!(!home.root().exists());
}

#[test]
fn old_wrapper_links_go_and_their_targets_stay() {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;

    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path().join("data"));
    let today = day("2026-11-24");
    let wrappers = home.root().join("wrappers");
    std::fs::create_dir_all(&wrappers).unwrap();
    let tally = tmp.path().join("tally");
    std::fs::write(&tally, b"the binary").unwrap();
    let stale = wrappers.join("tally-00000000000000aa");
    let fresh = wrappers.join("tally-00000000000000bb");
    std::os::unix::fs::symlink(&tally, &stale).unwrap();
    std::os::unix::fs::symlink(&tally, &fresh).unwrap();
    let seconds = |d: Day| TimeSpec::new(d.to_unix_days() * 86_400, 0);
    let long_ago = seconds(today.plus_days(-(RETAIN_WEEKS * 7) - 1).unwrap());
    let lately = seconds(today.plus_days(-1).unwrap());
    for (link, when) in [(&stale, long_ago), (&fresh, lately)] {
        utimensat(None, link, &when, &when, UtimensatFlags::NoFollowSymlink).unwrap();
    }

    let summary = sweep(&home, today).unwrap();
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    assert_eq!(summary.deleted_wrapper_links, vec![stale.clone()]);
    assert!(std::fs::symlink_metadata(&stale).is_err());
    assert!(std::fs::symlink_metadata(&fresh).is_ok());
    assert_eq!(std::fs::read(&tally).unwrap(), b"the binary");
}
