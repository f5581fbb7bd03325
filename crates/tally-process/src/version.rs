//! The real tool's version, for the counter file's name, without slowing the hot path.
//!
//! A cache under `<data>/versions/`, one small file per real binary, named by a hash of the
//! binary's (path, size, mtime) so that an upgrade in place is a new entry, and holding only
//! the normalised version ([`tally_home::normalize_version`]: `1.95.0`, `1.97.0-nightly`,
//! never the path, nor whatever else a custom build prints after the number). On a miss the tool is asked once (`--version`, `go version`)
//! with `TALLY=off` in its environment (so a shim in front of it does not count the question)
//! and a timeout. Anything that goes wrong gives `unknown`. At most [`MAX_ENTRIES`] entries are
//! kept (the oldest go on a miss), so the cache stays small however many toolchains come and go.

use std::ffi::OsString;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tally_grammar::Tool;
use tally_home::{Home, fsio};

/// What a version is when it cannot be learned.
pub const UNKNOWN: &str = "unknown";

/// How long a version query may take before it is abandoned (a cold rustup proxy can be slow).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The version of `binary` (the file that really runs, e.g. a toolchain's rustc, not a rustup
/// proxy), cached in `home`'s `versions/`.
///
/// The cache is read only when `versions/` is a real directory (one `lstat`) and each entry is
/// opened through `tally_home::fsio` (no link followed, no wait on a FIFO): a planted entry
/// reads as a miss and is replaced by the next store.
pub fn version_of(tool: Tool, binary: &Path, meta: &Metadata, home: &Home) -> String {
    let versions_dir = home.versions_dir();
    let key = cache_key(tool, binary, meta);
    let entry = versions_dir.join(&key);
    if fsio::is_own_dir(&versions_dir)
        && let Ok(bytes) = fsio::read_small(&entry)
        && let Ok(text) = std::str::from_utf8(&bytes)
    {
        // Entries hold the normalised version; anything else (an older tally's raw version,
        // a hand edit) is asked again and replaced.
        let v = text.trim();
        if tally_home::is_normalized_version(v) {
            return v.to_string();
        }
    }
    let version = match query(tool, binary) {
        Answer::Version(v) => tally_home::normalize_version(&v).into_owned(),
        // A tool that answers but not with a version will not change its mind: remember that,
        // or every run would ask again.
        Answer::NoVersion => UNKNOWN.to_string(),
        // Timed out, or could not run: maybe a cold cache or a busy machine; ask next time.
        Answer::Failed => return UNKNOWN.to_string(),
    };
    // Caching is best effort: a read-only data directory just means asking again next time.
    if home.own_dir(&versions_dir).is_ok() {
        let _ = store(&versions_dir, &key, &version);
    }
    version
}

/// What asking a tool for its version gave.
enum Answer {
    Version(String),
    NoVersion,
    Failed,
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
/// a cache miss, which is rare.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = fsio::read_own_dir(dir) else {
        return;
    };
    // `DirEntry::metadata` does not follow links: a link is pruned by its own time.
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .into_iter()
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
fn query(tool: Tool, binary: &Path) -> Answer {
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
    match run_with_timeout(&program, args) {
        Some(Ok(out)) => parse_version(tool, &out).map_or(Answer::NoVersion, Answer::Version),
        Some(Err(())) => Answer::NoVersion,
        None => Answer::Failed,
    }
}

