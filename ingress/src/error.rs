//! The one place where what goes wrong at the edge becomes an HTTP answer.
//!
//! [`EdgeError`] is every refusal the ingress gives, and its [`IntoResponse`] is the table of
//! HTTP statuses, JSON-RPC codes, headers and body shapes; handlers and layers only say
//! *what* went wrong. [`store_error`] and [`bus_error`] turn internal errors into JSON-RPC
//! errors. Clients get a precise code and a useful sentence; logs get the cause.
//!
//! | refusal | HTTP | body |
//! |---|---|---|
//! | a JSON-RPC error (envelope, method, params, the method itself) | 200 | JSON-RPC, id echoed |
//! | the same on an HTTP+JSON route (A2A 1.0) | 400, 404, 409, … ([`crate::rest::error`]) | `google.rpc.Status` |
//! | body over `server.max_body_bytes` | 413 | -32600 (`Connection: close` if not drained) |
//! | body unreadable | 400 | -32700 |
//! | body not whole within `server.body_timeout_secs` | 408 + `Connection: close` | -32600 |
//! | `POST /` without a JSON `Content-Type` | 415 | -32600 |
//! | `Host` not in `server.allowed_hosts` | 421 | -32600 |
//! | scope missing | 403 | -32013, id echoed |
//! | token missing / inactive, unusable, incomplete / expired | 401 + `WWW-Authenticate` | -32009 / -32010 / -32011 |
//! | authority down, replay guard full | 503 | -32603 |
//! | DID not admitted, certificate, signature | 403 | Bindu's `{"error", "reason"}` / `{"error", "details"}` |
//! | `/did/resolve` | 400, 404, 413 | -32602, -32700, -32600 |
//! | unknown skill, skill without documentation file | 404 | -32030 |
//! | private card for a caller `agent.allowed_dids` does not list | 403 | -32013, id echoed |
//! | negotiation: bad field / not JSON / bus down | 400 / 415 / 503 | `{"error", "field"}` / `{"error"}` |
//! | no route | 404 | `{"error", "hint"}` |
//! | no payment, or a refused one (a priced agent) | 402 + `PAYMENT-REQUIRED` | x402 `PaymentRequired` |
//! | payment replay guard or facilitator unavailable | 503 | -32603 |
//! | work queue over `limits.queue_limit` or full, caller over its rate or open tasks | 429 + `Retry-After` | -32029 (`data.reason`, `data.retryAfter`), id echoed |

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bindu_engine::{BusError, StoreError};
use bindu_schemas::jsonrpc::{code, ErrorResponse, JsonRpcError, Method, RequestId};
use serde_json::json;

