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
) -> Result<Option<SocketAddr>> {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        // Only the default address is given up quietly: a second worker on one host (a
        // laptop, a test) still runs, without probes; a chosen address must be served.
        Err(source) if source.kind() == std::io::ErrorKind::AddrInUse && !config.is_set(key) => {
            tracing::warn!(%addr, key, "the default probe address is in use (another process on this host?): this process serves no /health, /healthz or /metrics; set {key} to serve them elsewhere");
            return Ok(None);
        }
        Err(source) => {
            return Err(Error::Listen {
                what: format!("could not listen on {addr} ({key})"),
                source,
            })
        }
    };
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
    Ok(Some(bound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindu_engine::bus::MemoryBus;
    use bindu_engine::store::MemoryStore;

    fn parts() -> ProbeParts {
        ProbeParts {
            store: Arc::new(MemoryStore::default()),
            bus: Arc::new(MemoryBus::default()),
            did: "did:key:test".into(),
        }
    }

    /// Serves a worker's probes on `addr` (`key`) as `config` says.
    async fn serve_worker(
        config: &Config,
        addr: SocketAddr,
        key: &str,
        supervisor: &Supervisor,
    ) -> Result<Option<SocketAddr>> {
        serve(
            config,
            Role::Worker,
            (addr, key),
            parts(),
            Registry::default(),
            supervisor,
        )
        .await
    }

    /// A second worker on one host finds the default probe address taken: it runs without
    /// probes (a warning says so). An address the user chose must be served, or the start
    /// fails naming the key.
    #[tokio::test]
    async fn a_taken_default_probe_address_is_given_up_a_chosen_one_is_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let supervisor = Supervisor::new();
        let key = "worker.metrics_addr";

        let defaults = Config::defaults();
        assert!(!defaults.is_set(key));
        let served = serve_worker(&defaults, addr, key, &supervisor)
            .await
            .expect("a taken default address is not an error");
        assert_eq!(served, None);

        let env = std::collections::BTreeMap::from([(
            "BINDU_WORKER_METRICS_ADDR".to_string(),
            addr.to_string(),
        )]);
        let chosen = Config::load(None, &|k| env.get(k).cloned(), &[]).unwrap();
        assert!(chosen.is_set(key));
        let err = serve_worker(&chosen, addr, key, &supervisor)
            .await
            .expect_err("a chosen address that is taken is an error");
        assert!(err.to_string().contains(key), "{err}");
    }
}
