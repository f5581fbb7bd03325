//! One process serves a store: a lease on the store, taken when a process starts and held
//! while it runs, for a role that keeps state in memory between its writes (the DAP leader and
//! helper: the report IDs they have seen, their running sums). A second process on the same store is
//! refused with an error that says who holds it ([`Store::lease`]), or, as a standby replica,
//! waits until the lease is free or has lapsed and then takes it ([`Store::wait_for_lease`]).
//!
//! - **Local disk**: an exclusive `flock` on the object `key` (a regular file, opened without
//!   following a link or waiting on a FIFO). The kernel releases it when its process ends,
//!   however it ends, so a restart after `kill -9` takes it at once, and a second process is
//!   refused at once. The file holds its holder's description, for the refusal's message.
//! - **S3**: an object at `key` naming its holder, rewritten every `ttl / 3` with a conditional
//!   write (`If-Match` on its ETag). A starting process that finds the object watches it: if it
//!   changes within `ttl`, its holder is alive and the start is refused; if it stays the same
//!   for `ttl` (its holder was killed or cut off), the starter takes it over, again
//!   conditionally, so that of two starters only one wins. The decision uses only the
//!   starter's own clock, never the holder's. A holder whose conditional rewrite fails has lost
//!   the lease (it was paused longer than `ttl` and another process took over), and so has one
//!   that could not rewrite it for `2 ttl / 3`: [`Lease::lost`] completes and the process must
//!   stop. Between losing the lease and noticing, the two may both write: the lease makes
//!   running two serving processes on one store an error that is caught, not a supported way
//!   to run. A standby writes nothing to the store until it holds the lease.

use std::fs::File;
use std::io::{Read as _, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use nix::fcntl::{Flock, FlockArg};
use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::Store;

/// Largest lease object read (its holder's description).
const MAX_LEASE_BYTES: usize = 4096;

/// How often a standby on the local disk tries the lock again.
const LOCAL_STANDBY_POLL: Duration = Duration::from_millis(200);

/// What taking a lease does when another process holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenHeld {
    /// Fail at once (on S3: once the holder is seen renewing it), naming the holder.
    Refuse,
    /// Wait until it is released or has lapsed, then take it: a standby replica.
    Wait,
}

/// What a lease object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Holder {
    /// Random, different for every process: tells a holder's own object from a taker's.
    token: String,
    /// Who holds it, for the refusal's message (`tally-server dap leader, pid 1234`).
    holder: String,
    /// How often it is rewritten, in seconds (the holder's setting, for the message).
    ttl_secs: u64,
    /// Counts the rewrites: an S3 ETag is the content's digest, so each rewrite must differ.
    #[serde(default)]
    renewal: u64,
}

/// A lease on a store, held until it is dropped or released.
pub struct Lease {
    held: Held,
    lost: watch::Receiver<Option<String>>,
    /// The local lease's sender, which never sends (it cannot be lost); kept so that `lost`
    /// does not see a closed channel.
    _never: Option<watch::Sender<Option<String>>>,
}

enum Held {
    /// The locked file; closing it releases the lock.
    Local(#[allow(dead_code)] Flock<File>),
    S3 {
        store: Store,
        key: Path,
        token: String,
        renewer: AbortOnDrop,
    },
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.held {
            Held::Local(_) => f.write_str("Lease(local)"),
            Held::S3 { key, .. } => write!(f, "Lease(s3 {key})"),
        }
    }
}

impl Lease {
    /// Completes if the lease is lost, with why; never for a local store.
    pub async fn lost(&self) -> String {
        let mut lost = self.lost.clone();
        loop {
            if let Some(why) = lost.borrow_and_update().clone() {
                return why;
            }
            if lost.changed().await.is_err() {
                // The renewer is gone without saying why: the lease can no longer be trusted.
                return "the lease's renewal stopped".into();
            }
        }
    }

    /// Gives the lease up: on S3 the object is deleted if it is still this process's, so that
    /// the next start need not wait for it to lapse.
    pub async fn release(self) -> anyhow::Result<()> {
        match self.held {
            Held::Local(lock) => {
                drop(lock);
                Ok(())
            }
            Held::S3 {
                store,
                key,
                token,
                renewer,
            } => {
                drop(renewer);
                if let Some((holder, _)) = read_s3(&store, &key).await?
                    && holder.token == token
                {
                    store.delete(&key).await?;
                }
                Ok(())
            }
        }
    }
}

