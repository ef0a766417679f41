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
pub const RPC_ERRORS: &str = "bindu_rpc_errors";
pub const SSE_STREAMS_OPEN: &str = "bindu_sse_streams_open";
pub const SIGNATURES: &str = "bindu_auth_signature_verifications";
/// Bindu's names for the HTTP layer (every route, not only JSON-RPC).
pub const HTTP_REQUESTS: &str = "http_requests";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "http_requests_in_flight";

/// The auth layer's metrics (registered with [`Metrics`] by `Ingress::with_auth`).
#[derive(Clone, Default)]
pub struct AuthMetrics {
    /// Lookups past this replica's token cache (shared cache or authority).
    pub introspections: Counter,
    /// 1 while the shared state (Redis) answers, 0 while it does not; absent without one.
    pub shared_up: Gauge,
    /// Shared-state commands that failed or timed out, or were skipped while it was down.
    pub shared_errors: Counter,
    /// DID request signatures checked, by result (`verified` or the refusal's reason).
    pub signatures: Family<ResultLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

impl AuthMetrics {
    pub fn register(&self, registry: &mut Registry, shared: bool) {
        registry.register(
            AUTH_INTROSPECTIONS,
            "Token lookups past the replica's own cache (Redis or the authority)",
            self.introspections.clone(),
        );
        registry.register(
            SIGNATURES,
            "DID request signatures checked, by result: verified or the refusal's reason",
            self.signatures.clone(),
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
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    method: &'static str,
    /// `ok` or `error`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    /// The route's path template (`/agent/skills/{id}`), `unmatched` for other paths.
    endpoint: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<DurationLabels>,
    errors: Family<CodeLabels, Counter>,
    in_flight: Gauge,
    tasks: Family<StateLabels, Gauge>,
    sse_open: Gauge,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<EndpointLabels>,
    http_in_flight: Gauge,
}

/// An HTTP request being answered.
pub struct HttpRequest {
    _in_flight: InFlight,
    started: Instant,
}

/// A JSON-RPC error code as a label value (allocation-free: the codes are known).
fn code_label(code: i32) -> &'static str {
    use bindu_schemas::jsonrpc::code;
    match code {
        code::PARSE_ERROR => "-32700",
        code::INVALID_REQUEST => "-32600",
        code::METHOD_NOT_FOUND => "-32601",
        code::INVALID_PARAMS => "-32602",
        code::INTERNAL_ERROR => "-32603",
        402 => "402",
        -32001 => "-32001",
        -32002 => "-32002",
        -32003 => "-32003",
        -32004 => "-32004",
        -32005 => "-32005",
        -32006 => "-32006",
        -32007 => "-32007",
        -32008 => "-32008",
        -32009 => "-32009",
        -32010 => "-32010",
        -32011 => "-32011",
        -32012 => "-32012",
        -32013 => "-32013",
        -32020 => "-32020",
        -32029 => "-32029",
        -32030 => "-32030",
        _ => "other",
    }
}

/// Decrements the gauge (requests or streams in flight) when dropped.
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
        let duration: HistogramFamily<DurationLabels> =
            Family::new_with_constructor(latency_histogram);
        let errors = Family::<CodeLabels, Counter>::default();
        let in_flight = Gauge::default();
        let tasks = Family::<StateLabels, Gauge>::default();
        let sse_open = Gauge::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(latency_histogram);
        let http_in_flight = Gauge::default();
        registry.register(
            RPC_REQUESTS,
            "JSON-RPC requests by method and outcome (ok or the JSON-RPC error code)",
            requests.clone(),
        );
        registry.register(
            RPC_DURATION,
            "Time to answer a JSON-RPC request (to the first byte of a stream), by method and outcome (ok or error)",
            duration.clone(),
        );
        registry.register(
            RPC_ERRORS,
            "JSON-RPC requests answered with an error, by code (402: refused for its payment)",
            errors.clone(),
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
        registry.register(
            SSE_STREAMS_OPEN,
            "Server-sent event streams open (message/stream, tasks/resubscribe)",
            sse_open.clone(),
        );
        registry.register(
            HTTP_REQUESTS,
            "HTTP requests by method, route and status (Bindu's name)",
            http_requests.clone(),
        );
        registry.register(
            HTTP_DURATION,
            "Time to answer an HTTP request (to the first byte of the body), by route (Bindu's name)",
            http_duration.clone(),
        );
        registry.register(
            HTTP_IN_FLIGHT,
            "HTTP requests being answered (Bindu's name)",
            http_in_flight.clone(),
        );
        // Every ingress samples the work queue (the composition root runs the sampler).
        crate::probes::register_engine(&mut registry, true);
        Metrics {
            registry,
            requests,
            duration,
            errors,
            in_flight,
            tasks,
            sse_open,
            http_requests,
            http_duration,
            http_in_flight,
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
        let outcome = error_code.map_or("ok", code_label);
        self.requests
            .get_or_create(&RequestLabels { method, outcome })
            .inc();
        if error_code.is_some() {
            self.errors
                .get_or_create(&CodeLabels { code: outcome })
                .inc();
        }
        let outcome = if error_code.is_some() { "error" } else { "ok" };
        self.duration
            .get_or_create(&DurationLabels { method, outcome })
            .observe(started.elapsed().as_secs_f64());
    }

    /// An SSE stream opened; it counts as open until the guard is dropped.
    pub fn sse_opened(&self) -> InFlight {
        self.sse_open.inc();
        InFlight(self.sse_open.clone())
    }

    /// An HTTP request began; [`HttpRequest::done`] records its answer.
    pub fn http_started(&self) -> HttpRequest {
        self.http_in_flight.inc();
        HttpRequest {
            _in_flight: InFlight(self.http_in_flight.clone()),
            started: Instant::now(),
        }
    }

    pub fn http_done(
        &self,
        req: HttpRequest,
        method: &'static str,
        endpoint: &'static str,
        status: u16,
    ) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                endpoint,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(req.started.elapsed().as_secs_f64());
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