/// The tool's stdout if it exited successfully, `Some(Err)` if it ran and failed, `None` if it
/// could not be started or timed out.
fn run_with_timeout(program: &Path, args: &[&str]) -> Option<Result<String, ()>> {
    let mut child = Command::new(program)
        .args(args)
        .env("TALLY", "off")
        .env_remove(tally_home::env::TALLY_FORCE_ARG0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) => return Some(Err(())),
            Err(_) => return None,
            Ok(None) if start.elapsed() > QUERY_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    let mut text = String::new();
    match child
        .stdout
        .take()
        .map(|out| out.take(4096).read_to_string(&mut text))
    {
        Some(Ok(_)) => Some(Ok(text)),
        _ => Some(Err(())),
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
    env: &tally_home::ProcessEnv,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_outputs() {
        assert_eq!(
            parse_version(Tool::Cargo, "cargo 1.95.0 (f2d3ce0bd 2026-03-21)\n").as_deref(),
            Some("1.95.0")
        );
        assert_eq!(
            parse_version(Tool::Rustc, "rustc 1.97.0-nightly (abc 2026-05-01)").as_deref(),
            Some("1.97.0-nightly")
        );
        assert_eq!(
            parse_version(Tool::Rustfmt, "rustfmt 1.8.0-stable (5980761 2026-04-14)").as_deref(),
            Some("1.8.0-stable")
        );
        assert_eq!(
            parse_version(Tool::Go, "go version go1.19.8 linux/amd64\n").as_deref(),
            Some("go1.19.8")
        );
        assert_eq!(parse_version(Tool::Rustc, "rustc /home/secret/path"), None);
        assert_eq!(parse_version(Tool::Rustc, ""), None);
    }

    #[test]
    fn caches_by_identity_and_never_stores_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("secretdir-rustc");
        std::fs::write(&bin, "#!/bin/sh\necho \"rustc 1.2.3 (x y)\"\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let home = Home::at(tmp.path().join("data"));
        let versions = home.versions_dir();
        let meta = std::fs::metadata(&bin).unwrap();
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), "1.2.3");
        let entries: Vec<_> = std::fs::read_dir(&versions)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
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
        std::fs::write(&bin, "#!/bin/sh\nexit 3\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let meta = std::fs::metadata(&bin).unwrap();
        let home = Home::at(tmp.path().join("v"));
        let versions = home.versions_dir();
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), UNKNOWN);
        // Remembered, so the tool is not asked on every run.
        assert_eq!(std::fs::read_dir(&versions).unwrap().count(), 1);
        // A tool that cannot even start is not remembered (it may be fixed in place).
        let missing = tmp.path().join("gone/rustc");
        assert_eq!(
            version_of(
                Tool::Rustc,
                &missing,
                &meta,
                &Home::at(tmp.path().join("w"))
            ),
            UNKNOWN
        );
        assert!(!tmp.path().join("w").exists());
    }
}

#[cfg(test)]
mod planted {
    use super::*;
    use std::time::{Duration, Instant};

    fn fake_tool(dir: &Path, output: &str) -> (PathBuf, Metadata) {
        let bin = dir.join("rustc");
        std::fs::write(&bin, format!("#!/bin/sh\necho '{output}'\n")).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let meta = std::fs::metadata(&bin).unwrap();
        (bin, meta)
    }

    /// A custom build's suffix never reaches the cache: only the normalised version does.
    #[test]
    fn the_cache_keeps_only_the_normalised_version() {
        let tmp = tempfile::tempdir().unwrap();
        let (bin, meta) = fake_tool(tmp.path(), "rustc 1.96.0-alice_secret_token (x y)");
        let home = Home::at(tmp.path().join("data"));
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), "1.96.0");
        for entry in std::fs::read_dir(home.versions_dir()).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert_eq!(text, "1.96.0\n");
        }
        // An entry an older tally wrote raw is asked again and replaced.
        let entry = std::fs::read_dir(home.versions_dir())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&entry, "1.96.0-alice_secret_token\n").unwrap();
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), "1.96.0");
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), "1.96.0\n");
    }

    /// A FIFO or a link at a cache entry, or a linked `versions/`, is never read through or
    /// waited on: the tool is asked, and the entry (or directory) replaced by a real one.
    #[test]
    fn planted_entries_are_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (bin, meta) = fake_tool(tmp.path(), "rustc 1.2.3 (x y)");
        let home = Home::at(tmp.path().join("data"));
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), "1.2.3");
        let entry = std::fs::read_dir(home.versions_dir())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let started = Instant::now();
        std::fs::remove_file(&entry).unwrap();
        nix::unistd::mkfifo(&entry, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), "1.2.3");
        assert!(std::fs::symlink_metadata(&entry).unwrap().is_file());
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "9.9.9\n").unwrap();
        std::fs::remove_file(&entry).unwrap();
        std::os::unix::fs::symlink(&outside, &entry).unwrap();
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), "1.2.3");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "9.9.9\n");
        // `versions/` itself a link to a directory holding a planted answer.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join(entry.file_name().unwrap()), "9.9.9\n").unwrap();
        std::fs::remove_dir_all(home.versions_dir()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, home.versions_dir()).unwrap();
        assert_eq!(version_of(Tool::Rustc, &bin, &meta, &home), "1.2.3");
        assert!(
            std::fs::symlink_metadata(home.versions_dir())
                .unwrap()
                .is_dir()
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
