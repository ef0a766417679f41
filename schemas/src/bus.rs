//! The public bus contract: what ingress puts on the task work queue ([`TaskCommand`]) and
//! what workers and ingress announce about every task ([`TaskEvent`]).
//!
//! Both are plain JSON so that any process (in any language) can act as a worker or watch
//! task events. Every event of a task carries a per-task sequence number starting at 1
//! (`submitted`), assigned by the task store when the transition is recorded, so readers can
//! resume from a known point and drop duplicates.

use serde::{Deserialize, Serialize};

use crate::a2a::{TaskArtifactUpdateEvent, TaskState, TaskStatusUpdateEvent};

/// What a command asks a worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandOp {
    /// Run the agent's handler on the task's current conversation.
    Run,
}

/// One unit of work on the task work queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCommand {
    pub op: CommandOp,
    pub task_id: String,
    pub context_id: String,
    /// The message that caused this run (the newest user message of the task).
    pub message_id: String,
    /// The authenticated caller (DID or OAuth client id), when auth is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// RFC 3339 time at which ingress accepted the request.
    pub issued_at: String,
}

/// The A2A event inside a [`TaskEvent`]; each variant carries its own `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventBody {
    Status(TaskStatusUpdateEvent),
    Artifact(TaskArtifactUpdateEvent),
}

/// A task event as published on the bus.
///
/// ```json
/// {"seq":2,"timestamp":"2026-11-24T10:00:00.000Z",
///  "event":{"kind":"status-update","taskId":"…","contextId":"…",
///           "status":{"state":"working","timestamp":"…"},"final":false}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Per-task sequence number, starting at 1 and without gaps.
    pub seq: u64,
    /// RFC 3339 time the transition was recorded.
    pub timestamp: String,
    pub event: EventBody,
}

impl TaskEvent {
    pub fn task_id(&self) -> &str {
        match &self.event {
            EventBody::Status(e) => &e.task_id,
            EventBody::Artifact(e) => &e.task_id,
        }
    }

    pub fn context_id(&self) -> &str {
        match &self.event {
            EventBody::Status(e) => &e.context_id,
            EventBody::Artifact(e) => &e.context_id,
        }
    }

    /// A stable, unique id for this event: `<taskId>:<seq>`.
    pub fn event_id(&self) -> String {
        format!("{}:{}", self.task_id(), self.seq)
    }

    /// The new state, when this is a status update.
    pub fn state(&self) -> Option<TaskState> {
        match &self.event {
            EventBody::Status(e) => Some(e.status.state),
            EventBody::Artifact(_) => None,
        }
    }

    /// True for the status update that ends a stream (terminal or interrupted state).
    pub fn is_final(&self) -> bool {
        matches!(&self.event, EventBody::Status(e) if e.is_final)
    }
}
