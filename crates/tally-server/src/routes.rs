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
//! | `GET /config` | what is collected and why (`config_page.rs`) |
//! | `GET /data/` | the published weeks, for download (`open_data.rs`) |
//! | `GET /data/{monday}.json`, `.csv` | one week's published aggregates, or 404 |
//!
//! Promises: handlers hold no state of their own (all of it is [`AppState`]); an upload's body
//! is bounded in size ([`MAX_REPORT_BYTES`]) and in time (`Options::body_timeout`) here, before
//! any parsing; every answer that is not JSON or a page is one line of text; every page carries
//! the charts' content security policy.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Redirect;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tally_protocol::aggregate::bucket_week;
use tally_protocol::{Day, MAX_REPORT_BYTES};

use crate::config_page::{self, Site};
use crate::dashboard;
use crate::open_data::LICENCE_LINE;
use crate::state::AppState;

/// The HTTP surface with the default [`Site`] (no chart config, default retention). Applies the
/// body limit and body read timeout itself; connection limits and header timeouts belong to
/// [`crate::serve::serve`].
pub fn app(state: AppState) -> Router {
    app_with(state, Site::default())
}

/// The HTTP surface, with what the public pages say beyond the aggregates.
pub fn app_with(state: AppState, site: Site) -> Router {
    Router::new()
        .route("/", get(dashboard_page))
        .route("/programs/{program}", get(program_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/config", get(config_html))
        .route("/status", get(api_status))
        .route("/config.json", get(config_json))
        .route("/config.json.minisig", get(config_signature))
        .route("/upload/{week}", post(upload))
        .route("/api/weeks", get(api_weeks))
        .route("/api/weeks/{week}/{program}", get(api_program_week))
        .route("/data", get(|| async { Redirect::permanent("/data/") }))
        .route("/data/", get(data_index))
        .route("/data/{file}", get(data_file))
        .layer(Extension(Arc::new(site)))
        .with_state(state)
}

/// A page with the simulated-data banner (if any) at the top of its body.
fn with_banner(html: String, site: &Site) -> String {
    let banner = site.banner();
    if banner.is_empty() {
        return html;
    }
    html.replacen("<body>\n", &format!("<body>\n{banner}\n"), 1)
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                tally_charts::CONTENT_SECURITY_POLICY,
            ),
        ],
        body,
    )
        .into_response()
}

async fn config_html(
    State(state): State<AppState>,
    Extension(site): Extension<Arc<Site>>,
) -> Response {
    html(
        StatusCode::OK,
        config_page::render(
            &site,
            &state.0.current.config,
            state.threshold(),
            state.retention_weeks(),
        ),
    )
}

async fn data_index(
    State(state): State<AppState>,
    Extension(site): Extension<Arc<Site>>,
) -> Response {
    let index = state.weeks_index();
    let today = state.0.options.clock.today();
    let mut body = String::from(
        "<header><p><a href=\"../\">← dashboard</a> · <a href=\"../config\">what is collected</a></p><h1>tally open data</h1>",
    );
    body.push_str(&site.banner());
    let _ = write!(
        body,
        "<p class=\"note\">Every published week, as JSON and as CSV: exactly the aggregates the \
         dashboard shows (anything seen in fewer than {} reports withheld, and whatever could be \
         derived from the rest by subtraction). Schema: <code>{}</code>, described in \
         docs/open-data.md. Data {LICENCE_LINE}.</p></header>",
        state.threshold(),
        crate::open_data::SCHEMA,
    );
    if index.weeks.is_empty() {
        body.push_str("<p class=\"empty\">No week is published yet.</p>");
    } else {
        body.push_str("<div class=\"table-wrap\"><table class=\"weeks\"><thead><tr><th>week (Monday)</th><th class=\"num\">reports</th><th>status</th><th>files</th></tr></thead><tbody>");
        for week in &index.weeks {
            let status = match crate::open_data::final_after(week.week) {
                Some(last) if today > last => "final".to_owned(),
                Some(last) => format!("open to uploads until {last}"),
                None => String::new(),
            };
            let _ = write!(
                body,
                "<tr data-week=\"{w}\"><td>{w}</td><td class=\"num\">{r}</td><td>{status}</td>\
                 <td><a href=\"{w}.json\">{w}.json</a> · <a href=\"{w}.csv\">{w}.csv</a></td></tr>",
                w = week.week,
                r = week.reports,
            );
        }
        body.push_str("</tbody></table></div>");
    }
    html(
        StatusCode::OK,
        tally_charts::html::page("tally open data", &body),
    )
}

async fn data_file(
    State(state): State<AppState>,
    Extension(site): Extension<Arc<Site>>,
    Path(file): Path<String>,
) -> Response {
    let (stem, csv) = match (file.strip_suffix(".json"), file.strip_suffix(".csv")) {
        (Some(stem), _) => (stem, false),
        (_, Some(stem)) => (stem, true),
        _ => {
            return reason(
                StatusCode::NOT_FOUND,
                "the files here are <monday>.json and <monday>.csv; /data/ lists them".into(),
            );
        }
    };
    let Ok(day) = stem.parse::<Day>() else {
        return reason(
            StatusCode::NOT_FOUND,
            format!("{stem:?} is not a YYYY-MM-DD day"),
        );
    };
    if bucket_week(day) != day {
        return reason(
            StatusCode::NOT_FOUND,
            format!(
                "files are named by the Monday of their week: {}",
                bucket_week(day)
            ),
        );
    }
    let Some(data) = state.week_data(day, site.simulated.is_some()) else {
        return reason(
            StatusCode::NOT_FOUND,
            format!("nothing is published for the week of {day}"),
        );
    };
    if csv {
        (
            [(
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            )],
            data.to_csv(true),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], data.to_json()).into_response()
    }
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
    // Its own task: a connection closed mid-upload (the client gave up, or the server cut a
    // stalled connection off) must not stop a report between its write and its merge.
    match tokio::spawn(async move { state.accept_upload(&week, &bytes).await }).await {
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

async fn dashboard_page(
    State(state): State<AppState>,
    Extension(site): Extension<Arc<Site>>,
) -> Response {
    let page = dashboard::index_page(&state.weeks_index());
    html(StatusCode::OK, with_banner(page, &site))
}

async fn program_page(
    State(state): State<AppState>,
    Extension(site): Extension<Arc<Site>>,
    Path(program): Path<String>,
) -> Response {
    let (status, page) = dashboard::program_page(&state, &program);
    html(status, with_banner(page, &site))
}