/// Every refusal of the edge; see the module table for what each one answers.
#[derive(Debug)]
pub enum EdgeError {
    /// A JSON-RPC error (envelope, method, params or the method's own): HTTP 200.
    Rpc(ErrorResponse),
    /// The same errors met on an A2A 1.0 HTTP+JSON route, their code in 1.0's table: the
    /// status and `google.rpc.Status` body of [`crate::rest::error`]'s table.
    Rest(JsonRpcError),
    /// Too many requests ([`crate::limits::Refusal`], -32029): HTTP 429 with `Retry-After`
    /// taken from the error's `data.retryAfter`.
    TooManyRequests(ErrorResponse),
    /// The request body passed `limit` bytes. `drained`: the rest of it was read, so the
    /// connection can carry another request.
    BodyTooLarge {
        limit: usize,
        drained: bool,
    },
    /// The request body could not be read.
    BodyUnreadable(String),
    /// The request body did not arrive whole within `limit`.
    BodyTimedOut {
        limit: std::time::Duration,
    },
    /// `POST /` whose `Content-Type` is not JSON (`None`: no header). A browser page can send
    /// such a request to any origin without a CORS preflight.
    UnsupportedMediaType {
        content_type: Option<String>,
    },
    /// A `Host` this server does not answer for (a DNS-rebinding page, or a name missing from
    /// `server.allowed_hosts`).
    HostNotAllowed {
        host: String,
    },
    /// Per-method permissions are enforced and the token lacks `scope`.
    MissingScope {
        id: RequestId,
        method: Method,
        scope: &'static str,
    },
    /// No usable `Authorization: Bearer` header.
    TokenMissing,
    /// The authority answered, but not with something usable.
    TokenUnusable,
    /// The authority says the token is not active.
    TokenInactive,
    /// The token has no expiry or no client.
    TokenIncomplete,
    TokenExpired,
    /// An active token that cannot be used here: a refresh token, another audience's, one
    /// not valid yet (the reason says which).
    TokenNotUsable(&'static str),
    /// The token authority cannot be reached: nothing can be decided.
    AuthorityUnavailable,
    /// The replay guard holds as many signatures as it may.
    ReplayGuardFull,
    /// `AUTH__ALLOWED_DIDS` does not list the token's client.
    DidNotAdmitted,
    /// `MTLS__MODE=hybrid`: the client certificate names another DID than the token.
    CertificateDidMismatch {
        certificate_did: String,
    },
    /// No verified client certificate.
    CertificateMissing,
    /// A verified client certificate that names no DID.
    CertificateLacksDid,
    /// `MTLS__MODE=mtls`: `AUTH__ALLOWED_DIDS` does not list the certificate's DID.
    CertificateDidNotAdmitted,
    /// A DID request signature that does not verify; `did` is the `X-DID` header when read.
    Signature {
        reason: SignatureFailure,
        did: Option<String>,
    },
    /// `/did/resolve` on an agent without a DID.
    AgentHasNoDid,
    /// `/did/resolve` without a `did`.
    DidRequired,
    /// `/did/resolve` for a DID that is not this agent's.
    DidNotServed {
        did: String,
        agent_did: String,
    },
    /// `POST /did/resolve` with a body over its limit.
    DidBodyTooLarge,
    /// `POST /did/resolve` with a body that is not `{"did": "…"}`.
    DidBodyInvalid(String),
    /// `/agent/skills/{id}…` for an id no public skill has.
    SkillNotFound {
        id: String,
    },
    /// `/agent/skills/{id}/documentation` of a skill declared inline (no file).
    SkillHasNoDocumentation {
        id: String,
    },
    /// The private card (`agent/getAuthenticatedExtendedCard`, `/agent/private.json`) for a
    /// caller `agent.allowed_dids` does not list.
    PrivateCardRefused {
        id: RequestId,
        caller: String,
    },
    /// `POST /agent/negotiation` whose body is not declared JSON.
    NegotiationNotJson {
        content_type: Option<String>,
    },
    /// `POST /agent/negotiation` with a field that cannot be used.
    NegotiationRefused {
        field: String,
        message: String,
    },
    /// The queue depth negotiation needs could not be read (the bus is down).
    NegotiationUnavailable,
    /// A path no route serves.
    NoRoute {
        path: String,
    },
    /// A priced method without an acceptable payment: x402's 402 answer.
    PaymentRequired(Box<bindu_schemas::x402::PaymentRequired>),
    /// The payment could not be checked (replay guard or facilitator down).
    PaymentUnavailable(String),
}

/// Why a DID request signature was refused (the `reason` clients see).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFailure {
    MissingHeaders,
    DidMismatch,
    PublicKeyUnavailable,
    PayloadTooLarge,
    Invalid,
    Replayed,
}

impl SignatureFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFailure::MissingHeaders => "missing_signature_headers",
            SignatureFailure::DidMismatch => "did_mismatch",
            SignatureFailure::PublicKeyUnavailable => "public_key_unavailable",
            SignatureFailure::PayloadTooLarge => "payload_too_large",
            SignatureFailure::Invalid => "invalid_signature",
            SignatureFailure::Replayed => "replayed",
        }
    }
}

