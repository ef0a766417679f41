//! Fair settlement of a paid task (x402): the worker that runs a command carrying a
//! verified payment ([`bindu_schemas::x402::PaymentCommand`]) settles it through the
//! facilitator, and the task metadata says what happened (`x402.payment.*`).
//!
//! `X402__SETTLE=after` (the default):
//!
//! | the run | settlement | the task | artifacts |
//! |---|---|---|---|
//! | completed | `success: true` | `completed`, `payment-completed`, receipt in `x402.payment.receipts` | released (streamed chunks only now) |
//! | completed | `success: false` | `failed` with the facilitator's reason, `payment-failed` | withheld |
//! | completed | no usable answer (timeout, 5xx) | `failed`, `payment-orphaned` with `x402_nonce`, `x402_authorization`, `x402_network` for reconciliation | withheld |
//! | paused (`input-required`, `auth-required`) | none yet | paused, `payment-verified`: the payment stays `verified` and pays for the follow-up | — |
//! | anything else (failed, rejected, canceled) | none: nothing is charged | as the run ended, `payment-failed` | — |
//!
//! The expiry rule: an authorization can only be settled before its `validBefore`
//! (about now + `maxTimeoutSeconds` when it was signed). A paid run is therefore bounded:
//! it is interrupted at `validBefore` − [`Settlement::margin`] (the facilitator's 6 s plus
//! the time a settlement may take), and fails unpaid (`EXPIRED_PAYMENT`). Work that may
//! run longer needs `X402__MAX_TIMEOUT_SECONDS` above the task timeout, or
//! `X402__SETTLE=before`.
//!
//! `X402__SETTLE=before`: settled before the handler runs (Bindu's order; the stream is not
//! held). A refused settlement fails the task without running the handler; once settled the
//! caller has paid, whatever the run does (`payment-completed` stays).
//!
//! Exactly once, across workers and redeliveries ([`bindu_engine::store::payments`]): the
//! attempt is recorded before the facilitator is asked, and its answer (the receipt) before
//! the task's outcome and the command's ack. A redelivered command whose payment is already
//! settled is not settled again; one whose earlier attempt got no recorded answer asks
//! again, and the facilitator's "nonce already used" is then that attempt's success.
//!
//! An unknown outcome (no usable answer): the task stays `working` with
//! `payment-orphaned` (and `x402_nonce`, `x402_authorization`, `x402_network`), the result
//! is kept with the payment, and [`reconcile`] asks the facilitator again: settled (now,
//! or by the earlier attempt) → `completed` with the result and the receipt; refused →
//! `failed`, nothing charged; a `before` payment settled → its run is queued again.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod reconcile;

use bindu_engine::retry::RetryPolicy;
use bindu_engine::store::payments::{Finish, KeptResult, PaymentState, PaymentStore};
use bindu_engine::store::StoreError;
use bindu_engine::x402::verify::VALID_BEFORE_MARGIN_SECS;
use bindu_engine::x402::{already_used, Facilitator, FacilitatorError, SettleMode};
use bindu_schemas::x402::{meta, PaymentCommand, SettleResponse};
use bindu_schemas::Metadata;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::json;

pub const SETTLEMENTS: &str = "bindu_payment_settlements";
pub const SETTLE_DURATION: &str = "bindu_payment_settle_duration_seconds";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `settled`, `refused` (the facilitator said no), `unknown` (no usable answer),
    /// `not_charged` (the run did not complete), `expired` (interrupted before the
    /// authorization ran out).
    pub outcome: &'static str,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct SettlementMetrics {
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub duration: Histogram,
}

impl Default for SettlementMetrics {
    fn default() -> Self {
        SettlementMetrics {
            outcomes: Family::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
        }
    }
}

