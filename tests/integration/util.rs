//! Helpers for the integration tests: a temporary world with a shims directory of symlinks to
//! the built `tally-shim` (as `tally setup` makes it), a temporary HOME and data directory, a
//! fixed environment, and the counters read back through `tally_home`'s store.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

    /// Every counter in the data directory, per program, summed over files (versions, weeks).
    pub fn counters(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
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
        let mut out = Vec::new();
        walk(&self.data, &mut out);
        out
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