impl EdgeError {
    /// A method's JSON-RPC error, answering request `id`.
    pub fn rpc(id: RequestId, error: JsonRpcError) -> EdgeError {
        EdgeError::Rpc(ErrorResponse::new(id, error))
    }

    /// A refused DID request signature.
    pub fn signature(reason: SignatureFailure, did: Option<&str>) -> EdgeError {
        EdgeError::Signature {
            reason,
            did: did.map(str::to_string),
        }
    }
}

/// A JSON body with `status`.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `resp` with `Retry-After` when `error` is -32029 (too many requests): whole seconds from
/// its `data.retryAfter`, at least 1.
fn with_retry_after(mut resp: Response, error: &JsonRpcError) -> Response {
    if error.code == code::TOO_MANY_REQUESTS {
        let secs = error
            .data
            .as_ref()
            .and_then(|d| d.get("retryAfter"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1)
            .max(1);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// A JSON-RPC error body with an HTTP status other than 200.
fn rpc_refusal(status: StatusCode, id: RequestId, error: JsonRpcError) -> Response {
    json_response(status, ErrorResponse::new(id, error).to_json())
}

/// Bindu's own refusal bodies (not JSON-RPC), kept as its clients read them.
fn legacy(status: StatusCode, body: serde_json::Value) -> Response {
    // Serialising a JSON value cannot fail.
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

fn certificate_refusal(error: &str, reason: &str) -> Response {
    legacy(
        StatusCode::FORBIDDEN,
        json!({"error": error, "reason": reason}),
    )
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        use EdgeError as E;
        let unauthorized = |code: i32, message: &str| {
            let mut resp = rpc_refusal(
                StatusCode::UNAUTHORIZED,
                RequestId::Null,
                JsonRpcError::new(code, message),
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        };
        let unavailable = |message: &str| {
            rpc_refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                RequestId::Null,
                JsonRpcError::new(code::INTERNAL_ERROR, message),
            )
        };
        let null_id_refusal = |status: StatusCode, code: i32, message: String| {
            rpc_refusal(status, RequestId::Null, JsonRpcError::new(code, message))
        };
        match self {
            E::Rpc(e) => json_response(StatusCode::OK, e.to_json()),
            E::Rest(e) => with_retry_after(crate::rest::error::response(&e), &e),
            E::TooManyRequests(e) => with_retry_after(
                json_response(StatusCode::TOO_MANY_REQUESTS, e.to_json()),
                &e.error,
            ),
            E::BodyTooLarge { limit, drained } => {
                let mut resp = rpc_refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    RequestId::Null,
                    JsonRpcError::invalid_request(format!(
                        "the request body is larger than the {limit}-byte limit (server.max_body_bytes / BINDU_MAX_BODY_BYTES)"
                    )),
                );
                if !drained {
                    // The rest of the body was not read: this connection cannot carry
                    // another request.
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                resp
            }
            E::BodyUnreadable(why) => rpc_refusal(
                StatusCode::BAD_REQUEST,
                RequestId::Null,
                JsonRpcError::parse_error(format!("could not read the request body: {why}")),
            ),
            E::BodyTimedOut { limit } => {
                let mut resp = rpc_refusal(
                    StatusCode::REQUEST_TIMEOUT,
                    RequestId::Null,
                    JsonRpcError::invalid_request(format!(
                        "the request body did not arrive within {} s (server.body_timeout_secs / BINDU_BODY_TIMEOUT)",
                        limit.as_secs_f64()
                    )),
                );
                // The rest of the body may still come: the connection cannot be reused.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                resp
            }
            E::UnsupportedMediaType { content_type } => rpc_refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                RequestId::Null,
                JsonRpcError::invalid_request(format!(
                    "A2A requests (JSON-RPC and HTTP+JSON) must be sent with `Content-Type: application/json` (got {})",
                    content_type.map_or_else(|| "no Content-Type".to_string(), |c| format!("{c:?}"))
                )),
            ),
            E::HostNotAllowed { host } => rpc_refusal(
                StatusCode::MISDIRECTED_REQUEST,
                RequestId::Null,
                JsonRpcError::invalid_request(format!(
                    "this agent does not answer for the host {host:?}; add it to server.allowed_hosts / BINDU_ALLOWED_HOSTS (or set BINDU_DEPLOYMENT_URL)"
                )),
            ),
            E::MissingScope { id, method, scope } => rpc_refusal(
                StatusCode::FORBIDDEN,
                id,
                JsonRpcError::new(
                    code::INSUFFICIENT_PERMISSIONS,
                    format!("`{}` needs the scope `{scope}`", method.as_str()),
                ),
            ),
            E::TokenMissing => unauthorized(
                code::AUTHENTICATION_REQUIRED,
                "Authentication is required: send a valid token as `Authorization: Bearer <token>`",
            ),
            E::TokenUnusable => unauthorized(code::INVALID_TOKEN, "Token validation failed"),
            E::TokenInactive => unauthorized(
                code::INVALID_TOKEN,
                "Token is not active or has been revoked",
            ),
            E::TokenIncomplete => unauthorized(
                code::INVALID_TOKEN,
                "Token validation failed: the token has no expiry or no client",
            ),
            E::TokenExpired => unauthorized(code::TOKEN_EXPIRED, "Token has expired"),
            E::TokenNotUsable(why) => unauthorized(
                code::INVALID_TOKEN,
                &format!("Token cannot be used here: {why}"),
            ),
            E::AuthorityUnavailable => {
                unavailable("Authentication service temporarily unavailable; retry shortly")
            }
            E::ReplayGuardFull => {
                unavailable("Too many signed requests in the signature window; retry shortly")
            }
            E::DidNotAdmitted => legacy(
                StatusCode::FORBIDDEN,
                json!({"error": "DID not admitted"}),
            ),
            E::CertificateDidMismatch { certificate_did } => legacy(
                StatusCode::FORBIDDEN,
                json!({
                    "error": "The client certificate's DID does not match the token's client",
                    "reason": "certificate_did_mismatch",
                    "certificate_did": certificate_did,
                }),
            ),
            E::CertificateMissing => certificate_refusal(
                "A client certificate is required",
                "client_certificate_required",
            ),
            E::CertificateLacksDid => certificate_refusal(
                "Client certificate lacks an identifiable DID (a URI SAN or subject CN starting with did:)",
                "certificate_lacks_did",
            ),
            E::CertificateDidNotAdmitted => {
                certificate_refusal("DID not admitted", "did_not_admitted")
            }
            E::Signature { reason, did } => {
                let mut details = json!({"did_verified": false, "reason": reason.as_str()});
                if let Some(d) = did {
                    details["did"] = json!(d);
                }
                legacy(
                    StatusCode::FORBIDDEN,
                    json!({"error": "Invalid DID signature", "details": details}),
                )
            }
            E::AgentHasNoDid => null_id_refusal(
                StatusCode::NOT_FOUND,
                code::INVALID_PARAMS,
                "this agent has no DID".into(),
            ),
            E::DidRequired => null_id_refusal(
                StatusCode::BAD_REQUEST,
                code::INVALID_PARAMS,
                "`did` is required".into(),
            ),
            E::DidNotServed { did, agent_did } => null_id_refusal(
                StatusCode::NOT_FOUND,
                code::INVALID_PARAMS,
                format!("DID {did:?} is not served here; this agent is {agent_did}"),
            ),
            E::DidBodyTooLarge => null_id_refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                code::INVALID_REQUEST,
                "body too large".into(),
            ),
            E::DidBodyInvalid(why) => null_id_refusal(
                StatusCode::BAD_REQUEST,
                code::PARSE_ERROR,
                format!("expected {{\"did\": \"…\"}}: {why}"),
            ),
            E::PaymentRequired(body) => crate::payments::payment_required_response(&body),
            E::PaymentUnavailable(why) => unavailable(&why),
            E::SkillNotFound { id } => null_id_refusal(
                StatusCode::NOT_FOUND,
                code::SKILL_NOT_FOUND,
                format!("no skill has the id {id:?}; GET /agent/skills lists them"),
            ),
            E::SkillHasNoDocumentation { id } => null_id_refusal(
                StatusCode::NOT_FOUND,
                code::SKILL_NOT_FOUND,
                format!("skill {id:?} was declared inline and has no documentation file"),
            ),
            E::PrivateCardRefused { id, caller } => rpc_refusal(
                StatusCode::FORBIDDEN,
                id,
                JsonRpcError::new(
                    code::INSUFFICIENT_PERMISSIONS,
                    format!("the private card is shown to the DIDs agent.allowed_dids lists; {caller} is not one of them"),
                ),
            ),
            E::NegotiationNotJson { content_type } => legacy(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({
                    "error": format!(
                        "send the negotiation request as JSON with `Content-Type: application/json` (got {})",
                        content_type.map_or_else(|| "no Content-Type".to_string(), |c| format!("{c:?}"))
                    ),
                }),
            ),
            E::NegotiationRefused { field, message } => legacy(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("`{field}` {message}"), "field": field}),
            ),
            E::NegotiationUnavailable => legacy(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the agent cannot read its queue depth (the task bus is unavailable); retry shortly"}),
            ),
            E::NoRoute { path } => legacy(
                StatusCode::NOT_FOUND,
                json!({
                    "error": format!("no route for {path}"),
                    "hint": "A2A JSON-RPC requests go to POST /; the agent card is at /.well-known/agent-card.json",
                }),
            ),
        }
    }
}

