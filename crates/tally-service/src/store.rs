//! One `object_store` for every role of `tally-server`: the collector, and the DAP leader and
//! helper. On the local disk or S3; keys are the role's business (the collector's are in
//! `tally_server::store`, the aggregators' in `tally_dap_aggregator::store`).
//!
//! Promises: nothing in the store is followed or waited on. On the local disk every read opens
//! a regular file only, `O_NOFOLLOW|O_NONBLOCK` (`tally_sys::safe_open`, as the client opens its
//! data directory), after checking with `lstat` that each directory on the way is a directory
//! and not a link; listings name only regular files and directories; writes and deletions go
//! through no link either, and a create-if-absent write finding something else than a regular
//! file at its key fails naming it. On any store an object is read only if it is no bigger than
//! the caller says its kind can be (`max_bytes` of [`Store::read`]). Whatever is skipped is
//! named in the log (once an hour per key) and treated as absent by [`Store::get`], so a FIFO,
//! socket, device, link or oversized object planted in the store costs the server nothing but
//! that entry. The check and the use are separate calls: someone who can swap directories in
//! the store while it runs can still race them, as they can write any object there.
//!
//! Writes: [`Store::create`] is create-if-absent (so an object derived from its content is
//! stored once however often it is written), [`Store::put`] replaces. On the local disk a write
//! that returned is on stable storage (a group `syncfs` after the rename, shared by concurrent
//! writers) unless [`Durability::ProcessCrash`] was chosen. Nothing here records who sent what,
//! nor when: on the local disk an object written with a day has that day's midnight (UTC) as its
//! access and modification times, and so have the directories it is in. What the backend keeps
//! anyway is out of reach: a local file's change time (`ctime`, set by the kernel on every
//! write; no call sets it) and an S3 object's `Last-Modified` (set by the S3 server; no API
//! changes it). They are the operator's to protect: nobody else should be able to list the
//! store. A store opened with [`Store::open_private`] (the aggregators': HPKE keys and task
//! secrets) has its directory made `0700`, so that nobody else can read anything in it.
//!
//! One process serving a store, replicas standing by, where a role needs it: [`crate::lease`].

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use tally_protocol::Day;

pub(crate) mod local;

/// What reading one key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The object's bytes.
    Found(Bytes),
    /// Nothing at the key.
    Missing,
    /// Something that is not read: a link, a FIFO or other special file, a path through
    /// something that is not a directory, an object bigger than its kind can be. The text says
    /// which and why, naming the key or the directory at fault.
    Skipped(String),
}

/// Result of a create-if-absent write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object was written now.
    New,
    /// An object with that key already existed; nothing was written.
    AlreadyThere,
}

/// How durable a local write is when it returns (`--durability` of every role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// On stable storage: survives power loss (group `syncfs` before answering). The default.
    #[default]
    Disk,
    /// In the kernel's page cache: survives the server being killed, not the machine losing
    /// power. Faster on a busy disk.
    ProcessCrash,
}

