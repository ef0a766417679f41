//! The probes and `/metrics` of a process without the HTTP ingress (`bindu worker`,
//! `bindu dispatcher`), on the address its configuration names (`worker.metrics_addr`,
//! `push.metrics_addr`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bindu_engine::{Bus, TaskStore};
use bindu_ingress::probes::{self, Probe};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::supervisor::Supervisor;
use crate::{Config, Error, Result, Role};

/// What the probes report on.
pub(crate) struct ProbeParts {
    pub store: Arc<dyn TaskStore>,
    pub bus: Arc<dyn Bus>,
    pub did: String,
}

/// Binds `addr` (named by `key` in errors) and serves `/health`, `/healthz` and
/// `/metrics` (`registry`, with the engine's metrics) until `stop`; the bound address.
pub(crate) async fn serve(
    config: &Config,
    role: Role,
    (addr, key): (SocketAddr, &str),
    parts: ProbeParts,
    mut registry: Registry,
    supervisor: &Supervisor,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen {
            what: format!("could not listen on {addr} ({key})"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Listen {
        what: "reading the bound address".into(),
        source,
    })?;
    // Workers sample the work queue; a dispatcher does not use it.
    probes::register_engine(&mut registry, role == Role::Worker);
    let probe = Probe {
        store: parts.store,
        bus: parts.bus,
        shutdown: supervisor.shutdown(),
        started: Instant::now(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        role: role.command(),
        name: config.agent.name.clone(),
        url: None,
        protocol_version: None,
        did: Some(parts.did),
        ready: Default::default(),
    };
    probes::register_ready(&probe, &mut registry);
    let router = probes::router(Arc::new(probe), Arc::new(registry));
    // Served until the process's background parts stop (after the workers or the
    // dispatcher drained), so readiness says 503 throughout the shutdown.
    let stop: CancellationToken = supervisor.part_token();
    supervisor.spawn(async move {
        if let Err(e) = bindu_ingress::serve(listener, router, stop).await {
            tracing::warn!(error = %e, "the probe listener stopped");
        }
    });
    tracing::info!(addr = %bound, "probes and metrics listening");
    Ok(bound)
}
