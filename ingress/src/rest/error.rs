//! HTTP+JSON errors (A2A 1.0 §11.6, §5.4): an HTTP status and a `google.rpc.Status` body,
//!
//! ```json
//! {"error": {"code": 404, "status": "NOT_FOUND", "message": "…",
//!            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
//!                         "reason": "TASK_NOT_FOUND", "domain": "a2a-protocol.org",
//!                         "metadata": {}}]}}
//! ```
//!
//! made from the JSON-RPC error (in 1.0's codes) the shared method code raised. [`body`] is
//! the table below; [`recode`] gives refusals made before a handler ran (authentication,
//! body limits, the `Host` guard) the same form, keeping their status.
//!
//! | error (1.0 JSON-RPC code) | HTTP | `status` | `reason` |
//! |---|---|---|---|
//! | parse error (-32700), invalid request (-32600) | 400 | `INVALID_ARGUMENT` | `INVALID_REQUEST` |
//! | invalid params (-32602) | 400 | `INVALID_ARGUMENT` | `INVALID_PARAMS` |
//! | no such route or verb (-32601) | 404 | `NOT_FOUND` | `METHOD_NOT_FOUND` |
//! | task not found (-32001) | 404 | `NOT_FOUND` | `TASK_NOT_FOUND` |
//! | task not cancelable (-32002) | 409 | `FAILED_PRECONDITION` | `TASK_NOT_CANCELABLE` |
//! | push notifications not supported (-32003) | 400 | `UNIMPLEMENTED` | `PUSH_NOTIFICATION_NOT_SUPPORTED` |
//! | unsupported operation (-32004; a message to a finished task) | 400 | `UNIMPLEMENTED` | `UNSUPPORTED_OPERATION` |
//! | content type not supported (-32005) | 415 | `INVALID_ARGUMENT` | `CONTENT_TYPE_NOT_SUPPORTED` |
//! | invalid agent response (-32006) | 502 | `INTERNAL` | `INVALID_AGENT_RESPONSE` |
//! | extended card not configured (-32007) | 400 | `FAILED_PRECONDITION` | `EXTENDED_AGENT_CARD_NOT_CONFIGURED` |
//! | extension support required (-32008) | 400 | `FAILED_PRECONDITION` | `EXTENSION_SUPPORT_REQUIRED` |
//! | version not supported (-32009) | 400 | `UNIMPLEMENTED` | `VERSION_NOT_SUPPORTED` |
//! | authentication required, invalid / expired token, bad token signature (Bindu -32041…-32044) | 401 | `UNAUTHENTICATED` | `AUTHENTICATION_REQUIRED`, `INVALID_TOKEN`, `TOKEN_EXPIRED`, `INVALID_TOKEN_SIGNATURE` |
//! | insufficient permissions (Bindu -32045) | 403 | `PERMISSION_DENIED` | `INSUFFICIENT_PERMISSIONS` |
//! | context / skill not found (Bindu -32020 / -32030) | 404 | `NOT_FOUND` | `CONTEXT_NOT_FOUND` / `SKILL_NOT_FOUND` |
//! | too many requests (Bindu -32029, see [`crate::limits`]; with `Retry-After`) | 429 | `RESOURCE_EXHAUSTED` | `TOO_MANY_REQUESTS` |
//! | internal error (-32603) | 500 | `INTERNAL` | `INTERNAL_ERROR` |
//!
//! A payment request (HTTP 402) keeps x402's `PaymentRequired` body, which x402 clients
//! read; Bindu's DID-signature and certificate refusals (403) become status bodies whose
//! `ErrorInfo` carries their `reason`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bindu_schemas::jsonrpc::{code, ErrorResponse, JsonRpcError};
use serde_json::{json, Map, Value};

use crate::version::{code10, Version};

