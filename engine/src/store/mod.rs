//! The task store port: tasks, contexts, history, artifacts, push configs and feedback.
//!
//! Every write that changes a task goes through [`TaskStore::submit`] (a new user message)
//! or [`TaskStore::apply`] (a batch of compare-and-set updates). Both return the
//! [`TaskEvent`]s they recorded, with per-task sequence numbers, so the caller can publish
//! exactly what was stored.
//!
//! Ownership: every task and context belongs to the caller that created it (`None` when
//! auth is off). A read through [`Access::Owner`] of someone else's row answers exactly like
//! a missing row.
//!
//! Backends: `memory` (default). [`conformance`] holds the suite every backend runs. Beside
//! the tasks: [`dead_letters`] (webhook deliveries given up on) and [`payments`] (x402).

use std::time::Duration;

use async_trait::async_trait;
use bindu_schemas::bus::{EventBody, TaskEvent};

use crate::state::can_transition;
use bindu_schemas::{
    Artifact, ArtifactUpdateKind, ContextSummary, Message, Metadata, PushNotificationConfig,
    StatusUpdateKind, Task, TaskArtifactUpdateEvent, TaskState, TaskStatus, TaskStatusUpdateEvent,
};

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod dead_letters;
#[cfg(any(test, feature = "testing"))]
pub mod flaky;
mod listing;
pub mod memory;
pub mod payments;
#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(feature = "postgres")]
pub use dead_letters::PostgresDeadLetters;
pub use dead_letters::{DeadLetter, DeadLetterStore, MemoryDeadLetters};
pub use listing::{
    invalid_cursor, json_size, page_has_room, ListQuery, ListShape, Page, TaskFilter, TaskListing,
};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use payments::PostgresPayments;
pub use payments::{MemoryPayments, PaymentRecord, PaymentState, PaymentStore};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task not found: {0}")]
    NotFound(String),
    #[error("context not found: {0}")]
    ContextNotFound(String),
    /// A new message for a task in a terminal state.
    #[error("task {task_id} is {state} and cannot be modified")]
    Immutable { task_id: String, state: TaskState },
    /// A new message for a task that is still queued or running.
    #[error("task {task_id} is {state}; wait until it finishes or asks for input")]
    Busy { task_id: String, state: TaskState },
    /// The compare-and-set precondition did not hold.
    #[error("task {task_id} is {state}, which this update does not expect")]
    Conflict { task_id: String, state: TaskState },
    #[error("illegal transition of task {task_id} from {from} to {to}")]
    IllegalTransition {
        task_id: String,
        from: TaskState,
        to: TaskState,
    },
    /// The same owner sent a message with this `messageId` within the dedupe window
    /// ([`SubmitRequest::dedupe`]): it went to `task_id`, and nothing was recorded now.
    #[error("message already sent to task {task_id}")]
    Duplicate { task_id: String },
    /// The request contradicts what is stored (e.g. a contextId that does not match).
    #[error("{0}")]
    Invalid(String),
    /// The backend cannot be reached right now; the operation may be retried.
    #[error("task store unavailable: {0}")]
    Unavailable(String),
    #[error("task store error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Who is reading or writing.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// The engine itself (workers, dispatcher): sees every task of this agent.
    Internal,
    /// A caller: `None` when auth is off. Sees only rows it owns.
    Owner(Option<&'a str>),
}

impl Access<'_> {
    pub fn permits(&self, owner: Option<&str>) -> bool {
        match self {
            Access::Internal => true,
            Access::Owner(caller) => *caller == owner,
        }
    }
}

/// A user message that creates a task or continues an interrupted one.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    /// The authenticated caller, `None` when auth is off.
    pub owner: Option<String>,
    pub task_id: String,
    /// `None` when continuing a task without naming its context (the task's is used) or when
    /// the server must generate one.
    pub context_id: Option<String>,
    pub message: Message,
    /// Inline `configuration.pushNotificationConfig`, stored with the task.
    pub push_config: Option<PushNotificationConfig>,
    /// Idempotent sends: the first submit of a (owner, `messageId`) claims it for this long,
    /// in the same write as the message; a later one within it is refused with
    /// [`StoreError::Duplicate`] naming the first's task. `None`: no claim.
    pub dedupe: Option<Duration>,
}

