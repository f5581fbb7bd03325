//! The HTTP surface: [`app`] routes each request to its handler, as in axum's
//! `examples/testing`, so the whole surface can be driven without a socket (tower's `oneshot`).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | the dashboard's index page |
//! | `GET /programs/{program}` | one program's charts (`dashboard.rs`) |
//! | `GET /healthz` | `ok` |
//! | `GET /status` | retention: weeks raw reports are kept, and when each published week's go (JSON) |
//! | `GET /config.json`, `/config.json.minisig` | the served config and its signature, byte for byte |
//! | `POST /upload/{week}` | stores one report: 200 `stored` / `already stored`, 4xx with a reason, 503 if the store failed |
//! | `GET /api/weeks` | every week with published data, newest first |
//! | `GET /api/weeks/{week}/{program}` | one program's published week, or 404 |
//!
//! Promises: handlers hold no state of their own (all of it is [`AppState`]); an upload's body
//! is bounded in size ([`MAX_REPORT_BYTES`]) and in time (`Options::body_timeout`) here, before
//! any parsing; every answer that is not JSON or a page is one line of text; every page carries
//! the charts' content security policy.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tally_protocol::aggregate::bucket_week;
use tally_protocol::{Day, MAX_REPORT_BYTES};

use crate::background::accept_detached;
use crate::dashboard;
use crate::state::AppState;

/// The HTTP surface. Applies the body limit and body read timeout itself; connection limits
/// and header timeouts belong to [`crate::serve::serve`].
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard_page))
        .route("/programs/{program}", get(dashboard::program))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(api_status))
        .route("/config.json", get(config_json))
        .route("/config.json.minisig", get(config_signature))
        .route("/upload/{week}", post(upload))
        .route("/api/weeks", get(api_weeks))
        .route("/api/weeks/{week}/{program}", get(api_program_week))
        .with_state(state)
}

async fn config_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.0.current.json.clone(),
    )
        .into_response()
}

async fn config_signature(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.0.current.signature.clone(),
    )
        .into_response()
}

async fn upload(
    State(state): State<AppState>,
    Path(week): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > MAX_REPORT_BYTES as u64) {
        return reason(
            StatusCode::BAD_REQUEST,
            format!("report is {declared} bytes, over the {MAX_REPORT_BYTES} byte limit"),
        );
    }
    let timeout = state.0.options.body_timeout;
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_REPORT_BYTES))
        .await
    {
        Err(_) => {
            return reason(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the report body did not arrive within {} seconds",
                    timeout.as_secs_f64()
                ),
            );
        }
        Ok(Err(_)) => {
            return reason(
                StatusCode::BAD_REQUEST,
                format!("the report body was cut off or is over the {MAX_REPORT_BYTES} byte limit"),
            );
        }
        Ok(Ok(bytes)) => bytes,
    };
    // Its own task: a connection closed mid-upload must not stop a report between its write and
    // its merge.
    match accept_detached(state, week, bytes).await {
        Ok(Ok(true)) => reason(StatusCode::OK, "stored".into()),
        Ok(Ok(false)) => reason(StatusCode::OK, "already stored".into()),
        Ok(Err((status, why))) => reason(status, why),
        Err(e) => {
            eprintln!("tally-server: an upload task failed: {e}");
            reason(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the upload could not be processed; retry later".into(),
            )
        }
    }
}

fn reason(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

async fn api_status(State(state): State<AppState>) -> Response {
    axum::Json(state.status()).into_response()
}

async fn api_weeks(State(state): State<AppState>) -> Response {
    axum::Json(state.weeks_index()).into_response()
}

async fn api_program_week(
    State(state): State<AppState>,
    Path((week, program)): Path<(String, String)>,
) -> Response {
    let Ok(day) = week.parse::<Day>() else {
        return reason(
            StatusCode::BAD_REQUEST,
            "week is not a YYYY-MM-DD day".into(),
        );
    };
    match state.program_week(day, &program) {
        Some(published) => axum::Json(published).into_response(),
        None => reason(
            StatusCode::NOT_FOUND,
            format!(
                "nothing published for this program in the week of {} (no reports, or fewer than {})",
                bucket_week(day),
                state.threshold()
            ),
        ),
    }
}

async fn dashboard_page(State(state): State<AppState>) -> Response {
    // Program details live on `/programs/{program}`; the index needs only the weeks.
    let page = dashboard::page(&state.weeks_index(), &[]);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                tally_charts::CONTENT_SECURITY_POLICY,
            ),
        ],
        page,
    )
        .into_response()
}
