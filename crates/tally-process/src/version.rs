//! The real tool's version, for the counter file's name, without ever holding the tool up.
//!
//! A cache under `<data>/versions/`, one small file per real binary, named by a hash of the
//! binary's (path, size, mtime) so that an upgrade in place is a new entry, and holding only
//! the normalised version ([`tally_home::normalize_version`]: `1.95.0`, `1.97.0-nightly`,
//! never the path, nor whatever else a custom build prints after the number). At most
//! [`MAX_ENTRIES`] entries are kept (the oldest go on a miss), so the cache stays small however
//! many toolchains come and go.
//!
//! The hot path only reads the cache ([`cached`]). On a miss, the tool runs at once and the
//! question goes off the hot path: [`Query::count_when_known`] hands the query and the counts
//! to a detached helper ([`tally_sys::detach`]), which asks the tool (`--version`, `go
//! version`, with `TALLY=off` in its environment so that a shim in front of it does not count
//! the question), stores the answer, and counts the names into that version's file. Why this
//! way: the counts land in the right version's file (counting under `unknown` at once would
//! misfile the first runs of every new toolchain), and nothing waits for the answer, neither
//! the tool nor whoever waits for the shim or the wrapper: a hanging `--version` costs the
//! build nothing.
//!
//! The query's promises:
//! - It runs in a process group of its own and is abandoned after [`QUERY_TIMEOUT`]: the whole
//!   group is killed (`SIGKILL`), so a child the query left behind dies with it. Its output is
//!   read only while it runs, and what is there when it exits: a leftover process holding the
//!   pipe does not hold the helper.
//! - An answer that is not a version, and a query that timed out, are stored as `unknown`, so
//!   the tool is not asked on every run; an `unknown` entry is asked again after
//!   [`RETRY_UNKNOWN`]. A tool that could not be started is not remembered (it may be fixed in
//!   place).
//! - One query at a time per data directory: a helper finding another one asking
//!   (`versions/queries.lock`) waits for its answer (a little longer than [`QUERY_TIMEOUT`])
//!   before asking itself, so the parallel compiles of a build do not all ask.
//! - Every helper with counts to write holds a shared lock on `versions/pending.lock`, taken
//!   before the shim or the wrapper goes on: whoever needs every count written (the tests)
//!   takes it exclusively. A helper lives at most [`HELPER_LIFETIME`].
//!
//! Where no helper can be forked (outside Linux, without `/proc`, or in a process with more
//! threads than one), the query runs in the calling process before the counts, as
//! [`version_of`] does. Where `versions/` cannot be made (a read-only data directory), nothing
//! is asked and nothing counted.

use std::ffi::OsString;
use std::fs::Metadata;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tally_grammar::Tool;
use tally_home::{Day, Home, fsio};

/// What a version is when it cannot be learned.
pub const UNKNOWN: &str = "unknown";

/// How long a version query may take before it is abandoned, its process group killed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an `unknown` entry is trusted before the tool is asked again.
pub const RETRY_UNKNOWN: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a helper waits for another helper's query to answer (or be abandoned and stored
/// as `unknown`) before asking itself: a little longer than the query may take.
const WAIT_FOR_QUERY: Duration = Duration::from_secs(QUERY_TIMEOUT.as_secs() + 3);

/// The most a detached helper lives: waiting for another query, its own, and the count.
pub const HELPER_LIFETIME: Duration =
    Duration::from_secs(WAIT_FOR_QUERY.as_secs() + QUERY_TIMEOUT.as_secs() + 10);

/// Held exclusively while a helper asks a tool.
pub const QUERIES_LOCK: &str = "queries.lock";

/// Held shared by every helper until its counts are written.
pub const PENDING_LOCK: &str = "pending.lock";

/// What the cache knows of a binary's version.
pub enum Cached {
    /// The normalised version, or [`UNKNOWN`].
    Known(String),
    /// Not cached: the tool has to be asked.
    Missing(Query),
}

/// A version the cache does not hold yet: what to ask, and where to store the answer.
pub struct Query {
    tool: Tool,
    binary: PathBuf,
    key: String,
}