impl SubmitRequest {
    /// `message` for task `task_id`: no owner (auth off), a server-chosen context (or the
    /// task's own), no push config.
    pub fn new(task_id: impl Into<String>, message: Message) -> Self {
        SubmitRequest {
            owner: None,
            task_id: task_id.into(),
            context_id: None,
            message,
            push_config: None,
            dedupe: None,
        }
    }

    /// Claims the message's (owner, `messageId`) for `window` (see [`SubmitRequest::dedupe`]);
    /// a zero window claims nothing.
    pub fn deduplicated_for(self, window: Duration) -> Self {
        SubmitRequest {
            dedupe: (!window.is_zero()).then_some(window),
            ..self
        }
    }

    /// The key of the message's claim, when it makes one.
    pub fn dedupe_key(&self) -> Option<[u8; 32]> {
        self.dedupe?;
        Some(dedupe_key(self.owner.as_deref(), &self.message.message_id))
    }

    /// Sent by `owner` (`None`: auth is off).
    pub fn owned_by(self, owner: Option<&str>) -> Self {
        SubmitRequest {
            owner: owner.map(str::to_string),
            ..self
        }
    }

    /// In context `context_id`.
    pub fn in_context(self, context_id: impl Into<String>) -> Self {
        SubmitRequest {
            context_id: Some(context_id.into()),
            ..self
        }
    }

    /// With an inline `configuration.pushNotificationConfig`.
    pub fn with_push_config(self, config: PushNotificationConfig) -> Self {
        SubmitRequest {
            push_config: Some(config),
            ..self
        }
    }
}

/// The key a message is claimed under: a hash of its owner and `messageId`, so any id
/// (however long) is a fixed-size key, and two owners' equal ids never meet.
pub fn dedupe_key(owner: Option<&str>, message_id: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // Length-prefixed: ("ab", "c") and ("a", "bc") differ; no owner differs from "".
    match owner {
        Some(o) => {
            h.update([1u8]);
            h.update((o.len() as u64).to_be_bytes());
            h.update(o.as_bytes());
        }
        None => h.update([0u8]),
    }
    h.update(message_id.as_bytes());
    h.finalize().into()
}

#[derive(Debug, Clone)]
pub struct Submitted {
    /// The task after the message was recorded (state `submitted`).
    pub task: Task,
    /// The number of events recorded for the task so far (= `event.seq`).
    pub version: u64,
    pub event: TaskEvent,
    pub created: bool,
}

/// Which states a compare-and-set update accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Any,
    NotTerminal,
    State(TaskState),
    /// `submitted` or `working`: a redelivered command whose first worker died mid-run.
    Active,
}

impl Expect {
    pub fn matches(self, state: TaskState) -> bool {
        match self {
            Expect::Any => true,
            Expect::NotTerminal => !state.is_terminal(),
            Expect::State(s) => s == state,
            Expect::Active => matches!(state, TaskState::Submitted | TaskState::Working),
        }
    }
}

/// One artifact chunk (`append` / `lastChunk` as in `TaskArtifactUpdateEvent`).
#[derive(Debug, Clone)]
pub struct ArtifactChunk {
    pub artifact: Artifact,
    pub append: bool,
    pub last_chunk: bool,
}

/// Sequence numbers an update made beside a running handler skips (see
/// [`TaskUpdate::beside_run`]): more than any run announces before its outcome.
pub const RUN_SEQ_RESERVE: u64 = 1 << 20;