/// An object store: a local directory or an S3 bucket (and prefix).
#[derive(Clone)]
pub struct Store {
    pub(crate) objects: Arc<dyn ObjectStore>,
    /// For a local store: the group-commit `syncfs` that makes writes durable.
    sync: Option<Arc<GroupSync>>,
    /// For a local store: its directory, where objects' times are set.
    pub(crate) local_root: Option<PathBuf>,
    description: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl Store {
    /// Opens `spec`: `s3://bucket[/prefix]` (credentials, region and endpoint from the usual
    /// `AWS_*` variables; plain http allowed for a local S3-compatible server) or a directory,
    /// created if missing.
    pub fn open(spec: &str) -> anyhow::Result<Store> {
        Store::open_with(spec, Durability::Disk)
    }

    /// [`Store::open`] with a chosen durability for the local store (S3 ignores it: a PUT that
    /// returned is the store's own promise).
    pub fn open_with(spec: &str, durability: Durability) -> anyhow::Result<Store> {
        if spec.starts_with("s3://") {
            let mut builder = AmazonS3Builder::from_env();
            // `from_env` reads AWS_ENDPOINT; the AWS SDKs' name is AWS_ENDPOINT_URL.
            if let Some(endpoint) =
                tally_env::var_os(tally_env::AWS_ENDPOINT_URL).and_then(|v| v.into_string().ok())
            {
                builder = builder.with_endpoint(endpoint);
            }
            if tally_env::var_os(tally_env::AWS_REGION).is_none()
                && tally_env::var_os(tally_env::AWS_DEFAULT_REGION).is_none()
            {
                builder = builder.with_region("us-east-1");
            }
            return Store::on_s3(spec, builder);
        }
        let dir = PathBuf::from(spec);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the store directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve the store directory {}", dir.display()))?;
        // Deleting a week's last report (retention) removes its emptied directories too.
        let local = LocalFileSystem::new_with_prefix(&dir)
            .with_context(|| format!("cannot use {} as a store", dir.display()))?
            .with_automatic_cleanup(true);
        let sync = match durability {
            Durability::Disk => Some(Arc::new(GroupSync::open(&dir)?)),
            Durability::ProcessCrash => None,
        };
        Ok(Store {
            objects: Arc::new(local),
            sync,
            description: dir.display().to_string(),
            local_root: Some(dir),
        })
    }

    /// The store `s3://bucket[/prefix]` with the S3 settings of `builder` (credentials, region,
    /// endpoint); [`Store::open`] takes them from the environment.
    pub fn on_s3(spec: &str, builder: AmazonS3Builder) -> anyhow::Result<Store> {
        let rest = spec
            .strip_prefix("s3://")
            .with_context(|| format!("{spec:?} is not an s3://bucket/prefix store"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("--store {spec:?} names no bucket; use s3://bucket/prefix");
        }
        let s3 = builder
            .with_bucket_name(bucket)
            .with_allow_http(true)
            .build()
            .with_context(|| {
                format!("cannot open {spec}: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, for a non-AWS server, AWS_ENDPOINT_URL")
            })?;
        let prefix = prefix.trim_matches('/');
        let objects: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(Store {
            objects,
            sync: None,
            local_root: None,
            description: format!("s3://{rest}"),
        })
    }

    /// [`Store::open_with`] for a store that holds secrets: a local directory is made (or
    /// changed to) mode `0700`, so that only its owner can reach anything in it. A directory
    /// owned by another user is refused. On S3, access is the bucket policy's business.
    pub fn open_private(spec: &str, durability: Durability) -> anyhow::Result<Store> {
        if !spec.starts_with("s3://") {
            use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
            let dir = FsPath::new(spec);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create the store directory {}", dir.display()))?;
            let meta = std::fs::metadata(dir)
                .with_context(|| format!("cannot read the store directory {}", dir.display()))?;
            if meta.uid() != nix::unistd::geteuid().as_raw() {
                bail!(
                    "the store directory {} belongs to another user (uid {}); a store holding keys must be this user's own",
                    dir.display(),
                    meta.uid()
                );
            }
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| {
                        format!(
                            "cannot make the store directory {} private (0700)",
                            dir.display()
                        )
                    })?;
            }
        }
        Store::open_with(spec, durability)
    }

