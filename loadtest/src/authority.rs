//! A loopback stand-in for the two Ory Hydra admin endpoints bindu's auth layer calls
//! (`POST /admin/oauth2/introspect`, `GET /admin/clients/{id}`), knowing exactly one token
//! and one client. It lets a benchmark run signed, authenticated load without an OAuth
//! server; bindu caches both answers, so the stand-in is off the hot path. Never a
//! production authority: it accepts the one token it was given and nothing else.

use bindu_engine::time::unix_now as now;
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The one token and client the stand-in knows.
#[derive(Debug, Clone)]
pub struct Grant {
    pub token: String,
    /// The token's client id: a DID makes bindu require request signatures.
    pub client_id: String,
    /// The client's Ed25519 public key, base58.
    pub public_key_base58: String,
    /// Space-separated scopes.
    pub scope: String,
}

async fn introspect(
    State(g): State<Arc<Grant>>,
    Form(form): Form<HashMap<String, String>>,
) -> Json<Value> {
    if form.get("token") != Some(&g.token) {
        return Json(json!({"active": false}));
    }
    let t = now();
    Json(json!({
        "active": true, "client_id": g.client_id, "sub": g.client_id,
        "exp": t + 86_400, "iat": t, "scope": g.scope, "token_type": "Bearer",
    }))
}

async fn client(State(g): State<Arc<Grant>>, Path(id): Path<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if id == g.client_id {
        Json(json!({"client_id": id, "metadata": {"public_key": g.public_key_base58}}))
            .into_response()
    } else {
        (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found"})),
        )
            .into_response()
    }
}

/// The stand-in's routes.
pub fn router(grant: Grant) -> Router {
    Router::new()
        .route("/admin/oauth2/introspect", post(introspect))
        .route("/admin/clients/{id}", get(client))
        .with_state(Arc::new(grant))
}

/// Serves the stand-in on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, grant: Grant) -> std::io::Result<()> {
    axum::serve(listener, router(grant)).await
}