/// The version of `binary` (the file that really runs, e.g. a toolchain's rustc, not a rustup
/// proxy) if `home`'s `versions/` holds it. Never runs anything.
///
/// The cache is read only when `versions/` is a real directory (one `lstat`) and each entry is
/// opened through `tally_home::fsio` (no link followed, no wait on a FIFO): a planted entry
/// reads as a miss and is replaced by the next store.
pub fn cached(tool: Tool, binary: &Path, meta: &Metadata, home: &Home) -> Cached {
    let key = cache_key(tool, binary, meta);
    match read_entry(&home.versions_dir(), &key) {
        Some(version) => Cached::Known(version),
        None => Cached::Missing(Query {
            tool,
            binary: binary.to_path_buf(),
            key,
        }),
    }
}

/// The version of `binary`: cached, or asked now (waiting up to [`QUERY_TIMEOUT`]) and stored.
/// For callers that may wait; the hot path uses [`cached`] and [`Query::count_when_known`].
pub fn version_of(tool: Tool, binary: &Path, meta: &Metadata, home: &Home) -> String {
    match cached(tool, binary, meta, home) {
        Cached::Known(version) => version,
        Cached::Missing(query) => query.answer(home),
    }
}

/// Counts one run of `tool`: each of `names` once, into the file of `program` and the version
/// of `binary` (the file whose version matters, see [`versioned_binary`]; `None`: the version
/// cannot be learned, [`UNKNOWN`]), for the week of `env`'s today. With the version cached,
/// counted here and the file handed back still mapped (see `tally_home::Counted`); otherwise
/// handed to a helper ([`Query::count_when_known`]) and `None`. Shows the first-run notice
/// when this may be the first count (see [`crate::notice`]).
pub fn count_run(
    env: &tally_home::Env,
    home: &Home,
    tool: Tool,
    program: &str,
    binary: Option<(PathBuf, Metadata)>,
    names: &[String],
) -> Option<tally_home::Counted> {
    let version = match binary.map(|(bin, meta)| cached(tool, &bin, &meta, home)) {
        Some(Cached::Known(version)) => version,
        Some(Cached::Missing(query)) => {
            query.count_when_known(home, env.today(), program, names, &[]);
            // The helper may create the week's file; the notice is said here, where the
            // terminal is (the helper has none), once the data directory exists.
            crate::notice::maybe_show(env, home.root());
            return None;
        }
        None => UNKNOWN.to_string(),
    };
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let counted = home.count(env.today(), program, &version, &refs).ok();
    if counted.as_ref().is_some_and(|c| c.created_file) {
        crate::notice::maybe_show(env, home.root());
    }
    counted
}

/// The entry `key` in `dir` if it holds a normalised version (an entry an older tally wrote
/// raw, or a hand edit, is a miss and gets replaced), and is not an `unknown` older than
/// [`RETRY_UNKNOWN`].
fn read_entry(dir: &Path, key: &str) -> Option<String> {
    if !fsio::is_own_dir(dir) {
        return None;
    }
    let entry = dir.join(key);
    let bytes = fsio::read_small(&entry).ok()?;
    let version = std::str::from_utf8(&bytes).ok()?.trim();
    if !tally_home::is_normalized_version(version) {
        return None;
    }
    if version == UNKNOWN {
        // `lstat`: the entry was just read as a regular file; a swap since only costs a query.
        let written = std::fs::symlink_metadata(&entry).and_then(|m| m.modified());
        let fresh = written.is_ok_and(|at| {
            SystemTime::now()
                .duration_since(at)
                .is_ok_and(|age| age < RETRY_UNKNOWN)
        });
        if !fresh {
            return None;
        }
    }
    Some(version.to_string())
}

