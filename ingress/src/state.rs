//! The [`Ingress`] state every request handler shares, its options and its construction.
//! The routes that serve it are in [`crate::router`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindu_engine::{Bus, TaskStore};
use bindu_schemas::AgentCard;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct IngressOptions {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Interval of SSE keep-alive comments.
    pub sse_keepalive: Duration,
    /// Version reported by `/health`.
    pub version: String,
    /// The process kind reported by `/health` (`serve` or `ingress`).
    pub role: &'static str,
    /// Longest a blocking `message/send` waits for its task's final event before it answers
    /// with the task as stored (set it above the workers' task timeout).
    pub blocking_wait: Duration,
    /// Host names JSON-RPC requests are answered for besides `localhost` and IP literals
    /// (see [`crate::guard`]); `*` admits every host.
    pub allowed_hosts: Vec<String>,
    /// Most parts one message may carry (-32602 beyond).
    pub max_parts: usize,
    /// Most `referenceTaskIds` one message may carry (-32602 beyond).
    pub max_reference_task_ids: usize,
    /// Approximate size (bytes of task JSON) past which a `tasks/list` page ends early with
    /// a cursor to the rest; a page holds at least one task.
    pub max_list_bytes: usize,
    /// Where the A2A 1.0 HTTP+JSON binding is served: `""` (the root) or `/segment…`
    /// without a trailing slash ([`crate::rest::base_path`] checks it).
    pub rest_base_path: String,
    /// The A2A 1.0 tenant this agent is ([`crate::rest::tenant_name`] checks it): its
    /// HTTP+JSON routes are served under `<base>/<tenant>` too, and a 1.0 request naming
    /// another tenant is refused. `None`: a request naming any tenant is refused.
    pub tenant: Option<String>,
    /// Idempotent sends: a message its caller sends again with the same `messageId` within
    /// this long gets the first one's task (zero: every message is new).
    pub dedupe_window: Duration,
}

impl Default for IngressOptions {
    fn default() -> Self {
        IngressOptions {
            max_body_bytes: 10 * 1024 * 1024,
            sse_keepalive: Duration::from_secs(15),
            version: env!("CARGO_PKG_VERSION").to_string(),
            role: "serve",
            blocking_wait: Duration::from_secs(630),
            allowed_hosts: Vec::new(),
            // Far above what a conversation turn carries; each part is validated, stored,
            // signed and sent on, so the bound keeps one request's work small.
            max_parts: 1000,
            // Each reference is a store read when the task runs.
            max_reference_task_ids: 100,
            // A page of 50 small tasks is a few KiB; this lets through pages of large
            // results while one call never builds or sends more than about this much.
            max_list_bytes: 8 * 1024 * 1024,
            // The prose specification's examples (`/v1/message:send`); it keeps the
            // binding's paths apart from the agent's other routes.
            rest_base_path: "/v1".into(),
            tenant: None,
            dedupe_window: Duration::from_secs(300),
        }
    }
}

/// Shared state of every request handler. Cheap to clone.
#[derive(Clone)]
pub struct Ingress {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Every transition the ingress records goes through it (persist, then announce).
    pub ledger: bindu_engine::TaskLedger,
    pub store: Arc<dyn TaskStore>,
    pub bus: Arc<dyn Bus>,
    pub card: AgentCard,
    pub card_json: Bytes,
    pub extended_card: Option<AgentCard>,
    /// Public and private skills, and who may see the private ones.
    pub skills: Arc<crate::skills::Skills>,
    /// `POST /agent/negotiation`, when enabled.
    pub negotiator: Option<Arc<crate::negotiation::Negotiator>>,
    pub did: Option<Arc<crate::did::DidInfo>>,
    pub options: IngressOptions,
    pub allowed_hosts: crate::guard::AllowedHosts,
    pub metrics: Metrics,
    pub auth: std::sync::OnceLock<crate::auth::Auth>,
    pub certificate_auth: std::sync::OnceLock<crate::tls::CertificateAuth>,
    /// A priced agent's payment gate.
    pub payments: std::sync::OnceLock<crate::payments::Payments>,
    /// Back-pressure and per-caller limits on messages, when any is configured.
    pub limits: Option<Arc<crate::limits::Limits>>,
    pub shutdown: CancellationToken,
    /// What `/health` and `/healthz` report.
    pub probe: crate::probes::Probe,
}

