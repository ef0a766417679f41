//! Reconciliation of payments whose settlement got no usable answer (`orphaned`): every
//! `X402__RECONCILE_INTERVAL` (in `bindu serve` and `bindu worker`), or once with
//! `bindu payments reconcile`, the facilitator is asked to settle each one again.
//!
//! | the facilitator says | the payment | the task (waiting in `working`, `payment-orphaned`) |
//! |---|---|---|
//! | settled, or "nonce already used" (the earlier attempt landed) | `settled`, receipt | `completed` with the kept result and the receipt; a `before` payment's run is queued again |
//! | refused | `refused` | `failed` with the reason, `payment-failed`: nothing charged, nothing released |
//! | no usable answer again | `orphaned` (the next pass asks again) | unchanged |
//!
//! Orphans are claimed in the store ([`PaymentStore::claim_orphans`]), so reconcilers in
//! several processes never ask about the same payment at once.
//!
//! Stale settlements: a payment left `settling` longer than `X402__SETTLING_LEASE` (its
//! worker died mid-settlement and no delivery of its command came back, its command ran
//! out of deliveries, or a reconciler died holding its claim) is claimed too
//! ([`PaymentStore::claim_stale`]), and the facilitator's `/verify` is asked whether its
//! nonce is used. It is never settled anew here: its task may not have delivered.
//!
//! | `/verify` says | the payment | the task |
//! |---|---|---|
//! | nonce used (an earlier settlement landed) | `settled` | `working` with a kept result: `completed` with it; else unchanged (a run still to come finds it settled) |
//! | valid (nothing landed) and a result is kept | `orphaned` (the next pass settles it) | unchanged |
//! | valid, and the task ended (e.g. its command ran out of deliveries) | `unpaid` (`UNDELIVERED`): never charged | unchanged |
//! | valid, and the task still runs | `verified` (its run settles it) | unchanged |
//! | invalid otherwise (expired…) | `unpaid` with the reason | `working` with a kept result: `failed`, `payment-failed` |
//! | no usable answer | `settling` (asked again after another lease) | unchanged |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::Bus;
use bindu_engine::ledger::{Patience, TaskLedger};
use bindu_engine::store::payments::{Finish, KeptResult, PaymentRecord, PaymentStore};
use bindu_engine::store::{Access, ArtifactChunk, Expect, StoreError, TaskUpdate};
use bindu_engine::TaskStore;
use bindu_schemas::bus::{CommandOp, TaskCommand};
use bindu_schemas::x402::SettleResponse;
use bindu_schemas::{Message, Metadata, Part, Role, TaskState};
use tokio_util::sync::CancellationToken;

use super::{completed, unpaid, Settled, Settlement};

/// Most orphans taken in one pass.
const BATCH: u32 = 100;

/// What one reconciliation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Paid: the task completed with its result (or its run was queued again).
    Settled,
    /// Refused: the task failed, nothing charged. The facilitator's reason.
    Refused(String),
    /// Still no usable answer: asked again on the next pass.
    Unknown(String),
    /// The payment was resolved but the task could not be updated (why).
    TaskNotUpdated(String),
}

/// One payment reconciled.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub task_id: String,
    pub nonce: String,
    pub resolution: Resolution,
}

impl Reconciled {
    /// `record`'s payment, resolved by `resolve`.
    async fn of<F: Future<Output = Resolution>>(
        record: PaymentRecord,
        resolve: impl FnOnce(PaymentRecord) -> F,
    ) -> Reconciled {
        let (task_id, nonce) = (record.task_id.clone(), record.nonce.clone());
        Reconciled {
            task_id,
            nonce,
            resolution: resolve(record).await,
        }
    }
}

/// The update that completes `task_id` with the result `kept` for its payer, now paid
/// (`receipt`).
fn released(task_id: &str, kept: KeptResult, receipt: &SettleResponse) -> TaskUpdate {
    let mut update = TaskUpdate::new(task_id, Expect::State(TaskState::Working))
        .status(TaskState::Completed, kept.message);
    update.artifacts = kept
        .artifacts
        .into_iter()
        .map(ArtifactChunk::from)
        .collect();
    update.history = kept.history;
    update.metadata = Some(completed(receipt));
    update
}

/// The update that fails `task_id`, unpaid, saying why (`text`) in a message of the agent
/// that also joins its history, with the payment `metadata`.
fn unpaid_failure(task_id: &str, text: &str, metadata: Metadata) -> TaskUpdate {
    let msg = Message::agent(
        uuid::Uuid::new_v4().to_string(),
        vec![Part::text(format!("Task failed: {text}"))],
    );
    let mut update = TaskUpdate::new(task_id, Expect::State(TaskState::Working))
        .history(msg.clone())
        .status(TaskState::Failed, Some(msg));
    update.metadata = Some(metadata);
    update
}

