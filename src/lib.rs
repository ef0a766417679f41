//! bindu: turn any handler into an A2A v0.3.0 agent service.
//!
//! This crate is the composition root; the parts live in their own crates:
//! [`schemas`] (wire types), [`engine`] (ports, backends, state machine, config layering),
//! `bindu-ingress` (HTTP) and `bindu-workers` (handler runtime).
//!
//! - [`config`]: the whole configuration, one section per TOML table.
//! - [`backends`]: the task store, bus, dead letters, identity and TLS the config names.
//! - `http`, `dispatcher`: the HTTP ingress and the webhook dispatcher of a process.
//! - `supervisor`: runs the parts and stops them in order.
//! - [`admin`]: migrations, purging, webhook dead letters.
//! - [`agent`]: the library API, [`Agent::builder()`]: manifest, settings and handler, then
//!   `serve()` or `worker()`; [`start`] and [`launch`] are the lower-level entry points.
//! - [`Error`]: why an agent could not start or stopped.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bindu::{handler_fn, HandlerInput, HandlerError};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = bindu::Config::defaults();
//! let handler = handler_fn(|input: HandlerInput| async move {
//!     let text = input.last_user_message().map(|m| m.text()).unwrap_or_default();
//!     Ok::<_, HandlerError>(format!("You said: {text}"))
//! });
//! let server = bindu::start(config, Arc::new(handler)).await?;
//! println!("listening on {}", server.base_url());
//! server.wait().await?;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use bindu_workers::WorkerPool;

pub use admin::{list_dead_letters, list_payments, reconcile_payments, replay_dead_letters};
pub use agent::{Agent, AgentBuilder};
pub use backends::{
    build_bus, build_dead_letters, build_payments, build_store, load_identity, tls_config,
};
pub use bindu_engine as engine;
pub use bindu_engine::x402::PriceOption;
pub use bindu_ingress::skills::Skill;
pub use bindu_schemas as schemas;
pub use bindu_workers::dispatcher::notification::{
    verify as verify_notification, VerifyError as NotificationVerifyError,
};
pub use bindu_workers::handler::handler_fn;
pub use bindu_workers::{
    ArtifactStream, EchoHandler, Emitter, Handler, HandlerError, HandlerInput, HandlerOutput,
};
pub use config::{BusKind, Config, StoreKind};
pub use error::{Error, Result};
pub use server::{Role, Server};

pub mod admin;
pub mod agent;
pub mod backends;
pub use bindu_client as client;
pub mod config;
mod dispatcher;
mod error;
mod http;
mod probes;
mod server;
mod supervisor;
pub mod telemetry;

/// Binds, builds the backends and starts serving in the background (`bindu serve`).
pub async fn start(config: Config, handler: Arc<dyn Handler>) -> Result<Server> {
    launch(config, Some(handler), Role::Serve).await
}

/// Starts the parts of the engine `role` names. Ingress and worker roles need shared
/// backends (Postgres and NATS) and refuse to start without them.
pub async fn launch(
    config: Config,
    handler: Option<Arc<dyn Handler>>,
    role: Role,
) -> Result<Server> {
    launch_with(config, handler, role, agent::Capabilities::default()).await
}

