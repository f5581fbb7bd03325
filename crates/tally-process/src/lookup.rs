//! Finding the real tool: the first executable of the tool's name on `PATH` that is not this
//! binary (compared by file identity), exactly as a shell would have found it had tally's shims
//! not been there; and tally's own binaries beside this one (the CLI, the hot-path binary).

use crate::identity::{CLI_BINARY, HOT_BINARY, ThisBinary, file_stem, wrapper_exe};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tally_sys::FileId;

/// The real tool and what `stat` said about it (reused for the version cache key).
#[derive(Debug)]
pub struct Found {
    pub path: PathBuf,
    pub meta: Metadata,
    /// Whether `path` itself is a symbolic link (`meta` describes what it points to).
    pub symlink: bool,
}

/// Why no real tool was found: the directories searched, and those where only this binary was.
#[derive(Debug, Default)]
pub struct NotFound {
    pub searched: Vec<PathBuf>,
    pub only_self_in: Vec<PathBuf>,
}

impl NotFound {
    /// The one line printed before exiting 127.
    pub fn message(&self, tool: &str) -> String {
        let list = |dirs: &[PathBuf]| {
            if dirs.is_empty() {
                "(none)".to_string()
            } else {
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            }
        };
        format!(
            "tally: cannot find the real `{tool}`: PATH has no `{tool}` besides tally's own shim \
             (searched {}; tally's shim in {}). Install {tool}, or put its directory on PATH after \
             tally's shims directory; `tally status` shows what the shims find.",
            list(&self.searched),
            list(&self.only_self_in),
        )
    }
}

/// Searches `path_var` (the value of `PATH`) for `name`, skipping any file that is `this`.
/// An empty PATH entry means the current directory, as in a shell.
///
/// The candidate this process was started by (normally the shim itself, first on PATH) is
/// known to be this binary without a look at the file system; every other candidate is
/// compared by file identity.
pub fn find_real(
    name: &str,
    path_var: Option<&OsStr>,
    this: &ThisBinary,
) -> Result<Found, NotFound> {
    let mut not_found = NotFound::default();
    let Some(path_var) = path_var else {
        return Err(not_found);
    };
    for dir in std::env::split_paths(path_var) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        let is_this = |meta: &Metadata| {
            let this = this.identity();
            this.is_some() && Some(FileId::of(meta)) == this
        };
        if this.was_started_as(&candidate) {
            if !not_found.only_self_in.contains(&dir) {
                not_found.only_self_in.push(dir.clone());
            }
        } else if let Some((meta, symlink)) = executable_entry(&candidate) {
            if is_this(&meta) {
                if !not_found.only_self_in.contains(&dir) {
                    not_found.only_self_in.push(dir.clone());
                }
            } else {
                return Ok(Found {
                    path: candidate,
                    meta,
                    symlink,
                });
            }
        }
        if !not_found.searched.contains(&dir) {
            not_found.searched.push(dir);
        }
    }
    Err(not_found)
}

/// The metadata of `path` if it is an executable regular file (symlinks followed).
pub fn executable(path: &Path) -> Option<Metadata> {
    executable_entry(path).map(|(meta, _)| meta)
}

/// [`executable`], and whether `path` itself is a symbolic link. `lstat` first: a real tool is
/// nearly always a plain file, and its `lstat` is then all there is to know (the rustup-proxy
/// check needs no second look); a link is followed with `stat`.
pub fn executable_entry(path: &Path) -> Option<(Metadata, bool)> {
    let entry = std::fs::symlink_metadata(path).ok()?;
    let symlink = entry.file_type().is_symlink();
    let meta = if symlink {
        std::fs::metadata(path).ok()?
    } else {
        entry
    };
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some((meta, symlink))
}

/// The `tally` CLI, for what the hot path asks of it (`tally upload --background`): this binary
/// when it is `tally`, else the `tally` installed beside it. `None` if there is none.
pub fn cli_exe() -> Option<PathBuf> {
    let exe = wrapper_exe()?;
    if file_stem(&exe) == Some(CLI_BINARY) {
        return Some(exe);
    }
    let cli = exe.with_file_name(CLI_BINARY);
    executable(&cli).map(|_| cli)
}

