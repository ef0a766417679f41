//! The payments of paid tasks (x402), kept with the task they paid for: what was verified
//! at the edge, every settlement attempt, its answer, and, while a settlement's outcome is
//! unknown, the run's result the payer is owed once it is resolved.
//!
//! Why it is durable: a worker records that it is about to settle ([`PaymentStore::begin_settle`])
//! before it asks the facilitator, and the answer ([`PaymentStore::finish`]) before it
//! acks the command. A redelivered command (its first worker died between the settlement
//! and the ack) therefore finds either the receipt (nothing is settled again) or the trace
//! of an earlier attempt (the facilitator's "nonce already used" is then that attempt's
//! success, not a refusal). A settlement without a usable answer is `orphaned` until the
//! reconciliation job (or `bindu payments reconcile`) asks the facilitator again
//! ([`PaymentStore::claim_orphans`]).
//!
//! | state | meaning |
//! |---|---|
//! | `verified` | verified at the edge, not settled yet (a paused run keeps it for its follow-up) |
//! | `settling` | a settlement was asked for; its answer is not recorded yet (one left so longer than a lease is claimed by the reconciliation: [`PaymentStore::claim_stale`]) |
//! | `settled` | paid: the receipt is kept |
//! | `refused` | the facilitator refused it: nothing was transferred |
//! | `orphaned` | no usable answer: the transfer may or may not have landed |
//! | `unpaid` | never to be settled (the run did not complete, or its authorization expired) |
//!
//! Backends, one file each: `memory` ([`MemoryPayments`]), `postgres` (feature `postgres`:
//! [`PostgresPayments`], table `bindu_payments`); [`conformance`] (feature `testing`) is
//! the suite both run.

use async_trait::async_trait;
use bindu_schemas::x402::{PaymentCommand, SettleResponse};
use bindu_schemas::{Artifact, Message};
use serde::{Deserialize, Serialize};

use super::{ArtifactChunk, StoreError};

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;

pub use memory::MemoryPayments;
#[cfg(feature = "postgres")]
pub use postgres::PostgresPayments;

/// Where a payment stands (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentState {
    Verified,
    Settling,
    Settled,
    Refused,
    Orphaned,
    Unpaid,
}

impl PaymentState {
    pub const ALL: [PaymentState; 6] = [
        PaymentState::Verified,
        PaymentState::Settling,
        PaymentState::Settled,
        PaymentState::Refused,
        PaymentState::Orphaned,
        PaymentState::Unpaid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Verified => "verified",
            PaymentState::Settling => "settling",
            PaymentState::Settled => "settled",
            PaymentState::Refused => "refused",
            PaymentState::Orphaned => "orphaned",
            PaymentState::Unpaid => "unpaid",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentState> {
        PaymentState::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for PaymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run's result kept while its payment's settlement is unresolved: released (recorded on
/// the task) once the payment is settled, dropped if it is not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptResult {
    pub artifacts: Vec<KeptChunk>,
    /// The agent's reply, for the task's history.
    pub history: Vec<Message>,
    /// The `completed` status message, if the run had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
}

/// An artifact chunk as kept (`append` / `lastChunk` as in `TaskArtifactUpdateEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptChunk {
    pub artifact: Artifact,
    pub append: bool,
    pub last_chunk: bool,
}

impl From<&ArtifactChunk> for KeptChunk {
    fn from(c: &ArtifactChunk) -> KeptChunk {
        KeptChunk {
            artifact: c.artifact.clone(),
            append: c.append,
            last_chunk: c.last_chunk,
        }
    }
}

impl From<KeptChunk> for ArtifactChunk {
    fn from(c: KeptChunk) -> ArtifactChunk {
        ArtifactChunk {
            artifact: c.artifact,
            append: c.append,
            last_chunk: c.last_chunk,
        }
    }
}

/// One payment of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRecord {
    pub task_id: String,
    /// `authorization.nonce` (0x + 64 hex digits, lower case): with the task, the key.
    pub nonce: String,
    pub state: PaymentState,
    /// The verified payment, as it rides on the task's command.
    pub payment: PaymentCommand,
    /// The facilitator's last settlement answer (a success or a refusal).
    pub receipt: Option<SettleResponse>,
    /// Settlement attempts begun so far.
    pub attempts: u32,
    /// Why the last attempt gave no usable answer, or the code of a payment not charged.
    pub error: Option<String>,
    /// The result owed to the payer once an orphaned settlement is resolved.
    pub kept: Option<KeptResult>,
    /// RFC 3339, set by the store.
    pub created_at: String,
    pub updated_at: String,
}

impl PaymentRecord {
    /// A new `verified` record (timestamps are the store's).
    pub fn verified(task_id: &str, payment: &PaymentCommand) -> PaymentRecord {
        PaymentRecord {
            task_id: task_id.to_string(),
            nonce: payment.nonce.clone(),
            state: PaymentState::Verified,
            payment: payment.clone(),
            receipt: None,
            attempts: 0,
            error: None,
            kept: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }
}

/// What a settlement attempt came to ([`PaymentStore::finish`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// `settled`, `refused`, `orphaned`, `unpaid` (or `verified`: kept for a follow-up).
    pub state: PaymentState,
    pub receipt: Option<SettleResponse>,
    pub error: Option<String>,
    /// Kept with an `orphaned` outcome; cleared otherwise.
    pub kept: Option<KeptResult>,
}

impl Finish {
    pub fn settled(receipt: SettleResponse) -> Finish {
        Finish {
            state: PaymentState::Settled,
            receipt: Some(receipt),
            error: None,
            kept: None,
        }
    }