impl SettlementMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            SETTLEMENTS,
            "Paid tasks by payment outcome (settled, refused, unknown, not_charged, expired)",
            self.outcomes.clone(),
        );
        registry.register(
            SETTLE_DURATION,
            "Time the facilitator took to answer a settlement",
            self.duration.clone(),
        );
    }

    /// The OpenMetrics text of these metrics alone (a worker process's `/metrics`).
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    pub(crate) fn count(&self, outcome: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// How the workers settle.
#[derive(Clone)]
pub struct Settlement {
    pub facilitator: Arc<dyn Facilitator>,
    pub mode: SettleMode,
    /// The longest a settlement may take (the facilitator client's timeout).
    pub timeout: Duration,
    /// How long a settlement may stay unanswered before the reconciliation takes it over
    /// (`X402__SETTLING_LEASE`, see [`reconcile`]).
    pub settling_lease: Duration,
    pub metrics: SettlementMetrics,
    /// Where every payment, attempt and answer is recorded.
    pub payments: Arc<dyn PaymentStore>,
}

/// What a settlement came to.
pub(crate) enum Settled {
    /// Paid: the receipt.
    Yes(SettleResponse),
    /// Refused by the facilitator (nothing was transferred).
    Refused(SettleResponse),
    /// No usable answer: the transfer may or may not land.
    Unknown(FacilitatorError),
}

impl Settlement {
    /// How long before `validBefore` a paid run must have ended, so its settlement reaches
    /// the facilitator in time.
    pub fn margin(&self) -> Duration {
        Duration::from_secs(VALID_BEFORE_MARGIN_SECS) + self.timeout
    }

    /// When a paid run must end (unix seconds → a duration from now); `None` when the
    /// payment settles before the run.
    pub(crate) fn run_limit(&self, p: &PaymentCommand) -> Option<Duration> {
        if self.mode == SettleMode::Before {
            return None;
        }
        let now = u64::try_from(bindu_engine::time::unix_now()).unwrap_or(0);
        let until = p.valid_before.saturating_sub(self.margin().as_secs());
        Some(Duration::from_secs(until.saturating_sub(now)))
    }

    /// Settles `p` exactly once: the attempt is recorded first (a store that cannot record
    /// it is an `Err`: the caller retries later rather than settle untracked); a payment
    /// already settled returns its receipt without asking again.
    pub(crate) async fn settle(
        &self,
        task_id: &str,
        p: &PaymentCommand,
    ) -> Result<Settled, StoreError> {
        let begun = self.payments.begin_settle(task_id, p).await?;
        if begun.state == PaymentState::Settled {
            if let Some(receipt) = begun.receipt {
                tracing::info!(task_id, nonce = %p.nonce, "payment already settled; not settling it again");
                return Ok(Settled::Yes(receipt));
            }
        }
        if begun.state == PaymentState::Unpaid {
            // Its task ended without delivering (a late delivery of an exhausted command).
            let code = begun.error.unwrap_or_else(|| "UNDELIVERED".into());
            tracing::warn!(task_id, nonce = %p.nonce, %code, "payment is not to be settled; not asking the facilitator");
            self.metrics.count("not_charged");
            return Ok(Settled::Refused(SettleResponse {
                success: false,
                error_reason: Some(code),
                payer: Some(p.payer.clone()),
                transaction: String::new(),
                network: p.requirements.network.clone(),
                amount: None,
            }));
        }
        Ok(self.ask(task_id, p, begun.attempts > 1).await)
    }

    /// Asks the facilitator to settle; `retry` when an earlier attempt may have landed.
    pub(crate) async fn ask(&self, task_id: &str, p: &PaymentCommand, retry: bool) -> Settled {
        let started = Instant::now();
        let answer = self.facilitator.settle(&p.payload, &p.requirements).await;
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(r) if r.success => {
                self.metrics.count("settled");
                tracing::info!(task_id, payer = %p.payer, transaction = %r.transaction, "payment settled");
                Settled::Yes(r)
            }
            Ok(r) if retry && already_used(&r) => {
                // The nonce is ours (the authorization pays us, signed for this payment),
                // and an earlier attempt asked for it to be settled: that attempt landed.
                self.metrics.count("settled");
                tracing::info!(task_id, payer = %p.payer, nonce = %p.nonce, "payment settled by an earlier attempt (the facilitator says its nonce is used)");
                Settled::Yes(SettleResponse {
                    success: true,
                    error_reason: None,
                    payer: Some(r.payer.unwrap_or_else(|| p.payer.clone())),
                    transaction: r.transaction,
                    network: p.requirements.network.clone(),
                    amount: Some(p.requirements.amount.clone()),
                })
            }
            Ok(r) => {
                self.metrics.count("refused");
                tracing::warn!(task_id, payer = %p.payer, reason = r.error_reason.as_deref().unwrap_or("-"), "payment settlement refused");
                Settled::Refused(r)
            }
            Err(e) => {
                self.metrics.count("unknown");
                tracing::error!(task_id, payer = %p.payer, nonce = %p.nonce, network = %p.requirements.network, error = %e, "payment settlement outcome unknown; it will be reconciled with the facilitator");
                Settled::Unknown(e)
            }
        }
    }

    /// Records what a settlement came to (the receipt durable before the task's outcome
    /// and the ack), riding out a store outage for a while.
    pub(crate) async fn record(
        &self,
        task_id: &str,
        p: &PaymentCommand,
        settled: &Settled,
        kept: Option<KeptResult>,
    ) -> Result<(), StoreError> {
        let finish = match settled {
            Settled::Yes(r) => Finish::settled(r.clone()),
            Settled::Refused(r) => Finish::refused(r.clone()),
            Settled::Unknown(e) => Finish::orphaned(e.to_string(), kept),
        };
        self.finish(task_id, p, finish).await
    }

    /// Records a payment that is not charged (`code` says why). Best effort: the task's
    /// metadata says it too.
    pub(crate) async fn not_charged(&self, task_id: &str, p: &PaymentCommand, code: &str) {
        match self.finish(task_id, p, Finish::unpaid(code)).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(task_id, nonce = %p.nonce, error = %e, "could not record a payment as not charged")
            }
        }
    }

    /// The payment of a command that ran out of deliveries: never charged for the work it
    /// did not deliver. One not settled yet is recorded `unpaid` (`UNDELIVERED`; the task
    /// metadata returned says so); one whose settlement was begun and got no recorded
    /// answer is left to the reconciliation once its lease has run out (it asks `/verify`
    /// whether it landed, and never settles it); one settled stays so
    /// (`X402__SETTLE=before`: paid up front).
    pub(crate) async fn undelivered(&self, task_id: &str, p: &PaymentCommand) -> Option<Metadata> {
        let state = match self.payments.get(task_id, &p.nonce).await {
            Ok(record) => record.map(|r| r.state),
            Err(e) => {
                tracing::warn!(task_id, error = %e, "could not read the payment of an exhausted command");
                return None;
            }
        };
        match state {
            None | Some(PaymentState::Verified) => {
                self.metrics.count("not_charged");
                self.not_charged(task_id, p, "UNDELIVERED").await;
                tracing::info!(task_id, nonce = %p.nonce, "paid command ran out of deliveries; its payment is not charged");
                Some(not_charged("UNDELIVERED"))
            }
            Some(PaymentState::Settling) => {
                tracing::warn!(task_id, nonce = %p.nonce, "paid command ran out of deliveries mid-settlement; the reconciliation asks the facilitator whether it landed once X402__SETTLING_LEASE has passed");
                None
            }
            Some(_) => None,
        }
    }

    async fn finish(
        &self,
        task_id: &str,
        p: &PaymentCommand,
        finish: Finish,
    ) -> Result<(), StoreError> {
        RetryPolicy {
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            deadline: crate::pool::RECORD_DEADLINE,
        }
        .run(
            || self.payments.finish(task_id, &p.nonce, finish.clone()),
            |e| matches!(e, StoreError::Unavailable(_)),
        )
        .await
    }
}

