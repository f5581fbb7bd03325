//! Where the collector keeps everything: one `object_store`, on the local disk or S3.
//!
//! Layout (relative to `--store DIR` or `s3://bucket/prefix`):
//!
//! | key | contents |
//! | --- | --- |
//! | `configs/<version>.json`, `configs/<version>.json.minisig` | every config version ever served |
//! | `reports/<monday>/<week>_<x>.json` | one accepted report, exactly as uploaded |
//! | `merged/<monday>.json` | the merged aggregate of that calendar week's reports (unthresholded) |
//!
//! Promises: a report is written with create-if-absent semantics, so the same (week, x) is
//! stored once however often it is uploaded; on the local disk a write that returned is on
//! stable storage (a group `syncfs` after the rename, shared by concurrent writers) before the
//! upload is answered. Nothing here ever records who sent what.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use axum::body::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use tally_protocol::Day;

/// Result of a create-if-absent write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object was written now.
    New,
    /// An object with that key already existed; nothing was written.
    AlreadyThere,
}

/// How durable a local write is when the upload is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// On stable storage: survives power loss (group `syncfs` before answering). The default.
    #[default]
    Disk,
    /// In the kernel's page cache: survives the server being killed, not the machine losing
    /// power. Faster on a busy disk.
    ProcessCrash,
}

/// The collector's object store.
#[derive(Clone)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    /// For a local store: the group-commit `syncfs` that makes writes durable.
    sync: Option<Arc<GroupSync>>,
    description: String,
}

impl std::fmt::Debug for Store {
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
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("--store {spec:?} names no bucket; use s3://bucket/prefix");
            }
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(true);
            // `from_env` reads AWS_ENDPOINT; the AWS SDKs' name is AWS_ENDPOINT_URL.
            if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                builder = builder.with_endpoint(endpoint);
            }
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            }
            let s3 = builder.build().with_context(|| {
                format!("cannot open {spec}: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, for a non-AWS server, AWS_ENDPOINT_URL")
            })?;
            let prefix = prefix.trim_matches('/');
            let objects: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Store {
                objects,
                sync: None,
                description: format!("s3://{rest}"),
            });
        }
        let dir = PathBuf::from(spec);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the store directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve the store directory {}", dir.display()))?;
        let local = LocalFileSystem::new_with_prefix(&dir)
            .with_context(|| format!("cannot use {} as a store", dir.display()))?;
        let sync = match durability {
            Durability::Disk => Some(Arc::new(GroupSync::open(&dir)?)),
            Durability::ProcessCrash => None,
        };
        Ok(Store {
            objects: Arc::new(local),
            sync,
            description: dir.display().to_string(),
        })
    }

    /// Writes `bytes` at `key` unless something is there already; durable when it returns.
    pub async fn create(&self, key: &Path, bytes: Bytes) -> anyhow::Result<Created> {
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
            Err(object_store::Error::AlreadyExists { .. }) => Created::AlreadyThere,
            // A store without conditional writes: check, then write. Racing writers of one key
            // write identical bytes (the key is derived from the content), so this stays
            // idempotent.
            Err(object_store::Error::NotImplemented | object_store::Error::NotSupported { .. }) => {
                if self.get(key).await?.is_some() {
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
        // Also for AlreadyThere: a concurrent writer's bytes may still be only in the page cache.
        self.make_durable().await?;
        Ok(created)
    }

    /// Writes (or replaces) `key`; durable when it returns.
    pub async fn put(&self, key: &Path, bytes: Bytes) -> anyhow::Result<()> {
        self.objects
            .put(key, PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing {key}"))?;
        self.make_durable().await
    }

    /// Reads `key`, `None` if it does not exist.
    pub async fn get(&self, key: &Path) -> anyhow::Result<Option<Bytes>> {
        match self.objects.get(key).await {
            Ok(result) => Ok(Some(
                result
                    .bytes()
                    .await
                    .with_context(|| format!("reading {key}"))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {key}")),
        }
    }

    /// The objects and sub-"directories" directly under `prefix` (one level, every page).
    pub async fn list_dir(&self, prefix: &str) -> anyhow::Result<(Vec<Path>, Vec<Path>)> {
        let prefix = Path::from(prefix);
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

    async fn make_durable(&self) -> anyhow::Result<()> {
        match &self.sync {
            Some(sync) => sync.sync().await,
            None => Ok(()),
        }
    }
}

/// Key of a stored report: its calendar week, then its own week day and `x`.
pub fn report_key(week: Day, x: f64) -> Path {
    let monday = tally_protocol::aggregate::bucket_week(week);
    // `{x}` is Rust's shortest round-trip form: equal keys exactly when the f64s are equal.
    Path::from(format!("reports/{monday}/{week}_{x}.json"))
}

/// Key of a calendar week's merged aggregate.
pub fn merged_key(monday: Day) -> Path {
    Path::from(format!("merged/{monday}.json"))
}

/// Keys of a served config version and its signature.
pub fn config_keys(version: u64) -> (Path, Path) {
    (
        Path::from(format!("configs/{version}.json")),
        Path::from(format!("configs/{version}.json.minisig")),
    )
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

    #[tokio::test]
    async fn creates_once_at_either_durability() {
        for durability in [Durability::Disk, Durability::ProcessCrash] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(dir.path().to_str().unwrap(), durability).unwrap();
            let key = report_key("2026-11-18".parse().unwrap(), 0.25);
            assert_eq!(key.as_ref(), "reports/2026-11-16/2026-11-18_0.25.json");
            let first = Bytes::from_static(b"first");
            assert_eq!(
                store.create(&key, first.clone()).await.unwrap(),
                Created::New
            );
            assert_eq!(
                store
                    .create(&key, Bytes::from_static(b"second"))
                    .await
                    .unwrap(),
                Created::AlreadyThere
            );
            assert_eq!(store.get(&key).await.unwrap(), Some(first));
            let (objects, _) = store.list_dir("reports/2026-11-16").await.unwrap();
            assert_eq!(objects, [key]);
        }
    }
}
