//! What both aggregators serve alike (`GET /hpke_config`, `GET /metrics`), their shared state,
//! and running one as an HTTP service: bind, write the bound address, serve until SIGTERM or
//! SIGINT.

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
use crate::store::{Durability, Store};
use crate::task::{AggregatorRole, Task, TaskFile};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        let Some(bytes) = store.get(&key).await? else {
            continue;
        };
        let file: TaskFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}/{key} is not a task file", store.root().display()))?;
        let task = file.parse()?;
        if task.role != role {
            anyhow::bail!(
                "{}/{key} is a {} task, and this store serves as {role}: give each role its own store",
                store.root().display(),
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
    pub store: PathBuf,
    pub listen: SocketAddr,
    /// Where to write the bound address (`127.0.0.1:port`), for callers that listen on port 0.
    pub address_file: Option<PathBuf>,
    pub durability: Durability,
    /// How often keys are re-read from the store (a rotation needs no restart).
    pub key_reload: Duration,
    pub leader: crate::leader::LeaderOptions,
}

/// Runs an aggregator until SIGTERM or SIGINT.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let store = Store::open(&options.store, options.durability)?;
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
    eprintln!(
        "tally-dap-aggregator: {} serving {} task(s) on http://{bound}/ from {}",
        options.role,
        common.tasks.len(),
        store.root().display()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the server failed")
}

async fn reload_keys(common: Arc<Common>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match keys::load(&common.store).await {
            Ok(keys) if !keys.is_empty() => {
                *common.keys.write().expect("keys lock") = Arc::new(keys);
            }
            Ok(_) => eprintln!(
                "tally-dap-aggregator: the store has no current HPKE key; keeping the loaded ones"
            ),
            Err(e) => eprintln!(
                "tally-dap-aggregator: re-reading keys failed, keeping the loaded ones: {e:#}"
            ),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
