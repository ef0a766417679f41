//! x402 at the edge: a priced agent's protected methods (`X402__PROTECTED_METHODS`, by
//! default `message/send` and `message/stream`) need a payment before the task is accepted.
//!
//! Where it sits: after authentication (the caller is known), after the JSON-RPC checks
//! (a malformed request is answered -32xxx without asking for money), before the task is
//! recorded. In order, first failure wins:
//! 0. A follow-up message on a task whose payment settled, or was verified and not settled
//!    yet (a paused run): no new payment.
//! 1. A payment header: `PAYMENT-SIGNATURE` (x402 v2) or `X-PAYMENT` (Bindu's clients), once,
//!    else `x402.payment.payload` in the message metadata (the a2a-x402 extension). None →
//!    HTTP 402 with the `PaymentRequired` body and `PAYMENT-REQUIRED` header, or, with
//!    `X402__FLOW=a2a`, a task paused in `input-required` asking for it
//!    (`x402.payment.required` in its status message metadata).
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
//! What a message costs is the price of the skill it targets, else the agent's
//! ([`prices`]): a message whose price is empty (a free skill, or a free agent with
//! priced skills) needs no payment.
//!
//! - [`nonces`]: the replay guard (Redis, or this process's memory).
//! - [`prices`]: the agent's and the skills' prices.
//! - `fake_facilitator` (feature `testing`): a facilitator on loopback for tests.

#[cfg(any(test, feature = "testing"))]
pub mod fake_facilitator;
pub mod nonces;
pub mod prices;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use bindu_engine::store::{PaymentState, PaymentStore, StoreError};
use bindu_engine::x402::{verify, Facilitator, FacilitatorError, PaymentFlow};
use bindu_schemas::jsonrpc::Method;
use bindu_schemas::x402::meta;
use bindu_schemas::x402::{
    AgentInfo, PaymentCommand, PaymentRequired, PaymentRequirements, ResourceInfo, EXTENSION_URI,
    X402_VERSION,
};
use bindu_schemas::Message;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::error::EdgeError;
use nonces::NonceGuard;
pub use prices::Prices;

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
    /// `replayed`, `unavailable` (guard or facilitator), `verified`, `prepaid` (a follow-up
    /// on a task already paid).
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
    prices: Prices,
    protected: Vec<String>,
    facilitator: Arc<dyn Facilitator>,
    nonces: Arc<dyn NonceGuard>,
    agent: AgentParty,
    outcomes: Family<OutcomeLabels, Counter>,
    /// Where a verified payment is kept with its task.
    ledger: Arc<dyn PaymentStore>,
    flow: PaymentFlow,
}

/// What a protected request may do.
#[derive(Debug)]
pub enum Gate {
    /// Nothing to pay: a free method, or a follow-up on a task already paid.
    Free,
    /// The payment of this run, verified now (its nonce claimed for this request).
    Paid(Box<PaymentCommand>),
    /// A payment verified earlier for the same task, not settled yet, that pays for this
    /// follow-up.
    Prepaid(Box<PaymentCommand>),
    /// No payment, with `X402__FLOW=a2a`: the task is recorded paused in `input-required`,
    /// asking for this.
    Ask(Box<PaymentRequired>),
}

/// How long past the facilitator's margin a payment verified for a paused task must still
/// last to pay for its follow-up (the run and its settlement need time).
const REUSE_MARGIN_SECS: u64 = 60;

/// Why a payment was not taken: a 402 (`Required`) or a 503 (`Unavailable`).
#[derive(Debug)]
pub enum Refusal {
    Required(Box<PaymentRequired>),
    Unavailable(String),
}

impl Payments {
    pub fn new(
        prices: Prices,
        protected: Vec<String>,
        facilitator: Arc<dyn Facilitator>,
        nonces: Arc<dyn NonceGuard>,
        agent: AgentParty,
        ledger: Arc<dyn PaymentStore>,
        flow: PaymentFlow,
    ) -> Payments {
        Payments {
            inner: Arc::new(Inner {
                prices,
                protected,
                facilitator,
                nonces,
                agent,
                outcomes: Family::default(),
                ledger,
                flow,
            }),
        }
    }

    /// Keeps a verified payment with the task it pays for, before the task is accepted.
    pub async fn keep(&self, task_id: &str, payment: &PaymentCommand) -> Result<(), StoreError> {
        self.inner.ledger.record(task_id, payment).await
    }

