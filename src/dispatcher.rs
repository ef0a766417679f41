//! The webhook dispatcher of a process (`bindu serve` with push notifications, or
//! `bindu dispatcher`), and the metrics listener of a dispatcher-only process.

use std::net::SocketAddr;
use std::sync::Arc;

use bindu_engine::identity::Identity;
use bindu_engine::{Bus, TaskStore};
use bindu_workers::dispatcher::DispatcherMetrics;
use bindu_workers::Dispatcher;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backends::build_dead_letters;
use crate::supervisor::Supervisor;
use crate::{Config, Error, Result, Role};

/// What the dispatcher needs from the rest of the process.
pub(crate) struct Parts<'a> {
    pub store: Arc<dyn TaskStore>,
    pub bus: Arc<dyn Bus>,
    pub identity: Arc<Identity>,
    pub namespace: &'a str,
}

/// Starts the dispatcher on `supervisor`. It opens its durable consumer before any request
/// is served, so it sees every event from the first one on.
pub(crate) async fn start(
    config: &Config,
    role: Role,
    parts: Parts<'_>,
    supervisor: &mut Supervisor,
) -> Result<DispatcherMetrics> {
    let metrics = DispatcherMetrics::default();
    let dispatcher = Dispatcher::new(
        parts.store,
        parts.bus,
        build_dead_letters(config, parts.namespace).await?,
        Some(parts.identity),
        config.push.dispatcher_options(&config.webhook),
        metrics.clone(),
    )
    .map_err(|e| Error::backend("webhook dispatcher", e))?;
    let stop = supervisor.part_token();
    let run = dispatcher
        .start(stop.clone())
        .await
        .map_err(|e| Error::backend("webhook dispatcher", e))?;
    if role == Role::Dispatcher {
        if let Some(addr) = config.push.metrics_addr {
            let m = metrics.clone();
            let render = move || m.render();
            serve_metrics(addr, "push.metrics_addr", render, stop.clone(), supervisor).await?;
        }
    }
    supervisor.dispatcher(stop, metrics.clone(), run);
    Ok(metrics)
}

/// `/metrics` (what `render` gives) and `/healthz` of a process without the HTTP ingress
/// (a `bindu dispatcher` or `bindu worker`) on `addr` (set by `key`), until `stop`.
pub(crate) async fn serve_metrics(
    addr: SocketAddr,
    key: &str,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
    stop: CancellationToken,
    supervisor: &Supervisor,
) -> Result<()> {
    use axum::routing::get;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen {
            what: format!("could not listen on {addr} ({key})"),
            source,
        })?;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = render();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tracing::info!(%addr, key, "metrics listening");
    supervisor.spawn(async move {
        let _ = bindu_ingress::serve(listener, router, stop).await;
    });
    Ok(())
}
