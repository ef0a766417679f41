//! The bus port: a work queue of [`TaskCommand`]s, a stream of [`TaskEvent`]s per task and
//! for the whole agent, and cancel signals to whichever worker runs a task.
//!
//! Readers subscribe to a task's events *before* they act (submit, read a snapshot), then
//! drop events whose `seq` they have already seen: that makes streams gap-free without
//! polling storage.
//!
//! Durable event consumers ([`Bus::consume_events`]) give one reader (the webhook
//! dispatcher) every event with an acker: unacknowledged events come again, in publish
//! order, when the consumer is opened anew under the same name (after a crash or restart).
//! Publishing never waits for such a reader.
//!
//! Backends: `memory` (default, in-process), `nats` (JetStream) and `redis` (Redis Streams). [`conformance`] holds the suite every backend
//! must pass.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bindu_schemas::bus::{TaskCommand, TaskEvent};
use futures::stream::BoxStream;

#[cfg(feature = "nats")]
mod ack_floor;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod durable_log;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(all(feature = "nats", any(test, feature = "testing")))]
pub mod nats_server;
#[cfg(any(feature = "nats", feature = "redis"))]
mod payloads;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(all(feature = "redis", any(test, feature = "testing")))]
pub mod redis_server;
pub(crate) mod router;
#[cfg(all(
    any(feature = "nats", feature = "redis"),
    any(test, feature = "testing")
))]
pub mod test_server;

pub use memory::MemoryBus;
#[cfg(feature = "nats")]
pub use nats::{NatsBus, NatsOptions};
#[cfg(feature = "redis")]
pub use redis::{RedisBus, RedisBusOptions};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The subscriber fell behind and missed `0` events; re-read a snapshot to recover.
    #[error("subscriber lagged behind and missed {0} events")]
    Lagged(u64),
    /// The bus is shutting down or was closed.
    #[error("bus closed")]
    Closed,
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The work queue holds as many commands as it may: retry later (an in-process queue
    /// refuses rather than making the publisher wait).
    #[error("the work queue is full")]
    Full,
    #[error("bus error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type EventStream = BoxStream<'static, Result<Arc<TaskEvent>, BusError>>;
pub type CommandStream = BoxStream<'static, Result<Delivery, BusError>>;
pub type CancelStream = BoxStream<'static, String>;
pub type ExhaustedStream = BoxStream<'static, Exhausted>;
pub type DurableEventStream = BoxStream<'static, Result<Consumed, BusError>>;

/// What a durable event consumer reads: task events, and on backends that
/// [order them](Bus::orders_push_notices) the notices that a task's push configs changed.
pub enum Consumed {
    Event(EventDelivery),
    PushConfigsChanged(PushNotice),
}

/// A task's push configs changed ([`Bus::push_configs_changed`]); ack it once noted.
pub struct PushNotice {
    pub task_id: String,
    pub acker: Box<dyn Acker>,
}

/// An event handed to a durable consumer; ack it once it is handled.
pub struct EventDelivery {
    pub event: Arc<TaskEvent>,
    /// 1 on first delivery.
    pub attempt: u64,
    pub acker: Box<dyn Acker>,
}

/// A command the bus gave up redelivering (its handler crashed or timed out every time).
#[derive(Debug, Clone)]
pub struct Exhausted {
    pub command: TaskCommand,
    pub deliveries: u64,
    /// Backend-specific position of the command, for [`Bus::dead_letter`].
    pub position: u64,
}

/// The work queue's load: commands no worker has taken yet, and commands taken and not yet
/// acknowledged (tasks running, or held by a worker about to run them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub waiting: u64,
    pub running: u64,
}

impl QueueDepth {
    /// Waiting plus running.
    pub fn total(&self) -> u64 {
        self.waiting.saturating_add(self.running)
    }
}

/// Acknowledges one delivered command.
#[async_trait]
pub trait Acker: Send + Sync {
    /// The command is done (its outcome is durable). It is not delivered again, except
    /// with a batch it came in (NATS) when another command of the batch is handed back:
    /// then as a redelivery (`attempt` > 1), which a worker checks against the store.
    async fn ack(&self) -> Result<(), BusError>;
    /// Deliver the command again after `delay` (for transient failures).
    async fn nack(&self, delay: Duration) -> Result<(), BusError>;
    /// Still working on it: extend the ack deadline.
    async fn in_progress(&self) -> Result<(), BusError>;
}

/// A command taken from the work queue.
pub struct Delivery {
    pub command: TaskCommand,
    /// 1 on first delivery.
    pub attempt: u64,
    pub acker: Box<dyn Acker>,
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Short backend name for `/health` and logs (`memory`, `nats`).
    fn backend(&self) -> &'static str;

    async fn ready(&self) -> Result<(), BusError>;

    /// Enqueues commands. A bounded in-process queue that is full refuses them with
    /// [`BusError::Full`] at once (the ingress answers HTTP 429); a durable queue stores them.
    async fn publish_commands(&self, commands: Vec<TaskCommand>) -> Result<(), BusError>;

