//! Routes → handlers, and [`serve`] / [`serve_with`].
//!
//! Only `POST /` is authenticated (the auth layer sits on that route), so every other path
//! is public by construction. Before it, `/` checks `Host` and `Content-Type`
//! ([`crate::guard`]). `/did/resolve` gets the agent's DID document as its own state.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::EdgeError;
use crate::server::ConnectionLimits;
use crate::state::Ingress;
use crate::{auth, did, guard, health, payments, rpc, tls};

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
        // Outermost: a request a web page could forge is refused before anything else.
        let rpc = rpc
            .get(redirect_to_card)
            .route_layer(axum::middleware::from_fn_with_state(
                self.inner.allowed_hosts.clone(),
                guard::layer,
            ));
        // A priced agent echoes the x402 extension to the clients that activate it.
        let priced = self.inner.payments.get().is_some();
        let rpc = rpc.route_layer(axum::middleware::from_fn_with_state(
            priced,
            payments::extensions_layer,
        ));
        let card = get(agent_card).route_layer(axum::middleware::from_fn_with_state(
            priced,
            payments::extensions_layer,
        ));
        Router::new()
            .route("/", rpc)
            .route("/.well-known/agent-card.json", card.clone())
            .route("/.well-known/agent.json", card)
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
/// Connections are bounded by the default [`ConnectionLimits`]; see [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, ConnectionLimits::default()).await
}

/// [`serve`] with connections bounded by `limits`.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        // Small JSON replies must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    crate::server::serve_http1(listener, router, shutdown, &limits, |_| None::<()>).await;
    Ok(())
}
