//! Where an aggregator keeps everything: objects under keys, on the local disk.
//!
//! The interface is the one an object store offers (`object_store`'s: create-if-absent, put,
//! get, list one level, delete), so that the same aggregator code can later run on S3 with
//! several replicas, as `tally-server` does. Every object is written whole and never modified:
//! state that changes is a new object (a job's record, a collection's result), so a reader sees
//! an object entirely or not at all.
//!
//! Promises of the local store:
//!
//! - **Nothing under the root is followed or waited on.** Files are opened through
//!   `tally_sys::safe_open` (`O_NOFOLLOW | O_NONBLOCK`, regular files only); every directory
//!   below the root is checked with `lstat` before use, and a link or special file where an
//!   object or directory should be is an error that names it, never followed. The root itself is
//!   the operator's choice and is followed.
//! - **Writes are atomic and durable.** An object is written to a temporary file, synced, then
//!   linked (create-if-absent) or renamed (put) into place, and its directory synced, before the
//!   call returns (unless [`Durability::ProcessCrash`] was chosen: then it survives the process
//!   being killed, not the machine losing power).
//! - **Private.** Files are created mode 0600, directories 0700: keys and tasks hold secrets.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};

/// Result of a create-if-absent write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object was written now.
    New,
    /// An object with that key already existed; nothing was written.
    AlreadyThere,
}

/// How durable a write is when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Synced to stable storage: survives power loss. The default.
    #[default]
    Disk,
    /// In the kernel's page cache: survives the process being killed.
    ProcessCrash,
}

/// An aggregator's store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Local>,
}

struct Local {
    root: PathBuf,
    durability: Durability,
    /// Directories known to exist as real directories (checked once).
    dirs: Mutex<HashSet<PathBuf>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner.root.display())
    }
}

/// The directory for temporary files, below the root.
const TMP: &str = ".tmp";

impl Store {
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path, durability: Durability) -> anyhow::Result<Store> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the store directory {}", dir.display()))?;
        let root = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve the store directory {}", dir.display()))?;
        let store = Store {
            inner: Arc::new(Local {
                root,
                durability,
                dirs: Mutex::new(HashSet::new()),
            }),
        };
        // Temporary files of a write that was interrupted are garbage.
        let tmp = store.inner.dir(TMP)?;
        for entry in
            std::fs::read_dir(&tmp).with_context(|| format!("listing {}", tmp.display()))?
        {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Writes `bytes` at `key` unless an object is there already.
    pub async fn create(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<Created> {
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        blocking(move || inner.write(&key, &bytes, true)).await
    }

    /// Writes (or replaces) `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        blocking(move || inner.write(&key, &bytes, false).map(drop)).await
    }

    /// Reads `key`; `None` if there is no such object.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        blocking(move || inner.read(&key)).await
    }

    /// The names of the objects directly under `prefix` (a directory-like key), sorted. A
    /// prefix with nothing under it lists nothing.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.to_owned();
        blocking(move || inner.list(&prefix)).await
    }

    /// The "directories" directly under `prefix` (object stores call them common prefixes),
    /// sorted.
    pub async fn list_dirs(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.to_owned();
        blocking(move || inner.list_dirs(&prefix)).await
    }

    /// Deletes `key`; a key that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        blocking(move || inner.delete(&key)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a store task failed")?
}

/// Checks a key: `/`-separated segments of ASCII letters, digits, `-`, `_`, `.` and `=`, none
/// empty or starting with a dot.
fn check_key(key: &str) -> anyhow::Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
        });
    if !ok {
        bail!("{key:?} is not a valid store key");
    }
    Ok(())
}

