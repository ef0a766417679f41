//! Routes → handlers, and [`serve`].
//!
//! Only `POST /` is authenticated (the auth layer sits on that route), so every other path
//! is public by construction. `/did/resolve` gets the agent's DID document as its own state.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::EdgeError;
use crate::state::Ingress;
use crate::{auth, did, health, rpc, tls};

impl Ingress {
    /// The HTTP routes.
    pub fn router(&self) -> Router {
        // Only this route is authenticated: every other path is public by construction.
        let rpc = match (self.inner.certificate_auth.get(), self.inner.auth.get()) {
            (Some(cert), _) => post(rpc::handle).route_layer(axum::middleware::from_fn_with_state(
                cert.clone(),
                tls::certificate_layer,
            )),
            (None, Some(auth)) => post(rpc::handle).route_layer(
                axum::middleware::from_fn_with_state(auth.clone(), auth::middleware::layer),
            ),
            (None, None) => post(rpc::handle),
        };
        Router::new()
            .route("/", rpc.get(redirect_to_card))
            .route("/.well-known/agent-card.json", get(agent_card))
            .route("/.well-known/agent.json", get(agent_card))
            .route(
                "/did/resolve",
                get(did::resolve_get)
                    .post(did::resolve_post)
                    .with_state(self.inner.did.clone()),
            )
            .route("/health", get(health::health))
            .route("/healthz", get(health::healthz))
            .route("/metrics", get(health::metrics))
            .fallback(not_found)
            .with_state(self.clone())
    }
}

async fn agent_card(State(app): State<Ingress>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        app.inner.card_json.clone(),
    )
        .into_response()
}

async fn redirect_to_card() -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, "/.well-known/agent-card.json")],
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> EdgeError {
    EdgeError::NoRoute {
        path: uri.path().to_string(),
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then lets in-flight requests
/// finish (open SSE streams end at shutdown). HTTP/1.1 only (see the `server` module).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        // Small JSON replies must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    crate::server::serve_http1(listener, router, shutdown, |_| None::<()>).await;
    Ok(())
}
