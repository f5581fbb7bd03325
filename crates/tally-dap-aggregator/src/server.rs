//! What both aggregators serve alike (`GET /hpke_config`, `GET /metrics`), their shared state,
//! and running one as an HTTP service: take the store's lease (one process per store), bind,
//! write the bound address, serve through `tally_service::serve` (bounded connections, header,
//! body, write and stall timeouts) until SIGTERM or SIGINT, or until the lease is lost.
//!
//! The clock is the system's, or `TALLY_NOW` (`YYYY-MM-DD` or RFC 3339) for tests that move
//! time: report windows, key grace periods and the replay horizon all read [`unix_now`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tally_dap::draft::messages::{DapProblemType, Encode, HpkeConfigList, TaskId};

use crate::keys::{self, CONFIG_MAX_AGE, SharedKeys};
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::store::{Durability, MAX_TASK_BYTES, Store};
use crate::task::{AggregatorRole, Task, TaskFile};
use tally_service::serve::Limits;

/// Seconds since the Unix epoch: the system clock, or the time `TALLY_NOW` names (read once).
pub fn unix_now() -> u64 {
    static FIXED: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let fixed = FIXED.get_or_init(|| {
        let value = tally_env::var_os(tally_env::TALLY_NOW)?
            .into_string()
            .ok()?;
        match parse_now(&value) {
            Ok(at) => at,
            Err(e) => {
                eprintln!("tally-server: {e}; using the system clock");
                None
            }
        }
    });
    fixed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// A `TALLY_NOW` value as seconds since the epoch: `YYYY-MM-DD` (its midnight, UTC) or RFC 3339;
/// `None` for an empty value.
pub fn parse_now(value: &str) -> anyhow::Result<Option<u64>> {
    use time::format_description::well_known::Rfc3339;
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let at = match time::OffsetDateTime::parse(value, &Rfc3339) {
        Ok(at) => at,
        Err(_) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let day = time::Date::parse(value, format).map_err(|_| {
                anyhow::anyhow!(
                    "TALLY_NOW={value:?} is neither YYYY-MM-DD nor an RFC 3339 time; fix or unset it"
                )
            })?;
            day.midnight().assume_utc()
        }
    };
    Ok(Some(u64::try_from(at.unix_timestamp()).unwrap_or(0)))
}

/// State both roles share.
pub struct Common {
    pub role: AggregatorRole,
    pub store: Store,
    pub keys: SharedKeys,
    pub metrics: Metrics,
    pub tasks: HashMap<TaskId, Arc<Task>>,
}

impl Common {
    /// The current key set.
    pub fn keys(&self) -> Arc<keys::KeySet> {
        Arc::clone(&self.keys.read().expect("keys lock"))
    }

    /// The task `id`, or DAP's `unrecognizedTask`.
    pub fn task(&self, id: &TaskId) -> Result<&Arc<Task>, ApiError> {
        self.tasks.get(id).ok_or_else(|| {
            ApiError::problem(
                DapProblemType::UnrecognizedTask,
                Some(id),
                "no such task here",
            )
        })
    }

    /// Counts a refused request under its problem type and passes the error on.
    pub fn refused(&self, what: &'static str, error: ApiError) -> ApiError {
        self.metrics.count(what, &error.metric_label());
        error
    }
}

/// Runs a request's work as a task of its own, so that it completes even if the client goes
/// away: axum drops a handler's future when its connection closes, and work that changes state
/// must not stop halfway (a job left "in progress", a batch closed without its share stored).
pub async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work).await.unwrap_or_else(|e| {
        Err(ApiError::Internal(anyhow::anyhow!(
            "a request task failed: {e}"
        )))
    })
}

/// Reads every task of `role` from the store.
pub async fn load_tasks(
    store: &Store,
    role: AggregatorRole,
) -> anyhow::Result<HashMap<TaskId, Arc<Task>>> {
    let mut tasks = HashMap::new();
    for id in store.list_dirs("tasks").await? {
        let key = format!("tasks/{id}/task.json");
        let Some(bytes) = store.get(&key, MAX_TASK_BYTES).await? else {
            continue;
        };
        let file: TaskFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("{key} in the store {store} is not a task file"))?;
        let task = file.parse()?;
        if task.role != role {
            anyhow::bail!(
                "{key} in the store {store} is a {} task, and this store serves as {role}: give each role its own store",
                task.role
            );
        }
        tasks.insert(task.id, Arc::new(task));
    }
    Ok(tasks)
}

#[derive(Deserialize)]
pub struct HpkeConfigQuery {
    task_id: Option<String>,
}

/// `GET /hpke_config[?task_id=…]`: the advertised keys, newest first.
pub async fn hpke_config(
    State(common): State<Arc<Common>>,
    Query(query): Query<HpkeConfigQuery>,
) -> Result<Response, ApiError> {
    if let Some(task_id) = &query.task_id {
        let id: TaskId = task_id.parse().map_err(|_| {
            ApiError::problem(
                DapProblemType::InvalidMessage,
                None,
                "task_id is not a task ID",
            )
        })?;
        common.task(&id)?;
    }
    let keys = common.keys();
    let list: HpkeConfigList = keys.config_list();
    let body = list.get_encoded().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(HpkeConfigList::MEDIA_TYPE),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("max-age={CONFIG_MAX_AGE}")).expect("a header value"),
    );
    Ok(response)
}

/// `GET /metrics`: counters as Prometheus text.
pub async fn metrics(State(common): State<Arc<Common>>) -> String {
    common.metrics.render()
}

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
    pub leader: crate::leader::LeaderOptions,
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
    let lease = store
        .service()
        .lease(LEASE_KEY, &holder, options.lease_ttl)
        .await?;
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
            crate::leader::start(Arc::clone(&common), options.leader.clone()).await?
        }
        AggregatorRole::Helper => crate::helper::start(Arc::clone(&common)).await?,
    };
    // Bodies are read whole, within the body timeout, before a handler runs; at most the
    // largest body of the role (each route has its own, smaller limit below it).
    let max_body = match options.role {
        AggregatorRole::Leader => crate::leader::MAX_BODY_BYTES,
        AggregatorRole::Helper => crate::helper::MAX_BODY_BYTES,
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
    let shutdown = tally_service::serve::shutdown_signal()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_reads_days_and_times() {
        assert_eq!(parse_now("").unwrap(), None);
        assert_eq!(parse_now("2026-11-24").unwrap(), Some(1_795_478_400));
        assert_eq!(
            parse_now("2026-11-24T01:00:00+01:00").unwrap(),
            Some(1_795_478_400)
        );
        assert!(parse_now("yesterday").is_err());
    }
}
