//! What a method answers with when it succeeds (its errors are JSON-RPC errors, answered
//! through [`crate::error::EdgeError`]), in the wire form of the call's protocol version.
//!
//! Handlers build an [`Answer`] from internal (0.3-shaped) objects; [`ok`] writes it as
//! the call asks: 0.3 JSON-RPC, 1.0 JSON-RPC (converted by [`bindu_schemas::a2a10`]), or
//! 1.0 HTTP+JSON (the same 1.0 object, without the JSON-RPC envelope).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bindu_schemas::a2a10;
use bindu_schemas::jsonrpc::{JsonRpcError, RequestId, SuccessResponse};
use bindu_schemas::{ListTasksResult, Task, TaskPushNotificationConfig};
use serde::Serialize;

use crate::error::json_response;
use crate::version::Version;

/// Who asked, in which protocol version and binding: what every answer (and stream
/// event) needs.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub id: RequestId,
    pub version: Version,
    pub binding: Binding,
}

/// How a call came, and so how its answers are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    /// `POST /`: answers are JSON-RPC responses echoing the request id.
    JsonRpc,
    /// A2A 1.0 HTTP+JSON ([`crate::rest`]): answers are the bare result objects, and
    /// errors HTTP statuses with a `google.rpc.Status` body.
    Rest,
}

/// What a method answers with, before it is written in the call's version.
pub(crate) enum Answer {
    /// A task (`tasks/get`, `tasks/cancel`).
    Task(Task),
    /// The task a message created or continued (1.0 wraps it: `{"task": …}`).
    Sent(Task),
    /// A page of tasks, of at most `page_size`, and (1.0 only) how many tasks all the
    /// listing's pages hold.
    Tasks(ListTasksResult, u32, Option<u64>),
    PushConfig(TaskPushNotificationConfig),
    PushConfigs(Vec<TaskPushNotificationConfig>),
    /// A push config was deleted.
    Deleted,
    /// The same in every version (the agent card, Bindu's extensions).
    Json(serde_json::Value),
}

/// What a method answers with.
pub(crate) enum Reply {
    /// A serialised success response.
    Json(Vec<u8>),
    /// A success response to a paid request whose payment settled: the settlement rides
    /// in `PAYMENT-RESPONSE` (base64 JSON).
    Paid(Vec<u8>, String),
    /// An SSE stream (already a full response).
    Stream(Response),
}

/// The success response carrying `result`, framed for the call's binding.
fn framed<T: Serialize>(call: &Call, result: &T) -> Result<Reply, JsonRpcError> {
    match call.binding {
        Binding::JsonRpc => serde_json::to_vec(&SuccessResponse::new(&call.id, result)),
        Binding::Rest => serde_json::to_vec(result),
    }
    .map(Reply::Json)
    .map_err(|e| JsonRpcError::internal(format!("could not serialise the result: {e}")))
}

/// Any value answered as it serialises, in every version.
pub(crate) fn json<T: Serialize>(result: &T) -> Result<Answer, JsonRpcError> {
    serde_json::to_value(result)
        .map(Answer::Json)
        .map_err(|e| JsonRpcError::internal(format!("could not serialise the result: {e}")))
}

/// The success response to `call`.
pub(crate) fn ok(call: &Call, answer: Answer) -> Result<Reply, JsonRpcError> {
    // The version a push config was made in is the store's record, not part of the config.
    let answer = match answer {
        Answer::PushConfig(c) => Answer::PushConfig(unversioned(c)),
        Answer::PushConfigs(c) => Answer::PushConfigs(c.into_iter().map(unversioned).collect()),
        other => other,
    };
    match call.version {
        Version::V03 => match answer {
            Answer::Task(t) | Answer::Sent(t) => framed(call, &t),
            Answer::Tasks(page, _, _) => framed(call, &page),
            Answer::PushConfig(c) => framed(call, &c),
            Answer::PushConfigs(c) => framed(call, &c),
            Answer::Deleted => framed(call, &serde_json::Value::Null),
            Answer::Json(v) => framed(call, &v),
        },
        Version::V10 => match answer {
            Answer::Task(t) => framed(call, &a2a10::Task::from(t)),
            Answer::Sent(t) => framed(call, &a2a10::SendMessageResponse::Task(t.into())),
            Answer::Tasks(page, page_size, total) => framed(
                call,
                &a2a10::ListTasksResponse {
                    tasks: page.tasks.into_iter().map(a2a10::Task::from).collect(),
                    next_page_token: page.next_cursor.unwrap_or_default(),
                    page_size: page_size.into(),
                    // A 1.0 listing always counts (`tasks::list`).
                    total_size: total.map_or(0, |n| n.min(i32::MAX as u64) as i64),
                },
            ),
            Answer::PushConfig(c) => framed(call, &a2a10::TaskPushNotificationConfig::from(c)),
            Answer::PushConfigs(c) => framed(
                call,
                &a2a10::ListTaskPushNotificationConfigsResponse {
                    configs: c
                        .into_iter()
                        .map(a2a10::TaskPushNotificationConfig::from)
                        .collect(),
                    next_page_token: String::new(),
                },
            ),
            // google.protobuf.Empty.
            Answer::Deleted => framed(call, &serde_json::json!({})),
            Answer::Json(v) => framed(call, &v),
        },
    }
}

fn unversioned(mut c: TaskPushNotificationConfig) -> TaskPushNotificationConfig {
    c.push_notification_config.a2a_version = None;
    c
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Json(body) => json_response(StatusCode::OK, body),
            Reply::Paid(body, receipt) => {
                let mut resp = json_response(StatusCode::OK, body);
                if let Ok(v) = axum::http::HeaderValue::from_str(&receipt) {
                    resp.headers_mut().insert(
                        axum::http::HeaderName::from_static(crate::payments::PAYMENT_RESPONSE),
                        v,
                    );
                }
                resp
            }
            Reply::Stream(resp) => resp,
        }
    }
}
