//! Finding the real tool: the first executable of the tool's name on `PATH` that is not this
//! binary (compared by file identity), exactly as a shell would have found it had tally's shims
//! not been there.

use crate::identity::FileIdentity;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The real tool and what `stat` said about it (reused for the version cache key).
#[derive(Debug)]
pub struct Found {
    pub path: PathBuf,
    pub meta: Metadata,
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
pub fn find_real(
    name: &str,
    path_var: Option<&OsStr>,
    this: Option<FileIdentity>,
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
        if let Some(meta) = executable(&candidate) {
            if Some(FileIdentity::of(&meta)) == this {
                if !not_found.only_self_in.contains(&dir) {
                    not_found.only_self_in.push(dir.clone());
                }
            } else {
                return Ok(Found {
                    path: candidate,
                    meta,
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
    let meta = std::fs::metadata(path).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(meta)
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
        let me = FileIdentity::of_path(&tmp.path().join("tally"));
        let path = std::env::join_paths([&shims, &other, &real]).unwrap();
        let found = find_real("cargo", Some(&path), me).unwrap();
        assert_eq!(found.path, real.join("cargo"));

        let path = std::env::join_paths([&shims, &other]).unwrap();
        let err = find_real("cargo", Some(&path), me).unwrap_err();
        assert_eq!(err.only_self_in, [shims.clone(), other.clone()]);
        let msg = err.message("cargo");
        assert!(
            msg.contains("`cargo`") && msg.contains(&shims.display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn ignores_non_executables_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("go"), "").unwrap();
        std::fs::create_dir(tmp.path().join("gofmt")).unwrap();
        let path = tmp.path().as_os_str();
        assert!(find_real("go", Some(path), None).is_err());
        assert!(find_real("gofmt", Some(path), None).is_err());
    }
}