/// A task aborted when this is dropped: the renewal ends with the lease.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Store {
    /// Takes the lease `key` of this store for `holder` (a description such as `tally-server
    /// dap leader, pid 1234`), or says who holds it. On S3 this can take up to `ttl` when
    /// another lease object is found (see the module docs); the lease is then renewed in the
    /// background every `ttl / 3`.
    pub async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> anyhow::Result<Lease> {
        self.take(key, holder, ttl, WhenHeld::Refuse).await
    }

    /// Like [`Store::lease`], but while another process holds the lease this waits instead of
    /// refusing (a standby replica), for as long as it takes: on the local disk until the
    /// holder's lock is released (its process ended), on S3 until the lease object is deleted
    /// or has gone `ttl` unrenewed. Errors other than "held" (a FIFO planted at `key`, a store
    /// that cannot be reached) still end the wait.
    pub async fn wait_for_lease(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> anyhow::Result<Lease> {
        self.take(key, holder, ttl, WhenHeld::Wait).await
    }

    async fn take(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
        when_held: WhenHeld,
    ) -> anyhow::Result<Lease> {
        let key = Path::from(key);
        if let Some(root) = &self.local_root {
            let mut told = false;
            loop {
                let (dir, object, holder) = (root.clone(), key.clone(), holder.to_owned());
                let taken =
                    tokio::task::spawn_blocking(move || lease_local(&dir, &object, &holder))
                        .await
                        .context("a task taking the store's lease failed")??;
                match (taken, when_held) {
                    (Ok(lease), _) => {
                        if told {
                            eprintln!(
                                "tally-server: took over {}: the process that served it stopped",
                                root.display()
                            );
                        }
                        return Ok(lease);
                    }
                    (Err(who), WhenHeld::Refuse) => bail!(
                        "{} is in use by {who} (it holds {}): one process per store; stop that one first, or give this one its own store",
                        root.display(),
                        root.join(key.as_ref()).display()
                    ),
                    (Err(who), WhenHeld::Wait) => {
                        if !told {
                            eprintln!(
                                "tally-server: standing by: {} is served by {who}; taking over when it stops",
                                root.display()
                            );
                            told = true;
                        }
                        // A lock cannot be waited on and cancelled at once from a blocking
                        // thread; polling lets SIGTERM end the wait.
                        tokio::time::sleep(LOCAL_STANDBY_POLL).await;
                    }
                }
            }
        }
        self.lease_s3(key, holder, ttl, when_held).await
    }

    async fn lease_s3(
        &self,
        key: Path,
        holder: &str,
        ttl: Duration,
        when_held: WhenHeld,
    ) -> anyhow::Result<Lease> {
        let ttl = ttl.max(Duration::from_millis(300));
        let mine = Holder {
            token: format!("{:032x}", fastrand::u128(..)),
            holder: holder.to_owned(),
            ttl_secs: ttl.as_secs(),
            renewal: 0,
        };
        let body = Bytes::from(serde_json::to_vec(&mine)?);
        let etag = self.take_s3(&key, &body, ttl, when_held).await?;
        let (tell, lost) = watch::channel(None);
        let renewer = AbortOnDrop(tokio::spawn(renew_s3(
            self.clone(),
            key.clone(),
            mine.clone(),
            etag,
            ttl,
            tell,
        )));
        Ok(Lease {
            held: Held::S3 {
                store: self.clone(),
                key,
                token: mine.token,
                renewer,
            },
            lost,
            _never: None,
        })
    }

    /// Writes the lease object, watching an existing one first; the new object's ETag.
    async fn take_s3(
        &self,
        key: &Path,
        body: &Bytes,
        ttl: Duration,
        when_held: WhenHeld,
    ) -> anyhow::Result<String> {
        let poll = (ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut watched: Option<(String, Instant, Holder)> = None;
        loop {
            let found = read_s3(self, key).await?;
            let (holder, etag) = match found {
                None => match self.put_s3(key, body, PutMode::Create).await? {
                    Some(etag) => return Ok(etag),
                    // Another starter wrote it first: watch theirs.
                    None => continue,
                },
                Some(found) => found,
            };
            match &watched {
                Some((seen, since, _)) if *seen == etag => {
                    if since.elapsed() >= ttl {
                        let update = PutMode::Update(UpdateVersion {
                            e_tag: Some(etag.clone()),
                            version: None,
                        });
                        return match self.put_s3(key, body, update).await? {
                            Some(new) => {
                                eprintln!(
                                    "tally-server: took over the lease {key} of {self}: its holder ({}) stopped renewing it",
                                    holder.holder
                                );
                                Ok(new)
                            }
                            None if when_held == WhenHeld::Wait => {
                                // Another standby was quicker: watch its lease from now on.
                                watched = None;
                                continue;
                            }
                            None => bail!(
                                "{self} is in use: another process took over its lease {key} just now; run one process per store"
                            ),
                        };
                    }
                }
                Some(_) if when_held == WhenHeld::Wait => {
                    // Renewed: its holder is alive. Watch the new object for `ttl` again.
                    watched = Some((etag, Instant::now(), holder));
                }
                Some(_) => bail!(
                    "{self} is in use by another process ({}), which renews its lease {key} every {} s: \
                     one process per store; stop that one first, or give this one its own store",
                    holder.holder,
                    (holder.ttl_secs / 3).max(1)
                ),
                None if when_held == WhenHeld::Wait => {
                    eprintln!(
                        "tally-server: standing by: {self} is served by {}, which renews its lease {key}; taking it over once it is released or has gone {ttl:?} unrenewed",
                        holder.holder
                    );
                    watched = Some((etag, Instant::now(), holder));
                }
                None => {
                    eprintln!(
                        "tally-server: {self} holds a lease {key} of {}; waiting up to {:?} to see whether it is renewed (then this start is refused) or has lapsed (then it is taken over)",
                        holder.holder, ttl
                    );
                    watched = Some((etag, Instant::now(), holder));
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// A conditional write: its new ETag, or `None` if the condition failed.
    async fn put_s3(
        &self,
        key: &Path,
        body: &Bytes,
        mode: PutMode,
    ) -> anyhow::Result<Option<String>> {
        let options = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .objects
            .put_opts(key, PutPayload::from(body.clone()), options)
            .await
        {
            Ok(result) => result
                .e_tag
                .map(Some)
                .with_context(|| format!("{self} gave no ETag for {key}; a lease needs one")),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(None),
            Err(object_store::Error::NotImplemented) => bail!(
                "{self} does not support conditional writes (If-None-Match, If-Match), which the lease {key} needs"
            ),
            Err(e) => Err(e).with_context(|| format!("writing the lease {key} of {self}")),
        }
    }
}

/// The lease object and its ETag, if there is one.
async fn read_s3(store: &Store, key: &Path) -> anyhow::Result<Option<(Holder, String)>> {
    let result = match store.objects.get(key).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the lease {key} of {store}")),
    };
    if result.meta.size > MAX_LEASE_BYTES as u64 {
        bail!(
            "the lease {key} of {store} is {} bytes, more than a lease can be: remove it",
            result.meta.size
        );
    }
    let etag = result
        .meta
        .e_tag
        .clone()
        .with_context(|| format!("{store} gave no ETag for {key}; a lease needs one"))?;
    let bytes = result
        .bytes()
        .await
        .with_context(|| format!("reading the lease {key} of {store}"))?;
    let holder: Holder = serde_json::from_slice(&bytes).with_context(|| {
        format!("{key} in {store} is not a lease: remove it if no process uses the store")
    })?;
    Ok(Some((holder, etag)))
}

/// Rewrites the lease every `ttl / 3`; says it is lost when a rewrite finds another's object, or
/// when none succeeded for `2 ttl / 3` (another process may take it over at `ttl`).
async fn renew_s3(
    store: Store,
    key: Path,
    mut mine: Holder,
    mut etag: String,
    ttl: Duration,
    tell: watch::Sender<Option<String>>,
) {
    let every = ttl / 3;
    let give_up = ttl * 2 / 3;
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(every.min(Duration::from_millis(200)).max(every / 2)).await;
        if renewed.elapsed() < every {
            continue;
        }
        let update = PutMode::Update(UpdateVersion {
            e_tag: Some(etag.clone()),
            version: None,
        });
        mine.renewal += 1;
        let body = match serde_json::to_vec(&mine) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                let _ = tell.send(Some(format!("the lease {key} of {store}: {e}")));
                return;
            }
        };
        match store.put_s3(&key, &body, update).await {
            Ok(Some(new)) => {
                etag = new;
                renewed = Instant::now();
            }
            Ok(None) => {
                let _ = tell.send(Some(format!(
                    "another process took over the lease {key} of {store}"
                )));
                return;
            }
            Err(e) => {
                if renewed.elapsed() >= give_up {
                    let _ = tell.send(Some(format!(
                        "the lease {key} of {store} could not be renewed for {:?}: {e:#}",
                        renewed.elapsed()
                    )));
                    return;
                }
                eprintln!(
                    "tally-server: renewing the lease {key} of {store} failed, retrying: {e:#}"
                );
            }
        }
    }
}

/// The local lease: an exclusive `flock` on `root/key`, holding `holder`'s description; or,
/// when another process holds the lock, that process's description.
fn lease_local(
    root: &std::path::Path,
    key: &Path,
    holder: &str,
) -> anyhow::Result<Result<Lease, String>> {
    if let Some(why) = crate::store::local::not_through_directories(root, key)? {
        bail!("cannot take the lease {key}: {why}");
    }
    let path = root.join(key.as_ref());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let file = tally_sys::safe_open::open(
        &path,
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
    )
    .map_err(|e| match tally_sys::safe_open::not_regular(&e) {
        Some(found) => anyhow::anyhow!(
            "{} is {}, not a regular file: the lease of a store is a file tally-server makes (remove it)",
            path.display(),
            found.what
        ),
        None => anyhow::Error::new(e).context(format!("cannot open {}", path.display())),
    })?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
            let mut text = String::new();
            let _ = (&mut file)
                .take(MAX_LEASE_BYTES as u64)
                .read_to_string(&mut text);
            let who = serde_json::from_str::<Holder>(&text)
                .map(|h| h.holder)
                .unwrap_or_else(|_| "another process".into());
            return Ok(Err(who));
        }
        Err((_, errno)) => {
            return Err(anyhow::Error::new(errno))
                .with_context(|| format!("cannot lock {}", path.display()));
        }
    };
    let description = serde_json::to_vec(&Holder {
        token: format!("{:032x}", fastrand::u128(..)),
        holder: holder.to_owned(),
        ttl_secs: 0,
        renewal: 0,
    })?;
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(&description))
        .with_context(|| format!("cannot write {}", path.display()))?;
    let (never, lost) = watch::channel(None);
    Ok(Ok(Lease {
        held: Held::Local(lock),
        lost,
        _never: Some(never),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local store whose lease `lease` is held by "the first, pid 1", and the same store
    /// opened again (as by another process).
    async fn held() -> (tempfile::TempDir, Store, Lease, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let first = store
            .lease("lease", "the first, pid 1", Duration::from_secs(1))
            .await
            .unwrap();
        let other = Store::open(dir.path().to_str().unwrap()).unwrap();
        (dir, store, first, other)
    }

    #[tokio::test]
    async fn a_second_local_lease_is_refused_until_the_first_is_released() {
        let (_dir, _store, first, other) = held().await;
        let refused = other
            .lease("lease", "the second", Duration::from_secs(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("is in use by the first, pid 1")
                && refused.contains("one process per store"),
            "{refused}"
        );
        first.release().await.unwrap();
        other
            .lease("lease", "the second", Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_local_standby_waits_until_the_holder_is_gone() {
        let (dir, store, first, other) = held().await;
        let mut standby = tokio::spawn(async move {
            other
                .wait_for_lease("lease", "the standby", Duration::from_secs(1))
                .await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!standby.is_finished(), "the standby took a held lock");
        // The holder's process ends (the kernel closes its lock file).
        drop(first);
        let taken = tokio::time::timeout(Duration::from_secs(5), &mut standby)
            .await
            .expect("the standby did not take the released lock")
            .unwrap()
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("lease")).unwrap();
        assert!(text.contains("the standby"), "{text}");
        // Other errors end the wait: a FIFO where the lease should be.
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = tokio::time::timeout(
            Duration::from_secs(5),
            store.wait_for_lease("fifo", "x", Duration::from_secs(1)),
        )
        .await
        .expect("a standby waited on a FIFO")
        .unwrap_err();
        assert!(format!("{e:#}").contains("is a FIFO"), "{e:#}");
        taken.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_planted_fifo_or_link_is_never_taken_for_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let started = Instant::now();
        for (key, says) in [("fifo", "is a FIFO"), ("link", "is a symbolic link")] {
            let e = format!(
                "{:#}",
                store
                    .lease(key, "x", Duration::from_secs(1))
                    .await
                    .unwrap_err()
            );
            assert!(e.contains(says), "{key}: {e}");
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(std::fs::read(outside.path()).unwrap(), b"");
    }
}