impl Query {
    /// Asks the tool, unless another helper's query answered meanwhile, and stores the
    /// answer. Waits a little longer than [`QUERY_TIMEOUT`] for another helper's query, and
    /// up to [`QUERY_TIMEOUT`] for its own.
    fn answer(&self, home: &Home) -> String {
        let dir = home.versions_dir();
        let made = home.own_dir(&dir).is_ok();
        let _one_at_a_time = made
            .then(|| lock_within(&dir.join(QUERIES_LOCK), WAIT_FOR_QUERY))
            .flatten();
        if let Some(version) = read_entry(&dir, &self.key) {
            return version;
        }
        let version = match ask(self.tool, &self.binary) {
            Answer::Version(v) => tally_home::normalize_version(&v).into_owned(),
            // A tool that answers but not with a version will not change its mind soon, and
            // one that hangs costs a helper for ten seconds on every run: remember both (for
            // a day, see `read_entry`).
            Answer::NoVersion | Answer::TimedOut => UNKNOWN.to_string(),
            // Could not run at all: it may be fixed in place; ask next time.
            Answer::NotStarted => return UNKNOWN.to_string(),
        };
        // Caching is best effort: a read-only data directory just means asking again next time.
        if made {
            let _ = store(&dir, &self.key, &version);
        }
        version
    }

    /// Counts `names` (each once) and `weighted` (each by its count) into `program`'s file for
    /// the week of `today`, under the version the tool gives. Returns at once: the query and
    /// the count run in a detached helper (see the module's docs), or, where none can be
    /// forked, here before returning. Every failure is swallowed: the tool runs regardless.
    pub fn count_when_known(
        self,
        home: &Home,
        today: Day,
        program: &str,
        names: &[String],
        weighted: &[(String, u64)],
    ) {
        let mut work = || {
            let version = self.answer(home);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Ok(counted) = home.count(today, program, &version, &refs) {
                for (name, count) in weighted {
                    let _ = counted.file().add(name, *count);
                }
            }
        };
        let dir = home.versions_dir();
        // A data directory where `versions/` cannot be made cannot take the count either:
        // no helper, nothing asked.
        if home.own_dir(&dir).is_err() {
            return;
        }
        // Taken here, before the tool goes on, and kept by the helper alone (the lock belongs
        // to the open file, which the helper shares; this copy closes on return).
        let pending =
            open_lock(&dir.join(PENDING_LOCK)).filter(|file| file.try_lock_shared().is_ok());
        let held: Vec<i32> = pending.iter().map(|f| f.as_raw_fd()).collect();
        let keep = tally_sys::detach::Keep {
            stderr: false,
            fds: &held,
            lifetime: Some(HELPER_LIFETIME),
        };
        if tally_sys::detach::run_detached(keep, &mut work).is_err() {
            work();
        }
    }
}

/// Waits until every detached helper of `home` has written its counts, at most `limit`; returns
/// whether none is left. Each helper holds `versions/pending.lock` shared until then, so this
/// takes it exclusively (never creating it, never waiting on something planted there). For
/// whoever reads the counter files right after running tools (the demo, before its week's
/// report); the hot path never calls it.
pub fn wait_for_pending(home: &Home, limit: Duration) -> bool {
    match tally_sys::safe_open::open_read(&home.versions_dir().join(PENDING_LOCK)) {
        Ok(lock) => lock_exclusively_within(&lock, limit),
        Err(_) => true,
    }
}

/// Locks `path` exclusively, waiting at most `limit` for whoever holds it. `None`: not
/// locked (the file cannot be opened, or the wait ran out), and the caller goes on unlocked.
fn lock_within(path: &Path, limit: Duration) -> Option<std::fs::File> {
    let file = open_lock(path)?;
    lock_exclusively_within(&file, limit).then_some(file)
}

/// Takes `file`'s lock exclusively, trying every 5 ms for at most `limit`.
fn lock_exclusively_within(file: &std::fs::File, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return true,
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return false,
        }
    }
}

/// Opens (creating) a lock file of `versions/`. Something else planted at its name (a link, a
/// FIFO) is removed, never followed or waited on, and a fresh file made.
fn open_lock(path: &Path) -> Option<std::fs::File> {
    match fsio::open_or_create(path) {
        Ok(file) => Some(file),
        Err(e) if fsio::is_not_regular(&e) => {
            std::fs::remove_file(path).ok()?;
            fsio::open_or_create(path).ok()
        }
        Err(_) => None,
    }
}

/// What asking a tool for its version gave.
enum Answer {
    Version(String),
    NoVersion,
    TimedOut,
    NotStarted,
}

