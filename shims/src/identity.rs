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

/// The running binary, as the PATH search needs to recognise it among the candidates.
///
/// The shim is nearly always started by the first candidate itself (the shell found it on
/// PATH and passed that path to `execve`), and the kernel keeps that path for the process
/// (`AT_EXECFN`): a candidate spelled the same is this binary without a `stat`. For any other
/// candidate the binary's file identity is looked up once, on first need.
#[derive(Debug)]
pub struct ThisBinary {
    started_as: Option<&'static OsStr>,
    identity: std::cell::OnceCell<Option<FileIdentity>>,
}

impl ThisBinary {
    /// The running process.
    pub fn current() -> ThisBinary {
        ThisBinary {
            started_as: started_as(),
            identity: std::cell::OnceCell::new(),
        }
    }

    /// A binary known only by its identity (`None`: nothing is this binary).
    pub fn with_identity(identity: Option<FileIdentity>) -> ThisBinary {
        ThisBinary {
            started_as: None,
            identity: std::cell::OnceCell::from(identity),
        }
    }

    /// A binary started by `path`, with this identity (for tests of the PATH search).
    #[cfg(test)]
    pub(crate) fn started_by(path: &'static Path, identity: Option<FileIdentity>) -> ThisBinary {
        ThisBinary {
            started_as: Some(path.as_os_str()),
            identity: std::cell::OnceCell::from(identity),
        }
    }

    /// The binary's file identity.
    pub fn identity(&self) -> Option<FileIdentity> {
        *self.identity.get_or_init(self_identity)
    }

    /// Whether this process was started by exactly `path` (so `path` is this binary: `execve`
    /// ran the file it names, from this working directory).
    pub fn was_started_as(&self, path: &Path) -> bool {
        self.started_as.is_some_and(|s| s == path.as_os_str())
    }
}

/// The path this process was started by: the kernel's `AT_EXECFN`, as the C library saved it
/// (no system call, no file system lookup). `None` where unknown.
fn started_as() -> Option<&'static OsStr> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = tally_counter::startup::started_by()?.to_bytes();
        (!path.is_empty()).then(|| OsStr::from_bytes(path))
    }
    #[cfg(not(target_os = "linux"))]
    None
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
