//! bindu: turn any handler into an A2A v0.3.0 agent service.
//!
//! This crate is the composition root: configuration → telemetry → backends → ingress and
//! workers → shutdown. The parts live in their own crates:
//! [`schemas`] (wire types), [`engine`] (ports, backends, state machine, config),
//! `bindu-ingress` (HTTP) and `bindu-workers` (handler runtime). [`Agent::builder()`]
//! (in [`agent`]) is the library API: manifest, settings and handler, then `serve()` or
//! `worker()`; [`start`] and [`launch`] are the lower-level entry points.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bindu::{handler_fn, HandlerInput, HandlerError};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = bindu::engine::Config::defaults();
//! let handler = handler_fn(|input: HandlerInput| async move {
//!     let text = input.last_user_message().map(|m| m.text()).unwrap_or_default();
//!     Ok::<_, HandlerError>(format!("You said: {text}"))
//! });
//! let server = bindu::start(config, Arc::new(handler)).await?;
//! println!("listening on {}", server.base_url());
//! server.wait().await
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bindu_engine::bus::nats::NatsStorage;
use bindu_engine::bus::MemoryBus;
use bindu_engine::bus::{NatsBus, NatsOptions};
use bindu_engine::config::MtlsMode;
use bindu_engine::identity::{self, Identity};
use bindu_engine::store::{
    DeadLetter, DeadLetterStore, MemoryDeadLetters, MemoryStore, PostgresDeadLetters,
    PostgresOptions, PostgresStore,
};
use bindu_engine::{Bus, TaskStore};
use config::JetStreamStorage;
use secrecy::ExposeSecret;

use bindu_ingress::auth::hydra::Hydra;
use bindu_ingress::auth::shared::RedisState;
use bindu_ingress::auth::Auth;
use bindu_ingress::card::{build_card, load_extended_card, CardCapabilities};
use bindu_ingress::did::DidInfo;
use bindu_ingress::tls::CertificateAuth;
use bindu_ingress::{Ingress, IngressOptions};
use bindu_schemas::{AgentExtension, SecurityScheme};
use bindu_workers::dispatcher::delivery::Sender;
use bindu_workers::dispatcher::replay::ReplayError;
use bindu_workers::dispatcher::DispatcherMetrics;
use bindu_workers::{Dispatcher, DispatcherOptions, WorkerPool};
pub use config::{BusKind, Config, StoreKind};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use agent::{Agent, AgentBuilder};
pub use bindu_engine as engine;
pub use bindu_schemas as schemas;
pub use bindu_workers::dispatcher::notification::{
    verify as verify_notification, VerifyError as NotificationVerifyError,
};
pub use bindu_workers::handler::handler_fn;
pub use bindu_workers::{
    ArtifactStream, EchoHandler, Emitter, Handler, HandlerError, HandlerInput, HandlerOutput,
};

pub mod agent;
pub mod client;
pub mod config;
pub mod telemetry;

/// A running agent: HTTP ingress and worker pool in one process.
pub struct Server {
    local_addr: Option<SocketAddr>,
    base_url: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// The address the HTTP server is bound to.
    ///
    /// # Panics
    /// For a worker-only process, which serves no HTTP (see [`Server::http_addr`]).
    pub fn local_addr(&self) -> SocketAddr {
        match self.local_addr {
            Some(a) => a,
            None => panic!("a worker-only process has no HTTP address"),
        }
    }

    /// The address the HTTP server is bound to, if this process serves HTTP.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The base URL put in the agent card (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Begins a graceful shutdown: stop accepting, finish in-flight work within the deadline.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that starts the shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("the server task panicked")?
    }
}

/// The Postgres options `config` asks for.
pub fn postgres_options(config: &Config, namespace: &str) -> anyhow::Result<PostgresOptions> {
    let url = config
        .storage
        .database_url
        .as_ref()
        .context("DATABASE_URL is not set")?
        .expose_secret();
    let mut options = PostgresOptions::new(url, namespace);
    options.pool_size = config.storage.pool_size;
    options.batch_max = config.storage.batch_max;
    options.batch_linger = config.storage.batch_linger;
    options.timeout = config.storage.timeout;
    Ok(options)
}