/// A compare-and-set update of one task. Applied atomically: artifacts first, then history,
/// then the status; one event per artifact chunk and one for the status.
///
/// A worker's run announces `working`, interim statuses and streamed chunks as events first
/// (numbered after the task's version) and records them with its outcome: `announced` says
/// how many sequence numbers the run used that way, `streamed` holds the chunks among them.
/// The store keeps the chunks without announcing them again, numbers this update's own
/// events after the announced ones, and checks the transition from `working` (the run did
/// start), so one durable write records a whole run.
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub task_id: String,
    pub expect: Expect,
    pub artifacts: Vec<ArtifactChunk>,
    pub history: Vec<Message>,
    /// New state and its optional status message.
    pub status: Option<(TaskState, Option<Message>)>,
    pub metadata: Option<Metadata>,
    /// Sequence numbers the run already used for events not recorded yet (`working`,
    /// interim statuses, streamed chunks); 0 for an update that is not a run's outcome.
    pub announced: u64,
    /// Chunks the run already announced, recorded (before `artifacts`) without new events.
    pub streamed: Vec<ArtifactChunk>,
}

impl TaskUpdate {
    pub fn new(task_id: impl Into<String>, expect: Expect) -> Self {
        TaskUpdate {
            task_id: task_id.into(),
            expect,
            artifacts: Vec::new(),
            history: Vec::new(),
            status: None,
            metadata: None,
            announced: 0,
            streamed: Vec::new(),
        }
    }

    /// Marks this update as made beside a run that may be in flight (a cancel, a give-up):
    /// its events are numbered after [`RUN_SEQ_RESERVE`] sequence numbers, so they never
    /// collide with events that run announced but did not record.
    pub fn beside_run(mut self) -> Self {
        self.announced = RUN_SEQ_RESERVE;
        self
    }

    /// Marks this update as the outcome of a run that already announced `announced`
    /// events (its `working` status first) and streamed `streamed` chunks among them.
    pub fn after_run(mut self, announced: u64, streamed: Vec<ArtifactChunk>) -> Self {
        self.announced = announced;
        self.streamed = streamed;
        self
    }

    pub fn status(mut self, state: TaskState, message: Option<Message>) -> Self {
        self.status = Some((state, message));
        self
    }

    pub fn history(mut self, message: Message) -> Self {
        self.history.push(message);
        self
    }

    pub fn artifact(mut self, chunk: ArtifactChunk) -> Self {
        self.artifacts.push(chunk);
        self
    }
}

/// What an update does to a task, worked out the same way by every backend: the checks
/// (compare-and-set, legal transition) and the events with their sequence numbers.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The task's version after the update.
    pub version: u64,
    /// The new status (with `now` as its timestamp), when the update sets one.
    pub status: Option<TaskStatus>,
    /// The events to announce, numbered after the version and the run's announced events.
    pub events: Vec<TaskEvent>,
}

/// Checks `update` against a task in state `from` at `version` and numbers its events.
pub fn plan_update(
    update: &TaskUpdate,
    from: TaskState,
    version: u64,
    context_id: &str,
    now: &str,
) -> Result<Plan, StoreError> {
    check_update(update, from)?;
    Ok(plan_events(update, version, context_id, now))
}

/// The compare-and-set and transition checks of `update` on a task in state `from`.
pub fn check_update(update: &TaskUpdate, from: TaskState) -> Result<(), StoreError> {
    if !update.expect.matches(from) {
        return Err(StoreError::Conflict {
            task_id: update.task_id.clone(),
            state: from,
        });
    }
    // A run that announced `working` moves on from there, whatever was last recorded.
    let effective = if update.announced > 0 && from == TaskState::Submitted {
        TaskState::Working
    } else {
        from
    };
    match &update.status {
        Some((to, _)) if !can_transition(effective, *to) => Err(StoreError::IllegalTransition {
            task_id: update.task_id.clone(),
            from,
            to: *to,
        }),
        None if from.is_terminal() => Err(StoreError::Conflict {
            task_id: update.task_id.clone(),
            state: from,
        }),
        _ => Ok(()),
    }
}

