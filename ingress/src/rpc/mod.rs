//! `POST /`: the JSON-RPC endpoint.
//!
//! Order of checks: body size (HTTP 413) → JSON (-32700) → envelope (-32600) → method
//! (-32601) → params (-32602) → the method itself. Every JSON-RPC outcome is HTTP 200 and
//! echoes the request id (`null` when it could not be read).
//!
//! - `messages`: `message/send`, `message/stream`.
//! - `tasks`: `tasks/get|cancel|resubscribe|list|feedback`, `agent/getAuthenticatedExtendedCard`.
//! - `push`: `tasks/pushNotificationConfig/*`.
//! - `contexts`: `contexts/list|clear`.

mod contexts;
mod messages;
mod push;
mod tasks;

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bindu_schemas::jsonrpc::{
    parse_request, ErrorResponse, JsonRpcError, Method, Request, RequestId, SuccessResponse,
};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;

use crate::app::{Caller, Ingress};

/// What a method answers with.
pub(crate) enum Reply {
    /// A serialised success response.
    Json(Vec<u8>),
    /// An SSE stream (already a full response).
    Stream(Response),
}

pub(crate) fn ok<T: Serialize>(id: &RequestId, result: &T) -> Result<Reply, JsonRpcError> {
    serde_json::to_vec(&SuccessResponse::new(id, result))
        .map(Reply::Json)
        .map_err(|e| JsonRpcError::internal(format!("could not serialise the result: {e}")))
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Reads the body, refusing it once it passes `limit` bytes (without buffering it whole).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        let e = ErrorResponse::new(
            RequestId::Null,
            JsonRpcError::invalid_request(format!(
                "the request body is larger than the {limit}-byte limit (server.max_body_bytes / BINDU_MAX_BODY_BYTES)"
            )),
        );
        json_response(StatusCode::PAYLOAD_TOO_LARGE, e.to_json())
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => {
            let e = ErrorResponse::new(
                RequestId::Null,
                JsonRpcError::parse_error(format!("could not read the request body: {e}")),
            );
            Err(json_response(StatusCode::BAD_REQUEST, e.to_json()))
        }
    }
}

pub(crate) async fn handle(
    State(app): State<Ingress>,
    caller: Option<axum::Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = &app.inner.metrics;
    let _in_flight = metrics.in_flight();
    let started = Instant::now();
    let bytes = match read_body(body, &headers, app.inner.options.max_body_bytes).await {
        Ok(b) => b,
        Err(resp) => {
            metrics.observe(
                "invalid",
                Some(bindu_schemas::jsonrpc::code::INVALID_REQUEST),
                started,
            );
            return resp;
        }
    };
    let request = match parse_request(&bytes) {
        Ok(r) => r,
        Err(e) => {
            metrics.observe("invalid", Some(e.error.code), started);
            return json_response(StatusCode::OK, e.to_json());
        }
    };
    let caller = caller.map(|axum::Extension(Caller(c))| c);
    let method = request.method;
    let outcome = dispatch(&app, &request, caller).await;
    metrics.observe(
        method.as_str(),
        outcome.as_ref().err().map(|e| e.code),
        started,
    );
    match outcome {
        Ok(Reply::Json(body)) => json_response(StatusCode::OK, body),
        Ok(Reply::Stream(resp)) => resp,
        Err(error) => json_response(
            StatusCode::OK,
            ErrorResponse::new(request.id, error).to_json(),
        ),
    }
}

async fn dispatch(
    app: &Ingress,
    req: &Request<'_>,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    let id = &req.id;
    match req.method {
        Method::MessageSend => messages::send(app, id, req.params()?, caller, false).await,
        Method::MessageStream => messages::send(app, id, req.params()?, caller, true).await,
        Method::TasksGet => tasks::get(app, id, req.params()?, caller).await,
        Method::TasksCancel => tasks::cancel(app, id, req.params()?, caller).await,
        Method::TasksResubscribe => tasks::resubscribe(app, id, req.params()?, caller).await,
        Method::TasksList => tasks::list(app, id, req.params_or_default()?, caller).await,
        Method::TasksFeedback => tasks::feedback(app, id, req.params()?, caller).await,
        Method::GetAuthenticatedExtendedCard => tasks::extended_card(app, id),
        Method::PushConfigSet => push::set(app, id, req.params()?, caller).await,
        Method::PushConfigGet => push::get(app, id, req.params()?, caller).await,
        Method::PushConfigList => push::list(app, id, req.params()?, caller).await,
        Method::PushConfigDelete => push::delete(app, id, req.params()?, caller).await,
        Method::ContextsList => contexts::list(app, id, req.params_or_default()?, caller).await,
        Method::ContextsClear => contexts::clear(app, id, req.params()?, caller).await,
    }
}
