//! What a method answers with when it succeeds (its errors are JSON-RPC errors, answered
//! through [`crate::error::EdgeError`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bindu_schemas::jsonrpc::{JsonRpcError, RequestId, SuccessResponse};
use serde::Serialize;

use crate::error::json_response;

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

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Json(body) => json_response(StatusCode::OK, body),
            Reply::Stream(resp) => resp,
        }
    }
}
