//! Where an aggregator keeps everything: `tally_service`'s store (a local directory or
//! `s3://bucket/prefix`, the collector's storage layer), under the aggregator's keys, each kind
//! of object read only up to the size it can have.
//!
//! | key | role | contents | read up to |
//! | --- | --- | --- | --- |
//! | `lease` | both | the process that holds the store ([`tally_service::lease`]) | – |
//! | `keys/<id>.json` | both | an HPKE key pair | [`MAX_KEY_BYTES`] |
//! | `tasks/<t>/task.json` | both | the task's parameters and secrets | [`MAX_TASK_BYTES`] |
//! | `tasks/<t>/reports/<n>` | leader | a segment of uploads | [`MAX_SEGMENT_BYTES`] |
//! | `tasks/<t>/jobs/<j>.plan`, `<j>.done` | leader | a job's segments; its result | [`MAX_JOB_BYTES`] |
//! | `tasks/<t>/collections/<c>.json` | leader | a collection job | [`MAX_COLLECTION_BYTES`] |
//! | `tasks/<t>/batches/<start>-<duration>` | leader | a consumed batch | [`MAX_SMALL_BYTES`] |
//! | `tasks/<t>/agg_jobs/<j>.json` | helper | a job's record | [`MAX_JOB_BYTES`] |
//! | `tasks/<t>/aggregate_shares/<start>-<duration>` | helper | a released share | [`MAX_COLLECTION_BYTES`] |
//!
//! Every object is written whole and never modified in place: state that changes is a new
//! object (a job's result, a collection's state), so a reader sees an object entirely or not at
//! all. The store holds HPKE private keys and the VDAF verification key: on the local disk its
//! directory is made `0700` ([`tally_service::Store::open_private`]); on S3 the bucket policy
//! must keep it as private. What `tally_service` promises holds here: nothing followed or
//! waited on, writes durable when they return. An object that is not one (a link, a FIFO, one
//! too big for its kind) where one is expected is an error that names it.

use std::collections::BTreeMap;

use anyhow::Context;
use axum::body::Bytes;
use object_store::path::Path;
use serde::de::DeserializeOwned;
use tally_service::store::Read;

pub use tally_service::store::{Created, Durability};

/// Largest HPKE key file.
pub const MAX_KEY_BYTES: usize = 16 << 10;

/// Largest task file.
pub const MAX_TASK_BYTES: usize = 64 << 10;

/// Largest batch record.
pub const MAX_SMALL_BYTES: usize = 4 << 10;

/// Most bytes of uploads the leader gathers into one segment (one more upload may pass it).
pub const SEGMENT_TARGET_BYTES: usize = 64 << 20;

/// Largest segment: [`SEGMENT_TARGET_BYTES`], one more upload of the largest size, framing.
pub const MAX_SEGMENT_BYTES: usize = SEGMENT_TARGET_BYTES + (8 << 20);

/// Largest job plan, result or record: the job's report IDs and outcomes and its slot sums
/// (16 bytes an entry, base64: 2.2 MB a slot for 100,000 entries).
pub const MAX_JOB_BYTES: usize = 256 << 20;

/// Largest collection job or released share: two sealed aggregate shares.
pub const MAX_COLLECTION_BYTES: usize = 16 << 20;

/// An aggregator's store.
#[derive(Clone)]
pub struct Store {
    objects: tally_service::Store,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.objects)
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.objects)
    }
}

impl Store {
    /// Opens `spec` (a directory, created `0700` if missing, or `s3://bucket/prefix`).
    pub fn open(spec: &str, durability: Durability) -> anyhow::Result<Store> {
        Ok(Store {
            objects: tally_service::Store::open_private(spec, durability)?,
        })
    }

    /// The store underneath (for its lease).
    pub fn service(&self) -> &tally_service::Store {
        &self.objects
    }

    /// Writes `bytes` at `key` unless an object is there already.
    pub async fn create(&self, key: &str, bytes: impl Into<Bytes>) -> anyhow::Result<Created> {
        self.objects
            .create(&Path::from(key), bytes.into(), None)
            .await
    }

    /// Writes (or replaces) `key`.
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> anyhow::Result<()> {
        self.objects.put(&Path::from(key), bytes.into(), None).await
    }

    /// Reads `key`, an object of at most `max_bytes`; `None` if there is none. Anything else at
    /// the key (a link, a FIFO, an object too big for its kind) is an error naming it.
    pub async fn get(&self, key: &str, max_bytes: usize) -> anyhow::Result<Option<Bytes>> {
        match self.objects.read(&Path::from(key), max_bytes).await? {
            Read::Found(bytes) => Ok(Some(bytes)),
            Read::Missing => Ok(None),
            Read::Skipped(why) => Err(anyhow::anyhow!("{why}"))
                .with_context(|| format!("reading {key} in the store {self}")),
        }
    }