/// The HTTP status and `reason` of a JSON-RPC error code of 1.0's table.
fn classify(code: i32) -> (StatusCode, &'static str) {
    match code {
        code::PARSE_ERROR | code::INVALID_REQUEST => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        code::INVALID_PARAMS => (StatusCode::BAD_REQUEST, "INVALID_PARAMS"),
        code::METHOD_NOT_FOUND => (StatusCode::NOT_FOUND, "METHOD_NOT_FOUND"),
        code::TASK_NOT_FOUND => (StatusCode::NOT_FOUND, "TASK_NOT_FOUND"),
        code::TASK_NOT_CANCELABLE => (StatusCode::CONFLICT, "TASK_NOT_CANCELABLE"),
        code::PUSH_NOTIFICATION_NOT_SUPPORTED => {
            (StatusCode::BAD_REQUEST, "PUSH_NOTIFICATION_NOT_SUPPORTED")
        }
        code10::UNSUPPORTED_OPERATION => (StatusCode::BAD_REQUEST, "UNSUPPORTED_OPERATION"),
        code::CONTENT_TYPE_NOT_SUPPORTED => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "CONTENT_TYPE_NOT_SUPPORTED",
        ),
        code::INVALID_AGENT_RESPONSE => (StatusCode::BAD_GATEWAY, "INVALID_AGENT_RESPONSE"),
        code::EXTENDED_CARD_NOT_CONFIGURED => (
            StatusCode::BAD_REQUEST,
            "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
        ),
        code10::EXTENSION_SUPPORT_REQUIRED => {
            (StatusCode::BAD_REQUEST, "EXTENSION_SUPPORT_REQUIRED")
        }
        code10::VERSION_NOT_SUPPORTED => (StatusCode::BAD_REQUEST, "VERSION_NOT_SUPPORTED"),
        code10::AUTHENTICATION_REQUIRED => (StatusCode::UNAUTHORIZED, "AUTHENTICATION_REQUIRED"),
        code10::INVALID_TOKEN => (StatusCode::UNAUTHORIZED, "INVALID_TOKEN"),
        code10::TOKEN_EXPIRED => (StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED"),
        code10::INVALID_TOKEN_SIGNATURE => (StatusCode::UNAUTHORIZED, "INVALID_TOKEN_SIGNATURE"),
        code10::INSUFFICIENT_PERMISSIONS => (StatusCode::FORBIDDEN, "INSUFFICIENT_PERMISSIONS"),
        code::CONTEXT_NOT_FOUND => (StatusCode::NOT_FOUND, "CONTEXT_NOT_FOUND"),
        code::SKILL_NOT_FOUND => (StatusCode::NOT_FOUND, "SKILL_NOT_FOUND"),
        code::TOO_MANY_REQUESTS => (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
    }
}

/// The `google.rpc.Code` name of an HTTP status (the `status` member).
fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 415 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        402 | 403 | 421 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

fn status_json(
    status: StatusCode,
    message: &str,
    reason: &str,
    metadata: Map<String, Value>,
) -> Vec<u8> {
    let body = json!({"error": {
        "code": status.as_u16(),
        "status": status_name(status),
        "message": message,
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "a2a-protocol.org",
            "metadata": metadata,
        }],
    }});
    // Serialising a JSON value cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The HTTP status and body of `error` (its code already in 1.0's table); `status`
/// overrides the table's status (a refusal that has its own).
pub(crate) fn body(error: &JsonRpcError, status: Option<StatusCode>) -> (StatusCode, Vec<u8>) {
    let (table, reason) = classify(error.code);
    let status = status.unwrap_or(table);
    let mut metadata = Map::new();
    // ErrorInfo metadata is a map of strings: structured error data rides as JSON text.
    if let Some(data) = &error.data {
        let text = match data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        metadata.insert("data".into(), Value::String(text));
    }
    (
        status,
        status_json(status, &error.message, reason, metadata),
    )
}

/// The response to `error` (its code already in 1.0's table).
pub(crate) fn response(error: &JsonRpcError) -> Response {
    let (status, body) = body(error, None);
    crate::error::json_response(status, body)
}

/// [`response`] with a status of its own.
pub(crate) fn response_with(status: StatusCode, error: &JsonRpcError) -> Response {
    let (status, body) = body(error, Some(status));
    crate::error::json_response(status, body)
}

/// Largest refusal body [`recode`] reads.
const MAX_REFUSAL_BYTES: usize = 64 * 1024;

