//! The public bus contract: what ingress puts on the task work queue ([`TaskCommand`]) and
//! what workers and ingress announce about every task ([`TaskEvent`]).
//!
//! Both are plain JSON so that any process (in any language) can act as a worker or watch
//! task events. Every event of a task carries a per-task sequence number starting at 1
//! (`submitted`), assigned by the task store when the transition is recorded, so readers can
//! resume from a known point and drop duplicates.

use serde::{Deserialize, Serialize};

use crate::a2a::{Message, Metadata, TaskArtifactUpdateEvent, TaskState, TaskStatusUpdateEvent};

/// What a command asks a worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandOp {
    /// Run the agent's handler on the task's current conversation.
    Run,
}

/// One unit of work on the task work queue.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCommand {
    pub op: CommandOp,
    pub task_id: String,
    pub context_id: String,
    /// The message that caused this run (the newest user message of the task).
    pub message_id: String,
    /// The authenticated caller (DID or OAuth client id), when auth is on.
    pub caller: Option<String>,
    /// RFC 3339 time at which ingress accepted the request.
    pub issued_at: String,
    /// Sequence number of the `submitted` event this run follows. A worker numbers the
    /// run's events after it (`working` is `version + 1`). 0 (absent): unknown, the worker
    /// reads the task from the store first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    /// The task's conversation so far (its history, oldest first, the new message last),
    /// carried so a worker need not read it back. Absent when it was larger than the
    /// inline limit: the worker reads it from the store.
    pub history: Option<Vec<Message>>,
    /// The payment the ingress verified for this run (a priced agent): the worker settles it
    /// once the handler has succeeded, before the result is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<crate::x402::PaymentCommand>,
    /// The trace this command belongs to (the ingress request that queued it). Not part of
    /// the JSON: it travels in the message's `traceparent`/`tracestate` headers.
    #[serde(skip)]
    pub trace: Option<TraceContext>,
}

/// A W3C trace context (<https://www.w3.org/TR/trace-context/>), as the `traceparent` and
/// `tracestate` headers carry it: commands and events travel with the context of the span
/// that published them, so a trace follows a task across processes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
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
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Per-task sequence number, starting at 1 and increasing. A run's events follow its
    /// `submitted` event without gaps; a transition recorded beside a run that may still be
    /// in flight (a cancel, a give-up) skips ahead by 2^20, so it never collides with events
    /// that run announced.
    pub seq: u64,
    /// RFC 3339 time the transition was recorded.
    pub timestamp: String,
    pub event: EventBody,
    /// Messages this transition appended to the task's history (the agent's reply rides on
    /// the status update that ends a run), so a reader can build the task without reading
    /// the store. Not part of the A2A event: streams and webhooks send `event` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Message>,
    /// Task metadata this transition merged into the task's.
    pub metadata: Option<Metadata>,
    /// The event was too large for the bus: its content (artifact parts, status message,
    /// `history`, `metadata`) was left out. Read the task from the store for it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// The message this event records came with a push notification config (set on the
    /// `submitted` event of a send that carried one): a webhook dispatcher learns from the
    /// event itself that the task has a webhook. Configs set later by
    /// `tasks/pushNotificationConfig/set` are announced by a [`PushConfigsChanged`] notice.
    #[serde(default, rename = "pushConfigured", skip_serializing_if = "is_false")]
    pub push_configured: bool,
    /// The first event of a new task on the bus (its `submitted` is published only when the
    /// message came with a push config), published with the outcome of the task's first
    /// run; [`TaskEvent::push_configured`] then says whether the task had push configs when
    /// that outcome was recorded.
    #[serde(default, rename = "opensTask", skip_serializing_if = "is_false")]
    pub opens_task: bool,
    /// The trace of the run or request that published this event. Not part of the JSON: it
    /// travels in the message's `traceparent`/`tracestate` headers.
    #[serde(skip)]
    pub trace: Option<TraceContext>,
}

impl TaskEvent {
    /// An event with no history or metadata attached.
    pub fn new(seq: u64, timestamp: impl Into<String>, event: EventBody) -> TaskEvent {
        TaskEvent {
            seq,
            timestamp: timestamp.into(),
            event,
            history: Vec::new(),
            metadata: None,
            truncated: false,
            push_configured: false,
            opens_task: false,
            trace: None,
        }
    }