    /// The work queue's load now ([`QueueDepth`]), read cheaply: a counter in process, one
    /// request to the server (at most a fraction of a second old) on a durable queue; never by
    /// reading tasks. A backend that carries several commands in one message (NATS batches)
    /// counts messages on the server: it reports them times the commands per message it
    /// published (an estimate), and a message's commands as running until the last is acked.
    async fn queue_depth(&self) -> Result<QueueDepth, BusError>;

    /// A worker's share of the work queue: each command goes to one consumer.
    async fn consume_commands(&self) -> Result<CommandStream, BusError>;
    /// Shutdown's verb: this process takes no more commands. Its command streams end, an
    /// in-process queue once the commands already in it are taken (nobody else could run
    /// them), a durable queue at once (what is not taken stays queued for other workers).
    /// Workers then finish what they hold and stop; publishing may be refused afterwards.
    async fn close_intake(&self);

    /// Publishes events and returns once the bus stored every one (a durable log) or
    /// handed it on (in process). A backend may carry a task's consecutive events of one
    /// call in one message; readers still get them one by one, in order. An event larger than the bus carries is published
    /// [truncated](TaskEvent::truncate): readers find its content in the task store.
    async fn publish_events(&self, events: Vec<TaskEvent>) -> Result<(), BusError>;

    /// Publishes events without waiting for the bus to confirm them: for announcements
    /// whose durable record is elsewhere (the task store), such as `submitted`, `working`
    /// and streamed chunks. Events of one task keep their order relative to every other
    /// publish of this process.
    async fn announce(&self, events: Vec<TaskEvent>) -> Result<(), BusError> {
        self.publish_events(events).await
    }

    /// Live events of one task, from now on.
    async fn subscribe_task(&self, task_id: &str) -> Result<EventStream, BusError>;

    /// Live events of every task of this agent, from now on.
    async fn subscribe_all(&self) -> Result<EventStream, BusError>;

    /// A durable consumer of every task event of this agent, named `durable_name`.
    ///
    /// The first opening starts at the events published from then on. Events come in
    /// publish order, each with an acker; reopening under the same name (after a crash, a
    /// restart, or dropping the stream) delivers again, in publish order, every event from
    /// the oldest unacknowledged one on (acked events after it may come again: at least
    /// once; so may acked events a backend stored in one message with an unacknowledged
    /// one: a task's consecutive events published in one call). One reader per name at a
    /// time: a new opening replaces the previous one.
    /// Publishing never waits for the consumer; a backend that must drop events a consumer
    /// has not read yet reports [`BusError::Lagged`] on its stream.
    async fn consume_events(&self, durable_name: &str) -> Result<DurableEventStream, BusError>;

    /// Tells durable event consumers that `task_id`'s push configs changed, in order with
    /// the task's events: every event published after this returns comes after the notice.
    /// A no-op on backends that do not [order such notices](Bus::orders_push_notices).
    async fn push_configs_changed(&self, task_id: &str) -> Result<(), BusError> {
        let _ = task_id;
        Ok(())
    }

    /// Whether durable event consumers read [`Consumed::PushConfigsChanged`] notices in
    /// order with events, published for every task that has push configs before the events
    /// they concern. A webhook dispatcher can then skip the events of a task whose first
    /// event (`seq` 1) came without a notice, without reading the store.
    fn orders_push_notices(&self) -> bool {
        false
    }

    /// Asks whichever worker runs `task_id` to stop its handler.
    async fn signal_cancel(&self, task_id: &str) -> Result<(), BusError>;

    /// Task ids whose handlers must stop.
    async fn cancel_signals(&self) -> Result<CancelStream, BusError>;

    /// Whether [`Bus::replay_task`] can replay past events (a durable event log).
    fn keeps_history(&self) -> bool {
        false
    }

    /// Whether a command handed back with [`Acker::nack`] outlives this process, so another
    /// worker process can take it (a durable queue). A worker that stops with handlers still
    /// running hands their commands back only then; otherwise it records them interrupted.
    fn commands_outlive_process(&self) -> bool {
        false
    }

    /// The task's events with a sequence number above `after_seq`, from the bus's history
    /// where it keeps one, then live. Without history: live events only.
    async fn replay_task(&self, task_id: &str, after_seq: u64) -> Result<EventStream, BusError> {
        let _ = after_seq;
        self.subscribe_task(task_id).await
    }

    /// Commands that ran out of deliveries, each reported to one listener.
    /// Backends that never redeliver report none.
    async fn exhausted_commands(&self) -> Result<ExhaustedStream, BusError> {
        Ok(Box::pin(futures::stream::pending()))
    }

    /// Moves an exhausted command to the dead-letter subject and off the work queue.
    async fn dead_letter(&self, exhausted: &Exhausted) -> Result<(), BusError> {
        let _ = exhausted;
        Ok(())
    }
}

/// A publish the bus server acknowledged, for `bindu_bus_publish_duration_seconds` (NATS,
/// Redis).
#[cfg(any(feature = "nats", feature = "redis"))]
pub(crate) fn published(started: std::time::Instant) {
    crate::metrics::engine()
        .bus_publish_duration
        .observe(started.elapsed().as_secs_f64());
}
