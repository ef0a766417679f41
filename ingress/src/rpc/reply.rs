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
    /// A success response to a paid request whose payment settled: the settlement rides
    /// in `PAYMENT-RESPONSE` (base64 JSON).
    Paid(Vec<u8>, String),
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
