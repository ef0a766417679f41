//! Prometheus metrics (OpenMetrics text at `/metrics`). Names follow
//! `bindu_<area>_<noun>_<unit>[_total]`; labels are low-cardinality (method, outcome, state).

use std::time::Instant;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use bindu_schemas::TaskState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub const RPC_REQUESTS: &str = "bindu_rpc_requests";
pub const RPC_DURATION: &str = "bindu_rpc_request_duration_seconds";
pub const RPC_IN_FLIGHT: &str = "bindu_rpc_requests_in_flight";
pub const TASKS: &str = "bindu_tasks";
pub const AUTH_INTROSPECTIONS: &str = "bindu_auth_introspections";
pub const AUTH_SHARED_UP: &str = "bindu_auth_shared_state_up";
pub const AUTH_SHARED_ERRORS: &str = "bindu_auth_shared_state_errors";

/// The auth layer's metrics (registered with [`Metrics`] by `Ingress::with_auth`).
#[derive(Clone, Default)]
pub struct AuthMetrics {
    /// Lookups past this replica's token cache (shared cache or authority).
    pub introspections: Counter,
    /// 1 while the shared state (Redis) answers, 0 while it does not; absent without one.
    pub shared_up: Gauge,
    /// Shared-state commands that failed or timed out, or were skipped while it was down.
    pub shared_errors: Counter,
}

impl AuthMetrics {
    pub fn register(&self, registry: &mut Registry, shared: bool) {
        registry.register(
            AUTH_INTROSPECTIONS,
            "Token lookups past the replica's own cache (Redis or the authority)",
            self.introspections.clone(),
        );
        if shared {
            registry.register(
                AUTH_SHARED_UP,
                "Whether Redis (auth state shared by replicas) answers: 1 up, 0 down",
                self.shared_up.clone(),
            );
            registry.register(
                AUTH_SHARED_ERRORS,
                "Redis commands of the auth layer that failed, timed out or were skipped while it was down",
                self.shared_errors.clone(),
            );
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    /// `ok` or the JSON-RPC error code.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    in_flight: Gauge,
    tasks: Family<StateLabels, Gauge>,
}

/// Decrements the in-flight gauge when the request ends.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 18)));
        let in_flight = Gauge::default();
        let tasks = Family::<StateLabels, Gauge>::default();
        registry.register(
            RPC_REQUESTS,
            "JSON-RPC requests by method and outcome",
            requests.clone(),
        );
        registry.register(
            RPC_DURATION,
            "Time to answer a JSON-RPC request (to the first byte of a stream)",
            duration.clone(),
        );
        registry.register(
            RPC_IN_FLIGHT,
            "JSON-RPC requests being answered",
            in_flight.clone(),
        );
        registry.register(
            TASKS,
            "Stored tasks by state (Postgres: as of the last background count, taken at most once per STORAGE__COUNT_INTERVAL)",
            tasks.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            in_flight,
            tasks,
        }
    }

    /// The registry `/metrics` encodes, for metrics defined elsewhere.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn observe(&self, method: &'static str, error_code: Option<i32>, started: Instant) {
        let outcome = error_code.map_or_else(|| "ok".to_string(), |c| c.to_string());
        self.requests
            .get_or_create(&RequestLabels { method, outcome })
            .inc();
        self.duration
            .get_or_create(&MethodLabels { method })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The OpenMetrics text of every registered metric, with `counts` (stored tasks by
    /// state, when the store could count them) as the task gauge.
    pub(crate) fn render(&self, counts: Option<Vec<(TaskState, u64)>>) -> Response {
        for (state, n) in counts.into_iter().flatten() {
            self.tasks
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut body = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &self.registry) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        (
            [
                (
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response()
    }
}
