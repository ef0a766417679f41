//! A small fake of the Ory Hydra admin API on loopback (Hydra cannot be installed here),
//! speaking Hydra's JSON: `POST /admin/oauth2/introspect` (form field `token`) and
//! `GET /admin/clients/{id}` (the client's `metadata.public_key`).
//!
//! Test support (feature `testing`): used by the project's tests and benchmarks, never by
//! the server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
pub struct Hydra {
    pub tokens: Mutex<HashMap<String, Value>>,
    pub keys: Mutex<HashMap<String, String>>,
    pub introspections: AtomicUsize,
    pub broken: AtomicBool,
    /// Milliseconds each introspection takes (0: none).
    pub delay_ms: AtomicU64,
}

async fn introspect(
    State(h): State<Arc<Hydra>>,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    h.introspections.fetch_add(1, Ordering::SeqCst);
    let delay = h.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if h.broken.load(Ordering::SeqCst) {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let token = form.get("token").cloned().unwrap_or_default();
    let answer = h
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&token)
        .cloned()
        .unwrap_or(json!({"active": false}));
    Json(answer).into_response()
}

async fn client(State(h): State<Arc<Hydra>>, Path(id): Path<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match h.keys.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
        Some(k) => Json(json!({"client_id": id, "metadata": {"public_key": k}})).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found"})),
        )
            .into_response(),
    }
}

pub fn now() -> i64 {
    super::now()
}

pub async fn fake_hydra() -> (Arc<Hydra>, std::net::SocketAddr) {
    let hydra = Arc::new(Hydra::default());
    let app = Router::new()
        .route("/admin/oauth2/introspect", post(introspect))
        .route("/admin/clients/{id}", get(client))
        .with_state(hydra.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port for the fake Hydra");
    let addr = listener
        .local_addr()
        .expect("the fake Hydra's bound address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (hydra, addr)
}

impl Hydra {
    /// Registers `token` with the exact introspection answer `answer` (Hydra's JSON).
    pub fn answer(&self, token: &str, answer: Value) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.into(), answer);
    }

    /// Registers an active token of `client` expiring at `exp`.
    pub fn token(&self, token: &str, client: &str, exp: Value, scope: &str) {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(
            token.into(),
            json!({"active": true, "client_id": client, "sub": client, "exp": exp, "iat": now(), "scope": scope, "token_type": "Bearer"}),
        );
    }
}
