//! Helpers for the integration tests: a temporary world with a shims directory of symlinks to
//! the built `tally-shim` (as `tally setup` makes it), a temporary HOME and data directory, a
//! fixed environment, and the counters read back through `tally_home`'s store.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The CLI (which still runs the hot path under a tool's name or as `RUSTC_WRAPPER`).
pub const TALLY: &str = env!("CARGO_BIN_EXE_tally");
/// The hot path's own binary, which the shims run.
pub const TALLY_SHIM: &str = env!("CARGO_BIN_EXE_tally-shim");
pub const TOOLS: [&str; 6] = ["cargo", "rustc", "rustfmt", "cargo-fmt", "go", "gofmt"];

/// One isolated world for a test.
pub struct World {
    pub tmp: tempfile::TempDir,
    /// The directory of symlinked shims.
    pub shims: PathBuf,
    /// tally's data directory (`TALLY_DIR`).
    pub data: PathBuf,
    /// A scratch working directory.
    pub work: PathBuf,
    /// PATH without the shims: where the real tools are.
    pub real_path: OsString,
}

fn real_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

impl World {
    /// A world whose shims run `tally-shim`.
    pub fn new() -> World {
        World::with_binary(TALLY_SHIM)
    }

    /// A world whose shims are links to `binary` (`tally` for links made before `tally-shim`).
    pub fn with_binary(binary: &str) -> World {
        let tmp = tempfile::Builder::new()
            .prefix("tally-it-")
            .tempdir()
            .unwrap();
        let shims = tmp.path().join("shims");
        std::fs::create_dir(&shims).unwrap();
        for tool in TOOLS {
            std::os::unix::fs::symlink(binary, shims.join(tool)).unwrap();
        }
        let data = tmp.path().join("data");
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::create_dir(tmp.path().join("home")).unwrap();
        let real_path = std::env::var_os("PATH").unwrap_or_default();
        World {
            tmp,
            shims,
            data,
            work,
            real_path,
        }
    }

    /// PATH with the shims first.
    pub fn shim_path(&self) -> OsString {
        let mut dirs = vec![self.shims.clone()];
        dirs.extend(std::env::split_paths(&self.real_path));
        std::env::join_paths(dirs).unwrap()
    }

    /// A command with the world's fixed environment and PATH (shims first), in `work`.
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = self.direct(program);
        cmd.env("PATH", self.shim_path());
        cmd
    }

    /// The same command and environment without tally's shims on PATH.
    pub fn direct(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear();
        cmd.current_dir(&self.work);
        cmd.env("PATH", &self.real_path);
        cmd.env("HOME", self.tmp.path().join("home"));
        let home = real_home();
        cmd.env(
            "RUSTUP_HOME",
            std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| home.join(".rustup").into()),
        );
        cmd.env(
            "CARGO_HOME",
            std::env::var_os("CARGO_HOME").unwrap_or_else(|| home.join(".cargo").into()),
        );
        cmd.env("TALLY_DIR", &self.data);
        cmd.env("CARGO_TARGET_DIR", self.tmp.path().join("target"));
        cmd.env("CARGO_TERM_COLOR", "never");
        cmd.env("CARGO_INCREMENTAL", "0");
        cmd.env("LANG", "C");
        cmd.env("TMPDIR", std::env::temp_dir());
        // Go: a shared build cache keeps the tests fast; no network.
        cmd.env("GOCACHE", std::env::temp_dir().join("tally-it-gocache"));
        cmd.env("GOPATH", self.tmp.path().join("gopath"));
        cmd.env("GOFLAGS", "-modcacherw");
        cmd.env("GOPROXY", "off");
        cmd
    }

    /// Copies a fixture into `work/<name>` and returns its path.
    pub fn fixture(&self, name: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let dst = self.work.join(name);
        copy_dir(&src, &dst);
        dst
    }

    /// Waits until every count handed to a detached helper is written ([`settle`]).
    pub fn settle(&self) {
        settle(&self.data);
    }

    /// Every counter in the data directory, per program, summed over files (versions, weeks),
    /// once every pending count is written ([`World::settle`]).
    pub fn counters(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.settle();
        let store = tally_home::Home::at(&self.data).counter_store();
        let mut all: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (path, snapshot) in store.list() {
            let snapshot = snapshot.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let program = all.entry(snapshot.meta.program.clone()).or_default();
            for (name, count) in snapshot.counters {
                *program.entry(name).or_default() += count;
            }
        }
        all
    }

    /// The counters of one program.
    pub fn program(&self, program: &str) -> BTreeMap<String, u64> {
        self.counters().remove(program).unwrap_or_default()
    }

    /// The versions recorded for `program` (from the counter files' headers).
    pub fn versions(&self, program: &str) -> Vec<String> {
        self.settle();
        let store = tally_home::Home::at(&self.data).counter_store();
        let mut v: Vec<String> = store
            .list()
            .into_iter()
            .filter_map(|(_, s)| s.ok())
            .filter(|s| s.meta.program == program)
            .map(|s| s.meta.version)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every file under the data directory, with its bytes.
    pub fn data_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        self.settle();
        let mut out = Vec::new();
        walk(&self.data, &mut out);
        out
    }
}

