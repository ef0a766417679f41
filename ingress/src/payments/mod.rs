//! x402 at the edge: a priced agent's protected methods (`X402__PROTECTED_METHODS`, by
//! default `message/send` and `message/stream`) need a payment before the task is accepted.
//!
//! Where it sits: after authentication (the caller is known), after the JSON-RPC checks
//! (a malformed request is answered -32xxx without asking for money), before the task is
//! recorded. In order, first failure wins:
//! 1. A payment header: `PAYMENT-SIGNATURE` (x402 v2) or `X-PAYMENT` (Bindu's clients), once.
//!    None → HTTP 402 with the `PaymentRequired` body and `PAYMENT-REQUIRED` header.
//! 2. Local checks ([`bindu_engine::x402::verify`]): decoding, version, requirement,
//!    EIP-712 signature, recipient, value, validity window → 402 with the reason.
//! 3. The nonce claimed atomically ([`nonces`]): a replay → 402; a guard that cannot
//!    answer → 503 (fail closed).
//! 4. The facilitator's `/verify`: invalid → 402 with its reason, the nonce released;
//!    unavailable or slow → 503, the nonce released.
//!
//! The verified payment is kept with its task (`PaymentStore`) and rides on the task's
//! command; the worker settles it once the handler has succeeded (see `bindu_workers::payments`). A blocking answer whose payment
//! settled carries `PAYMENT-RESPONSE` (base64 of the settlement).
//!
//! - [`nonces`]: the replay guard (Redis, or this process's memory).
//! - `fake_facilitator` (feature `testing`): a facilitator on loopback for tests.

#[cfg(any(test, feature = "testing"))]
pub mod fake_facilitator;
pub mod nonces;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use bindu_engine::store::{PaymentStore, StoreError};
use bindu_engine::x402::{verify, Facilitator, FacilitatorError};
use bindu_schemas::jsonrpc::Method;
use bindu_schemas::x402::{
    AgentInfo, PaymentCommand, PaymentRequired, PaymentRequirements, ResourceInfo, EXTENSION_URI,
    X402_VERSION,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::error::EdgeError;
use nonces::NonceGuard;

/// The v2 payment header.
pub const PAYMENT_SIGNATURE: &str = "payment-signature";
/// The header Bindu's clients send (a v2 payload under the v1 name).
pub const X_PAYMENT: &str = "x-payment";
/// The 402 answer's header (base64 of the body).
pub const PAYMENT_REQUIRED: &str = "payment-required";
/// A paid answer's header (base64 of the settlement).
pub const PAYMENT_RESPONSE: &str = "payment-response";
/// The A2A extension activation header.
pub const A2A_EXTENSIONS: &str = "x-a2a-extensions";

pub const PAYMENTS_METRIC: &str = "bindu_payments_verified";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `required` (no payment), `rejected` (a local check or the facilitator refused it),
    /// `replayed`, `unavailable` (guard or facilitator), `verified`.
    pub outcome: &'static str,
}

/// What the agent is, for the 402 body.
#[derive(Debug, Clone)]
pub struct AgentParty {
    pub name: String,
    pub description: String,
    /// Where clients reach the agent (no trailing slash).
    pub base_url: String,
    pub did: String,
}

/// The payment gate of a priced agent. Cheap to clone.
#[derive(Clone)]
pub struct Payments {
    inner: Arc<Inner>,
}

struct Inner {
    accepts: Vec<PaymentRequirements>,
    protected: Vec<String>,
    facilitator: Arc<dyn Facilitator>,
    nonces: Arc<dyn NonceGuard>,
    agent: AgentParty,
    outcomes: Family<OutcomeLabels, Counter>,
    /// Where a verified payment is kept with its task.
    ledger: Arc<dyn PaymentStore>,
}

/// Why a payment was not taken: a 402 (`Required`) or a 503 (`Unavailable`).
#[derive(Debug)]
pub enum Refusal {
    Required(Box<PaymentRequired>),
    Unavailable(String),
}