    pub fn refused(receipt: SettleResponse) -> Finish {
        Finish {
            state: PaymentState::Refused,
            receipt: Some(receipt),
            error: None,
            kept: None,
        }
    }

    pub fn orphaned(error: String, kept: Option<KeptResult>) -> Finish {
        Finish {
            state: PaymentState::Orphaned,
            receipt: None,
            error: Some(error),
            kept,
        }
    }

    /// Back to `verified`: no settlement of it landed, and its run will settle it.
    pub fn verified() -> Finish {
        Finish {
            state: PaymentState::Verified,
            receipt: None,
            error: None,
            kept: None,
        }
    }

    pub fn unpaid(code: &str) -> Finish {
        Finish {
            state: PaymentState::Unpaid,
            receipt: None,
            error: Some(code.to_string()),
            kept: None,
        }
    }
}

#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    /// Keeps a verified payment of `task_id` (state `verified`); one already kept under the
    /// same task and nonce is left as it is (a retried accept).
    async fn record(&self, task_id: &str, payment: &PaymentCommand) -> Result<(), StoreError>;

    async fn get(&self, task_id: &str, nonce: &str) -> Result<Option<PaymentRecord>, StoreError>;

    /// The task's payments, newest first.
    async fn for_task(&self, task_id: &str) -> Result<Vec<PaymentRecord>, StoreError>;

    /// Records that a settlement is about to be asked for, durably, and returns the record
    /// as it now is: `settling` with `attempts` counting this one (so `attempts > 1` says an
    /// earlier attempt may have landed). A payment already `settled` is returned unchanged:
    /// it must not be settled again; so is one `unpaid`: it is never to be settled (its task
    /// ended without delivering, e.g. a late delivery of a command that ran out of them). A payment not kept yet is kept first (its command
    /// carried it).
    async fn begin_settle(
        &self,
        task_id: &str,
        payment: &PaymentCommand,
    ) -> Result<PaymentRecord, StoreError>;

    /// Records what an attempt came to. `NotFound` when there is no such payment.
    async fn finish(&self, task_id: &str, nonce: &str, finish: Finish) -> Result<(), StoreError>;

    /// Takes up to `limit` `orphaned` payments, oldest first, for one reconciliation: each
    /// is returned `settling` with its attempt counted, so two reconcilers never ask for the
    /// same one at once.
    async fn claim_orphans(&self, limit: u32) -> Result<Vec<PaymentRecord>, StoreError>;

    /// Takes up to `limit` payments left `settling` for longer than `lease` (whoever was
    /// settling them died, or their command ran out of deliveries), oldest first, for one
    /// reconciliation: each is returned `settling` with its lease renewed (so two
    /// reconcilers never take the same one) and its attempts unchanged.
    async fn claim_stale(
        &self,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError>;

    /// Newest first; only those in `state` when given.
    async fn list(
        &self,
        state: Option<PaymentState>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError>;
}
