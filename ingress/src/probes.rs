//! The probes every process kind serves, with Bindu's meaning:
//!
//! - `/health`, **liveness**: 200 while the process serves, always, with a JSON report
//!   (agent DID and name, version, uptime, storage and bus readiness). A process whose
//!   backends are down is alive: restarting it would not bring them back.
//! - `/healthz`, **readiness**: the same report, 200 only when the task store and the bus
//!   answer and shutdown has not begun, else 503 (take the process out of rotation).
//!
//! `bindu serve` and `bindu ingress` serve them on their HTTP port ([`crate::health`]);
//! `bindu worker` and `bindu dispatcher` on their own address, with their `/metrics`
//! ([`router`]).

use std::sync::Arc;
use std::time::Instant;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bindu_engine::{Bus, TaskStore};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::auth::shared::SharedStatus;

/// What a process reports on its probes.
pub struct Probe {
    pub store: Arc<dyn TaskStore>,
    pub bus: Arc<dyn Bus>,
    /// Fires when shutdown begins (the process is then no longer ready).
    pub shutdown: CancellationToken,
    pub started: Instant,
    pub version: String,
    /// `serve`, `ingress`, `worker` or `dispatcher`.
    pub role: &'static str,
    pub name: String,
    pub url: Option<String>,
    pub protocol_version: Option<String>,
    pub did: Option<String>,
    /// `bindu_ready`: the last readiness seen by a probe or a scrape (1 ready, 0 not).
    pub ready: Gauge,
}

pub const READY: &str = "bindu_ready";

impl Probe {
    /// Whether the process is ready, and the report both probes answer with. `shared` is
    /// the ingress's Redis, whose outage degrades (never unreadies) a replica.
    pub async fn report(&self, shared: Option<SharedStatus>) -> (bool, Value) {
        let store = self.store.ready().await;
        let bus = self.bus.ready().await;
        let shutting_down = self.shutdown.is_cancelled();
        let ready = store.is_ok() && bus.is_ok() && !shutting_down;
        self.ready.set(i64::from(ready));
        let degraded = shared.as_ref().is_some_and(|s| !s.up);
        let body = json!({
            "status": match (ready, degraded) {
                (false, _) => "unavailable",
                (true, true) => "degraded",
                (true, false) => "ok",
            },
            "live": true,
            "ready": ready,
            "role": self.role,
            "version": self.version,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "shutting_down": shutting_down,
            "runtime": {
                "storage_backend": self.store.backend(),
                "storage_ready": store.is_ok(),
                "storage_error": store.err().map(|e| e.to_string()),
                "bus_backend": self.bus.backend(),
                "bus_ready": bus.is_ok(),
                "bus_error": bus.err().map(|e| e.to_string()),
                "shared_state_backend": shared.as_ref().map(|s| s.backend),
                "shared_state_ready": shared.as_ref().map(|s| s.up),
                "shared_state_error": shared.as_ref().and_then(|s| s.error.clone()),
            },
            "application": {
                "name": self.name,
                "url": self.url,
                "protocol_version": self.protocol_version,
                "agent_did": self.did,
            },
        });
        (ready, body)
    }

    /// `/health`: 200 with the report.
    pub async fn liveness(&self, shared: Option<SharedStatus>) -> Response {
        let (_, body) = self.report(shared).await;
        (no_cache(), Json(body)).into_response()
    }

    /// `/healthz`: the report, 200 when ready, else 503.
    pub async fn readiness(&self, shared: Option<SharedStatus>) -> Response {
        let (ready, body) = self.report(shared).await;
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, no_cache(), Json(body)).into_response()
    }
}

fn no_cache() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-cache")]
}

/// The OpenMetrics answer of `/metrics` for `text`.
pub fn metrics_response(text: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

/// Adds `bindu_ready` to `registry`; it is refreshed by every probe and scrape.
pub fn register_ready(probe: &Probe, registry: &mut Registry) {
    registry.register(
        READY,
        "Whether the task store and the bus answered and shutdown had not begun, at the last probe or scrape: 1 ready, 0 not",
        probe.ready.clone(),
    );
}

/// Adds the engine's metrics (store batches, bus publishes) to `registry`: every process
/// kind exports them; with `queue`, the work queue's depth too (processes that sample it:
/// [`bindu_engine::metrics::sample_queue`]).
pub fn register_engine(registry: &mut Registry, queue: bool) {
    let engine = bindu_engine::metrics::engine();
    engine.register(registry);
    if queue {
        engine.register_queue(registry);
    }
}

/// `/health`, `/healthz` and `/metrics` (the text of `registry`) of a process without the
/// ingress (`bindu worker`, `bindu dispatcher`). Serve it with [`crate::serve`].
pub fn router(probe: Arc<Probe>, registry: Arc<Registry>) -> Router {
    let live = probe.clone();
    let scraped = probe.clone();
    Router::new()
        .route(
            "/health",
            get(move || {
                let probe = live.clone();
                async move { probe.liveness(None).await }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let probe = probe.clone();
                async move { probe.readiness(None).await }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                let probe = scraped.clone();
                async move {
                    // Refreshes `bindu_ready` (one cheap check of each backend).
                    let _ = probe.report(None).await;
                    let mut body = String::new();
                    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &registry)
                    {
                        tracing::error!(error = %e, "could not encode metrics");
                    }
                    metrics_response(body)
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindu_engine::bus::MemoryBus;
    use bindu_engine::store::MemoryStore;

    fn probe(shutdown: CancellationToken) -> Probe {
        Probe {
            store: Arc::new(MemoryStore::new(10)),
            bus: Arc::new(MemoryBus::default()),
            shutdown,
            started: Instant::now(),
            version: "1.2.3".into(),
            role: "worker",
            name: "probe-agent".into(),
            url: None,
            protocol_version: None,
            did: Some("did:key:z6Mkprobe".into()),
            ready: Gauge::default(),
        }
    }

    #[tokio::test]
    async fn once_shutdown_begins_readiness_is_503_and_liveness_stays_200() {
        let shutdown = CancellationToken::new();
        let p = probe(shutdown.clone());
        assert_eq!(p.liveness(None).await.status(), StatusCode::OK);
        assert_eq!(p.readiness(None).await.status(), StatusCode::OK);
        assert_eq!(p.ready.get(), 1);

        shutdown.cancel();
        assert_eq!(p.liveness(None).await.status(), StatusCode::OK);
        assert_eq!(
            p.readiness(None).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (ready, body) = p.report(None).await;
        assert!(!ready);
        assert_eq!(p.ready.get(), 0);
        assert_eq!(body["live"], true, "{body}");
        assert_eq!(body["shutting_down"], true, "{body}");
        assert_eq!(body["status"], "unavailable", "{body}");
        assert_eq!(body["role"], "worker", "{body}");
        assert_eq!(body["application"]["agent_did"], "did:key:z6Mkprobe");
    }

    #[tokio::test]
    async fn redis_down_degrades_without_unreadying() {
        let p = probe(CancellationToken::new());
        let down = SharedStatus {
            backend: "redis",
            up: false,
            error: Some("connection refused".into()),
        };
        let (ready, body) = p.report(Some(down)).await;
        assert!(ready);
        assert_eq!(body["status"], "degraded", "{body}");
        assert_eq!(body["runtime"]["shared_state_ready"], false, "{body}");
    }
}