/// A refusal made before an HTTP+JSON handler ran, in the binding's error form (see the
/// module header); status bodies and x402's 402 pass unchanged.
pub(crate) async fn recode(response: Response) -> Response {
    let status = response.status();
    if status.is_success() || status == StatusCode::PAYMENT_REQUIRED {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REFUSAL_BYTES).await else {
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let recoded = if bytes.is_empty() {
        let message = status.canonical_reason().unwrap_or("refused");
        let reason = classify_status(status);
        Some(status_json(status, message, reason, Map::new()))
    } else if let Ok(mut e) = serde_json::from_slice::<ErrorResponse>(&bytes) {
        e.error.code = Version::V10.code(e.error.code);
        let keep = (status != StatusCode::OK).then_some(status);
        let (status, body) = self::body(&e.error, keep);
        parts.status = status;
        Some(body)
    } else {
        legacy(status, &bytes)
    };
    let Some(recoded) = recoded else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(recoded))
}

/// Bindu's own refusal bodies (`{"error": "…", "reason": …}` or `{"error": "…",
/// "details": {"reason": …}}`) as a status body; `None` for anything else.
fn legacy(status: StatusCode, bytes: &[u8]) -> Option<Vec<u8>> {
    let Value::Object(mut fields) = serde_json::from_slice::<Value>(bytes).ok()? else {
        return None;
    };
    let Some(Value::String(message)) = fields.remove("error") else {
        return None;
    };
    let reason = fields
        .get("reason")
        .or_else(|| fields.get("details").and_then(|d| d.get("reason")))
        .and_then(Value::as_str)
        .map_or_else(
            || classify_status(status).to_string(),
            str::to_ascii_uppercase,
        );
    let metadata = fields
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, Value::String(text))
        })
        .collect();
    Some(status_json(status, &message, &reason, metadata))
}

/// A `reason` for a refusal that names none, from its status.
fn classify_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "AUTHENTICATION_REQUIRED",
        403 => "INSUFFICIENT_PERMISSIONS",
        404 | 405 => "METHOD_NOT_FOUND",
        400 | 408 | 413 | 415 | 421 => "INVALID_REQUEST",
        _ => "INTERNAL_ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(error: JsonRpcError) -> (u16, Value) {
        let (status, body) = body(&error, None);
        (status.as_u16(), serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn each_error_has_its_status_and_reason() {
        for (error, status, reason) in [
            (JsonRpcError::task_not_found("t"), 404, "TASK_NOT_FOUND"),
            (JsonRpcError::invalid_params("x"), 400, "INVALID_PARAMS"),
            (JsonRpcError::parse_error("x"), 400, "INVALID_REQUEST"),
            (
                JsonRpcError::task_not_cancelable("t", "completed"),
                409,
                "TASK_NOT_CANCELABLE",
            ),
            (
                JsonRpcError::new(code10::VERSION_NOT_SUPPORTED, "v"),
                400,
                "VERSION_NOT_SUPPORTED",
            ),
            (
                JsonRpcError::new(code10::AUTHENTICATION_REQUIRED, "a"),
                401,
                "AUTHENTICATION_REQUIRED",
            ),
            (JsonRpcError::internal("x"), 500, "INTERNAL_ERROR"),
        ] {
            let (got, body) = parsed(error);
            assert_eq!(got, status, "{body}");
            assert_eq!(body["error"]["code"], status);
            assert_eq!(body["error"]["details"][0]["reason"], reason, "{body}");
            assert_eq!(body["error"]["details"][0]["domain"], "a2a-protocol.org");
        }
    }

    #[test]
    fn bindu_refusal_bodies_keep_their_reason() {
        let body = legacy(
            StatusCode::FORBIDDEN,
            br#"{"error": "Invalid DID signature", "details": {"reason": "invalid_signature"}}"#,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(body["error"]["message"], "Invalid DID signature");
        assert_eq!(body["error"]["details"][0]["reason"], "INVALID_SIGNATURE");
        assert!(legacy(StatusCode::FORBIDDEN, b"[1]").is_none());
    }
}
