//! Dead letters of the webhook dispatcher: deliveries it gave up on, kept durably so an
//! operator can see them (`bindu webhooks dead-letters`) and post them again
//! (`bindu webhooks replay`).
//!
//! The dispatcher also parks notifications here that it still retries by itself
//! ([`DeadLetter::retrying`]): a notification that failed an attempt, or whose destination
//! is behind, is recorded before its task event is acknowledged on the bus, so the bus never
//! waits for a slow receiver and a restart loses nothing ([`DeadLetterStore::retrying`]
//! gives them back, oldest first). Such a letter ends delivered or given up
//! ([`DeadLetterStore::finish_retry`]).
//!
//! The port, with its backends one file each, like the task store:
//! - `memory`: [`MemoryDeadLetters`] (one process, bounded);
//! - `postgres` (feature `postgres`): [`PostgresDeadLetters`] (table
//!   `bindu_push_dead_letters`, namespaced like the tasks);
//! - [`conformance`] (feature `testing`): the suite every backend runs.

use async_trait::async_trait;

use super::StoreError;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;

pub use memory::MemoryDeadLetters;
#[cfg(feature = "postgres")]
pub use postgres::PostgresDeadLetters;

/// One delivery given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub task_id: String,
    /// `<taskId>:<seq>`, as sent in the notification.
    pub event_id: String,
    pub seq: u64,
    /// The push config's id, or `global` for the agent-wide webhook.
    pub config_id: String,
    pub url: String,
    /// The exact JSON body that was posted.
    pub body: String,
    pub attempts: u32,
    /// Why delivery stopped (`HTTP 410`, `timeout`, `destination refused: …`).
    pub last_error: String,
    /// RFC 3339; set by the store.
    pub created_at: String,
    /// RFC 3339 time of a successful replay (or of the dispatcher's own successful retry).
    pub replayed_at: Option<String>,
    /// Parked, not given up: the dispatcher still retries it by itself.
    pub retrying: bool,
}

#[async_trait]
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Records a dead letter; a second one with the same id is ignored (a redelivered event
    /// given up again).
    async fn add(&self, letter: DeadLetter) -> Result<(), StoreError>;

    /// Newest first; with `pending_only`, only those not replayed yet.
    async fn list(&self, limit: u32, pending_only: bool) -> Result<Vec<DeadLetter>, StoreError>;

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// Records a successful replay (`replayed`) or a failed one (the new error and the
    /// attempts it took). Either way the dispatcher no longer retries it by itself.
    async fn record_replay(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> Result<(), StoreError>;

    /// Dead letters not replayed yet.
    async fn pending(&self) -> Result<u64, StoreError>;

    /// Letters the dispatcher still retries by itself ([`DeadLetter::retrying`]), oldest
    /// first, at most `limit`.
    async fn retrying(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;

    /// Ends the dispatcher's retries of a parked letter: delivered (marked replayed), or
    /// given up after `attempts` in all, the last with `error`. An unknown id is
    /// [`StoreError::NotFound`].
    async fn finish_retry(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> Result<(), StoreError>;
}