impl Payments {
    pub fn new(
        accepts: Vec<PaymentRequirements>,
        protected: Vec<String>,
        facilitator: Arc<dyn Facilitator>,
        nonces: Arc<dyn NonceGuard>,
        agent: AgentParty,
        ledger: Arc<dyn PaymentStore>,
    ) -> Payments {
        Payments {
            inner: Arc::new(Inner {
                accepts,
                protected,
                facilitator,
                nonces,
                agent,
                outcomes: Family::default(),
                ledger,
            }),
        }
    }

    /// Keeps a verified payment with the task it pays for, before the task is accepted.
    pub async fn keep(&self, task_id: &str, payment: &PaymentCommand) -> Result<(), StoreError> {
        self.inner.ledger.record(task_id, payment).await
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            PAYMENTS_METRIC,
            "Payments checked at the edge, by outcome (required, rejected, replayed, unavailable, verified)",
            self.inner.outcomes.clone(),
        );
    }

    pub fn accepts(&self) -> &[PaymentRequirements] {
        &self.inner.accepts
    }

    /// Whether `method` needs a payment.
    pub fn protects(&self, method: Method) -> bool {
        self.inner.protected.iter().any(|m| m == method.as_str())
    }

    fn count(&self, outcome: &'static str) {
        self.inner
            .outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The 402 body, saying `error`.
    pub fn required(&self, error: impl Into<String>) -> PaymentRequired {
        let a = &self.inner.agent;
        PaymentRequired {
            x402_version: X402_VERSION,
            error: error.into(),
            resource: Some(ResourceInfo {
                url: format!("{}/", a.base_url),
                description: Some(a.description.clone()),
                mime_type: Some("application/json".into()),
            }),
            accepts: self.inner.accepts.clone(),
            agent: Some(AgentInfo {
                name: a.name.clone(),
                description: a.description.clone(),
                agent_card: format!("{}/.well-known/agent-card.json", a.base_url),
                did: a.did.clone(),
            }),
        }
    }

    fn refuse(&self, outcome: &'static str, error: impl Into<String>) -> Refusal {
        self.count(outcome);
        Refusal::Required(Box::new(self.required(error)))
    }

    /// Checks the payment of a request for `method`; `Ok(None)` when the method is free.
    pub async fn check(
        &self,
        method: Method,
        headers: &HeaderMap,
    ) -> Result<Option<PaymentCommand>, Refusal> {
        if !self.protects(method) {
            return Ok(None);
        }
        let header = match payment_header(headers) {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(self.refuse(
                    "required",
                    "Payment required: send an x402 v2 payment as the PAYMENT-SIGNATURE (or X-PAYMENT) header",
                ))
            }
            Err(why) => return Err(self.refuse("rejected", format!("Invalid payment: {why}"))),
        };
        let payload = verify::decode_header(&header)
            .map_err(|r| self.refuse("rejected", format!("Invalid payment: {}", r.message)))?;
        let now = u64::try_from(bindu_engine::time::unix_now()).unwrap_or(0);
        let ok = verify::verify(&payload, &self.inner.accepts, now).map_err(|r| {
            tracing::info!(code = r.code, reason = %r.message, "payment refused by the local checks");
            self.refuse("rejected", format!("Invalid payment: {}", r.message))
        })?;
        let requirements = self.inner.accepts[ok.requirement].clone();
        let nonce = ok.nonce_hex();
        let key = format!(
            "{}:{}:{}",
            requirements.network,
            requirements.asset.to_ascii_lowercase(),
            nonce
        );
        // Kept until the authorization has expired, and a minute more (clock skew).
        let ttl = Duration::from_secs(
            ok.authorization
                .valid_before
                .saturating_sub(now)
                .saturating_add(60),
        );
        match self.inner.nonces.claim(&key, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(self.refuse("replayed", "Payment nonce already used (replay)"));
            }
            Err(e) => {
                tracing::warn!(error = %e, backend = self.inner.nonces.backend(), "payment replay guard unavailable; refusing the payment");
                self.count("unavailable");
                return Err(Refusal::Unavailable(
                    "the payment replay guard is unavailable; retry shortly".into(),
                ));
            }
        }
        match self.inner.facilitator.verify(&payload, &requirements).await {
            Ok(v) if v.is_valid => {}
            Ok(v) => {
                self.inner.nonces.release(&key).await;
                let reason = v
                    .invalid_reason
                    .or(v.invalid_message)
                    .unwrap_or_else(|| "refused by the facilitator".into());
                tracing::info!(%reason, "payment refused by the facilitator");
                return Err(self.refuse("rejected", format!("Invalid payment: {reason}")));
            }
            Err(e) => {
                self.inner.nonces.release(&key).await;
                tracing::warn!(error = %e, "payment facilitator /verify failed");
                self.count("unavailable");
                let why = match e {
                    FacilitatorError::TimedOut(_) => "did not answer in time",
                    _ => "is unavailable",
                };
                return Err(Refusal::Unavailable(format!(
                    "the payment facilitator {why}; retry shortly"
                )));
            }
        }
        self.count("verified");
        tracing::info!(payer = %ok.payer, network = %requirements.network, amount = %requirements.amount, "payment verified");
        Ok(Some(PaymentCommand {
            payload,
            requirements,
            payer: ok.payer,
            nonce,
            valid_before: ok.authorization.valid_before,
        }))
    }
}