/// How many sequence numbers `update` moves its task's version on by.
pub fn update_width(update: &TaskUpdate) -> u64 {
    update.announced + update.artifacts.len() as u64 + u64::from(update.status.is_some())
}

/// Numbers the events of an update (already checked) on a task at `version`.
pub fn plan_events(update: &TaskUpdate, version: u64, context_id: &str, now: &str) -> Plan {
    let mut seq = version + update.announced;
    let mut events = Vec::with_capacity(update.artifacts.len() + 1);
    for chunk in &update.artifacts {
        seq += 1;
        events.push(artifact_event(&update.task_id, context_id, chunk, seq, now));
    }
    let status = update.status.as_ref().map(|(state, message)| TaskStatus {
        state: *state,
        message: message.clone(),
        timestamp: Some(now.to_string()),
    });
    if let Some(status) = &status {
        seq += 1;
        events.push(status_event(&update.task_id, context_id, status, seq, now));
    }
    // The reply and the metadata ride on the update's last event.
    if let Some(last) = events.last_mut() {
        last.history = update.history.clone();
        last.metadata = update.metadata.clone();
    }
    Plan {
        version: seq,
        status,
        events,
    }
}

#[derive(Debug, Clone)]
pub struct Applied {
    pub state: TaskState,
    pub version: u64,
    pub events: Vec<TaskEvent>,
    /// Whether the task had push configs when the update was recorded (configs set by a
    /// write that commits concurrently may be missed).
    pub push_configs: bool,
}