/// The task store `config` asks for (connects and migrates Postgres).
pub async fn build_store(config: &Config, namespace: &str) -> anyhow::Result<Arc<dyn TaskStore>> {
    Ok(match config.storage.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new(config.storage.memory_max_tasks)),
        StoreKind::Postgres => {
            let store = PostgresStore::connect(postgres_options(config, namespace)?)
                .await
                .map_err(|e| anyhow::anyhow!("task store (STORAGE_TYPE=postgres): {e}"))?;
            tracing::info!(%namespace, "Postgres task store ready");
            Arc::new(store)
        }
    })
}

/// Where the webhook dispatcher records dead letters: Postgres with a Postgres task store,
/// else in memory.
pub async fn build_dead_letters(
    config: &Config,
    namespace: &str,
) -> anyhow::Result<Arc<dyn DeadLetterStore>> {
    Ok(match config.storage.kind {
        StoreKind::Memory => Arc::new(MemoryDeadLetters::default()),
        StoreKind::Postgres => {
            let mut options = postgres_options(config, namespace)?;
            options.pool_size = 2;
            let pool = PostgresStore::pool(&options)
                .await
                .map_err(|e| anyhow::anyhow!("dead letters (STORAGE_TYPE=postgres): {e}"))?;
            PostgresStore::migrate(&pool)
                .await
                .map_err(|e| anyhow::anyhow!("dead letters: migration failed: {e}"))?;
            Arc::new(PostgresDeadLetters::new(pool, namespace))
        }
    })
}

/// The webhook dispatcher's settings from `config` (`PUSH__*`, `WEBHOOK_*`).
pub fn dispatcher_options(config: &Config) -> DispatcherOptions {
    config.push.dispatcher_options(&config.webhook)
}

/// `/metrics` and `/healthz` of a dispatcher-only process, until `stop`.
async fn serve_dispatcher_metrics(
    addr: SocketAddr,
    metrics: DispatcherMetrics,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr} (push.metrics_addr)"))?;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render();
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
    tracing::info!(%addr, "dispatcher metrics listening");
    tokio::spawn(bindu_ingress::serve(listener, router, stop));
    Ok(())
}

/// Deletes old terminal tasks every hour, when `storage.retention` is set.
fn spawn_retention(store: Arc<dyn TaskStore>, retention: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            match store.purge(retention, false).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(tasks = n, "retention: purged old terminal tasks"),
                Err(e) => {
                    tracing::warn!(error = %e, "retention purge failed; will retry next hour")
                }
            }
        }
    });
}

/// The bus `config` asks for; the memory bus is also returned so shutdown can drain it.
pub async fn build_bus(
    config: &Config,
    namespace: &str,
) -> anyhow::Result<(Arc<dyn Bus>, Option<Arc<MemoryBus>>)> {
    Ok(match config.scheduler.kind {
        BusKind::Memory => {
            let bus = Arc::new(MemoryBus::new(config.scheduler.queue_capacity));
            (bus.clone(), Some(bus))
        }
        BusKind::Nats => {
            let url = config.nats.url.clone().context("NATS_URL is not set")?;
            let mut options = NatsOptions::new(url, namespace);
            options.replicas = config.nats.replicas;
            options.storage = match config.nats.storage {
                JetStreamStorage::Memory => NatsStorage::Memory,
                JetStreamStorage::File => NatsStorage::File,
            };
            options.event_max_age = config.nats.event_retention;
            options.ack_wait = config.nats.ack_wait;
            options.max_deliver = config.nats.max_deliver;
            options.wait_for_server = config.nats.wait_for_server;
            options.prefetch = config.worker.concurrency;
            let bus = NatsBus::connect(options)
                .await
                .map_err(|e| anyhow::anyhow!("task bus (SCHEDULER_TYPE=nats): {e}"))?;
            tracing::info!(%namespace, "NATS JetStream bus ready");
            (Arc::new(bus), None)
        }
    })
}

