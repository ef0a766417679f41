//! `GET /did/resolve?did=` and `POST /did/resolve {"did": …}`: the agent's own W3C DID
//! document. Only the agent's DIDs resolve here; anything else is 404.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bindu_schemas::jsonrpc::{code, ErrorResponse, JsonRpcError, RequestId};
use serde::Deserialize;

use crate::app::Ingress;

/// What the ingress knows about the agent's identity.
#[derive(Debug, Clone)]
pub struct DidInfo {
    /// The agent's DID (`did:bindu:…` or `did:key:…`).
    pub did: String,
    /// Other DIDs of the same key (its `did:key`), which resolve to the same document.
    pub aliases: Vec<String>,
    /// The W3C DID document.
    pub document: serde_json::Value,
}

#[derive(Deserialize)]
pub(crate) struct DidQuery {
    did: Option<String>,
}

fn error(status: StatusCode, code: i32, message: String) -> Response {
    (
        status,
        Json(ErrorResponse::new(
            RequestId::Null,
            JsonRpcError::new(code, message),
        )),
    )
        .into_response()
}

fn resolve(app: &Ingress, did: Option<String>) -> Response {
    let Some(info) = &app.inner.did else {
        return error(
            StatusCode::NOT_FOUND,
            code::INVALID_PARAMS,
            "this agent has no DID".into(),
        );
    };
    let Some(did) = did.map(|d| d.trim().to_string()).filter(|d| !d.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            code::INVALID_PARAMS,
            "`did` is required".into(),
        );
    };
    if did == info.did || info.aliases.contains(&did) {
        return Json(info.document.clone()).into_response();
    }
    error(
        StatusCode::NOT_FOUND,
        code::INVALID_PARAMS,
        format!("DID {did:?} is not served here; this agent is {}", info.did),
    )
}

pub(crate) async fn resolve_get(State(app): State<Ingress>, Query(q): Query<DidQuery>) -> Response {
    resolve(&app, q.did)
}

pub(crate) async fn resolve_post(State(app): State<Ingress>, body: Bytes) -> Response {
    if body.len() > 64 * 1024 {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            "body too large".into(),
        );
    }
    match serde_json::from_slice::<DidQuery>(&body) {
        Ok(q) => resolve(&app, q.did),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            code::PARSE_ERROR,
            format!("expected {{\"did\": \"…\"}}: {e}"),
        ),
    }
}