    /// Gives back the nonce of a payment verified for a request whose task was not
    /// accepted (nothing will settle it): the client may send the same payment again.
    pub async fn release(&self, payment: &PaymentCommand) {
        let key = nonce_key(&payment.requirements, &payment.nonce);
        self.inner.nonces.release(&key).await;
        tracing::info!(nonce = %payment.nonce, "payment not used (its task was not accepted); its nonce is released");
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            PAYMENTS_METRIC,
            "Payments checked at the edge, by outcome (required, rejected, replayed, unavailable, verified)",
            self.inner.outcomes.clone(),
        );
    }

    pub fn prices(&self) -> &Prices {
        &self.inner.prices
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

    /// The 402 body asking for one of `accepts`, saying `error`.
    pub fn required(
        &self,
        accepts: &[PaymentRequirements],
        error: impl Into<String>,
    ) -> PaymentRequired {
        let a = &self.inner.agent;
        PaymentRequired {
            x402_version: X402_VERSION,
            error: error.into(),
            resource: Some(ResourceInfo {
                url: format!("{}/", a.base_url),
                description: Some(a.description.clone()),
                mime_type: Some("application/json".into()),
            }),
            accepts: accepts.to_vec(),
            agent: Some(AgentInfo {
                name: a.name.clone(),
                description: a.description.clone(),
                agent_card: format!("{}/.well-known/agent-card.json", a.base_url),
                did: a.did.clone(),
            }),
        }
    }

    fn refuse(
        &self,
        accepts: &[PaymentRequirements],
        outcome: &'static str,
        error: impl Into<String>,
    ) -> Refusal {
        self.count(outcome);
        Refusal::Required(Box::new(self.required(accepts, error)))
    }

    /// Checks the payment of a request for `method` carrying `message`, which targets
    /// `skill` (a skill the caller may use, or none).
    pub async fn check(
        &self,
        method: Method,
        headers: &HeaderMap,
        message: Option<&Message>,
        skill: Option<&str>,
    ) -> Result<Gate, Refusal> {
        if !self.protects(method) {
            return Ok(Gate::Free);
        }
        let accepts = self.inner.prices.of(skill);
        // A follow-up on a task that is paid (or whose verified payment still waits for
        // the task to complete) is not charged again.
        if let Some(task_id) = message.and_then(|m| m.task_id.as_deref()) {
            if let Some(gate) = self.prepaid(task_id).await? {
                return Ok(gate);
            }
        }
        if accepts.is_empty() {
            // A free skill (or a free agent's skill without a price of its own).
            return Ok(Gate::Free);
        }
        let in_metadata = message
            .and_then(|m| m.metadata.as_ref())
            .and_then(|m| m.get(meta::PAYLOAD));
        let payload = match (payment_header(headers), in_metadata) {
            (Ok(Some(h)), _) => verify::decode_header(&h).map_err(|r| {
                self.refuse(accepts, "rejected", format!("Invalid payment: {}", r.message))
            })?,
            (Err(why), _) => return Err(self.refuse(accepts, "rejected", format!("Invalid payment: {why}"))),
            (Ok(None), Some(v @ serde_json::Value::Object(_))) => v.clone(),
            (Ok(None), Some(_)) => {
                return Err(self.refuse(
                    accepts,
                    "rejected",
                    "Invalid payment: `x402.payment.payload` must be a PaymentPayload object",
                ))
            }
            (Ok(None), None) if self.inner.flow == PaymentFlow::A2a => {
                self.count("required");
                return Ok(Gate::Ask(Box::new(self.required(accepts,
                    "Payment required: send a follow-up message on this task with an x402 v2 PaymentPayload in its metadata (x402.payment.payload)",
                ))));
            }
            (Ok(None), None) => {
                return Err(self.refuse(
                    accepts,
                    "required",
                    "Payment required: send an x402 v2 payment as the PAYMENT-SIGNATURE (or X-PAYMENT) header",
                ))
            }
        };
        self.verified(accepts, payload)
            .await
            .map(|p| Gate::Paid(Box::new(p)))
    }

    /// The gate of a follow-up on `task_id` that needs no new payment: its payment settled,
    /// or one verified for it that has not been settled yet and lasts long enough to be.
    async fn prepaid(&self, task_id: &str) -> Result<Option<Gate>, Refusal> {
        let records = self.inner.ledger.for_task(task_id).await.map_err(|e| {
            tracing::warn!(task_id, error = %e, "could not read the task's payments");
            self.count("unavailable");
            Refusal::Unavailable("the payment records are unavailable; retry shortly".into())
        })?;
        let now = u64::try_from(bindu_engine::time::unix_now()).unwrap_or(0);
        for r in records {
            match r.state {
                PaymentState::Settled => {
                    self.count("prepaid");
                    return Ok(Some(Gate::Free));
                }
                PaymentState::Verified
                    if r.payment.valid_before
                        > now + verify::VALID_BEFORE_MARGIN_SECS + REUSE_MARGIN_SECS =>
                {
                    self.count("prepaid");
                    return Ok(Some(Gate::Prepaid(Box::new(r.payment))));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// The local checks, the nonce claim and the facilitator's `/verify` of `payload`.
    async fn verified(
        &self,
        accepts: &[PaymentRequirements],
        payload: serde_json::Value,
    ) -> Result<PaymentCommand, Refusal> {
        let now = u64::try_from(bindu_engine::time::unix_now()).unwrap_or(0);
        let ok = verify::verify(&payload, accepts, now).map_err(|r| {
            tracing::info!(code = r.code, reason = %r.message, "payment refused by the local checks");
            self.refuse(accepts, "rejected", format!("Invalid payment: {}", r.message))
        })?;
        let requirements = accepts[ok.requirement].clone();
        let nonce = ok.nonce_hex();
        let key = nonce_key(&requirements, &nonce);
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
                return Err(self.refuse(
                    accepts,
                    "replayed",
                    "Payment nonce already used (replay)",
                ));
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
                return Err(self.refuse(accepts, "rejected", format!("Invalid payment: {reason}")));
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
        Ok(PaymentCommand {
            payload,
            requirements,
            payer: ok.payer,
            nonce,
            valid_before: ok.authorization.valid_before,
        })
    }
}

/// Where a payment's nonce is claimed: `network:asset:nonce`, the asset in lower case.
fn nonce_key(requirements: &PaymentRequirements, nonce: &str) -> String {
    format!(
        "{}:{}:{}",
        requirements.network,
        requirements.asset.to_ascii_lowercase(),
        nonce
    )
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
