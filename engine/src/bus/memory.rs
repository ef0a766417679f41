//! In-process bus: a bounded MPMC work queue, per-task broadcast channels created on demand
//! (only tasks somebody watches cost anything, see [`super::router`]), one agent-wide
//! broadcast, one cancel broadcast, and one bounded log per durable event consumer
//! ([`super::durable_log`]). A command handed back with `nack` comes again after its delay,
//! up to [`MAX_DELIVER`] deliveries; then it is reported on
//! [`Bus::exhausted_commands`]. Commands live only as long as the process (at-most-once
//! across restarts); use the NATS backend for durable delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bindu_schemas::bus::{TaskCommand, TaskEvent};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::router::{broadcast_stream, TaskRouter};
use super::*;

const ALL_BUFFER: usize = 8192;

/// Deliveries of one command before it is reported exhausted (as NATS's default).
pub const MAX_DELIVER: u64 = 5;

/// A queued command and the delivery it will be.
type Queued = (TaskCommand, u64);

pub struct MemoryBus {
    commands_tx: async_channel::Sender<Queued>,
    commands_rx: async_channel::Receiver<Queued>,
    exhausted_tx: async_channel::Sender<Exhausted>,
    exhausted_rx: async_channel::Receiver<Exhausted>,
    next_position: Arc<AtomicU64>,
    /// Deliveries not yet acknowledged.
    running: Arc<AtomicU64>,
    tasks: TaskRouter,
    all: broadcast::Sender<Arc<TaskEvent>>,
    cancels: broadcast::Sender<String>,
    durable: super::durable_log::DurableLogs,
}

impl MemoryBus {
    /// `queue_capacity` bounds the commands waiting for a worker.
    pub fn new(queue_capacity: usize) -> Self {
        let (commands_tx, commands_rx) = async_channel::bounded(queue_capacity.max(1));
        let (exhausted_tx, exhausted_rx) = async_channel::unbounded();
        MemoryBus {
            commands_tx,
            commands_rx,
            exhausted_tx,
            exhausted_rx,
            next_position: Arc::new(AtomicU64::new(1)),
            running: Arc::new(AtomicU64::new(0)),
            tasks: TaskRouter::default(),
            all: broadcast::channel(ALL_BUFFER).0,
            cancels: broadcast::channel(1024).0,
            durable: super::durable_log::DurableLogs::new(super::durable_log::DEFAULT_CAPACITY),
        }
    }

    /// Bounds each durable consumer's log to `capacity` events (the oldest are dropped, and
    /// counted as lag when unread).
    pub fn with_durable_capacity(mut self, capacity: usize) -> Self {
        self.durable = super::durable_log::DurableLogs::new(capacity);
        self
    }

    /// Commands waiting for a worker.
    pub fn queued(&self) -> usize {
        self.commands_tx.len()
    }

    /// Closes the work queue: consumers end once it is drained.
    pub fn close(&self) {
        self.commands_tx.close();
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(65_536)
    }
}

/// Acknowledges an in-process delivery: `ack` forgets the command, `nack` queues it again
/// after the delay (or reports it exhausted after its last delivery).
struct MemoryAcker {
    command: TaskCommand,
    attempt: u64,
    queue: async_channel::Sender<Queued>,
    exhausted: async_channel::Sender<Exhausted>,
    position: Arc<AtomicU64>,
    running: Running,
}

/// One unacknowledged delivery in the bus's count: leaves it on the first ack or nack, or
/// when dropped unanswered.
struct Running {
    count: Arc<AtomicU64>,
    counted: std::sync::atomic::AtomicBool,
}

