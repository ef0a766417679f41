//! Maintenance of a durable deployment, behind the admin subcommands: migrations, purging
//! old tasks, the webhook dead letters (list, replay) and the payments (list, reconcile). They work on Postgres: the memory
//! backends live inside `bindu serve` and end with it.

use std::sync::Arc;
use std::time::Duration;

use bindu_engine::identity::Identity;
use bindu_engine::store::{
    DeadLetter, DeadLetterStore, PaymentRecord, PaymentState, PaymentStore, PostgresStore,
};
use bindu_engine::TaskStore;
use bindu_workers::dispatcher::delivery::Sender;
use bindu_workers::dispatcher::replay::ReplayError;
use bindu_workers::dispatcher::DispatcherMetrics;
use bindu_workers::payments::reconcile::{Reconciled, Reconciler};
use tokio_util::sync::CancellationToken;

use crate::backends::{
    build_bus, build_dead_letters, build_payments, build_store, load_identity, postgres_options,
    settlement,
};
use crate::config::StoreKind;
use crate::{Config, Error, Result};

/// Applies the task store's migrations; `false` when there is nothing to migrate (memory).
pub async fn migrate(config: &Config) -> Result<bool> {
    if config.storage.kind != StoreKind::Postgres {
        return Ok(false);
    }
    // Migrations are the same for every namespace.
    let options = postgres_options(config, "")?;
    let pool = PostgresStore::pool(&options)
        .await
        .map_err(|e| Error::backend("task store", e))?;
    PostgresStore::migrate(&pool)
        .await
        .map_err(|e| Error::backend("migration failed", e))?;
    Ok(true)
}

/// Deletes (or with `dry_run` counts) terminal tasks older than `age`.
pub async fn purge(config: &Config, age: Duration, dry_run: bool) -> Result<u64> {
    if config.storage.kind != StoreKind::Postgres {
        return Err(Error::backend("purge", "it needs a durable store: set STORAGE_TYPE=postgres and DATABASE_URL (the memory store lives inside `bindu serve`; use STORAGE__RETENTION there)"));
    }
    let namespace = match &config.storage.namespace {
        Some(n) => n.clone(),
        None => load_identity(config, false)?.0.did,
    };
    let store = build_store(config, &namespace).await?;
    store
        .purge(age, dry_run)
        .await
        .map_err(|e| Error::backend("task store", e))
}

/// The task store and dead letters `bindu webhooks` works on.
async fn webhook_backends(
    config: &Config,
) -> Result<(Arc<dyn TaskStore>, Arc<dyn DeadLetterStore>, Identity)> {
    if config.storage.kind != StoreKind::Postgres {
        return Err(Error::backend("dead letters", "they are kept in the task store: set STORAGE_TYPE=postgres and DATABASE_URL (with the memory store they live inside `bindu serve` and end with it)"));
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
) -> Result<Vec<DeadLetter>> {
    let (_, letters, _) = webhook_backends(config).await?;
    letters
        .list(limit, pending_only)
        .await
        .map_err(|e| Error::backend("dead letters", e))
}

/// `bindu webhooks replay`: posts the dead letters `ids` (or, when empty, every pending
/// one given up among the newest `limit` pending; parked ones the dispatcher still retries
/// are left to it) again; one result per dead letter (attempts, or why it failed).
pub async fn replay_dead_letters(
    config: &Config,
    ids: Vec<String>,
    limit: u32,
) -> Result<Vec<(String, Result<u32, ReplayError>)>> {
    let (store, letters, identity) = webhook_backends(config).await?;
    let ids = if ids.is_empty() {
        letters
            .list(limit, true)
            .await
            .map_err(|e| Error::backend("dead letters", e))?
            .into_iter()
            .rev()
            .filter(|d| !d.retrying)
            .map(|d| d.id)
            .collect()
    } else {
        ids
    };
    let options = config.push.dispatcher_options(&config.webhook);
    let sender = Sender::new(
        options.delivery.clone(),
        Some(Arc::new(identity)),
        DispatcherMetrics::default(),
    )
    .map_err(|e| Error::backend("HTTP client", e))?;
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

/// The payments store `bindu payments` works on, with what a reconciliation needs.
async fn payment_backends(config: &Config) -> Result<(Arc<dyn PaymentStore>, String)> {
    if config.storage.kind != StoreKind::Postgres {
        return Err(Error::backend("payments", "they are kept in the task store: set STORAGE_TYPE=postgres and DATABASE_URL (with the memory store they live inside `bindu serve`, which reconciles them itself)"));
    }
    let (identity, _) = load_identity(config, false)?;
    let namespace = config.namespace(&identity.did);
    let payments = build_payments(config, &namespace, true).await?;
    Ok((payments, namespace))
}

/// `bindu payments list`: newest first; only those in `state` when given.
pub async fn list_payments(
    config: &Config,
    state: Option<PaymentState>,
    limit: u32,
) -> Result<Vec<PaymentRecord>> {
    let (payments, _) = payment_backends(config).await?;
    payments
        .list(state, limit)
        .await
        .map_err(|e| Error::backend("payments", e))
}

/// `bindu payments reconcile`: asks the facilitator (`X402__FACILITATOR_URL`) about every
/// orphaned payment once and resolves its task (see
/// [`bindu_workers::payments::reconcile`]).
pub async fn reconcile_payments(config: &Config) -> Result<Vec<Reconciled>> {
    let (payments, namespace) = payment_backends(config).await?;
    let store = build_store(config, &namespace).await?;
    let bus = build_bus(config, &namespace).await?;
    let settlement = settlement(config, payments)?;
    Reconciler::new(settlement, store, bus)
        .pass()
        .await
        .map_err(|e| Error::backend("payments", e))
}

/// Deletes old terminal tasks every hour (`STORAGE__RETENTION`), until `stop`.
pub(crate) async fn retention(
    store: Arc<dyn TaskStore>,
    retention: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        match store.purge(retention, false).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "retention: purged old terminal tasks"),
            Err(e) => tracing::warn!(error = %e, "retention purge failed; will retry next hour"),
        }
    }
}
