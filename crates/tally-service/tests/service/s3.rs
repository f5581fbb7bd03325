//! The store and its lease on a real S3-compatible server (moto): what the local disk does,
//! S3 does too, and a second process on one store is refused there as well.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use object_store::path::Path;
use tally_service::Store;
use tally_service::store::{Created, Read};
use tally_test_support::moto::{BUCKET, start_moto};

/// The store `s3://BUCKET/prefix` on the moto server at `endpoint`, set up in this process.
fn moto_store(endpoint: &str, prefix: &str) -> Store {
    let builder = object_store::aws::AmazonS3Builder::new()
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_region("us-east-1")
        .with_endpoint(endpoint);
    Store::on_s3(&format!("s3://{BUCKET}/{prefix}"), builder).expect("a store on moto")
}

/// Creates `key` holding `bytes`, undated (as the aggregators write): whether it was new.
async fn create_undated(store: &Store, key: &Path, bytes: &'static [u8]) -> Created {
    store
        .create(key, Bytes::from_static(bytes), None)
        .await
        .unwrap()
}

/// Writes `bytes` at `key`, undated, whatever is there.
async fn put_undated(store: &Store, key: &str, bytes: &'static [u8]) {
    store
        .put(&Path::from(key), Bytes::from_static(bytes), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_created_once_read_bounded_listed_and_deleted_on_s3() {
    let Some((_moto, endpoint)) = start_moto() else {
        return;
    };
    let store = moto_store(&endpoint, "objects");
    let key = Path::from("tasks/t/jobs/a.done");
    assert_eq!(create_undated(&store, &key, b"one").await, Created::New);
    assert_eq!(
        create_undated(&store, &key, b"two").await,
        Created::AlreadyThere
    );
    assert_eq!(
        store.read(&key, 3).await.unwrap(),
        Read::Found(Bytes::from_static(b"one"))
    );
    assert!(
        matches!(store.read(&key, 2).await.unwrap(), Read::Skipped(why) if why.contains("3 bytes, more than the 2"))
    );
    put_undated(&store, "tasks/t/jobs/b.plan", b"p").await;
    let (objects, dirs) = store.list_dir("tasks/t/jobs").await.unwrap();
    assert_eq!(
        objects,
        [
            Path::from("tasks/t/jobs/a.done"),
            Path::from("tasks/t/jobs/b.plan")
        ]
    );
    assert!(dirs.is_empty());
    assert_eq!(
        store.list_dir("tasks/t").await.unwrap().1,
        [Path::from("tasks/t/jobs")]
    );
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert_eq!(store.read(&key, 10).await.unwrap(), Read::Missing);
    assert!(!store.exists(&key).await.unwrap());
}

/// A second process on one S3 store is refused while the first renews its lease; once the
/// first stops renewing (killed: its lease object stays), a start waits out the lease and takes
/// it over; a lease released on shutdown lets the next start in at once; and a holder whose
/// lease was overwritten learns it has lost it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_store_on_s3() {
    let Some((_moto, endpoint)) = start_moto() else {
        return;
    };
    let ttl = Duration::from_millis(1500);
    let store = moto_store(&endpoint, "lease");
    let first = store.lease("lease", "the first, pid 1", ttl).await.unwrap();
    let began = Instant::now();
    let refused = store
        .lease("lease", "the second", ttl)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("in use by another process (the first, pid 1)"),
        "{refused}"
    );
    assert!(
        began.elapsed() < ttl,
        "refused only after {:?}",
        began.elapsed()
    );

    // Killed: the renewal stops, the object stays.
    drop(first);
    let began = Instant::now();
    let third = store.lease("lease", "the third", ttl).await.unwrap();
    assert!(
        began.elapsed() >= ttl,
        "took over after {:?}",
        began.elapsed()
    );
    third.release().await.unwrap();
    let began = Instant::now();
    let fourth = store.lease("lease", "the fourth", ttl).await.unwrap();
    assert!(began.elapsed() < ttl / 2, "{:?}", began.elapsed());

    // Someone overwrites the lease (a process that took it over while this one was paused).
    put_undated(
        &store,
        "lease",
        b"{\"token\":\"x\",\"holder\":\"h\",\"ttl_secs\":1}",
    )
    .await;
    let why = tokio::time::timeout(ttl * 2, fourth.lost())
        .await
        .expect("the holder never noticed it lost its lease");
    assert!(why.contains("another process took over"), "{why}");
}

/// A standby replica waits while the holder renews its lease (for many times its `ttl`), takes
/// it over once the holder stops renewing (killed), and of two standbys only one gets it; the
/// other waits on, and takes it when the winner releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_on_s3_waits_out_a_renewed_lease_and_takes_a_lapsed_one() {
    let Some((_moto, endpoint)) = start_moto() else {
        return;
    };
    let ttl = Duration::from_millis(1500);
    let store = moto_store(&endpoint, "standby");
    let first = store.lease("lease", "the first, pid 1", ttl).await.unwrap();
    let standby = |name: &'static str| {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_lease("lease", name, ttl).await })
    };
    let (mut a, mut b) = (standby("standby a"), standby("standby b"));
    tokio::time::sleep(ttl * 3).await;
    assert!(
        !a.is_finished() && !b.is_finished(),
        "a standby took a lease that was being renewed"
    );

    // Killed: the renewal stops, the object stays.
    drop(first);
    let began = Instant::now();
    let (winner, mut other) = tokio::select! {
        won = &mut a => (won, b),
        won = &mut b => (won, a),
    };
    let winner = winner.unwrap().unwrap();
    // `ttl` unrenewed since the standby saw the last renewal, which came at most a renewal
    // period (`ttl / 3`) before the kill.
    assert!(
        began.elapsed() >= ttl * 2 / 3,
        "took over after {:?}",
        began.elapsed()
    );
    tokio::time::sleep(ttl * 3).await;
    assert!(!other.is_finished(), "two standbys hold one lease");
    winner.release().await.unwrap();
    let last = tokio::time::timeout(ttl * 2, &mut other)
        .await
        .expect("the other standby did not take the released lease")
        .unwrap()
        .unwrap();
    last.release().await.unwrap();
}