/// Task metadata of a settled payment.
pub(crate) fn completed(receipt: &SettleResponse) -> Metadata {
    let mut m = Metadata::new();
    m.insert(meta::STATUS.into(), meta::COMPLETED.into());
    m.insert(meta::RECEIPTS.into(), json!([receipt]));
    m
}

/// Task metadata of a payment not charged: `code` says why.
pub(crate) fn not_charged(code: &str) -> Metadata {
    let mut m = Metadata::new();
    m.insert(meta::STATUS.into(), meta::FAILED.into());
    m.insert(meta::ERROR.into(), code.into());
    m
}

/// Task metadata and the failure reason of a settlement that did not pay.
pub(crate) fn unpaid(p: &PaymentCommand, settled: &Settled) -> (Metadata, String) {
    match settled {
        Settled::Yes(r) => (completed(r), String::new()),
        Settled::Refused(r) => {
            let mut m = not_charged("SETTLEMENT_FAILED");
            m.insert(meta::RECEIPTS.into(), json!([r]));
            let reason = r.error_reason.as_deref().unwrap_or("refused");
            (
                m,
                format!("Payment settlement failed ({reason}): the result is withheld and nothing was charged"),
            )
        }
        Settled::Unknown(e) => (
            orphaned(p),
            format!("Payment settlement outcome unknown ({e}): the result is withheld; the payment is to be reconciled with the facilitator"),
        ),
    }
}

/// Task metadata of a payment whose settlement outcome is unknown: what a reconciliation
/// needs.
pub(crate) fn orphaned(p: &PaymentCommand) -> Metadata {
    let mut m = Metadata::new();
    m.insert(meta::STATUS.into(), meta::ORPHANED.into());
    m.insert(meta::ERROR.into(), "SETTLEMENT_FAILED".into());
    m.insert(meta::NONCE.into(), p.nonce.clone().into());
    m.insert(
        meta::AUTHORIZATION.into(),
        p.payload["payload"]["authorization"].clone(),
    );
    m.insert(meta::NETWORK.into(), p.requirements.network.clone().into());
    m
}