impl Ingress {
    pub fn new(
        store: Arc<dyn TaskStore>,
        bus: Arc<dyn Bus>,
        card: AgentCard,
        extended_card: Option<AgentCard>,
        did: Option<crate::did::DidInfo>,
        options: IngressOptions,
        shutdown: CancellationToken,
    ) -> Self {
        // Serialising a card of strings and booleans cannot fail.
        let card_json = Bytes::from(serde_json::to_vec(&card).unwrap_or_default());
        let started = Instant::now();
        let probe = crate::probes::Probe {
            store: store.clone(),
            bus: bus.clone(),
            shutdown: shutdown.clone(),
            started,
            version: options.version.clone(),
            role: options.role,
            name: card.name.clone(),
            url: Some(card.url.clone()),
            protocol_version: Some(card.protocol_version.clone()),
            did: did.as_ref().map(|d| d.did.clone()),
            ready: Default::default(),
        };
        let mut metrics = Metrics::new();
        crate::probes::register_ready(&probe, metrics.registry_mut());
        Ingress {
            inner: Arc::new(Inner {
                ledger: bindu_engine::TaskLedger::new(store.clone(), bus.clone()),
                store,
                bus,
                card,
                card_json,
                extended_card,
                skills: Arc::default(),
                negotiator: None,
                did: did.map(Arc::new),
                allowed_hosts: crate::guard::AllowedHosts::new(&options.allowed_hosts),
                options,
                metrics,
                auth: std::sync::OnceLock::new(),
                certificate_auth: std::sync::OnceLock::new(),
                payments: std::sync::OnceLock::new(),
                limits: None,
                shutdown,
                probe,
            }),
        }
    }

    /// Requires authentication on JSON-RPC requests (routers built from now on). The first
    /// call wins.
    pub fn with_auth(mut self, auth: crate::auth::Auth) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            auth.register_metrics(inner.metrics.registry_mut());
        }
        let _ = self.inner.auth.set(auth);
        self
    }

    /// Prices the protected methods (x402): call before [`Ingress::router`]. The first call
    /// wins.
    pub fn with_payments(mut self, payments: crate::payments::Payments) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            payments.register_metrics(inner.metrics.registry_mut());
        }
        let _ = self.inner.payments.set(payments);
        self
    }

    /// Limits messages (see [`crate::limits`]). Call before [`Ingress::router`]; later
    /// calls are ignored.
    pub fn with_limits(mut self, limits: Arc<crate::limits::Limits>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            limits.metrics().register(inner.metrics.registry_mut());
            inner.limits = Some(limits);
        }
        self
    }

    /// Adds metrics of other parts of the process (the webhook dispatcher) to `/metrics`.
    /// Call before [`Ingress::router`]; later calls are ignored.
    pub fn with_metrics(
        mut self,
        register: impl FnOnce(&mut prometheus_client::registry::Registry),
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            register(inner.metrics.registry_mut());
        }
        self
    }

    /// Makes the verified client certificate's DID the caller of JSON-RPC requests
    /// (`MTLS__MODE=mtls`; serve with [`crate::tls::serve_tls`]). Takes the place of
    /// [`Ingress::with_auth`]: no token, no DID request signature. The first call wins.
    pub fn with_certificate_auth(self, auth: crate::tls::CertificateAuth) -> Self {
        let _ = self.inner.certificate_auth.set(auth);
        self
    }

    /// Serves `skills` (`/agent/skills`, the private card's access list, the skill a
    /// message names). Call before [`Ingress::router`]; later calls are ignored.
    pub fn with_skills(mut self, skills: Arc<crate::skills::Skills>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.skills = skills;
        }
        self
    }

    /// Serves `POST /agent/negotiation` with `negotiator`. Call before [`Ingress::router`];
    /// later calls are ignored.
    pub fn with_negotiator(mut self, negotiator: crate::negotiation::Negotiator) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.negotiator = Some(Arc::new(negotiator));
        }
        self
    }

    pub fn card(&self) -> &AgentCard {
        &self.inner.card
    }

    /// The extended card (with the private skills) for `caller`, when it may see it:
    /// without credentials 401, a caller `agent.allowed_dids` does not list 403 (`id` is
    /// echoed). `None` when the agent has no extended card.
    pub(crate) fn private_card(
        &self,
        caller: Option<&str>,
        id: bindu_schemas::jsonrpc::RequestId,
    ) -> Result<Option<&AgentCard>, crate::error::EdgeError> {
        let skills = &self.inner.skills;
        if !skills.admits(caller) {
            return Err(match caller {
                None => crate::error::EdgeError::TokenMissing,
                Some(c) => crate::error::EdgeError::PrivateCardRefused {
                    id,
                    caller: c.to_string(),
                },
            });
        }
        Ok(self.inner.extended_card.as_ref())
    }
}