    /// The store's local directory, if it is on the local disk.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// Writes `bytes` at `key` unless something is there already; durable when it returns.
    /// The object is dated `dated` if given (see `Store::date`), also when it was there
    /// already.
    pub async fn create(
        &self,
        key: &Path,
        bytes: Bytes,
        dated: impl Into<Option<Day>>,
    ) -> anyhow::Result<Created> {
        let dated = dated.into();
        self.check_writable(key)?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let created = match self
            .objects
            .put_opts(key, PutPayload::from(bytes.clone()), options)
            .await
        {
            Ok(_) => Created::New,
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Only a regular file is an object; anything else at the key is not ours to
                // write through, read or count as the object.
                if let Some(root) = &self.local_root
                    && let Some(why) = local::not_a_regular_file(root, key)?
                {
                    bail!("cannot write {key}: {why}");
                }
                Created::AlreadyThere
            }
            // A store without conditional writes: check, then write. Racing writers of one key
            // write identical bytes (the key is derived from the content), so this stays
            // idempotent.
            Err(object_store::Error::NotImplemented | object_store::Error::NotSupported { .. }) => {
                if self.exists(key).await? {
                    Created::AlreadyThere
                } else {
                    self.objects
                        .put(key, PutPayload::from(bytes))
                        .await
                        .with_context(|| format!("writing {key}"))?;
                    Created::New
                }
            }
            Err(e) => return Err(e).with_context(|| format!("writing {key}")),
        };
        // Also for AlreadyThere: an earlier writer may have stopped between writing and dating.
        if let Some(day) = dated {
            self.date(key, day)?;
        }
        // Also for AlreadyThere: a concurrent writer's bytes may still be only in the page cache.
        self.make_durable().await?;
        Ok(created)
    }

    /// Writes (or replaces) `key`, dated `dated` if given (see `Store::date`); durable when
    /// it returns.
    pub async fn put(&self, key: &Path, bytes: Bytes, dated: Option<Day>) -> anyhow::Result<()> {
        self.check_writable(key)?;
        self.objects
            .put(key, PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing {key}"))?;
        if let Some(day) = dated {
            self.date(key, day)?;
        }
        self.make_durable().await
    }

    /// On a local store, sets the access and modification times of `key` and of the
    /// directories it is in (below the store's own) to midnight UTC of `day`, so that the file
    /// system holds no upload time finer than that day. S3 has no such call: there it does
    /// nothing.
    fn date(&self, key: &Path, day: Day) -> anyhow::Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let path = root.join(key.as_ref());
        let secs = day.to_unix_days().max(0);
        let midnight = nix::sys::time::TimeSpec::new(secs.saturating_mul(86_400), 0);
        // Directories after the file: creating it changed its directory's times (and creating
        // a week's directory those of `reports/`). Set on the entries themselves, never through
        // a link, and without opening anything (a FIFO there would block an open).
        for target in path.ancestors().take_while(|dir| *dir != root.as_path()) {
            nix::sys::stat::utimensat(
                None,
                target,
                &midnight,
                &midnight,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .with_context(|| format!("setting the times of {}", target.display()))?;
        }
        Ok(())
    }

    /// Reads `key` if it is an object of at most `max_bytes` (see [`Read`]). On the local disk:
    /// a regular file reached through directories only, opened without following a link or
    /// waiting; on S3: an object whose size is read before its body.
    pub async fn read(&self, key: &Path, max_bytes: usize) -> anyhow::Result<Read> {
        if let Some(root) = &self.local_root {
            let (root, key) = (root.clone(), key.clone());
            return tokio::task::spawn_blocking(move || local::read(&root, &key, max_bytes))
                .await
                .context("a task reading the store failed")?;
        }
        match self.objects.get(key).await {
            Ok(result) if result.meta.size > max_bytes as u64 => Ok(Read::Skipped(local::too_big(
                key,
                result.meta.size,
                max_bytes,
            ))),
            Ok(result) => Ok(Read::Found(
                result
                    .bytes()
                    .await
                    .with_context(|| format!("reading {key}"))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(Read::Missing),
            Err(e) => Err(e).with_context(|| format!("reading {key}")),
        }
    }

    /// [`Store::read`], with anything skipped named in the log and treated as absent.
    pub async fn get(&self, key: &Path, max_bytes: usize) -> anyhow::Result<Option<Bytes>> {
        match self.read(key, max_bytes).await? {
            Read::Found(bytes) => Ok(Some(bytes)),
            Read::Missing => Ok(None),
            Read::Skipped(why) => {
                note_skipped(key.as_ref(), &why);
                Ok(None)
            }
        }
    }

    /// Whether `key` exists (one `HEAD`; on the local disk one `lstat`, on this thread: it is
    /// on every upload's path, and a hop to the blocking pool costs more than the call).
    pub async fn exists(&self, key: &Path) -> anyhow::Result<bool> {
        if let Some(root) = &self.local_root {
            let path = root.join(key.as_ref());
            return match std::fs::symlink_metadata(&path) {
                Ok(meta) => Ok(meta.is_file()),
                // Missing, or a directory on the way is not one (a planted file or FIFO, which
                // reads and listings skip too).
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
                {
                    Ok(false)
                }
                Err(e) => Err(e).with_context(|| format!("looking for {}", path.display())),
            };
        }
        match self.objects.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("looking for {key}")),
        }
    }

    /// Deletes `key`; a key that is already gone is not an error.
    pub async fn delete(&self, key: &Path) -> anyhow::Result<()> {
        self.check_writable(key)?;
        match self.objects.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {key}")),
        }
    }

    /// The objects and sub-"directories" directly under `prefix` (one level, every page). On
    /// the local disk only regular files and directories, reached through directories only;
    /// anything else is named in the log and left out, and a `prefix` that is not a directory
    /// lists as empty.
    pub async fn list_dir(&self, prefix: &str) -> anyhow::Result<(Vec<Path>, Vec<Path>)> {
        let prefix = Path::from(prefix);
        if let Some(root) = &self.local_root {
            let (root, prefix) = (root.clone(), prefix.clone());
            return tokio::task::spawn_blocking(move || local::list(&root, &prefix))
                .await
                .context("a task listing the store failed")?;
        }
        let listing = self
            .objects
            .list_with_delimiter(Some(&prefix))
            .await
            .with_context(|| format!("listing {prefix}"))?;
        let objects = listing
            .objects
            .into_iter()
            .map(|meta| meta.location)
            .collect();
        Ok((objects, listing.common_prefixes))
    }

    /// On the local disk: refuses a write or deletion at `key` through anything but
    /// directories (a link, a FIFO, a plain file where a directory belongs). Missing directories
    /// are fine: the write makes them.
    fn check_writable(&self, key: &Path) -> anyhow::Result<()> {
        if let Some(root) = &self.local_root
            && let Some(why) = local::not_through_directories(root, key)?
        {
            bail!("cannot write {key}: {why}");
        }
        Ok(())
    }

    async fn make_durable(&self) -> anyhow::Result<()> {
        match &self.sync {
            Some(sync) => sync.sync().await,
            None => Ok(()),
        }
    }
}