fn cache_key(tool: Tool, binary: &Path, meta: &Metadata) -> String {
    use std::os::unix::ffi::OsStrExt;
    // FNV-1a 64: stable across builds and platforms (std's hasher is not).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    feed(tool.name().as_bytes());
    feed(binary.as_os_str().as_bytes());
    feed(&meta.size().to_le_bytes());
    feed(&meta.mtime().to_le_bytes());
    feed(&meta.mtime_nsec().to_le_bytes());
    // `<tool>-<16 hex digits>`, written by hand: `format!` would pull the formatting machinery
    // into every shim run (bench/README.md, "Shims").
    let mut key = String::with_capacity(tool.name().len() + 17);
    key.push_str(tool.name());
    key.push('-');
    for shift in (0..16).rev() {
        key.push(char::from(
            b"0123456789abcdef"[(hash >> (shift * 4)) as usize & 0xf],
        ));
    }
    key
}

/// At most this many cached versions; the oldest go first (each toolchain update adds one).
pub const MAX_ENTRIES: usize = 64;

/// Writes one entry into `dir`, which the caller made sure is a real directory. The rename
/// replaces whatever is at the entry's name (a planted link or FIFO too), never writing
/// through it.
fn store(dir: &Path, key: &str, version: &str) -> std::io::Result<()> {
    prune(dir, MAX_ENTRIES - 1);
    fsio::write_atomic(&dir.join(key), format!("{version}\n").as_bytes())
}

/// Keeps at most `keep` entries in the cache, deleting the least recently written. Only runs on
/// a cache miss, which is rare. The lock files are not entries.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = fsio::read_own_dir(dir) else {
        return;
    };
    // `DirEntry::metadata` does not follow links: a link is pruned by its own time.
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .into_iter()
        .filter(|e| !e.file_name().as_encoded_bytes().ends_with(b".lock"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= keep {
        return;
    }
    files.sort();
    for (_, path) in &files[..files.len() - keep] {
        let _ = std::fs::remove_file(path);
    }
}

/// Asks the tool. gofmt has no version flag: it is asked of the `go` beside it.
fn ask(tool: Tool, binary: &Path) -> Answer {
    let (program, args): (PathBuf, &[&str]) = match tool {
        Tool::Go => (binary.to_path_buf(), &["version"]),
        Tool::Gofmt => {
            let dir = std::fs::canonicalize(binary)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf));
            let Some(dir) = dir else {
                return Answer::NoVersion;
            };
            (dir.join("go"), &["version"])
        }
        _ => (binary.to_path_buf(), &["--version"]),
    };
    match run_with_timeout(&program, args, QUERY_TIMEOUT) {
        Ran::Succeeded(out) => parse_version(tool, &out).map_or(Answer::NoVersion, Answer::Version),
        Ran::Failed => Answer::NoVersion,
        Ran::TimedOut => Answer::TimedOut,
        Ran::NotStarted => Answer::NotStarted,
    }
}

/// How a query process ended.
enum Ran {
    /// Exit status 0, with (the first 4 KiB of) what it wrote on stdout.
    Succeeded(String),
    Failed,
    TimedOut,
    NotStarted,
}

/// Most of a query's output that is read (the version is on its first line).
const MAX_OUTPUT: usize = 4096;

