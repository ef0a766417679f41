//! The worker's side of a paid run: its outcome once the payment is settled, and a
//! payment that could not be recorded (the command is handed back).

use std::time::Duration;

use bindu_engine::bus::Delivery;
use bindu_engine::store::payments::{KeptChunk, KeptResult};
use bindu_engine::store::{ArtifactChunk, StoreError, TaskUpdate};
use bindu_schemas::TaskState;

use super::outcome::*;
use super::signing::sign_update;
use super::Inner;
use crate::payments;

impl Inner {
    /// A paid run's outcome once its payment is settled (`X402__SETTLE=after`): a completed
    /// run is settled and its withheld chunks released; one whose payment does not settle
    /// fails with the reason and releases nothing; a run that did not complete is not
    /// charged.
    pub(super) async fn settle_after(
        &self,
        task_id: &str,
        p: &bindu_schemas::x402::PaymentCommand,
        mut update: TaskUpdate,
        withheld: Vec<ArtifactChunk>,
        expiring: bool,
    ) -> Result<TaskUpdate, StoreError> {
        let completed = matches!(update.status, Some((TaskState::Completed, _)));
        let paused = matches!(
            update.status,
            Some((TaskState::InputRequired | TaskState::AuthRequired, _))
        );
        if paused && !expiring {
            // Nothing settled yet: the payment stays `verified` and pays for the task's
            // follow-up (while its authorization lasts), not charged twice.
            tracing::info!(
                task_id,
                "paid task paused; its payment waits for the follow-up"
            );
            let mut m = bindu_schemas::Metadata::new();
            m.insert(
                bindu_schemas::x402::meta::STATUS.into(),
                bindu_schemas::x402::meta::VERIFIED.into(),
            );
            update.metadata = Some(m);
            return Ok(update);
        }
        let Some(settlement) = self.settlement.as_ref().filter(|_| completed) else {
            let code = if expiring {
                "EXPIRED_PAYMENT"
            } else if completed {
                // No facilitator here: deliver nothing unpaid.
                let mut unpaid = failed(task_id, "Task failed: this worker cannot settle payments (no x402 facilitator configured); nothing was charged".into())
                    .after_run(update.announced, Vec::new());
                unpaid.metadata = Some(payments::not_charged("SETTLEMENT_FAILED"));
                return Ok(unpaid);
            } else {
                "TASK_NOT_COMPLETED"
            };
            if let Some(s) = &self.settlement {
                s.metrics
                    .count(if expiring { "expired" } else { "not_charged" });
                s.not_charged(task_id, p, code).await;
            }
            tracing::info!(task_id, code, "paid task did not complete; nothing charged");
            update.metadata = Some(payments::not_charged(code));
            return Ok(update);
        };
        let settled = settlement.settle(task_id, p).await?;
        // The whole result, chunks first, in order: released now, or kept with the payment
        // while its settlement is unresolved.
        let mut artifacts = withheld;
        artifacts.append(&mut update.artifacts);
        update.artifacts = artifacts;
        match settled {
            payments::Settled::Yes(receipt) => {
                settlement
                    .record(task_id, p, &payments::Settled::Yes(receipt.clone()), None)
                    .await?;
                update.metadata = Some(payments::completed(&receipt));
                Ok(update)
            }
            payments::Settled::Unknown(e) => {
                if let Some(identity) = &self.identity {
                    sign_update(&mut update, identity);
                }
                let kept = KeptResult {
                    artifacts: update.artifacts.iter().map(KeptChunk::from).collect(),
                    history: update.history.clone(),
                    message: update.status.as_ref().and_then(|(_, m)| m.clone()),
                };
                let unknown = payments::Settled::Unknown(e.clone());
                settlement.record(task_id, p, &unknown, Some(kept)).await?;
                Ok(pending_payment(task_id, p, &e, update.announced))
            }
            refused => {
                settlement.record(task_id, p, &refused, None).await?;
                let (metadata, reason) = payments::unpaid(p, &refused);
                let mut unpaid = failed(task_id, format!("Task failed: {reason}"))
                    .after_run(update.announced, Vec::new());
                unpaid.metadata = Some(metadata);
                Ok(unpaid)
            }
        }
    }

    /// A paid command whose payment could not be recorded: handed back to the bus, so it
    /// is never settled (or its answer lost) without a durable trace.
    pub(super) async fn retry_payment(
        &self,
        d: &Delivery,
        task_id: &str,
        e: StoreError,
    ) -> Option<()> {
        tracing::warn!(task_id, error = %e, "could not record the task's payment; command will be retried");
        let _ = d.acker.nack(Duration::from_secs(1)).await;
        None
    }
}