/// Waits until every count handed to a detached helper in the data directory `data` is
/// written. When a tool's version is not cached yet, the shim and the wrapper leave the version
/// query and the count to a helper (`tally_process::version`); each helper holds a shared lock
/// on `versions/pending.lock`, taken before the shim or the wrapper went on, until its count
/// is in the file. Call it after a first run and before reading the data directory directly.
pub fn settle(data: &Path) {
    let path = data.join("versions/pending.lock");
    // A test may plant something else there: only a regular file is a lock.
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return;
    }
    let Ok(lock) = std::fs::File::open(path) else {
        return;
    };
    let start = std::time::Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => return,
            Err(std::fs::TryLockError::WouldBlock) => {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(60),
                    "a detached version query still holds versions/pending.lock after 60 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::Error(e)) => panic!("versions/pending.lock: {e}"),
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Runs and returns the output, panicking with both streams if it could not start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs and asserts success, printing the streams otherwise.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A map from literal pairs, for exact comparisons.
pub fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Whether `strace` is here; without it the test that traces the installed shim skips with a
/// message, unless TALLY_REQUIRE_STRACE=1.
pub fn have_strace() -> bool {
    have_tool("strace", "-V", "TALLY_REQUIRE_STRACE", "strace")
}

/// Whether Go is here; without it Go tests skip with a message, unless TALLY_REQUIRE_GO=1.
pub fn have_go() -> bool {
    have_tool("go", "version", "TALLY_REQUIRE_GO", "golang-go")
}

/// Whether `program version_arg` runs; if not, a panic when `require_var` is `1` (CI), else a
/// message that the test skips. `package` is the Debian package to install.
fn have_tool(program: &str, version_arg: &str, require_var: &str, package: &str) -> bool {
    let found = Command::new(program)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os(require_var).is_some_and(|v| v == "1") {
            panic!("`{program}` is missing and {require_var}=1: install it (Debian: {package})");
        }
        eprintln!("skipping: `{program}` is not installed (set {require_var}=1 to make this fail)");
    }
    found
}

/// Generous: a run takes milliseconds; this only has to tell "finished" from "blocked".
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `cmd` and returns its output, failing the test if it is not done by [`DEADLINE`] (the
/// process is killed then, so a regression cannot hang the suite).
pub fn within_deadline(cmd: &mut Command) -> Output {
    within_deadline_to(cmd, Stdio::piped())
}

/// [`within_deadline`] with stderr going to `stderr`.
pub fn within_deadline_to(cmd: &mut Command, stderr: Stdio) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match wait.recv_timeout(DEADLINE) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{cmd:?} was still running after {DEADLINE:?}: blocked");
        }
    }
}

/// Makes a FIFO at `path` (replacing whatever is there).
pub fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}
