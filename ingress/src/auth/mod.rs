//! Authentication of JSON-RPC requests (`AUTH__ENABLED=true`).
//!
//! The layer sits on the `POST /` route only, so every other path (card, `/did/resolve`,
//! health, metrics) is public by construction: the router decides, not a second path matcher.
//!
//! In order, first failure wins:
//! 1. `Authorization: Bearer <token>` present, else 401 / -32009.
//! 2. Token introspected by the [`TokenAuthority`] (cached, see [`cache`]): authority down →
//!    503 / -32603; inactive or malformed answer → 401 / -32010; expired → 401 / -32011.
//! 3. `AUTH__ALLOWED_DIDS` set and the client not in it → 403 "DID not admitted".
//! 4. A client id starting with `did:` must sign the request ([`signature`]): 403 with a
//!    `reason` on failure.
//! 5. The caller (the token's client id) is attached to the request: tasks and contexts are
//!    owned by it.
//!
//! - `hydra`: the Ory Hydra admin API as the [`TokenAuthority`].
//! - `cache`: bounded TTL caches for introspections and client keys, and the replay guard.

pub mod cache;
pub mod hydra;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bindu_schemas::jsonrpc::{code, ErrorResponse, JsonRpcError, RequestId};
use sha2::{Digest, Sha256};

use crate::app::{Caller, GrantedScopes};

/// What the authority says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    pub client_id: Option<String>,
    pub sub: Option<String>,
    /// Expiry, unix seconds; `None` when absent or not an integer.
    pub exp: Option<i64>,
    pub scopes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// Unreachable, timed out or answering 5xx: nothing can be decided, nothing is cached.
    #[error("authentication service unavailable: {0}")]
    Unavailable(String),
    /// It answered, but not with something we can use.
    #[error("unusable answer from the authentication service: {0}")]
    Invalid(String),
}

/// The port to the OAuth2 server (the consumer owns it; Hydra is one implementation).
#[async_trait]
pub trait TokenAuthority: Send + Sync + 'static {
    async fn introspect(&self, token: &str) -> Result<Introspection, AuthorityError>;
    /// The client's Ed25519 public key (base58), `None` when it has none.
    async fn client_public_key(&self, client_id: &str) -> Result<Option<String>, AuthorityError>;
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub allowed_dids: Vec<String>,
    pub cache_ttl: Duration,
    pub sensitive_scopes: Vec<String>,
    pub signature_window: Duration,
    pub replay_guard: bool,
    /// Enforce `agent:read` / `agent:write` per method (403, -32013).
    pub require_permissions: bool,
}

/// The authentication layer's state.
#[derive(Clone)]
pub struct Auth {
    authority: Arc<dyn TokenAuthority>,
    settings: Arc<AuthSettings>,
    tokens: Arc<cache::TtlCache<Introspection>>,
    keys: Arc<cache::TtlCache<Option<String>>>,
    replays: Arc<cache::TtlCache<()>>,
}

/// Most entries in each cache.
const CACHE_CAPACITY: usize = 10_000;
/// Longest accepted Authorization header.
const MAX_TOKEN_LEN: usize = 8 * 1024;

impl Auth {
    pub fn new(authority: Arc<dyn TokenAuthority>, settings: AuthSettings) -> Auth {
        Auth {
            authority,
            settings: Arc::new(settings),
            tokens: Arc::new(cache::TtlCache::new(CACHE_CAPACITY)),
            keys: Arc::new(cache::TtlCache::new(CACHE_CAPACITY)),
            replays: Arc::new(cache::TtlCache::new(CACHE_CAPACITY * 10)),
        }
    }

