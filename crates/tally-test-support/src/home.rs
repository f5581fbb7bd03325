//! Temporary homes and data directories, and reading back what tally wrote into them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Counters per program, per counter name.
pub type Counters = BTreeMap<String, BTreeMap<String, u64>>;

/// A temporary directory holding a `HOME` (`home/`, made) and a tally data directory
/// (`tally/`, made only by [`TempHome::installed`]); removed when dropped.
pub struct TempHome {
    pub dir: tempfile::TempDir,
    /// `HOME` for the processes a test runs: not the data directory.
    pub home: PathBuf,
    /// tally's data directory (`TALLY_DIR`).
    pub data: PathBuf,
}

impl TempHome {
    /// A home without a data directory: tally not installed.
    pub fn absent() -> TempHome {
        let dir = tempfile::Builder::new()
            .prefix("tally-test-")
            .tempdir()
            .expect("a temporary directory");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("the temporary HOME");
        let data = dir.path().join("tally");
        TempHome { dir, home, data }
    }

    /// A home whose data directory exists.
    pub fn installed() -> TempHome {
        let home = TempHome::absent();
        std::fs::create_dir(&home.data).expect("the data directory");
        home
    }

    /// The temporary directory's root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Every counter in the data directory `data`, per program, summed over its counter files
/// (versions, weeks); a counter file that cannot be read fails the test.
pub fn counters_by_program(data: &Path) -> Counters {
    let mut all = Counters::new();
    for (path, snapshot) in tally_home::Home::at(data).counter_store().list() {
        let snapshot = snapshot.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let program = all.entry(snapshot.meta.program.clone()).or_default();
        for (name, count) in snapshot.counters {
            *program.entry(name).or_default() += count;
        }
    }
    all
}

/// Every regular file under `dir`, recursively, with its bytes, sorted by path (nothing when
/// `dir` does not exist).
pub fn files_with_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = files_under(dir)
        .into_iter()
        .filter_map(|path| std::fs::read(&path).ok().map(|bytes| (path, bytes)))
        .collect();
    out.sort();
    out
}

/// Every file (not directory) under `dir`, recursively, sorted (nothing when `dir` does not
/// exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Copies the directory tree `src` to `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
    let entries = std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to)
                .unwrap_or_else(|e| panic!("{} to {}: {e}", entry.path().display(), to.display()));
        }
    }
}

/// Writes a file that is no counter file (a `passwd` line) at `path`, dated long ago
/// (1970-01-12): what tally must never read, rewrite or delete however it is linked into the
/// data directory. Returns the time it is dated.
pub fn write_old_foreign_file(path: &Path) -> std::time::SystemTime {
    std::fs::write(path, "root:x:0:0::/root:/bin/sh\n")
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(old))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    old
}

/// Seeds `home` as a user's data directory may be after a few weeks: the week of 2026-11-24
/// running (rustc 1.95.0's counter file, `rustc/edition:2021` counted 3 times), the week of
/// 2026-11-09 ended and kept as a local report as `build` writes it (canonical JSON, cargo's
/// invocations 7), and a counter file that is not one (`zz-corrupt.v1.count`). The readers of
/// the user's weeks count the first two and skip the third; callers add the other files they
/// test.
pub fn seed_user_weeks(home: &tally_home::Home) {
    let today: tally_home::Day = "2026-11-24".parse().unwrap();
    let (file, _) = home
        .counter_store()
        .open_current("rustc", "1.95.0", today)
        .unwrap();
    file.add("rustc/edition:2021", 3).unwrap();
    std::fs::write(home.counters_dir().join("zz-corrupt.v1.count"), b"garbage").unwrap();
    let local = home.reports_dir().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let report = r#"{"week":"2026-11-09","x":0.5,"programs":[{"program":"cargo","version":"1.95.0","os":"linux","arch":"x86_64","counters":{"cargo/invocations":7}}]}"#;
    std::fs::write(local.join("2026-11-09.json"), report).unwrap();
}
