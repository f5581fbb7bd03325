//! Single-process behaviour: create, count, read back, caps, growth.

use tally_sys::{CounterFile, FileMeta, MAX_COUNTERS, MAX_NAME_LEN, read_file};

fn meta() -> FileMeta {
    FileMeta {
        program: "rustc".into(),
        version: "1.82.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        week_start: "2026-11-24".into(),
        week_end: "2026-12-01".into(),
    }
}

/// A counter file for [`meta`], just made, at `name` in a new temporary directory.
fn new_file(name: &str) -> (tempfile::TempDir, std::path::PathBuf, CounterFile) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let (file, created) = CounterFile::open_or_create(&path, &meta()).unwrap();
    assert!(created);
    (dir, path, file)
}

#[test]
fn counts_round_trip_through_the_parser() {
    let (_dir, path, file) = new_file("f.count");
    file.add("rustc/edition:2021", 1).unwrap();
    file.add("rustc/edition:2021", 2).unwrap();
    file.add("rustc/opt-level:3", 5).unwrap();
    let (again, created) = CounterFile::open_or_create(&path, &meta()).unwrap();
    assert!(!created);
    again.add("rustc/opt-level:3", 1).unwrap();
    let snap = read_file(&path).unwrap();
    assert_eq!(snap.meta, meta());
    assert_eq!(snap.counters["rustc/edition:2021"], 3);
    assert_eq!(snap.counters["rustc/opt-level:3"], 6);
    assert_eq!(snap.dropped, 0);
    assert_eq!(file.snapshot().unwrap(), snap);
}

#[test]
fn grows_to_the_counter_cap_then_drops() {
    let (_dir, path, file) = new_file("f.count");
    for i in 0..MAX_COUNTERS + 10 {
        file.add(&format!("counter-{i}"), 1).unwrap();
    }
    file.add(&"x".repeat(MAX_NAME_LEN + 1), 7).unwrap();
    let snap = read_file(&path).unwrap();
    assert_eq!(snap.counters.len(), MAX_COUNTERS);
    assert_eq!(snap.dropped, 10 + 7);
    assert!(std::fs::metadata(&path).unwrap().len() > 16 * 1024);
}

/// The process that maps a counter file is about to `exec` the real tool: the descriptor must
/// not leak into it.
#[cfg(target_os = "linux")]
#[test]
fn descriptors_are_close_on_exec() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloexec.count");
    for _ in 0..2 {
        // First iteration creates the file, second opens the existing one.
        let (file, _) = CounterFile::open_or_create(&path, &meta()).unwrap();
        let mut checked = 0;
        use std::os::unix::fs::MetadataExt;
        let wanted = std::fs::metadata(&path).unwrap();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            // Compare by inode: a created file is held through its temporary name.
            let Ok(target) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if target.ino() == wanted.ino() && target.dev() == wanted.dev() {
                let fd = entry.file_name().into_string().unwrap();
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
                let flags = info
                    .lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
                    .unwrap();
                assert_ne!(flags & 0o2000000, 0, "fd {fd} lacks O_CLOEXEC");
                checked += 1;
            }
        }
        assert_eq!(checked, 1, "exactly one descriptor is held while mapped");
        drop(file);
    }
}

/// Counting into an existing file leaves its access time alone (`O_NOATIME`, as the owner):
/// under `relatime` every count would otherwise update the inode twice.
#[cfg(target_os = "linux")]
#[test]
fn counting_does_not_update_the_access_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("atime.count");
    CounterFile::open_or_create(&path, &meta())
        .unwrap()
        .0
        .add("a", 1)
        .unwrap();
    // An access time older than the modification time: `relatime` would update it on a read.
    let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(long_ago))
        .unwrap();
    for _ in 0..3 {
        let (file, created) = CounterFile::open_or_create(&path, &meta()).unwrap();
        assert!(!created);
        file.add("a", 1).unwrap();
    }
    let meta_after = std::fs::metadata(&path).unwrap();
    assert_eq!(meta_after.accessed().unwrap(), long_ago);
    assert!(meta_after.modified().unwrap() > long_ago);
    assert_eq!(read_file(&path).unwrap().counters.get("a"), Some(&4));
}

/// A link or FIFO where a counter file belongs is refused at once as a corrupt file (to be
/// quarantined), whether it is opened to count or read: the link's target is neither counted
/// into, read nor touched, and nothing waits on the FIFO.
#[test]
fn links_and_fifos_are_corrupt_files_never_followed_or_waited_on() {
    use std::time::{Duration, Instant};
    let (dir, real, file) = new_file("real.count");
    file.add("rustc/invocations", 1).unwrap();
    drop(file);
    let before = std::fs::read(&real).unwrap();
    let modified = std::fs::metadata(&real).unwrap().modified().unwrap();
    let link = dir.path().join("link.count");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let dangling = dir.path().join("dangling.count");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    let fifo = dir.path().join("fifo.count");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    for path in [&link, &dangling, &fifo] {
        let e = CounterFile::open_or_create(path, &meta()).unwrap_err();
        assert!(e.needs_quarantine(), "{}: {e}", path.display());
        let e = CounterFile::open_existing(path).unwrap_err();
        assert!(e.needs_quarantine(), "{}: {e}", path.display());
        let e = read_file(path).unwrap_err();
        assert!(e.is_invalid_file(), "{}: {e}", path.display());
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The link's identity is the link's own, so a caller moves the link, not its target.
    let link_id = tally_sys::FileId::of_path(&link).unwrap();
    let real_id = tally_sys::FileId::of_path(&real).unwrap();
    assert_ne!(link_id, real_id);
    assert!(!dir.path().join("nowhere").exists());
    assert_eq!(std::fs::read(&real).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&real).unwrap().modified().unwrap(),
        modified
    );
}

#[test]
fn a_file_truncated_by_another_program_is_no_longer_whole() {
    let (_dir, path, file) = new_file("f.count");
    file.add("rustc/edition:2021", 1).unwrap();
    assert!(file.still_whole());
    // Growing is fine: only a file shorter than what this process relied on is refused.
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len + 4096)
        .unwrap();
    assert!(file.still_whole());
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert!(!file.still_whole());
}
