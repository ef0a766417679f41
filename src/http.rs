//! The HTTP ingress of a process: bind, compose the cards, wire auth, serve (TLS when
//! `MTLS__ENABLED`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::config::MtlsMode;
use bindu_engine::identity::Identity;
use bindu_engine::store::PaymentStore;
use bindu_engine::x402::Facilitator;
use bindu_engine::{Bus, TaskStore};
use bindu_ingress::auth::setup::AuthSections;
use bindu_ingress::card::{CardCapabilities, CardParts};
use bindu_ingress::negotiation::{token, Negotiator};
use bindu_ingress::payments::{nonces, AgentParty, Payments, Prices};
use bindu_ingress::skills::Skills;
use bindu_ingress::tls::CertificateAuth;
use bindu_ingress::{Ingress, IngressOptions};
use bindu_workers::dispatcher::DispatcherMetrics;
use bindu_workers::payments::SettlementMetrics;
use tokio::net::TcpListener;

use crate::agent::Capabilities;
use crate::backends::tls_config;
use crate::supervisor::Supervisor;
use crate::{Config, Error, Result};

/// What the HTTP part needs from the rest of the process.
pub(crate) struct HttpParts {
    /// The agent's skills, read from `agent.skills` and `agent.private_skills`.
    pub skills: Arc<Skills>,
    pub store: Arc<dyn TaskStore>,
    pub bus: Arc<dyn Bus>,
    pub identity: Arc<Identity>,
    pub namespace: String,
    /// Capabilities a builder asked for; the card claims no more than the engine has.
    pub requested: Capabilities,
    /// The dispatcher's metrics, shown on `/metrics`, when it runs in this process.
    pub dispatcher_metrics: Option<DispatcherMetrics>,
    /// The worker pool's metrics, shown on `/metrics` when it runs in this process.
    pub worker_metrics: Option<bindu_workers::pool::WorkerMetrics>,
    /// The workers' payment settlements, shown on `/metrics` when they run in this process
    /// for a priced agent.
    pub settlement_metrics: Option<SettlementMetrics>,
    /// The x402 facilitator (`/verify` for a priced agent).
    pub facilitator: Arc<dyn Facilitator>,
    /// Where verified payments are kept with their tasks.
    pub payments: Arc<dyn PaymentStore>,
    /// The agent's and its skills' prices (x402).
    pub prices: Prices,
}