/// [`launch`], advertising at most the `requested` capabilities in the card.
pub(crate) async fn launch_with(
    config: Config,
    handler: Option<Arc<dyn Handler>>,
    role: Role,
    requested: agent::Capabilities,
) -> Result<Server> {
    if role != Role::Serve {
        if let Some(why) = config.distributed_problem() {
            return Err(Error::NotDistributed {
                role: role.command(),
                why,
            });
        }
    }
    let skills = Arc::new(config.skills()?);
    let prices = config.prices(&skills)?;
    let priced = prices.priced();
    if let Some(why) = config.payments_problem(role, priced) {
        return Err(Error::NotDistributed {
            role: role.command(),
            why,
        });
    }
    let handler = match (role.runs_workers(), handler) {
        (true, None) => return Err(Error::NoHandler("a worker needs a handler")),
        (runs, handler) => handler.filter(|_| runs),
    };
    let (identity, _) = load_identity(&config, false)?;
    let identity = Arc::new(identity);
    tracing::info!(did = %identity.did, "agent identity");
    let namespace = config.namespace(&identity.did);
    let store = build_store(&config, &namespace).await?;
    let bus = build_bus(&config, &namespace).await?;
    let payments = build_payments(&config, &namespace, priced).await?;
    let mut supervisor = supervisor::Supervisor::new();

    if let (Some(retention), true) = (config.storage.retention, role != Role::Ingress) {
        let stop = supervisor.part_token();
        supervisor.spawn(admin::retention(store.clone(), retention, stop));
    }
    let push = role == Role::Dispatcher || (role == Role::Serve && config.push_enabled());
    let dispatcher_metrics = if push {
        let parts = dispatcher::Parts {
            store: store.clone(),
            bus: bus.clone(),
            identity: identity.clone(),
            namespace: &namespace,
        };
        Some(dispatcher::start(&config, parts, &mut supervisor).await?)
    } else {
        None
    };
    // Workers settle whatever payment a command carries (x402).
    let settlement = backends::settlement(&config, payments.clone())?;
    let pool = handler.map(|handler| {
        let heartbeat = (config.bus_ack_wait() / 3).max(std::time::Duration::from_millis(200));
        WorkerPool::new(
            store.clone(),
            bus.clone(),
            handler,
            config
                .worker
                .pool_options(heartbeat, config.server.shutdown_timeout),
        )
        .with_identity(identity.clone())
        .with_payments(settlement.clone())
    });
    let worker_metrics = pool.as_ref().map(WorkerPool::metrics);
    let settlement_metrics = (role.runs_workers() && priced).then(|| settlement.metrics.clone());
    let (local_addr, base_url) = if role.serves_http() {
        let parts = http::HttpParts {
            skills,
            store: store.clone(),
            bus: bus.clone(),
            identity: identity.clone(),
            namespace: namespace.clone(),
            requested,
            dispatcher_metrics: dispatcher_metrics.clone(),
            worker_metrics: worker_metrics.clone(),
            settlement_metrics: settlement_metrics.clone(),
            facilitator: settlement.facilitator.clone(),
            payments,
            prices,
        };
        let (addr, url) = http::start(&config, parts, &mut supervisor).await?;
        (Some(addr), url)
    } else {
        (None, String::new())
    };
    // Payments whose settlement got no usable answer are asked about again.
    if let (true, true, Some(interval)) =
        (priced, role.runs_workers(), config.x402.reconcile_interval)
    {
        let reconciler = bindu_workers::payments::reconcile::Reconciler::new(
            settlement.clone(),
            store.clone(),
            bus.clone(),
        );
        let stop = supervisor.part_token();
        supervisor.spawn(reconciler.run(interval, stop));
    }
    // The work queue's depth, sampled (a scrape never asks the bus).
    if role != Role::Dispatcher {
        let stop = supervisor.part_token();
        supervisor.spawn(bindu_engine::metrics::sample_queue(
            bus.clone(),
            bindu_engine::metrics::QUEUE_SAMPLE_INTERVAL,
            stop,
        ));
    }
    let probe_at = match role {
        Role::Worker => config
            .worker
            .metrics_addr
            .map(|a| (a, "worker.metrics_addr")),
        Role::Dispatcher => config.push.metrics_addr.map(|a| (a, "push.metrics_addr")),
        Role::Serve | Role::Ingress => None,
    };
    let probe_addr = match probe_at {
        Some(at) => {
            let mut registry = prometheus_client::registry::Registry::default();
            if let Some(m) = &worker_metrics {
                m.register(&mut registry);
            }
            if let Some(m) = &dispatcher_metrics {
                m.register(&mut registry);
            }
            if let Some(m) = &settlement_metrics {
                m.register(&mut registry);
            }
            if config.telemetry.enabled {
                telemetry::register_metrics(&mut registry);
            }
            let parts = probes::ProbeParts {
                store: store.clone(),
                bus: bus.clone(),
                did: identity.did.clone(),
            };
            probes::serve(&config, role, at, parts, registry, &supervisor).await?
        }
        None => None,
    };
    if let Some(pool) = pool {
        let stop = supervisor.part_token();
        supervisor.workers(stop.clone(), pool.run(stop));
    }
    let shutdown = supervisor.shutdown();
    let task = supervisor.run(bus, config.server.shutdown_timeout);
    Ok(Server {
        local_addr,
        probe_addr,
        base_url,
        shutdown,
        task,
    })
}

/// The built-in handler `config` names (`worker.handler` / `BINDU_HANDLER`): `echo`,
/// `command` (`BINDU_HANDLER_COMMAND`) or `openai` (`OPENAI_BASE_URL`, `BINDU_HANDLER_MODEL`).
pub fn builtin_handler(config: &Config) -> Result<Arc<dyn Handler>> {
    Ok(config.worker.handler(&config.openai)?)
}