/// The hot-path binary installed beside `cli` (a path to `tally`), if it is there and
/// executable.
pub fn hot_binary_beside(cli: &Path) -> Option<PathBuf> {
    let hot = cli.with_file_name(HOT_BINARY);
    executable(&hot).map(|_| hot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn make_exe(path: &Path) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn skips_itself_by_identity_not_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let (shims, other, real) = (
            tmp.path().join("shims"),
            tmp.path().join("other"),
            tmp.path().join("real"),
        );
        for d in [&shims, &other, &real] {
            std::fs::create_dir(d).unwrap();
        }
        make_exe(&tmp.path().join("tally"));
        symlink(tmp.path().join("tally"), shims.join("cargo")).unwrap();
        // The same shim reached through a second directory (a symlinked dir) is still itself.
        symlink(&shims, &other).ok();
        std::fs::remove_dir(&other).ok();
        symlink(&shims, &other).unwrap();
        make_exe(&real.join("cargo"));
        let me = FileId::of_target(&tmp.path().join("tally"));
        let path = std::env::join_paths([&shims, &other, &real]).unwrap();
        let found = find_real("cargo", Some(&path), &ThisBinary::with_identity(me)).unwrap();
        assert_eq!(found.path, real.join("cargo"));

        let path = std::env::join_paths([&shims, &other]).unwrap();
        let err = find_real("cargo", Some(&path), &ThisBinary::with_identity(me)).unwrap_err();
        assert_eq!(err.only_self_in, [shims.clone(), other.clone()]);
        let msg = err.message("cargo");
        assert!(
            msg.contains("`cargo`") && msg.contains(&shims.display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn the_path_this_process_was_started_by_is_itself_and_other_spellings_are_compared() {
        let tmp = tempfile::tempdir().unwrap();
        let (shims, real) = (tmp.path().join("shims"), tmp.path().join("real"));
        std::fs::create_dir(&shims).unwrap();
        std::fs::create_dir(&real).unwrap();
        make_exe(&tmp.path().join("tally"));
        symlink(tmp.path().join("tally"), shims.join("rustc")).unwrap();
        make_exe(&real.join("rustc"));
        let me = FileId::of_target(&tmp.path().join("tally"));
        let started: &'static Path = Box::leak(shims.join("rustc").into_boxed_path());
        let this = ThisBinary::started_by(started, me);
        let path = std::env::join_paths([&shims, &real]).unwrap();
        assert_eq!(
            find_real("rustc", Some(&path), &this).unwrap().path,
            real.join("rustc")
        );
        // Spelled differently (`shims/.`), the shim is still recognised, by its identity.
        let path = std::env::join_paths([shims.join("."), real.clone()]).unwrap();
        let found = find_real("rustc", Some(&path), &this).unwrap();
        assert_eq!(found.path, real.join("rustc"));
        assert!(!found.symlink);
        // Only the shim: not found, and the message names where it was.
        let err = find_real("rustc", Some(shims.as_os_str()), &this).unwrap_err();
        assert_eq!(err.only_self_in, [shims]);
        // A real tool reached through a symbolic link is followed, and said to be one.
        let linked = tmp.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        symlink(real.join("rustc"), linked.join("rustc")).unwrap();
        let found = find_real("rustc", Some(linked.as_os_str()), &this).unwrap();
        assert!(found.symlink && found.meta.is_file());
    }

    #[test]
    fn ignores_non_executables_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("go"), "").unwrap();
        std::fs::create_dir(tmp.path().join("gofmt")).unwrap();
        let path = tmp.path().as_os_str();
        assert!(find_real("go", Some(path), &ThisBinary::with_identity(None)).is_err());
        assert!(find_real("gofmt", Some(path), &ThisBinary::with_identity(None)).is_err());
    }
}