/// Loads (or creates, on first start) the agent's key pair from `identity.dir`. The DID is
/// `did:bindu:<author>:<name>:<id>` when `agent.author` is set, else the key's `did:key`.
/// With `recreate`, a new key pair replaces the old one.
pub fn load_identity(config: &Config, recreate: bool) -> anyhow::Result<(Identity, bool)> {
    let (key, created) = identity::load_or_create(&config.identity.dir, recreate)
        .map_err(|e| anyhow::anyhow!("agent identity (BINDU_KEY_DIR): {e}"))?;
    let mut id = Identity::new(
        key,
        config.agent.author.as_deref().unwrap_or(""),
        &config.agent.name,
    );
    if config.agent.author.is_none() {
        id.did = id.did_key();
    }
    if created {
        tracing::info!(did = %id.did, dir = %config.identity.dir.display(), "created a new agent key pair");
    }
    Ok((id, created))
}

/// Which parts of the engine a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP ingress and worker pool in one process (`bindu serve`).
    Serve,
    /// HTTP ingress only (`bindu ingress`); workers run elsewhere.
    Ingress,
    /// Worker pool only (`bindu worker`).
    Worker,
    /// Webhook dispatcher only (`bindu dispatcher`).
    Dispatcher,
}

impl Role {
    /// The subcommand that runs this role.
    pub fn command(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Ingress => "ingress",
            Role::Worker => "worker",
            Role::Dispatcher => "dispatcher",
        }
    }
}

/// Binds, builds the backends and starts serving in the background (`bindu serve`).
pub async fn start(config: Config, handler: Arc<dyn Handler>) -> anyhow::Result<Server> {
    launch(config, Some(handler), Role::Serve).await
}

/// Starts the parts of the engine `role` names. Ingress and worker roles need shared
/// backends (Postgres and NATS) and refuse to start without them.
pub async fn launch(
    config: Config,
    handler: Option<Arc<dyn Handler>>,
    role: Role,
) -> anyhow::Result<Server> {
    launch_with(config, handler, role, agent::Capabilities::default()).await
}

