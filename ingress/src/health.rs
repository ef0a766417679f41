//! `/health` (liveness: always 200 while the process serves), `/healthz` (readiness: 503
//! when a backend is down or shutdown began), both answering the report of
//! [`crate::probes`], and `/metrics` (the registry of [`crate::metrics`], with stored task
//! counts).

use axum::extract::State;
use axum::response::Response;

use crate::state::Ingress;

/// Redis down does not make the replica unready (auth falls back to its own caches), but
/// it is reported: the replay guard then covers this replica only.
fn shared(app: &Ingress) -> Option<crate::auth::shared::SharedStatus> {
    app.inner.auth.get().and_then(|a| a.shared_status())
}

pub(crate) async fn health(State(app): State<Ingress>) -> Response {
    app.inner.probe.liveness(shared(&app)).await
}

pub(crate) async fn healthz(State(app): State<Ingress>) -> Response {
    app.inner.probe.readiness(shared(&app)).await
}

pub(crate) async fn metrics(State(app): State<Ingress>) -> Response {
    if let Some(auth) = app.inner.auth.get() {
        // Refreshes the shared state's gauge.
        let _ = auth.shared_status();
    }
    // Refreshes `bindu_ready` (one cheap check of each backend).
    let _ = app.inner.probe.report(shared(&app)).await;
    // Cheap on every backend: Postgres answers its last background count.
    let counts = app.inner.store.task_counts().await;
    app.inner.metrics.render(counts)
}