pub fn store_error(e: StoreError) -> JsonRpcError {
    match e {
        StoreError::NotFound(id) => JsonRpcError::task_not_found(&id),
        StoreError::ContextNotFound(id) => JsonRpcError::context_not_found(&id),
        StoreError::Immutable { task_id, state } => {
            JsonRpcError::task_immutable(&task_id, state.as_str())
        }
        StoreError::Busy { task_id, state } => JsonRpcError::invalid_params(format!(
            "task {task_id} is {state}; send a follow-up only after it asks for input, \
             or start a new task in the same context"
        )),
        StoreError::Invalid(msg) => JsonRpcError::invalid_params(msg),
        // `message/send` answers a resent message with its first task; anything else that
        // meets a claimed message says where it went.
        StoreError::Duplicate { task_id } => JsonRpcError::invalid_params(format!(
            "this messageId was sent already, to task {task_id}; read it with tasks/get or send a new messageId"
        )),
        StoreError::Conflict { task_id, state } => JsonRpcError::new(
            code::INTERNAL_ERROR,
            format!("task {task_id} changed concurrently (now {state}); retry"),
        ),
        StoreError::IllegalTransition { task_id, from, to } => {
            tracing::error!(%task_id, %from, %to, "illegal transition attempted by ingress");
            JsonRpcError::internal("the task cannot make that transition")
        }
        StoreError::Unavailable(cause) => {
            tracing::warn!(%cause, "task store unavailable");
            JsonRpcError::internal("the task store is unavailable; retry shortly")
        }
        StoreError::Other(cause) => {
            tracing::error!(error = %cause, "task store failure");
            JsonRpcError::internal("the task store failed; see the server log")
        }
    }
}