#[derive(Debug, Clone)]
pub struct TaskSnapshot {
    pub task: Task,
    /// Sequence number of the last event recorded for the task.
    pub version: u64,
    pub owner: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Feedback {
    pub feedback: String,
    pub rating: Option<u8>,
    pub metadata: Option<Metadata>,
    pub created_at: String,
}

/// The event announcing a task's new status.
pub fn status_event(
    task_id: &str,
    context_id: &str,
    status: &TaskStatus,
    seq: u64,
    timestamp: &str,
) -> TaskEvent {
    TaskEvent::new(
        seq,
        timestamp,
        EventBody::Status(TaskStatusUpdateEvent {
            task_id: task_id.to_string(),
            context_id: context_id.to_string(),
            kind: StatusUpdateKind::StatusUpdate,
            status: status.clone(),
            is_final: status.state.is_final(),
            metadata: None,
        }),
    )
}

/// The event announcing an artifact chunk.
pub fn artifact_event(
    task_id: &str,
    context_id: &str,
    chunk: &ArtifactChunk,
    seq: u64,
    timestamp: &str,
) -> TaskEvent {
    TaskEvent::new(
        seq,
        timestamp,
        EventBody::Artifact(TaskArtifactUpdateEvent {
            task_id: task_id.to_string(),
            context_id: context_id.to_string(),
            kind: ArtifactUpdateKind::ArtifactUpdate,
            artifact: chunk.artifact.clone(),
            append: Some(chunk.append),
            last_chunk: Some(chunk.last_chunk),
            metadata: None,
        }),
    )
}

/// Applies an artifact chunk to a task's artifacts with A2A's merge rule: a new id or
/// `append: false` creates or replaces the artifact; `append: true` extends its parts.
pub fn merge_artifact(task: &mut Task, chunk: &ArtifactChunk) {
    let artifacts = task.artifacts.get_or_insert_with(Vec::new);
    match artifacts
        .iter_mut()
        .find(|a| a.artifact_id == chunk.artifact.artifact_id)
    {
        Some(existing) if chunk.append => {
            existing.parts.extend(chunk.artifact.parts.iter().cloned());
            if chunk.artifact.name.is_some() {
                existing.name.clone_from(&chunk.artifact.name);
            }
            if chunk.artifact.description.is_some() {
                existing.description.clone_from(&chunk.artifact.description);
            }
            if let Some(meta) = &chunk.artifact.metadata {
                let m = existing.metadata.get_or_insert_with(Default::default);
                m.extend(meta.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Some(existing) => *existing = chunk.artifact.clone(),
        None => artifacts.push(chunk.artifact.clone()),
    }
}

/// Most push configs one task can hold.
pub const MAX_PUSH_CONFIGS_PER_TASK: usize = 16;

#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Short backend name for `/health` and logs (`memory`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Ok when the backend can serve requests.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Records a user message: creates the task (and its context) or continues an
    /// interrupted task (back to `submitted`). Terminal → [`StoreError::Immutable`], queued
    /// or running → [`StoreError::Busy`], someone else's → not found.
    async fn submit(&self, req: SubmitRequest) -> Result<Submitted, StoreError>;

    /// Forgets the claim `key` ([`SubmitRequest::dedupe_key`]) made for `task_id`, so the
    /// message can be sent again: for a message recorded but never queued (its task failed
    /// at once), whose sender was told to retry. A claim that went to another task stays.
    async fn release_claim(&self, key: [u8; 32], task_id: &str) -> Result<(), StoreError> {
        let _ = (key, task_id);
        Ok(())
    }

    /// Applies compare-and-set updates; one result per update, in order.
    async fn apply(&self, updates: Vec<TaskUpdate>) -> Vec<Result<Applied, StoreError>>;

    async fn get(&self, task_id: &str, access: Access<'_>) -> Result<TaskSnapshot, StoreError>;

    /// One page of a task listing, newest first: the tasks `access` may see (of the query's
    /// context when it names one) that the listing's filter keeps, each as its shape says;
    /// a page ends early (with a cursor) once it would grow past the shape's `max_bytes`.
    async fn list_tasks(
        &self,
        access: Access<'_>,
        listing: TaskListing,
    ) -> Result<Page<Task>, StoreError>;

    /// How many tasks a listing holds in all its pages (the query's cursor and limit
    /// aside). Counted now: a read of every matching task's index entry, so only callers
    /// that must answer a total (A2A 1.0 `ListTasks`'s `totalSize`) ask for it.
    async fn count_tasks(
        &self,
        access: Access<'_>,
        listing: &TaskListing,
    ) -> Result<u64, StoreError>;

    /// Newest first.
    async fn list_contexts(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError>;

    /// Deletes a context and its tasks; returns the deleted tasks' ids and last states.
    async fn clear_context(
        &self,
        context_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<(String, TaskState)>, StoreError>;

    /// Adds or replaces (same `id`) a push config; the config must carry an id.
    async fn set_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config: PushNotificationConfig,
    ) -> Result<PushNotificationConfig, StoreError>;

    async fn list_push_configs(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<PushNotificationConfig>, StoreError>;

    /// Returns whether a config was removed.
    async fn delete_push_config(
        &self,
        task_id: &str,
        access: Access<'_>,
        config_id: &str,
    ) -> Result<bool, StoreError>;

    async fn add_feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
        feedback: Feedback,
    ) -> Result<(), StoreError>;

    async fn feedback(
        &self,
        task_id: &str,
        access: Access<'_>,
    ) -> Result<Vec<Feedback>, StoreError>;

    /// Number of stored tasks in each state, counted now.
    async fn count_by_state(&self) -> Result<Vec<(TaskState, u64)>, StoreError>;

    /// Number of stored tasks in each state for metrics: cheap enough to call on every
    /// scrape. A backend that cannot count cheaply answers a recent count (Postgres: at most
    /// one count per `STORAGE__COUNT_INTERVAL`, taken in the background), and
    /// `None` until it has one.
    async fn task_counts(&self) -> Option<Vec<(TaskState, u64)>> {
        self.count_by_state().await.ok()
    }

    /// Deletes terminal tasks last changed more than `older_than` ago (and contexts left
    /// empty); with `dry_run`, only counts them. Returns the number of tasks.
    async fn purge(&self, older_than: Duration, dry_run: bool) -> Result<u64, StoreError>;
}
