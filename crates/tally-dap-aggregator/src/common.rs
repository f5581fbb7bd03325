//! What both aggregators share: their state ([`Common`]: role, store, keys, metrics, tasks),
//! the clock, the routes they serve alike (`GET /hpke_config`, `GET /metrics`), and running a
//! request's work to its end. The roles ([`crate::leader`], [`crate::helper`]) build on it;
//! [`crate::server`] starts one of them.
//!
//! The clock is the system's, or `TALLY_NOW` (`YYYY-MM-DD` or RFC 3339) for tests that move
//! time: report windows, key grace periods and the replay horizon all read [`unix_now`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tally_dap::draft::messages::{DapProblemType, Encode, HpkeConfigList, TaskId};

use crate::keys::{self, CONFIG_MAX_AGE, SharedKeys};
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::store::{MAX_TASK_BYTES, Store};
use crate::task::{AggregatorRole, Task, TaskFile};

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

    /// Deletes every one of `keys` from the store, each counted under `metric`.
    pub async fn delete_each(&self, keys: Vec<String>, metric: &'static str) -> anyhow::Result<()> {
        for key in keys {
            self.store.delete(&key).await?;
            self.metrics.count(metric, "");
        }
        Ok(())
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

/// Runs a request's work [`detached`] and counts how it ended: under `accepted`, labelled with
/// what the work returns (`""` for no label), or under `refused`, labelled with the problem.
pub async fn counted(
    common: &Common,
    accepted: &'static str,
    refused: &'static str,
    work: impl Future<Output = Result<&'static str, ApiError>> + Send + 'static,
) -> Result<(), ApiError> {
    match detached(work).await {
        Ok(label) => {
            common.metrics.count(accepted, label);
            Ok(())
        }
        Err(e) => Err(common.refused(refused, e)),
    }
}

/// How often records past the replay horizon are looked for (also once at start).
pub const COMPACT_EVERY: Duration = Duration::from_secs(600);

/// Runs `compact` on `aggregator` for every task in `task_ids` now (a failure fails the
/// start), then every [`COMPACT_EVERY`] in the background as long as the process runs (a
/// failure then is logged, `what` naming the records, and tried again the next time).
pub async fn start_compaction<A, F, Fut>(
    aggregator: &Arc<A>,
    task_ids: Vec<TaskId>,
    what: &'static str,
    compact: F,
) -> anyhow::Result<()>
where
    A: Send + Sync + 'static,
    F: Fn(Arc<A>, TaskId) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    for id in &task_ids {
        compact(Arc::clone(aggregator), *id).await?;
    }
    let aggregator = Arc::clone(aggregator);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(COMPACT_EVERY).await;
            for id in &task_ids {
                if let Err(e) = compact(Arc::clone(&aggregator), *id).await {
                    eprintln!(
                        "tally-server: compacting the {what} of task {id}: {e:#}; retrying later"
                    );
                }
            }
        }
    });
    Ok(())
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

/// The routes both roles serve alike: `GET /hpke_config` and `GET /metrics`.
pub fn routes<S: Clone + Send + Sync + 'static>(common: Arc<Common>) -> Router<S> {
    Router::new()
        .route(
            "/hpke_config",
            get(hpke_config).with_state(Arc::clone(&common)),
        )
        .route("/metrics", get(metrics).with_state(common))
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