/// The payment header's value: `PAYMENT-SIGNATURE`, else `X-PAYMENT`; `Err` when one is
/// repeated, both disagree, or the value is not text.
fn payment_header(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let one = |name: &str| -> Result<Option<String>, &'static str> {
        let mut values = headers.get_all(name).iter();
        let Some(v) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err("the payment header is repeated");
        }
        v.to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| "the payment header is not ASCII text")
    };
    match (one(PAYMENT_SIGNATURE)?, one(X_PAYMENT)?) {
        (Some(a), Some(b)) if a.trim() != b.trim() => {
            Err("PAYMENT-SIGNATURE and X-PAYMENT carry different payments")
        }
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// Whether the request activates the a2a-x402 extension (`X-A2A-Extensions` lists it).
fn activates_x402(headers: &HeaderMap) -> bool {
    headers.get_all(A2A_EXTENSIONS).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|u| u.trim() == EXTENSION_URI))
    })
}

/// The middleware of a priced agent's `POST /` and card: a request that activates the
/// x402 extension gets it echoed in `X-A2A-Extensions` (the a2a-x402 spec's must).
pub async fn extensions_layer(State(on): State<bool>, req: Request, next: Next) -> Response {
    let echo = on && activates_x402(req.headers());
    let mut resp = next.run(req).await;
    if echo {
        resp.headers_mut().insert(
            HeaderName::from_static(A2A_EXTENSIONS),
            HeaderValue::from_static(EXTENSION_URI),
        );
    }
    resp
}

/// The 402 answer (see [`crate::error`]).
pub(crate) fn payment_required_response(body: &PaymentRequired) -> Response {
    use axum::response::IntoResponse;
    // Serialising plain strings and numbers cannot fail.
    let json = serde_json::to_vec(body).unwrap_or_default();
    let header = bindu_engine::x402::encode_header(&json);
    let mut resp = (
        axum::http::StatusCode::PAYMENT_REQUIRED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&header) {
        resp.headers_mut()
            .insert(HeaderName::from_static(PAYMENT_REQUIRED), v);
    }
    resp
}

impl From<Refusal> for EdgeError {
    fn from(r: Refusal) -> EdgeError {
        match r {
            Refusal::Required(body) => EdgeError::PaymentRequired(body),
            Refusal::Unavailable(why) => EdgeError::PaymentUnavailable(why),
        }
    }
}
