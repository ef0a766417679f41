//! Ingress state, router and server loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bindu_engine::{Bus, TaskStore};
use bindu_schemas::AgentCard;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The authenticated caller of a request (a DID or OAuth client id), put into request
/// extensions by the auth layer. Absent when auth is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// The caller's granted scopes, present when per-method permissions are enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedScopes(pub Vec<String>);

#[derive(Debug, Clone)]
pub struct IngressOptions {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Interval of SSE keep-alive comments.
    pub sse_keepalive: Duration,
    /// Version reported by `/health`.
    pub version: String,
    /// Longest a blocking `message/send` waits for its task's final event before it answers
    /// with the task as stored (set it above the workers' task timeout).
    pub blocking_wait: Duration,
}

impl Default for IngressOptions {
    fn default() -> Self {
        IngressOptions {
            max_body_bytes: 10 * 1024 * 1024,
            sse_keepalive: Duration::from_secs(15),
            version: env!("CARGO_PKG_VERSION").to_string(),
            blocking_wait: Duration::from_secs(630),
        }
    }
}

/// Shared state of every request handler. Cheap to clone.
#[derive(Clone)]
pub struct Ingress {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Every transition the ingress records goes through it (persist, then announce).
    pub ledger: bindu_engine::TaskLedger,
    pub store: Arc<dyn TaskStore>,
    pub bus: Arc<dyn Bus>,
    pub card: AgentCard,
    pub card_json: Bytes,
    pub extended_card: Option<AgentCard>,
    pub did: Option<crate::did::DidInfo>,
    pub options: IngressOptions,
    pub metrics: Metrics,
    pub auth: std::sync::OnceLock<crate::auth::Auth>,
    pub certificate_auth: std::sync::OnceLock<crate::tls::CertificateAuth>,
    pub started: Instant,
    pub shutdown: CancellationToken,
}

impl Ingress {
    pub fn new(
        store: Arc<dyn TaskStore>,
        bus: Arc<dyn Bus>,
        card: AgentCard,
        extended_card: Option<AgentCard>,
        did: Option<crate::did::DidInfo>,
        options: IngressOptions,
        shutdown: CancellationToken,
    ) -> Self {
        // Serialising a card of strings and booleans cannot fail.
        let card_json = Bytes::from(serde_json::to_vec(&card).unwrap_or_default());
        Ingress {
            inner: Arc::new(Inner {
                ledger: bindu_engine::TaskLedger::new(store.clone(), bus.clone()),
                store,
                bus,
                card,
                card_json,
                extended_card,
                did,
                options,
                metrics: Metrics::new(),
                auth: std::sync::OnceLock::new(),
                certificate_auth: std::sync::OnceLock::new(),
                started: Instant::now(),
                shutdown,
            }),
        }
    }

    /// Requires authentication on JSON-RPC requests (routers built from now on). The first
    /// call wins.
    pub fn with_auth(self, auth: crate::auth::Auth) -> Self {
        let _ = self.inner.auth.set(auth);
        self
    }

    /// Adds metrics of other parts of the process (the webhook dispatcher) to `/metrics`.
    /// Call before [`Ingress::router`]; later calls are ignored.
    pub fn with_metrics(
        mut self,
        register: impl FnOnce(&mut prometheus_client::registry::Registry),
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            register(inner.metrics.registry_mut());
        }
        self
    }

    /// Makes the verified client certificate's DID the caller of JSON-RPC requests
    /// (`MTLS__MODE=mtls`; serve with [`crate::tls::serve_tls`]). Takes the place of
    /// [`Ingress::with_auth`]: no token, no DID request signature. The first call wins.
    pub fn with_certificate_auth(self, auth: crate::tls::CertificateAuth) -> Self {
        let _ = self.inner.certificate_auth.set(auth);
        self
    }

    pub fn card(&self) -> &AgentCard {
        &self.inner.card
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        // Only this route is authenticated: every other path is public by construction.
        let rpc = match (self.inner.certificate_auth.get(), self.inner.auth.get()) {
            (Some(cert), _) => post(crate::rpc::handle).route_layer(
                axum::middleware::from_fn_with_state(cert.clone(), crate::tls::certificate_layer),
            ),
            (None, Some(auth)) => post(crate::rpc::handle).route_layer(
                axum::middleware::from_fn_with_state(auth.clone(), crate::auth::layer),
            ),
            (None, None) => post(crate::rpc::handle),
        };
        Router::new()
            .route("/", rpc.get(redirect_to_card))
            .route("/.well-known/agent-card.json", get(agent_card))
            .route("/.well-known/agent.json", get(agent_card))
            .route(
                "/did/resolve",
                get(crate::did::resolve_get).post(crate::did::resolve_post),
            )
            .route("/health", get(crate::health::health))
            .route("/healthz", get(crate::health::healthz))
            .route("/metrics", get(crate::metrics::metrics))
            .fallback(not_found)
            .with_state(self.clone())
    }
}

async fn agent_card(axum::extract::State(app): axum::extract::State<Ingress>) -> Response {
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

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "error": format!("no route for {}", uri.path()),
            "hint": "A2A JSON-RPC requests go to POST /; the agent card is at /.well-known/agent-card.json",
        })
        .to_string(),
    )
        .into_response()
}

/// Serves `router` on `listener` until `shutdown` fires, then lets in-flight requests
/// finish (open SSE streams end at shutdown). HTTP/1.1 only (see [`crate::server`]).
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
