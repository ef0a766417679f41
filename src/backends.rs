//! The backends the configuration names, built behind their ports: the task store, the
//! dead-letter store, the payments, the bus, the agent's identity and the TLS set-up. Nothing above this
//! module knows which backend it has.

use std::sync::Arc;

use bindu_engine::bus::nats::NatsStorage;
use bindu_engine::bus::{MemoryBus, NatsBus, NatsOptions, RedisBus, RedisBusOptions};
use bindu_engine::identity::{self, Identity};
use bindu_engine::store::{
    DeadLetterStore, MemoryDeadLetters, MemoryPayments, MemoryStore, PaymentStore,
    PostgresDeadLetters, PostgresOptions, PostgresPayments, PostgresStore,
};
use bindu_engine::{Bus, TaskStore};
use secrecy::ExposeSecret;

use crate::config::{BusKind, JetStreamStorage, StoreKind};
use crate::{Config, Error, Result};

/// The Postgres options `config` asks for.
pub fn postgres_options(config: &Config, namespace: &str) -> Result<PostgresOptions> {
    let url = config
        .storage
        .database_url
        .as_ref()
        .ok_or_else(|| Error::backend("task store", "DATABASE_URL is not set"))?;
    let mut options = PostgresOptions::new(url.expose_secret(), namespace);
    options.pool_size = config.storage.pool_size;
    options.batch_max = config.storage.batch_max;
    options.batch_linger = config.storage.batch_linger;
    options.timeout = config.storage.timeout;
    options.writers = config.storage.writers;
    options.count_interval = config.storage.count_interval;
    Ok(options)
}

/// The task store `config` asks for (connects and migrates Postgres).
pub async fn build_store(config: &Config, namespace: &str) -> Result<Arc<dyn TaskStore>> {
    Ok(match config.storage.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new(config.storage.memory_max_tasks)),
        StoreKind::Postgres => {
            let store = PostgresStore::connect(postgres_options(config, namespace)?)
                .await
                .map_err(|e| Error::backend("task store (STORAGE_TYPE=postgres)", e))?;
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
) -> Result<Arc<dyn DeadLetterStore>> {
    Ok(match config.storage.kind {
        StoreKind::Memory => Arc::new(MemoryDeadLetters::default()),
        StoreKind::Postgres => {
            let mut options = postgres_options(config, namespace)?;
            options.pool_size = 2;
            let pool = PostgresStore::pool(&options)
                .await
                .map_err(|e| Error::backend("dead letters (STORAGE_TYPE=postgres)", e))?;
            PostgresStore::migrate(&pool)
                .await
                .map_err(|e| Error::backend("dead letters: migration failed", e))?;
            Arc::new(PostgresDeadLetters::new(pool, namespace))
        }
    })
}

/// Where the payments of a priced agent are kept with their tasks: Postgres with a Postgres
/// task store (a pool of its own only when the agent is `priced`), else in memory.
pub async fn build_payments(
    config: &Config,
    namespace: &str,
    priced: bool,
) -> Result<Arc<dyn PaymentStore>> {
    Ok(match config.storage.kind {
        StoreKind::Postgres if priced => {
            let mut options = postgres_options(config, namespace)?;
            options.pool_size = 2;
            let pool = PostgresStore::pool(&options)
                .await
                .map_err(|e| Error::backend("payments (STORAGE_TYPE=postgres)", e))?;
            PostgresStore::migrate(&pool)
                .await
                .map_err(|e| Error::backend("payments: migration failed", e))?;
            Arc::new(PostgresPayments::new(pool, namespace))
        }
        _ => Arc::new(MemoryPayments::default()),
    })
}

/// How workers (and `bindu payments reconcile`) settle payments: the facilitator
/// `X402__FACILITATOR_URL`, recording into `payments`.
pub fn settlement(
    config: &Config,
    payments: Arc<dyn PaymentStore>,
) -> Result<bindu_workers::payments::Settlement> {
    Ok(bindu_workers::payments::Settlement {
        facilitator: Arc::new(
            bindu_engine::x402::HttpFacilitator::new(
                &config.x402.facilitator_url,
                config.x402.facilitator_timeout,
            )
            .map_err(|e| Error::backend("x402 facilitator (X402__FACILITATOR_URL)", e))?,
        ),
        mode: config.x402.settle,
        timeout: config.x402.facilitator_timeout,
        settling_lease: config.x402.settling_lease,
        metrics: Default::default(),
        payments,
    })
}

/// The bus `config` asks for.
pub async fn build_bus(config: &Config, namespace: &str) -> Result<Arc<dyn Bus>> {
    Ok(match config.scheduler.kind {
        BusKind::Memory => Arc::new(MemoryBus::new(config.scheduler.queue_capacity)),
        BusKind::Nats => {
            let url = config
                .nats
                .url
                .clone()
                .ok_or_else(|| Error::backend("task bus", "NATS_URL is not set"))?;
            let nats = &config.nats;
            let mut options = NatsOptions::new(url, namespace);
            options.replicas = nats.replicas;
            options.storage = match nats.storage {
                JetStreamStorage::Memory => NatsStorage::Memory,
                JetStreamStorage::File => NatsStorage::File,
            };
            options.event_max_age = nats.event_retention;
            options.ack_wait = nats.ack_wait;
            options.max_deliver = nats.max_deliver;
            options.wait_for_server = nats.wait_for_server;
            options.prefetch = config.worker.concurrency;
            options.command_batch = nats.command_batch;
            let bus = NatsBus::connect(options)
                .await
                .map_err(|e| Error::backend("task bus (SCHEDULER_TYPE=nats)", e))?;
            tracing::info!(%namespace, "NATS JetStream bus ready");
            Arc::new(bus)
        }
        BusKind::Redis => {
            let url = config
                .cache
                .redis_url
                .as_ref()
                .ok_or_else(|| Error::backend("task bus", "REDIS_URL is not set"))?;
            let redis = &config.redis_bus;
            let mut options = RedisBusOptions::new(url.expose_secret(), namespace);
            options.event_retention = redis.event_retention;
            options.ack_wait = redis.ack_wait;
            options.max_deliver = redis.max_deliver;
            options.prefetch = config.worker.concurrency.clamp(1, 64);
            let bus = RedisBus::connect(options)
                .await
                .map_err(|e| Error::backend("task bus (SCHEDULER_TYPE=redis)", e))?;
            tracing::info!(%namespace, "Redis Streams bus ready");
            Arc::new(bus)
        }
    })
}

/// Loads (or creates, on first start) the agent's key pair from `identity.dir`. The DID is
/// `did:bindu:<author>:<name>:<id>` when `agent.author` is set, else the key's `did:key`.
/// With `recreate`, a new key pair replaces the old one.
pub fn load_identity(config: &Config, recreate: bool) -> Result<(Identity, bool)> {
    let (key, created) = identity::load_or_create(&config.identity.dir, recreate)
        .map_err(|e| Error::Identity(e.to_string()))?;
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

/// The rustls configuration `mtls.*` describes; file names default to the key directory
/// (`tls_cert.pem`, `tls_key.pem`, `ca_bundle.pem`, as Bindu lays them out).
pub fn tls_config(config: &Config) -> Result<Arc<bindu_ingress::tls::ServerConfig>> {
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
    .map_err(|e| Error::Tls(e.to_string()))
}
