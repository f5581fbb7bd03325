//! What this binary's tests share: a temporary world with a shims directory of symlinks to
//! the built `tally-shim` (as `tally setup` makes it), a temporary HOME and data directory, a
//! fixed environment, and the counters read back through `tally_home`'s store. Running commands,
//! copying trees and reading data directories come from `tally-test-support`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub use tally_test_support::command::{ok, run};
pub use tally_test_support::home::copy_dir;
use tally_test_support::home::{counters_by_program, files_with_bytes};
pub use tally_test_support::{has_exited, pid_in, write_script};

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

    /// The same command and environment without tally's shims on PATH. tally's own commands
    /// start once every count handed to a detached helper is written ([`World::settle`]), so
    /// that what they read does not depend on how busy the machine is.
    pub fn direct(&self, program: &str) -> Command {
        if program == TALLY {
            self.settle();
        }
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
        counters_by_program(&self.data)
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

    /// Runs `rustc -V` through its shim in a world without counts yet, and returns the one
    /// counter file that run wrote, once its count is in it.
    pub fn first_counter_file(&self) -> PathBuf {
        ok(self.cmd("rustc").arg("-V"));
        self.settle();
        let files = files_in(&self.data.join("counters"));
        assert_eq!(files.len(), 1, "one counter file after one run: {files:?}");
        files[0].clone()
    }

    /// Every file under the data directory, with its bytes.
    pub fn data_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        self.settle();
        files_with_bytes(&self.data)
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

/// The entries of `dir` whose names do not start with a dot (tally's temporary files and
/// locks do).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
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
        if tally_test_support::required(require_var) {
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
    tally_test_support::command::within(DEADLINE, cmd, stderr)
}

/// Makes a FIFO at `path` (replacing whatever is there).
pub fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// The other packages' binaries the tests run, next to `tally` in the same target directory.
pub struct WorkspaceBinaries {
    /// The collector, `tally-server`.
    pub server: PathBuf,
    /// The example tool counting through `tally-counter`, `tally-example-greet`.
    pub greet: PathBuf,
}

/// [`WorkspaceBinaries`], built once per test run by one `cargo build` (the `CARGO` that runs
/// the tests, the same profile and target directory): cargo builds no other package's binary
/// for this test binary, and one build for every test that needs them resolves their
/// dependencies' features once, where a build per test and per package set would compile the
/// shared dependencies again for each.
pub fn workspace_binaries() -> &'static WorkspaceBinaries {
    static BUILT: OnceLock<WorkspaceBinaries> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(TALLY).parent().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-q", "--locked"])
            .args(["-p", "tally-example-greet", "-p", "tally-server"])
            .args(["--bin", "tally-example-greet", "--bin", "tally-server"])
            .env("CARGO_TARGET_DIR", dir.parent().unwrap());
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        ok(&mut build);
        WorkspaceBinaries {
            server: dir.join("tally-server"),
            greet: dir.join("tally-example-greet"),
        }
    })
}