/// Runs `program args…` in a process group of its own, reading its stdout as it comes, until it
/// exits or `timeout` passes; then the whole group is killed.
fn run_with_timeout(program: &Path, args: &[&str], timeout: Duration) -> Ran {
    use std::os::unix::process::CommandExt;
    let Ok(mut child) = Command::new(program)
        .args(args)
        .env("TALLY", "off")
        .env_remove(tally_home::env::TALLY_FORCE_ARG0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
    else {
        return Ran::NotStarted;
    };
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let kill_group = || {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    };
    let mut stdout = child.stdout.take();
    // Never blocks: what a process left behind holding the pipe keeps open is not waited for.
    if let Some(out) = &stdout {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        if fcntl(out.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_err() {
            stdout = None;
        }
    }
    let mut output = Vec::new();
    let mut read_available = |stdout: &mut Option<std::process::ChildStdout>| {
        let Some(out) = stdout else { return };
        let mut buf = [0u8; 1024];
        loop {
            match out.read(&mut buf) {
                Ok(0) => {
                    *stdout = None;
                    return;
                }
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(output.len());
                    output.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    };
    let start = Instant::now();
    let status = loop {
        read_available(&mut stdout);
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                kill_group();
                let _ = child.wait();
                return Ran::TimedOut;
            }
            Err(_) => {
                kill_group();
                let _ = child.wait();
                return Ran::NotStarted;
            }
        }
    };
    read_available(&mut stdout);
    if !status.success() {
        return Ran::Failed;
    }
    match String::from_utf8(output) {
        Ok(text) => Ran::Succeeded(text),
        Err(_) => Ran::Failed,
    }
}

/// `cargo 1.95.0 (f2d3ce0bd 2026-03-21)` → `1.95.0`; `rustfmt 1.8.0-stable (…)` →
/// `1.8.0-stable`; `go version go1.19.8 linux/amd64` → `go1.19.8`.
pub fn parse_version(tool: Tool, output: &str) -> Option<String> {
    let line = output.lines().next()?;
    let mut words = line.split_whitespace();
    let version = match tool {
        Tool::Go | Tool::Gofmt => words.find(|w| w.starts_with("go1") || w.starts_with("go2"))?,
        _ => words.nth(1)?,
    };
    is_clean(version).then(|| version.to_string())
}

/// Versions are short and plain; anything else is not trusted into a file name or report.
fn is_clean(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 40
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_'))
        && v.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'g')
}

/// The file whose version matters: behind a rustup proxy, the toolchain's own binary.
/// `real_meta` is what `stat` said about `real`, and `real_is_symlink` whether `real` itself
/// is a symbolic link (see [`crate::lookup::executable_entry`]).
pub fn versioned_binary(
    tool: Tool,
    real: &Path,
    real_meta: &Metadata,
    real_is_symlink: bool,
    args: &[OsString],
    env: &tally_home::env::ProcessEnv,
) -> Option<(PathBuf, Metadata)> {
    let is_rust = matches!(
        tool,
        Tool::Cargo | Tool::Rustc | Tool::Rustfmt | Tool::CargoFmt
    );
    if is_rust && crate::rustup::is_rustup_proxy_given(real, real_is_symlink, real_meta) {
        let cwd = std::env::current_dir().ok()?;
        let bin = crate::rustup::toolchain_binary(
            tool.name(),
            args,
            &cwd,
            &crate::rustup::RustupEnv::from_snapshot(env),
        )?;
        let meta = std::fs::metadata(&bin).ok()?;
        return Some((bin, meta));
    }
    Some((real.to_path_buf(), real_meta.clone()))
}

/// The cache's entries in `dir`, without its lock files.
#[cfg(test)]
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    all.retain(|p| p.extension().is_none_or(|x| x != "lock"));
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_test_support::write_script;

    #[test]
    fn parses_real_outputs() {
        for (tool, output, want) in [
            (
                Tool::Cargo,
                "cargo 1.95.0 (f2d3ce0bd 2026-03-21)\n",
                "1.95.0",
            ),
            (
                Tool::Rustc,
                "rustc 1.97.0-nightly (abc 2026-05-01)",
                "1.97.0-nightly",
            ),
            (
                Tool::Rustfmt,
                "rustfmt 1.8.0-stable (5980761 2026-04-14)",
                "1.8.0-stable",
            ),
            (Tool::Go, "go version go1.19.8 linux/amd64\n", "go1.19.8"),
        ] {
            assert_eq!(
                parse_version(tool, output).as_deref(),
                Some(want),
                "{output:?}"
            );
        }
        assert_eq!(parse_version(Tool::Rustc, "rustc /home/secret/path"), None);
        assert_eq!(parse_version(Tool::Rustc, ""), None);
    }

    #[test]
    fn caches_by_identity_and_never_stores_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("secretdir-rustc");
        write_script(&bin, "echo \"rustc 1.2.3 (x y)\"\n");
        let home = Home::at(tmp.path().join("data"));
        let versions = home.versions_dir();
        let meta = std::fs::metadata(&bin).unwrap();
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), "1.2.3");
        let entries = entries(&versions);
        assert_eq!(entries.len(), 1);
        let name = entries[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(!name.contains("secretdir"));
        assert_eq!(std::fs::read_to_string(&entries[0]).unwrap(), "1.2.3\n");
        // A cached answer is used without running the tool again.
        std::fs::write(&entries[0], "9.9.9\n").unwrap();
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), "9.9.9");
    }

    #[test]
    fn the_cache_is_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("versions");
        std::fs::create_dir(&dir).unwrap();
        for i in 0..MAX_ENTRIES + 10 {
            store(&dir, &format!("rustc-{i:016x}"), "1.2.3").unwrap();
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), MAX_ENTRIES);
        // The newest is kept.
        assert!(dir.join(format!("rustc-{:016x}", MAX_ENTRIES + 9)).exists());
    }

    #[test]
    fn a_hanging_or_failing_tool_is_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("rustc");
        write_script(&bin, "exit 3\n");
        let meta = std::fs::metadata(&bin).unwrap();
        let home = Home::at(tmp.path().join("v"));
        let versions = home.versions_dir();
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), UNKNOWN);
        // Remembered, so the tool is not asked on every run.
        assert_eq!(entries(&versions).len(), 1);
        // A tool that cannot even start is not remembered (it may be fixed in place).
        let missing = tmp.path().join("gone/rustc");
        let other = Home::at(tmp.path().join("w"));
        assert_eq!(version_of(Tool::Rustc, &missing, &meta, &other), UNKNOWN);
        assert_eq!(entries(&other.versions_dir()), Vec::<PathBuf>::new());
    }

    /// A query that does not answer in time is killed with every process of its group (a
    /// child it started too), and remembered as `unknown` for a while.
    #[test]
    fn a_hanging_query_is_killed_with_its_group() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("rustc");
        let child_pid = tmp.path().join("child.pid");
        write_script(
            &bin,
            &format!(
                "sleep 120 &\necho $! > {0}.tmp; mv {0}.tmp {0}\nwait\n",
                child_pid.display()
            ),
        );
        let started = Instant::now();
        assert!(matches!(
            run_with_timeout(&bin, &["--version"], Duration::from_millis(500)),
            Ran::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        let child: i32 = std::fs::read_to_string(&child_pid)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed, and reaped by whoever is its parent now: gone or a zombie within seconds.
        tally_test_support::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            if tally_test_support::has_exited(child) {
                Ok(())
            } else {
                Err(format!("the query's child {child} outlived it"))
            }
        });
    }

    /// The answer is read while the query runs and when it exits: a process it left behind
    /// holding its stdout does not hold the reader.
    #[test]
    fn a_leftover_holding_stdout_does_not_hold_the_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("rustc");
        write_script(&bin, "echo 'rustc 1.2.3 (x y)'\nsleep 30 &\nexit 0\n");
        let started = Instant::now();
        let Ran::Succeeded(out) = run_with_timeout(&bin, &["--version"], QUERY_TIMEOUT) else {
            panic!("no answer");
        };
        assert_eq!(out, "rustc 1.2.3 (x y)\n");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A helper's shared hold on the pending lock is waited for, and only so long.
    #[test]
    fn waits_for_pending_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(tmp.path().join("data"));
        assert!(wait_for_pending(&home, Duration::ZERO), "nothing pending");
        home.own_dir(&home.versions_dir()).unwrap();
        let held = open_lock(&home.versions_dir().join(PENDING_LOCK)).unwrap();
        held.lock_shared().unwrap();
        assert!(!wait_for_pending(&home, Duration::from_millis(50)));
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        assert!(wait_for_pending(&home, Duration::from_secs(10)));
        release.join().unwrap();
    }

    /// An `unknown` entry is trusted for a day, then asked again.
    #[test]
    fn unknown_is_asked_again_after_a_day() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("versions");
        std::fs::create_dir(&dir).unwrap();
        store(&dir, "rustc-0000000000000001", UNKNOWN).unwrap();
        assert_eq!(
            read_entry(&dir, "rustc-0000000000000001").as_deref(),
            Some(UNKNOWN)
        );
        let entry = std::fs::File::options()
            .write(true)
            .open(dir.join("rustc-0000000000000001"))
            .unwrap();
        entry
            .set_modified(SystemTime::now() - RETRY_UNKNOWN - Duration::from_secs(60))
            .unwrap();
        assert_eq!(read_entry(&dir, "rustc-0000000000000001"), None);
    }
}