/// [`launch`], advertising at most the `requested` capabilities in the card.
pub(crate) async fn launch_with(
    config: Config,
    handler: Option<Arc<dyn Handler>>,
    role: Role,
    requested: agent::Capabilities,
) -> anyhow::Result<Server> {
    if role != Role::Serve {
        if let Some(why) = config.distributed_problem() {
            anyhow::bail!(
                "`bindu {}` runs beside other processes, but {why}",
                role.command()
            );
        }
    }
    let (identity, _) = load_identity(&config, false)?;
    let identity = Arc::new(identity);
    tracing::info!(did = %identity.did, "agent identity");
    let namespace = config.namespace(&identity.did);
    let store = build_store(&config, &namespace).await?;
    let (bus, memory_bus) = build_bus(&config, &namespace).await?;

    let shutdown = CancellationToken::new();
    if let Some(retention) = config.storage.retention {
        if role != Role::Ingress {
            spawn_retention(store.clone(), retention, shutdown.clone());
        }
    }
    let deadline = config.server.shutdown_timeout;

    // The dispatcher opens its durable consumer before any request is served, so it sees
    // every event from the first one on.
    let push = config.push_enabled();
    let dispatcher_stop = CancellationToken::new();
    let (dispatcher_metrics, mut dispatcher) = if role == Role::Dispatcher
        || (role == Role::Serve && push)
    {
        let metrics = DispatcherMetrics::default();
        let dispatcher = Dispatcher::new(
            store.clone(),
            bus.clone(),
            build_dead_letters(&config, &namespace).await?,
            Some(identity.clone()),
            dispatcher_options(&config),
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("webhook dispatcher: {e}"))?;
        let run = dispatcher
            .start(dispatcher_stop.clone())
            .await
            .map_err(|e| anyhow::anyhow!("webhook dispatcher: {e}"))?;
        if role == Role::Dispatcher {
            if let Some(addr) = config.push.metrics_addr {
                serve_dispatcher_metrics(addr, metrics.clone(), dispatcher_stop.clone()).await?;
            }
        }
        (Some(metrics), Some(tokio::spawn(run)))
    } else {
        (None, None)
    };

    let (mut http, local_addr, base_url) = if matches!(role, Role::Worker | Role::Dispatcher) {
        (None, None, String::new())
    } else {
        let tls = if config.mtls.enabled {
            Some(tls_config(&config)?)
        } else {
            None
        };
        let host = config.server.host.as_str();
        let listener = TcpListener::bind((host, config.server.port))
            .await
            .with_context(|| {
                format!(
                    "could not listen on {host}:{} (server.host / server.port)",
                    config.server.port
                )
            })?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let base_url = match &config.server.deployment_url {
            Some(url) => url.clone(),
            None => {
                let mut addr = local_addr;
                if addr.ip().is_unspecified() {
                    tracing::warn!(
                        "listening on all interfaces; set BINDU_DEPLOYMENT_URL so the agent card carries a reachable URL"
                    );
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let scheme = if config.mtls.enabled { "https" } else { "http" };
                format!("{scheme}://{addr}")
            }
        };
        let mut caps = CardCapabilities {
            streaming: true,
            // Only when notifications are really delivered (here or by `bindu dispatcher`).
            push_notifications: push,
        };
        // A builder may turn capabilities off in the card, never claim one the engine lacks.
        caps.streaming &= requested.streaming;
        caps.push_notifications &= requested.push_notifications;
        let mut card = build_card(&config.agent, &base_url, caps);
        card.capabilities.extensions = Some(vec![AgentExtension {
            uri: identity.did.clone(),
            description: Some(format!("DID-based identity for {}", config.agent.name)),
            required: Some(false),
            params: serde_json::json!({
                "author": config.agent.author,
                "agent_name": config.agent.name,
                "agent_id": identity.agent_id(),
                "publicKeyBase58": identity.public_key_base58(),
                "didKey": identity.did_key(),
            })
            .as_object()
            .cloned(),
        }]);
        let did_info = DidInfo {
            did: identity.did.clone(),
            aliases: vec![identity.did_key()],
            document: identity.document(&bindu_engine::time::now_rfc3339()),
        };
        let extended_card = match &config.agent.extended_card_file {
            Some(path) => Some(load_extended_card(path, &card).map_err(|e| {
                anyhow::anyhow!("agent.extended_card_file / BINDU_EXTENDED_CARD_FILE: {e}")
            })?),
            None => None,
        };
        if extended_card.is_some() {
            card.supports_authenticated_extended_card = Some(true);
        }
        if config.mtls.client_certs() {
            let schemes = card.security_schemes.get_or_insert_with(Default::default);
            schemes.insert(
                "mtls".to_string(),
                SecurityScheme::MutualTls {
                    description: Some(
                        "TLS client certificate naming the caller's DID in a URI SAN".into(),
                    ),
                },
            );
        }
        let auth = if config.auth.enabled {
            let admin = config
                .hydra
                .admin_url
                .clone()
                .context("HYDRA__ADMIN_URL is not set")?;
            let hydra = Hydra::new(&admin, config.hydra.timeout)
                .map_err(|e| anyhow::anyhow!("Hydra client: {e}"))?;
            // Honest card: callers learn they need a Bearer token.
            card.security_schemes = Some(
                [(
                    "bearer".to_string(),
                    SecurityScheme::Http {
                        scheme: "Bearer".into(),
                        bearer_format: None,
                        description: Some(
                            "OAuth2 access token from the agent's Hydra; DID clients also sign requests (X-DID, X-DID-Timestamp, X-DID-Signature)".into(),
                        ),
                    },
                )]
                .into_iter()
                .collect(),
            );
            let mut requirement: std::collections::BTreeMap<String, Vec<String>> =
                [("bearer".to_string(), Vec::new())].into_iter().collect();
            if config.mtls.client_certs() {
                // Hybrid: both, in one requirement.
                requirement.insert("mtls".to_string(), Vec::new());
            }
            card.security = Some(vec![requirement]);
            let auth = Auth::new(
                Arc::new(hydra),
                config.auth.settings(&config.hydra, &config.mtls),
            );
            let auth = match &config.cache.redis_url {
                Some(url) => {
                    let prefix = format!(
                        "bindu:{}:auth:",
                        bindu_schemas::bus::subjects::token(&namespace)
                    );
                    let redis = RedisState::connect(url.expose_secret(), &prefix)
                        .await
                        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
                    auth.with_shared_state(Arc::new(redis))
                }
                None => auth,
            };
            Some(auth)
        } else {
            None
        };
        let ingress = Ingress::new(
            store.clone(),
            bus.clone(),
            card,
            extended_card,
            Some(did_info),
            // A blocking send never waits longer than a run may take (plus the time to
            // record its outcome); without a task timeout, an hour.
            IngressOptions {
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..config.server.ingress_options(
                    config
                        .worker
                        .task_timeout
                        .map_or(Duration::from_secs(3600), |t| t + Duration::from_secs(30)),
                )
            },
            shutdown.clone(),
        );
        let ingress = match auth {
            Some(auth) => ingress.with_auth(auth),
            None => ingress,
        };
        let ingress = match &dispatcher_metrics {
            Some(m) => ingress.with_metrics(|registry| m.register(registry)),
            None => ingress,
        };
        let ingress = if config.mtls.client_certs() && config.mtls.mode == MtlsMode::Mtls {
            tracing::warn!(
                "MTLS__MODE=mtls: the client certificate alone identifies callers; no token and no DID request signature is checked"
            );
            ingress.with_certificate_auth(CertificateAuth {
                allowed_dids: Arc::new(config.auth.allowed_dids.clone()),
            })
        } else {
            ingress
        };
        let http = match tls {
            Some(tls) => tokio::spawn(bindu_ingress::tls::serve_tls(
                listener,
                tls,
                ingress.router(),
                shutdown.clone(),
            )),
            None => tokio::spawn(bindu_ingress::serve(
                listener,
                ingress.router(),
                shutdown.clone(),
            )),
        };
        tracing::info!(%local_addr, url = %base_url, "agent listening");
        (Some(http), Some(local_addr), base_url)
    };

    let worker_stop = CancellationToken::new();
    let mut workers = match (role, handler) {
        (Role::Ingress | Role::Dispatcher, _) => None,
        (_, None) => anyhow::bail!("a worker needs a handler"),
        (_, Some(handler)) => {
            let pool = WorkerPool::new(
                store,
                bus,
                handler,
                config
                    .worker
                    .pool_options((config.nats.ack_wait / 3).max(Duration::from_millis(200))),
            )
            .with_identity(identity.clone());
            Some(tokio::spawn(pool.run(worker_stop.clone())))
        }
    };

    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        let http_done = async {
            match http.as_mut() {
                Some(h) => h.await,
                None => std::future::pending().await,
            }
        };
        let workers_done = async {
            match workers.as_mut() {
                Some(w) => w.await,
                None => std::future::pending().await,
            }
        };
        let dispatcher_done = async {
            match dispatcher.as_mut() {
                Some(d) => d.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = token.cancelled() => {}
            r = http_done => {
                token.cancel();
                r.context("the HTTP server panicked")?.context("the HTTP server failed")?;
            }
            r = workers_done => {
                token.cancel();
                r.context("the worker pool panicked")?.context("the worker pool failed")?;
                anyhow::bail!("the worker pool stopped unexpectedly");
            }
            r = dispatcher_done => {
                token.cancel();
                r.context("the webhook dispatcher panicked")?.context("the webhook dispatcher failed")?;
                anyhow::bail!("the webhook dispatcher stopped unexpectedly");
            }
        }
        tracing::info!(
            deadline_secs = deadline.as_secs(),
            "shutting down: finishing in-flight work"
        );
        let until = tokio::time::Instant::now() + deadline;
        if let Some(mut h) = http.take() {
            if !h.is_finished() {
                match tokio::time::timeout_at(until, &mut h).await {
                    Ok(r) => r
                        .context("the HTTP server panicked")?
                        .context("the HTTP server failed")?,
                    Err(_) => {
                        tracing::warn!("shutdown deadline passed with requests still open");
                        h.abort();
                    }
                }
            }
        }
        match &memory_bus {
            // No more requests: let the workers finish what was already queued, then stop.
            Some(bus) => bus.close(),
            // A durable queue keeps what is not taken: stop taking, finish what runs.
            None => worker_stop.cancel(),
        }
        if let Some(mut w) = workers.take() {
            if !w.is_finished() && tokio::time::timeout_at(until, &mut w).await.is_err() {
                tracing::warn!("shutdown deadline passed; interrupting running tasks");
                worker_stop.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(10), &mut w).await;
            }
        }
        // Last: the dispatcher delivers what the work finished above announced, within the
        // shutdown deadline. What it has not delivered then stays unacked for the next
        // dispatcher (durable buses); with the memory bus it is lost with the process.
        if let Some(metrics) = &dispatcher_metrics {
            if dispatcher.as_ref().is_some_and(|d| !d.is_finished()) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                while metrics.events_held.get() > 0 && tokio::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        dispatcher_stop.cancel();
        if let Some(d) = dispatcher.take() {
            if tokio::time::timeout(Duration::from_secs(15), d)
                .await
                .is_err()
            {
                tracing::warn!("the webhook dispatcher did not stop in time");
            }
        }
        tracing::info!("stopped");
        Ok(())
    });

    Ok(Server {
        local_addr,
        base_url,
        shutdown,
        task,
    })
}

