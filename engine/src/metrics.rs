//! The engine's Prometheus metrics: the task store's write batches and the bus's publishes
//! and work queue. Names follow `bindu_<area>_<noun>_<unit>[_total]`.
//!
//! The store and bus backends are built in many places (processes, tests, benchmarks), so
//! their metrics are one set per process ([`engine`]) that every process kind adds to its
//! `/metrics` registry ([`EngineMetrics::register`]). Recording is lock-free: histograms
//! and gauges are atomics, and the labelled families are created once, here.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub const STORE_BATCH_SIZE: &str = "bindu_store_batch_size";
pub const STORE_BATCH_DURATION: &str = "bindu_store_batch_duration_seconds";
pub const BUS_PUBLISH_DURATION: &str = "bindu_bus_publish_duration_seconds";
pub const BUS_COMMAND_BATCH: &str = "bindu_bus_command_batch_size";
pub const QUEUE_WAITING: &str = "bindu_queue_commands_waiting";
pub const QUEUE_RUNNING: &str = "bindu_queue_commands_running";
pub const QUEUE_SAMPLED_AT: &str = "bindu_queue_sampled_at_seconds";

/// The metrics of the store and bus backends of this process.
pub struct EngineMetrics {
    /// Task writes group-committed in one Postgres batch.
    pub store_batch_size: Histogram,
    /// Time to commit one batch, retries included.
    pub store_batch_duration: Histogram,
    /// Time to publish one batch of commands or events until the bus stored it.
    pub bus_publish_duration: Histogram,
    /// Commands carried by one work-queue message (NATS, `NATS__COMMAND_BATCH`).
    pub bus_command_batch: Histogram,
    /// Commands no worker has taken (the workers' consumer's pending count), sampled.
    pub queue_waiting: Gauge,
    /// Commands taken and not acknowledged yet (running or being redelivered), sampled.
    pub queue_running: Gauge,
    /// Unix time of the last queue sample (its age tells whether sampling works).
    pub queue_sampled_at: Gauge,
}

/// The process's engine metrics.
pub fn engine() -> &'static EngineMetrics {
    static METRICS: OnceLock<EngineMetrics> = OnceLock::new();
    METRICS.get_or_init(|| EngineMetrics {
        store_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
        store_batch_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
        bus_publish_duration: Histogram::new(exponential_buckets(0.00005, 2.0, 18)),
        bus_command_batch: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
        queue_waiting: Gauge::default(),
        queue_running: Gauge::default(),
        queue_sampled_at: Gauge::default(),
    })
}

impl EngineMetrics {
    /// Adds the store's and the bus's metrics to `registry`.
    pub fn register(&'static self, registry: &mut Registry) {
        registry.register(
            STORE_BATCH_SIZE,
            "Task writes group-committed in one Postgres transaction",
            self.store_batch_size.clone(),
        );
        registry.register(
            STORE_BATCH_DURATION,
            "Time to commit one batch of task writes (retries included)",
            self.store_batch_duration.clone(),
        );
        registry.register(
            BUS_PUBLISH_DURATION,
            "Time to publish a batch of task commands or events until the bus has stored them",
            self.bus_publish_duration.clone(),
        );
        registry.register(
            BUS_COMMAND_BATCH,
            "Commands carried by one work-queue message published from this process",
            self.bus_command_batch.clone(),
        );
    }

    /// Adds the work queue's sampled depth to `registry` (processes that sample it: see
    /// [`sample_queue`]).
    pub fn register_queue(&'static self, registry: &mut Registry) {
        registry.register(
            QUEUE_WAITING,
            "Task commands waiting for a worker (JetStream: the workers' consumer's pending count), sampled on an interval",
            self.queue_waiting.clone(),
        );
        registry.register(
            QUEUE_RUNNING,
            "Task commands taken by a worker and not acknowledged yet (consumer lag in flight), sampled on an interval",
            self.queue_running.clone(),
        );
        registry.register(
            QUEUE_SAMPLED_AT,
            "Unix time of the last sample of the work queue's depth",
            self.queue_sampled_at.clone(),
        );
    }

    /// One committed (or failed) store batch.
    pub fn store_batch(&self, writes: usize, took: Duration) {
        self.store_batch_size.observe(writes as f64);
        self.store_batch_duration.observe(took.as_secs_f64());
    }
}

/// How often [`sample_queue`] asks the bus.
pub const QUEUE_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples the work queue's depth every `interval` until `stop` (one request to the server
/// each time on a durable queue; a scrape never asks the bus).
pub async fn sample_queue(
    bus: std::sync::Arc<dyn crate::Bus>,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let m = engine();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        match bus.queue_depth().await {
            Ok(depth) => {
                m.queue_waiting
                    .set(i64::try_from(depth.waiting).unwrap_or(i64::MAX));
                m.queue_running
                    .set(i64::try_from(depth.running).unwrap_or(i64::MAX));
                m.queue_sampled_at.set(crate::time::unix_now());
            }
            Err(e) => tracing::debug!(error = %e, "could not sample the work queue's depth"),
        }
    }
}
