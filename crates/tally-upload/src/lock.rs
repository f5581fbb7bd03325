//! The upload run lock (`upload.lock`) and the daily gate (`upload.token`).
//!
//! Promises: at most one upload run holds the lock at a time on one data directory, so two
//! uploaders never send the same report; the lock is an advisory `flock` released by the
//! kernel when the process ends, however it ends, so a crashed run never blocks the next. Both
//! files are opened through `tally_home::fsio`: a link or FIFO planted at either is an error at
//! once, never followed or waited on.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use tally_home::fsio;

/// File name of the run lock, in the data directory.
pub const LOCK_FILE: &str = "upload.lock";
/// File name of the daily gate, in the data directory: the shims start a background upload
/// only when its mtime is more than a day old.
pub const TOKEN_FILE: &str = "upload.token";

/// Held while an upload run works; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Takes the run lock without waiting. `Ok(None)`: another run holds it.
pub fn try_lock(data_dir: &Path) -> io::Result<Option<RunLock>> {
    fsio::make_dir(data_dir)?;
    let file = fsio::open_or_create(&data_dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(RunLock { _file: file })),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(err)) => Err(err),
    }
}

/// Sets the mtime of `upload.token` to now (creating it), so the shims wait another day.
pub fn touch_token(data_dir: &Path) -> io::Result<()> {
    fsio::make_dir(data_dir)?;
    fsio::touch(&data_dir.join(TOKEN_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_test_support::home::write_old_foreign_file;

    #[test]
    fn only_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_lock(dir.path()).unwrap().expect("free lock");
        assert!(
            try_lock(dir.path()).unwrap().is_none(),
            "second run must not get the lock"
        );
        drop(first);
        assert!(try_lock(dir.path()).unwrap().is_some(), "released on drop");
    }

    #[test]
    fn a_planted_lock_or_token_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
        nix::unistd::mkfifo(&dir.path().join(LOCK_FILE), mode).unwrap();
        let outside = dir.path().join("outside");
        let old = write_old_foreign_file(&outside);
        std::os::unix::fs::symlink(&outside, dir.path().join(TOKEN_FILE)).unwrap();
        let started = std::time::Instant::now();
        assert!(fsio::is_not_regular(&try_lock(dir.path()).unwrap_err()));
        assert!(fsio::is_not_regular(&touch_token(dir.path()).unwrap_err()));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(fs::metadata(&outside).unwrap().modified().unwrap(), old);
    }

    #[test]
    fn touching_the_token_moves_its_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join(TOKEN_FILE);
        touch_token(dir.path()).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        File::options()
            .write(true)
            .open(&token)
            .unwrap()
            .set_modified(old)
            .unwrap();
        touch_token(dir.path()).unwrap();
        assert!(fs::metadata(&token).unwrap().modified().unwrap() > old);
    }
}
