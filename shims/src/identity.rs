//! Which file is this binary, and where is a `tally` that can be run by name.
//!
//! Shims are links (symbolic or hard) to one binary, so "is this candidate me?" is answered by
//! file identity (device and inode), never by directory or file name.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
}

impl FileIdentity {
    pub fn of(meta: &Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The identity of the file `path` resolves to (symlinks followed).
    pub fn of_path(path: &Path) -> Option<FileIdentity> {
        std::fs::metadata(path).ok().map(|m| FileIdentity::of(&m))
    }
}

/// The identity of the running binary. `/proc/self/exe` resolves however the binary was
/// reached (symlink, hard link, PATH search); elsewhere `current_exe`.
pub fn self_identity() -> Option<FileIdentity> {
    FileIdentity::of_path(Path::new("/proc/self/exe")).or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| FileIdentity::of_path(&p))
    })
}

/// A path to this binary whose file stem is `tally`, so that running it (as `RUSTC_WRAPPER`,
/// or for `tally upload`) makes it act as tally, not as a shim. `/proc/self/exe` resolves
/// symlinked shims to the real binary; for a hard-linked shim, a sibling `tally` that is the
/// same file is used. `None` if there is no such path.
pub fn tally_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    if file_stem(&exe) == Some("tally") {
        return Some(exe);
    }
    let me = FileIdentity::of_path(&exe)?;
    let sibling = exe.parent()?.join("tally");
    (FileIdentity::of_path(&sibling) == Some(me)).then_some(sibling)
}

/// The file stem of `path` with a trailing `.exe` removed, if it is UTF-8.
pub fn file_stem(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    Some(name.strip_suffix(".exe").unwrap_or(name))
}

/// The tool name a program name stands for (`/x/y/cargo.exe` → `cargo`).
pub fn stem_of(arg0: &OsStr) -> Option<&str> {
    file_stem(Path::new(arg0))
}