    async fn introspect(&self, token: &str) -> Result<Introspection, AuthorityError> {
        let key = hex(&Sha256::digest(token.as_bytes()));
        if let Some(hit) = self.tokens.get(&key) {
            return Ok(hit);
        }
        let answer = self.authority.introspect(token).await?;
        let sensitive = answer
            .scopes
            .iter()
            .any(|s| self.settings.sensitive_scopes.contains(s));
        if let (true, Some(exp), false) = (answer.active, answer.exp, sensitive) {
            let left = exp.saturating_sub(now());
            if left > 0 {
                let ttl = self
                    .settings
                    .cache_ttl
                    .min(Duration::from_secs(left as u64));
                self.tokens.insert(key, answer.clone(), ttl);
            }
        }
        Ok(answer)
    }

    async fn public_key(&self, client_id: &str) -> Result<Option<String>, AuthorityError> {
        if let Some(hit) = self.keys.get(client_id) {
            return Ok(hit);
        }
        let key = self.authority.client_public_key(client_id).await?;
        if key.is_some() {
            self.keys
                .insert(client_id.to_string(), key.clone(), self.settings.cache_ttl);
        }
        Ok(key)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn rpc_error(status: StatusCode, code: i32, message: &str) -> Response {
    let body = ErrorResponse::new(RequestId::Null, JsonRpcError::new(code, message)).to_json();
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

fn forbidden(body: serde_json::Value) -> Response {
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

fn bearer(req: &Request) -> Option<String> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() || value.len() > MAX_TOKEN_LEN {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// The axum middleware (`from_fn_with_state`).
pub async fn layer(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        return refuse(
            req,
            rpc_error(
                StatusCode::UNAUTHORIZED,
                code::AUTHENTICATION_REQUIRED,
                "Authentication is required: send a valid token as `Authorization: Bearer <token>`",
            ),
        )
        .await;
    };
    let info = match auth.introspect(&token).await {
        Ok(i) => i,
        Err(AuthorityError::Unavailable(e)) => {
            tracing::warn!(error = %e, "token introspection unavailable");
            return refuse(
                req,
                rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    code::INTERNAL_ERROR,
                    "Authentication service temporarily unavailable; retry shortly",
                ),
            )
            .await;
        }
        Err(AuthorityError::Invalid(e)) => {
            tracing::info!(error = %e, "token introspection returned an unusable answer");
            return rpc_error(
                StatusCode::UNAUTHORIZED,
                code::INVALID_TOKEN,
                "Token validation failed",
            );
        }
    };
    if !info.active {
        return rpc_error(
            StatusCode::UNAUTHORIZED,
            code::INVALID_TOKEN,
            "Token is not active or has been revoked",
        );
    }
    let (Some(exp), Some(client)) = (
        info.exp,
        info.client_id.clone().or_else(|| info.sub.clone()),
    ) else {
        return refuse(
            req,
            rpc_error(
                StatusCode::UNAUTHORIZED,
                code::INVALID_TOKEN,
                "Token validation failed: the token has no expiry or no client",
            ),
        )
        .await;
    };
    if exp < now() {
        return rpc_error(
            StatusCode::UNAUTHORIZED,
            code::TOKEN_EXPIRED,
            "Token has expired",
        );
    }
    if !auth.settings.allowed_dids.is_empty() && !auth.settings.allowed_dids.contains(&client) {
        return refuse(
            req,
            forbidden(serde_json::json!({"error": "DID not admitted"})),
        )
        .await;
    }
    let mut req = req;
    if client.starts_with("did:") {
        req = match signature::verify(&auth, &client, req).await {
            Ok(req) => req,
            Err(resp) => return resp,
        };
    }
    if auth.settings.require_permissions {
        req.extensions_mut()
            .insert(GrantedScopes(info.scopes.clone()));
    }
    req.extensions_mut().insert(Caller(client));
    next.run(req).await
}

/// Answers `resp` after reading (and dropping) a bounded part of the request body, so a
/// client still sending sees the answer and the connection stays usable.
pub(crate) async fn refuse(req: Request, resp: Response) -> Response {
    crate::rpc::drain(req.into_body()).await;
    resp
}

/// Rebuilds a request around a body that was read for verification.
pub(crate) fn with_body(parts: axum::http::request::Parts, body: bytes::Bytes) -> Request {
    Request::from_parts(parts, Body::from(body))
}
