//! DAP's error answers: problem documents (RFC 9457) with DAP's problem types
//! (`urn:ietf:params:ppm:dap:error:…`), status 400, or 403 for an unauthorized request, as
//! Janus answers them, so the upstream client and collector recognise each one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tally_dap::draft::PROBLEM_MEDIA_TYPE;
use tally_dap::draft::messages::{DapProblemType, TaskId};

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// A DAP problem document.
    Problem {
        kind: DapProblemType,
        task_id: Option<TaskId>,
        detail: String,
    },
    /// A plain HTTP status outside DAP's problem types (404 for an unknown collection job, 409
    /// for a conflicting repeat, 413 for a body over the limit, 503 to retry), with a reason.
    Status(StatusCode, String),
    /// Something failed on this side (storage): 500, logged, never detailed to the caller.
    Internal(anyhow::Error),
}

impl ApiError {
    /// A problem of `kind` about `task_id` with `detail`.
    pub fn problem(
        kind: DapProblemType,
        task_id: Option<&TaskId>,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError::Problem {
            kind,
            task_id: task_id.copied(),
            detail: detail.into(),
        }
    }

    /// The short name metrics count this error under.
    pub fn metric_label(&self) -> String {
        match self {
            ApiError::Problem { kind, .. } => kind
                .type_uri()
                .rsplit(':')
                .next()
                .unwrap_or("problem")
                .to_owned(),
            ApiError::Status(status, _) => status.as_u16().to_string(),
            ApiError::Internal(_) => "internal".to_owned(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::Internal(e)
    }
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    taskid: Option<String>,
    detail: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Problem {
                kind,
                task_id,
                detail,
            } => {
                let status = if kind == DapProblemType::UnauthorizedRequest {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::BAD_REQUEST
                };
                let body = serde_json::to_vec(&Document {
                    kind: kind.type_uri(),
                    title: kind.description(),
                    status: status.as_u16(),
                    taskid: task_id.map(|t| t.to_string()),
                    detail: &detail,
                })
                .unwrap_or_default();
                let mut response = (status, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(PROBLEM_MEDIA_TYPE),
                );
                response
            }
            ApiError::Status(status, reason) => {
                let mut response = (status, reason).into_response();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
            ApiError::Internal(e) => {
                eprintln!("tally-server: internal error: {e:#}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: see the aggregator's log",
                )
                    .into_response()
            }
        }
    }
}
