//! `GET /did/resolve?did=` and `POST /did/resolve {"did": …}`: the agent's own W3C DID
//! document. Only the agent's DIDs resolve here; anything else is 404. A `POST` body is
//! read up to 64 KiB.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::body::{read_limited, BodyError};
use crate::error::EdgeError;

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

/// Longest `POST /did/resolve` body.
const MAX_BODY: usize = 64 * 1024;

/// The agent's DID, the state of these routes.
type Agent = Option<Arc<DidInfo>>;

fn resolve(agent: &Agent, did: Option<String>) -> Result<Response, EdgeError> {
    let Some(info) = agent else {
        return Err(EdgeError::AgentHasNoDid);
    };
    let Some(did) = did.map(|d| d.trim().to_string()).filter(|d| !d.is_empty()) else {
        return Err(EdgeError::DidRequired);
    };
    if did == info.did || info.aliases.contains(&did) {
        return Ok(Json(info.document.clone()).into_response());
    }
    Err(EdgeError::DidNotServed {
        did,
        agent_did: info.did.clone(),
    })
}

pub(crate) async fn resolve_get(
    State(agent): State<Agent>,
    Query(q): Query<DidQuery>,
) -> Result<Response, EdgeError> {
    resolve(&agent, q.did)
}

pub(crate) async fn resolve_post(
    State(agent): State<Agent>,
    request: Request,
) -> Result<Response, EdgeError> {
    let (parts, body) = request.into_parts();
    let body = read_limited(body, &parts.headers, MAX_BODY)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { .. } => EdgeError::DidBodyTooLarge,
            BodyError::Unreadable(why) => EdgeError::BodyUnreadable(why),
            BodyError::TimedOut(limit) => EdgeError::BodyTimedOut { limit },
        })?;
    match serde_json::from_slice::<DidQuery>(&body) {
        Ok(q) => resolve(&agent, q.did),
        Err(e) => Err(EdgeError::DidBodyInvalid(e.to_string())),
    }
}