#[cfg(test)]
mod planted {
    use super::*;
    use std::time::{Duration, Instant};
    use tally_test_support::write_script;

    /// A rustc that prints `output` and an empty data directory, in a temporary directory.
    struct FakeRustc {
        tmp: tempfile::TempDir,
        bin: PathBuf,
        meta: Metadata,
        home: Home,
    }

    impl FakeRustc {
        fn new(output: &str) -> FakeRustc {
            let tmp = tempfile::tempdir().unwrap();
            let bin = tmp.path().join("rustc");
            write_script(&bin, &format!("echo '{output}'\n"));
            let meta = std::fs::metadata(&bin).unwrap();
            let home = Home::at(tmp.path().join("data"));
            FakeRustc {
                tmp,
                bin,
                meta,
                home,
            }
        }

        /// The version the shims take it to have: from the cache, or by asking it.
        fn version(&self) -> String {
            version_of(Tool::Rustc, &self.bin, &self.meta, &self.home)
        }
    }

    /// A custom build's suffix never reaches the cache: only the normalised version does.
    #[test]
    fn the_cache_keeps_only_the_normalised_version() {
        let rustc = FakeRustc::new("rustc 1.96.0-alice_secret_token (x y)");
        let home = &rustc.home;
        assert_eq!(rustc.version(), "1.96.0");
        for entry in entries(&home.versions_dir()) {
            let text = std::fs::read_to_string(entry).unwrap();
            assert_eq!(text, "1.96.0\n");
        }
        // An entry an older tally wrote raw is asked again and replaced.
        let entry = entries(&home.versions_dir()).remove(0);
        std::fs::write(&entry, "1.96.0-alice_secret_token\n").unwrap();
        assert_eq!(rustc.version(), "1.96.0");
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), "1.96.0\n");
    }

    /// A FIFO or a link at a cache entry, or a linked `versions/`, is never read through or
    /// waited on: the tool is asked, and the entry (or directory) replaced by a real one.
    #[test]
    fn planted_entries_are_replaced_not_followed() {
        let rustc = FakeRustc::new("rustc 1.2.3 (x y)");
        let (tmp, home) = (&rustc.tmp, &rustc.home);
        assert_eq!(rustc.version(), "1.2.3");
        let entry = entries(&home.versions_dir()).remove(0);
        let started = Instant::now();
        std::fs::remove_file(&entry).unwrap();
        nix::unistd::mkfifo(&entry, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(rustc.version(), "1.2.3");
        assert!(std::fs::symlink_metadata(&entry).unwrap().is_file());
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "9.9.9\n").unwrap();
        std::fs::remove_file(&entry).unwrap();
        std::os::unix::fs::symlink(&outside, &entry).unwrap();
        assert_eq!(rustc.version(), "1.2.3");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "9.9.9\n");
        // FIFOs at the lock files: not waited on, replaced by lock files.
        std::fs::remove_file(&entry).unwrap();
        for lock in [QUERIES_LOCK, PENDING_LOCK] {
            let _ = std::fs::remove_file(home.versions_dir().join(lock));
            nix::unistd::mkfifo(
                &home.versions_dir().join(lock),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .unwrap();
        }
        assert_eq!(rustc.version(), "1.2.3");
        let queries = std::fs::symlink_metadata(home.versions_dir().join(QUERIES_LOCK)).unwrap();
        assert!(queries.is_file());
        // `versions/` itself a link to a directory holding a planted answer.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join(entry.file_name().unwrap()), "9.9.9\n").unwrap();
        std::fs::remove_dir_all(home.versions_dir()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, home.versions_dir()).unwrap();
        assert_eq!(rustc.version(), "1.2.3");
        assert!(
            std::fs::symlink_metadata(home.versions_dir())
                .unwrap()
                .is_dir()
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