/// Whether the facilitator gave no answer about one of `done`.
fn any_unknown(done: &[Reconciled]) -> bool {
    done.iter()
        .any(|r| matches!(r.resolution, Resolution::Unknown(_)))
}

/// Asks the facilitator about orphaned payments and resolves their tasks.
#[derive(Clone)]
pub struct Reconciler {
    settlement: Settlement,
    ledger: TaskLedger,
}

impl Reconciler {
    pub fn new(settlement: Settlement, store: Arc<dyn TaskStore>, bus: Arc<dyn Bus>) -> Self {
        Reconciler {
            settlement,
            ledger: TaskLedger::new(store, bus),
        }
    }

    fn payments(&self) -> &Arc<dyn PaymentStore> {
        &self.settlement.payments
    }

    /// Runs a pass every `interval` until `shutdown` fires.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        tracing::info!(
            interval_secs = interval.as_secs_f64(),
            "payment reconciliation started"
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => break,
            }
            match self.pass().await {
                Ok(done) if !done.is_empty() => {
                    tracing::info!(payments = done.len(), "payment reconciliation pass done")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "payment reconciliation could not read the orphaned payments")
                }
            }
        }
    }

    /// Reconciles every orphaned payment once (batches of [`BATCH`]), then every stale
    /// settlement.
    pub async fn pass(&self) -> Result<Vec<Reconciled>, StoreError> {
        let mut done = self.orphans().await?;
        loop {
            let stale = self
                .payments()
                .claim_stale(self.settlement.settling_lease, BATCH)
                .await?;
            let last = stale.len() < BATCH as usize;
            let before = done.len();
            for record in stale {
                tracing::warn!(task_id = %record.task_id, nonce = %record.nonce, since = %record.updated_at, "payment left settling past its lease; asking the facilitator whether it landed");
                done.push(Reconciled::of(record, |r| self.resolve_stale(r)).await);
            }
            if last || any_unknown(&done[before..]) {
                return Ok(done);
            }
        }
    }

    /// Reconciles every orphaned payment once (batches of [`BATCH`]).
    async fn orphans(&self) -> Result<Vec<Reconciled>, StoreError> {
        let mut done = Vec::new();
        loop {
            let claimed = self.payments().claim_orphans(BATCH).await?;
            let last = claimed.len() < BATCH as usize;
            for record in claimed {
                done.push(Reconciled::of(record, |r| self.resolve(r)).await);
            }
            // A payment still unknown goes back to `orphaned` and would be claimed again:
            // one pass asks about each once.
            if last || any_unknown(&done) {
                return Ok(done);
            }
        }
    }

    async fn resolve(&self, record: PaymentRecord) -> Resolution {
        let task_id = record.task_id.as_str();
        let p = &record.payment;
        // Claimed records have an earlier attempt: "nonce already used" is its success.
        let settled = self.settlement.ask(task_id, p, true).await;
        let kept = match &settled {
            Settled::Unknown(_) => record.kept.clone(),
            _ => None,
        };
        if let Err(e) = self.settlement.record(task_id, p, &settled, kept).await {
            // The claim is left `settling`; the answer is in the log.
            tracing::error!(task_id, nonce = %p.nonce, error = %e, "could not record a reconciled payment");
            return Resolution::TaskNotUpdated(format!("the payment store: {e}"));
        }
        match settled {
            Settled::Unknown(e) => Resolution::Unknown(e.to_string()),
            Settled::Yes(receipt) => {
                let done = match record.kept {
                    Some(kept) => self.transition(released(task_id, kept, &receipt)).await,
                    None => self.run_again(&record).await,
                };
                match done {
                    Ok(()) => Resolution::Settled,
                    Err(e) => Resolution::TaskNotUpdated(e),
                }
            }
            refused => {
                let reason = match &refused {
                    Settled::Refused(r) => {
                        r.error_reason.clone().unwrap_or_else(|| "refused".into())
                    }
                    _ => String::new(),
                };
                let (metadata, text) = unpaid(p, &refused);
                let update = unpaid_failure(task_id, &text, metadata);
                match self.transition(update).await {
                    Ok(()) => Resolution::Refused(reason),
                    Err(e) => Resolution::TaskNotUpdated(e),
                }
            }
        }
    }

    /// Resolves a payment left `settling` past its lease (see the module's table): asks
    /// `/verify`, never `/settle`.
    async fn resolve_stale(&self, record: PaymentRecord) -> Resolution {
        let task_id = record.task_id.as_str();
        let p = &record.payment;
        let state = match self.ledger.store().get(task_id, Access::Internal).await {
            Ok(snap) => Some(snap.task.status.state),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Resolution::Unknown(format!("the task could not be read: {e}")),
        };
        let running = state.is_some_and(|s| !s.is_final());
        let kept = record
            .kept
            .clone()
            .filter(|_| state == Some(TaskState::Working));
        let answer = match self
            .settlement
            .facilitator
            .verify(&p.payload, &p.requirements)
            .await
        {
            Ok(answer) => answer,
            Err(e) => return Resolution::Unknown(e.to_string()),
        };
        let (finish, resolution) = if bindu_engine::x402::verified_used(&answer) {
            let receipt = bindu_schemas::x402::SettleResponse {
                success: true,
                error_reason: None,
                payer: Some(answer.payer.clone().unwrap_or_else(|| p.payer.clone())),
                transaction: String::new(),
                network: p.requirements.network.clone(),
                amount: Some(p.requirements.amount.clone()),
            };
            if !running {
                tracing::error!(task_id, nonce = %p.nonce, "a payment landed for a task that ended without delivering; it needs a refund");
            }
            self.settlement.metrics.count("settled");
            (Finish::settled(receipt), Resolution::Settled)
        } else if answer.is_valid {
            match (&kept, running) {
                (Some(kept), _) => (
                    Finish::orphaned("not settled yet".into(), Some(kept.clone())),
                    Resolution::Unknown("not settled yet: settled on the next pass".into()),
                ),
                (None, true) => (
                    Finish::verified(),
                    Resolution::Unknown("not settled yet: its run settles it".into()),
                ),
                (None, false) => {
                    self.settlement.metrics.count("not_charged");
                    (
                        Finish::unpaid("UNDELIVERED"),
                        Resolution::Refused(
                            "UNDELIVERED: the task ended without delivering; nothing charged"
                                .into(),
                        ),
                    )
                }
            }
        } else {
            let reason = answer
                .invalid_reason
                .or(answer.invalid_message)
                .unwrap_or_else(|| "refused by the facilitator".into());
            self.settlement.metrics.count("refused");
            (Finish::unpaid(&reason), Resolution::Refused(reason))
        };
        let settled = finish.receipt.clone();
        if let Err(e) = self
            .settlement
            .payments
            .finish(task_id, &p.nonce, finish.clone())
            .await
        {
            tracing::error!(task_id, nonce = %p.nonce, error = %e, "could not record a stale settlement's resolution");
            return Resolution::TaskNotUpdated(format!("the payment store: {e}"));
        }
        let Some(kept) =
            kept.filter(|_| finish.state != bindu_engine::store::PaymentState::Orphaned)
        else {
            return resolution;
        };
        // A result kept for the payer: released when paid, dropped (the task failed) when
        // the payment can no longer be settled.
        let update = match settled {
            Some(receipt) => released(task_id, kept, &receipt),
            None => {
                let code = finish.error.clone().unwrap_or_default();
                unpaid_failure(
                    task_id,
                    &format!("the payment cannot be settled ({code}); the result is withheld and nothing was charged"),
                    super::not_charged(&code),
                )
            }
        };
        match self.transition(update).await {
            Ok(()) => resolution,
            Err(e) => Resolution::TaskNotUpdated(e),
        }
    }

    async fn transition(&self, update: TaskUpdate) -> Result<(), String> {
        let task_id = update.task_id.clone();
        match self
            .ledger
            .transition(update, Patience::Until(crate::pool::RECORD_DEADLINE))
            .await
        {
            Ok(applied) => {
                tracing::info!(%task_id, state = %applied.state, "task of a reconciled payment resolved");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%task_id, error = %e, "could not resolve the task of a reconciled payment");
                Err(format!("the task: {e}"))
            }
        }
    }

    /// A payment settled before its run (`X402__SETTLE=before`) that never ran: its run is
    /// queued again (the worker finds the payment settled and does not settle it again).
    async fn run_again(&self, record: &PaymentRecord) -> Result<(), String> {
        let store = self.ledger.store();
        let snap = store
            .get(&record.task_id, Access::Internal)
            .await
            .map_err(|e| format!("the task: {e}"))?;
        if snap.task.status.state != TaskState::Working {
            return Err(format!(
                "the task is {}, not waiting for its payment",
                snap.task.status.state
            ));
        }
        let message_id = snap
            .task
            .history
            .as_ref()
            .and_then(|h| h.iter().rev().find(|m| m.role == Role::User))
            .map(|m| m.message_id.clone())
            .unwrap_or_default();
        let command = TaskCommand {
            op: CommandOp::Run,
            task_id: record.task_id.clone(),
            context_id: snap.task.context_id.clone(),
            message_id,
            caller: snap.owner.clone(),
            issued_at: bindu_engine::time::now_rfc3339(),
            version: snap.version,
            history: None,
            payment: Some(record.payment.clone()),
            trace: bindu_engine::trace::current(),
        };
        self.ledger
            .bus()
            .publish_commands(vec![command])
            .await
            .map_err(|e| format!("queueing its run: {e}"))
    }
}