impl Running {
    fn new(count: &Arc<AtomicU64>) -> Running {
        count.fetch_add(1, Ordering::Relaxed);
        Running {
            count: count.clone(),
            counted: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn done(&self) {
        if self.counted.swap(false, Ordering::Relaxed) {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.done();
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.running.done();
        Ok(())
    }
    async fn nack(&self, delay: Duration) -> Result<(), BusError> {
        self.running.done();
        if self.attempt >= MAX_DELIVER {
            let _ = self.exhausted.try_send(Exhausted {
                command: self.command.clone(),
                deliveries: self.attempt,
                position: self.position.fetch_add(1, Ordering::Relaxed),
            });
            return Ok(());
        }
        let queue = self.queue.clone();
        let again = (self.command.clone(), self.attempt + 1);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // A closed queue (shutdown) drops it, as a process exit would.
            let _ = queue.send(again).await;
        });
        Ok(())
    }
    async fn in_progress(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ready(&self) -> Result<(), BusError> {
        if self.commands_tx.is_closed() {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    async fn publish_commands(&self, commands: Vec<TaskCommand>) -> Result<(), BusError> {
        // A full queue refuses instead of holding the publisher (a client request) until a
        // worker takes something: back-pressure is an answer, not a wait.
        for c in commands {
            self.commands_tx.try_send((c, 1)).map_err(|e| match e {
                async_channel::TrySendError::Full(_) => BusError::Full,
                async_channel::TrySendError::Closed(_) => BusError::Closed,
            })?;
        }
        Ok(())
    }

    async fn close_intake(&self) {
        self.close();
    }

    async fn queue_depth(&self) -> Result<QueueDepth, BusError> {
        Ok(QueueDepth {
            waiting: self.commands_tx.len() as u64,
            running: self.running.load(Ordering::Relaxed),
        })
    }

    async fn consume_commands(&self) -> Result<CommandStream, BusError> {
        let queue = self.commands_tx.clone();
        let exhausted = self.exhausted_tx.clone();
        let position = self.next_position.clone();
        let running = self.running.clone();
        Ok(self
            .commands_rx
            .clone()
            .map(move |(command, attempt)| {
                Ok(Delivery {
                    acker: Box::new(MemoryAcker {
                        command: command.clone(),
                        attempt,
                        queue: queue.clone(),
                        exhausted: exhausted.clone(),
                        position: position.clone(),
                        running: Running::new(&running),
                    }),
                    command,
                    attempt,
                })
            })
            .boxed())
    }

    async fn publish_events(&self, events: Vec<TaskEvent>) -> Result<(), BusError> {
        // In process, an event carries its publisher's trace context in itself (NATS: in
        // the message headers).
        let trace = crate::trace::current();
        let events: Vec<Arc<TaskEvent>> = events
            .into_iter()
            .map(|mut e| {
                if e.trace.is_none() {
                    e.trace = trace.clone();
                }
                Arc::new(e)
            })
            .collect();
        self.durable.publish(&events);
        for event in events {
            self.tasks.send(event.task_id(), &event);
            let _ = self.all.send(event);
        }
        Ok(())
    }

    async fn subscribe_task(&self, task_id: &str) -> Result<EventStream, BusError> {
        Ok(self.tasks.subscribe(task_id))
    }

    async fn subscribe_all(&self) -> Result<EventStream, BusError> {
        Ok(broadcast_stream(self.all.subscribe()))
    }

    async fn consume_events(&self, durable_name: &str) -> Result<DurableEventStream, BusError> {
        Ok(self.durable.open(durable_name))
    }

    async fn signal_cancel(&self, task_id: &str) -> Result<(), BusError> {
        let _ = self.cancels.send(task_id.to_string());
        Ok(())
    }

    async fn cancel_signals(&self) -> Result<CancelStream, BusError> {
        Ok(BroadcastStream::new(self.cancels.subscribe())
            .filter_map(|r| async move { r.ok() })
            .boxed())
    }

    async fn exhausted_commands(&self) -> Result<ExhaustedStream, BusError> {
        Ok(self.exhausted_rx.clone().boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run_all(|| async { MemoryBus::new(1024) }).await;
    }

    #[tokio::test]
    async fn a_durable_consumer_that_falls_behind_lags_without_blocking_publishers() {
        let bus = MemoryBus::default().with_durable_capacity(8);
        let mut events = bus.consume_events("slow").await.unwrap();
        for seq in 1..=20 {
            bus.publish_events(vec![super::super::conformance::status_event(
                "t",
                seq,
                bindu_schemas::TaskState::Working,
            )])
            .await
            .unwrap();
        }
        match events.next().await {
            Some(Err(BusError::Lagged(n))) => assert_eq!(n, 12),
            _ => panic!("expected a lag report"),
        }
        let Some(Ok(Consumed::Event(first))) = events.next().await else {
            panic!("expected an event");
        };
        assert_eq!(first.event.seq, 13, "the newest events are kept");
    }

    #[tokio::test]
    async fn task_channels_are_dropped_with_their_last_subscriber() {
        let bus = MemoryBus::default();
        let a = bus.subscribe_task("t").await.unwrap();
        let b = bus.subscribe_task("t").await.unwrap();
        drop(a);
        assert!(bus.tasks.watched("t"));
        drop(b);
        assert!(!bus.tasks.watched("t"));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_instead_of_waiting() {
        let bus = MemoryBus::new(2);
        let cmd = super::super::conformance::command("t");
        bus.publish_commands(vec![cmd.clone(), cmd.clone()])
            .await
            .unwrap();
        let third =
            tokio::time::timeout(Duration::from_secs(5), bus.publish_commands(vec![cmd])).await;
        assert!(
            matches!(third, Ok(Err(BusError::Full))),
            "a full queue answers at once with Full"
        );
        assert_eq!(bus.queued(), 2);
    }

    #[tokio::test]
    async fn a_nacked_command_comes_again_until_its_last_delivery() {
        let bus = MemoryBus::new(16);
        let mut commands = bus.consume_commands().await.unwrap();
        let mut exhausted = bus.exhausted_commands().await.unwrap();
        bus.publish_commands(vec![super::super::conformance::command("t")])
            .await
            .unwrap();
        for attempt in 1..=MAX_DELIVER {
            let d = tokio::time::timeout(Duration::from_secs(5), commands.next())
                .await
                .expect("the command comes again")
                .unwrap()
                .unwrap();
            assert_eq!(d.attempt, attempt);
            assert_eq!(d.command.task_id, "t");
            d.acker.nack(Duration::from_millis(5)).await.unwrap();
        }
        let ex = tokio::time::timeout(Duration::from_secs(5), exhausted.next())
            .await
            .expect("the command is reported exhausted")
            .unwrap();
        assert_eq!(ex.command.task_id, "t");
        assert_eq!(ex.deliveries, MAX_DELIVER);
        let again = tokio::time::timeout(Duration::from_millis(100), commands.next()).await;
        assert!(
            again.is_err(),
            "an exhausted command is not delivered again"
        );
    }
}
