//! `/health` (readiness, 503 when a backend is down or shutdown began), `/healthz`
//! (liveness) and `/metrics` (the registry of [`crate::metrics`], with stored task counts).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::Ingress;

pub(crate) async fn health(State(app): State<Ingress>) -> Response {
    let inner = &app.inner;
    let store = inner.store.ready().await;
    let bus = inner.bus.ready().await;
    let shutting_down = inner.shutdown.is_cancelled();
    let ready = store.is_ok() && bus.is_ok() && !shutting_down;
    // Redis down does not make the replica unready (auth falls back to its own caches),
    // but it is reported: the replay guard then covers this replica only.
    let shared = inner.auth.get().and_then(|a| a.shared_status());
    let degraded = shared.as_ref().is_some_and(|s| !s.up);
    let body = json!({
        "status": match (ready, degraded) {
            (false, _) => "unavailable",
            (true, true) => "degraded",
            (true, false) => "ok",
        },
        "ready": ready,
        "version": inner.options.version,
        "uptime_seconds": inner.started.elapsed().as_secs(),
        "shutting_down": shutting_down,
        "runtime": {
            "storage_backend": inner.store.backend(),
            "storage_ready": store.is_ok(),
            "storage_error": store.err().map(|e| e.to_string()),
            "bus_backend": inner.bus.backend(),
            "bus_ready": bus.is_ok(),
            "bus_error": bus.err().map(|e| e.to_string()),
            "shared_state_backend": shared.as_ref().map(|s| s.backend),
            "shared_state_ready": shared.as_ref().map(|s| s.up),
            "shared_state_error": shared.as_ref().and_then(|s| s.error.clone()),
        },
        "application": {
            "name": inner.card.name,
            "url": inner.card.url,
            "protocol_version": inner.card.protocol_version,
            "agent_did": inner.did.as_ref().map(|d| d.did.clone()),
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub(crate) async fn healthz() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

pub(crate) async fn metrics(State(app): State<Ingress>) -> Response {
    if let Some(auth) = app.inner.auth.get() {
        // Refreshes the shared state's gauge.
        let _ = auth.shared_status();
    }
    // Cheap on every backend: Postgres answers its last background count.
    let counts = app.inner.store.task_counts().await;
    app.inner.metrics.render(counts)
}
