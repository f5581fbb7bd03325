//! The local store read as the client reads its data directory: through directories only,
//! never through a link, opening only regular files and never waiting on one. `object_store`'s
//! `LocalFileSystem` promises none of it (it follows links, and opening a FIFO there waits for a
//! writer that never comes), so reads and listings of a local store are done here; writes stay
//! with `object_store`, after [`not_through_directories`].
//!
//! Every function makes blocking calls: run them on the blocking pool.

use std::fs::FileType;
use std::io::{self, Read as _};
use std::path::Path as FsPath;

use anyhow::Context;
use object_store::path::{Path, PathPart};
use tally_sys::safe_open;

use super::{Read, note_skipped};

/// What a directory entry that is not a directory is, in words.
fn kind(file_type: FileType) -> &'static str {
    if file_type.is_file() {
        "a plain file"
    } else {
        safe_open::kind_of(file_type).map_or("not a directory", |found| found.what)
    }
}

fn not_a_directory(entry: &str, what: &str) -> String {
    format!(
        "{entry} is {what}, not a directory: tally-server goes only through directories in its \
         store and follows no links (remove it)"
    )
}

fn not_regular(entry: &str, what: &str) -> String {
    format!(
        "{entry} is {what}, not a regular file: tally-server reads only regular files in its \
         store and follows no links (remove it)"
    )
}

/// Why an object of `size` bytes at `key` is not read.
pub(super) fn too_big(key: &Path, size: u64, max_bytes: usize) -> String {
    format!(
        "{key} is {size} bytes, more than the {max_bytes} bytes such an object can have (remove it)"
    )
}

/// The first of the entries `parts` names, from the root down, that is there and is not a
/// directory (a link to one included), said in words; `None` when each is a directory, or
/// missing from some point on.
fn first_not_a_directory<'a>(
    root: &FsPath,
    parts: impl Iterator<Item = PathPart<'a>>,
) -> anyhow::Result<Option<String>> {
    let mut path = root.to_path_buf();
    let mut entry = String::new();
    for part in parts {
        path.push(part.as_ref());
        if !entry.is_empty() {
            entry.push('/');
        }
        entry.push_str(part.as_ref());
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => return Ok(Some(not_a_directory(&entry, kind(meta.file_type())))),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("looking at {}", path.display()));
            }
        }
    }
    Ok(None)
}

/// Why `key` cannot be reached through directories only (a directory on its way is a link, a
/// FIFO, a plain file…); `None` if it can, or the way is missing from some point on (a write
/// makes the missing directories).
pub(crate) fn not_through_directories(root: &FsPath, key: &Path) -> anyhow::Result<Option<String>> {
    let parts: Vec<PathPart<'_>> = key.parts().collect();
    let above = parts.len().saturating_sub(1);
    first_not_a_directory(root, parts.into_iter().take(above))
}

/// Why the entry at `key` is not an object (a link, a special file, a directory, or not
/// reachable through directories); `None` for a regular file, or nothing.
pub(super) fn not_a_regular_file(root: &FsPath, key: &Path) -> anyhow::Result<Option<String>> {
    if let Some(why) = not_through_directories(root, key)? {
        return Ok(Some(why));
    }
    let path = root.join(key.as_ref());
    match std::fs::symlink_metadata(&path) {
        Ok(meta) => {
            Ok(safe_open::kind_of(meta.file_type())
                .map(|found| not_regular(key.as_ref(), found.what)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("looking at {}", path.display())),
    }
}

/// Reads `key`: a regular file of at most `max_bytes`, reached through directories only, and
/// opened `O_NOFOLLOW|O_NONBLOCK` after an `lstat` (so a FIFO or device is never opened, and one
/// swapped in after the `lstat` is refused by the open or its `fstat`).
pub(super) fn read(root: &FsPath, key: &Path, max_bytes: usize) -> anyhow::Result<Read> {
    if let Some(why) = not_a_regular_file(root, key)? {
        return Ok(Read::Skipped(why));
    }
    let path = root.join(key.as_ref());
    let file = match safe_open::open_read(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Read::Missing),
        Err(e) => {
            return match safe_open::not_regular(&e) {
                Some(found) => Ok(Read::Skipped(not_regular(key.as_ref(), found.what))),
                None => Err(e).with_context(|| format!("reading {}", path.display())),
            };
        }
    };
    let size = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if size > max_bytes as u64 {
        return Ok(Read::Skipped(too_big(key, size, max_bytes)));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > max_bytes {
        return Ok(Read::Skipped(too_big(key, bytes.len() as u64, max_bytes)));
    }
    Ok(Read::Found(bytes.into()))
}

/// Whether `name` is one of `object_store`'s staging files (`<name>#<digits>`), which a write
/// killed half-way leaves behind and which are not objects.
fn is_staging_file(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

/// The regular files (objects) and directories directly in `prefix`, each sorted. A prefix
/// that is missing, or not reached through directories only, lists as empty (the latter named
/// in the log); an entry that is neither a regular file nor a directory is named in the log and
/// left out.
pub(super) fn list(root: &FsPath, prefix: &Path) -> anyhow::Result<(Vec<Path>, Vec<Path>)> {
    let (mut objects, mut directories) = (Vec::new(), Vec::new());
    if let Some(why) = first_not_a_directory(root, prefix.parts())? {
        note_skipped(prefix.as_ref(), &why);
        return Ok((objects, directories));
    }
    let dir = root.join(prefix.as_ref());
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
        {
            return Ok((objects, directories));
        }
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            let shown = format!("{prefix}/{}", name.to_string_lossy());
            note_skipped(
                &shown,
                &format!("{shown:?} is not a name tally-server writes (not UTF-8); remove it"),
            );
            continue;
        };
        if is_staging_file(name) {
            continue;
        }
        let key = if prefix.as_ref().is_empty() {
            Path::parse(name)
        } else {
            Path::parse(format!("{prefix}/{name}"))
        };
        let Ok(key) = key else {
            let shown = format!("{prefix}/{name}");
            note_skipped(
                &shown,
                &format!("{shown:?} is not a name tally-server writes; remove it"),
            );
            continue;
        };
        let file_type = entry
            .file_type()
            .with_context(|| format!("listing {}", dir.display()))?;
        if file_type.is_dir() {
            directories.push(key);
        } else if file_type.is_file() {
            objects.push(key);
        } else {
            let what = safe_open::kind_of(file_type).map_or("not a regular file", |f| f.what);
            note_skipped(
                key.as_ref(),
                &format!(
                    "{key} is {what}: tally-server reads only regular files and directories in \
                     its store and follows no links (remove it)"
                ),
            );
        }
    }
    objects.sort();
    directories.sort();
    Ok((objects, directories))
}