/// Binds and starts serving on `supervisor`; the bound address and the card's base URL.
pub(crate) async fn start(
    config: &Config,
    parts: HttpParts,
    supervisor: &mut Supervisor,
) -> Result<(SocketAddr, String)> {
    let tls = if config.mtls.enabled {
        Some(tls_config(config)?)
    } else {
        None
    };
    let host = config.server.host.as_str();
    let listener = TcpListener::bind((host, config.server.port))
        .await
        .map_err(|source| Error::Listen {
            what: format!(
                "could not listen on {host}:{} (server.host / server.port)",
                config.server.port
            ),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Listen {
        what: "reading the bound address".into(),
        source,
    })?;
    let base_url = base_url(config, local_addr);
    let capabilities = CardCapabilities {
        streaming: parts.requested.streaming,
        // Only when notifications are really delivered (here or by `bindu dispatcher`).
        push_notifications: config.push_enabled() && parts.requested.push_notifications,
    };
    let prices = parts.prices.priced().then_some(parts.prices);
    let cards = bindu_ingress::card::compose(CardParts {
        agent: &config.agent,
        skills: &parts.skills,
        identity: &parts.identity,
        base_url: &base_url,
        rest_base_path: &config.server.rest_base_path,
        tenant: config.server.tenant.as_deref(),
        capabilities,
        client_certs: config.mtls.client_certs(),
        bearer: config.auth.enabled,
        payments: prices.as_ref(),
    })
    .map_err(Error::Card)?;
    let auth = bindu_ingress::auth::setup::from_config(
        AuthSections {
            auth: &config.auth,
            hydra: &config.hydra,
            cache: &config.cache,
            mtls: &config.mtls,
        },
        &parts.namespace,
    )
    .await
    .map_err(|e| Error::backend("auth", e))?;
    let shutdown = supervisor.shutdown();
    let mut ingress = Ingress::new(
        parts.store.clone(),
        parts.bus.clone(),
        cards.public,
        cards.extended,
        Some(cards.did),
        // A blocking send never waits longer than a run may take (plus the time to record
        // its outcome); without a task timeout, an hour.
        IngressOptions {
            version: env!("CARGO_PKG_VERSION").to_string(),
            dedupe_window: config.storage.dedupe_window,
            role: if parts.worker_metrics.is_some() {
                "serve"
            } else {
                "ingress"
            },
            ..config.server.ingress_options(
                config
                    .worker
                    .task_timeout
                    .map_or(Duration::from_secs(3600), |t| t + Duration::from_secs(30)),
            )
        },
        shutdown.clone(),
    );
    if let Some(auth) = auth {
        ingress = ingress.with_auth(auth);
    }
    if let Some(limits) = limits(config, &parts.namespace).await? {
        let stop = supervisor.part_token();
        if let Some(watch) = limits
            .clone()
            .watcher(&parts.bus, parts.store.clone(), stop)
            .await
        {
            supervisor.spawn(watch);
        }
        ingress = ingress.with_limits(limits);
    }
    if config.negotiation.enabled {
        let key = parts.identity.derive_secret(token::KEY_PURPOSE);
        ingress = ingress.with_negotiator(Negotiator::new(
            &config.negotiation,
            &parts.skills,
            key,
            price_per_task(config),
        ));
    }
    ingress = ingress.with_skills(parts.skills);
    if let Some(m) = &parts.dispatcher_metrics {
        ingress = ingress.with_metrics(|registry| m.register(registry));
    }
    if let Some(m) = &parts.worker_metrics {
        ingress = ingress.with_metrics(|registry| m.register(registry));
    }
    if let Some(m) = &parts.settlement_metrics {
        ingress = ingress.with_metrics(|registry| m.register(registry));
    }
    if config.telemetry.enabled {
        ingress = ingress.with_metrics(crate::telemetry::register_metrics);
    }
    if let Some(prices) = prices {
        let guard = payment_nonces(config, &parts.namespace).await?;
        tracing::info!(
            options = prices.agent.len(),
            priced_skills = prices.skills.values().filter(|a| !a.is_empty()).count(),
            free_skills = prices.skills.values().filter(|a| a.is_empty()).count(),
            settle = %config.x402.settle,
            nonces = guard.backend(),
            "priced agent: protected methods need an x402 payment"
        );
        let agent = AgentParty {
            name: config.agent.name.clone(),
            description: config.agent.description.clone(),
            base_url: base_url.clone(),
            did: parts.identity.did.clone(),
        };
        ingress = ingress.with_payments(Payments::new(
            prices,
            config.x402.protected_methods.clone(),
            parts.facilitator.clone(),
            guard,
            agent,
            parts.payments.clone(),
            config.x402.flow,
        ));
    }
    if config.mtls.client_certs() && config.mtls.mode == MtlsMode::Mtls {
        tracing::warn!(
            "MTLS__MODE=mtls: the client certificate alone identifies callers; no token and no DID request signature is checked"
        );
        ingress = ingress.with_certificate_auth(CertificateAuth {
            allowed_dids: Arc::new(config.auth.allowed_dids.clone()),
        });
    }
    if config.server.host_names_unconfigured() {
        tracing::warn!(
            host = %config.server.host,
            "listening beyond loopback without BINDU_DEPLOYMENT_URL or BINDU_ALLOWED_HOSTS: JSON-RPC requests are answered when they name the agent by IP address or localhost, and refused (HTTP 421) under any other host name until it is listed (BINDU_ALLOWED_HOSTS=* admits every host)"
        );
    }
    let router = ingress.router();
    let limits = config.server.connection_limits();
    match tls {
        Some(tls) => supervisor.http(bindu_ingress::tls::serve_tls(
            listener, tls, router, shutdown, limits,
        )),
        None => supervisor.http(bindu_ingress::serve_with(
            listener, router, shutdown, limits,
        )),
    }
    tracing::info!(%local_addr, url = %base_url, "agent listening");
    Ok((local_addr, base_url))
}

/// Back-pressure and per-caller limits, when any is configured: buckets and open-task sets
/// in Redis when `REDIS_URL` is set (shared by every replica), else this process's own.
async fn limits(
    config: &Config,
    namespace: &str,
) -> Result<Option<Arc<bindu_ingress::limits::Limits>>> {
    if !config.limits.any() {
        return Ok(None);
    }
    let shared = shared_redis(config, namespace, "limits", "per-caller limits (REDIS_URL)")
        .await?
        .map(Arc::new);
    tracing::info!(
        queue_limit = config.limits.queue_limit,
        rate = config.limits.rate,
        max_open_tasks = config.limits.max_open_tasks,
        anonymous_rate = config.limits.anonymous_rate,
        anonymous_max_open_tasks = config.limits.anonymous_max_open_tasks,
        shared = shared.is_some(),
        "messages are limited (HTTP 429 with Retry-After beyond)"
    );
    Ok(Some(Arc::new(bindu_ingress::limits::Limits::new(
        &config.limits,
        shared,
    ))))
}

/// The payment replay guard: Redis when `REDIS_URL` is set (shared by every replica),
/// else this process's memory (the single-process mode; `launch` refuses the others).
async fn payment_nonces(config: &Config, namespace: &str) -> Result<Arc<dyn nonces::NonceGuard>> {
    Ok(
        match shared_redis(
            config,
            namespace,
            "x402",
            "payment replay guard (REDIS_URL)",
        )
        .await?
        {
            Some(redis) => Arc::new(nonces::SharedNonces::new(Arc::new(redis))),
            // Far more live authorizations than one process takes in a timeout window.
            None => Arc::new(nonces::LocalNonces::new(1_000_000)),
        },
    )
}

/// A connection to `REDIS_URL` for `part`, its keys under `bindu:<agent>:<what>:`; none when
/// `REDIS_URL` is not set.
async fn shared_redis(
    config: &Config,
    namespace: &str,
    what: &str,
    part: &'static str,
) -> Result<Option<bindu_ingress::auth::shared::RedisState>> {
    use secrecy::ExposeSecret;
    let Some(url) = &config.cache.redis_url else {
        return Ok(None);
    };
    let prefix = format!(
        "bindu:{}:{what}:",
        bindu_schemas::bus::subjects::token(namespace)
    );
    bindu_ingress::auth::shared::RedisState::connect(
        url.expose_secret(),
        &prefix,
        config.cache.redis_options(),
    )
    .await
    .map(Some)
    .map_err(|e| Error::backend(part, e))
}

/// The agent's price per task, as negotiation's cost subscore reads it (`max_cost_amount`,
/// `cost_exceeds_budget`) for skills without a price of their own: the cheapest of the
/// agent's x402 price options (`agent.execution_cost`, in tokens: USDC), `None` for a free
/// agent.
fn price_per_task(config: &Config) -> Option<f64> {
    bindu_ingress::negotiation::score::cheapest(&config.agent.execution_cost)
}

/// `BINDU_DEPLOYMENT_URL`, else the bound address (loopback for an unspecified host).
fn base_url(config: &Config, local_addr: SocketAddr) -> String {
    if let Some(url) = &config.server.deployment_url {
        return url.clone();
    }
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
