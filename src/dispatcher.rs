//! The webhook dispatcher of a process (`bindu serve` with push notifications, or
//! `bindu dispatcher`; its probes and metrics listener is [`crate::probes`]).

use std::sync::Arc;

use bindu_engine::identity::Identity;
use bindu_engine::{Bus, TaskStore};
use bindu_workers::dispatcher::DispatcherMetrics;
use bindu_workers::Dispatcher;

use crate::backends::build_dead_letters;
use crate::supervisor::Supervisor;
use crate::{Config, Error, Result};

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
    supervisor.dispatcher(stop, metrics.clone(), run);
    Ok(metrics)
}
