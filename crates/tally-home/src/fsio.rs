//! The one way tally touches files and directories inside its data directory.
//!
//! Promises, for every caller (the shims, the wrapper, reports, the config cache, the uploader,
//! the CLI):
//! - **Nothing planted in the data directory blocks tally.** Files are opened with
//!   `O_NONBLOCK` and refused unless they are regular files ([`tally_sys::safe_open`]): a
//!   FIFO, socket, device or directory where a file belongs is an error at once, which
//!   [`is_not_regular`] recognises, and callers treat like any other corrupt entry.
//! - **No link is followed that tally did not make.** Files are opened `O_NOFOLLOW`; files are
//!   replaced by `rename` and created by `O_EXCL` or `link`, none of which follow a link at the
//!   destination; directories are checked with `lstat` ([`own_dir`], [`read_own_dir`]) before
//!   anything is read or written through them. The data directory's root is the exception: it
//!   is the directory the user named (`TALLY_DIR`, `XDG_STATE_HOME`, `HOME`), and following
//!   links to it is what the user asked for.
//! - **Files are 0600, directories 0700, descriptors close-on-exec.**
//!
//! A race in which someone with write access to the data directory swaps a directory for a
//! link between the check and the use is not defended against: that someone can already
//! write whatever it likes there.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use tally_sys::safe_open::{
    FLAGS, NotRegular, check_regular, is_not_regular, kind_of, not_regular, not_regular_error,
    open, open_read, open_with,
};

/// Reads a file of a few bytes (the mode, the weekday, a cached version) in one `read`, where
/// `fs::read` makes four system calls (it asks for the size first and reads again to see the
/// end): these files are read on every shim run. A file longer than the first read is read to
/// its end all the same. A link or special file is refused ([`is_not_regular`]).
pub fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = open_read(path)?;
    let mut buf = [0u8; 256];
    let n = loop {
        match file.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    let mut bytes = buf[..n].to_vec();
    // A short read of a regular file is its end; a full buffer may not be.
    if n == buf.len() {
        file.read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// Reads a file, but refuses one larger than `max` bytes (so a corrupt or hostile file can't
/// make tally allocate without bound). `Ok(None)` if it doesn't exist; a link or special file
/// is an error ([`is_not_regular`]), never "missing".
pub fn read_capped(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other(format!(
            "{} is over {max} bytes; it is not a file tally wrote (delete it)",
            path.display()
        )));
    }
    Ok(Some(bytes))
}

/// A unique temporary name beside `path` (hidden, so listings skip it).
pub fn temp_beside(path: &Path) -> PathBuf {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{base}.{}.{:016x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ))
}

/// Writes `contents` to a new temporary file beside `path` (created exclusively, so a link or
/// anything else already there is never written through; 0600; fsynced). Returns its path.
fn write_temp(path: &Path, contents: &[u8]) -> io::Result<PathBuf> {
    let temp = temp_beside(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(FLAGS)
            .open(&temp)?;
        f.write_all(contents)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Replaces `path` atomically (temporary file, fsync, rename). A link or special file at
/// `path` is replaced, never written through.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temp = write_temp(path, contents)?;
    fs::rename(&temp, path).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })?;
    // Durability of the rename; a directory that cannot be opened only costs durability.
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `path` with `contents` unless something is there already (hard link of a complete
/// temporary file, which neither follows nor replaces anything at `path`). Returns whether
/// this call created it.
pub fn create_exclusive(path: &Path, contents: &[u8]) -> io::Result<bool> {
    let temp = write_temp(path, contents)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens `path` for writing, creating it (0600) if missing, without truncating: the upload
/// lock and token. A link or special file is refused ([`is_not_regular`]).
pub fn open_or_create(path: &Path) -> io::Result<File> {
    open(
        path,
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
    )
}

/// Sets the modification time of `path` to now, creating it (0600) if missing. Never through
/// a link, never on a special file.
pub fn touch(path: &Path) -> io::Result<()> {
    open_or_create(path)?.set_modified(std::time::SystemTime::now())
}

/// What is at a path where tally keeps a directory, without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// A real directory.
    Dir,
    /// Nothing.
    Missing,
    /// Something else: a link (even to a directory), a file, a FIFO…
    NotDir(NotRegular),
}

/// What is at `dir` (one `lstat`).
pub fn dir_state(dir: &Path) -> io::Result<DirState> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => Ok(DirState::Dir),
        Ok(m) => Ok(DirState::NotDir(kind_of(m.file_type()).unwrap_or(
            NotRegular {
                what: "a regular file",
            },
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DirState::Missing),
        Err(e) => Err(e),
    }
}

/// The error for something else than a directory where tally keeps one.
pub fn not_a_directory(dir: &Path, found: NotRegular) -> io::Error {
    io::Error::other(format!(
        "{} is {}, where tally keeps a directory of its own; tally never follows links in its \
         data directory: remove it and tally makes a fresh one",
        dir.display(),
        found.what
    ))
}

/// Whether `dir` is a real directory (not a link to one). One `lstat`.
pub fn is_own_dir(dir: &Path) -> bool {
    matches!(dir_state(dir), Ok(DirState::Dir))
}

/// Creates the one directory `dir` (0700) if nothing is there; fine if a concurrent process
/// made it first. Its parent must exist.
pub fn make_one_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match dir_state(dir)? {
            DirState::Dir => Ok(()),
            DirState::NotDir(found) => Err(not_a_directory(dir, found)),
            DirState::Missing => Err(e),
        },
        other => other,
    }
}

