//! The dispatcher's Prometheus metrics. Names follow `bindu_<area>_<noun>_<unit>[_total]`;
//! labels are low-cardinality (no URLs, hosts or task ids).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub const DELIVERIES: &str = "bindu_push_deliveries";
pub const ATTEMPTS: &str = "bindu_push_attempts";
pub const ATTEMPT_DURATION: &str = "bindu_push_attempt_duration_seconds";
pub const DEAD_LETTERS: &str = "bindu_push_dead_letters";
pub const QUEUE_LAG: &str = "bindu_push_queue_lag_seconds";
pub const EVENTS_HELD: &str = "bindu_push_events_held";
pub const GAPS: &str = "bindu_push_sequence_gaps";
pub const SKIPPED: &str = "bindu_push_events_skipped";
pub const PARKED: &str = "bindu_push_parked";
pub const NOTIFICATIONS_PARKED: &str = "bindu_push_notifications_parked";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `rejected` (a final HTTP answer), `refused` (destination policy or
    /// a bad URL), `exhausted` (attempts used up) or `overflow` (its destination holds its
    /// share of parked notifications).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `2xx`, `3xx`, `4xx`, `408`, `429`, `5xx`, `timeout`, `connect`, `refused`, `error`.
    pub result: &'static str,
}

/// Cheap to clone: every field is a shared handle.
#[derive(Clone)]
pub struct DispatcherMetrics {
    pub deliveries: Family<OutcomeLabels, Counter>,
    pub attempts: Family<ResultLabels, Counter>,
    pub attempt_duration: Histogram,
    pub dead_letters: Counter,
    pub queue_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub events_held: Gauge,
    pub gaps: Counter,
    pub skipped: Counter,
    pub parked: Counter,
    pub notifications_parked: Gauge,
}

impl Default for DispatcherMetrics {
    fn default() -> Self {
        DispatcherMetrics {
            deliveries: Family::default(),
            attempts: Family::default(),
            attempt_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            dead_letters: Counter::default(),
            queue_lag: Gauge::default(),
            events_held: Gauge::default(),
            gaps: Counter::default(),
            skipped: Counter::default(),
            parked: Counter::default(),
            notifications_parked: Gauge::default(),
        }
    }
}

impl DispatcherMetrics {
    /// Adds every metric to `registry` (the ingress's `/metrics` registry in `bindu serve`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            DELIVERIES,
            "Webhook notifications finished, by outcome (one per event and webhook)",
            self.deliveries.clone(),
        );
        registry.register(
            ATTEMPTS,
            "Webhook requests made, by result",
            self.attempts.clone(),
        );
        registry.register(
            ATTEMPT_DURATION,
            "Time of one webhook request, until its answer or failure",
            self.attempt_duration.clone(),
        );
        registry.register(
            DEAD_LETTERS,
            "Notifications given up and recorded as dead letters (parked ones not counted)",
            self.dead_letters.clone(),
        );
        registry.register(
            QUEUE_LAG,
            "Age of the newest event when the dispatcher started delivering it",
            self.queue_lag.clone(),
        );
        registry.register(
            EVENTS_HELD,
            "Task events the dispatcher holds (queued or being delivered)",
            self.events_held.clone(),
        );
        registry.register(
            GAPS,
            "Times a task's missing event never arrived and later events went ahead",
            self.gaps.clone(),
        );
        registry.register(
            SKIPPED,
            "Task events passed over without reading the store: their task has no push config",
            self.skipped.clone(),
        );
        registry.register(
            PARKED,
            "Notifications parked: recorded as retrying dead letters so their events could be acked",
            self.parked.clone(),
        );
        registry.register(
            NOTIFICATIONS_PARKED,
            "Parked notifications the dispatcher holds, waiting for their turn or a retry",
            self.notifications_parked.clone(),
        );
    }

    pub fn outcome(&self, outcome: &'static str) {
        self.deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn attempt(&self, result: &'static str, seconds: f64) {
        self.attempts.get_or_create(&ResultLabels { result }).inc();
        self.attempt_duration.observe(seconds);
    }

    /// The text a `/metrics` endpoint serves for these metrics alone.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
