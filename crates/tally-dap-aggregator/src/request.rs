//! Checking a request to an aggregator and answering one, alike for both roles: each check
//! refuses with DAP's problem type (`invalidMessage`, `batchInvalid`, `unauthorizedRequest`)
//! and a detail that says what is wrong, so that the leader and the helper answer the same
//! mistake the same way.

use std::str::FromStr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tally_dap::draft::messages::{
    AggregateShareReq, AggregationJobInitializeReq, CollectionReq, DapProblemType, Decode,
    Interval, TaskId, TimeInterval,
};

use crate::auth;
use crate::batch;
use crate::problem::ApiError;
use crate::task::Task;

/// The request's `Content-Type` is exactly `want` (DAP's media types are compared whole).
pub fn check_media_type(
    headers: &HeaderMap,
    want: &str,
    task: Option<&TaskId>,
) -> Result<(), ApiError> {
    let got = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if got != want {
        return Err(ApiError::problem(
            DapProblemType::InvalidMessage,
            task,
            format!("Content-Type must be {want}"),
        ));
    }
    Ok(())
}

/// The request carries the peer's token (the leader's at the helper, the collector's at the
/// leader); `who` names the peer in the refusal.
pub fn check_peer(task: &Task, headers: &HeaderMap, who: &str) -> Result<(), ApiError> {
    if auth::is_authorized(headers, &task.peer_token_sha256) {
        Ok(())
    } else {
        Err(ApiError::problem(
            DapProblemType::UnauthorizedRequest,
            Some(&task.id),
            format!("the {who}'s token is missing or wrong"),
        ))
    }
}

/// An ID from the request's path (a task, job or collection job ID); `what` names it.
pub fn path_id<T: FromStr>(text: &str, task: Option<&TaskId>, what: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| {
        ApiError::problem(
            DapProblemType::InvalidMessage,
            task,
            format!("the path names no valid {what}"),
        )
    })
}

/// The body decoded as a DAP message; `what` names it in the refusal.
pub fn decode<T: Decode>(body: &[u8], task: &TaskId, what: &str) -> Result<T, ApiError> {
    T::get_decoded(body).map_err(|e| {
        ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(task),
            format!("the {what} does not decode: {e}"),
        )
    })
}

/// The body as the DAP message of `media_type` (the request's `Content-Type`, checked first).
pub fn decode_body<T: Decode>(
    headers: &HeaderMap,
    body: &[u8],
    media_type: &str,
    task: &TaskId,
    what: &str,
) -> Result<T, ApiError> {
    check_media_type(headers, media_type, Some(task))?;
    decode(body, task, what)
}

/// Prio3 takes no aggregation parameter: anything but the empty one is refused.
pub fn check_no_agg_param(parameter: &[u8], task: &TaskId) -> Result<(), ApiError> {
    if batch::check_empty_agg_param(parameter) {
        Ok(())
    } else {
        Err(ApiError::problem(
            DapProblemType::InvalidMessage,
            Some(task),
            "Prio3 takes no aggregation parameter",
        ))
    }
}

/// A request that carries an aggregation parameter: a job's initialisation, an aggregate share
/// request, a collection request.
pub trait WithAggParam: Decode {
    /// Its media type.
    const MEDIA_TYPE: &'static str;
    fn aggregation_parameter(&self) -> &[u8];
}

macro_rules! with_agg_param {
    ($($message:ident),+) => {$(
        impl WithAggParam for $message<TimeInterval> {
            const MEDIA_TYPE: &'static str = $message::<TimeInterval>::MEDIA_TYPE;
            fn aggregation_parameter(&self) -> &[u8] {
                $message::aggregation_parameter(self)
            }
        }
    )+};
}

with_agg_param!(
    AggregationJobInitializeReq,
    AggregateShareReq,
    CollectionReq
);

/// The body as the request `T` ([`decode_body`] with `T`'s media type), refused unless its
/// aggregation parameter is the empty one Prio3 takes.
pub fn decode_prio3_request<T: WithAggParam>(
    headers: &HeaderMap,
    body: &[u8],
    task: &TaskId,
    what: &str,
) -> Result<T, ApiError> {
    let request: T = decode_body(headers, body, T::MEDIA_TYPE, task, what)?;
    check_no_agg_param(request.aggregation_parameter(), task)?;
    Ok(request)
}

/// A batch interval starts and ends on multiples of the task's time precision.
pub fn check_batch(task: &Task, interval: &Interval) -> Result<(), ApiError> {
    if task.is_valid_batch(interval) {
        Ok(())
    } else {
        Err(ApiError::problem(
            DapProblemType::BatchInvalid,
            Some(&task.id),
            "the interval must start and end on multiples of the time precision",
        ))
    }
}

/// An answer with `body` as a DAP message of `media_type`.
pub fn encoded(status: StatusCode, body: Vec<u8>, media_type: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    response
}