impl Local {
    /// The directory `rel` below the root, created (0700) if missing; every component must be a
    /// real directory, never a link.
    fn dir(&self, rel: &str) -> anyhow::Result<PathBuf> {
        let path = self.root.join(rel);
        if self.dirs.lock().expect("dirs lock").contains(&path) {
            return Ok(path);
        }
        let mut current = self.root.clone();
        for component in rel.split('/').filter(|c| !c.is_empty()) {
            current.push(component);
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) => {
                    let what = tally_sys::safe_open::kind_of(meta.file_type())
                        .map_or("not a directory", |n| n.what);
                    bail!(
                        "{} is {what}, where the store keeps a directory: remove it (the store never follows links)",
                        current.display()
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match std::fs::DirBuilder::new().mode(0o700).create(&current) {
                        Ok(()) => {}
                        // Another writer made it first; the loop's next lstat checks it.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("creating {}", current.display()));
                        }
                    }
                    let meta = std::fs::symlink_metadata(&current)?;
                    if !meta.is_dir() {
                        bail!("{} is not a directory: remove it", current.display());
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("checking {}", current.display())),
            }
        }
        self.dirs.lock().expect("dirs lock").insert(path.clone());
        Ok(path)
    }

    fn split(key: &str) -> (&str, &str) {
        key.rsplit_once('/').unwrap_or(("", key))
    }

    fn write(&self, key: &str, bytes: &[u8], create_only: bool) -> anyhow::Result<Created> {
        check_key(key)?;
        let (parent, name) = Local::split(key);
        let dir = self.dir(parent)?;
        let tmp_dir = self.dir(TMP)?;
        let tmp = tmp_dir.join(format!("{:032x}", rand::random::<u128>()));
        let result = (|| {
            let mut file = tally_sys::safe_open::open(
                &tmp,
                OpenOptions::new().write(true).create_new(true).mode(0o600),
            )
            .with_context(|| format!("creating {}", tmp.display()))?;
            file.write_all(bytes)
                .with_context(|| format!("writing {}", tmp.display()))?;
            if self.durability == Durability::Disk {
                file.sync_all()
                    .with_context(|| format!("syncing {}", tmp.display()))?;
            }
            let target = dir.join(name);
            let created = if create_only {
                // link(2) never replaces, and never follows a link at the target.
                match std::fs::hard_link(&tmp, &target) {
                    Ok(()) => Created::New,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Created::AlreadyThere,
                    Err(e) => {
                        return Err(e).with_context(|| format!("creating {}", target.display()));
                    }
                }
            } else {
                // rename(2) replaces a link at the target with the file, never writes through it.
                std::fs::rename(&tmp, &target)
                    .with_context(|| format!("writing {}", target.display()))?;
                Created::New
            };
            if self.durability == Durability::Disk && created == Created::New {
                sync_dir(&dir)?;
            }
            Ok(created)
        })();
        let _ = std::fs::remove_file(&tmp);
        result
    }

    fn read(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        check_key(key)?;
        let (parent, name) = Local::split(key);
        let path = self.root.join(parent).join(name);
        // A missing parent directory means a missing object; a parent that is a link is refused.
        if !parent.is_empty() {
            match std::fs::symlink_metadata(self.root.join(parent)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                _ => {
                    self.dir(parent)?;
                }
            }
        }
        let mut file = match tally_sys::safe_open::open_read(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Some(bytes))
    }

    fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let prefix = prefix.trim_end_matches('/');
        check_key(prefix)?;
        match std::fs::symlink_metadata(self.root.join(prefix)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            _ => {}
        }
        let dir = self.dir(prefix)?;
        let mut names = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry?;
            // `file_type` does not follow links: a link is not an object.
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
                && check_key(name).is_ok()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn list_dirs(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let prefix = prefix.trim_end_matches('/');
        check_key(prefix)?;
        match std::fs::symlink_metadata(self.root.join(prefix)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            _ => {}
        }
        let dir = self.dir(prefix)?;
        let mut names = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry?;
            if entry.file_type()?.is_dir()
                && let Some(name) = entry.file_name().to_str()
                && check_key(name).is_ok()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        check_key(key)?;
        let path = self.root.join(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {}", path.display())),
        }
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .with_context(|| format!("opening {}", dir.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Disk).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn objects_are_created_once_put_again_listed_and_deleted() {
        let (_dir, store) = store();
        assert_eq!(store.get("a/b/c").await.unwrap(), None);
        assert_eq!(store.list("a/b").await.unwrap(), Vec::<String>::new());
        assert_eq!(
            store.create("a/b/c", b"one".to_vec()).await.unwrap(),
            Created::New
        );
        assert_eq!(
            store.create("a/b/c", b"two".to_vec()).await.unwrap(),
            Created::AlreadyThere
        );
        assert_eq!(store.get("a/b/c").await.unwrap().unwrap(), b"one");
        store.put("a/b/c", b"three".to_vec()).await.unwrap();
        store.put("a/b/d", b"four".to_vec()).await.unwrap();
        assert_eq!(store.get("a/b/c").await.unwrap().unwrap(), b"three");
        assert_eq!(store.list("a/b").await.unwrap(), ["c", "d"]);
        store.delete("a/b/c").await.unwrap();
        store.delete("a/b/c").await.unwrap();
        assert_eq!(store.list("a/b/").await.unwrap(), ["d"]);
        let meta = std::fs::metadata(store.root().join("a/b/d")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let meta = std::fs::metadata(store.root().join("a/b")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        for bad in ["", "/a", "a//b", "../x", "a/.tmp/x", "a b"] {
            assert!(store.put(bad, vec![]).await.is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn links_and_fifos_are_refused_at_once_and_never_followed() {
        let (dir, store) = store();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "outside").unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("t/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked-dir")).unwrap();
        let fifo = dir.path().join("t/fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let started = Instant::now();
        let e = store.get("t/link").await.unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        let e = store.get("t/fifo").await.unwrap_err();
        assert!(format!("{e:#}").contains("FIFO"), "{e:#}");
        let e = store.get("linked-dir/secret").await.unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        let e = store
            .put("linked-dir/new", b"x".to_vec())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        // A link where an object would be created is left alone: the object is "there" (and
        // reading it is refused), never written through.
        assert_eq!(
            store.create("t/link", b"x".to_vec()).await.unwrap(),
            Created::AlreadyThere
        );
        // put replaces the link itself.
        store.put("t/link", b"mine".to_vec()).await.unwrap();
        assert_eq!(store.get("t/link").await.unwrap().unwrap(), b"mine");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "outside");
        assert!(!outside.path().join("new").exists());
        assert_eq!(store.list("t").await.unwrap(), ["link"]);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
