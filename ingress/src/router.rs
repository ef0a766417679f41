//! Routes → handlers, and [`serve`] / [`serve_with`].
//!
//! Only `POST /`, the HTTP+JSON routes ([`crate::rest`]) and `GET /agent/private.json`
//! are authenticated (the auth layer sits on those routes), so every other path is public
//! by construction. Before it, `/` and the HTTP+JSON routes check `Host` and `Content-Type`
//! ([`crate::guard`]). `/did/resolve` gets the agent's DID document as its own state.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::EdgeError;
use crate::server::ConnectionLimits;
use crate::state::Ingress;
use crate::{auth, did, guard, health, negotiation, payments, rest, rpc, skills, tls, version};

impl Ingress {
    /// `route` behind the authentication this ingress has: the client certificate
    /// (`MTLS__MODE=mtls`), else the Bearer token (and DID signature), else none.
    fn authenticated(&self, route: MethodRouter<Ingress>) -> MethodRouter<Ingress> {
        match (self.inner.certificate_auth.get(), self.inner.auth.get()) {
            (Some(cert), _) => route.route_layer(axum::middleware::from_fn_with_state(
                cert.clone(),
                tls::certificate_layer,
            )),
            (None, Some(auth)) => route.route_layer(axum::middleware::from_fn_with_state(
                auth.clone(),
                auth::middleware::layer,
            )),
            (None, None) => route,
        }
    }

    /// `route` behind what every A2A method route has outside its authentication: the
    /// `Host` and content-type guard, and the x402 extension echo of a priced agent.
    fn guarded(&self, route: MethodRouter<Ingress>) -> MethodRouter<Ingress> {
        // A priced agent echoes the x402 extension to the clients that activate it.
        let priced = self.inner.payments.get().is_some();
        // Outermost: a request a web page could forge is refused before anything else.
        route
            .route_layer(axum::middleware::from_fn_with_state(
                self.inner.allowed_hosts.clone(),
                guard::layer,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                priced,
                payments::extensions_layer,
            ))
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        // Only `/`, the HTTP+JSON routes and the private card are authenticated: every
        // other path is public by construction.
        let rpc = self
            .guarded(self.authenticated(post(rpc::handle)).get(redirect_to_card))
            // Outside everything: refusals of every layer carry the version's codes.
            .route_layer(axum::middleware::from_fn(version::layer));
        let priced = self.inner.payments.get().is_some();
        let card = get(agent_card).route_layer(axum::middleware::from_fn_with_state(
            priced,
            payments::extensions_layer,
        ));
        let mut router = Router::new()
            .route("/", rpc)
            .route("/.well-known/agent-card.json", card.clone())
            .route("/.well-known/agent.json", card)
            .route(
                "/did/resolve",
                get(did::resolve_get)
                    .post(did::resolve_post)
                    .with_state(self.inner.did.clone()),
            )
            .route("/agent/skills", get(skills::routes::list))
            .route("/agent/skills/{id}", get(skills::routes::get))
            .route(
                "/agent/skills/{id}/documentation",
                get(skills::routes::documentation),
            )
            .route("/health", get(health::health))
            .route("/healthz", get(health::healthz))
            .route("/metrics", get(health::metrics));
        // A2A 1.0 HTTP+JSON: the same layers as `/`, refusals in the binding's form.
        let options = &self.inner.options;
        for (path, route) in rest::routes(&options.rest_base_path, options.tenant.as_deref()) {
            let route = self
                .guarded(self.authenticated(route))
                .route_layer(axum::middleware::from_fn(rest::layer));
            router = router.route(&path, route);
        }
        // As in Bindu, only an agent with private skills or an access list serves it.
        if self.inner.skills.restricted() && self.inner.extended_card.is_some() {
            router = router.route(
                "/agent/private.json",
                self.authenticated(get(skills::routes::private_card)),
            );
        }
        if self.inner.negotiator.is_some() {
            router = router.route("/agent/negotiation", post(negotiation::negotiate));
        }
        router.fallback(not_found).with_state(self.clone()).layer(
            axum::middleware::from_fn_with_state(self.clone(), http_metrics),
        )
    }
}

/// The route templates `http_requests_total` names (a label value must be `'static`, and
/// a path a client chose must never become one).
const ENDPOINTS: &[&str] = &[
    "/",
    "/.well-known/agent-card.json",
    "/.well-known/agent.json",
    "/did/resolve",
    "/agent/skills",
    "/agent/skills/{id}",
    "/agent/skills/{id}/documentation",
    "/health",
    "/healthz",
    "/metrics",
    "/agent/private.json",
    "/agent/negotiation",
];

/// The HTTP+JSON route templates ([`rest::TEMPLATES`] and the extended card's), after
/// `server.rest_base_path`.
const REST_ENDPOINTS: &[&str] = &[
    rest::TEMPLATES[0],
    rest::TEMPLATES[1],
    rest::TEMPLATES[2],
    rest::TEMPLATES[3],
    rest::TEMPLATES[4],
    rest::TEMPLATES[5],
    rest::CARD_TEMPLATE,
];

/// Counts every HTTP request by method, route and status, and times it (Bindu's
/// `http_requests_total`, `http_request_duration_seconds`, `http_requests_in_flight`).
async fn http_metrics(
    State(app): State<Ingress>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let metrics = &app.inner.metrics;
    let base = app.inner.options.rest_base_path.as_str();
    let endpoint = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .and_then(|m| {
            let m = m.as_str();
            ENDPOINTS.iter().copied().find(|e| *e == m).or_else(|| {
                // HTTP+JSON routes are named by their template after the base path (and
                // the tenant's segment).
                let after = m.strip_prefix(base)?;
                let after = (app.inner.options.tenant.as_deref())
                    .and_then(|t| after.strip_prefix('/')?.strip_prefix(t))
                    .filter(|a| a.starts_with('/'))
                    .unwrap_or(after);
                REST_ENDPOINTS.iter().copied().find(|e| *e == after)
            })
        })
        .unwrap_or("unmatched");
    let method = match *request.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::HEAD => "HEAD",
        _ => "other",
    };
    let started = metrics.http_started();
    let response = next.run(request).await;
    metrics.http_done(started, method, endpoint, response.status().as_u16());
    response
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

async fn not_found(State(app): State<Ingress>, uri: axum::http::Uri) -> Response {
    let base = app.inner.options.rest_base_path.as_str();
    let path = uri.path();
    if let Some(rest) = path.strip_prefix(base).filter(|r| r.starts_with('/')) {
        // A route under a tenant this agent is not (or under any, when it is none).
        if let Some(tenant) = rest::tenant_in_path(rest) {
            if app.inner.options.tenant.as_deref() != Some(tenant) {
                return rest::wrong_tenant(tenant, app.inner.options.tenant.as_deref());
            }
        }
        // Under the HTTP+JSON base path: the binding's error form.
        if !base.is_empty() {
            return rest::no_route(path);
        }
    }
    EdgeError::NoRoute {
        path: path.to_string(),
    }
    .into_response()
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