    /// The names of the objects directly under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let (objects, _) = self.objects.list_dir(prefix).await?;
        Ok(names(objects))
    }

    /// The "directories" directly under `prefix` (object stores call them common prefixes),
    /// sorted.
    pub async fn list_dirs(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let (_, dirs) = self.objects.list_dir(prefix).await?;
        Ok(names(dirs))
    }

    /// Reads `key` and decodes it as JSON; `what` names the kind of object ("a job record") in
    /// the error when it is missing or is not one.
    pub async fn read_json<T: DeserializeOwned>(
        &self,
        key: &str,
        max_bytes: usize,
        what: &str,
    ) -> anyhow::Result<T> {
        let bytes = self
            .get(key, max_bytes)
            .await?
            .with_context(|| format!("{what} vanished: {key} is missing"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{key} is not {what}"))
    }

    /// The names of the objects directly under `dir` that end in `suffix`, without it, sorted.
    pub async fn stems(&self, dir: &str, suffix: &str) -> anyhow::Result<Vec<String>> {
        let names = self.list(dir).await?;
        Ok(names
            .iter()
            .filter_map(|name| name.strip_suffix(suffix).map(str::to_owned))
            .collect())
    }

    /// The batches recorded under `dir` as objects named `<start>-<duration>` (consumed at the
    /// leader, released at the helper): start → end. Other names are passed over.
    pub async fn read_batches(&self, dir: &str) -> anyhow::Result<BTreeMap<u64, u64>> {
        let mut batches = BTreeMap::new();
        for name in self.list(dir).await? {
            if let Some((start, duration)) = name.split_once('-')
                && let (Ok(start), Ok(duration)) = (start.parse::<u64>(), duration.parse::<u64>())
            {
                batches.insert(start, start.saturating_add(duration));
            }
        }
        Ok(batches)
    }

    /// Deletes `key`; a key that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.objects.delete(&Path::from(key)).await
    }
}

fn names(keys: Vec<Path>) -> Vec<String> {
    let mut names: Vec<String> = keys
        .iter()
        .filter_map(|key| key.filename().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), Durability::Disk).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn objects_are_created_once_put_again_listed_and_deleted() {
        let (dir, store) = store();
        assert_eq!(store.get("a/b/c", 10).await.unwrap(), None);
        assert_eq!(store.list("a/b").await.unwrap(), Vec::<String>::new());
        assert_eq!(
            store.create("a/b/c", b"one".to_vec()).await.unwrap(),
            Created::New
        );
        assert_eq!(
            store.create("a/b/c", b"two".to_vec()).await.unwrap(),
            Created::AlreadyThere
        );
        assert_eq!(&store.get("a/b/c", 10).await.unwrap().unwrap()[..], b"one");
        store.put("a/b/c", b"three".to_vec()).await.unwrap();
        store.put("a/b/d", b"four".to_vec()).await.unwrap();
        assert_eq!(
            &store.get("a/b/c", 10).await.unwrap().unwrap()[..],
            b"three"
        );
        assert_eq!(store.list("a/b").await.unwrap(), ["c", "d"]);
        assert_eq!(store.list_dirs("a").await.unwrap(), ["b"]);
        store.delete("a/b/c").await.unwrap();
        store.delete("a/b/c").await.unwrap();
        assert_eq!(store.list("a/b").await.unwrap(), ["d"]);
        // Read only up to its kind's size.
        let e = store.get("a/b/d", 3).await.unwrap_err();
        assert!(
            format!("{e:#}").contains("4 bytes, more than the 3"),
            "{e:#}"
        );
        // Keys and task secrets: nobody else can reach anything in the store.
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
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
        nix::unistd::mkfifo(&dir.path().join("t/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let started = Instant::now();
        let e = store.get("t/link", 100).await.unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        let e = store.get("t/fifo", 100).await.unwrap_err();
        assert!(format!("{e:#}").contains("FIFO"), "{e:#}");
        let e = store.get("linked-dir/secret", 100).await.unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        let e = store
            .put("linked-dir/new", b"x".to_vec())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        // A link where an object would be created is not taken for it, nor written through.
        let e = store.create("t/link", b"x".to_vec()).await.unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        // put replaces the link itself.
        store.put("t/link", b"mine".to_vec()).await.unwrap();
        assert_eq!(
            &store.get("t/link", 100).await.unwrap().unwrap()[..],
            b"mine"
        );
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "outside");
        assert!(!outside.path().join("new").exists());
        // The FIFO is left out of listings.
        assert_eq!(store.list("t").await.unwrap(), ["link"]);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
