//! Which file is this binary, and what tally's two binaries (`tally`, the CLI, and
//! `tally-shim`, the hot path, installed side by side) are called and run as (finding the other
//! one on disk is [`crate::lookup`]'s).
//!
//! Shims are links (symbolic or hard) to one binary, so "is this candidate me?" is answered by
//! file identity (device and inode), never by directory or file name.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use tally_sys::FileId;

/// The running binary, as the PATH search needs to recognise it among the candidates.
///
/// The shim is nearly always started by the first candidate itself (the shell found it on
/// PATH and passed that path to `execve`), and the kernel keeps that path for the process
/// (`AT_EXECFN`): a candidate spelled the same is this binary without a `stat`. For any other
/// candidate the binary's file identity is looked up once, on first need.
#[derive(Debug)]
pub struct ThisBinary {
    started_as: Option<&'static OsStr>,
    identity: std::cell::OnceCell<Option<FileId>>,
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
    pub fn with_identity(identity: Option<FileId>) -> ThisBinary {
        ThisBinary {
            started_as: None,
            identity: std::cell::OnceCell::from(identity),
        }
    }

    /// A binary started by `path`, with this identity (for tests of the PATH search).
    #[cfg(test)]
    pub(crate) fn started_by(path: &'static Path, identity: Option<FileId>) -> ThisBinary {
        ThisBinary {
            started_as: Some(path.as_os_str()),
            identity: std::cell::OnceCell::from(identity),
        }
    }

    /// The binary's file identity.
    pub fn identity(&self) -> Option<FileId> {
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
        let path = tally_sys::startup::started_by()?.to_bytes();
        (!path.is_empty()).then(|| OsStr::from_bytes(path))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// The identity of the running binary.
///
/// First the file `execve` was given (`AT_EXECFN`), if its size is this program's image size:
/// one `stat` through paths the kernel has cached. Otherwise `/proc/self/exe`, which resolves
/// however the binary was reached (symlink, hard link, PATH search) but makes the kernel build
/// the new process's `/proc/<pid>` entries, the shim's most expensive lookup (bench/README.md,
/// "Shims"); elsewhere `current_exe`.
pub fn self_identity() -> Option<FileId> {
    started_as_identity()
        .or_else(|| FileId::of_target(Path::new("/proc/self/exe")))
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| FileId::of_target(&p))
        })
}

/// The identity of the file this process was started by, if that file is this program: the
/// path `execve` ran (resolved from the same working directory, which nothing has changed
/// since), and of this program's size (a script naming this program as its interpreter, or a
/// file replaced since the `exec`, would differ).
fn started_as_identity() -> Option<FileId> {
    identity_if_this_program(Path::new(started_as()?))
}

/// The identity of the file `path` resolves to, if it has this program's image size.
fn identity_if_this_program(path: &Path) -> Option<FileId> {
    #[cfg(target_os = "linux")]
    {
        let meta = std::fs::metadata(path).ok()?;
        (Some(meta.len()) == tally_sys::startup::image_file_size()).then(|| FileId::of(&meta))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// The file name of tally's CLI binary (which runs the hot path too, under a tool's name or as
/// `RUSTC_WRAPPER`, so that links and settings made for it keep working).
pub const CLI_BINARY: &str = "tally";

/// The file name of tally's hot-path binary: the shims and the `RUSTC_WRAPPER`, nothing of the
/// CLI. Installed beside [`CLI_BINARY`]; `tally setup` links the shims to it.
pub const HOT_BINARY: &str = "tally-shim";

/// Whether `stem` is the name of one of tally's binaries (run under it, a binary is the
/// wrapper or the CLI, never a shim).
pub fn is_binary_name(stem: Option<&str>) -> bool {
    matches!(stem, Some(CLI_BINARY | HOT_BINARY))
}

/// A path to this binary under its own name (`tally-shim` or `tally`), so that running it (as
/// `RUSTC_WRAPPER`) makes it act as the wrapper, not as a shim. `/proc/self/exe` resolves
/// symlinked shims to the binary itself; for a hard-linked shim, a sibling of either name that
/// is the same file is used. `None` if there is no such path.
pub fn wrapper_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    if is_binary_name(file_stem(&exe)) {
        return Some(exe);
    }
    let me = FileId::of_target(&exe)?;
    [HOT_BINARY, CLI_BINARY]
        .into_iter()
        .map(|name| exe.with_file_name(name))
        .find(|sibling| FileId::of_target(sibling) == Some(me))
}

/// The identity of the file at `path` if it is one of tally's binaries: this one (`this`), or one
/// reached through a symbolic link to a file named `tally` or `tally-shim` (a shim linked to the
/// other binary of the install: cargo passes tally's `rustc` shim as the compiler when it finds
/// it first on PATH, whichever binary is its `RUSTC_WRAPPER`). One `stat`, and one `readlink`
/// when the file is not this binary.
pub fn tally_file(path: &Path, this: Option<FileId>) -> Option<FileId> {
    let id = FileId::of_target(path)?;
    if this == Some(id) {
        return Some(id);
    }
    let target = std::fs::read_link(path).ok()?;
    is_binary_name(file_stem(&target)).then_some(id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_start_path_gives_this_binary_without_proc() {
        // cargo starts test binaries by their path, so `AT_EXECFN` is this file.
        let by_proc = FileId::of_target(Path::new("/proc/self/exe"));
        assert!(by_proc.is_some());
        assert_eq!(started_as_identity(), by_proc);
        assert_eq!(self_identity(), by_proc);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_start_path_of_another_size_is_not_taken_for_this_binary() {
        // A script that names this program as its interpreter is what `AT_EXECFN` would then
        // name; a symlink to this binary is this binary.
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("script");
        std::fs::write(&script, "#!/usr/local/bin/tally\n").unwrap();
        assert_eq!(identity_if_this_program(&script), None);
        let link = tmp.path().join("rustc");
        std::os::unix::fs::symlink(std::fs::canonicalize("/proc/self/exe").unwrap(), &link)
            .unwrap();
        assert_eq!(
            identity_if_this_program(&link),
            FileId::of_target(Path::new("/proc/self/exe"))
        );
    }
}