/// Says in the log that `key` was skipped and why (`why` names the entry at fault): once an hour per key, so that a planted
/// entry is named without flooding the log on every re-read of the store.
pub fn note_skipped(key: &str, why: &str) {
    const AGAIN_AFTER: Duration = Duration::from_secs(3600);
    static NOTED: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);
    let mut noted = NOTED.lock().unwrap_or_else(|e| e.into_inner());
    let noted = noted.get_or_insert_with(HashMap::new);
    if noted
        .get(key)
        .is_some_and(|when| when.elapsed() < AGAIN_AFTER)
    {
        return;
    }
    if noted.len() >= 10_000 {
        noted.retain(|_, when| when.elapsed() < AGAIN_AFTER);
    }
    noted.insert(key.to_owned(), Instant::now());
    eprintln!("tally-server: skipped in the store: {why}");
}

/// Group commit for the local store: every caller's write is on disk when `sync` returns, and
/// one `syncfs` serves every write that finished before it started.
struct GroupSync {
    dir: std::fs::File,
    tickets: AtomicU64,
    synced_through: tokio::sync::Mutex<u64>,
}

impl GroupSync {
    fn open(dir: &FsPath) -> anyhow::Result<GroupSync> {
        let dir =
            std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
        Ok(GroupSync {
            dir,
            tickets: AtomicU64::new(0),
            synced_through: tokio::sync::Mutex::new(0),
        })
    }