pub fn bus_error(e: BusError) -> JsonRpcError {
    if let BusError::Full = e {
        tracing::info!("the bus's work queue is full: a message was refused (HTTP 429)");
        return crate::limits::Refusal::BusFull {
            retry_after: std::time::Duration::from_secs(1),
        }
        .error();
    }
    tracing::warn!(error = %e, "bus failure");
    JsonRpcError::internal("the task bus is unavailable; retry shortly")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::body::to_bytes;

    async fn answer(e: EdgeError) -> (u16, serde_json::Value, Response) {
        let resp = e.into_response();
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(parts.headers[header::CONTENT_TYPE], "application/json");
        (
            status,
            serde_json::from_slice(&body).unwrap(),
            Response::from_parts(parts, axum::body::Body::empty()),
        )
    }

    #[tokio::test]
    async fn every_refusal_has_its_status_and_code() {
        let id = RequestId::Number(7.into());
        for (e, status, code) in [
            (
                EdgeError::rpc(id.clone(), JsonRpcError::task_not_found("t")),
                200,
                code::TASK_NOT_FOUND,
            ),
            (
                EdgeError::BodyTooLarge {
                    limit: 10,
                    drained: true,
                },
                413,
                code::INVALID_REQUEST,
            ),
            (
                EdgeError::BodyUnreadable("x".into()),
                400,
                code::PARSE_ERROR,
            ),
            (
                EdgeError::BodyTimedOut {
                    limit: std::time::Duration::from_secs(1),
                },
                408,
                code::INVALID_REQUEST,
            ),
            (
                EdgeError::UnsupportedMediaType {
                    content_type: Some("text/plain".into()),
                },
                415,
                code::INVALID_REQUEST,
            ),
            (
                EdgeError::UnsupportedMediaType { content_type: None },
                415,
                code::INVALID_REQUEST,
            ),
            (
                EdgeError::HostNotAllowed {
                    host: "evil.example".into(),
                },
                421,
                code::INVALID_REQUEST,
            ),
            (
                EdgeError::MissingScope {
                    id: id.clone(),
                    method: Method::MessageSend,
                    scope: "agent:write",
                },
                403,
                code::INSUFFICIENT_PERMISSIONS,
            ),
            (EdgeError::TokenMissing, 401, code::AUTHENTICATION_REQUIRED),
            (EdgeError::TokenUnusable, 401, code::INVALID_TOKEN),
            (EdgeError::TokenInactive, 401, code::INVALID_TOKEN),
            (EdgeError::TokenIncomplete, 401, code::INVALID_TOKEN),
            (EdgeError::TokenExpired, 401, code::TOKEN_EXPIRED),
            (EdgeError::TokenNotUsable("x"), 401, code::INVALID_TOKEN),
            (EdgeError::AuthorityUnavailable, 503, code::INTERNAL_ERROR),
            (EdgeError::ReplayGuardFull, 503, code::INTERNAL_ERROR),
            (
                EdgeError::PaymentUnavailable("x".into()),
                503,
                code::INTERNAL_ERROR,
            ),
            (EdgeError::AgentHasNoDid, 404, code::INVALID_PARAMS),
            (EdgeError::DidRequired, 400, code::INVALID_PARAMS),
            (
                EdgeError::DidNotServed {
                    did: "did:x".into(),
                    agent_did: "did:y".into(),
                },
                404,
                code::INVALID_PARAMS,
            ),
            (EdgeError::DidBodyTooLarge, 413, code::INVALID_REQUEST),
            (
                EdgeError::DidBodyInvalid("x".into()),
                400,
                code::PARSE_ERROR,
            ),
            (
                EdgeError::SkillNotFound { id: "x".into() },
                404,
                code::SKILL_NOT_FOUND,
            ),
            (
                EdgeError::SkillHasNoDocumentation { id: "x".into() },
                404,
                code::SKILL_NOT_FOUND,
            ),
            (
                EdgeError::PrivateCardRefused {
                    id: id.clone(),
                    caller: "did:x".into(),
                },
                403,
                code::INSUFFICIENT_PERMISSIONS,
            ),
        ] {
            let what = format!("{e:?}");
            let (got, body, resp) = answer(e).await;
            assert_eq!(got, status, "{what}");
            assert_eq!(body["error"]["code"], code, "{what}");
            assert_eq!(body["jsonrpc"], "2.0", "{what}");
            // Only a refused token asks for one.
            assert_eq!(
                resp.headers().contains_key(header::WWW_AUTHENTICATE),
                status == 401,
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn method_errors_and_scope_refusals_echo_the_request_id() {
        let id = RequestId::Number(7.into());
        let (_, body, _) = answer(EdgeError::rpc(id.clone(), JsonRpcError::internal("x"))).await;
        assert_eq!(body["id"], 7);
        let (_, body, _) = answer(EdgeError::MissingScope {
            id,
            method: Method::TasksGet,
            scope: "agent:read",
        })
        .await;
        assert_eq!(body["id"], 7);
        let (_, body, _) = answer(EdgeError::TokenMissing).await;
        assert_eq!(body["id"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn too_many_requests_is_a_429_with_retry_after_and_the_id_echoed() {
        let id = RequestId::Number(7.into());
        let refusal = crate::limits::Refusal::Rate {
            retry_after: std::time::Duration::from_millis(2500),
        };
        let (status, body, resp) = answer(EdgeError::TooManyRequests(ErrorResponse::new(
            id,
            refusal.error(),
        )))
        .await;
        assert_eq!(status, 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        assert_eq!(body["id"], 7);
        assert_eq!(body["error"]["code"], code::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["data"]["retryAfter"], 3);
        // The bus's own full queue answers the same way.
        let full = bus_error(BusError::Full);
        assert_eq!(full.code, code::TOO_MANY_REQUESTS);
        assert_eq!(full.data.unwrap()["reason"], "queue");
    }

    #[tokio::test]
    async fn an_undrained_oversized_body_closes_the_connection() {
        for drained in [true, false] {
            let (_, _, resp) = answer(EdgeError::BodyTooLarge { limit: 1, drained }).await;
            assert_eq!(
                resp.headers().get(header::CONNECTION).is_some(),
                !drained,
                "drained: {drained}"
            );
        }
    }

    #[tokio::test]
    async fn bindu_refusals_keep_their_shapes() {
        for (e, reason) in [
            (EdgeError::CertificateMissing, "client_certificate_required"),
            (EdgeError::CertificateLacksDid, "certificate_lacks_did"),
            (EdgeError::CertificateDidNotAdmitted, "did_not_admitted"),
            (
                EdgeError::CertificateDidMismatch {
                    certificate_did: "did:x".into(),
                },
                "certificate_did_mismatch",
            ),
        ] {
            let (status, body, _) = answer(e).await;
            assert_eq!(status, 403);
            assert_eq!(body["reason"], reason);
            assert!(body["error"].is_string());
        }
        let (status, body, _) = answer(EdgeError::DidNotAdmitted).await;
        assert_eq!((status, body.as_object().unwrap().len()), (403, 1));
        let (status, body, _) = answer(EdgeError::signature(
            SignatureFailure::Replayed,
            Some("did:x"),
        ))
        .await;
        assert_eq!(status, 403);
        assert_eq!(body["details"]["reason"], "replayed");
        assert_eq!(body["details"]["did"], "did:x");
        assert_eq!(body["details"]["did_verified"], false);
        let (_, body, _) =
            answer(EdgeError::signature(SignatureFailure::MissingHeaders, None)).await;
        assert!(body["details"].get("did").is_none());
        let (status, body, _) = answer(EdgeError::NegotiationRefused {
            field: "task_summary".into(),
            message: "is required".into(),
        })
        .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some("task_summary"))
        );
        let (status, _, _) = answer(EdgeError::NegotiationNotJson { content_type: None }).await;
        assert_eq!(status, 415);
        let (status, body, _) = answer(EdgeError::NegotiationUnavailable).await;
        assert_eq!(status, 503);
        assert!(body["error"].is_string());
        let (status, body, _) = answer(EdgeError::NoRoute { path: "/x".into() }).await;
        assert_eq!(status, 404);
        assert!(body["hint"].is_string());
    }
}