/// Makes sure `dir` is a real directory, creating it (0700) and its missing parents. Each
/// component below `root` that exists must be a real directory, not a link (the `root` itself
/// and what is above it are the user's and are followed). Something else in the way is an
/// error saying what and how to fix it.
pub fn own_dir(root: &Path, dir: &Path) -> io::Result<()> {
    let below = dir.strip_prefix(root).unwrap_or(Path::new(""));
    make_dir(root)?;
    let mut at = root.to_path_buf();
    for part in below.components() {
        at.push(part);
        match dir_state(&at)? {
            DirState::Dir => {}
            DirState::Missing => make_one_dir(&at)?,
            DirState::NotDir(found) => return Err(not_a_directory(&at, found)),
        }
    }
    Ok(())
}

/// Creates a directory and its parents with mode 0700 (for the data directory's root).
pub fn make_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// The entries of `dir` when it is a real directory; a missing one is empty; a link or anything
/// else at `dir` is an error, and is not read through.
pub fn read_own_dir(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    match dir_state(dir)? {
        DirState::Dir => fs::read_dir(dir)?.collect(),
        DirState::Missing => Ok(Vec::new()),
        DirState::NotDir(found) => Err(not_a_directory(dir, found)),
    }
}

/// The paths of the entries of `dir` ([`read_own_dir`]) named `*<suffix>`, unsorted, without
/// dotfiles (the hidden temporary names of writes in progress, [`temp_beside`]). Empty when
/// `dir` cannot be read.
pub fn visible_entries(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = read_own_dir(dir) else {
        return Vec::new();
    };
    entries
        .into_iter()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && n.ends_with(suffix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tally_test_support::home::write_old_foreign_file;

    fn fifo(path: &Path) {
        nix::unistd::mkfifo(
            path,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap();
    }

    #[test]
    fn read_small_reads_whole_files_of_any_size() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 7, 255, 256, 257, 4096 + 3] {
            let path = dir.path().join(format!("f{len}"));
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            fs::write(&path, &content).unwrap();
            assert_eq!(read_small(&path).unwrap(), content, "length {len}");
        }
        let missing = read_small(&dir.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn nothing_planted_blocks_or_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let old = write_old_foreign_file(&outside);
        let kept = fs::read(&outside).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let pipe = dir.path().join("pipe");
        fifo(&pipe);
        let started = Instant::now();
        for path in [&link, &pipe] {
            assert!(is_not_regular(&read_small(path).unwrap_err()));
            assert!(is_not_regular(&read_capped(path, 10).unwrap_err()));
            assert!(is_not_regular(&touch(path).unwrap_err()));
            assert!(is_not_regular(&open_or_create(path).unwrap_err()));
            assert!(!create_exclusive(path, b"x").unwrap());
        }
        // Replacing replaces the link itself.
        write_atomic(&link, b"new").unwrap();
        assert_eq!(fs::read(&link).unwrap(), b"new");
        assert!(!fs::symlink_metadata(&link).unwrap().is_symlink());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(fs::read(&outside).unwrap(), kept);
        assert_eq!(fs::metadata(&outside).unwrap().modified().unwrap(), old);
    }

    #[test]
    fn own_dirs_are_never_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        own_dir(&root, &root.join("reports/local")).unwrap();
        assert!(is_own_dir(&root.join("reports/local")));
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("counters")).unwrap();
        let e = own_dir(&root, &root.join("counters")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!is_own_dir(&root.join("counters")));
        assert!(read_own_dir(&root.join("counters")).is_err());
        assert!(read_own_dir(&root.join("missing")).unwrap().is_empty());
        // A root that is a link is the user's choice, and followed.
        let linked_root = dir.path().join("linked-root");
        std::os::unix::fs::symlink(&root, &linked_root).unwrap();
        own_dir(&linked_root, &linked_root.join("reports/sent")).unwrap();
        assert!(root.join("reports/sent").is_dir());
    }
}