    /// This event with its content left out (see [`TaskEvent::truncated`]): what a bus
    /// publishes when the whole event is over its message size limit.
    pub fn truncate(&self) -> TaskEvent {
        let event = match &self.event {
            EventBody::Status(s) => {
                let mut s = s.clone();
                s.status.message = None;
                s.metadata = None;
                EventBody::Status(s)
            }
            EventBody::Artifact(a) => {
                let mut a = a.clone();
                a.artifact.parts = Vec::new();
                a.artifact.metadata = None;
                a.metadata = None;
                EventBody::Artifact(a)
            }
        };
        TaskEvent {
            seq: self.seq,
            timestamp: self.timestamp.clone(),
            event,
            history: Vec::new(),
            metadata: None,
            truncated: true,
            push_configured: self.push_configured,
            opens_task: self.opens_task,
            trace: self.trace.clone(),
        }
    }

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

/// Announces that `tasks/pushNotificationConfig/set` stored a config for a task, on
/// [`subjects::push_configs`], in order with the task's events. A webhook dispatcher that
/// sees a task's first event (`seq` 1) without [`TaskEvent::push_configured`] and without
/// such a notice knows the task has no webhook, and skips its events without reading the
/// store until a notice comes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushConfigsChanged {
    pub task_id: String,
}

/// Subject names: the public part of the contract. `<agent>` is [`token`] of the agent's
/// namespace, `<task>` is [`token`] of the task id.
///
/// | subject | what flows |
/// |---|---|
/// | `bindu.<agent>.tasks.commands` | [`TaskCommand`] JSON (JetStream work queue) |
/// | `bindu.<agent>.tasks.events.<task>` | [`TaskEvent`] JSON (JetStream, kept for the retention age) |
/// | `bindu.<agent>.tasks.events.<task>.push` | [`PushConfigsChanged`] JSON: the task's push configs changed (JetStream, same stream, in order with its events) |
/// | `bindu.<agent>.tasks.cancel` | a task id (core NATS): stop that task's handler |
/// | `bindu.<agent>.tasks.deadletter` | [`TaskCommand`] JSON that exhausted its deliveries |
///
/// Watching every task event of an agent: subscribe to `bindu.<agent>.tasks.events.*`
/// (`>` also matches the push-config notices).
pub mod subjects {
    /// A subject-safe token: ids made of `A-Z a-z 0-9 _ - :` (UUIDs, DIDs) are used as they
    /// are; anything else becomes `~` followed by the hex of its UTF-8 bytes (so distinct ids
    /// never collide).
    pub fn token(s: &str) -> String {
        let plain = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'));
        if plain {
            return s.to_string();
        }
        format!("~{}", hex::encode(s))
    }

    pub fn commands(agent: &str) -> String {
        format!("bindu.{}.tasks.commands", token(agent))
    }

    pub fn events(agent: &str, task_id: &str) -> String {
        format!("bindu.{}.tasks.events.{}", token(agent), token(task_id))
    }

    /// Wildcard matching every task event of the agent, and the push-config notices
    /// (the events stream's subjects).
    pub fn all_events(agent: &str) -> String {
        format!("bindu.{}.tasks.events.>", token(agent))
    }

    /// Where a change of a task's push configs is announced, in the events stream, so a
    /// webhook dispatcher reads it in order with the task's events.
    pub fn push_configs(agent: &str, task_id: &str) -> String {
        format!(
            "bindu.{}.tasks.events.{}.push",
            token(agent),
            token(task_id)
        )
    }

    /// What follows `bindu.<agent>.tasks.events.` in a subject of the events stream: a task
    /// token alone is an event, a token with a suffix a push-config notice.
    pub fn is_push_configs_suffix(rest: &str) -> bool {
        rest.contains('.')
    }

    pub fn cancel(agent: &str) -> String {
        format!("bindu.{}.tasks.cancel", token(agent))
    }

    pub fn dead_letter(agent: &str) -> String {
        format!("bindu.{}.tasks.deadletter", token(agent))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn tokens_are_subject_safe_and_distinct() {
            assert_eq!(token("0b6a3c5e-8a51-4b7e"), "0b6a3c5e-8a51-4b7e");
            assert_eq!(token("a.b"), "~612e62");
            assert_ne!(token("a.b"), token("a_b"));
            assert_eq!(token("did:bindu:x"), "did:bindu:x");
            assert_eq!(token("did:x.y"), "~6469643a782e79");
            for t in ["a b", "x*", "y>", "", "é"] {
                let tok = token(t);
                assert!(!tok.is_empty());
                assert!(!tok.contains(['.', '*', '>', ' ']), "{tok}");
            }
            assert_eq!(
                events("did:key:z6Mk", "t-1"),
                "bindu.did:key:z6Mk.tasks.events.t-1"
            );
        }
    }
}
