//! Opening a file in tally's data directory so that nothing planted there can block, redirect
//! or be damaged through tally.
//!
//! Every file tally opens in its data directory goes through [`open`] (this crate's counter
//! files, and through `tally_home::fsio` everything else: the mode, the weekday, the version
//! cache, reports, the config cache, the upload lock and token). It promises:
//!
//! - **No link is followed**: `O_NOFOLLOW`, so a symbolic link at the path is refused (`ELOOP`)
//!   instead of opening, reading, writing or changing the times of whatever it points to.
//! - **Nothing blocks**: `O_NONBLOCK`, so opening a FIFO returns at once (or fails with `ENXIO`
//!   for writing without a reader) instead of waiting for a writer; a regular file ignores the
//!   flag, so what the caller gets behaves like any file.
//! - **Only regular files**: after the open, one `fstat`; a FIFO, socket, device or directory is
//!   refused with an error [`is_not_regular`] recognises, which callers treat like any other
//!   corrupt entry (quarantine, or a clear message), never as "missing".
//! - **Close-on-exec**: std opens every file `O_CLOEXEC`; the shim is about to `exec` the real
//!   tool, which must not inherit anything of tally's.
//!
//! It lives here, not in `tally-home`, because counter files are opened by this crate, which
//! cannot depend on `tally-home`; `tally_home::fsio` builds the rest on it. No `unsafe`: the
//! flags go through std's `OpenOptionsExt::custom_flags`.
//!
//! What it cannot promise: opening a device node has whatever effect the device's driver gives
//! an `open`, before the `fstat` can refuse it. Only root can make a device node, so only root
//! can plant one in a user's data directory.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The flags added to every open in the data directory (std adds `O_CLOEXEC` itself).
pub const FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// What was found where a regular file was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRegular {
    /// `"a symbolic link"`, `"a FIFO"`, `"a socket"`, `"a device"`, `"a directory"` or `"not a
    /// regular file"` when the kind is unknown.
    pub what: &'static str,
}

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "it is {}, not a regular file: tally never follows links or opens special files in \
             its data directory (remove it)",
            self.what
        )
    }
}

impl std::error::Error for NotRegular {}

impl NotRegular {
    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

/// What kind of non-regular file `file_type` is, or `None` for a regular file.
pub fn kind_of(file_type: std::fs::FileType) -> Option<NotRegular> {
    let what = if file_type.is_file() {
        return None;
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    Some(NotRegular { what })
}

/// The [`NotRegular`] inside `error`, if the open failed because the path is not a regular file.
pub fn not_regular(error: &io::Error) -> Option<NotRegular> {
    if let Some(found) = error.get_ref().and_then(|e| e.downcast_ref::<NotRegular>()) {
        return Some(*found);
    }
    let what = match error.raw_os_error()? {
        // O_NOFOLLOW on a link (Linux, and most Unixes; FreeBSD says EMLINK).
        libc::ELOOP | libc::EMLINK => "a symbolic link",
        // A FIFO opened for writing without a reader, or a socket.
        libc::ENXIO => "a FIFO or socket",
        libc::EISDIR => "a directory",
        _ => return None,
    };
    Some(NotRegular { what })
}

/// Whether `error` says the path is something else than a regular file (a link, FIFO, socket,
/// device or directory): a corrupt entry, not a missing one.
pub fn is_not_regular(error: &io::Error) -> bool {
    not_regular(error).is_some()
}

/// Opens `path` with `options` plus [`FLAGS`] and `extra_flags`, and refuses anything but a
/// regular file (see the module docs). Errors from a link or special file are recognised by
/// [`is_not_regular`]; others are the system's.
pub fn open_with(path: &Path, options: &mut OpenOptions, extra_flags: i32) -> io::Result<File> {
    let file = options
        .custom_flags(FLAGS | extra_flags)
        .open(path)
        .map_err(|e| match not_regular(&e) {
            // Say what is there, not the system's word for it (`ELOOP`, `ENXIO`).
            Some(found) => found.into_io(),
            None => e,
        })?;
    check_regular(&file)?;
    Ok(file)
}

/// [`open_with`] without extra flags.
pub fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    open_with(path, options, 0)
}

/// Opens `path` for reading (see [`open_with`]).
pub fn open_read(path: &Path) -> io::Result<File> {
    open(path, OpenOptions::new().read(true))
}

/// Refuses an open file that is not a regular file.
pub fn check_regular(file: &File) -> io::Result<()> {
    match kind_of(file.metadata()?.file_type()) {
        None => Ok(()),
        Some(found) => Err(found.into_io()),
    }
}

/// The error [`is_not_regular`] recognises, for a file found by other means (an `lstat`, a
/// directory entry) to be a link or special file.
pub fn not_regular_error(found: NotRegular) -> io::Error {
    found.into_io()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn regular_files_open_as_usual() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x").unwrap();
        assert!(open_read(&path).is_ok());
        assert!(open(&path, OpenOptions::new().read(true).write(true)).is_ok());
        let missing = open_read(&dir.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(!is_not_regular(&missing));
    }

    #[test]
    fn links_fifos_and_directories_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let started = Instant::now();
        for (path, what) in [
            (&link, "a symbolic link"),
            (&fifo, "a FIFO"),
            (&dir.path().to_path_buf(), "a directory"),
        ] {
            let e = open_read(path).unwrap_err();
            assert_eq!(not_regular(&e).map(|n| n.what), Some(what), "{e}");
        }
        for (write, create, read) in [
            (true, false, false),
            (true, true, false),
            (true, false, true),
        ] {
            for path in [&link, &fifo] {
                let mut options = OpenOptions::new();
                options.write(write).create(create).read(read);
                let e = open(path, &mut options).unwrap_err();
                assert!(is_not_regular(&e), "{}: {e}", path.display());
            }
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
    }
}
