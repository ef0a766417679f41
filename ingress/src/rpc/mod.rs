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
    code, parse_request, ErrorResponse, JsonRpcError, Method, Request, RequestId, SuccessResponse,
};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;

use crate::app::{Caller, GrantedScopes, Ingress};

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

/// After refusing an oversized body, how much more of it we read and discard so the client
/// (still writing) receives the 413 instead of a reset connection.
const DRAIN_MAX_BYTES: usize = 32 * 1024 * 1024;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(2);

fn too_large(limit: usize, drained: bool) -> Response {
    let e = ErrorResponse::new(
        RequestId::Null,
        JsonRpcError::invalid_request(format!(
            "the request body is larger than the {limit}-byte limit (server.max_body_bytes / BINDU_MAX_BODY_BYTES)"
        )),
    );
    let mut resp = json_response(StatusCode::PAYLOAD_TOO_LARGE, e.to_json());
    if !drained {
        // The rest of the body was not read: this connection cannot carry another request.
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// Reads and discards what is left of a refused body, within bounds.
/// Returns whether the body was read to its end (the connection can then be reused).
pub(crate) async fn drain(mut body: Body) -> bool {
    let work = async {
        let mut seen = 0usize;
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        seen += data.len();
                        if seen > DRAIN_MAX_BYTES {
                            return false;
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(DRAIN_MAX_TIME, work)
        .await
        .unwrap_or(false)
}

/// Reads the body, refusing it once it passes `limit` bytes (it is never buffered whole).
async fn read_body(mut body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let drained = drain(body).await;
        return Err(too_large(limit, drained));
    }
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let e = ErrorResponse::new(
                RequestId::Null,
                JsonRpcError::parse_error(format!("could not read the request body: {e}")),
            );
            json_response(StatusCode::BAD_REQUEST, e.to_json())
        })?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                let drained = drain(body).await;
                return Err(too_large(limit, drained));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

pub(crate) async fn handle(
    State(app): State<Ingress>,
    caller: Option<axum::Extension<Caller>>,
    scopes: Option<axum::Extension<GrantedScopes>>,
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
    if let Some(axum::Extension(GrantedScopes(granted))) = &scopes {
        let needed = required_scope(request.method);
        if !granted.iter().any(|s| s == needed) {
            metrics.observe(
                request.method.as_str(),
                Some(code::INSUFFICIENT_PERMISSIONS),
                started,
            );
            let e = ErrorResponse::new(
                request.id,
                JsonRpcError::new(
                    code::INSUFFICIENT_PERMISSIONS,
                    format!("`{}` needs the scope `{needed}`", request.method.as_str()),
                ),
            );
            return json_response(StatusCode::FORBIDDEN, e.to_json());
        }
    }
    // SSE reconnects carry the last event id the client saw (a task event sequence number).
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let method = request.method;
    let outcome = dispatch(&app, &request, caller, last_event_id).await;
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

/// The scope a method needs when permissions are enforced: reading needs `agent:read`,
/// everything that creates or changes state needs `agent:write`.
pub fn required_scope(method: Method) -> &'static str {
    match method {
        Method::TasksGet
        | Method::TasksList
        | Method::TasksResubscribe
        | Method::PushConfigGet
        | Method::PushConfigList
        | Method::ContextsList
        | Method::GetAuthenticatedExtendedCard => "agent:read",
        Method::MessageSend
        | Method::MessageStream
        | Method::TasksCancel
        | Method::TasksFeedback
        | Method::PushConfigSet
        | Method::PushConfigDelete
        | Method::ContextsClear => "agent:write",
    }
}

async fn dispatch(
    app: &Ingress,
    req: &Request<'_>,
    caller: Option<String>,
    last_event_id: Option<u64>,
) -> Result<Reply, JsonRpcError> {
    let id = &req.id;
    match req.method {
        Method::MessageSend => messages::send(app, id, req.params()?, caller, false).await,
        Method::MessageStream => messages::send(app, id, req.params()?, caller, true).await,
        Method::TasksGet => tasks::get(app, id, req.params()?, caller).await,
        Method::TasksCancel => tasks::cancel(app, id, req.params()?, caller).await,
        Method::TasksResubscribe => {
            tasks::resubscribe(app, id, req.params()?, caller, last_event_id).await
        }
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
