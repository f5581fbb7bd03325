//! Running an aggregator as an HTTP service: take the store's lease (one process serves a
//! store; a standby waits for the lease, neither listening nor writing, and takes over when the
//! serving process stops), load its keys and tasks, start the role ([`crate::leader`] or
//! [`crate::helper`]), bind, write the bound address, serve through `tally_service::serve`
//! (bounded connections, header, body, write and stall timeouts) until SIGTERM or SIGINT, or
//! until the lease is lost.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;

use crate::common::{Common, load_tasks, unix_now};
use crate::keys;
use crate::metrics::Metrics;
use crate::store::{Durability, Store};
use crate::task::AggregatorRole;
use crate::{helper, leader};
use tally_service::serve::Limits;

/// How to run an aggregator.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub role: AggregatorRole,
    /// The store: a directory or `s3://bucket/prefix`.
    pub store: String,
    pub listen: SocketAddr,
    /// Where to write the bound address (`127.0.0.1:port`), for callers that listen on port 0.
    pub address_file: Option<PathBuf>,
    pub durability: Durability,
    /// How often keys are re-read from the store (a rotation needs no restart).
    pub key_reload: Duration,
    /// Connection bounds (`tally_service::serve`).
    pub limits: Limits,
    /// Longest a request's body may take to arrive.
    pub body_timeout: Duration,
    /// How long an S3 lease lasts unrenewed (a local store's lease is a lock, released when the
    /// process ends).
    pub lease_ttl: Duration,
    /// Wait for the store's lease instead of refusing to start while another process holds it.
    pub standby: bool,
    pub leader: leader::LeaderOptions,
}

/// The key of the store's lease.
const LEASE_KEY: &str = "lease";

/// Runs an aggregator until SIGTERM or SIGINT, or until it loses its store's lease.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let store = Store::open(&options.store, options.durability)?;
    let holder = format!(
        "tally-server dap {}, pid {}",
        options.role,
        std::process::id()
    );
    // Handled from the start: SIGTERM ends a standby's wait, and one that arrives while the
    // store is recovered stops the server as soon as it serves.
    let mut shutdown = Box::pin(tally_service::serve::shutdown_signal()?);
    let lease = if options.standby {
        // Recovery reads the store only once the lease is held: what the previous process
        // wrote up to its end is then all there is.
        tokio::select! {
            lease = store.service().wait_for_lease(LEASE_KEY, &holder, options.lease_ttl) => lease?,
            () = &mut shutdown => {
                eprintln!("tally-server: dap {} stopped while standing by", options.role);
                return Ok(());
            }
        }
    } else {
        store
            .service()
            .lease(LEASE_KEY, &holder, options.lease_ttl)
            .await?
    };
    let keys = keys::load_or_init(&store, unix_now()).await?;
    let tasks = load_tasks(&store, options.role).await?;
    let common = Arc::new(Common {
        role: options.role,
        store: store.clone(),
        keys: Arc::new(std::sync::RwLock::new(Arc::new(keys))),
        metrics: Metrics::default(),
        tasks,
    });
    let app: Router = match options.role {
        AggregatorRole::Leader => {
            leader::start(Arc::clone(&common), options.leader.clone()).await?
        }
        AggregatorRole::Helper => helper::start(Arc::clone(&common)).await?,
    };
    // Bodies are read whole, within the body timeout, before a handler runs; at most the
    // largest body of the role (each route has its own, smaller limit below it).
    let max_body = match options.role {
        AggregatorRole::Leader => leader::MAX_BODY_BYTES,
        AggregatorRole::Helper => helper::MAX_BODY_BYTES,
    };
    let app = tally_service::serve::with_body_deadline(app, options.body_timeout, max_body);
    tokio::spawn(reload_keys(Arc::clone(&common), options.key_reload));
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let bound = listener.local_addr()?;
    if let Some(path) = &options.address_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bound.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The port only: the log never holds an IP address.
    eprintln!(
        "tally-server: dap {} serving {} task(s) on port {} from {store}",
        options.role,
        common.tasks.len(),
        bound.port()
    );
    let lost = tokio::select! {
        () = tally_service::serve::serve(listener, app, options.limits, shutdown, Duration::from_secs(5)) => None,
        why = lease.lost() => Some(why),
    };
    match lost {
        // Another process writes to this store now: stop at once, without touching it again.
        Some(why) => anyhow::bail!("stopped: {why}; two processes must not serve one store"),
        None => {
            lease.release().await?;
            eprintln!("tally-server: dap {} stopped", options.role);
            Ok(())
        }
    }
}

async fn reload_keys(common: Arc<Common>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match keys::load(&common.store).await {
            Ok(keys) if !keys.is_empty() => {
                *common.keys.write().expect("keys lock") = Arc::new(keys);
            }
            Ok(_) => eprintln!(
                "tally-server: the store has no current HPKE key; keeping the loaded ones"
            ),
            Err(e) => {
                eprintln!("tally-server: re-reading keys failed, keeping the loaded ones: {e:#}")
            }
        }
    }
}