/// The task store and dead letters `bindu webhooks` works on (Postgres only: the memory
/// backends live inside `bindu serve`).
async fn webhook_backends(
    config: &Config,
) -> anyhow::Result<(Arc<dyn TaskStore>, Arc<dyn DeadLetterStore>, Identity)> {
    if config.storage.kind != StoreKind::Postgres {
        anyhow::bail!("dead letters are kept in the task store: set STORAGE_TYPE=postgres and DATABASE_URL (with the memory store they live inside `bindu serve` and end with it)");
    }
    let (identity, _) = load_identity(config, false)?;
    let namespace = config.namespace(&identity.did);
    let store = build_store(config, &namespace).await?;
    let letters = build_dead_letters(config, &namespace).await?;
    Ok((store, letters, identity))
}

/// `bindu webhooks dead-letters`: newest first; with `pending_only`, those not replayed.
pub async fn list_dead_letters(
    config: &Config,
    limit: u32,
    pending_only: bool,
) -> anyhow::Result<Vec<DeadLetter>> {
    let (_, letters, _) = webhook_backends(config).await?;
    letters
        .list(limit, pending_only)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `bindu webhooks replay`: posts the dead letters `ids` (or, when empty, every pending
/// one up to `limit`) again; one result per dead letter (attempts, or why it failed).
pub async fn replay_dead_letters(
    config: &Config,
    ids: Vec<String>,
    limit: u32,
) -> anyhow::Result<Vec<(String, Result<u32, ReplayError>)>> {
    let (store, letters, identity) = webhook_backends(config).await?;
    let ids = if ids.is_empty() {
        letters
            .list(limit, true)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_iter()
            .rev()
            .map(|d| d.id)
            .collect()
    } else {
        ids
    };
    let options = dispatcher_options(config);
    let sender = Sender::new(
        options.delivery.clone(),
        Some(Arc::new(identity)),
        DispatcherMetrics::default(),
    )
    .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?;
    let stop = CancellationToken::new();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let r = bindu_workers::dispatcher::replay::replay(
            letters.as_ref(),
            store.as_ref(),
            &sender,
            options.global.as_ref(),
            &id,
            &stop,
        )
        .await;
        out.push((id, r));
    }
    Ok(out)
}

/// The rustls configuration `mtls.*` describes; file names default to the key directory
/// (`tls_cert.pem`, `tls_key.pem`, `ca_bundle.pem`, as Bindu lays them out).
pub fn tls_config(config: &Config) -> anyhow::Result<Arc<bindu_ingress::tls::ServerConfig>> {
    let dir = &config.identity.dir;
    let pick =
        |p: &Option<std::path::PathBuf>, name: &str| p.clone().unwrap_or_else(|| dir.join(name));
    let cert = pick(&config.mtls.cert_file, "tls_cert.pem");
    let key = pick(&config.mtls.key_file, "tls_key.pem");
    let ca = pick(&config.mtls.ca_file, "ca_bundle.pem");
    bindu_ingress::tls::server_config(&bindu_ingress::tls::TlsFiles {
        cert: &cert,
        key: &key,
        client_ca: config.mtls.client_certs().then_some(ca.as_path()),
        require_client_cert: config.mtls.require_client_cert,
    })
    .map_err(|e| anyhow::anyhow!("MTLS__ENABLED=true: {e}"))
}

/// The built-in handler `config` names (`worker.handler` / `BINDU_HANDLER`): `echo`,
/// `command` (`BINDU_HANDLER_COMMAND`) or `openai` (`OPENAI_BASE_URL`, `BINDU_HANDLER_MODEL`).
pub fn builtin_handler(config: &Config) -> anyhow::Result<Arc<dyn Handler>> {
    Ok(config.worker.handler(&config.openai)?)
}