    async fn sync(self: &Arc<Self>) -> anyhow::Result<()> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced_through.lock().await;
        if *synced >= ticket {
            return Ok(());
        }
        // Every ticket issued so far belongs to a write that had finished before taking it.
        let covered = self.tickets.load(Ordering::SeqCst);
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            use std::os::fd::AsRawFd;
            nix::unistd::syncfs(this.dir.as_raw_fd())
        })
        .await
        .context("the sync task failed")?
        .context("syncfs on the store failed")?;
        *synced = covered;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(non_snake_case)]
    fn WEEK_DAY() -> Day {
        "2026-11-18".parse().unwrap()
    }

    /// A local store in a fresh temporary directory (kept as long as the directory is).
    fn local_store(durability: Durability) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path().to_str().unwrap(), durability).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn creates_once_at_either_durability() {
        for durability in [Durability::Disk, Durability::ProcessCrash] {
            let (_dir, store) = local_store(durability);
            let key = Path::from("reports/2026-11-16/3/2026-11-18_0.25.json");
            let first = Bytes::from_static(b"first");
            assert_eq!(
                store.create(&key, first.clone(), WEEK_DAY()).await.unwrap(),
                Created::New
            );
            assert_eq!(
                store
                    .create(&key, Bytes::from_static(b"second"), WEEK_DAY())
                    .await
                    .unwrap(),
                Created::AlreadyThere
            );
            assert_eq!(store.get(&key, 100).await.unwrap(), Some(first));
            let (objects, _) = store.list_dir("reports/2026-11-16/3").await.unwrap();
            assert_eq!(objects, [key]);
            // Undated, as the aggregators write.
            let undated = Path::from("tasks/t/jobs/a.done");
            assert_eq!(
                store
                    .create(&undated, Bytes::from_static(b"x"), None)
                    .await
                    .unwrap(),
                Created::New
            );
            store.delete(&undated).await.unwrap();
            assert_eq!(store.read(&undated, 10).await.unwrap(), Read::Missing);
        }
    }

    #[tokio::test]
    async fn local_objects_carry_their_day_not_the_upload_time() {
        use std::os::unix::fs::MetadataExt;
        let (dir, store) = local_store(Durability::Disk);
        let key = Path::from("reports/2026-11-16/0/2026-11-18_0.5.json");
        store
            .create(&key, Bytes::from_static(b"{}"), WEEK_DAY())
            .await
            .unwrap();
        let merged = Path::from("merged/2026-11-16.json");
        store
            .put(
                &merged,
                Bytes::from_static(b"{}"),
                Some("2026-11-16".parse().unwrap()),
            )
            .await
            .unwrap();
        // 2026-11-18T00:00:00Z and 2026-11-16T00:00:00Z.
        let report_file = dir.path().join(key.as_ref());
        for (path, midnight) in [
            (report_file.clone(), 1_794_960_000),
            (report_file.parent().unwrap().to_path_buf(), 1_794_960_000),
            (dir.path().join("reports/2026-11-16"), 1_794_960_000),
            (dir.path().join("reports"), 1_794_960_000),
            (dir.path().join(merged.as_ref()), 1_794_787_200),
            (dir.path().join("merged"), 1_794_787_200),
        ] {
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(
                (
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.atime(),
                    meta.atime_nsec()
                ),
                (midnight, 0, midnight, 0),
                "{}",
                path.display()
            );
        }
    }

    /// On the local disk nothing is followed or waited on: a FIFO, a socket, a link (to a file
    /// or to a directory), a plain file where a directory belongs and an oversized file are
    /// skipped, each with a reason naming the entry at fault; listings leave them out; a write
    /// through a linked directory, or over a FIFO with create-if-absent, is refused.
    #[tokio::test]
    async fn local_reads_follow_no_link_and_wait_on_nothing() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "outside").unwrap();
        std::fs::create_dir(outside.path().join("week")).unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/file"), "ok").unwrap();
        std::fs::write(root.join("a/b/big"), vec![b'x'; 101]).unwrap();
        nix::unistd::mkfifo(&root.join("a/b/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        drop(std::os::unix::net::UnixListener::bind(root.join("a/b/socket")).unwrap());
        symlink(outside.path().join("secret"), root.join("a/b/link")).unwrap();
        symlink(outside.path().join("week"), root.join("a/linked")).unwrap();
        std::fs::write(root.join("a/plain"), "a file").unwrap();
        std::fs::write(root.join("a/b/staged#1"), "half-written").unwrap();
        let key = |k: &str| Path::from(k);
        let started = Instant::now();
        assert_eq!(
            store.read(&key("a/b/file"), 100).await.unwrap(),
            Read::Found(Bytes::from_static(b"ok"))
        );
        assert_eq!(
            store.read(&key("a/b/missing"), 100).await.unwrap(),
            Read::Missing
        );
        for (k, says) in [
            ("a/b/fifo", "a/b/fifo is a FIFO, not a regular file"),
            ("a/b/socket", "a/b/socket is a socket, not a regular file"),
            (
                "a/b/link",
                "a/b/link is a symbolic link, not a regular file",
            ),
            ("a/b", "a/b is a directory, not a regular file"),
            ("a/b/big", "a/b/big is 101 bytes, more than the 100 bytes"),
            ("a/linked/x", "a/linked is a symbolic link, not a directory"),
            ("a/plain/x", "a/plain is a plain file, not a directory"),
            ("a/b/fifo/x", "a/b/fifo is a FIFO, not a directory"),
        ] {
            match store.read(&key(k), 100).await.unwrap() {
                Read::Skipped(why) => assert!(why.starts_with(says), "{k}: {why}"),
                other => panic!("{k}: {other:?}"),
            }
            assert_eq!(store.get(&key(k), 100).await.unwrap(), None, "{k}");
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        let (objects, dirs) = store.list_dir("a/b").await.unwrap();
        assert_eq!(objects, [key("a/b/big"), key("a/b/file")]);
        assert!(dirs.is_empty());
        let (objects, dirs) = store.list_dir("a").await.unwrap();
        assert_eq!((objects, dirs), (vec![key("a/plain")], vec![key("a/b")]));
        for prefix in ["a/linked", "a/plain", "a/b/fifo", "nothing"] {
            assert_eq!(
                store.list_dir(prefix).await.unwrap(),
                (vec![], vec![]),
                "{prefix}"
            );
        }
        let day = WEEK_DAY();
        let refused = store
            .put(&key("a/linked/new"), Bytes::from_static(b"x"), Some(day))
            .await
            .unwrap_err();
        assert!(format!("{refused:#}").contains("a/linked is a symbolic link"));
        let refused = store
            .create(&key("a/b/fifo"), Bytes::from_static(b"x"), day)
            .await
            .unwrap_err();
        assert!(format!("{refused:#}").contains("a/b/fifo is a FIFO"));
        assert!(
            std::fs::read_dir(outside.path().join("week"))
                .unwrap()
                .next()
                .is_none()
        );
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "outside"
        );
        // Dating a report sets the times of what is in the store, not of a link's target.
        store
            .create(&key("a/b/new"), Bytes::from_static(b"x"), day)
            .await
            .unwrap();
        let target = std::fs::metadata(outside.path().join("secret")).unwrap();
        assert_ne!(
            target.modified().unwrap(),
            std::fs::metadata(root.join("a/b/new"))
                .unwrap()
                .modified()
                .unwrap()
        );
    }

    /// On any store, an object is read only up to its kind's size.
    #[tokio::test]
    async fn oversized_objects_are_skipped_unread() {
        let (_dir, store) = local_store(Durability::Disk);
        let key = Path::from("merged/2026-11-16/latest");
        store
            .put(&key, Bytes::from(vec![b'1'; 33]), None)
            .await
            .unwrap();
        assert!(matches!(
            store.read(&key, 32).await.unwrap(),
            Read::Skipped(why) if why.contains("33 bytes, more than the 32 bytes")
        ));
        store
            .put(&key, Bytes::from_static(b"7"), None)
            .await
            .unwrap();
        assert_eq!(
            store.get(&key, 32).await.unwrap(),
            Some(Bytes::from_static(b"7"))
        );
    }

    /// Every variable the store reads is in the registry's server table, so that
    /// `docs/environment.md` lists it for operators (`tally_env::var_os` checks only that a
    /// name is declared somewhere).
    #[test]
    fn every_variable_the_store_reads_is_declared_for_the_server() {
        for name in [
            tally_env::AWS_ENDPOINT_URL,
            tally_env::AWS_REGION,
            tally_env::AWS_DEFAULT_REGION,
        ] {
            assert!(
                tally_env::SERVER_VARS.iter().any(|var| var.name == name),
                "{name} is not in tally_env::SERVER_VARS"
            );
        }
    }

    /// A private store's directory is its owner's alone, also when it existed before with
    /// looser permissions.
    #[test]
    fn a_private_store_is_made_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh");
        Store::open_private(fresh.to_str().unwrap(), Durability::Disk).unwrap();
        let mode = |p: &FsPath| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o700);
        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        Store::open_private(loose.to_str().unwrap(), Durability::Disk).unwrap();
        assert_eq!(mode(&loose), 0o700);
        // The collector's store is left as the operator made it.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        Store::open(shared.to_str().unwrap()).unwrap();
        assert_eq!(mode(&shared), 0o755);
    }
}
